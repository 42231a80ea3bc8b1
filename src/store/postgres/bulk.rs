//! The common hot writes of a batch in one statement per kind, on PostgreSQL.
//!
//! Why: profiled, PostgreSQL spends most of a hot write on the statement, not on its row:
//! executor start-up, the plan's nodes, the protocol's messages (BENCHMARKS.md, *What
//! bounds it*). So the events of a batch that take the common path (bytes to deliver, a
//! first delivery, not on an ordered channel) are stored by one `INSERT … SELECT FROM
//! unnest(…)`, and its settles that take the common path (an attempt made, no extra
//! destinations to create, not a deferral) by one `UPDATE … FROM unnest(…)` that inserts
//! their attempts; everything else runs as before, statement by statement, pipelined with
//! them (`batch.rs`). The rules are the single-row statements': a settle applies only under
//! its lease, an event already stored under its idempotency key is read back, not stored
//! twice, and an ordered channel's deliveries keep their order (their writes take the
//! single-row path, which holds them behind their channel's pending one).

use std::collections::{HashMap, HashSet};

use deadpool_postgres::{Client, GenericClient};
use futures_util::future::{try_join, try_join_all};
use tokio_postgres::types::ToSql;
use tokio_postgres::Statement;

use super::batch::{run_write, Write, Written};
use super::deliveries::stored_before;
use super::idempotency::EventKey;
use super::ordering::WAKE_HEADS;
use super::settle::settled_before;
use super::transaction;
use crate::clock::now_ms;
use crate::domain::{
    AttemptId, ChannelId, DeliveryId, DeliveryState, EventId, PartnerId, RowChange, Target,
};
use crate::store::columns::trace_column;
use crate::store::payload;
use crate::store::{
    AttemptRecord, EventBody, LeaseToken, NewEvent, Outcome, SavedEvent, Settled, StoreError,
    HELD_UNTIL,
};

/// Runs `writes` on `client` in one transaction, the common ones together; their results
/// in the order of `writes`.
///
/// When every write is common, the batch takes one round trip: its multi-row statements go
/// with the transaction's `BEGIN` and `COMMIT` (`transaction::committed_in_one_round`), and
/// what follows them runs after the commit: the reads that answer a write found done
/// already (a re-run after an ambiguous commit), and the saves an ordered channel holds, in
/// a transaction of their own (they were left out of the first, so nothing of them is
/// written twice). Otherwise the writes of the single-row path, which await answers
/// between their statements, run in the transaction beside the common ones, and the
/// follow-ups before its `COMMIT`.
pub async fn run_all(
    client: &Client,
    node: &str,
    writes: &[Write],
) -> Result<Vec<Written>, StoreError> {
    let now = now_ms();
    let sorted = Sorted::of(writes, now);
    let prepared = Prepared::of(client, &sorted).await?;
    let results = match sorted.others.is_empty() {
        true => {
            let first = first_round(client, node, &sorted, &prepared, now);
            let first = transaction::committed_in_one_round(client, first).await?;
            let later = async {
                match first.held.is_empty() {
                    true => Ok(Vec::new()),
                    false => {
                        let held = one_by_one(client, node, writes, &first.held);
                        transaction::committed(client, held).await
                    }
                }
            };
            let (later, mut results) =
                try_join(later, follow_ups(client, node, &sorted, &first)).await?;
            results.extend(later);
            results
        }
        false => {
            transaction::committed(client, async {
                let first = first_round(client, node, &sorted, &prepared, now);
                let alone = one_by_one(client, node, writes, &sorted.others);
                let (first, alone) = try_join(first, alone).await?;
                let held = one_by_one(client, node, writes, &first.held);
                let (held, mut results) =
                    try_join(held, follow_ups(client, node, &sorted, &first)).await?;
                results.extend(held.into_iter().chain(alone));
                Ok(results)
            })
            .await?
        }
    };
    let mut ordered: Vec<Option<Written>> =
        std::iter::repeat_with(|| None).take(writes.len()).collect();
    for (i, written) in results {
        ordered[i] = Some(written);
    }
    ordered
        .into_iter()
        .map(|written| {
            written.ok_or_else(|| StoreError::Database("a write of the batch was not run".into()))
        })
        .collect()
}

