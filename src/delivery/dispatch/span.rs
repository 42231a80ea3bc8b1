//! The attempt span: one per delivery attempt (event, delivery, channel, destination,
//! target, attempt number, then the status or error kind and the duration), a child of the
//! event's trace context, and the parent its `traceparent` names to the receiver when spans
//! are exported. Disabled, with no field evaluated, unless exported or debug-logged
//! (`telemetry`).

use std::time::Duration;

use tracing::field::Empty;
use tracing::Span;

use crate::delivery::attempt::AttemptResult;
use crate::domain::{ChannelId, DestinationId};
use crate::store::DueDelivery;
use crate::telemetry::{self, TARGET};

/// Opens the span of `job`'s next attempt, to `destination`, joined to the event's trace.
pub fn attempt_span(job: &DueDelivery, destination: Option<&DestinationId>) -> Span {
    let span = tracing::debug_span!(
        target: TARGET,
        "attempt",
        otel.name = "delivery attempt",
        otel.kind = "client",
        otel.status_code = Empty,
        event.id = job.event.0,
        delivery.id = job.id.0,
        delivery.target = %job.target.to_stored(),
        channel.id = job.channel.as_ref().map(ChannelId::as_str),
        destination.id = destination.map(DestinationId::as_str),
        attempt = i64::from(job.attempts) + 1,
        http.response.status_code = Empty,
        error.type = Empty,
        duration_ms = Empty,
    );
    if let Some(trace) = &job.trace {
        telemetry::adopt_parent(&span, trace);
    }
    span
}

/// Records what the attempt got on an enabled span: the status (an error unless 200, the
/// one answer that delivers) or the error kind, and how long it took.
pub fn record_attempt(span: &Span, result: &AttemptResult, took: Duration) {
    if span.is_disabled() {
        return;
    }
    match result {
        AttemptResult::Answered { status, .. } => {
            // Integers as i64: the OTLP layer records other integer types as text.
            span.record("http.response.status_code", i64::from(*status));
            if *status != 200 {
                span.record("otel.status_code", "ERROR");
            }
        }
        AttemptResult::Failed { kind, .. } => {
            span.record("error.type", kind.as_str());
            span.record("otel.status_code", "ERROR");
        }
    }
    span.record(
        "duration_ms",
        u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
    );
}
