//! SQL of events and deliveries on PostgreSQL (settles are in `settle`). Each function runs
//! inside the caller's transaction; the rules are the SQLite backend's (see its `deliveries`
//! module), except that claims lock with `FOR UPDATE SKIP LOCKED`, so several nodes never
//! claim the same due delivery, that every lease names its node (`leased_by`), and that
//! stored events carry an idempotency key (`idempotency`).

use deadpool_postgres::GenericClient;

use crate::store::columns::{trace_column, trace_of_column};
use crate::store::payload;
use crate::store::retention::PAYLOAD_KEPT;
use tokio_postgres::Row;

use super::idempotency::EventKey;
use super::ordering::{hold_behind_heads, CLAIMABLE};
use super::Param;
use crate::clock::now_ms;
use crate::domain::{ChannelId, DeliveryId, DeliveryState, EventId, PartnerId, Target};
use crate::store::{
    DueDelivery, EventBody, HeldLease, LeaseToken, NewEvent, SavedEvent, StoreError,
    DELIVERY_MEMORY_OVERHEAD, HELD_UNTIL,
};

/// A lease being taken: until when (ms since the epoch), and which node takes it.
pub type Lease<'a> = (i64, &'a str);

/// Inserts events (`keys[i]` is the idempotency key of `events[i]`) and their first
/// deliveries; renders partner event bodies once their id is known. An event whose key is
/// stored already (a re-run of a batch that did commit) is returned as stored, not stored
/// again.
///
/// `packed[i]` is `events[i]`'s payload as stored ([`payload::pack_all`]; packed here when
/// missing), and `payload_size` keeps its unpacked length for the claims' memory budget.
pub async fn save_events(
    tx: &impl GenericClient,
    events: &[NewEvent],
    packed: &[Option<Vec<u8>>],
    keys: &[EventKey],
    claim: Option<Lease<'_>>,
) -> Result<Vec<SavedEvent>, StoreError> {
    if keys.len() != events.len() {
        return Err(StoreError::Database(
            "one idempotency key per event expected".into(),
        ));
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO events (kind, channel_id, partner_id, phone_number_id, payload, received_at,
                                 idempotency_key, payload_size, trace_context)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        )
        .await?;
    let mut saved = Vec::with_capacity(events.len());
    for (i, (event, key)) in events.iter().zip(keys).enumerate() {
        let stored = payload::stored_form(event, packed.get(i));
        if let Some(one) = save_with_delivery(tx, event, &stored, key, claim).await? {
            saved.push(one);
            continue;
        }
        let size = event.body.estimated_len() as i64;
        let row = tx
            .query_opt(
                &insert,
                &[
                    &event.kind.as_str(),
                    &event.channel.as_ref().map(ChannelId::as_str),
                    &event.partner.as_ref().map(PartnerId::as_str),
                    &event.phone_number_id,
                    &stored.as_ref(),
                    &event.received_at,
                    &key.as_bytes(),
                    &size,
                    &trace_column(event.trace.as_ref()),
                ],
            )
            .await?;
        let Some(row) = row else {
            saved.push(stored_before(tx, key).await?);
            continue;
        };
        let id = EventId(row.try_get(0)?);
        let payload = match &event.body {
            EventBody::Bytes(bytes) => bytes.clone(),
            EventBody::Partner(partner_event) => {
                let rendered = partner_event.render(id);
                tx.execute(
                    "UPDATE events SET payload = $1, payload_size = $2 WHERE id = $3",
                    &[&payload::pack(&rendered), &(rendered.len() as i64), &id.0],
                )
                .await?;
                rendered
            }
        };
        let delivery = match event.first_target() {
            Some(target) => {
                let owners = (event.channel.as_ref(), event.partner.as_ref());
                let start = event.received_at;
                Some(insert_delivery(tx, id, owners, &target, start, claim).await?)
            }
            None => None,
        };
        saved.push(SavedEvent {
            event: id,
            lease: delivery.and(claim).map(|_| LeaseToken::FIRST),
            delivery,
            payload,
        });
    }
    Ok(saved)
}

