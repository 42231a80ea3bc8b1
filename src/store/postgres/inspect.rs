//! SQL of the read side on PostgreSQL (an event with its deliveries and attempts, paged
//! lists, the queue depth) and of retention.

use bytes::Bytes;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::deliveries::count;
use super::Param;
use crate::domain::{ChannelId, DeliveryId, DeliveryState, EventId, EventKind, PartnerId, Target};
use crate::store::columns::parse_error_kind;
use crate::store::{
    AttemptRecord, DeliveryFilter, DeliveryRecord, EventFilter, EventRecord, EventSummary,
    StoreError,
};

const DELIVERY_COLUMNS: &str = "id, event_id, channel_id, target, state, attempts, \
     next_attempt_at, last_error, updated_at, partner_id";

fn delivery_from_row(row: &Row) -> Result<DeliveryRecord, StoreError> {
    let target: String = row.try_get(3)?;
    let state: String = row.try_get(4)?;
    Ok(DeliveryRecord {
        id: DeliveryId(row.try_get(0)?),
        event: EventId(row.try_get(1)?),
        channel: row
            .try_get::<_, Option<String>>(2)?
            .map(ChannelId::from_raw),
        partner: row
            .try_get::<_, Option<String>>(9)?
            .map(PartnerId::from_raw),
        target: Target::from_stored(&target).unwrap_or(Target::Primary),
        state: DeliveryState::parse(&state).unwrap_or(DeliveryState::Pending),
        attempts: count(row.try_get(5)?),
        next_attempt_at: row.try_get(6)?,
        last_error: row.try_get(7)?,
        updated_at: row.try_get(8)?,
    })
}

/// The columns [`summary_from_row`] reads, in its order.
pub(super) const SUMMARY_COLUMNS: &str =
    "id, kind, channel_id, partner_id, phone_number_id, received_at";

pub(super) fn summary_from_row(row: &Row) -> Result<EventSummary, StoreError> {
    let kind: String = row.try_get(1)?;
    Ok(EventSummary {
        id: EventId(row.try_get(0)?),
        kind: EventKind::parse(&kind).unwrap_or(EventKind::Unroutable),
        channel: row
            .try_get::<_, Option<String>>(2)?
            .map(ChannelId::from_raw),
        partner: row
            .try_get::<_, Option<String>>(3)?
            .map(PartnerId::from_raw),
        phone_number_id: row.try_get(4)?,
        received_at: row.try_get(5)?,
    })
}

/// An event, its deliveries and their attempts.
pub async fn event(tx: &Transaction<'_>, id: EventId) -> Result<Option<EventRecord>, StoreError> {
    let sql = format!("SELECT {SUMMARY_COLUMNS}, payload FROM events WHERE id = $1");
    let Some(row) = tx.query_opt(&sql, &[&id.0]).await? else {
        return Ok(None);
    };
    let summary = summary_from_row(&row)?;
    let payload: Vec<u8> = row.try_get(6)?;
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE event_id = $1 ORDER BY id");
    let mut deliveries = Vec::new();
    for row in tx.query(&sql, &[&id.0]).await? {
        let delivery = delivery_from_row(&row)?;
        let attempts = attempts_of(tx, delivery.id).await?;
        deliveries.push((delivery, attempts));
    }
    Ok(Some(EventRecord {
        summary,
        payload: Bytes::from(payload),
        deliveries,
    }))
}

async fn attempts_of(
    tx: &Transaction<'_>,
    delivery: DeliveryId,
) -> Result<Vec<AttemptRecord>, StoreError> {
    let rows = tx
        .query(
            "SELECT a.number, a.started_at, a.duration_ms, coalesce(u.url, a.url), a.status,
                    a.error, a.response_excerpt, a.retry_after_ms
             FROM attempts a LEFT JOIN attempt_urls u ON u.id = a.url_id
             WHERE a.delivery_id = $1 ORDER BY a.id",
            &[&delivery.0],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let error: Option<String> = row.try_get(5)?;
            let status: Option<i64> = row.try_get(4)?;
            Ok(AttemptRecord {
                number: count(row.try_get(0)?),
                started_at: row.try_get(1)?,
                duration_ms: row.try_get(2)?,
                url: row.try_get::<_, Option<String>>(3)?.unwrap_or_default(),
                status: status.and_then(|s| u16::try_from(s).ok()),
                error: error.as_deref().and_then(parse_error_kind),
                response_excerpt: row.try_get(6)?,
                retry_after_ms: row.try_get(7)?,
            })
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
    rows.iter().map(delivery_from_row).collect()
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
    rows.iter().map(summary_from_row).collect()
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

/// The first column of `rows`, as ids.
fn ids(rows: Vec<Row>) -> Result<Vec<i64>, StoreError> {
    Ok(rows
        .iter()
        .map(|row| row.try_get::<_, i64>(0))
        .collect::<Result<Vec<_>, _>>()?)
}
