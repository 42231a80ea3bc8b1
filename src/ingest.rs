//! Ingest: turn a request into durable events, then hand their deliveries to the engine.
//!
//! Meta's webhook may carry entries and changes for several numbers; it is split per
//! `metadata.phone_number_id` into one WhatsApp envelope per number, so each number's
//! notification is routed, retried and inspected on its own. An admin event is either a
//! `value` (wrapped into the envelope with the channel's WABA id and metadata) or a whole
//! envelope. Nothing is acknowledged before the store committed it.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::delivery::Engine;
use crate::domain::{EventKind, Target};
use crate::metrics::{Metrics, Source};
use crate::store::{ChannelRef, DueDelivery, NewEvent, SavedEvent, Store, StoreError};

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

/// One number's part of a Meta notification.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberEnvelope {
    /// `metadata.phone_number_id` of its changes (`None` for changes without one).
    pub phone_number_id: Option<String>,
    /// The WhatsApp envelope with only this number's changes.
    pub envelope: Value,
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
        let deliverable = events
            .iter()
            .filter(|e| e.kind == EventKind::Whatsapp && e.channel.is_some())
            .count();
        let unroutable = events.len() - deliverable;
        let mut reservation = self.engine.reserve(deliverable);
        let claim_until = reservation.as_ref().map(|_| self.engine.lease_until());
        let handed: Vec<_> = events
            .iter()
            .map(|e| (e.channel.clone(), e.payload.clone(), e.received_at))
            .collect();
        let saved = self.store.save_events(events, claim_until).await?;
        tracing::debug!(?source, events = saved.len(), unroutable, "events stored");
        self.metrics.events_ingested(source, saved.len());
        self.metrics.events_unroutable(unroutable);
        if let Some(reservation) = reservation.as_mut() {
            for (event, (channel, payload, received_at)) in saved.iter().zip(handed) {
                let Some(delivery) = event.delivery else {
                    continue;
                };
                let job = DueDelivery {
                    id: delivery,
                    event: event.event,
                    channel,
                    target: Target::Primary,
                    payload,
                    attempts: 0,
                    window_start: received_at,
                    window_attempts: 0,
                };
                self.engine.hand_over(job, reservation);
            }
        }
        Ok(saved)
    }

    /// Splits a Meta notification and resolves each part's channel.
    pub async fn meta_events(&self, body: &[u8]) -> Result<Vec<NewEvent>, IngestEventsError> {
        let parts = split_envelope(body)?;
        let received_at = crate::clock::now_ms();
        let mut events = Vec::with_capacity(parts.len());
        for part in parts {
            let channel = match &part.phone_number_id {
                Some(id) => self.store.channel_by_phone_number_id(id).await?,
                None => None,
            };
            events.push(NewEvent {
                kind: if channel.is_some() {
                    EventKind::Whatsapp
                } else {
                    EventKind::Unroutable
                },
                channel: channel.map(|c| c.id),
                phone_number_id: part.phone_number_id,
                payload: Bytes::from(part.envelope.to_string()),
                received_at,
            });
        }
        Ok(events)
    }
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

fn invalid(message: impl Into<String>) -> IngestError {
    IngestError::Invalid(message.into())
}

/// Splits a WhatsApp envelope into one envelope per `metadata.phone_number_id`, in order of
/// first appearance; each keeps its entries' ids and its changes' order.
pub fn split_envelope(body: &[u8]) -> Result<Vec<NumberEnvelope>, IngestError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("Invalid json: {e}")))?;
    let object = root
        .get("object")
        .cloned()
        .unwrap_or_else(|| json!("whatsapp_business_account"));
    let Some(entries) = root.get("entry").and_then(Value::as_array) else {
        return Err(invalid("the notification has no \"entry\" array"));
    };
    let mut parts: Vec<(Option<String>, Vec<Value>)> = Vec::new();
    for entry in entries {
        let Some(changes) = entry.get("changes").and_then(Value::as_array) else {
            return Err(invalid("an entry has no \"changes\" array"));
        };
        let entry_id = entry.get("id").cloned().unwrap_or(Value::Null);
        for change in changes {
            let number = change
                .pointer("/value/metadata/phone_number_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let index = match parts.iter().position(|(n, _)| *n == number) {
                Some(index) => index,
                None => {
                    parts.push((number, Vec::new()));
                    parts.len() - 1
                }
            };
            push_change(&mut parts[index].1, &entry_id, change.clone());
        }
    }
    Ok(parts
        .into_iter()
        .map(|(phone_number_id, entry)| NumberEnvelope {
            phone_number_id,
            envelope: json!({ "object": object, "entry": entry }),
        })
        .collect())
}

