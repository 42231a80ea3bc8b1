//! The request span: one per HTTP request (method, route template, status, duration), the
//! first span of a notification's trace (`telemetry` says when it costs nothing).
//!
//! The server opens it around the router (`server.rs`), joining the request's incoming
//! `traceparent` when it is exported; [`RecordRoute`], a route layer, writes the matched
//! route template into it once the router has picked the route.

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::MatchedPath;
use http::{Method, Request, StatusCode};
use tracing::field::Empty;
use tracing::Span;

use crate::telemetry::{self, TARGET};

/// Opens the span of one request; disabled (and free) unless exported or debug-logged.
pub fn request_span<B>(request: &Request<B>) -> Span {
    let span = tracing::debug_span!(
        target: TARGET,
        parent: None,
        "request",
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %request.method(),
        http.route = Empty,
        http.response.status_code = Empty,
        duration_ms = Empty,
    );
    telemetry::adopt_incoming(&span, request.headers());
    span
}

/// When an enabled span's request started, to record its duration (`None` when disabled:
/// no clock is read).
pub fn started(span: &Span) -> Option<Instant> {
    (!span.is_disabled()).then(Instant::now)
}

/// Records the answer's status and the time it took on an enabled span.
pub fn record_answer(span: &Span, status: StatusCode, started: Option<Instant>) {
    let Some(started) = started else { return };
    // Integers as i64: the OTLP layer records other integer types as text.
    span.record("http.response.status_code", i64::from(status.as_u16()));
    span.record("duration_ms", millis(started.elapsed()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

fn millis(took: Duration) -> i64 {
    i64::try_from(took.as_millis()).unwrap_or(i64::MAX)
}

/// The route layer that names the request span after its route template
/// (`POST /admin/channels/{channel_id}/events`), never after the raw path, so the span names
/// and the route field stay a bounded set.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordRoute;

impl<S> tower_layer::Layer<S> for RecordRoute {
    type Service = RecordRouteService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordRouteService { inner }
    }
}

/// [`RecordRoute`] around one route: records, then calls the route, adding no future of its
/// own.
#[derive(Debug, Clone)]
pub struct RecordRouteService<S> {
    inner: S,
}

impl<S, B> tower_service::Service<Request<B>> for RecordRouteService<S>
where
    S: tower_service::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // One atomic load when nothing wants DEBUG spans (the default, export off).
        if tracing::level_enabled!(tracing::Level::DEBUG) {
            record_route(request.method(), request.extensions().get::<MatchedPath>());
        }
        self.inner.call(request)
    }
}

fn record_route(method: &Method, route: Option<&MatchedPath>) {
    let span = Span::current();
    let Some(route) = route.filter(|_| !span.is_disabled()) else {
        return;
    };
    span.record("http.route", route.as_str());
    telemetry::rename(&span, format!("{method} {}", route.as_str()));
}
