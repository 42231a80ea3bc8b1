//! Admin endpoints for destinations: every receiver that deliveries go to, with how it has
//! answered lately (graded against the provider's standards) and which configurations send
//! it deliveries, and why.
//!
//! A destination is a receiver URL's scheme, host, port and path (`DestinationId`); the list
//! is the union of the configured ones and those this node attempted in the last hour.
//! Figures are this node's (each node of a PostgreSQL cluster keeps its own).

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{AdminAuth, PathParam};
use super::AppState;
use crate::clock::now_ms;
use crate::clock::rfc3339;
use crate::delivery::{destination_changed, DestinationHealth, Grade, WindowFigures};
use crate::domain::{redact_query, DestinationId};
use crate::domain::{ChannelId, PartnerId, Target, WabaId};
use crate::metrics::{DestinationRow, HealthRow, Scrape, StateChange, WindowRow};
use crate::store::{ConfiguredRoute, DestinationPause, PauseReason, PendingGroup, RouteReason};

/// Latency percentiles of a window, in ms (bucket upper bounds).
#[derive(Debug, Serialize, ToSchema)]
pub struct LatencyView {
    p50: Option<u64>,
    p90: Option<u64>,
    p99: Option<u64>,
}

/// What a window's attempts looked like.
#[derive(Debug, Serialize, ToSchema)]
pub struct WindowView {
    attempts: u64,
    delivered: u64,
    /// Share answered 200 (1 with no attempts).
    success_rate: f64,
    latency_ms: LatencyView,
    /// Share of attempts that took longer than 1 s (the provider wants under 1 %).
    over_1s_share: f64,
}

impl WindowView {
    fn of(window: &WindowFigures) -> Self {
        Self {
            attempts: window.attempts,
            delivered: window.delivered,
            success_rate: window.success_rate,
            latency_ms: LatencyView {
                p50: window.p50_ms,
                p90: window.p90_ms,
                p99: window.p99_ms,
            },
            over_1s_share: window.over_1s_share,
        }
    }
}

/// One configuration that sends deliveries to the destination.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteView {
    /// The channel it serves (absent for a partner webhook).
    #[serde(skip_serializing_if = "Option::is_none")]
    channel_id: Option<String>,
    /// The partner (partner webhooks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    partner_id: Option<String>,
    /// `phone_number_webhook`, `waba_webhook`, `extra_destination` or `partner_webhook`.
    reason: String,
    /// The extra destination's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl RouteView {
    fn of(route: &ConfiguredRoute) -> Self {
        Self {
            channel_id: route.channel.as_ref().map(ToString::to_string),
            partner_id: route.partner.as_ref().map(ToString::to_string),
            reason: route.reason.as_str().to_owned(),
            name: match &route.reason {
                RouteReason::ExtraDestination(name) => Some(name.clone()),
                _ => None,
            },
        }
    }
}

/// A destination, its health and its routes.
#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationView {
    id: String,
    /// A URL of it, with query values masked.
    url: String,
    /// `paused` (no attempts but one probe every `--probe-interval-s`), else `healthy`, or
    /// `degraded` while its grade is not `ok`.
    state: String,
    /// Since when it is paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    paused_at: Option<String>,
    /// Why: `failing` (nothing but failures for `--pause-after-s`) or `manual`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pause_reason: Option<String>,
    /// `ok`, `degraded` or `failing`, over the last 5 minutes (at least 20 attempts to be
    /// graded below `ok`).
    grade: String,
    last_5m: WindowView,
    last_1h: WindowView,
    /// Deliveries waiting for it (pending, routed to it by the current configuration).
    backlog: u64,
    /// How long the oldest of them has waited, in seconds (since its event arrived or was
    /// last replayed).
    oldest_waiting_s: Option<i64>,
    /// When the next of them is due.
    next_attempt_at: Option<String>,
    /// The configurations that send it deliveries.
    routes: Vec<RouteView>,
}

/// The pending deliveries routed to one destination.
#[derive(Debug, Default, Clone, Copy)]
struct Backlog {
    count: u64,
    oldest: Option<i64>,
    next: Option<i64>,
}

impl Backlog {
    fn add(&mut self, group: &PendingGroup) {
        self.count += group.count;
        self.oldest = Some(self.oldest.map_or(group.oldest, |o| o.min(group.oldest)));
        let next = group.next_attempt_at;
        self.next = Some(self.next.map_or(next, |n| n.min(next)));
    }
}

