//! The live feed: what happens now (an event accepted, an attempt finished, a delivery
//! ended, a destination's state changed), told to whoever watches `GET /admin/stream`.
//!
//! One `tokio::sync::broadcast` channel of [`FEED_CAPACITY`] items: publishing never
//! blocks and never waits for a reader (a reader that falls more than the capacity behind
//! loses the oldest items and is told so, [`broadcast::error::RecvError::Lagged`]), so a
//! slow client can neither slow delivery nor make memory grow. Publishers ask
//! [`Feed::is_watched`] first and build nothing while no one listens: without a stream
//! open, the delivery path pays one uncontended lock (the channel's receiver count) per
//! publish point.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::clock::rfc3339;
use crate::domain::{
    redact_query, summary, AttemptErrorKind, AttemptId, DeliveryId, DeliveryState, DestinationId,
    EventId, EventKind, Summary,
};
use crate::metrics::StateChange;
use crate::store::{
    DueDelivery, EventSummary, NewEvent, Outcome, SavedEvent, Settlement, StoredAttempt,
    StoredEvent,
};

/// Items the feed keeps for its slowest reader before that reader lags.
pub const FEED_CAPACITY: usize = 1024;

/// The broadcast side of the feed; the engine owns it, ingest and the API share it.
#[derive(Debug)]
pub struct Feed {
    sender: broadcast::Sender<Arc<FeedItem>>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            sender: broadcast::Sender::new(FEED_CAPACITY),
        }
    }
}

impl Feed {
    /// Whether anyone listens: publishers build their item only then.
    pub fn is_watched(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Tells `item` to every reader, without waiting for any.
    pub fn publish(&self, item: FeedItem) {
        // An error only means no one listens (any more): nothing to do.
        let _ = self.sender.send(Arc::new(item));
    }

    /// The facts of `events` to tell once they are stored, when someone watches (taken
    /// before the store consumes them; ids are known only after).
    pub fn facts_to_tell(&self, events: &[NewEvent]) -> Option<Vec<EventSummary>> {
        self.is_watched().then(|| {
            events
                .iter()
                .map(|event| EventSummary {
                    id: EventId(0),
                    kind: event.kind,
                    channel: event.channel.clone(),
                    partner: event.partner.clone(),
                    phone_number_id: event.phone_number_id.clone(),
                    received_at: event.received_at,
                })
                .collect()
        })
    }

    /// Tells the events just stored (`facts` from [`Feed::facts_to_tell`], in order).
    pub fn tell_stored(&self, facts: Option<Vec<EventSummary>>, saved: &[SavedEvent]) {
        for (mut summary, event) in facts.into_iter().flatten().zip(saved) {
            summary.id = event.event;
            let stored = StoredEvent {
                summary,
                payload: event.payload.clone(),
            };
            self.publish(FeedItem::event(&stored));
        }
    }

    /// A new reader of what is published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedItem>> {
        self.sender.subscribe()
    }
}

/// One thing that happened, as the stream tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    /// An event was stored.
    Event(EventMessage),
    /// An attempt was recorded.
    Attempt(AttemptMessage),
    /// A delivery ended: delivered, failed or dropped.
    Delivery(DeliveryMessage),
    /// A destination was degraded, paused or recovered.
    Destination(DestinationMessage),
}

/// `event` messages' data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventMessage {
    /// The event's id (the cursor's first half).
    pub event_id: EventId,
    /// `whatsapp`, `waba`, `unroutable` or `partner`.
    pub kind: EventKind,
    /// Its channel, if it has one.
    pub channel_id: Option<String>,
    /// Its partner (partner and WABA events).
    pub partner_id: Option<String>,
    /// Meta's phone_number_id, if it came with one.
    pub phone_number_id: Option<String>,
    /// Arrival, RFC 3339.
    pub received_at: String,
    /// What the payload says ([`crate::domain::summary`]).
    pub summary: Summary,
}

/// `attempt` messages' data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptMessage {
    /// The attempt's id (the cursor's second half).
    pub attempt_id: AttemptId,
    /// Its delivery.
    pub delivery_id: DeliveryId,
    /// The delivery's event.
    pub event_id: EventId,
    /// The delivery's channel, if it has one.
    pub channel_id: Option<String>,
    /// `primary`, `extra:<name>`, `partner`, `waba:<id>`.
    pub target: String,
    /// The destination the attempt went to.
    pub destination: Option<String>,
    /// Where it went, query values masked.
    pub url: String,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// Why no answer came (`timeout`, `connect`, …), if none did.
    pub error: Option<&'static str>,
    /// How long it took, ms.
    pub duration_ms: i64,
    /// When it started, RFC 3339.
    pub at: String,
    /// The delay a 429 or 503 asked for, ms.
    pub retry_after_ms: Option<i64>,
}

/// `delivery` messages' data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryMessage {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// Its event.
    pub event_id: EventId,
    /// Its channel, if it has one.
    pub channel_id: Option<String>,
    /// Its target.
    pub target: String,
    /// `delivered`, `failed` or `dropped`.
    pub state: &'static str,
    /// The destination of its last attempt (`None` when dropped: nothing was sent).
    pub destination: Option<String>,
}

/// `destination` messages' data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestinationMessage {
    /// The destination.
    pub destination: String,
    /// Its URL, query values masked.
    pub url: String,
    /// `degraded`, `paused` or `recovered`.
    pub change: &'static str,
}

