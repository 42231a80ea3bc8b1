//! The SQL both backends run for a replay (their placeholders differ only in spelling), and
//! the rule that decides whether a replayed attempt ended its delivery.

use crate::domain::DeliveryState;
use crate::store::decode::ATTEMPT_COLUMNS;

/// Events after `{1}`, oldest first, at most `{2}`; `{columns}` are the event summary's.
pub fn events_sql(columns: &str, after: &str, limit: &str) -> String {
    format!("SELECT {columns}, payload FROM events WHERE id > {after} ORDER BY id LIMIT {limit}")
}

/// Attempts after `after`, oldest first, at most `limit`, with their delivery's event,
/// channel, target and state, the URL's text, and whether each is its delivery's latest.
pub fn attempts_sql(after: &str, limit: &str) -> String {
    format!(
        "SELECT a.id, a.delivery_id, d.event_id, d.channel_id, d.target, d.state,
                {ATTEMPT_COLUMNS},
                a.id = (SELECT max(b.id) FROM attempts b WHERE b.delivery_id = a.delivery_id)
         FROM attempts a
         JOIN deliveries d ON d.id = a.delivery_id
         LEFT JOIN attempt_urls u ON u.id = a.url_id
         WHERE a.id > {after} ORDER BY a.id LIMIT {limit}"
    )
}

/// The state an attempt ended its delivery in: its latest attempt, in a final state an
/// attempt leads to (`dropped` is reached without one).
pub fn ended(state: DeliveryState, latest: bool) -> Option<DeliveryState> {
    let last = matches!(state, DeliveryState::Delivered | DeliveryState::Failed);
    (latest && last).then_some(state)
}
