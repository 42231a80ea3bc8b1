//! SQL of settles on PostgreSQL: an attempt's outcome, applied only while this node still
//! holds the delivery under the lease it was attempted under.
//!
//! The update names the lease (`id`, `leased_by`, `lease_token`, a lease still set) and the
//! attempt row is inserted only from the updated row, in the same statement, so a settle
//! whose lease is gone writes nothing. One that finds its own lease already settled (a
//! re-run of a batch whose `COMMIT` failed after the server committed) records nothing new
//! and answers as the first run would have: see `settled_before`.

use deadpool_postgres::GenericClient;

use super::deliveries::insert_delivery;
use super::ordering::wake_head;
use super::Param;
use crate::clock::now_ms;
use crate::domain::{AttemptId, ChannelId, DeliveryId, EventId, RowChange};
use crate::store::decode;
use crate::store::urls::destination_of;
use crate::store::{
    AttemptRecord, CreatedDelivery, LeaseToken, Outcome, Settled, Settlement, StoreError,
};

/// What a settled attempt sets: state, attempts to add, next attempt, last error, time.
const SETTLED: &str = "state = $4, attempts = attempts + $5, next_attempt_at = $6, \
     leased_until = NULL, last_error = $7, updated_at = $8";

/// What a deferral sets: due again later, no attempt counted.
const DEFERRED: &str = "next_attempt_at = $4, leased_until = NULL, parked_behind = $5";

/// Records an attempt and its settlement if `node` still holds the delivery under
/// `outcome.lease`; returns the extra deliveries created.
///
/// `url_id` is the attempt's URL in `attempt_urls` (stored beforehand, see `store_url`).
pub async fn settle(
    tx: &impl GenericClient,
    outcome: &Outcome,
    node: &str,
    url_id: Option<i64>,
) -> Result<Settled, StoreError> {
    let now = now_ms();
    let effect = outcome.settlement.effect(outcome.attempt.is_some(), now);
    let mut params: Vec<&Param<'_>> = vec![&outcome.delivery.0, &node, &outcome.lease.0];
    let (state, behind);
    let set = match &effect.row {
        RowChange::Settled {
            state: new_state,
            attempts_added,
            next_attempt_at,
            last_error,
        } => {
            state = new_state.as_str();
            params.extend([
                &state as &Param<'_>,
                attempts_added,
                next_attempt_at,
                last_error,
                &now,
            ]);
            SETTLED
        }
        RowChange::Deferred {
            next_attempt_at,
            parked_behind,
        } => {
            behind = parked_behind.map(|d| d.as_str());
            params.extend([next_attempt_at as &Param<'_>, &behind]);
            DEFERRED
        }
    };
    let attempt = outcome.attempt.as_ref().map(|a| (a, url_id));
    let Some(held) = update_held(tx, set, &params, attempt).await? else {
        return settled_before(tx, outcome, node).await;
    };
    if let (true, Some(channel)) = (effect.ends_head && held.ordered, &held.channel) {
        // A statement of its own, after the update: it sees every insert that waited for it.
        wake_head(tx, channel.as_str(), now).await?;
    }
    let mut extras = Vec::with_capacity(effect.creates.len());
    for target in effect.creates {
        let owners = (held.channel.as_ref(), None);
        let claim = effect.claim_until.map(|until| (until, node));
        let id = insert_delivery(tx, held.event, owners, &target, now, claim).await?;
        let lease = claim.map(|_| LeaseToken::FIRST);
        extras.push(CreatedDelivery { id, target, lease });
    }
    Ok(Settled::Recorded {
        extras,
        attempt: held.attempt,
    })
}

/// Stores `url` in `attempt_urls` if it is not there yet (another node may be storing it at
/// the same time: the insert then waits for it, and the select, a statement of its own, sees
/// its row); returns its id. The URL's destination is stored with it.
pub async fn store_url(tx: &impl GenericClient, url: &str) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO attempt_urls (url, destination) VALUES ($1, $2)
         ON CONFLICT (url) DO NOTHING",
        &[&url, &destination_of(url)],
    )
    .await?;
    let row = tx
        .query_one("SELECT id FROM attempt_urls WHERE url = $1", &[&url])
        .await?;
    Ok(row.try_get(0)?)
}

/// The settled delivery as the update left it.
struct Updated {
    event: EventId,
    channel: Option<ChannelId>,
    /// Whether it is ordered (its channel's next one waits for it to leave `pending`).
    ordered: bool,
    /// The attempt inserted with the update, if one was.
    attempt: Option<AttemptId>,
}