/// A page of destinations.
#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationPage {
    destinations: Vec<DestinationView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

/// List destinations (configured, or attempted in the last hour), by id.
#[utoipa::path(
    get, path = "/admin/destinations", tag = "Admin",
    security(("admin" = [])),
    params(
        ("after" = Option<String>, Query, description = "Cursor: only ids greater than this"),
        ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "A page of destinations", body = DestinationPage),
        (status = 400, description = "Bad cursor or limit", body = ErrorBody),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
    )
)]
pub async fn list_destinations(
    State(state): State<AppState>,
    _: AdminAuth,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<DestinationPage>, ApiError> {
    let after = query.get("after").cloned().unwrap_or_default();
    let limit = super::deliveries::parse_limit(&query)?;
    let all = destinations(&state).await?;
    let destinations: Vec<DestinationView> = all
        .into_values()
        .filter(|view| view.id > after)
        .take(limit)
        .collect();
    let next_after = (destinations.len() == limit)
        .then(|| destinations.last().map(|d| d.id.clone()))
        .flatten();
    Ok(Json(DestinationPage {
        destinations,
        next_after,
    }))
}

/// One destination.
#[utoipa::path(
    get, path = "/admin/destinations/{id}", tag = "Admin",
    security(("admin" = [])),
    params(("id" = String, Path, description = "The destination id (16 hex digits)")),
    responses(
        (status = 200, description = "The destination", body = DestinationView),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "Neither configured nor attempted in the last hour", body = ErrorBody),
    )
)]
pub async fn get_destination(
    State(state): State<AppState>,
    _: AdminAuth,
    id: PathParam,
) -> Result<Json<DestinationView>, ApiError> {
    Ok(Json(one(&state, &id.0).await?.1))
}

/// The destination a path names, and its view; 404 for an id that is malformed or names
/// a destination neither configured, attempted lately, nor paused.
async fn one(state: &AppState, raw: &str) -> Result<(DestinationId, DestinationView), ApiError> {
    let not_found = || ApiError::NotFound(format!("Destination {raw} not found"));
    let id = DestinationId::parse(raw).ok_or_else(not_found)?;
    let view = destinations(state)
        .await?
        .remove(id.as_str())
        .ok_or_else(not_found)?;
    Ok((id, view))
}

/// Pause a destination by hand: no attempts but one probe every `--probe-interval-s`,
/// until a probe is answered 200 or it is resumed.
#[utoipa::path(
    post, path = "/admin/destinations/{id}/pause", tag = "Admin",
    security(("admin" = [])),
    params(("id" = String, Path, description = "The destination id (16 hex digits)")),
    responses(
        (status = 200, description = "Paused (or paused already)", body = DestinationView),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "Neither configured nor attempted in the last hour", body = ErrorBody),
    )
)]
pub async fn pause_destination(
    State(state): State<AppState>,
    _: AdminAuth,
    id: PathParam,
) -> Result<Json<DestinationView>, ApiError> {
    let (wanted, view) = one(&state, &id.0).await?;
    let url = view.url;
    let pause = DestinationPause {
        id: wanted.clone(),
        url: url.clone(),
        reason: PauseReason::Manual,
        paused_at: now_ms(),
    };
    let (store, interval) = (state.store.as_ref(), state.config.probe_interval);
    if state.pauses.pause(store, pause, interval).await? {
        tracing::warn!(destination = %wanted, "destination paused by an operator");
        let details = serde_json::json!({"reason": "manual"});
        let destination = (&wanted, url.as_str());
        let feed = state.streams.feed();
        destination_changed(
            (store, &state.metrics, feed),
            destination,
            StateChange::Paused,
            details,
        )
        .await?;
    }
    Ok(Json(one(&state, wanted.as_str()).await?.1))
}

