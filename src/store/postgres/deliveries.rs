//! SQL of events, deliveries and attempts on PostgreSQL. Each function runs inside the
//! caller's transaction; the rules are the SQLite backend's (see its `deliveries` module),
//! except that claims lock with `FOR UPDATE SKIP LOCKED`, so several nodes never claim the
//! same due delivery, and that every lease names its node (`leased_by`).

use bytes::Bytes;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::Param;
use crate::clock::now_ms;
use crate::domain::{ChannelId, DeliveryId, DeliveryState, EventId, PartnerId, Target};
use crate::store::{
    AttemptRecord, DueDelivery, EventBody, NewEvent, Outcome, SavedEvent, Settlement, StoreError,
    DELIVERY_MEMORY_OVERHEAD,
};

/// A lease: until when (ms since the epoch), and which node holds it.
pub type Lease<'a> = (i64, &'a str);

/// Inserts events and their first deliveries; renders partner event bodies once their id
/// is known.
pub async fn save_events(
    tx: &Transaction<'_>,
    events: &[NewEvent],
    claim: Option<Lease<'_>>,
) -> Result<Vec<SavedEvent>, StoreError> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO events (kind, channel_id, partner_id, phone_number_id, payload, received_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .await?;
    let mut saved = Vec::with_capacity(events.len());
    for event in events {
        if let Some(one) = save_with_delivery(tx, event, claim).await? {
            saved.push(one);
            continue;
        }
        let known = match &event.body {
            EventBody::Bytes(bytes) => bytes.clone(),
            EventBody::Partner(_) => Bytes::new(),
        };
        let row = tx
            .query_one(
                &insert,
                &[
                    &event.kind.as_str(),
                    &event.channel.as_ref().map(ChannelId::as_str),
                    &event.partner.as_ref().map(PartnerId::as_str),
                    &event.phone_number_id,
                    &known.as_ref(),
                    &event.received_at,
                ],
            )
            .await?;
        let id = EventId(row.try_get(0)?);
        let payload = match &event.body {
            EventBody::Bytes(_) => known,
            EventBody::Partner(partner_event) => {
                let rendered = partner_event.render(id);
                tx.execute(
                    "UPDATE events SET payload = $1 WHERE id = $2",
                    &[&rendered.as_ref(), &id.0],
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
            delivery,
            payload,
        });
    }
    Ok(saved)
}

/// The common case in one statement (one round trip): an event whose bytes are known, with
/// its first delivery. `None` for the other cases (partner events, no delivery).
async fn save_with_delivery(
    tx: &Transaction<'_>,
    event: &NewEvent,
    claim: Option<Lease<'_>>,
) -> Result<Option<SavedEvent>, StoreError> {
    let (EventBody::Bytes(payload), Some(target)) = (&event.body, event.first_target()) else {
        return Ok(None);
    };
    let now = now_ms();
    let (claim_until, node) = (claim.map(|c| c.0), claim.map(|c| c.1));
    let insert = tx
        .prepare_cached(
            "WITH e AS (
                 INSERT INTO events (kind, channel_id, partner_id, phone_number_id, payload,
                                     received_at)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id)
             INSERT INTO deliveries (event_id, channel_id, partner_id, target, state,
                                     next_attempt_at, leased_until, window_start, updated_at,
                                     leased_by)
             SELECT e.id, $2, $3, $7, 'pending', $8, $9, $6, $10, $11 FROM e
             RETURNING event_id, id",
        )
        .await?;
    let row = tx
        .query_one(
            &insert,
            &[
                &event.kind.as_str(),
                &event.channel.as_ref().map(ChannelId::as_str),
                &event.partner.as_ref().map(PartnerId::as_str),
                &event.phone_number_id,
                &payload.as_ref(),
                &event.received_at,
                &target.to_stored(),
                &claim_until.unwrap_or(now),
                &claim_until,
                &now,
                &node,
            ],
        )
        .await?;
    Ok(Some(SavedEvent {
        event: EventId(row.try_get(0)?),
        delivery: Some(DeliveryId(row.try_get(1)?)),
        payload: payload.clone(),
    }))
}

async fn insert_delivery(
    tx: &Transaction<'_>,
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
                                     leased_by)
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9) RETURNING id",
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
            ],
        )
        .await?;
    Ok(DeliveryId(row.try_get(0)?))
}

