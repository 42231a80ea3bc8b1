//! Logs and traces: the `tracing` subscriber of the binary (text or JSON lines on stderr)
//! and, with `--otlp-endpoint`, the export of Switchboard's spans over OTLP/HTTP.
//!
//! Two span kinds follow one notification: the request span (`api/server.rs`: method, route,
//! status, duration) and the attempt span (`delivery/dispatch.rs`: event, channel,
//! destination, target, attempt number, status or error kind, duration). Both are DEBUG
//! spans of the target [`TARGET`], which the default log filter (`info`) disables: with
//! export off no layer wants them, so `tracing` answers them from its callsite cache as
//! disabled, never evaluates their fields, and every recording below starts with an
//! `is_disabled` check. The OTLP layer alone enables them, through its own per-layer filter,
//! so exporting does not make them log lines either (`RUST_LOG=debug` does).
//!
//! Export runs on the SDK's batch span processor: ended spans go into a bounded queue
//! (dropped when it is full, never waited for) and a thread of its own sends them in
//! batches with a blocking reqwest client (reqwest 0.12, the one deliveries use, with its
//! rustls). [`Telemetry::shutdown`] flushes what is queued at the end of a graceful stop.

mod context;

use std::io::IsTerminal;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use context::{
    adopt_incoming, adopt_parent, incoming_trace, propagate, rename, TraceHeaders, TRACEPARENT,
    TRACESTATE,
};

use crate::config::LogFormat;

/// The target of the request and attempt spans, the ones the OTLP layer exports.
pub const TARGET: &str = "switchboard::trace";

/// The log filter unless `RUST_LOG` says otherwise: INFO, which leaves the spans of
/// [`TARGET`] (DEBUG) disabled for the log.
const DEFAULT_FILTER: &str = "info,tower_http=warn";

/// Longest one export may take, and the longest the final flush waits at a stop.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why logging or the span export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter rejected its configuration.
    #[error("cannot set up the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The exporter's HTTP client could not be built (TLS roots).
    #[error("cannot build the OTLP exporter's HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// A global subscriber was already installed.
    #[error("cannot install the log subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// The installed subscriber's export side: held by `main` until the end of the stop.
#[must_use = "shutdown flushes the spans still queued for export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Installs the global subscriber: log lines in `format` on stderr (`RUST_LOG` overrides
    /// the level) and, when `otlp` is set, the export of the spans to it, with the resource
    /// attributes of this node. Call it before the async runtime exists: the exporter's
    /// blocking client starts a thread of its own.
    pub fn init(
        format: LogFormat,
        otlp: Option<&url::Url>,
        node: &str,
    ) -> Result<Self, TelemetryError> {
        let logs = tracing_subscriber::registry().with(log_layer(format));
        let Some(endpoint) = otlp else {
            logs.try_init()?;
            return Ok(Self { provider: None });
        };
        let provider = tracer_provider(endpoint, node)?;
        let spans = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("switchboard"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(filter_fn(exported).with_max_level_hint(LevelFilter::DEBUG));
        logs.with(spans).try_init()?;
        Ok(Self {
            provider: Some(provider),
        })
    }

    /// Sends the spans still queued (waiting at most the export timeout), then stops the
    /// export thread. A collector that does not answer costs the stop that wait, no more.
    pub fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        if let Err(error) = provider.shutdown_with_timeout(EXPORT_TIMEOUT) {
            tracing::warn!(%error, "not every span could be exported at the stop");
        }
    }
}

/// What the OTLP layer takes: Switchboard's request and attempt spans, and the warnings
/// and errors logged inside them (as span events).
fn exported(metadata: &Metadata<'_>) -> bool {
    match metadata.is_span() {
        true => metadata.target() == TARGET,
        false => *metadata.level() <= Level::WARN,
    }
}

/// The log lines, filtered by `RUST_LOG` (else [`DEFAULT_FILTER`]) on their own, so the
/// OTLP layer's filter does not depend on it.
fn log_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => lines
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => lines.json().with_filter(filter).boxed(),
    }
}

/// The SDK's provider with a batch processor around the OTLP/HTTP (protobuf) exporter to
/// `endpoint`; service `switchboard`, this version, and the node id as the instance.
fn tracer_provider(endpoint: &url::Url, node: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let client = reqwest::blocking::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .no_proxy()
        .user_agent(concat!("Switchboard/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(ExportClient(client))
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.as_str())
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    let resource = Resource::builder()
        .with_service_name("switchboard")
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", node.to_owned()),
            KeyValue::new("switchboard.node_id", node.to_owned()),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The exporter's HTTP client: reqwest 0.12's blocking client (the batch processor's
/// thread is not a runtime thread), so the tree keeps one reqwest and one TLS stack.
#[derive(Debug)]
struct ExportClient(reqwest::blocking::Client);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let response = self.0.execute(request.try_into()?)?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut answer = http::Response::builder()
            .status(status)
            .body(response.bytes()?)?;
        *answer.headers_mut() = headers;
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spans cost nothing with export off: under the default filter they are disabled
    /// at their callsite, so neither the log layer nor anything else records them.
    #[test]
    fn the_spans_are_disabled_when_nothing_exports_them() {
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_filter(EnvFilter::new(DEFAULT_FILTER)));
        tracing::subscriber::with_default(subscriber, || {
            let span =
                tracing::debug_span!(target: TARGET, "request", route = tracing::field::Empty);
            assert!(span.is_disabled());
            let attempt = tracing::debug_span!(target: TARGET, "attempt");
            assert!(attempt.is_disabled());
            assert!(!tracing::info_span!("ordinary").is_disabled());
        });
    }

    #[test]
    fn the_otlp_layer_takes_the_trace_spans_only() {
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(filter_fn(exported));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            assert!(!tracing::debug_span!(target: TARGET, "attempt").is_disabled());
            assert!(tracing::info_span!("delivery").is_disabled());
        });
    }
}