/// A batch's writes by path: common settles and saves (multi-row), the others (single-row).
struct Sorted<'a> {
    settles: Vec<(usize, CommonSettle<'a>)>,
    saves: Vec<CommonSave<'a>>,
    others: Vec<usize>,
}

impl<'a> Sorted<'a> {
    fn of(writes: &'a [Write], now: i64) -> Self {
        let (mut settles, mut saves, mut others) = (Vec::new(), Vec::new(), Vec::new());
        let mut settling = HashSet::new();
        for (index, write) in writes.iter().enumerate() {
            match write {
                // A delivery settled twice in one batch keeps the second to the single path,
                // so the multi-row update never matches one row twice.
                Write::Settle(outcome, url_id) => match CommonSettle::of(outcome, *url_id, now) {
                    Some(settle) if settling.insert(outcome.delivery) => {
                        settles.push((index, settle))
                    }
                    _ => others.push(index),
                },
                Write::Save(events, packed, keys, claim_until) => {
                    match events.iter().all(common_event) {
                        true => saves.push(CommonSave {
                            index,
                            events,
                            packed,
                            keys,
                            claim_until: *claim_until,
                        }),
                        false => others.push(index),
                    }
                }
            }
        }
        Self {
            settles,
            saves,
            others,
        }
    }
}

/// The multi-row statements a batch runs, prepared before its transaction (a connection
/// prepares each once), so that all of them are sent at the first poll of the first round.
struct Prepared {
    settle: Option<(Statement, Statement)>,
    insert: Option<Statement>,
}

impl Prepared {
    async fn of(client: &Client, sorted: &Sorted<'_>) -> Result<Self, StoreError> {
        let settle = match sorted.settles.is_empty() {
            true => None,
            false => Some((
                client.prepare_cached(SETTLE_TOGETHER).await?,
                client.prepare_cached(WAKE_HEADS).await?,
            )),
        };
        let insert = match sorted.saves.is_empty() {
            true => None,
            false => Some(client.prepare_cached(INSERT_TOGETHER).await?),
        };
        Ok(Self { settle, insert })
    }
}

/// What the first round's statements answered.
struct FirstRound {
    /// The settled deliveries, each with its attempt's id.
    settled: HashMap<i64, i64>,
    /// The stored events' keys, each with its event and delivery ids.
    inserted: HashMap<Vec<u8>, (i64, i64)>,
    /// The saves an ordered channel holds (indices in the batch), to take the single path.
    held: Vec<usize>,
}

/// The multi-row statements: the settles with the wake of the ordered heads they end, and
/// the inserts; each is sent at the first poll.
async fn first_round(
    tx: &impl GenericClient,
    node: &str,
    sorted: &Sorted<'_>,
    prepared: &Prepared,
    now: i64,
) -> Result<FirstRound, StoreError> {
    let settles = async {
        match &prepared.settle {
            Some((settle, wake)) => {
                settle_together(tx, (settle, wake), node, &sorted.settles, now).await
            }
            None => Ok(HashMap::new()),
        }
    };
    let saves = async {
        match &prepared.insert {
            Some(insert) => save_together(tx, insert, node, &sorted.saves, now).await,
            None => Ok((HashMap::new(), Vec::new())),
        }
    };
    let (settled, (inserted, held)) = try_join(settles, saves).await?;
    Ok(FirstRound {
        settled,
        inserted,
        held,
    })
}