/// Leases due deliveries and returns them with their payloads; rows another node holds
/// locked are skipped, not waited for. The running sum of the rows' memory cost (payload
/// plus [`DELIVERY_MEMORY_OVERHEAD`], as `memory_cost`) cuts the claim at `max_bytes`.
pub async fn claim_due(
    tx: &Transaction<'_>,
    now: i64,
    (limit, max_bytes): (usize, usize),
    (lease_until, node): Lease<'_>,
) -> Result<Vec<DueDelivery>, StoreError> {
    let claim = tx
        .prepare_cached(
            "WITH due AS (
                 SELECT d.id, d.next_attempt_at, octet_length(e.payload) AS size
                 FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE d.state = 'pending' AND d.next_attempt_at <= $1
                 ORDER BY d.next_attempt_at LIMIT $2
                 FOR UPDATE OF d SKIP LOCKED),
             fitting AS (
                 SELECT id FROM (
                     SELECT id, sum(size::bigint + $6::bigint) OVER (ORDER BY next_attempt_at, id) AS running
                     FROM due) sized
                 WHERE running <= $5::bigint)
             UPDATE deliveries d SET next_attempt_at = $3, leased_until = $3, leased_by = $4
             FROM fitting, events e
             WHERE d.id = fitting.id AND e.id = d.event_id
             RETURNING d.id, d.event_id, d.channel_id, d.target, d.attempts, d.window_start,
                       d.window_attempts, e.payload, d.partner_id",
        )
        .await?;
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
        if let Some(due) = due_from_row(&row)? {
            claimed.push(due);
        }
    }
    Ok(claimed)
}

/// A claimed row; `None` for a target this version cannot read (its lease runs out).
fn due_from_row(row: &Row) -> Result<Option<DueDelivery>, StoreError> {
    let target: String = row.try_get(3)?;
    let Some(target) = Target::from_stored(&target) else {
        return Ok(None);
    };
    let payload: Vec<u8> = row.try_get(7)?;
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
        payload: Bytes::from(payload),
    }))
}

/// A stored non-negative count as the domain's `u32`.
pub(super) fn count(raw: i64) -> u32 {
    u32::try_from(raw.max(0)).unwrap_or(u32::MAX)
}

/// Makes the deliveries `node` holds leased due now (its previous run's, at start).
pub async fn release_leases(tx: &Transaction<'_>, node: &str) -> Result<u64, StoreError> {
    Ok(tx
        .execute(
            "UPDATE deliveries SET next_attempt_at = $1, leased_until = NULL
             WHERE state = 'pending' AND leased_until IS NOT NULL AND leased_by = $2",
            &[&now_ms(), &node],
        )
        .await?)
}

/// Records an attempt and its settlement; returns the extra deliveries created.
pub async fn settle(
    tx: &Transaction<'_>,
    outcome: &Outcome,
    node: &str,
) -> Result<Vec<(DeliveryId, Target)>, StoreError> {
    let id = outcome.delivery.0;
    let now = now_ms();
    let counted = i64::from(outcome.attempt.is_some());
    let (state, next, error) = match &outcome.settlement {
        Settlement::Delivered { .. } => (DeliveryState::Delivered, now, None),
        Settlement::Retry { at, error } => (DeliveryState::Pending, *at, Some(error.as_str())),
        Settlement::GaveUp { error } => (DeliveryState::Failed, now, Some(error.as_str())),
        Settlement::Dropped { reason } => (DeliveryState::Dropped, now, Some(reason.as_str())),
        Settlement::Deferred { at } => {
            let update =
                "UPDATE deliveries SET next_attempt_at = $1, leased_until = NULL WHERE id = $2";
            let attempt = outcome.attempt.as_ref();
            update_recording_attempt(tx, update, &[at, &id], attempt).await?;
            return Ok(Vec::new());
        }
    };
    update_delivery(tx, outcome, (state, counted, next, error, now)).await?;
    let Settlement::Delivered {
        extras,
        claim_until,
    } = &outcome.settlement
    else {
        return Ok(Vec::new());
    };
    if extras.is_empty() {
        return Ok(Vec::new());
    }
    let row = tx
        .query_one(
            "SELECT event_id, channel_id FROM deliveries WHERE id = $1",
            &[&id],
        )
        .await?;
    let event = EventId(row.try_get(0)?);
    let channel = row
        .try_get::<_, Option<String>>(1)?
        .map(ChannelId::from_raw);
    let mut created = Vec::with_capacity(extras.len());
    for name in extras {
        let target = Target::Extra(name.clone());
        let owners = (channel.as_ref(), None);
        let claim = claim_until.map(|until| (until, node));
        let extra = insert_delivery(tx, event, owners, &target, now, claim).await?;
        created.push((extra, target));
    }
    Ok(created)
}

