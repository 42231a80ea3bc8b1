//! Rows back into records, once for both backends.
//!
//! Each backend reads a row's columns through [`StoredRow`] (its driver's typed getters);
//! the decoders here turn them into the store's records. A value this version cannot read
//! (an unknown state or target, a count out of range, an attempt without a URL) is an error
//! that names its row ([`Corrupt`]), never a default that would show something false.

use crate::domain::{
    AttemptId, ChannelId, DeliveryId, DeliveryState, DestinationId, EventId, EventKind, PartnerId,
    Target,
};
use crate::store::columns::parse_error_kind;
use crate::store::replay_sql::ended;
use crate::store::{
    AttemptRecord, DeliveryRecord, DestinationPause, EventSummary, PauseReason, StoreError,
    StoredAttempt,
};

/// A stored value that cannot be read: which row, which column, what it holds.
#[derive(Debug, thiserror::Error)]
#[error("corrupt row: {row}: {column} {value:?} cannot be read")]
pub struct Corrupt {
    /// The row, e.g. "delivery 42" or "attempt 7".
    pub row: String,
    /// The column.
    pub column: &'static str,
    /// What it holds.
    pub value: String,
}

/// The typed getters of one driver's row, by column index.
pub trait StoredRow {
    /// An integer column.
    fn int(&self, index: usize) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError>;
    /// A text column.
    fn text(&self, index: usize) -> Result<String, StoreError>;
    /// A nullable text column.
    fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError>;
    /// A nullable boolean column (or expression).
    fn opt_flag(&self, index: usize) -> Result<Option<bool>, StoreError>;
}

fn corrupt(row: String, column: &'static str, value: impl ToString) -> StoreError {
    StoreError::Corrupt(Corrupt {
        row,
        column,
        value: value.to_string(),
    })
}

/// A stored target, or the error naming `row`.
pub fn target(raw: String, row: impl Fn() -> String) -> Result<Target, StoreError> {
    Target::from_stored(&raw).ok_or_else(|| corrupt(row(), "target", raw))
}

fn state(raw: String, row: impl Fn() -> String) -> Result<DeliveryState, StoreError> {
    DeliveryState::parse(&raw).ok_or_else(|| corrupt(row(), "state", raw))
}

fn count(raw: i64, column: &'static str, row: impl Fn() -> String) -> Result<u32, StoreError> {
    u32::try_from(raw).map_err(|_| corrupt(row(), column, raw))
}

/// A paused destination from a row of `id, url, reason, paused_at`
/// ([`PAUSED_DESTINATIONS`](crate::store::types::PAUSED_DESTINATIONS) and the resume's
/// `RETURNING`).
pub fn destination_pause(row: &impl StoredRow) -> Result<DestinationPause, StoreError> {
    let id = row.text(0)?;
    let name = || format!("destination pause {id}");
    let reason = row.text(2)?;
    Ok(DestinationPause {
        id: DestinationId::parse(&id).ok_or_else(|| corrupt(name(), "id", &id))?,
        url: row.text(1)?,
        reason: PauseReason::from_stored(&reason)
            .ok_or_else(|| corrupt(name(), "reason", reason))?,
        paused_at: row.int(3)?,
    })
}

/// The columns [`event_summary`] reads, in its order.
pub const SUMMARY_COLUMNS: &str = "id, kind, channel_id, partner_id, phone_number_id, received_at";

/// An event's summary from the first columns of a row selecting [`SUMMARY_COLUMNS`].
pub fn event_summary(row: &impl StoredRow) -> Result<EventSummary, StoreError> {
    let id = row.int(0)?;
    let kind = row.text(1)?;
    Ok(EventSummary {
        id: EventId(id),
        kind: EventKind::parse(&kind)
            .ok_or_else(|| corrupt(format!("event {id}"), "kind", kind))?,
        channel: row.opt_text(2)?.map(ChannelId::from_raw),
        partner: row.opt_text(3)?.map(PartnerId::from_raw),
        phone_number_id: row.opt_text(4)?,
        received_at: row.int(5)?,
    })
}

/// The columns [`delivery_record`] reads, in its order.
pub const DELIVERY_COLUMNS: &str = "id, event_id, channel_id, target, state, attempts, \
     next_attempt_at, last_error, updated_at, partner_id";

/// A delivery from a row selecting [`DELIVERY_COLUMNS`].
pub fn delivery_record(row: &impl StoredRow) -> Result<DeliveryRecord, StoreError> {
    let id = row.int(0)?;
    let name = || format!("delivery {id}");
    Ok(DeliveryRecord {
        id: DeliveryId(id),
        event: EventId(row.int(1)?),
        channel: row.opt_text(2)?.map(ChannelId::from_raw),
        partner: row.opt_text(9)?.map(PartnerId::from_raw),
        target: target(row.text(3)?, name)?,
        state: state(row.text(4)?, name)?,
        attempts: count(row.int(5)?, "attempts", name)?,
        next_attempt_at: row.int(6)?,
        last_error: row.opt_text(7)?,
        updated_at: row.int(8)?,
    })
}

/// The attempt columns [`attempt_record`] reads from `at` on, in its order (`a` the
/// attempts table, `u` its URL joined).
pub const ATTEMPT_COLUMNS: &str = "a.number, a.started_at, a.duration_ms, coalesce(u.url, a.url), \
     a.status, a.error, a.response_excerpt, a.retry_after_ms";

/// An attempt from the columns of [`ATTEMPT_COLUMNS`] starting at `at`; `name` names its row
/// in an error.
pub fn attempt_record(
    row: &impl StoredRow,
    at: usize,
    name: impl Fn() -> String,
) -> Result<AttemptRecord, StoreError> {
    let status = match row.opt_int(at + 4)? {
        Some(raw) => Some(u16::try_from(raw).map_err(|_| corrupt(name(), "status", raw))?),
        None => None,
    };
    let error = match row.opt_text(at + 5)? {
        Some(raw) => Some(parse_error_kind(&raw).ok_or_else(|| corrupt(name(), "error", raw))?),
        None => None,
    };
    Ok(AttemptRecord {
        number: count(row.int(at)?, "number", &name)?,
        started_at: row.int(at + 1)?,
        duration_ms: row.int(at + 2)?,
        url: row
            .opt_text(at + 3)?
            .ok_or_else(|| corrupt(name(), "url", "NULL"))?,
        status,
        error,
        response_excerpt: row.opt_text(at + 6)?,
        retry_after_ms: row.opt_int(at + 7)?,
    })
}

/// A replayed attempt from a row of [`crate::store::replay_sql::attempts_sql`].
pub fn stored_attempt(row: &impl StoredRow) -> Result<StoredAttempt, StoreError> {
    let id = row.int(0)?;
    let name = || format!("attempt {id}");
    let delivery = row.int(1)?;
    let of_delivery = || format!("delivery {delivery}");
    let state = state(row.text(5)?, of_delivery)?;
    Ok(StoredAttempt {
        id: AttemptId(id),
        delivery: DeliveryId(delivery),
        event: EventId(row.int(2)?),
        channel: row.opt_text(3)?.map(ChannelId::from_raw),
        target: target(row.text(4)?, of_delivery)?,
        record: attempt_record(row, 6, name)?,
        ended: ended(state, row.opt_flag(14)?.unwrap_or(false)),
    })
}
