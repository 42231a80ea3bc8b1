//! HTTP: the routers of every surface, their extractors, and the one error mapping.
//!
//! - `messaging` and `multi_webhook`: the provider-compatible Messaging API (`D360-API-KEY`).
//! - `partner`: the provider-compatible Partner API (partner key, `{"meta"}` errors).
//! - `meta`: Meta's Cloud API webhook (handshake and signed notifications).
//! - `admin`, `listing`, `partner_events`, `ordering`, `events`, `deliveries`, `recover`: the
//!   admin API (admin token): provisioning and its lists, partner events, ordered delivery,
//!   inspection, replay and recovery over a window; `stream`: the live tail of what happens
//!   now (SSE).
//! - `overview`: the figures of the console's first page.
//! - `console`: the web console (embedded page, login, sessions with a CSRF token).
//! - `system`: health, readiness, metrics, and `/openapi.json`.
//!
//! The OpenAPI document is generated from the same annotations that register the routes
//! (utoipa-axum), so it cannot drift from what is served.

mod admin;
mod backlog;
mod console;
mod deliveries;
mod destinations;
mod error;
mod events;
mod extract;
mod listing;
mod messaging;
mod meta;
mod multi_webhook;
mod ordering;
mod overview;
mod partner;
mod partner_events;
mod recover;
mod server;
mod stream;
mod system;
mod traced;

use std::sync::Arc;

use axum::routing::{delete, get};
use axum::{Json, Router};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use console::Sessions;
pub use error::ApiError;
pub use extract::BODY_LIMIT;
pub use server::serve;
pub use stream::LiveStreams;

use crate::config::Config;
use crate::domain::KeyHash;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Arc<dyn Store>,
    /// Stores events and starts their deliveries.
    pub ingest: Ingest,
    /// The service's counters.
    pub metrics: Arc<Metrics>,
    /// The validated settings.
    pub config: Arc<Config>,
    /// Hash of the admin token, compared in constant time.
    pub admin_token_hash: KeyHash,
    /// Every destination's recent answers, graded (the engine's).
    pub health: Arc<crate::delivery::Health>,
    /// The paused destinations (the engine's).
    pub pauses: Arc<crate::delivery::Pauses>,
    /// Whether the database is available (the engine's): `/ready` reports what it finds.
    pub outage: Arc<crate::delivery::Outage>,
    /// Bytes of request bodies that may be read at once, across connections (one permit a
    /// byte): memory an unfinished body holds is bounded server-wide.
    pub body_budget: Arc<tokio::sync::Semaphore>,
    /// The live feed and the open streams of `GET /admin/stream` (at most `--max-streams`).
    pub streams: LiveStreams,
    /// The web console's logged-in sessions (memory only: a restart logs everyone out).
    pub sessions: Arc<Sessions>,
    /// The backlog by channel and target, read once for `/metrics`, the destinations API and
    /// the overview (kept a while when reading it is slow: `backlog.rs`).
    pub backlog: Arc<backlog::BacklogCache>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard",
        description = "Self-hosted WhatsApp Business webhook platform. The Messaging API \
                       endpoints are compatible with 360dialog's: same paths, headers, bodies \
                       and error messages."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "Messaging API", description = "Webhook configuration, authenticated by D360-API-KEY"),
        (name = "Partner API", description = "Partner webhook URL and headers, authenticated by the partner API key"),
        (name = "Admin", description = "Provisioning and operations, authenticated by the admin token"),
        (name = "Meta", description = "Meta's Cloud API webhook (signed with the app secret)"),
        (name = "Service", description = "Health and readiness"),
    )
)]
struct ApiDoc;

/// Declares how the two kinds of credentials are sent.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "D360-API-KEY",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("D360-API-KEY"))),
        );
        components.add_security_scheme(
            "PartnerApiKeyV2",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "Bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Builds the whole HTTP application over `state`.
pub fn router(state: AppState) -> Router {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(
            messaging::get_phone_webhook,
            messaging::set_phone_webhook
        ))
        .routes(routes!(
            messaging::get_waba_webhook,
            messaging::set_waba_webhook
        ))
        .routes(routes!(
            multi_webhook::get_multi_webhook,
            multi_webhook::enable_multi_webhook,
            multi_webhook::append_destinations,
            multi_webhook::update_destination
        ))
        .routes(routes!(multi_webhook::delete_destination))
        .routes(routes!(admin::create_partner, listing::list_partners))
        .routes(routes!(listing::get_partner))
        .routes(routes!(listing::list_wabas))
        .routes(routes!(listing::get_waba))
        .routes(routes!(listing::list_channels))
        .routes(routes!(admin::create_waba))
        .routes(routes!(admin::create_channel))
        .routes(routes!(admin::rotate_channel_key))
        .routes(routes!(admin::get_channel))
        .routes(routes!(ordering::set_ordering))
        .routes(routes!(partner::get_webhook_url, partner::set_webhook_url))
        .routes(routes!(
            partner::get_webhook_headers,
            partner::set_webhook_headers
        ))
        .routes(routes!(partner_events::create_partner_event))
        .routes(routes!(partner_events::create_partner_signing_secret))
        .routes(routes!(partner_events::enable_messaging))
        .routes(routes!(events::create_event))
        .routes(routes!(admin::create_signing_secret))
        .routes(routes!(admin::create_waba_signing_secret))
        .routes(routes!(events::get_event))
        .routes(routes!(events::list_events))
        .routes(routes!(deliveries::list_deliveries))
        .routes(routes!(deliveries::retry_delivery))
        .routes(routes!(deliveries::retry_deliveries))
        .routes(routes!(destinations::list_destinations))
        .routes(routes!(destinations::get_destination))
        .routes(routes!(destinations::pause_destination))
        .routes(routes!(destinations::resume_destination))
        .routes(routes!(recover::recover_deliveries))
        .routes(routes!(stream::stream))
        .routes(routes!(overview::overview))
        .routes(routes!(meta::verify, meta::receive))
        .routes(routes!(system::metrics))
        .routes(routes!(system::health))
        .routes(routes!(system::ready))
        .split_for_parts();
    let openapi = Arc::new(openapi);
    router
        .merge(console::routes())
        .route(
            "/multi_webhook/",
            delete(multi_webhook::delete_without_name),
        )
        .route(
            "/openapi.json",
            get(move || {
                let openapi = Arc::clone(&openapi);
                async move { Json(openapi.as_ref().clone()) }
            }),
        )
        .route_layer(traced::RecordRoute)
        .fallback(system::not_found)
        .method_not_allowed_fallback(system::method_not_allowed)
        .with_state(state)
}