/// The answers of the common writes, from the first round's rows and, for a write found
/// done already, a read (`settled_before`, `stored_before`); but for the held saves.
async fn follow_ups(
    client: &impl GenericClient,
    node: &str,
    sorted: &Sorted<'_>,
    first: &FirstRound,
) -> Result<Vec<(usize, Written)>, StoreError> {
    let mut results = Vec::with_capacity(sorted.settles.len() + sorted.saves.len());
    for (i, settle) in &sorted.settles {
        let settled = match first.settled.get(&settle.outcome.delivery.0) {
            Some(&attempt) => Settled::Recorded {
                extras: Vec::new(),
                attempt: Some(AttemptId(attempt)),
            },
            None => settled_before(client, settle.outcome, node).await?,
        };
        results.push((*i, Written::Settled(settled)));
    }
    for save in sorted
        .saves
        .iter()
        .filter(|s| !first.held.contains(&s.index))
    {
        let mut saved = Vec::with_capacity(save.events.len());
        for (event, key) in save.events.iter().zip(save.keys) {
            let EventBody::Bytes(payload) = &event.body else {
                continue;
            };
            saved.push(match first.inserted.get(key.as_bytes()) {
                Some(&(event_id, delivery)) => SavedEvent {
                    event: EventId(event_id),
                    delivery: Some(DeliveryId(delivery)),
                    lease: save.claim_until.map(|_| LeaseToken::FIRST),
                    payload: payload.clone(),
                },
                None => stored_before(client, key).await?,
            });
        }
        results.push((save.index, Written::Saved(saved)));
    }
    Ok(results)
}

/// The writes at `indices` of `writes`, each by its own statements (issued together, so
/// pipelined).
async fn one_by_one(
    tx: &impl GenericClient,
    node: &str,
    writes: &[Write],
    indices: &[usize],
) -> Result<Vec<(usize, Written)>, StoreError> {
    try_join_all(
        indices.iter().map(|&i| async move {
            Ok::<_, StoreError>((i, run_write(tx, node, &writes[i]).await?))
        }),
    )
    .await
}

/// A settle of the multi-row path, its effect worked out once.
struct CommonSettle<'a> {
    outcome: &'a Outcome,
    attempt: &'a AttemptRecord,
    url_id: Option<i64>,
    state: DeliveryState,
    attempts_added: i64,
    next_attempt_at: i64,
    last_error: Option<&'a str>,
    /// Whether the delivery leaves `pending` (an ordered one's successor is then woken).
    ends_head: bool,
}

impl<'a> CommonSettle<'a> {
    /// `outcome` when it takes the multi-row path: an attempt to record, a settled row (not
    /// a deferral) and no extra deliveries to create.
    fn of(outcome: &'a Outcome, url_id: Option<i64>, now: i64) -> Option<Self> {
        let attempt = outcome.attempt.as_ref()?;
        let effect = outcome.settlement.effect(true, now);
        let RowChange::Settled {
            state,
            attempts_added,
            next_attempt_at,
            last_error,
        } = effect.row
        else {
            return None;
        };
        effect.creates.is_empty().then_some(Self {
            outcome,
            attempt,
            url_id,
            state,
            attempts_added,
            next_attempt_at,
            last_error,
            ends_head: effect.ends_head,
        })
    }
}

/// Whether an event can be stored by the multi-row insert (if its channel is not ordered):
/// bytes known and a first delivery.
fn common_event(event: &NewEvent) -> bool {
    matches!(event.body, EventBody::Bytes(_)) && event.first_target().is_some()
}

