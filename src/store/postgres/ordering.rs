//! SQL of ordered delivery on PostgreSQL (the rule is in `store::ordering`). Each function
//! runs inside the caller's transaction.
//!
//! Several nodes and batches write at once, so the order of locks carries the rule: an
//! insert share-locks the channel's pending ordered delivery it waits behind (see
//! `deliveries::ORDERED_INSERT`), so a settle of that delivery either commits first (the
//! insert no longer sees it pending, and is due) or waits for the insert and then, in a
//! statement of its own, sees it and wakes it. A hold locks the heads first for the same
//! reason. Rows are locked in id order, as replays and retention lock them.

use deadpool_postgres::GenericClient;

use super::provisioning::update_one;
use crate::domain::ChannelId;
use crate::store::{StoreError, HELD_UNTIL};

/// The claim's condition on a due row `d` (`$1` is now): unordered, or the head of its
/// channel's pending ordered deliveries while none other of them is leased (in flight).
pub const CLAIMABLE: &str = "(d.ordered IS NULL OR (
         d.id = (SELECT min(o.id) FROM deliveries o
                 WHERE o.ordered IS NOT NULL AND o.state = 'pending'
                   AND o.channel_id = d.channel_id)
         AND NOT EXISTS (SELECT 1 FROM deliveries l
                         WHERE l.ordered IS NOT NULL AND l.state = 'pending'
                           AND l.leased_until IS NOT NULL AND l.leased_until > $1
                           AND l.channel_id = d.channel_id AND l.id <> d.id)))";

/// Makes due the held head of each channel of `$1` (`$2` is now, `$3` [`HELD_UNTIL`]): its
/// oldest pending ordered delivery, if that is held. A statement of its own, after the
/// settle's update: it sees every insert that waited for the settled row. Naming a channel
/// that is not ordered, or whose settled delivery was not its head, wakes nothing that
/// should wait: a held oldest pending ordered delivery has nothing ahead of it to wait for
/// (so a batch of settles sends it for every channel whose delivery left `pending` before
/// knowing which are ordered: `bulk.rs`); a channel without ordered deliveries costs one
/// probe of the empty `deliveries_ordered` index.
pub const WAKE_HEADS: &str = "UPDATE deliveries SET next_attempt_at = $2
     WHERE id IN (SELECT min(o.id) FROM deliveries o
                  WHERE o.ordered IS NOT NULL AND o.state = 'pending'
                    AND o.channel_id = ANY($1::text[])
                  GROUP BY o.channel_id)
       AND next_attempt_at = $3";

/// Makes the head of `channel`'s pending ordered deliveries due `now` if it is held
/// ([`WAKE_HEADS`] for one channel).
pub async fn wake_head(tx: &impl GenericClient, channel: &str, now: i64) -> Result<(), StoreError> {
    let wake = tx.prepare_cached(WAKE_HEADS).await?;
    let channels: &[&str] = &[channel];
    tx.execute(&wake, &[&channels, &now, &HELD_UNTIL]).await?;
    Ok(())
}

/// Holds every pending ordered delivery that is neither its channel's head nor leased, of
/// one channel or (`None`) of all. The heads are locked first, in a statement of their own,
/// so a head settled meanwhile is seen settled (and the next one kept due) rather than
/// leaving the next one held with nothing to wake it.
pub async fn hold_behind_heads(
    tx: &impl GenericClient,
    channel: Option<&str>,
) -> Result<u64, StoreError> {
    tx.query(
        "SELECT d.id FROM deliveries d
         WHERE d.id IN (SELECT min(o.id) FROM deliveries o
                        WHERE o.ordered IS NOT NULL AND o.state = 'pending'
                          AND ($1::text IS NULL OR o.channel_id = $1)
                        GROUP BY o.channel_id)
           AND d.state = 'pending'
         ORDER BY d.id FOR UPDATE",
        &[&channel],
    )
    .await?;
    Ok(tx
        .execute(
            "UPDATE deliveries SET next_attempt_at = $2
             WHERE id IN (SELECT d.id FROM deliveries d
                          WHERE d.ordered IS NOT NULL AND d.state = 'pending'
                            AND d.leased_until IS NULL AND d.next_attempt_at <> $2
                            AND ($1::text IS NULL OR d.channel_id = $1)
                            AND d.id > (SELECT min(o.id) FROM deliveries o
                                        WHERE o.ordered IS NOT NULL AND o.state = 'pending'
                                          AND o.channel_id = d.channel_id)
                          ORDER BY d.id FOR UPDATE)
               AND state = 'pending' AND leased_until IS NULL",
            &[&channel, &HELD_UNTIL],
        )
        .await?)
}

/// Turns ordering of `channel` on or off (see `Store::set_ordered`).
pub async fn set_ordered(
    tx: &impl GenericClient,
    channel: &ChannelId,
    on: bool,
    now: i64,
) -> Result<(), StoreError> {
    let id = channel.as_str();
    update_one(
        tx,
        "UPDATE channels SET ordered = $1 WHERE id = $2",
        &[&on, &id],
        ("channel", id),
    )
    .await?;
    if !on {
        tx.execute(
            "UPDATE deliveries SET ordered = NULL,
                    next_attempt_at = CASE WHEN next_attempt_at = $2 THEN $3
                                           ELSE next_attempt_at END
             WHERE id IN (SELECT id FROM deliveries
                          WHERE ordered IS NOT NULL AND state = 'pending' AND channel_id = $1
                          ORDER BY id FOR UPDATE)
               AND state = 'pending'",
            &[&id, &HELD_UNTIL, &now],
        )
        .await?;
        return Ok(());
    }
    // The pending deliveries have no index by channel: this scans the queue (admin only).
    tx.execute(
        "UPDATE deliveries SET ordered = 1
         WHERE id IN (SELECT id FROM deliveries
                      WHERE state = 'pending' AND channel_id = $1 AND target = 'primary'
                        AND ordered IS NULL
                      ORDER BY id FOR UPDATE)
           AND state = 'pending'",
        &[&id],
    )
    .await?;
    hold_behind_heads(tx, Some(id)).await?;
    wake_head(tx, id, now).await
}