/// The event stored under `key` by an earlier run of the same write, with its first
/// delivery and that delivery's lease if it is leased (to start it from memory).
pub(super) async fn stored_before(
    tx: &impl GenericClient,
    key: &EventKey,
) -> Result<SavedEvent, StoreError> {
    let row = tx
        .query_one(
            "SELECT e.id, e.payload, d.id, d.lease_token, d.leased_until IS NOT NULL
             FROM events e
             LEFT JOIN LATERAL (SELECT id, lease_token, leased_until FROM deliveries
                                WHERE event_id = e.id ORDER BY id LIMIT 1) d ON TRUE
             WHERE e.idempotency_key = $1",
            &[&key.as_bytes()],
        )
        .await?;
    let event: i64 = row.try_get(0)?;
    let payload = payload::unpack(row.try_get(1)?, || format!("event {event}"))?;
    let delivery: Option<i64> = row.try_get(2)?;
    let leased: Option<bool> = row.try_get(4)?;
    let lease = match leased {
        Some(true) => Some(LeaseToken(row.try_get(3)?)),
        _ => None,
    };
    tracing::warn!(
        event = row.try_get::<_, i64>(0)?,
        "event found stored by an earlier run of its write (ambiguous commit); not stored again"
    );
    Ok(SavedEvent {
        event: EventId(row.try_get(0)?),
        delivery: delivery.map(DeliveryId),
        lease,
        payload,
    })
}

/// The common case in one statement (one round trip): an event whose bytes are known, with
/// its first delivery. `None` for the other cases (partner events, no delivery).
async fn save_with_delivery(
    tx: &impl GenericClient,
    event: &NewEvent,
    stored: &[u8],
    key: &EventKey,
    claim: Option<Lease<'_>>,
) -> Result<Option<SavedEvent>, StoreError> {
    let (EventBody::Bytes(payload), Some(target)) = (&event.body, event.first_target()) else {
        return Ok(None);
    };
    let now = now_ms();
    let (claim_until, node) = (claim.map(|c| c.0), claim.map(|c| c.1));
    let sql = format!(
        "WITH e AS (
             INSERT INTO events (kind, channel_id, partner_id, phone_number_id, payload,
                                 received_at, idempotency_key, payload_size, trace_context)
             VALUES ($1, $2, $3, $4, $5, $6, $12, $15, $16)
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING id),
         {}
         FROM e LEFT JOIN c ON TRUE
         RETURNING event_id, id, ordered IS NOT NULL",
        ORDERED_INSERT.replace("{EVENT}", "e.id")
    );
    let insert = tx.prepare_cached(&sql).await?;
    let lease = claim.map(|_| LeaseToken::FIRST);
    let row = tx
        .query_opt(
            &insert,
            &[
                &event.kind.as_str(),
                &event.channel.as_ref().map(ChannelId::as_str),
                &event.partner.as_ref().map(PartnerId::as_str),
                &event.phone_number_id,
                &stored,
                &event.received_at,
                &target.to_stored(),
                &claim_until.unwrap_or(now),
                &claim_until,
                &now,
                &node,
                &key.as_bytes(),
                &lease.map_or(0, |token| token.0),
                &HELD_UNTIL,
                &(payload.len() as i64),
                &trace_column(event.trace.as_ref()),
            ],
        )
        .await?;
    let Some(row) = row else {
        return stored_before(tx, key).await.map(Some);
    };
    let ordered: bool = row.try_get(2)?;
    Ok(Some(SavedEvent {
        event: EventId(row.try_get(0)?),
        delivery: Some(DeliveryId(row.try_get(1)?)),
        lease: lease.filter(|_| !ordered),
        payload: payload.clone(),
    }))
}

