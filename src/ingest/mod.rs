//! Ingest: turn a request into durable events, then hand their deliveries to the engine.
//!
//! Meta's webhook may carry entries and changes for several numbers; it is split per
//! `metadata.phone_number_id` into one WhatsApp envelope per number, so each number's
//! notification is routed, retried and inspected on its own. An admin event is either a
//! `value` (wrapped into the envelope with the channel's WABA id and metadata) or a whole
//! envelope. Nothing is acknowledged before the store committed it, and no store call of
//! ingest waits longer than [`ANSWER_WITHIN`]: a database that does not answer in time is
//! unavailable (503), and the outage is reported to the engine, which pauses.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::delivery::Engine;
use crate::domain::{EventId, EventKind, PartnerEventType, PartnerId, TraceContext, WabaId};
use crate::metrics::{Metrics, Source};
use crate::store::{
    memory_cost, within, DueDelivery, EventBody, NewEvent, SavedEvent, Store, StoreError,
    ANSWER_WITHIN,
};

mod envelope;

pub use envelope::{admin_payload, split_envelope, Part};

/// Why a notification body cannot be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IngestError {
    /// Not a WhatsApp envelope (or value); the message names what is wrong.
    #[error("{0}")]
    Invalid(String),
}

/// The three doors share this: store, then hand over.
#[derive(Clone)]
pub struct Ingest {
    store: Arc<dyn Store>,
    engine: Engine,
    metrics: Arc<Metrics>,
}

impl Ingest {
    /// Ingest over `store`, handing deliveries to `engine`.
    pub fn new(store: Arc<dyn Store>, engine: Engine, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            engine,
            metrics,
        }
    }

    /// Stores `events` durably and starts their deliveries; returns their ids.
    pub async fn accept(
        &self,
        events: Vec<NewEvent>,
        source: Source,
    ) -> Result<Vec<SavedEvent>, StoreError> {
        let handed: Vec<_> = events
            .iter()
            .map(|e| {
                let facts = (e.channel.clone(), e.partner.clone(), e.received_at);
                (e.kind, e.first_target(), facts, e.trace.clone())
            })
            .collect();
        let deliverable = handed
            .iter()
            .filter(|(_, target, _, _)| target.is_some())
            .count();
        let bytes = events
            .iter()
            .zip(&handed)
            .filter(|(_, (_, target, _, _))| target.is_some())
            .map(|(event, _)| memory_cost(event.body.estimated_len()))
            .sum();
        let mut reservation = self.engine.reserve(deliverable, bytes);
        let claim_until = reservation.as_ref().map(|_| self.engine.lease_until());
        let feed = self.engine.feed();
        let told = feed.facts_to_tell(&events);
        let saved = self
            .bounded(self.store.save_events(events, claim_until))
            .await?;
        tracing::debug!(?source, events = saved.len(), "events stored");
        feed.tell_stored(told, &saved);
        for (event, (kind, target, (channel, partner, received_at), trace)) in
            saved.iter().zip(handed)
        {
            self.metrics.event_stored(source, kind);
            let (Some(reservation), Some(delivery), Some(lease), Some(target)) =
                (reservation.as_mut(), event.delivery, event.lease, target)
            else {
                continue;
            };
            let job = DueDelivery {
                id: delivery,
                event: event.event,
                channel,
                partner,
                target,
                payload: event.payload.clone(),
                attempts: 0,
                window_start: received_at,
                window_attempts: 0,
                lease,
                trace,
            };
            self.engine.hand_over(job, reservation);
        }
        Ok(saved)
    }

    /// `call` bounded by [`ANSWER_WITHIN`]; an unavailable database is reported to the
    /// engine. An event whose save timed out may still commit later: it is then delivered
    /// (its lease runs out and the poller claims it) although its sender was answered 503
    /// and will send it again: at-least-once, never an acknowledgement of what was lost.
    pub async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let result = within(ANSWER_WITHIN, call).await;
        if let Err(error) = &result {
            self.engine.outage().failed(error);
        }
        result
    }

    /// [`Ingest::accept`] for one event; returns its id.
    pub async fn accept_one(&self, event: NewEvent, source: Source) -> Result<EventId, StoreError> {
        let saved = self.accept(vec![event], source).await?;
        saved.first().map(|s| s.event).ok_or(StoreError::Abandoned)
    }

    /// Splits a Meta notification: one event per number; per WABA, one event of its
    /// WABA-level changes (for the WABA webhook) and one partner event per change; parts
    /// that name no known number or WABA are kept as unroutable. Every event keeps the
    /// notification's trace context, if it came with one.
    pub async fn meta_events(
        &self,
        body: &[u8],
        trace: Option<TraceContext>,
    ) -> Result<Vec<NewEvent>, IngestEventsError> {
        let received_at = crate::clock::now_ms();
        let mut events = Vec::new();
        for part in split_envelope(body)? {
            let bytes = |envelope: &Value, whole: bool| match whole {
                true => Bytes::copy_from_slice(body),
                false => built_body(envelope),
            };
            match &part {
                Part::Number {
                    phone_number_id,
                    envelope,
                    whole,
                } => events.push(
                    match self
                        .bounded(self.store.channel_by_phone_number_id(phone_number_id))
                        .await?
                    {
                        Some(channel) => NewEvent {
                            kind: EventKind::Whatsapp,
                            channel: Some(channel.id),
                            partner: None,
                            phone_number_id: Some(phone_number_id.clone()),
                            waba: None,
                            body: EventBody::Bytes(bytes(envelope, *whole)),
                            received_at,
                            trace: None,
                        },
                        None => unroutable(Some(phone_number_id.clone()), envelope, received_at),
                    },
                ),
                Part::Waba {
                    waba,
                    envelope,
                    whole,
                } => {
                    match self.waba_route(waba).await? {
                        Some((waba, partner)) => {
                            events.push(NewEvent {
                                kind: EventKind::Waba,
                                channel: None,
                                partner: Some(partner.clone()),
                                phone_number_id: None,
                                waba: Some(waba),
                                body: EventBody::Bytes(bytes(envelope, *whole)),
                                received_at,
                                trace: None,
                            });
                            events.extend(part.changes().map(|change| {
                                waba_partner_event(&partner, waba, change, received_at)
                            }));
                        }
                        None => events.push(unroutable(None, envelope, received_at)),
                    }
                }
            }
        }
        if trace.is_some() {
            for event in &mut events {
                event.trace.clone_from(&trace);
            }
        }
        Ok(events)
    }

    /// The WABA a WABA-level part names (Meta writes the id as a string) and its owner.
    async fn waba_route(&self, waba: &Value) -> Result<Option<(WabaId, PartnerId)>, StoreError> {
        let id = match waba {
            Value::String(text) => text.parse::<i64>().ok(),
            Value::Number(number) => number.as_i64(),
            _ => None,
        };
        let Some(waba) = id.and_then(|id| WabaId::new(id).ok()) else {
            return Ok(None);
        };
        Ok(self
            .bounded(self.store.waba_route(waba))
            .await?
            .map(|route| (waba, route.partner)))
    }
}