/// Resume a paused destination: its waiting deliveries drain at once, under the usual
/// per-destination limits.
#[utoipa::path(
    post, path = "/admin/destinations/{id}/resume", tag = "Admin",
    security(("admin" = [])),
    params(("id" = String, Path, description = "The destination id (16 hex digits)")),
    responses(
        (status = 200, description = "Resumed", body = DestinationView),
        (status = 401, description = "No or wrong admin token", body = ErrorBody),
        (status = 404, description = "Unknown destination", body = ErrorBody),
        (status = 409, description = "Not paused", body = ErrorBody),
    )
)]
pub async fn resume_destination(
    State(state): State<AppState>,
    _: AdminAuth,
    id: PathParam,
) -> Result<Json<DestinationView>, ApiError> {
    let (wanted, _) = one(&state, &id.0).await?;
    let resumed = state.pauses.resume(state.store.as_ref(), &wanted).await?;
    let Some(pause) = resumed else {
        return Err(ApiError::Conflict(format!(
            "Destination {wanted} is not paused"
        )));
    };
    tracing::warn!(destination = %wanted, "destination resumed by an operator");
    let paused_s = (now_ms() - pause.paused_at) / 1000;
    let details = serde_json::json!({"from": "paused", "paused_s": paused_s, "by": "operator"});
    let (store, metrics) = (state.store.as_ref(), &state.metrics);
    let destination = (&wanted, pause.url.as_str());
    let told = (store, metrics.as_ref(), state.streams.feed());
    destination_changed(told, destination, StateChange::Recovered, details).await?;
    Ok(Json(one(&state, wanted.as_str()).await?.1))
}

/// The destinations that need an operator's eye (degraded or paused), for the overview:
/// the same views as the list, from the same reads as `/metrics`.
pub(super) async fn unhealthy(
    state: &AppState,
    pending: &[PendingGroup],
) -> Result<Vec<DestinationView>, ApiError> {
    Ok(
        destinations_with(state, state.health.all(now_ms()), pending)
            .await?
            .into_values()
            .filter(|view| view.state != "healthy")
            .collect(),
    )
}

/// Every destination by id: the configured routes grouped by destination, joined with the
/// health of those attempted.
async fn destinations(state: &AppState) -> Result<BTreeMap<String, DestinationView>, ApiError> {
    let pending = state.backlog.groups(state.store.as_ref()).await?;
    destinations_with(state, state.health.all(now_ms()), &pending).await
}

/// [`destinations`] over a snapshot of the health figures the caller took (`/metrics`
/// renders the same snapshot again).
async fn destinations_with(
    state: &AppState,
    health: Vec<DestinationHealth>,
    pending: &[PendingGroup],
) -> Result<BTreeMap<String, DestinationView>, ApiError> {
    let routes = state.store.configured_routes().await?;
    let mut by_id: BTreeMap<String, (String, Vec<RouteView>)> = BTreeMap::new();
    for route in &routes {
        let Some(id) = DestinationId::of(&route.url) else {
            continue;
        };
        let entry = by_id
            .entry(id.to_string())
            .or_insert_with(|| (redact_query(&route.url).into_owned(), Vec::new()));
        entry.1.push(RouteView::of(route));
    }
    let mut health: HashMap<String, DestinationHealth> =
        health.into_iter().map(|h| (h.id.to_string(), h)).collect();
    for (id, h) in &health {
        by_id
            .entry(id.clone())
            .or_insert_with(|| (h.url.clone(), Vec::new()));
    }
    // The engine's list (kept in step with the store every second): no read of its own.
    for paused in state.pauses.all() {
        by_id
            .entry(paused.pause.id.to_string())
            .or_insert_with(|| (paused.pause.url.clone(), Vec::new()));
    }
    let mut backlogs = backlogs(&routes, pending);
    Ok(by_id
        .into_iter()
        .map(|(id, (url, routes))| {
            let health = health.remove(&id);
            let backlog = backlogs.remove(&id).unwrap_or_default();
            let mut view = view(id.clone(), url, routes, health.as_ref(), backlog);
            let paused = DestinationId::parse(&id).and_then(|id| state.pauses.get(&id));
            if let Some(paused) = paused {
                view.state = "paused".to_owned();
                view.paused_at = Some(rfc3339(paused.pause.paused_at));
                view.pause_reason = Some(paused.pause.reason.as_str().to_owned());
            }
            (id, view)
        })
        .collect())
}

