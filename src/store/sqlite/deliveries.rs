//! SQL of events, deliveries and attempts: the write side. Each function runs inside the
//! caller's transaction (the writer's group commit).
//!
//! A lease is a pushed-forward `next_attempt_at` plus a `leased_until` marker: leased rows
//! are not due, so the due index never scans in-flight work, and a crashed node's leases
//! simply come due again (or are released at start by a single-node store). Each claim
//! bumps `lease_token`, and settles and renewals apply only under the token they were
//! claimed with (`store::lease`).

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::now_ms;
use super::ordering::{hold_behind_heads, wake_head, CLAIMABLE};
use crate::domain::RowChange;
use crate::domain::{
    AttemptErrorKind, AttemptId, ChannelId, DeliveryId, DeliveryState, EventId, PartnerId, Target,
};
use crate::store::columns::{trace_column, trace_of_column};
use crate::store::decode;
use crate::store::payload;
use crate::store::retention::PAYLOAD_KEPT;
use crate::store::urls::destination_of;
use crate::store::{
    AttemptRecord, CreatedDelivery, DueDelivery, EventBody, HeldLease, LeaseToken, NewEvent,
    Outcome, SavedEvent, Settled, Settlement, StoreError, HELD_UNTIL,
};

/// Inserts events and their first deliveries (primary for WhatsApp events with a channel,
/// partner for partner events); renders partner event bodies once their id is known.
/// `ordering` says whether a channel may be ordered (`ordering::OrderingInUse`).
/// `packed[i]` is `events[i]`'s payload as stored ([`payload::pack_all`]; packed here when
/// missing).
pub fn save_events(
    conn: &Connection,
    events: &[NewEvent],
    packed: &[Option<Vec<u8>>],
    claim_until: Option<i64>,
    ordering: bool,
) -> Result<Vec<SavedEvent>, StoreError> {
    let mut insert_event = conn.prepare_cached(
        "INSERT INTO events (kind, channel_id, partner_id, phone_number_id, payload, received_at,
                             trace_context)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut saved = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        insert_event.execute(params![
            event.kind.as_str(),
            event.channel.as_ref().map(ChannelId::as_str),
            event.partner.as_ref().map(PartnerId::as_str),
            event.phone_number_id,
            payload::stored_form(event, packed.get(i)).as_ref(),
            event.received_at,
            trace_column(event.trace.as_ref()),
        ])?;
        let id = EventId(conn.last_insert_rowid());
        let payload = match &event.body {
            EventBody::Bytes(bytes) => bytes.clone(),
            EventBody::Partner(partner_event) => {
                let rendered = partner_event.render(id);
                conn.prepare_cached("UPDATE events SET payload = ?1 WHERE id = ?2")?
                    .execute(params![payload::pack(&rendered), id.0])?;
                rendered
            }
        };
        let inserted = match event.first_target() {
            Some(target) if ordering && target == Target::Primary => Some(insert_delivery(
                conn,
                id,
                (event.channel.as_ref(), event.partner.as_ref()),
                &target,
                event.received_at,
                claim_until,
            )?),
            Some(target) => Some(insert_unordered(
                conn,
                id,
                (event.channel.as_ref(), event.partner.as_ref()),
                &target,
                event.received_at,
                claim_until,
            )?),
            None => None,
        };
        saved.push(SavedEvent {
            event: id,
            lease: inserted.and_then(|one| one.lease),
            delivery: inserted.map(|one| one.id),
            payload,
        });
    }
    Ok(saved)
}

/// Inserts a delivery that cannot be ordered (an extra, a partner's, or any while no channel
/// is ordered): the plain statement, the writer's cheapest.
fn insert_unordered(
    conn: &Connection,
    event: EventId,
    (channel, partner): (Option<&ChannelId>, Option<&PartnerId>),
    target: &Target,
    window_start: i64,
    claim_until: Option<i64>,
) -> Result<Inserted, StoreError> {
    let now = now_ms();
    let lease = claim_until.map(|_| LeaseToken::FIRST);
    conn.prepare_cached(
        "INSERT INTO deliveries (event_id, channel_id, partner_id, target, state, next_attempt_at,
                                 leased_until, window_start, updated_at, lease_token)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        event.0,
        channel.map(ChannelId::as_str),
        partner.map(PartnerId::as_str),
        target.to_stored(),
        claim_until.unwrap_or(now),
        claim_until,
        window_start,
        now,
        lease.map_or(0, |token| token.0),
    ])?;
    Ok(Inserted {
        id: DeliveryId(conn.last_insert_rowid()),
        lease,
    })
}