impl FeedItem {
    /// The SSE `event:` name, also the `kind` filter's word.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Event(_) => "event",
            Self::Attempt(_) => "attempt",
            Self::Delivery(_) => "delivery",
            Self::Destination(_) => "destination",
        }
    }

    /// The SSE `data:` line: the message as one line of JSON.
    pub fn data(&self) -> String {
        let text = match self {
            Self::Event(message) => serde_json::to_string(message),
            Self::Attempt(message) => serde_json::to_string(message),
            Self::Delivery(message) => serde_json::to_string(message),
            Self::Destination(message) => serde_json::to_string(message),
        };
        // Plain structs of strings and numbers always serialise.
        text.unwrap_or_default()
    }

    /// The channel the message is about, if any (the `channel` filter).
    pub fn channel(&self) -> Option<&str> {
        match self {
            Self::Event(m) => m.channel_id.as_deref(),
            Self::Attempt(m) => m.channel_id.as_deref(),
            Self::Delivery(m) => m.channel_id.as_deref(),
            Self::Destination(_) => None,
        }
    }

    /// The destination the message is about, if any (the `destination` filter).
    pub fn destination(&self) -> Option<&str> {
        match self {
            Self::Event(_) => None,
            Self::Attempt(m) => m.destination.as_deref(),
            Self::Delivery(m) => m.destination.as_deref(),
            Self::Destination(m) => Some(&m.destination),
        }
    }

    /// The event's id, for an `event` message (the cursor's first half).
    pub fn event_id(&self) -> Option<EventId> {
        match self {
            Self::Event(m) => Some(m.event_id),
            _ => None,
        }
    }

    /// The attempt's id, for an `attempt` message (the cursor's second half).
    pub fn attempt_id(&self) -> Option<AttemptId> {
        match self {
            Self::Attempt(m) => Some(m.attempt_id),
            _ => None,
        }
    }

    /// The `event` message of a stored event.
    pub fn event(stored: &StoredEvent) -> Self {
        let event = &stored.summary;
        Self::Event(EventMessage {
            event_id: event.id,
            kind: event.kind,
            channel_id: event.channel.as_ref().map(|c| c.as_str().to_owned()),
            partner_id: event.partner.as_ref().map(|p| p.as_str().to_owned()),
            phone_number_id: event.phone_number_id.clone(),
            received_at: rfc3339(event.received_at),
            summary: summary(event.kind, &stored.payload),
        })
    }

    /// The `attempt` message of a stored attempt, followed by its `delivery` message when
    /// the attempt ended the delivery.
    pub fn attempt(stored: &StoredAttempt) -> (Self, Option<Self>) {
        let record = &stored.record;
        let destination = DestinationId::of(&record.url).map(|d| d.as_str().to_owned());
        let channel_id = stored.channel.as_ref().map(|c| c.as_str().to_owned());
        let target = stored.target.to_stored();
        let ended = stored.ended.map(|state| {
            Self::Delivery(DeliveryMessage {
                delivery_id: stored.delivery,
                event_id: stored.event,
                channel_id: channel_id.clone(),
                target: target.clone(),
                state: state.as_str(),
                destination: destination.clone(),
            })
        });
        let attempt = Self::Attempt(AttemptMessage {
            attempt_id: stored.id,
            delivery_id: stored.delivery,
            event_id: stored.event,
            channel_id,
            target,
            destination,
            url: redact_query(&record.url).into_owned(),
            status: record.status,
            error: record.error.map(AttemptErrorKind::as_str),
            duration_ms: record.duration_ms,
            at: rfc3339(record.started_at),
            retry_after_ms: record.retry_after_ms,
        });
        (attempt, ended)
    }

    /// The `destination` message of a state change (`url` already masked).
    pub fn destination_changed(id: &DestinationId, url: &str, change: StateChange) -> Self {
        Self::Destination(DestinationMessage {
            destination: id.as_str().to_owned(),
            url: url.to_owned(),
            change: match change {
                StateChange::Degraded => "degraded",
                StateChange::Paused => "paused",
                StateChange::Recovered => "recovered",
            },
        })
    }
}

/// Tells what a recorded settle did: its attempt (when its id is known) and, when the
/// delivery ended, its `delivery` message. A settle re-run that could not learn its attempt's
/// id tells only the delivery's end.
pub fn tell_settled(feed: &Feed, job: &DueDelivery, outcome: &Outcome, attempt: Option<AttemptId>) {
    if !feed.is_watched() {
        return;
    }
    let ended = match outcome.settlement {
        Settlement::Delivered { .. } => Some(DeliveryState::Delivered),
        Settlement::GaveUp { .. } => Some(DeliveryState::Failed),
        Settlement::Dropped { .. } => Some(DeliveryState::Dropped),
        Settlement::Retry { .. } | Settlement::Deferred { .. } => None,
    };
    if let (Some(record), Some(id)) = (&outcome.attempt, attempt) {
        let stored = StoredAttempt {
            id,
            delivery: job.id,
            event: job.event,
            channel: job.channel.clone(),
            target: job.target.clone(),
            record: record.clone(),
            ended,
        };
        let (attempt, ended) = FeedItem::attempt(&stored);
        feed.publish(attempt);
        if let Some(ended) = ended {
            feed.publish(ended);
        }
        return;
    }
    let Some(state) = ended else { return };
    let url = outcome.attempt.as_ref().map(|a| a.url.as_str());
    feed.publish(FeedItem::Delivery(DeliveryMessage {
        delivery_id: job.id,
        event_id: job.event,
        channel_id: job.channel.as_ref().map(|c| c.as_str().to_owned()),
        target: job.target.to_stored(),
        state: state.as_str(),
        destination: url
            .and_then(DestinationId::of)
            .map(|d| d.as_str().to_owned()),
    }));
}
