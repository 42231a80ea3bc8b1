//! Switchboard: a self-hosted webhook configuration API and durable delivery engine for
//! WhatsApp Business, compatible with 360dialog's API.
//!
//! # Layout
//!
//! The modules follow the path of a request, top to bottom; imports point down only.
//!
//! - [`api`]: HTTP only: routers per surface, extractors, and the one error-to-HTTP mapping.
//! - [`store`]: the `Store` trait and its backends (embedded SQLite); all SQL lives here.
//! - [`domain`]: plain types and their rules (`WebhookUrl`, `WebhookHeaders`, multi-webhook
//!   changes, routing priority); no HTTP, no SQL.
//! - [`config`]: one typed, validated `Config` from defaults, file, environment and flags.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod config;
pub mod domain;
pub mod store;

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
}

/// Serves Switchboard on `listener` until `shutdown` is cancelled, then drains in-flight
/// requests and returns.
///
/// The caller binds the listener (tests bind `127.0.0.1:0`) and owns the shutdown token.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let store = store::open(&config.database).await?;
    let state = api::AppState {
        store,
        admin_token_hash: KeyHash::of(config.admin_token.secret.expose()),
        config: Arc::new(config),
    };
    tracing::info!(
        address = %listener.local_addr()?,
        database = %state.config.database,
        dev = state.config.dev,
        "switchboard listening"
    );
    axum::serve(listener, api::router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    tracing::info!("switchboard stopped");
    Ok(())
}