/// Inserts a primary delivery, ordered if its channel is.
fn insert_delivery(
    conn: &Connection,
    event: EventId,
    (channel, partner): (Option<&ChannelId>, Option<&PartnerId>),
    target: &Target,
    window_start: i64,
    claim_until: Option<i64>,
) -> Result<Inserted, StoreError> {
    let now = now_ms();
    let lease = claim_until.map_or(0, |_| LeaseToken::FIRST.0);
    // A primary delivery of an ordered channel (the flag read here, in the writer's
    // transaction) is never leased: it is due now if it is its channel's only pending
    // ordered delivery, else held (store::ordering).
    let (id, ordered) = conn
        .prepare_cached(
            "INSERT INTO deliveries (event_id, channel_id, partner_id, target, state,
                                     next_attempt_at, leased_until, window_start, updated_at,
                                     lease_token, ordered)
             SELECT ?1, ?2, ?3, ?4, 'pending',
                    CASE WHEN c.ordered IS NULL THEN ?5
                         WHEN EXISTS (SELECT 1 FROM deliveries p
                                      WHERE p.ordered IS NOT NULL AND p.state = 'pending'
                                        AND p.channel_id = ?2) THEN ?10
                         ELSE ?8 END,
                    CASE WHEN c.ordered IS NULL THEN ?6 END, ?7, ?8,
                    CASE WHEN c.ordered IS NULL THEN ?9 ELSE 0 END, c.ordered
             FROM (SELECT (SELECT 1 FROM channels
                           WHERE id = ?2 AND ordered AND ?4 = 'primary') AS ordered) c
             RETURNING id, ordered IS NOT NULL",
        )?
        .query_row(
            params![
                event.0,
                channel.map(ChannelId::as_str),
                partner.map(PartnerId::as_str),
                target.to_stored(),
                claim_until.unwrap_or(now),
                claim_until,
                window_start,
                now,
                lease,
                HELD_UNTIL,
            ],
            |row| Ok((row.get(0)?, row.get::<_, bool>(1)?)),
        )?;
    Ok(Inserted {
        id: DeliveryId(id),
        lease: claim_until.filter(|_| !ordered).map(|_| LeaseToken::FIRST),
    })
}

/// A stored delivery and its lease, when it was stored leased to this node.
#[derive(Clone, Copy)]
struct Inserted {
    id: DeliveryId,
    lease: Option<LeaseToken>,
}

/// Leases due deliveries (see the module doc) and returns them with their payloads.
pub fn claim_due(
    conn: &Connection,
    now: i64,
    (limit, max_bytes): (usize, usize),
    lease_until: i64,
) -> Result<Vec<DueDelivery>, StoreError> {
    let due = {
        let mut select = conn.prepare_cached(&format!(
            "SELECT d.id, d.event_id, d.channel_id, d.target, d.attempts, d.window_start,
                    d.window_attempts, e.payload, d.partner_id, e.trace_context
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.state = 'pending' AND d.next_attempt_at <= ?1 AND {CLAIMABLE}
             ORDER BY d.next_attempt_at LIMIT ?2"
        ))?;
        super::events::collect(&mut select, params![now, limit as i64], |row| {
            due_from_row(row)
        })?
    };
    let mut lease = conn.prepare_cached(
        "UPDATE deliveries SET next_attempt_at = ?1, leased_until = ?1,
                lease_token = lease_token + 1
         WHERE id = ?2 RETURNING lease_token",
    )?;
    let mut claimed = Vec::with_capacity(due.len());
    let mut bytes = 0;
    for row in due {
        let mut delivery = match row {
            Due::Readable(delivery) => delivery,
            Due::Unreadable(id, target) => {
                fail_unreadable(conn, id, &target)?;
                continue;
            }
        };
        bytes += delivery.memory_cost();
        if bytes > max_bytes {
            break;
        }
        delivery.lease =
            LeaseToken(lease.query_row(params![lease_until, delivery.id.0], |row| row.get(0))?);
        claimed.push(delivery);
    }
    Ok(claimed)
}

/// A due row, or the id and target of one whose target this version cannot read.
enum Due {
    Readable(DueDelivery),
    Unreadable(DeliveryId, String),
}