/// Appends `change` to the last entry if it has the same id, else starts a new entry.
fn push_change(entries: &mut Vec<Value>, entry_id: &Value, change: Value) {
    if let Some(last) = entries.last_mut() {
        if last.get("id") == Some(entry_id) {
            if let Some(changes) = last.get_mut("changes").and_then(Value::as_array_mut) {
                changes.push(change);
                return;
            }
        }
    }
    entries.push(json!({ "id": entry_id, "changes": [change] }));
}

/// The payload of an admin event for `channel`: a whole envelope is kept as sent; a value
/// is wrapped into the envelope Meta would send, with the channel's metadata filled in.
pub fn admin_payload(channel: &ChannelRef, body: &[u8]) -> Result<Bytes, IngestError> {
    let parsed: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("Invalid json: {e}")))?;
    let Value::Object(mut value) = parsed else {
        return Err(invalid(
            "the event must be a JSON object: a \"value\" object or a whole envelope",
        ));
    };
    if value.contains_key("entry") {
        if !value.get("entry").is_some_and(Value::is_array) {
            return Err(invalid("\"entry\" must be an array"));
        }
        return Ok(Bytes::copy_from_slice(body));
    }
    value
        .entry("messaging_product")
        .or_insert_with(|| json!("whatsapp"));
    let metadata = value
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(metadata) = metadata {
        let number = channel.phone_number.as_str().trim_start_matches('+');
        metadata
            .entry("display_phone_number")
            .or_insert_with(|| json!(number));
        metadata
            .entry("phone_number_id")
            .or_insert_with(|| json!(channel.phone_number_id.as_str()));
    }
    let envelope = json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": channel.waba_id.to_string(),
            "changes": [{ "value": value, "field": "messages" }]
        }]
    });
    Ok(Bytes::from(envelope.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(number: &str, text: &str) -> Value {
        json!({"value": {"messaging_product": "whatsapp",
                         "metadata": {"display_phone_number": "1", "phone_number_id": number},
                         "messages": [{"id": text}]},
               "field": "messages"})
    }

    #[test]
    fn splits_changes_per_phone_number_id_keeping_order() {
        let body = json!({"object": "whatsapp_business_account", "entry": [
            {"id": "W1", "changes": [change("111", "a"), change("222", "b"), change("111", "c")]},
            {"id": "W2", "changes": [change("333", "d")]},
        ]});
        let parts = split_envelope(body.to_string().as_bytes()).unwrap();
        let numbers: Vec<_> = parts.iter().map(|p| p.phone_number_id.as_deref()).collect();
        assert_eq!(numbers, [Some("111"), Some("222"), Some("333")]);
        assert_eq!(
            parts[0].envelope,
            json!({"object": "whatsapp_business_account",
                   "entry": [{"id": "W1", "changes": [change("111", "a"), change("111", "c")]}]})
        );
        assert_eq!(parts[2].envelope["entry"][0]["id"], "W2");
    }

    #[test]
    fn changes_without_a_number_form_their_own_part() {
        let template =
            json!({"value": {"event": "APPROVED"}, "field": "message_template_status_update"});
        let body = json!({"object": "whatsapp_business_account",
                          "entry": [{"id": "W1", "changes": [template, change("111", "a")]}]});
        let parts = split_envelope(body.to_string().as_bytes()).unwrap();
        assert_eq!(parts[0].phone_number_id, None);
        assert_eq!(parts[1].phone_number_id.as_deref(), Some("111"));
    }

    #[test]
    fn rejects_bodies_that_are_not_envelopes() {
        for body in ["", "[]", "{}", "{\"entry\": [{}]}", "{\"entry\": 5}"] {
            assert!(split_envelope(body.as_bytes()).is_err(), "{body}");
        }
    }
}