/// The deliveries insert both event inserts share, after a `WITH` and before its `FROM`
/// (the event's `e.id` or `$1`, joined with `c`). `$2` channel, `$3` partner, `$6` window
/// start, `$7` target, `$8` first due time, `$9` lease end, `$10` now, `$11` node, `$13`
/// lease token, `$14` [`HELD_UNTIL`].
///
/// A primary delivery of an ordered channel (the flag read here, share-locking the channel
/// row so the switch waits for it) is never leased: due now when its channel has no other
/// pending ordered delivery, else held. The one it waits behind is share-locked (lowest id
/// first), so that delivery's settle cannot miss it (module `ordering`). Other deliveries
/// pay one primary-key lookup.
const ORDERED_INSERT: &str = "c AS (SELECT 1::smallint AS ordered FROM channels
               WHERE id = $2 AND ordered AND $7::text = 'primary' FOR SHARE),
         ahead AS (SELECT 1 FROM deliveries q, c
                   WHERE q.ordered IS NOT NULL AND q.state = 'pending' AND q.channel_id = $2
                   ORDER BY q.id LIMIT 1 FOR SHARE OF q)
         INSERT INTO deliveries (event_id, channel_id, partner_id, target, state,
                                 next_attempt_at, leased_until, window_start, updated_at,
                                 leased_by, lease_token, ordered)
         SELECT {EVENT}, $2, $3, $7, 'pending',
                CASE WHEN c.ordered IS NULL THEN $8::bigint
                     WHEN EXISTS (SELECT 1 FROM ahead) THEN $14::bigint
                     ELSE $10::bigint END,
                CASE WHEN c.ordered IS NULL THEN $9::bigint END, $6, $10,
                CASE WHEN c.ordered IS NULL THEN $11::text END,
                CASE WHEN c.ordered IS NULL THEN $13::bigint ELSE 0 END, c.ordered";

/// Inserts a pending delivery, leased to `claim`'s node (first lease generation) if given:
/// an extra or a partner delivery, never ordered (a primary delivery is stored with its
/// event by `save_with_delivery`, which applies the channel's ordering).
pub(super) async fn insert_delivery(
    tx: &impl GenericClient,
    event: EventId,
    (channel, partner): (Option<&ChannelId>, Option<&PartnerId>),
    target: &Target,
    window_start: i64,
    claim: Option<Lease<'_>>,
) -> Result<DeliveryId, StoreError> {
    let now = now_ms();
    let (claim_until, node) = (claim.map(|c| c.0), claim.map(|c| c.1));
    let insert = tx
        .prepare_cached(
            "INSERT INTO deliveries (event_id, channel_id, partner_id, target, state,
                                     next_attempt_at, leased_until, window_start, updated_at,
                                     leased_by, lease_token)
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .await?;
    let row = tx
        .query_one(
            &insert,
            &[
                &event.0,
                &channel.map(ChannelId::as_str),
                &partner.map(PartnerId::as_str),
                &target.to_stored(),
                &claim_until.unwrap_or(now),
                &claim_until,
                &window_start,
                &now,
                &node,
                &claim.map_or(0, |_| LeaseToken::FIRST.0),
            ],
        )
        .await?;
    Ok(DeliveryId(row.try_get(0)?))
}