/// The settles in one statement, then the wake of the ordered heads they end in another
/// (both sent at once); returns the settled deliveries, each with its attempt's id. One not
/// returned was not held under its lease.
async fn settle_together(
    tx: &impl GenericClient,
    (statement, wake): (&Statement, &Statement),
    node: &str,
    settles: &[(usize, CommonSettle<'_>)],
    now: i64,
) -> Result<HashMap<i64, i64>, StoreError> {
    let columns = SettleColumns::of(settles);
    let mut ending: Vec<&str> = (settles.iter())
        .filter(|(_, settle)| settle.ends_head)
        .filter_map(|(_, settle)| settle.outcome.channel.as_ref().map(ChannelId::as_str))
        .collect();
    ending.sort_unstable();
    ending.dedup();
    let params: &[&(dyn ToSql + Sync)] = &[
        &columns.ids,
        &columns.tokens,
        &columns.states,
        &columns.added,
        &columns.next_at,
        &columns.last_error,
        &columns.number,
        &columns.started_at,
        &columns.duration_ms,
        &columns.url_id,
        &columns.url,
        &columns.status,
        &columns.error,
        &columns.excerpt,
        &columns.retry_after_ms,
        &now,
        &node,
    ];
    let settle = tx.query(statement, params);
    let wake = async {
        match ending.is_empty() {
            true => Ok(0),
            false => tx.execute(wake, &[&ending, &now, &HELD_UNTIL]).await,
        }
    };
    let (rows, _) = try_join(settle, wake).await?;
    let mut settled = HashMap::with_capacity(rows.len());
    for row in rows {
        settled.insert(row.try_get::<_, i64>(0)?, row.try_get::<_, i64>(1)?);
    }
    Ok(settled)
}

/// Each delivery's lease and new columns, and its attempt, as arrays (one element per
/// settle) for [`SETTLE_TOGETHER`].
#[derive(Default)]
struct SettleColumns<'a> {
    ids: Vec<i64>,
    tokens: Vec<i64>,
    states: Vec<&'static str>,
    added: Vec<i64>,
    next_at: Vec<i64>,
    last_error: Vec<Option<&'a str>>,
    number: Vec<i64>,
    started_at: Vec<i64>,
    duration_ms: Vec<i64>,
    url_id: Vec<Option<i64>>,
    url: Vec<Option<&'a str>>,
    status: Vec<Option<i64>>,
    error: Vec<Option<&'static str>>,
    excerpt: Vec<Option<&'a str>>,
    retry_after_ms: Vec<Option<i64>>,
}

impl<'a> SettleColumns<'a> {
    /// The columns of `settles`.
    fn of(settles: &[(usize, CommonSettle<'a>)]) -> Self {
        let mut c = Self::default();
        for (_, settle) in settles {
            let attempt = settle.attempt;
            c.ids.push(settle.outcome.delivery.0);
            c.tokens.push(settle.outcome.lease.0);
            c.states.push(settle.state.as_str());
            c.added.push(settle.attempts_added);
            c.next_at.push(settle.next_attempt_at);
            c.last_error.push(settle.last_error);
            c.number.push(i64::from(attempt.number));
            c.started_at.push(attempt.started_at);
            c.duration_ms.push(attempt.duration_ms);
            c.url_id.push(settle.url_id);
            // The URL's text only where no reference to it is known.
            c.url
                .push(settle.url_id.is_none().then_some(attempt.url.as_str()));
            c.status.push(attempt.status.map(i64::from));
            c.error.push(attempt.error.map(|kind| kind.as_str()));
            c.excerpt.push(attempt.response_excerpt.as_deref());
            c.retry_after_ms.push(attempt.retry_after_ms);
        }
        c
    }
}

/// Settles many deliveries, each only under its lease (`id`, `leased_by` = `$17`,
/// `lease_token`, a lease still set), and inserts each updated one's attempt; returns the
/// updated ones (id, attempt id). A delivery not returned was not held.
///
/// The node is compared with `IS NOT DISTINCT FROM`, which no index serves, so the rows can
/// only be found by their primary key: with `=`, a plan made while the table was young
/// joined against a scan of `deliveries_leased_by`, which holds an entry for every leased
/// row version until a vacuum (see `transaction::BEGIN_AS_GROWN` for the rest of that story).
const SETTLE_TOGETHER: &str = "WITH v AS (
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[],
                              $5::bigint[], $6::text[], $7::bigint[], $8::bigint[],
                              $9::bigint[], $10::bigint[], $11::text[], $12::bigint[],
                              $13::text[], $14::text[], $15::bigint[])
             AS v(id, token, state, added, next_at, last_error, number, started_at,
                  duration_ms, url_id, url, status, error, excerpt, retry_after_ms)),
     u AS (
         UPDATE deliveries d SET state = v.state, attempts = d.attempts + v.added,
                next_attempt_at = v.next_at, leased_until = NULL, last_error = v.last_error,
                updated_at = $16
         FROM v
         WHERE d.id = v.id AND d.leased_by IS NOT DISTINCT FROM $17 AND d.lease_token = v.token
           AND d.leased_until IS NOT NULL
         RETURNING d.id, v.number, v.started_at, v.duration_ms, v.url_id, v.url, v.status,
                   v.error, v.excerpt, v.retry_after_ms),
     a AS (
         INSERT INTO attempts (delivery_id, number, started_at, duration_ms, url_id, url,
                               status, error, response_excerpt, retry_after_ms)
         SELECT id, number, started_at, duration_ms, url_id, url, status, error, excerpt,
                retry_after_ms
         FROM u ORDER BY id
         RETURNING id, delivery_id)
     SELECT a.delivery_id, a.id FROM a";

/// A save of the multi-row path (every event of it has bytes and a first delivery), with
/// its index in the batch.
struct CommonSave<'a> {
    index: usize,
    events: &'a [NewEvent],
    packed: &'a [Option<Vec<u8>>],
    keys: &'a [EventKey],
    claim_until: Option<i64>,
}