/// Runs `UPDATE deliveries SET {set}` on the delivery held under the lease in `params[..3]`
/// (id, node, token) and, with an `attempt`, inserts the attempt from the updated row in
/// the same statement (one round trip); returns the updated delivery, or `None` when no
/// row was held under that lease (nothing written).
async fn update_held(
    tx: &impl GenericClient,
    set: &str,
    params: &[&Param<'_>],
    attempt: Option<(&AttemptRecord, Option<i64>)>,
) -> Result<Option<Updated>, StoreError> {
    let update = format!(
        "UPDATE deliveries SET {set}
         WHERE id = $1 AND leased_by = $2 AND lease_token = $3 AND leased_until IS NOT NULL
         RETURNING id, event_id, channel_id, ordered"
    );
    let mut all: Vec<&Param<'_>> = params.to_vec();
    let sql = match attempt {
        None => {
            format!(
                "WITH u AS ({update})
                 SELECT event_id, channel_id, ordered IS NOT NULL, NULL::bigint FROM u"
            )
        }
        Some(_) => {
            let first = params.len() + 1;
            let types = [
                "bigint", "bigint", "bigint", "bigint", "text", "bigint", "text", "text", "bigint",
            ];
            let values: Vec<String> = (first..)
                .zip(types)
                .map(|(n, ty)| format!("${n}::{ty}"))
                .collect();
            format!(
                "WITH u AS ({update}),
                      a AS (INSERT INTO attempts (delivery_id, number, started_at, duration_ms,
                                                  url_id, url, status, error,
                                                  response_excerpt, retry_after_ms)
                            SELECT u.id, {} FROM u RETURNING id)
                 SELECT event_id, channel_id, ordered IS NOT NULL, (SELECT id FROM a) FROM u",
                values.join(", ")
            )
        }
    };
    let recorded = attempt.map(|(a, url_id)| {
        let (number, status) = (i64::from(a.number), a.status.map(i64::from));
        // The URL's text only where no reference to it is known.
        let text = url_id.is_none().then_some(a.url.as_str());
        (
            number,
            status,
            a.error.map(|kind| kind.as_str()),
            url_id,
            text,
        )
    });
    if let (Some((attempt, _)), Some((number, status, error, url_id, text))) = (attempt, &recorded)
    {
        all.extend([
            number as &Param<'_>,
            &attempt.started_at,
            &attempt.duration_ms,
            url_id,
            text,
            status,
            error,
            &attempt.response_excerpt,
            &attempt.retry_after_ms,
        ]);
    }
    let statement = tx.prepare_cached(&sql).await?;
    let Some(row) = tx.query_opt(&statement, &all).await? else {
        return Ok(None);
    };
    let channel = row
        .try_get::<_, Option<String>>(1)?
        .map(ChannelId::from_raw);
    Ok(Some(Updated {
        event: EventId(row.try_get(0)?),
        channel,
        ordered: row.try_get(2)?,
        attempt: row.try_get::<_, Option<i64>>(3)?.map(AttemptId),
    }))
}

/// A settle that found no lease to settle. If the delivery still names this very lease,
/// with the lease cleared, the lease was settled already: by an earlier run of this same
/// settle whose answer was lost (an ambiguous `COMMIT`), since nothing else clears a lease
/// without a new claim changing the token. That run's work stands: nothing is written
/// again, and the extras it created that are still leased to this node are returned, so
/// they start from memory instead of waiting out their lease. Otherwise the lease is lost.
pub(super) async fn settled_before(
    tx: &impl GenericClient,
    outcome: &Outcome,
    node: &str,
) -> Result<Settled, StoreError> {
    let settled = tx
        .query_opt(
            "SELECT event_id FROM deliveries
             WHERE id = $1 AND leased_by = $2 AND lease_token = $3 AND leased_until IS NULL",
            &[&outcome.delivery.0, &node, &outcome.lease.0],
        )
        .await?;
    let Some(row) = settled else {
        return Ok(Settled::LeaseLost);
    };
    let attempt = match outcome.attempt {
        Some(_) => latest_attempt(tx, outcome.delivery).await?,
        None => None,
    };
    if !matches!(outcome.settlement, Settlement::Delivered { .. }) {
        return Ok(Settled::Recorded {
            extras: Vec::new(),
            attempt,
        });
    }
    let event: i64 = row.try_get(0)?;
    let rows = tx
        .query(
            "SELECT id, target, lease_token FROM deliveries
             WHERE event_id = $1 AND target LIKE 'extra:%' AND state = 'pending'
               AND attempts = 0 AND leased_by = $2 AND leased_until IS NOT NULL
             ORDER BY id",
            &[&event, &node],
        )
        .await?;
    let mut extras = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get(0)?;
        extras.push(CreatedDelivery {
            id: DeliveryId(id),
            target: decode::target(row.try_get(1)?, || format!("delivery {id}"))?,
            lease: Some(LeaseToken(row.try_get(2)?)),
        });
    }
    Ok(Settled::Recorded { extras, attempt })
}

/// The delivery's latest attempt: after a settle found its own lease settled already (an
/// ambiguous `COMMIT` re-run), the one the first run recorded, since nothing else adds
/// attempts to a delivery while this lease holds it.
async fn latest_attempt(
    tx: &impl GenericClient,
    delivery: DeliveryId,
) -> Result<Option<AttemptId>, StoreError> {
    let row = tx
        .query_one(
            "SELECT max(id) FROM attempts WHERE delivery_id = $1",
            &[&delivery.0],
        )
        .await?;
    Ok(row.try_get::<_, Option<i64>>(0)?.map(AttemptId))
}