/// Leases due deliveries and returns them with their payloads; rows another node holds
/// locked are skipped, not waited for. The running sum of the rows' memory cost (payload
/// plus [`DELIVERY_MEMORY_OVERHEAD`], as `memory_cost`) cuts the claim at `max_bytes`.
pub async fn claim_due(
    tx: &impl GenericClient,
    now: i64,
    (limit, max_bytes): (usize, usize),
    (lease_until, node): Lease<'_>,
) -> Result<Vec<DueDelivery>, StoreError> {
    // An ordered delivery that is not its channel's head is not claimable (`CLAIMABLE`); the
    // running sum is over the claimable rows only.
    let sql = format!(
        "WITH due AS (
                 SELECT d.id, d.next_attempt_at,
                        coalesce(e.payload_size, octet_length(e.payload)) AS size
                 FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE d.state = 'pending' AND d.next_attempt_at <= $1 AND {CLAIMABLE}
                 ORDER BY d.next_attempt_at LIMIT $2
                 FOR UPDATE OF d SKIP LOCKED),
             fitting AS (
                 SELECT id FROM (
                     SELECT id, sum(size::bigint + $6::bigint)
                                OVER (ORDER BY next_attempt_at, id) AS running
                     FROM due) sized
                 WHERE running <= $5::bigint)
             UPDATE deliveries d SET next_attempt_at = $3, leased_until = $3, leased_by = $4,
                                     lease_token = d.lease_token + 1
             FROM fitting, events e
             WHERE d.id = fitting.id AND e.id = d.event_id
             RETURNING d.id, d.event_id, d.channel_id, d.target, d.attempts, d.window_start,
                       d.window_attempts, e.payload, d.partner_id, d.lease_token,
                       e.trace_context"
    );
    let claim = tx.prepare_cached(&sql).await?;
    let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
    let overhead = DELIVERY_MEMORY_OVERHEAD as i64;
    let rows = tx
        .query(
            &claim,
            &[
                &now,
                &(limit as i64),
                &lease_until,
                &node,
                &max_bytes,
                &overhead,
            ],
        )
        .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        match due_from_row(&row)? {
            Some(due) => claimed.push(due),
            None => fail_unreadable(tx, &row).await?,
        }
    }
    Ok(claimed)
}

/// A delivery whose target cannot be read (written by another version, or damaged) can
/// never be attempted: it is failed with the reason, instead of coming back every lease.
async fn fail_unreadable(tx: &impl GenericClient, row: &Row) -> Result<(), StoreError> {
    let (id, target): (i64, String) = (row.try_get(0)?, row.try_get(3)?);
    tracing::warn!(
        delivery = id,
        target,
        "delivery with an unreadable target marked failed"
    );
    let reason = format!("unreadable target {target:?}: this version cannot deliver it");
    tx.execute(
        "UPDATE deliveries SET state = 'failed', leased_until = NULL, last_error = $1,
                               updated_at = $2
         WHERE id = $3",
        &[&reason, &now_ms(), &id],
    )
    .await?;
    Ok(())
}

/// A claimed row; `None` for a target this version cannot read (failed by the caller).
fn due_from_row(row: &Row) -> Result<Option<DueDelivery>, StoreError> {
    let target: String = row.try_get(3)?;
    let Some(target) = Target::from_stored(&target) else {
        return Ok(None);
    };
    let event: i64 = row.try_get(1)?;
    let payload = payload::unpack(row.try_get(7)?, || format!("event {event}"))?;
    Ok(Some(DueDelivery {
        id: DeliveryId(row.try_get(0)?),
        event: EventId(row.try_get(1)?),
        channel: row
            .try_get::<_, Option<String>>(2)?
            .map(ChannelId::from_raw),
        partner: row
            .try_get::<_, Option<String>>(8)?
            .map(PartnerId::from_raw),
        target,
        attempts: count(row.try_get(4)?),
        window_start: row.try_get(5)?,
        window_attempts: count(row.try_get(6)?),
        payload,
        lease: LeaseToken(row.try_get(9)?),
        trace: trace_of_column(row.try_get(10)?),
    }))
}

/// A stored non-negative count as the domain's `u32`.
pub(super) fn count(raw: i64) -> u32 {
    u32::try_from(raw.max(0)).unwrap_or(u32::MAX)
}

/// Makes the deliveries `node` holds leased due now (its previous run's, at start).
pub async fn release_leases(tx: &impl GenericClient, node: &str) -> Result<u64, StoreError> {
    Ok(tx
        .execute(
            "UPDATE deliveries SET next_attempt_at = $1, leased_until = NULL
             WHERE state = 'pending' AND leased_until IS NOT NULL AND leased_by = $2",
            &[&now_ms(), &node],
        )
        .await?)
}

