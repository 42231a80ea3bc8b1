//! SQL of the read side on PostgreSQL (an event with its deliveries and attempts, paged
//! lists, the queue depth) and of retention (events, and payloads sooner).

use deadpool_postgres::Transaction;

use crate::store::columns::trace_of_column;
use crate::store::payload;
use crate::store::retention::{batch_end, PayloadPurge, PAYLOAD_CURSOR};
use tokio_postgres::Row;

use super::Param;
use crate::domain::{ChannelId, DeliveryId, DeliveryState, EventId, EventKind};
use crate::store::decode::{
    attempt_record, delivery_record, event_summary, ATTEMPT_COLUMNS, DELIVERY_COLUMNS,
    SUMMARY_COLUMNS,
};
use crate::store::{
    AttemptRecord, DeliveryFilter, DeliveryRecord, EventFilter, EventRecord, EventSummary,
    StoreError,
};

/// An event, its deliveries and their attempts.
pub async fn event(tx: &Transaction<'_>, id: EventId) -> Result<Option<EventRecord>, StoreError> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS}, payload, payload_purged_at, trace_context FROM events WHERE id = $1"
    );
    let Some(row) = tx.query_opt(&sql, &[&id.0]).await? else {
        return Ok(None);
    };
    let summary = event_summary(&row)?;
    let payload = payload::unpack(row.try_get(6)?, || format!("event {}", id.0))?;
    let payload_purged_at = row.try_get(7)?;
    let trace = trace_of_column(row.try_get(8)?);
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE event_id = $1 ORDER BY id");
    let mut deliveries = Vec::new();
    for row in tx.query(&sql, &[&id.0]).await? {
        let delivery = delivery_record(&row)?;
        let attempts = attempts_of(tx, delivery.id).await?;
        deliveries.push((delivery, attempts));
    }
    Ok(Some(EventRecord {
        summary,
        payload,
        payload_purged_at,
        trace,
        deliveries,
    }))
}

async fn attempts_of(
    tx: &Transaction<'_>,
    delivery: DeliveryId,
) -> Result<Vec<AttemptRecord>, StoreError> {
    let sql = format!(
        "SELECT a.id, {ATTEMPT_COLUMNS}
         FROM attempts a LEFT JOIN attempt_urls u ON u.id = a.url_id
         WHERE a.delivery_id = $1 ORDER BY a.id"
    );
    let rows = tx.query(&sql, &[&delivery.0]).await?;
    rows.iter()
        .map(|row| {
            let id: i64 = row.try_get(0)?;
            attempt_record(row, 1, || format!("attempt {id}"))
        })
        .collect()
}

/// Deliveries by ascending id, filtered.
pub async fn deliveries(
    tx: &Transaction<'_>,
    filter: &DeliveryFilter,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries
         WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR channel_id = $2)
           AND id > $3
         ORDER BY id LIMIT $4"
    );
    let params: [&Param<'_>; 4] = [
        &filter.state.map(DeliveryState::as_str),
        &filter.channel.as_ref().map(ChannelId::as_str),
        &filter.after.map_or(0, |id| id.0),
        &(filter.limit as i64),
    ];
    let rows = tx.query(&sql, &params).await?;
    rows.iter().map(delivery_record).collect()
}

/// Events by ascending id, filtered.
pub async fn events(
    tx: &Transaction<'_>,
    filter: &EventFilter,
) -> Result<Vec<EventSummary>, StoreError> {
    let condition = match filter.kind {
        // A literal, so the planner can use the partial index `events_unroutable`.
        Some(EventKind::Unroutable) => "kind = 'unroutable'",
        Some(EventKind::Whatsapp) => "kind = 'whatsapp'",
        Some(EventKind::Partner) => "kind = 'partner'",
        Some(EventKind::Waba) => "kind = 'waba'",
        None => "TRUE",
    };
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM events WHERE {condition} AND id > $1 ORDER BY id LIMIT $2"
    );
    let after = filter.after.map_or(0, |id| id.0);
    let rows = tx.query(&sql, &[&after, &(filter.limit as i64)]).await?;
    rows.iter().map(event_summary).collect()
}