/// A delivery whose target cannot be read (written by another version, or damaged) can
/// never be attempted: it is failed with the reason, so it does not sit at the head of the
/// queue and take a claim's place every poll.
fn fail_unreadable(conn: &Connection, id: DeliveryId, target: &str) -> Result<(), StoreError> {
    tracing::warn!(delivery = %id, target, "delivery with an unreadable target marked failed");
    conn.prepare_cached(
        "UPDATE deliveries SET state = 'failed', leased_until = NULL, last_error = ?1,
                               updated_at = ?2
         WHERE id = ?3",
    )?
    .execute(params![
        format!("unreadable target {target:?}: this version cannot deliver it"),
        now_ms(),
        id.0
    ])?;
    Ok(())
}

fn due_from_row(row: &Row<'_>) -> Result<Due, StoreError> {
    let target: String = row.get(3)?;
    let Some(parsed) = Target::from_stored(&target) else {
        return Ok(Due::Unreadable(DeliveryId(row.get(0)?), target));
    };
    let target = parsed;
    let event: i64 = row.get(1)?;
    let payload = payload::unpack(row.get(7)?, || format!("event {event}"))?;
    Ok(Due::Readable(DueDelivery {
        id: DeliveryId(row.get(0)?),
        event: EventId(row.get(1)?),
        channel: row.get::<_, Option<String>>(2)?.map(ChannelId::from_raw),
        partner: row.get::<_, Option<String>>(8)?.map(PartnerId::from_raw),
        target,
        attempts: row.get(4)?,
        window_start: row.get(5)?,
        window_attempts: row.get(6)?,
        payload,
        lease: LeaseToken(0),
        trace: trace_of_column(row.get(9)?),
    }))
}

/// Makes every leased delivery due now.
pub fn release_leases(conn: &Connection) -> Result<u64, StoreError> {
    let released = conn.execute(
        "UPDATE deliveries SET next_attempt_at = ?1, leased_until = NULL
         WHERE state = 'pending' AND leased_until IS NOT NULL",
        [now_ms()],
    )?;
    Ok(released as u64)
}

/// Pushes the leases of `held` forward to `until`, each only under its own lease; returns
/// the deliveries whose lease is lost (neither renewed nor settled under that lease: claimed
/// again after it expired).
pub fn renew_leases(
    conn: &Connection,
    held: &[HeldLease],
    until: i64,
) -> Result<Vec<DeliveryId>, StoreError> {
    let mut renew = conn.prepare_cached(
        "UPDATE deliveries SET next_attempt_at = ?1, leased_until = ?1
         WHERE id = ?2 AND lease_token = ?3 AND state = 'pending' AND leased_until IS NOT NULL",
    )?;
    let mut settled = conn.prepare_cached(
        "SELECT 1 FROM deliveries WHERE id = ?1 AND lease_token = ?2 AND leased_until IS NULL",
    )?;
    let mut lost = Vec::new();
    for one in held {
        let (id, lease) = (one.delivery.0, one.lease.0);
        if renew.execute(params![until, id, lease])? == 0 && !settled.exists(params![id, lease])? {
            lost.push(one.delivery);
        }
    }
    Ok(lost)
}

/// Makes parked deliveries due now (see `Store::wake_deliveries`).
pub fn wake_deliveries(
    conn: &Connection,
    parked: &[DeliveryId],
    now: i64,
    age_shift: i64,
) -> Result<u64, StoreError> {
    let mut wake = conn.prepare_cached(
        "UPDATE deliveries SET next_attempt_at = ?1, window_start = window_start + ?3
         WHERE id = ?2 AND state = 'pending' AND leased_until IS NULL AND next_attempt_at > ?1
           AND next_attempt_at <> ?4",
    )?;
    let mut woken = 0;
    for id in parked {
        woken += wake.execute(params![now, id.0, age_shift, HELD_UNTIL])? as u64;
    }
    Ok(woken)
}

/// The condition every settle adds: the delivery is still held under the settled lease.
const HELD: &str = "id = ?1 AND lease_token = ?2 AND leased_until IS NOT NULL";

/// Records an attempt and its settlement, if the delivery is still held under
/// `outcome.lease`; returns the extra deliveries created.
///
/// `url_id` is the attempt's URL in `attempt_urls` ([`store_url`]).
pub fn settle(
    conn: &Connection,
    outcome: &Outcome,
    url_id: Option<i64>,
    ordering: bool,
) -> Result<Settled, StoreError> {
    let now = now_ms();
    let effect = outcome.settlement.effect(outcome.attempt.is_some(), now);
    // The row is read back only when something needs it: a head to wake, extras to create.
    let read_back = ordering || !effect.creates.is_empty();
    let Some(held) = update_held(conn, outcome, &effect.row, read_back, now)? else {
        return settled_before(conn, outcome);
    };
    if let (true, Some(channel)) = (effect.ends_head && held.ordered, &held.channel) {
        wake_head(conn, channel.as_str(), now)?;
    }
    let attempt = match &outcome.attempt {
        Some(attempt) => Some(insert_attempt(conn, outcome.delivery, attempt, url_id)?),
        None => None,
    };
    let mut extras = Vec::with_capacity(effect.creates.len());
    for target in effect.creates {
        let owners = (held.channel.as_ref(), None);
        let extra = insert_unordered(conn, held.event, owners, &target, now, effect.claim_until)?;
        extras.push(CreatedDelivery {
            id: extra.id,
            target,
            lease: extra.lease,
        });
    }
    Ok(Settled::Recorded { extras, attempt })
}