impl CommonSave<'_> {
    /// The channels its primary deliveries are for (the ones an ordered channel holds).
    fn primary_channels(&self) -> impl Iterator<Item = &str> {
        self.events
            .iter()
            .filter(|event| event.first_target() == Some(Target::Primary))
            .filter_map(|event| event.channel.as_ref().map(ChannelId::as_str))
    }
}

/// The common saves in one statement, but for those with an event on an ordered channel:
/// the statement leaves them out (and share-locks the ordered channels, as the single-row
/// insert does, so a switch of ordering waits), and they take the single-row path after it
/// (which holds an ordered delivery behind its channel's pending one). Returns the stored
/// events' keys with their event and delivery ids, and the saves left out.
async fn save_together(
    tx: &impl GenericClient,
    statement: &Statement,
    node: &str,
    saves: &[CommonSave<'_>],
    now: i64,
) -> Result<(HashMap<Vec<u8>, (i64, i64)>, Vec<usize>), StoreError> {
    let mut c = EventColumns::default();
    for save in saves {
        c.push_all(save, node, now)?;
    }
    let mut channels: Vec<&str> = saves
        .iter()
        .flat_map(CommonSave::primary_channels)
        .collect();
    channels.sort_unstable();
    channels.dedup();
    let stored: Vec<&[u8]> = c.stored.iter().map(|s| s.as_ref()).collect();
    let rows = tx
        .query(
            statement,
            &[
                &c.kinds,
                &c.channels,
                &c.partners,
                &c.phone_number_ids,
                &stored,
                &c.received_at,
                &c.keys,
                &c.sizes,
                &c.traces,
                &c.targets,
                &c.first_due,
                &c.leased_until,
                &c.leased_by,
                &c.tokens,
                &now,
                &c.saves,
                &channels,
            ],
        )
        .await?;
    let (mut inserted, mut held) = (HashMap::with_capacity(rows.len()), Vec::new());
    for row in rows {
        match row.try_get::<_, Option<i64>>(3)? {
            Some(save) => held.push(
                usize::try_from(save)
                    .map_err(|_| StoreError::Database(format!("save index {save}").into()))?,
            ),
            None => {
                let key: Vec<u8> = row.try_get(0)?;
                inserted.insert(key, (row.try_get::<_, i64>(1)?, row.try_get::<_, i64>(2)?));
            }
        }
    }
    Ok((inserted, held))
}

/// The events of common saves and their first deliveries, as arrays for
/// [`INSERT_TOGETHER`].
#[derive(Default)]
struct EventColumns<'a> {
    kinds: Vec<&'static str>,
    channels: Vec<Option<&'a str>>,
    partners: Vec<Option<&'a str>>,
    phone_number_ids: Vec<Option<&'a str>>,
    stored: Vec<std::borrow::Cow<'a, [u8]>>,
    received_at: Vec<i64>,
    keys: Vec<&'a [u8]>,
    sizes: Vec<i64>,
    traces: Vec<Option<String>>,
    targets: Vec<String>,
    first_due: Vec<i64>,
    leased_until: Vec<Option<i64>>,
    leased_by: Vec<Option<&'a str>>,
    tokens: Vec<i64>,
    /// The index in the batch of each event's save.
    saves: Vec<i64>,
}

