//! Admin endpoints for events: inject a notification (sandbox), list events, and show one
//! with its deliveries and every attempt.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::deliveries::{next_cursor, parse_page, DeliveryView};
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminAuth, IncomingTrace, PathParam, RawBody};
use super::AppState;
use crate::clock::{now_ms, rfc3339};
use crate::domain::{ChannelId, EventId, EventKind, TraceContext};
use crate::ingest::admin_payload;
use crate::metrics::Source;
use crate::store::{EventBody, EventFilter, EventSummary, NewEvent};

/// An accepted event.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub(super) event_id: i64,
}

/// Inject a notification for a channel, as Meta would send it (sandbox and tests).
#[utoipa::path(
    post, path = "/admin/channels/{channel_id}/events", tag = "Admin",
    security(("admin" = [])),
    params(("channel_id" = String, Path, description = "The channel's id")),
    request_body(content = Object, description = "A `value` object (wrapped into the envelope with the channel's WABA id and metadata) or a whole envelope"),
    responses(
        (status = 202, description = "Stored durably; delivery started", body = Accepted),
        (status = 400, description = "Not a JSON object", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "Unknown channel", body = ErrorBody),
        (status = 503, description = "The database is unavailable (or did not answer within 5 s): nothing acknowledged; retry after Retry-After", body = ErrorBody),
    )
)]
pub async fn create_event(
    State(state): State<AppState>,
    _: AdminAuth,
    PathParam(channel_id): PathParam,
    IncomingTrace(trace): IncomingTrace,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let id = ChannelId::from_raw(channel_id);
    let Some(channel) = state.ingest.bounded(state.store.channel_ref(&id)).await? else {
        return Err(ApiError::NotFound(format!("Channel {id} not found")));
    };
    let event = NewEvent {
        kind: EventKind::Whatsapp,
        body: EventBody::Bytes(admin_payload(&channel, &body)?),
        phone_number_id: Some(channel.phone_number_id.as_str().to_owned()),
        waba: None,
        channel: Some(channel.id),
        partner: None,
        received_at: now_ms(),
        trace,
    };
    let event_id = state.ingest.accept_one(event, Source::Admin).await?.0;
    Ok((StatusCode::ACCEPTED, Json(Accepted { event_id })))
}

/// An event with its deliveries and every attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// Id, kind, channel or partner, arrival.
    #[serde(flatten)]
    event: EventListItem,
    /// The payload delivered, as JSON; `null` once purged.
    payload: Value,
    /// When the payload retention (`--payload-retention-hours`) emptied the payload;
    /// absent while it is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_purged_at: Option<String>,
    /// The W3C `traceparent` the event came with (sent on with each delivery), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<String>,
    /// The `tracestate` beside it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    tracestate: Option<String>,
    deliveries: Vec<DeliveryView>,
}

/// Show an event, its deliveries and every attempt.
#[utoipa::path(
    get, path = "/admin/events/{event_id}", tag = "Admin",
    security(("admin" = [])),
    params(("event_id" = i64, Path, description = "The event's id")),
    responses(
        (status = 200, description = "The event", body = EventView),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 404, description = "Unknown event", body = ErrorBody),
    )
)]
pub async fn get_event(
    State(state): State<AppState>,
    _: AdminAuth,
    PathParam(event_id): PathParam,
) -> Result<Json<EventView>, ApiError> {
    let not_found = || ApiError::NotFound(format!("Event {event_id} not found"));
    let id = event_id.parse::<i64>().map_err(|_| not_found())?;
    let event = state
        .store
        .event(EventId(id))
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(EventView {
        event: EventListItem::of(event.summary),
        payload: payload_view(&event.payload, event.payload_purged_at),
        payload_purged_at: event.payload_purged_at.map(rfc3339),
        traceparent: event.trace.as_ref().map(TraceContext::traceparent),
        tracestate: event
            .trace
            .as_ref()
            .and_then(|t| t.state().map(str::to_owned)),
        deliveries: event
            .deliveries
            .into_iter()
            .map(|(delivery, attempts)| DeliveryView::of(delivery, Some(attempts)))
            .collect(),
    }))
}

/// The payload as the event view shows it: JSON, or a string when it is not JSON; `null`
/// once purged.
fn payload_view(payload: &[u8], purged_at: Option<i64>) -> Value {
    if purged_at.is_some() {
        return Value::Null;
    }
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into()))
}

/// An event in a list (without payload and deliveries: see `GET /admin/events/{id}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventListItem {
    id: i64,
    /// `whatsapp`, `unroutable` or `partner`.
    kind: String,
    channel_id: Option<String>,
    partner_id: Option<String>,
    phone_number_id: Option<String>,
    received_at: String,
}

impl EventListItem {
    fn of(event: EventSummary) -> Self {
        Self {
            id: event.id.0,
            kind: event.kind.as_str().to_owned(),
            channel_id: event.channel.map(|c| c.to_string()),
            partner_id: event.partner.map(|p| p.to_string()),
            phone_number_id: event.phone_number_id,
            received_at: rfc3339(event.received_at),
        }
    }
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    events: Vec<EventListItem>,
    /// Pass as `after` for the next page; absent on the last page.
    next_after: Option<i64>,
}

/// List events, oldest first, paged by id; `kind=unroutable` finds the notifications Meta
/// sent for phone numbers no channel has.
#[utoipa::path(
    get, path = "/admin/events", tag = "Admin",
    security(("admin" = [])),
    params(
        ("kind" = Option<String>, Query, description = "whatsapp, waba, unroutable or partner"),
        ("after" = Option<i64>, Query, description = "Cursor: only ids greater than this"),
        ("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "A page", body = EventPage),
        (status = 400, description = "Invalid filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
    )
)]
pub async fn list_events(
    State(state): State<AppState>,
    _: AdminAuth,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<EventPage>, ApiError> {
    let kind = query
        .get("kind")
        .map(|raw| {
            EventKind::parse(raw).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "Invalid kind {raw:?}: expected whatsapp, waba, unroutable or partner"
                ))
            })
        })
        .transpose()?;
    let (after, limit) = parse_page(&query)?;
    let filter = EventFilter {
        kind,
        after: after.map(EventId),
        limit,
    };
    let events = state.store.events(filter).await?;
    let next_after = next_cursor(&events, limit, |e| e.id.0);
    Ok(Json(EventPage {
        events: events.into_iter().map(EventListItem::of).collect(),
        next_after,
    }))
}
