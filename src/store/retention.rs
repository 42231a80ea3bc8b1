//! What both backends share for the payload retention (`--payload-retention-hours`): the
//! cursor that says how far the purge got, the rule that picks a batch, and the SQL that
//! keeps a purged event from being sent again.
//!
//! A purge empties the payload of finished events (no pending delivery) and records when,
//! walking events in id order from a persisted cursor, so a pass never reads again what an
//! earlier one handled. An event still pending when the cursor passes it keeps its payload
//! until `--retention-days` deletes the event.

/// The `maintenance` row that holds the id of the last event the payload purge handled.
pub const PAYLOAD_CURSOR: &str = "payloads_purged_through";

/// A condition on a `deliveries` row: its event's payload is still stored, so it can be sent
/// again. Every requeue (retry, bulk retry, recovery) requires it.
pub const PAYLOAD_KEPT: &str = "NOT EXISTS (SELECT 1 FROM events pe \
     WHERE pe.id = deliveries.event_id AND pe.payload_purged_at IS NOT NULL)";

/// What one batch of the payload purge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PayloadPurge {
    /// Events the cursor moved past (0: nothing old enough is left).
    pub examined: u64,
    /// Payloads emptied among them (the others were pending, or purged already).
    pub purged: u64,
}

/// The last id of the batch a purge handles: the leading run of `events` (id, arrival),
/// read in id order after the cursor, that arrived before `before`. It stops at the first
/// younger event, so a pass never reads the young tail of the table; `None` when the first
/// one is young already.
pub fn batch_end(events: &[(i64, i64)], before: i64) -> Option<(i64, u64)> {
    let old = events
        .iter()
        .take_while(|(_, received_at)| *received_at < before)
        .count();
    let last = old.checked_sub(1)?;
    Some((events[last].0, old as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_ends_at_the_first_young_event() {
        let events = [(4, 10), (5, 11), (7, 30), (8, 12)];
        assert_eq!(batch_end(&events, 20), Some((5, 2)));
        assert_eq!(batch_end(&events, 40), Some((8, 4)));
        assert_eq!(batch_end(&events, 10), None);
        assert_eq!(batch_end(&[], 10), None);
    }
}
