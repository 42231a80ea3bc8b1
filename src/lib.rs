//! Switchboard: a self-hosted webhook configuration API and durable delivery engine for
//! WhatsApp Business, compatible with 360dialog's API.
//!
//! # Layout
//!
//! The modules follow the path of a request, top to bottom; imports point down only.
//!
//! - [`api`]: HTTP only: routers per surface, extractors, and the one error-to-HTTP mapping;
//!   the web console (embedded page, login, sessions).
//! - [`ingest`]: turn a request into durable events (split Meta envelopes, wrap values).
//! - [`delivery`]: claim due deliveries, route each at attempt time, one HTTP try, backoff.
//! - [`store`]: the `Store` trait and its backends (embedded SQLite); all SQL lives here.
//! - [`domain`]: plain types and their rules (`WebhookUrl`, `WebhookHeaders`, multi-webhook
//!   changes, routing priority); no HTTP, no SQL.
//! - [`config`]: one typed, validated `Config` from defaults, file, environment and flags.
//! - [`cli`]: the client subcommands (`switchboard channels list`, `tail`, …): HTTP to a
//!   running server's admin API, aligned tables or `--json`; beside the server, not under it.
//! - [`maintenance`]: retention (old finished events are deleted in the background).
//! - [`readiness`]: `NOTIFY_SOCKET` notices to a service manager (ready, stopping).
//! - [`metrics`], [`clock`]: Prometheus counters; wall-clock milliseconds.
//! - [`telemetry`]: log lines (text or JSON), the request and attempt spans' W3C trace
//!   context, and their optional OTLP export.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod ingest;
pub mod maintenance;
pub mod metrics;
pub mod readiness;
pub mod store;
pub mod telemetry;

/// An error and its sources on one line (`error: cause: cause…`), for logs and the command
/// line: a top-level error often says little (reqwest's "error sending request"), its cause
/// says what happened ("Connection refused").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::KeyHash;
use crate::store::StoreError;

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listener failed.
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP client for deliveries could not be built (TLS roots, DNS threads).
    #[error(transparent)]
    Client(#[from] delivery::ClientError),
}

/// Serves Switchboard on `listener` until `shutdown` is cancelled, then stops taking
/// requests, lets in-flight attempts finish and record their outcome, and returns.
///
/// The caller binds the listener (tests bind `127.0.0.1:0`) and owns the shutdown token.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    run_notifying(config, listener, shutdown, &readiness::Notifier::disabled()).await
}

/// [`run`], telling `notifier` (a service manager's `NOTIFY_SOCKET`, read by the binary)
/// when the service is ready (listener bound, store open) and when its graceful stop begins.
pub async fn run_notifying(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    notifier: &readiness::Notifier,
) -> Result<(), RunError> {
    let store = store::open(&config.database, &config.node_id).await?;
    let released = store.release_leases().await?;
    if released > 0 {
        tracing::info!(
            released,
            "resuming deliveries left in flight by the previous run"
        );
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let engine = delivery::Engine::start(
        Arc::clone(&store),
        engine_settings(&config),
        Arc::clone(&metrics),
        shutdown.clone(),
    )?;
    let retention = maintenance::Retention {
        events: config.retention,
        payloads: config.payload_retention,
    };
    if retention.events.is_some() || retention.payloads.is_some() {
        let store = Arc::clone(&store);
        tokio::spawn(maintenance::purge_periodically(
            store,
            retention,
            shutdown.clone(),
        ));
    }
    let state = api::AppState {
        ingest: ingest::Ingest::new(Arc::clone(&store), engine.clone(), Arc::clone(&metrics)),
        health: engine.health(),
        pauses: engine.pauses(),
        outage: engine.outage(),
        store,
        metrics,
        admin_token_hash: KeyHash::of(config.admin_token.secret.expose()),
        body_budget: Arc::new(tokio::sync::Semaphore::new(config.http.max_body_buffer)),
        streams: api::LiveStreams::new(engine.feed(), config.http.max_streams, shutdown.clone()),
        config: Arc::new(config),
        sessions: Arc::new(api::Sessions::new()),
        backlog: Arc::default(),
    };
    tracing::info!(
        address = %listener.local_addr()?,
        database = %state.config.database,
        dev = state.config.dev,
        "switchboard listening"
    );
    let limits = state.config.http.clone();
    notifier.ready();
    let grace_ends =
        serve_until_stopped(listener, api::router(state), limits, &shutdown, notifier).await;
    if tokio::time::timeout_at(grace_ends, engine.stopped())
        .await
        .is_err()
    {
        tracing::warn!(
            "delivery attempts still in flight at the end of the shutdown grace period are \
             abandoned; they are attempted again after the restart"
        );
    }
    engine.hand_back().await;
    tracing::info!("switchboard stopped");
    Ok(())
}

/// Serves until `shutdown`, telling `notifier` the moment the graceful stop begins;
/// returns when the grace ends (as [`api::serve`]), with `shutdown` cancelled.
async fn serve_until_stopped(
    listener: TcpListener,
    router: axum::Router,
    limits: config::HttpLimits,
    shutdown: &CancellationToken,
    notifier: &readiness::Notifier,
) -> tokio::time::Instant {
    let serving = async {
        let grace_ends = api::serve(listener, router, limits, shutdown.clone()).await;
        // Whatever ended the serving, the stop notice below must not wait for ever.
        shutdown.cancel();
        grace_ends
    };
    let stopping = async {
        shutdown.cancelled().await;
        notifier.stopping();
    };
    tokio::join!(serving, stopping).0
}

fn engine_settings(config: &Config) -> delivery::EngineSettings {
    let retry = delivery::RetryPolicy {
        base: config.retry_base,
        max_delay: config.retry_max_delay,
        max_age: config.retry_max_age,
    };
    let mut settings =
        delivery::EngineSettings::new(retry, config.delivery_timeout, config.address_policy());
    settings.per_destination = config.max_in_flight_per_destination;
    settings.per_destination_waiting = config.max_waiting_per_destination;
    settings.lease = config.delivery_lease;
    settings.memory = config.max_queue_memory;
    settings.pause_after = config.pause_after;
    settings.probe_interval = config.probe_interval;
    settings
}