/// The settled delivery as the update left it.
struct Updated {
    event: EventId,
    channel: Option<ChannelId>,
    /// Whether it is ordered (its channel's next one waits for it to leave `pending`).
    ordered: bool,
}

/// Writes `row` to the delivery if it is still held under `outcome.lease`; `None` when it
/// is not (nothing written). Without `read_back` the update reads nothing back (the plain
/// statement the hot path measured fastest) and the `Updated` it returns holds no facts.
fn update_held(
    conn: &Connection,
    outcome: &Outcome,
    row: &RowChange<'_>,
    read_back: bool,
    now: i64,
) -> Result<Option<Updated>, StoreError> {
    let (id, lease) = (outcome.delivery.0, outcome.lease.0);
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&id, &lease];
    let (state, behind);
    let set = match row {
        RowChange::Settled {
            state: new_state,
            attempts_added,
            next_attempt_at,
            last_error,
        } => {
            state = new_state.as_str();
            params.extend([
                &state as &dyn rusqlite::ToSql,
                attempts_added,
                next_attempt_at,
                last_error,
                &now,
            ]);
            "state = ?3, attempts = attempts + ?4, next_attempt_at = ?5, leased_until = NULL,
             last_error = ?6, updated_at = ?7"
        }
        RowChange::Deferred {
            next_attempt_at,
            parked_behind,
        } => {
            behind = parked_behind.map(|d| d.as_str());
            params.extend([next_attempt_at as &dyn rusqlite::ToSql, &behind]);
            "next_attempt_at = ?3, leased_until = NULL, parked_behind = ?4"
        }
    };
    let params = rusqlite::params_from_iter(params);
    if !read_back {
        let sql = format!("UPDATE deliveries SET {set} WHERE {HELD}");
        let changed = conn.prepare_cached(&sql)?.execute(params)?;
        // Nothing is read back, and nothing needs it: no head to wake, no extra to create.
        return Ok((changed > 0).then_some(Updated {
            event: EventId(0),
            channel: None,
            ordered: false,
        }));
    }
    let sql = format!(
        "UPDATE deliveries SET {set} WHERE {HELD}
         RETURNING event_id, channel_id, ordered IS NOT NULL"
    );
    let updated = conn
        .prepare_cached(&sql)?
        .query_row(params, |row| {
            Ok(Updated {
                event: EventId(row.get(0)?),
                channel: row.get::<_, Option<String>>(1)?.map(ChannelId::from_raw),
                ordered: row.get(2)?,
            })
        })
        .optional()?;
    Ok(updated)
}

/// A settle that found no lease to settle: either this very lease was settled already (its
/// row still names it, with the lease cleared), and the extras it created that are still
/// leased are returned again, or the lease is lost and nothing is written.
fn settled_before(conn: &Connection, outcome: &Outcome) -> Result<Settled, StoreError> {
    let event: Option<i64> = conn
        .query_row(
            "SELECT event_id FROM deliveries
             WHERE id = ?1 AND lease_token = ?2 AND leased_until IS NULL",
            params![outcome.delivery.0, outcome.lease.0],
            |row| row.get(0),
        )
        .optional()?;
    let Some(event) = event else {
        return Ok(Settled::LeaseLost);
    };
    let attempt = match outcome.attempt {
        Some(_) => latest_attempt(conn, outcome.delivery)?,
        None => None,
    };
    if !matches!(outcome.settlement, Settlement::Delivered { .. }) {
        return Ok(Settled::Recorded {
            extras: Vec::new(),
            attempt,
        });
    }
    let mut leased = conn.prepare_cached(
        "SELECT id, target, lease_token FROM deliveries
         WHERE event_id = ?1 AND target LIKE 'extra:%' AND state = 'pending' AND attempts = 0
           AND leased_until IS NOT NULL
         ORDER BY id",
    )?;
    let rows = leased.query_map([event], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })?;
    let mut extras = Vec::new();
    for row in rows {
        let (id, target, lease) = row?;
        extras.push(CreatedDelivery {
            id: DeliveryId(id),
            target: decode::target(target, || format!("delivery {id}"))?,
            lease: Some(LeaseToken(lease)),
        });
    }
    Ok(Settled::Recorded { extras, attempt })
}

