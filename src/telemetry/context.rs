//! The W3C trace context between HTTP and the spans: read from a request's `traceparent`
//! (`tracestate`), kept with its events, and written onto each delivery.
//!
//! With export off nothing here touches a span: the incoming header is parsed only when it
//! is there, and a delivery carries the stored context as it came (its trace id, and the
//! sender's span as the parent). With export on, the request span joins the incoming trace
//! (or starts one), its context is what the events keep, and the attempt span joins that and
//! is the parent the receiver sees.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::domain::TraceContext;

/// The W3C header that names the trace and the parent span.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The W3C header of the vendors' trace state.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The trace headers of one delivery, ready to send.
#[derive(Debug, Clone)]
pub struct TraceHeaders {
    /// `traceparent`: the event's trace, with the attempt's span (or the sender's) as parent.
    pub traceparent: HeaderValue,
    /// `tracestate`, as it came with the event.
    pub tracestate: Option<HeaderValue>,
}

/// The trace context a request came with: a valid `traceparent` (and its `tracestate`);
/// a malformed one is ignored.
fn parse_headers(headers: &HeaderMap) -> Option<TraceContext> {
    let traceparent = headers.get(TRACEPARENT)?;
    let tracestate = headers.get(TRACESTATE).map(HeaderValue::as_bytes);
    TraceContext::parse(traceparent.as_bytes(), tracestate)
}

/// Makes the request span `span` a child of the request's incoming trace, if it came with
/// one and the span is exported (nothing is read otherwise).
pub fn adopt_incoming(span: &Span, headers: &HeaderMap) {
    if span.is_disabled() {
        return;
    }
    if let Some(incoming) = parse_headers(headers) {
        adopt_parent(span, &incoming);
    }
}

/// Makes `span` a child of `parent` in the exported trace (before the span is used).
pub fn adopt_parent(span: &Span, parent: &TraceContext) {
    if span.is_disabled() {
        return;
    }
    let state = parent
        .state()
        .and_then(|state| state.parse::<TraceState>().ok())
        .unwrap_or_default();
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id()),
        SpanId::from_bytes(parent.parent_id()),
        TraceFlags::new(parent.flags()),
        true,
        state,
    );
    // Not exported (no OTLP layer): nothing to join; the stored context still travels.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

/// The trace context the events of the current request keep: with export on, the request
/// span's own (the incoming trace, or the one the span started), else the incoming one.
pub fn incoming_trace(headers: &HeaderMap, exporting: bool) -> Option<TraceContext> {
    let incoming = parse_headers(headers);
    if !exporting {
        return incoming;
    }
    let state = incoming.as_ref().and_then(TraceContext::state);
    match exported_context(&Span::current()) {
        Some(own) => own_context(&own, state).or(incoming),
        None => incoming,
    }
}

/// The headers a delivery carries: the attempt span's own context when it is exported (its
/// trace is the event's, as it joined it), else the event's stored context; none without
/// either.
pub fn propagate(attempt: &Span, stored: Option<&TraceContext>) -> Option<TraceHeaders> {
    let state = stored.and_then(TraceContext::state);
    let context = match exported_context(attempt) {
        Some(own) => own_context(&own, state),
        None => stored.cloned(),
    }?;
    Some(TraceHeaders {
        traceparent: HeaderValue::try_from(context.traceparent()).ok()?,
        tracestate: context.state().and_then(|s| HeaderValue::try_from(s).ok()),
    })
}

/// Renames an exported span once it is known what it is (the request span, after routing):
/// the OTLP layer starts a span when it is first entered, and a recorded `otel.name` no
/// longer renames it then.
pub fn rename(span: &Span, name: String) {
    if span.is_disabled() {
        return;
    }
    span.context().span().update_name(name);
}

/// `span`'s OpenTelemetry context, when the OTLP layer records it.
fn exported_context(span: &Span) -> Option<SpanContext> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let own = context.span().span_context().clone();
    own.is_valid().then_some(own)
}

fn own_context(own: &SpanContext, state: Option<&str>) -> Option<TraceContext> {
    TraceContext::new(
        own.trace_id().to_bytes(),
        own.span_id().to_bytes(),
        own.trace_flags().to_u8(),
        state,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn without_export_the_incoming_context_is_kept_and_sent_as_it_came() {
        let incoming = headers(&[("traceparent", GOOD), ("tracestate", "congo=t61rcWkgMzE")]);
        let kept = incoming_trace(&incoming, false).unwrap();
        assert_eq!(kept.traceparent(), GOOD);
        let sent = propagate(&Span::none(), Some(&kept)).unwrap();
        assert_eq!(sent.traceparent, GOOD);
        assert_eq!(sent.tracestate.unwrap(), "congo=t61rcWkgMzE");
        assert!(
            propagate(&Span::none(), None).is_none(),
            "nothing came, nothing is sent"
        );
    }

    #[test]
    fn a_malformed_traceparent_is_ignored() {
        let bad = headers(&[
            ("traceparent", "00-zz-00f067aa0ba902b7-01"),
            ("tracestate", "a=b"),
        ]);
        assert_eq!(incoming_trace(&bad, false), None);
        assert_eq!(
            incoming_trace(&bad, true),
            None,
            "no exported span: the header decides"
        );
        assert_eq!(incoming_trace(&HeaderMap::new(), false), None);
    }
}