/// The new state of a settled delivery: state, attempts to add, next attempt, last error,
/// and the time of the change.
type Change<'a> = (DeliveryState, i64, i64, Option<&'a str>, i64);

/// Updates the delivery to `change` and records its attempt, if one was made.
async fn update_delivery(
    tx: &Transaction<'_>,
    outcome: &Outcome,
    (state, counted, next, error, now): Change<'_>,
) -> Result<(), StoreError> {
    let update = "UPDATE deliveries SET state = $1, attempts = attempts + $2,
             next_attempt_at = $3, leased_until = NULL, last_error = $4, updated_at = $5
         WHERE id = $6";
    let state = state.as_str();
    let params: [&Param<'_>; 6] = [&state, &counted, &next, &error, &now, &outcome.delivery.0];
    update_recording_attempt(tx, update, &params, outcome.attempt.as_ref()).await
}

/// Runs `update` (an `UPDATE` of one delivery whose id is its last parameter) and, with an
/// `attempt`, inserts the attempt in the same statement (one round trip).
async fn update_recording_attempt(
    tx: &Transaction<'_>,
    update: &str,
    params: &[&Param<'_>],
    attempt: Option<&AttemptRecord>,
) -> Result<(), StoreError> {
    let Some(attempt) = attempt else {
        let statement = tx.prepare_cached(update).await?;
        tx.execute(&statement, params).await?;
        return Ok(());
    };
    let (id, first) = (params.len(), params.len() + 1);
    let values: Vec<String> = (first..first + 7).map(|n| format!("${n}")).collect();
    let sql = format!(
        "WITH a AS (
             INSERT INTO attempts (delivery_id, number, started_at, duration_ms, url, status,
                                   error, response_excerpt)
             VALUES (${id}, {}))
         {update}",
        values.join(", ")
    );
    let (number, status) = (i64::from(attempt.number), attempt.status.map(i64::from));
    let error = attempt.error.map(|kind| kind.as_str());
    let mut all: Vec<&Param<'_>> = params.to_vec();
    all.extend([
        &number as &Param<'_>,
        &attempt.started_at,
        &attempt.duration_ms,
        &attempt.url,
        &status,
        &error,
        &attempt.response_excerpt,
    ]);
    let statement = tx.prepare_cached(&sql).await?;
    tx.execute(&statement, &all).await?;
    Ok(())
}

/// The columns a replay resets: due now, new age window, lease cleared.
const REQUEUE: &str = "state = 'pending', next_attempt_at = $1, leased_until = NULL, \
     window_start = $1, window_attempts = attempts, updated_at = $1";

/// Re-queues every delivery in `state`, optionally of one channel or partner.
pub async fn retry_deliveries(
    tx: &Transaction<'_>,
    state: DeliveryState,
    channel: Option<&ChannelId>,
    partner: Option<&PartnerId>,
    now: i64,
) -> Result<u64, StoreError> {
    let sql = format!(
        "UPDATE deliveries SET {REQUEUE}
         WHERE state = $2 AND ($3::text IS NULL OR channel_id = $3)
           AND ($4::text IS NULL OR partner_id = $4)"
    );
    let params: [&Param<'_>; 4] = [
        &now,
        &state.as_str(),
        &channel.map(ChannelId::as_str),
        &partner.map(PartnerId::as_str),
    ];
    Ok(tx.execute(&sql, &params).await?)
}

/// Re-queues a failed or dropped delivery with a fresh age window.
pub async fn retry_delivery(
    tx: &Transaction<'_>,
    id: DeliveryId,
    now: i64,
) -> Result<(), StoreError> {
    let sql =
        format!("UPDATE deliveries SET {REQUEUE} WHERE id = $2 AND state IN ('failed', 'dropped')");
    if tx.execute(&sql, &[&now, &id.0]).await? == 1 {
        return Ok(());
    }
    let state = tx
        .query_opt("SELECT state FROM deliveries WHERE id = $1", &[&id.0])
        .await?;
    match state {
        None => Err(StoreError::NotFound {
            what: "delivery",
            id: id.to_string(),
        }),
        Some(row) => Err(StoreError::Conflict(format!(
            "Delivery {id} is {}: only failed or dropped deliveries can be retried",
            row.try_get::<_, String>(0)?
        ))),
    }
}
