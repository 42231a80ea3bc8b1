//! Ordered delivery per number (opt-in, `channels.ordered`): the rule both backends enforce
//! in SQL, so it holds across retries, restarts and nodes without the engine's help.
//!
//! While a channel is ordered, its primary deliveries are stored with `ordered` set, never
//! leased at insert (the poller claims them). Of a channel's pending ordered deliveries only
//! the *head* (lowest id) is claimable, and only while no other of them is leased (in
//! flight); the others are *held*: `next_attempt_at` is [`HELD_UNTIL`], so the due scan never
//! reads them. When the head leaves `pending` (delivered, failed, dropped) the same
//! transaction makes the next one due ("wakes the head"); a retry or a deferral keeps it the
//! head, so the later ones keep waiting. Extras and partner deliveries are never ordered.

/// The `next_attempt_at` of a held ordered delivery: 9999-12-31T23:59:59Z, after any real
/// due time and still a readable date in the event view.
pub const HELD_UNTIL: i64 = 253_402_300_799_000;

#[cfg(test)]
mod tests {
    use super::HELD_UNTIL;

    #[test]
    fn the_held_sentinel_is_the_last_second_of_year_9999() {
        assert_eq!(
            crate::clock::rfc3339(HELD_UNTIL),
            "9999-12-31T23:59:59.000Z"
        );
    }
}