/// Deletes finished events older than `before`, with their deliveries and attempts.
///
/// The candidates are read first; then every delivery of theirs is locked (in id order, as
/// bulk replays lock them, so the two cannot deadlock) and the condition is read again in a
/// new statement, which sees every requeue committed before the lock was granted, while
/// later ones wait for this transaction. So a delivery requeued (e.g. by
/// `POST /admin/deliveries/retry`) after the first read is never deleted.
pub async fn purge_finished(
    tx: &Transaction<'_>,
    before: i64,
    limit: usize,
) -> Result<u64, StoreError> {
    let finished = "NOT EXISTS (SELECT 1 FROM deliveries d
                                WHERE d.event_id = e.id AND d.state = 'pending')";
    let candidates = ids(tx
        .query(
            &format!(
                "SELECT e.id FROM events e WHERE e.received_at < $1 AND {finished}
                 ORDER BY e.id LIMIT $2"
            ),
            &[&before, &(limit as i64)],
        )
        .await?)?;
    if candidates.is_empty() {
        return Ok(0);
    }
    tx.query(
        "SELECT id FROM deliveries WHERE event_id = ANY($1) ORDER BY id FOR UPDATE",
        &[&candidates],
    )
    .await?;
    let ids = ids(tx
        .query(
            &format!("SELECT e.id FROM events e WHERE e.id = ANY($1) AND {finished}"),
            &[&candidates],
        )
        .await?)?;
    tx.execute(
        "DELETE FROM attempts WHERE delivery_id IN
             (SELECT id FROM deliveries WHERE event_id = ANY($1))",
        &[&ids],
    )
    .await?;
    tx.execute("DELETE FROM deliveries WHERE event_id = ANY($1)", &[&ids])
        .await?;
    Ok(tx
        .execute("DELETE FROM events WHERE id = ANY($1)", &[&ids])
        .await?)
}

/// Empties the payloads of finished events received before `before`, up to `limit` events
/// past the purge's cursor (store/retention.rs), and moves the cursor. The cursor's row is
/// locked first, so nodes purging at the same time take turns instead of doing the same
/// batch twice. A requeue that commits while the batch runs can still put a delivery of a
/// purged event back in the queue; the engine drops it with the reason (delivery/route.rs).
pub async fn purge_payloads(
    tx: &Transaction<'_>,
    before: i64,
    limit: usize,
    now: i64,
) -> Result<PayloadPurge, StoreError> {
    tx.execute(
        "INSERT INTO maintenance (name, value) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
        &[&PAYLOAD_CURSOR],
    )
    .await?;
    let cursor: i64 = tx
        .query_one(
            "SELECT value FROM maintenance WHERE name = $1 FOR UPDATE",
            &[&PAYLOAD_CURSOR],
        )
        .await?
        .try_get(0)?;
    let next = tx
        .query(
            "SELECT id, received_at FROM events WHERE id > $1 ORDER BY id LIMIT $2",
            &[&cursor, &(limit as i64)],
        )
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect::<Result<Vec<(i64, i64)>, StoreError>>()?;
    let Some((through, examined)) = batch_end(&next, before) else {
        return Ok(PayloadPurge::default());
    };
    let purged = tx
        .execute(
            "UPDATE events e SET payload = '', payload_size = 0, payload_purged_at = $3
             WHERE e.id > $1 AND e.id <= $2 AND e.payload_purged_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM deliveries d
                               WHERE d.event_id = e.id AND d.state = 'pending')",
            &[&cursor, &through, &now],
        )
        .await?;
    tx.execute(
        "UPDATE maintenance SET value = $2 WHERE name = $1",
        &[&PAYLOAD_CURSOR, &through],
    )
    .await?;
    Ok(PayloadPurge { examined, purged })
}

/// The first column of `rows`, as ids.
fn ids(rows: Vec<Row>) -> Result<Vec<i64>, StoreError> {
    Ok(rows
        .iter()
        .map(|row| row.try_get::<_, i64>(0))
        .collect::<Result<Vec<_>, _>>()?)
}

impl crate::store::decode::StoredRow for Row {
    fn int(&self, index: usize) -> Result<i64, StoreError> {
        Ok(self.try_get(index)?)
    }
    fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(index)?)
    }
    fn text(&self, index: usize) -> Result<String, StoreError> {
        Ok(self.try_get(index)?)
    }
    fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(index)?)
    }
    fn opt_flag(&self, index: usize) -> Result<Option<bool>, StoreError> {
        Ok(self.try_get(index)?)
    }
}