/// Adds up the pending deliveries per destination, each routed as its next attempt would
/// be: a primary delivery to its channel's phone-number webhook, else the WABA webhook; an
/// extra one to the channel's destination of that name; a partner event to the partner's
/// webhook; a WABA-level notification to its WABA's webhook.
fn backlogs(routes: &[ConfiguredRoute], pending: &[PendingGroup]) -> HashMap<String, Backlog> {
    let mut phone: HashMap<&ChannelId, &str> = HashMap::new();
    let mut waba: HashMap<&ChannelId, &str> = HashMap::new();
    let mut extra: HashMap<(&ChannelId, &str), &str> = HashMap::new();
    let mut partner: HashMap<&PartnerId, &str> = HashMap::new();
    let mut waba_level: HashMap<WabaId, &str> = HashMap::new();
    for route in routes {
        let url = route.url.as_str();
        match (&route.reason, &route.channel, &route.partner) {
            (RouteReason::PhoneNumberWebhook, Some(channel), _) => {
                phone.insert(channel, url);
            }
            (RouteReason::WabaWebhook, Some(channel), _) => {
                waba.insert(channel, url);
                if let Some(id) = route.waba {
                    waba_level.insert(id, url);
                }
            }
            (RouteReason::ExtraDestination(name), Some(channel), _) => {
                extra.insert((channel, name.as_str()), url);
            }
            (RouteReason::PartnerWebhook, _, Some(owner)) => {
                partner.insert(owner, url);
            }
            _ => {}
        }
    }
    let mut backlogs: HashMap<String, Backlog> = HashMap::new();
    for group in pending {
        let url = match (
            Target::from_stored(&group.target),
            &group.channel,
            &group.partner,
        ) {
            (Some(Target::Primary), Some(channel), _) => {
                phone.get(channel).or_else(|| waba.get(channel)).copied()
            }
            (Some(Target::Extra(name)), Some(channel), _) => {
                extra.get(&(channel, name.as_str())).copied()
            }
            (Some(Target::Partner), _, Some(owner)) => partner.get(owner).copied(),
            (Some(Target::Waba(id)), _, _) => waba_level.get(&id).copied(),
            _ => None,
        };
        if let Some(id) = url.and_then(DestinationId::of) {
            backlogs.entry(id.to_string()).or_default().add(group);
        }
    }
    backlogs
}

fn view(
    id: String,
    url: String,
    routes: Vec<RouteView>,
    health: Option<&DestinationHealth>,
    backlog: Backlog,
) -> DestinationView {
    let empty = WindowFigures {
        success_rate: 1.0,
        ..WindowFigures::default()
    };
    let grade = health.map_or(Grade::Ok, |h| h.grade);
    DestinationView {
        id,
        url,
        state: if grade == Grade::Ok {
            "healthy"
        } else {
            "degraded"
        }
        .to_owned(),
        paused_at: None,
        pause_reason: None,
        grade: grade.as_str().to_owned(),
        last_5m: WindowView::of(health.map_or(&empty, |h| &h.five_minutes)),
        last_1h: WindowView::of(health.map_or(&empty, |h| &h.hour)),
        backlog: backlog.count,
        oldest_waiting_s: backlog.oldest.map(|at| ((now_ms() - at) / 1000).max(0)),
        next_attempt_at: backlog.next.map(rfc3339),
        routes,
    }
}

/// The per-destination figures of `/metrics`: the backlog and pause state of every
/// destination, and for those attempted lately, their figures per window and their grade;
/// labelled by destination id (bounded, and no URL in the label). Read at scrape time, from
/// the same snapshot of the health figures as the list (written first, so they are served
/// even when the configured routes cannot be read).
pub(super) async fn metrics_rows(
    state: &AppState,
    pending: &[PendingGroup],
    scrape: &mut Scrape,
) -> Result<(), ApiError> {
    let health = state.health.all(now_ms());
    scrape.health = health.iter().map(health_row).collect();
    let views = destinations_with(state, health, pending).await?;
    scrape.destinations = views
        .into_values()
        .map(|v| DestinationRow {
            backlog: v.backlog,
            paused: v.state == "paused",
            oldest_waiting_seconds: v.oldest_waiting_s.unwrap_or(0).max(0) as u64,
            id: v.id,
        })
        .collect();
    Ok(())
}

fn health_row(h: &DestinationHealth) -> HealthRow {
    let window = |w: &WindowFigures| {
        let seconds = |ms: Option<u64>| ms.unwrap_or(0) as f64 / 1000.0;
        WindowRow {
            attempts: w.attempts,
            success_ratio: w.success_rate,
            over_1s_ratio: w.over_1s_share,
            latency_seconds: [seconds(w.p50_ms), seconds(w.p90_ms), seconds(w.p99_ms)],
        }
    };
    HealthRow {
        id: h.id.to_string(),
        windows: [window(&h.five_minutes), window(&h.hour)],
        grades: Grade::ALL
            .iter()
            .map(|&g| (g.as_str(), g == h.grade))
            .collect(),
    }
}