/// The delivery's latest attempt: after a settle found its own lease settled already, the
/// one that settle recorded (nothing else adds attempts to a delivery under that lease).
fn latest_attempt(
    conn: &Connection,
    delivery: DeliveryId,
) -> Result<Option<AttemptId>, StoreError> {
    let id: Option<i64> = conn
        .prepare_cached("SELECT max(id) FROM attempts WHERE delivery_id = ?1")?
        .query_row([delivery.0], |row| row.get(0))?;
    Ok(id.map(AttemptId))
}
/// Stores `url` in `attempt_urls` with its destination if it is not there yet; returns its id.
pub fn store_url(conn: &Connection, url: &str) -> Result<i64, StoreError> {
    conn.prepare_cached(
        "INSERT INTO attempt_urls (url, destination) VALUES (?1, ?2) ON CONFLICT (url) DO NOTHING",
    )?
    .execute(params![url, destination_of(url)])?;
    let id = conn
        .prepare_cached("SELECT id FROM attempt_urls WHERE url = ?1")?
        .query_row([url], |row| row.get(0))?;
    Ok(id)
}

/// Records an attempt, naming its URL by `url_id` (the text only when no id is known);
/// returns the attempt's id.
fn insert_attempt(
    conn: &Connection,
    delivery: DeliveryId,
    attempt: &AttemptRecord,
    url_id: Option<i64>,
) -> Result<AttemptId, StoreError> {
    conn.prepare_cached(
        "INSERT INTO attempts (delivery_id, number, started_at, duration_ms, url_id, url, status,
                               error, response_excerpt, retry_after_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        delivery.0,
        attempt.number,
        attempt.started_at,
        attempt.duration_ms,
        url_id,
        url_id.is_none().then_some(&attempt.url),
        attempt.status,
        attempt.error.map(AttemptErrorKind::as_str),
        attempt.response_excerpt,
        attempt.retry_after_ms,
    ])?;
    Ok(AttemptId(conn.last_insert_rowid()))
}

/// The columns a replay resets: due now, new age window, lease cleared (recovery too).
///
/// A primary delivery is ordered again if its channel is ordered now; the caller then holds
/// all but each channel's head (`ordering::hold_behind_heads`), so they go in id order.
pub(super) const REQUEUE: &str = "state = 'pending', next_attempt_at = ?1, leased_until = NULL, \
     window_start = ?1, window_attempts = attempts, updated_at = ?1, \
     ordered = CASE WHEN target = 'primary' THEN (SELECT CASE WHEN c.ordered THEN 1 END \
                    FROM channels c WHERE c.id = deliveries.channel_id) END";

/// Re-queues every failed (or dropped) delivery, optionally of one channel or partner.
pub fn retry_deliveries(
    conn: &Connection,
    state: DeliveryState,
    channel: Option<&ChannelId>,
    partner: Option<&PartnerId>,
    now: i64,
) -> Result<u64, StoreError> {
    let sql = format!(
        "UPDATE deliveries SET {REQUEUE}
         WHERE state = ?2 AND (?3 IS NULL OR channel_id = ?3) AND (?4 IS NULL OR partner_id = ?4)
           AND {PAYLOAD_KEPT}"
    );
    let changed = conn.execute(
        &sql,
        params![
            now,
            state.as_str(),
            channel.map(ChannelId::as_str),
            partner.map(PartnerId::as_str),
        ],
    )?;
    if changed > 0 {
        hold_behind_heads(conn, None)?;
    }
    Ok(changed as u64)
}

/// Re-queues a failed or dropped delivery with a fresh age window.
pub fn retry_delivery(conn: &Connection, id: DeliveryId, now: i64) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE deliveries SET {REQUEUE}
         WHERE id = ?2 AND state IN ('failed', 'dropped') AND {PAYLOAD_KEPT}"
    );
    let changed = conn.execute(&sql, params![now, id.0])?;
    if changed == 1 {
        hold_behind_heads(conn, None)?;
        return Ok(());
    }
    let state: Option<String> = conn
        .query_row(
            "SELECT state FROM deliveries WHERE id = ?1",
            [id.0],
            |row| row.get(0),
        )
        .optional()?;
    Err(StoreError::not_retried(id, state))
}
