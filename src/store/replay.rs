//! What the live stream replays from the store after a reconnect: the events and attempts
//! recorded after the client's cursor, read by keyset on their ids, oldest first.

use bytes::Bytes;

use super::{AttemptRecord, EventSummary};
use crate::domain::{AttemptId, ChannelId, DeliveryId, DeliveryState, EventId, Target};

/// The most events, and the most attempts, one replay reads.
pub const REPLAY_LIMIT: usize = 1000;

/// Where a replay starts: after these ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayFrom {
    /// Events with a higher id are replayed.
    pub event: EventId,
    /// Attempts with a higher id are replayed.
    pub attempt: AttemptId,
}

/// The events and attempts after a [`ReplayFrom`], each by ascending id.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// Events, with their stored payload (the stream shows its summary).
    pub events: Vec<StoredEvent>,
    /// Attempts, with their delivery.
    pub attempts: Vec<StoredAttempt>,
}

/// One stored event.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its id, kind, channel, partner and arrival.
    pub summary: EventSummary,
    /// The stored payload.
    pub payload: Bytes,
}

/// One stored attempt and the delivery it belongs to.
#[derive(Debug, Clone)]
pub struct StoredAttempt {
    /// The attempt's id.
    pub id: AttemptId,
    /// Its delivery.
    pub delivery: DeliveryId,
    /// The delivery's event.
    pub event: EventId,
    /// The delivery's channel, if it has one.
    pub channel: Option<ChannelId>,
    /// The delivery's target.
    pub target: Target,
    /// The attempt as recorded (the URL in full: the stream masks it).
    pub record: AttemptRecord,
    /// `Some(state)` when this attempt ended its delivery (`delivered` or `failed`: the
    /// delivery is in that state and this is its latest attempt).
    pub ended: Option<DeliveryState>,
}