/// Pushes the leases of `held` forward to `until`, each only while `node` holds it under the
/// same lease; returns the deliveries whose lease is lost (neither renewed nor settled under
/// that lease: claimed again after it expired).
pub async fn renew_leases(
    tx: &impl GenericClient,
    held: &[HeldLease],
    until: i64,
    node: &str,
) -> Result<Vec<DeliveryId>, StoreError> {
    let ids: Vec<i64> = held.iter().map(|h| h.delivery.0).collect();
    let tokens: Vec<i64> = held.iter().map(|h| h.lease.0).collect();
    // The final SELECT reads the rows as they were before the UPDATE: one settled under the
    // same lease meanwhile has it cleared but still names it.
    let lost = tx
        .query(
            "WITH h AS (SELECT * FROM unnest($2::bigint[], $3::bigint[]) AS h(id, token)),
                  renewed AS (
                      UPDATE deliveries d SET next_attempt_at = $1, leased_until = $1
                      FROM h
                      WHERE d.id = h.id AND d.lease_token = h.token AND d.leased_by = $4
                        AND d.state = 'pending' AND d.leased_until IS NOT NULL
                      RETURNING d.id)
             SELECT h.id FROM h
             WHERE h.id NOT IN (SELECT id FROM renewed)
               AND NOT EXISTS (SELECT 1 FROM deliveries d
                               WHERE d.id = h.id AND d.lease_token = h.token
                                 AND d.leased_by = $4 AND d.leased_until IS NULL)",
            &[&until, &ids, &tokens, &node],
        )
        .await?;
    lost.iter()
        .map(|row| Ok(DeliveryId(row.try_get(0)?)))
        .collect()
}

/// The columns a replay resets: due now, new age window, lease cleared (recovery too).
///
/// A primary delivery is ordered again if its channel is ordered now; the caller then holds
/// all but each channel's head (`ordering::hold_behind_heads`), so they go in id order.
pub(super) const REQUEUE: &str = "state = 'pending', next_attempt_at = $1, leased_until = NULL, \
     window_start = $1, window_attempts = attempts, updated_at = $1, \
     ordered = CASE WHEN target = 'primary' THEN (SELECT CASE WHEN c.ordered THEN 1 END \
                    FROM channels c WHERE c.id = deliveries.channel_id) END";

/// Re-queues every delivery in `state`, optionally of one channel or partner.
pub async fn retry_deliveries(
    tx: &impl GenericClient,
    state: DeliveryState,
    channel: Option<&ChannelId>,
    partner: Option<&PartnerId>,
    now: i64,
) -> Result<u64, StoreError> {
    // Rows are locked in id order, as retention locks them, so the two never deadlock.
    let sql = format!(
        "UPDATE deliveries SET {REQUEUE}
         WHERE id IN (SELECT id FROM deliveries
                      WHERE state = $2 AND ($3::text IS NULL OR channel_id = $3)
                        AND ($4::text IS NULL OR partner_id = $4)
                      ORDER BY id FOR UPDATE)
           AND state = $2 AND {PAYLOAD_KEPT}"
    );
    let params: [&Param<'_>; 4] = [
        &now,
        &state.as_str(),
        &channel.map(ChannelId::as_str),
        &partner.map(PartnerId::as_str),
    ];
    let requeued = tx.execute(&sql, &params).await?;
    if requeued > 0 {
        hold_behind_heads(tx, None).await?;
    }
    Ok(requeued)
}

/// Re-queues a failed or dropped delivery with a fresh age window.
pub async fn retry_delivery(
    tx: &impl GenericClient,
    id: DeliveryId,
    now: i64,
) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE deliveries SET {REQUEUE}
         WHERE id = $2 AND state IN ('failed', 'dropped') AND {PAYLOAD_KEPT}"
    );
    if tx.execute(&sql, &[&now, &id.0]).await? == 1 {
        hold_behind_heads(tx, None).await?;
        return Ok(());
    }
    let state = tx
        .query_opt("SELECT state FROM deliveries WHERE id = $1", &[&id.0])
        .await?;
    let state = state.map(|row| row.try_get::<_, String>(0)).transpose()?;
    Err(StoreError::not_retried(id, state))
}