/// The partner event of one WABA-level change: `waba_template_status_changed` for a
/// template status change (its data as before), `waba_update` with the field for the rest.
fn waba_partner_event(partner: &PartnerId, waba: WabaId, change: &Value, at: i64) -> NewEvent {
    let field = change.get("field").cloned().unwrap_or(Value::Null);
    let value = change.get("value").cloned().unwrap_or(Value::Null);
    if field == TEMPLATE_STATUS_FIELD {
        let data = json!({ "waba_id": waba.get(), "value": value });
        return partner_event(
            partner.clone(),
            PartnerEventType::WABA_TEMPLATE_STATUS_CHANGED,
            data,
            at,
        );
    }
    let data = json!({ "waba_id": waba.get(), "field": field, "value": value });
    partner_event(partner.clone(), PartnerEventType::WABA_UPDATE, data, at)
}

/// The `field` of template status changes, which keep their own partner event.
const TEMPLATE_STATUS_FIELD: &str = "message_template_status_update";

/// A notification kept for inspection, not delivered.
fn unroutable(phone_number_id: Option<String>, envelope: &Value, received_at: i64) -> NewEvent {
    NewEvent {
        kind: EventKind::Unroutable,
        channel: None,
        partner: None,
        phone_number_id,
        waba: None,
        body: EventBody::Bytes(built_body(envelope)),
        received_at,
        trace: None,
    }
}

/// The bytes of an envelope Switchboard built, in Meta's escaped-unicode form.
fn built_body(envelope: &Value) -> Bytes {
    Bytes::from(crate::domain::ascii_escaped(&envelope.to_string()).into_owned())
}

/// A partner event of a built-in `kind` (any validated type: [`NewEvent::partner`]).
pub fn partner_event(partner: PartnerId, kind: &'static str, data: Value, at: i64) -> NewEvent {
    NewEvent::partner(partner, PartnerEventType::builtin(kind), data, at)
}

/// Failure of [`Ingest::meta_events`]: a bad body, or the store.
#[derive(Debug, thiserror::Error)]
pub enum IngestEventsError {
    /// The body is not a WhatsApp envelope.
    #[error(transparent)]
    Invalid(#[from] IngestError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An [`IngestError`] with `message`.
fn invalid(message: impl Into<String>) -> IngestError {
    IngestError::Invalid(message.into())
}