impl<'a> EventColumns<'a> {
    /// Adds the events of `save`, leased to `node` until its `claim_until` if given.
    fn push_all(
        &mut self,
        save: &CommonSave<'a>,
        node: &'a str,
        now: i64,
    ) -> Result<(), StoreError> {
        if save.keys.len() != save.events.len() {
            return Err(StoreError::Database(
                "one idempotency key per event expected".into(),
            ));
        }
        let claim_until = save.claim_until;
        for (i, (event, key)) in save.events.iter().zip(save.keys).enumerate() {
            let (EventBody::Bytes(payload), Some(target)) = (&event.body, event.first_target())
            else {
                continue;
            };
            self.kinds.push(event.kind.as_str());
            self.channels
                .push(event.channel.as_ref().map(ChannelId::as_str));
            self.partners
                .push(event.partner.as_ref().map(PartnerId::as_str));
            self.phone_number_ids.push(event.phone_number_id.as_deref());
            self.stored
                .push(payload::stored_form(event, save.packed.get(i)));
            self.received_at.push(event.received_at);
            self.keys.push(key.as_bytes());
            self.sizes.push(payload.len() as i64);
            self.traces.push(trace_column(event.trace.as_ref()));
            self.targets.push(target.to_stored());
            self.first_due.push(claim_until.unwrap_or(now));
            self.leased_until.push(claim_until);
            self.leased_by.push(claim_until.map(|_| node));
            self.tokens
                .push(claim_until.map_or(0, |_| LeaseToken::FIRST.0));
            self.saves.push(save.index as i64);
        }
        Ok(())
    }
}

/// Stores events (those whose key is new: `ON CONFLICT DO NOTHING`) and one pending
/// delivery each, in the order given, but for the saves (`$16`, each event's) with a primary
/// delivery on an ordered channel among `$17` (share-locked); returns each stored event's
/// key, id and delivery, and each save left out (in the fourth column).
const INSERT_TOGETHER: &str = "WITH v AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[],
                              $6::bigint[], $7::bytea[], $8::bigint[], $9::text[], $10::text[],
                              $11::bigint[], $12::bigint[], $13::text[], $14::bigint[],
                              $16::bigint[])
             WITH ORDINALITY
             AS v(kind, channel_id, partner_id, phone_number_id, payload, received_at,
                  idempotency_key, payload_size, trace_context, target, next_attempt_at,
                  leased_until, leased_by, lease_token, save, ord)),
     o AS (SELECT id FROM channels WHERE id = ANY($17::text[]) AND ordered FOR SHARE),
     held AS (
         SELECT DISTINCT v.save FROM v JOIN o ON o.id = v.channel_id
         WHERE v.target = 'primary'),
     e AS (
         INSERT INTO events (kind, channel_id, partner_id, phone_number_id, payload,
                             received_at, idempotency_key, payload_size, trace_context)
         SELECT kind, channel_id, partner_id, phone_number_id, payload, received_at,
                idempotency_key, payload_size, trace_context
         FROM v WHERE v.save NOT IN (SELECT save FROM held) ORDER BY ord
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING id, idempotency_key),
     d AS (
         INSERT INTO deliveries (event_id, channel_id, partner_id, target, state,
                                 next_attempt_at, leased_until, window_start, updated_at,
                                 leased_by, lease_token)
         SELECT e.id, v.channel_id, v.partner_id, v.target, 'pending', v.next_attempt_at,
                v.leased_until, v.received_at, $15, v.leased_by, v.lease_token
         FROM e JOIN v ON v.idempotency_key = e.idempotency_key
         ORDER BY e.id
         RETURNING id, event_id)
     SELECT e.idempotency_key, e.id, d.id, NULL::bigint FROM e JOIN d ON d.event_id = e.id
     UNION ALL SELECT NULL, NULL, NULL, save FROM held";
