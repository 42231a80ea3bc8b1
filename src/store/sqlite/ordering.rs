//! SQL of ordered delivery on SQLite (the rule is in `store::ordering`). Each function runs
//! inside the caller's transaction; the single writer runs them one at a time, so an insert,
//! a settle and the switch never interleave.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rusqlite::{params, Connection};

use crate::domain::ChannelId;
use crate::store::columns::require_changed;
use crate::store::{StoreError, HELD_UNTIL};

/// Whether a channel may be ordered. Until one is switched on in this process (or one was
/// found on at start) the writer stores and settles deliveries with the plain statements,
/// which cost it about a fifth less per event than the ordering-aware ones (a channel
/// lookup per insert, `RETURNING` on settle). It is set inside the switch's own writer job,
/// so every write after the switch sees it (one writer thread runs them in order), and is
/// never cleared before a restart: clearing it safely would need to know the switch-off
/// committed and no other switch-on is on its way.
#[derive(Debug, Clone, Default)]
pub struct OrderingInUse(Arc<AtomicBool>);

impl OrderingInUse {
    /// Reads at start whether any channel is ordered.
    pub fn read(conn: &Connection) -> Result<Self, StoreError> {
        let any: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM channels WHERE ordered)",
            [],
            |row| row.get(0),
        )?;
        Ok(Self(Arc::new(AtomicBool::new(any))))
    }

    /// Whether the ordering-aware statements are needed.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// From now on, they are.
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The claim's condition on a due row `d` (`?1` is now): unordered, or the head of its
/// channel's pending ordered deliveries while none other of them is leased (in flight).
pub const CLAIMABLE: &str = "(d.ordered IS NULL OR (
         d.id = (SELECT min(o.id) FROM deliveries o
                 WHERE o.ordered IS NOT NULL AND o.state = 'pending'
                   AND o.channel_id = d.channel_id)
         AND NOT EXISTS (SELECT 1 FROM deliveries l
                         WHERE l.ordered IS NOT NULL AND l.state = 'pending'
                           AND l.leased_until IS NOT NULL AND l.leased_until > ?1
                           AND l.channel_id = d.channel_id AND l.id <> d.id)))";

/// Makes the head of `channel`'s pending ordered deliveries due `now` if it is held: called
/// when an ordered delivery left `pending`, and after the switch.
pub fn wake_head(conn: &Connection, channel: &str, now: i64) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE deliveries SET next_attempt_at = ?2
         WHERE id = (SELECT min(o.id) FROM deliveries o
                     WHERE o.ordered IS NOT NULL AND o.state = 'pending' AND o.channel_id = ?1)
           AND next_attempt_at = ?3",
    )?
    .execute(params![channel, now, HELD_UNTIL])?;
    Ok(())
}

/// Holds every pending ordered delivery that is neither its channel's head nor leased, of
/// one channel or (`None`) of all: after the switch turned ordering on, and after a replay
/// made several due. Scans the pending ordered deliveries only (their partial index).
pub fn hold_behind_heads(conn: &Connection, channel: Option<&str>) -> Result<u64, StoreError> {
    let held = conn
        .prepare_cached(
            "UPDATE deliveries SET next_attempt_at = ?1
             WHERE ordered IS NOT NULL AND state = 'pending' AND leased_until IS NULL
               AND next_attempt_at <> ?1 AND (?2 IS NULL OR channel_id = ?2)
               AND id > (SELECT min(o.id) FROM deliveries o
                         WHERE o.ordered IS NOT NULL AND o.state = 'pending'
                           AND o.channel_id = deliveries.channel_id)",
        )?
        .execute(params![HELD_UNTIL, channel])?;
    Ok(held as u64)
}

/// Turns ordering of `channel` on or off (see `Store::set_ordered`).
pub fn set_ordered(
    conn: &Connection,
    channel: &ChannelId,
    on: bool,
    now: i64,
) -> Result<(), StoreError> {
    let id = channel.as_str();
    let changed = conn.execute(
        "UPDATE channels SET ordered = ?1 WHERE id = ?2",
        params![on, id],
    )?;
    require_changed(changed as u64, "channel", id)?;
    if !on {
        conn.execute(
            "UPDATE deliveries SET ordered = NULL,
                    next_attempt_at = CASE WHEN next_attempt_at = ?2 THEN ?3
                                           ELSE next_attempt_at END
             WHERE ordered IS NOT NULL AND state = 'pending' AND channel_id = ?1",
            params![id, HELD_UNTIL, now],
        )?;
        return Ok(());
    }
    // The pending deliveries have no index by channel: this scans the queue (admin only).
    conn.execute(
        "UPDATE deliveries SET ordered = 1
         WHERE state = 'pending' AND channel_id = ?1 AND target = 'primary' AND ordered IS NULL",
        [id],
    )?;
    hold_behind_heads(conn, Some(id))?;
    wake_head(conn, id, now)
}
