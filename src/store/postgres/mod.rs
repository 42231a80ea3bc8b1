//! The PostgreSQL backend, for several Switchboard nodes sharing one database.
//!
//! Every operation is one transaction on a pooled connection, except the hot writes (events
//! in, attempt outcomes), which are group-committed by `batch`. Claims lock with `SKIP LOCKED`, so nodes split the due
//! work instead of sending it twice. The routing cache stays exact across nodes: every
//! configuration write sends `NOTIFY switchboard_config` in its transaction, and each node's
//! listener empties its cache when that arrives; while the listener is down, the cache is
//! bypassed.

mod batch;
mod bulk;
mod connect;
mod deliveries;
mod idempotency;
mod inspect;
mod listener;
mod listing;
mod ordering;
mod provisioning;
mod recover;
mod replay;
mod schema;
mod settle;
mod tls;
mod transaction;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use deadpool_postgres::Pool;

use self::batch::{Batcher, Write, Written};
use self::idempotency::EventKeys;
use self::listener::Listener;
use self::provisioning::{find_channel, find_partner, stored_key_hash, update_one};
use super::cache::ConfigCache;
use super::columns::{self, webhook_columns};
use super::decode;
use super::payload;
use super::urls::UrlIds;
use super::{types, ConfiguredRoute, DestinationPause, PayloadPurge, PendingGroup};
use super::{
    ChannelFilter, ChannelListing, PartnerFilter, PartnerListing, WabaFilter, WabaListing,
};
use super::{
    ChannelRef, DeliveryFilter, DeliveryRecord, DueDelivery, EventFilter, EventRecord,
    EventSummary, HeldLease, NewChannel, NewEvent, Outcome, PartnerRecord, RecoverFilter,
    Recovered, Routing, SavedEvent, Settled, Store, StoreError, WabaRoute, WabaWebhookView,
    WriteCounters, WriteStats,
};
use super::{Violation, ViolationKind};
use crate::domain::DestinationId;
use crate::domain::{
    Channel, ChannelId, DeliveryId, DeliveryState, EventId, KeyHash, MultiWebhook,
    MultiWebhookChange, Partner, PartnerId, WabaId, WabaWebhook, Webhook, WebhookHeaders,
    WebhookUrl,
};

/// A statement parameter.
type Param<'a> = dyn tokio_postgres::types::ToSql + Sync + 'a;

/// The channel configuration writes notify.
const CONFIG_CHANNEL: &str = "switchboard_config";

/// The PostgreSQL store: a connection pool, the routing cache and its listener.
pub struct PostgresStore {
    pool: Pool,
    /// This node's id, written into every lease it takes.
    node: String,
    cache: Arc<ConfigCache>,
    listener: Listener,
    /// Group commit of the hot writes (events in, outcomes of attempts).
    batcher: Batcher,
    counters: Arc<WriteCounters>,
    /// Idempotency keys of the events this node stores.
    keys: EventKeys,
    /// Ids of the attempt URLs seen (see `store/urls.rs`).
    url_ids: UrlIds,
}

/// Runs `$body` (an async block using `$tx`) in a transaction and commits it; counts it as
/// a write when `$kind` is `write`, `config` or `hot`, and after a `config` write notifies
/// every node and empties this node's cache. A `hot` one (claims, renewals) is the hot
/// path's transaction (`transaction::committed`: its `BEGIN` pipelined, planned as for
/// grown tables), on the pooled connection itself.
macro_rules! transact {
    ($store:expr, hot, |$tx:ident| $body:expr) => {{
        let store = &$store;
        let started = Instant::now();
        let $tx = store.pool.get().await?;
        let value = transaction::committed(&$tx, $body).await?;
        store.count_write(started);
        Ok::<_, StoreError>(value)
    }};
    ($store:expr, $kind:ident, |$tx:ident| $body:expr) => {{
        let store = &$store;
        let started = Instant::now();
        let mut client = store.pool.get().await?;
        let $tx = client.transaction().await?;
        let value = $body.await?;
        transact!(@before_commit $kind, $tx);
        $tx.commit().await?;
        transact!(@after_commit $kind, store, started);
        Ok::<_, StoreError>(value)
    }};
    (@before_commit config, $tx:ident) => {
        $tx.execute(&format!("NOTIFY {CONFIG_CHANNEL}"), &[]).await?;
    };
    (@before_commit $other:ident, $tx:ident) => {};
    (@after_commit read, $store:ident, $started:ident) => {
        let _ = $started;
    };
    (@after_commit write, $store:ident, $started:ident) => {
        $store.count_write($started);
    };
    (@after_commit config, $store:ident, $started:ident) => {
        $store.count_write($started);
        $store.cache.invalidate();
    };
}

impl PostgresStore {
    /// The id of `url` in `attempt_urls`, stored (and committed) first if it is new.
    async fn url_id(&self, url: &str) -> Result<i64, StoreError> {
        if let Some(id) = self.url_ids.get(url) {
            return Ok(id);
        }
        let id = transact!(self, write, |tx| settle::store_url(&tx, url))?;
        self.url_ids.remember(url, id);
        Ok(id)
    }

    /// Connects to `url`, migrates the schema, and starts the configuration listener; the
    /// leases this store takes are `node`'s.
    pub async fn open(url: &str, node: &str) -> Result<Self, StoreError> {
        let target = connect::config(url, node)?;
        let pool = connect::pool(&target).await?;
        schema::migrate(&pool).await?;
        let filled = {
            let mut client = pool.get().await?;
            let tx = client.transaction().await?;
            let filled = recover::backfill_destinations(&tx).await?;
            tx.commit().await?;
            filled
        };
        if filled > 0 {
            tracing::info!(filled, "destinations of earlier attempt URLs filled");
        }
        let cache = Arc::new(ConfigCache::default());
        let listener = Listener::start(target, CONFIG_CHANNEL, Arc::clone(&cache)).await?;
        let counters = Arc::new(WriteCounters::default());
        Ok(Self {
            batcher: Batcher::start(pool.clone(), node.to_owned(), Arc::clone(&counters)),
            pool,
            node: node.to_owned(),
            cache,
            listener,
            counters,
            keys: EventKeys::new()?,
            url_ids: UrlIds::default(),
        })
    }

    fn count_write(&self, started: Instant) {
        self.counters.committed(1, started);
    }

    /// Sets one webhook column of a partner and returns the partner as it is now.
    async fn update_partner(
        &self,
        id: &PartnerId,
        column: &'static str,
        value: Option<String>,
    ) -> Result<PartnerRecord, StoreError> {
        transact!(self, write, |tx| async {
            let sql = format!("UPDATE partners SET {column} = $1 WHERE id = $2");
            update_one(&tx, &sql, &[&value, &id.as_str()], ("partner", id.as_str())).await?;
            find_partner(&tx, "id = $1", id.as_str())
                .await?
                .ok_or_else(|| StoreError::NotFound {
                    what: "partner",
                    id: id.to_string(),
                })
        })
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        // One row written and committed: the commit is where a full disk shows.
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "UPDATE schema_migrations SET version = version
             WHERE version = (SELECT max(version) FROM schema_migrations)",
            &[],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_partner(&self, partner: Partner, key_hash: KeyHash) -> Result<(), StoreError> {
        transact!(self, write, |tx| provisioning::create_partner(
            &tx, &partner, &key_hash
        ))
    }

    async fn create_waba(&self, partner: &PartnerId, waba: WabaId) -> Result<(), StoreError> {
        transact!(self, write, |tx| provisioning::create_waba(
            &tx, partner, waba
        ))
    }

    async fn create_channel(
        &self,
        channel: NewChannel,
        events: Vec<NewEvent>,
    ) -> Result<(), StoreError> {
        let keys = self.keys.take(events.len());
        transact!(self, write, |tx| provisioning::create_channel(
            &tx, &channel, &events, &keys
        ))
    }

    async fn replace_channel_key(
        &self,
        id: &ChannelId,
        key_hash: KeyHash,
    ) -> Result<(), StoreError> {
        transact!(self, config, |tx| update_one(
            &tx,
            "UPDATE channels SET api_key_hash = $1, webhook_url = NULL, webhook_headers = NULL
             WHERE id = $2",
            &[&key_hash.as_str(), &id.as_str()],
            ("channel", id.as_str()),
        ))
    }

    async fn channel_by_key(&self, key_hash: &KeyHash) -> Result<Option<Channel>, StoreError> {
        transact!(self, read, |tx| async {
            match stored_key_hash(&tx, "channels", key_hash).await? {
                Some(hash) => find_channel(&tx, "api_key_hash = $1", &hash).await,
                None => Ok(None),
            }
        })
    }

    async fn channel(&self, id: &ChannelId) -> Result<Option<Channel>, StoreError> {
        transact!(self, read, |tx| find_channel(&tx, "id = $1", id.as_str()))
    }

    async fn set_phone_webhook(
        &self,
        id: &ChannelId,
        webhook: Option<Webhook>,
    ) -> Result<(), StoreError> {
        let (url, headers) = webhook_columns(webhook.as_ref())?;
        transact!(self, config, |tx| update_one(
            &tx,
            "UPDATE channels SET webhook_url = $1, webhook_headers = $2 WHERE id = $3",
            &[&url, &headers, &id.as_str()],
            ("channel", id.as_str()),
        ))
    }

    async fn waba_webhook(&self, waba: WabaId) -> Result<WabaWebhookView, StoreError> {
        transact!(self, read, |tx| async {
            tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .await?;
            provisioning::waba_webhook(&tx, waba).await
        })
    }

    async fn set_waba_webhook(
        &self,
        waba: WabaId,
        webhook: Option<WabaWebhook>,
    ) -> Result<(), StoreError> {
        let columns = webhook_columns(webhook.as_ref().map(|w| &w.webhook))?;
        let override_all = webhook.is_some_and(|w| w.override_all);
        transact!(self, config, |tx| provisioning::set_waba_webhook(
            &tx,
            waba,
            columns,
            override_all
        ))
    }

    async fn change_multi_webhook(
        &self,
        id: &ChannelId,
        change: MultiWebhookChange,
        max_destinations: usize,
    ) -> Result<MultiWebhook, StoreError> {
        transact!(self, config, |tx| provisioning::change_multi_webhook(
            &tx,
            id.as_str(),
            change,
            max_destinations
        ))
    }

    async fn set_ordered(&self, id: &ChannelId, on: bool, now: i64) -> Result<(), StoreError> {
        transact!(self, config, |tx| ordering::set_ordered(&tx, id, on, now))
    }

    async fn set_signing_secret(&self, id: &ChannelId, secret: String) -> Result<(), StoreError> {
        transact!(self, config, |tx| update_one(
            &tx,
            "UPDATE channels SET signing_secret = $1 WHERE id = $2",
            &[&secret, &id.as_str()],
            ("channel", id.as_str()),
        ))
    }

    async fn routing(&self, id: &ChannelId) -> Result<Option<Arc<Routing>>, StoreError> {
        let load = async { transact!(self, read, |tx| provisioning::load_routing(&tx, id)) };
        // Other nodes' writes reach the cache through the listener only.
        let coherent = self.listener.is_listening();
        self.cache.routing_or_load(id, coherent, load).await
    }

    async fn channel_ref(&self, id: &ChannelId) -> Result<Option<ChannelRef>, StoreError> {
        self.cache.channel_ref_or_load(id, self.channel(id)).await
    }

    async fn channel_by_phone_number_id(
        &self,
        phone_number_id: &str,
    ) -> Result<Option<ChannelRef>, StoreError> {
        let load = async {
            transact!(self, read, |tx| find_channel(
                &tx,
                "phone_number_id = $1",
                phone_number_id
            ))
        };
        self.cache
            .channel_by_phone_number_id_or_load(phone_number_id, load)
            .await
    }

    async fn save_events(
        &self,
        events: Vec<NewEvent>,
        claim_until: Option<i64>,
    ) -> Result<Vec<SavedEvent>, StoreError> {
        let keys = self.keys.take(events.len());
        let packed = payload::pack_all(&events);
        match self
            .batcher
            .write(Write::Save(events, packed, keys, claim_until))
            .await?
        {
            Written::Saved(saved) => Ok(saved),
            Written::Settled(_) => Err(StoreError::Abandoned),
        }
    }

    async fn claim_due(
        &self,
        now: i64,
        limit: usize,
        max_bytes: usize,
        lease_until: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        transact!(self, hot, |tx| deliveries::claim_due(
            &tx,
            now,
            (limit, max_bytes),
            (lease_until, &self.node)
        ))
    }

    async fn release_leases(&self) -> Result<u64, StoreError> {
        transact!(self, write, |tx| deliveries::release_leases(
            &tx, &self.node
        ))
    }

    async fn renew_leases(
        &self,
        held: Vec<HeldLease>,
        until: i64,
    ) -> Result<Vec<DeliveryId>, StoreError> {
        transact!(self, hot, |tx| deliveries::renew_leases(
            &tx, &held, until, &self.node
        ))
    }

    async fn wake_deliveries(
        &self,
        parked: Vec<DeliveryId>,
        now: i64,
        age_shift: i64,
    ) -> Result<u64, StoreError> {
        let ids: Vec<i64> = parked.iter().map(|id| id.0).collect();
        transact!(self, write, |tx| tx.execute(
            "UPDATE deliveries SET next_attempt_at = $1, window_start = window_start + $3
             WHERE id = ANY($2) AND state = 'pending' AND leased_until IS NULL
               AND next_attempt_at > $1 AND next_attempt_at <> $4",
            &[&now, &ids, &age_shift, &super::HELD_UNTIL],
        ))
    }

    async fn settle(&self, outcome: Outcome) -> Result<Settled, StoreError> {
        let url_id = match &outcome.attempt {
            Some(attempt) => Some(self.url_id(&attempt.url).await?),
            None => None,
        };
        match self.batcher.write(Write::Settle(outcome, url_id)).await? {
            Written::Settled(created) => Ok(created),
            Written::Saved(_) => Err(StoreError::Abandoned),
        }
    }

    async fn configured_routes(&self) -> Result<Vec<ConfiguredRoute>, StoreError> {
        transact!(self, read, |tx| async {
            let rows = tx.query(types::CONFIGURED_ROUTES, &[]).await?;
            let mut routes = Vec::new();
            for row in rows {
                routes.extend(types::configured_routes_of_row(
                    types::ConfiguredRouteRow {
                        kind: row.try_get(0)?,
                        channel: row.try_get(1)?,
                        partner: row.try_get(2)?,
                        value: row.try_get(3)?,
                        waba: row.try_get(4)?,
                    },
                )?);
            }
            Ok::<_, StoreError>(routes)
        })
    }

    async fn pause_destination(&self, pause: DestinationPause) -> Result<bool, StoreError> {
        let inserted = transact!(self, write, |tx| tx.execute(
            "INSERT INTO destination_pauses (id, url, reason, paused_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
            &[
                &pause.id.as_str(),
                &pause.url,
                &pause.reason.as_str(),
                &pause.paused_at
            ],
        ))?;
        Ok(inserted > 0)
    }

    async fn resume_destination(
        &self,
        id: &DestinationId,
    ) -> Result<Option<DestinationPause>, StoreError> {
        transact!(self, write, |tx| async {
            let row = tx
                .query_opt(
                    "DELETE FROM destination_pauses WHERE id = $1
                     RETURNING id, url, reason, paused_at",
                    &[&id.as_str()],
                )
                .await?;
            let Some(row) = row else {
                return Ok::<_, StoreError>(None);
            };
            Ok(Some(decode::destination_pause(&row)?))
        })
    }

    async fn wake_paused(
        &self,
        id: &DestinationId,
        now: i64,
        age_shift: i64,
    ) -> Result<u64, StoreError> {
        transact!(self, write, |tx| tx.execute(
            "UPDATE deliveries SET next_attempt_at = $1, window_start = window_start + $2,
                                   parked_behind = NULL
             WHERE parked_behind = $3 AND state = 'pending' AND leased_until IS NULL
               AND next_attempt_at <> $4",
            &[&now, &age_shift, &id.as_str(), &super::HELD_UNTIL],
        ))
    }

    async fn paused_destinations(&self) -> Result<Vec<DestinationPause>, StoreError> {
        transact!(self, read, |tx| async {
            let rows = tx.query(types::PAUSED_DESTINATIONS, &[]).await?;
            rows.iter()
                .map(decode::destination_pause)
                .collect::<Result<Vec<_>, StoreError>>()
        })
    }

    async fn pending_groups(&self) -> Result<Vec<PendingGroup>, StoreError> {
        transact!(self, read, |tx| async {
            let rows = tx.query(types::PENDING_GROUPS, &[]).await?;
            let mut groups = Vec::with_capacity(rows.len());
            for row in rows {
                groups.push(PendingGroup {
                    channel: row
                        .try_get::<_, Option<String>>(0)?
                        .map(ChannelId::from_raw),
                    partner: row
                        .try_get::<_, Option<String>>(1)?
                        .map(PartnerId::from_raw),
                    target: row.try_get(2)?,
                    count: row.try_get::<_, i64>(3)?.max(0) as u64,
                    oldest: row.try_get(4)?,
                    next_attempt_at: row.try_get(5)?,
                });
            }
            Ok::<_, StoreError>(groups)
        })
    }

    async fn retry_delivery(&self, id: DeliveryId, now: i64) -> Result<(), StoreError> {
        transact!(self, write, |tx| deliveries::retry_delivery(&tx, id, now))
    }

    async fn retry_deliveries(
        &self,
        state: DeliveryState,
        channel: Option<ChannelId>,
        partner: Option<PartnerId>,
        now: i64,
    ) -> Result<u64, StoreError> {
        transact!(self, write, |tx| deliveries::retry_deliveries(
            &tx,
            state,
            channel.as_ref(),
            partner.as_ref(),
            now
        ))
    }

    async fn recover_deliveries(
        &self,
        filter: RecoverFilter,
        now: i64,
    ) -> Result<Recovered, StoreError> {
        if filter.dry_run {
            let matched = transact!(self, read, |tx| recover::count(&tx, &filter))?;
            return Ok(Recovered {
                matched,
                requeued: 0,
            });
        }
        let requeued = transact!(self, write, |tx| recover::requeue(&tx, &filter, now))?;
        Ok(Recovered {
            matched: requeued,
            requeued,
        })
    }

    async fn event(&self, id: EventId) -> Result<Option<EventRecord>, StoreError> {
        transact!(self, read, |tx| inspect::event(&tx, id))
    }

    async fn events(&self, filter: EventFilter) -> Result<Vec<EventSummary>, StoreError> {
        transact!(self, read, |tx| inspect::events(&tx, &filter))
    }

    async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<DeliveryRecord>, StoreError> {
        transact!(self, read, |tx| inspect::deliveries(&tx, &filter))
    }

    async fn purge_finished(&self, before: i64, limit: usize) -> Result<u64, StoreError> {
        transact!(self, write, |tx| inspect::purge_finished(
            &tx, before, limit
        ))
    }

    async fn purge_payloads(
        &self,
        before: i64,
        limit: usize,
        now: i64,
    ) -> Result<PayloadPurge, StoreError> {
        transact!(self, write, |tx| inspect::purge_payloads(
            &tx, before, limit, now
        ))
    }

    fn write_stats(&self) -> WriteStats {
        self.counters.stats()
    }

    fn config_listener_up(&self) -> Option<bool> {
        Some(self.listener.is_listening())
    }

    async fn partner_by_key(
        &self,
        key_hash: &KeyHash,
    ) -> Result<Option<PartnerRecord>, StoreError> {
        transact!(self, read, |tx| async {
            match stored_key_hash(&tx, "partners", key_hash).await? {
                Some(hash) => find_partner(&tx, "api_key_hash = $1", &hash).await,
                None => Ok(None),
            }
        })
    }

    async fn partner(&self, id: &PartnerId) -> Result<Option<PartnerRecord>, StoreError> {
        transact!(self, read, |tx| find_partner(&tx, "id = $1", id.as_str()))
    }

    async fn set_partner_webhook_url(
        &self,
        id: &PartnerId,
        url: Option<WebhookUrl>,
    ) -> Result<PartnerRecord, StoreError> {
        let url = url.map(|u| u.as_str().to_owned());
        self.update_partner(id, "webhook_url", url).await
    }

    async fn set_partner_webhook_headers(
        &self,
        id: &PartnerId,
        headers: WebhookHeaders,
    ) -> Result<PartnerRecord, StoreError> {
        let encoded = columns::encode(headers.as_map())?;
        self.update_partner(id, "webhook_headers", Some(encoded))
            .await
    }

    async fn set_partner_signing_secret(
        &self,
        id: &PartnerId,
        secret: String,
    ) -> Result<(), StoreError> {
        transact!(self, write, |tx| update_one(
            &tx,
            "UPDATE partners SET signing_secret = $1 WHERE id = $2",
            &[&secret, &id.as_str()],
            ("partner", id.as_str()),
        ))
    }

    async fn waba_route(&self, waba: WabaId) -> Result<Option<WabaRoute>, StoreError> {
        transact!(self, read, |tx| provisioning::waba_route(&tx, waba))
    }

    async fn set_waba_signing_secret(
        &self,
        waba: WabaId,
        secret: String,
    ) -> Result<(), StoreError> {
        let id = waba.to_string();
        transact!(self, write, |tx| update_one(
            &tx,
            "UPDATE wabas SET signing_secret = $1 WHERE id = $2",
            &[&secret, &waba.get()],
            ("WABA", id.as_str()),
        ))
    }

    async fn list_partners(
        &self,
        filter: PartnerFilter,
    ) -> Result<Vec<PartnerListing>, StoreError> {
        transact!(self, read, |tx| listing::partners(&tx, &filter))
    }

    async fn list_wabas(&self, filter: WabaFilter) -> Result<Vec<WabaListing>, StoreError> {
        transact!(self, read, |tx| listing::wabas(&tx, &filter))
    }

    async fn list_channels(
        &self,
        filter: ChannelFilter,
    ) -> Result<Vec<ChannelListing>, StoreError> {
        transact!(self, read, |tx| listing::channels(&tx, &filter))
    }

    async fn replay(
        &self,
        from: super::ReplayFrom,
        limit: usize,
    ) -> Result<super::Replay, StoreError> {
        transact!(self, read, |tx| replay::replay(&tx, from, limit))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        if let Some(violation) = violation(&error) {
            return StoreError::Constraint(violation);
        }
        if unavailable(&error) {
            return StoreError::Unavailable(Box::new(error));
        }
        StoreError::Database(Box::new(error))
    }
}

/// The broken constraint PostgreSQL reports, if the error is one: the table, and the
/// column read from the constraint's default name (`channels_phone_number_key`,
/// `wabas_partner_id_fkey`, `wabas_pkey` for the `id` primary key).
fn violation(error: &tokio_postgres::Error) -> Option<Violation> {
    use tokio_postgres::error::SqlState;
    let db = error.as_db_error()?;
    let kind = match db.code() {
        code if *code == SqlState::UNIQUE_VIOLATION => ViolationKind::Unique,
        code if *code == SqlState::FOREIGN_KEY_VIOLATION => ViolationKind::ForeignKey,
        _ => return None,
    };
    let table = db.table().map(str::to_owned);
    let column = match (db.constraint(), &table) {
        (Some(constraint), Some(table)) => constraint
            .strip_prefix(table.as_str())
            .and_then(|rest| rest.strip_prefix('_'))
            .map(|rest| match rest {
                "pkey" => "id",
                rest => rest
                    .strip_suffix("_fkey")
                    .or_else(|| rest.strip_suffix("_key"))
                    .unwrap_or(rest),
            })
            .map(str::to_owned),
        _ => None,
    };
    Some(Violation {
        kind,
        table,
        column,
    })
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match error {
            PoolError::Backend(error) => error.into(),
            PoolError::Timeout(_) => StoreError::Unavailable(Box::new(error)),
            PoolError::Closed => StoreError::Closed,
            _ => StoreError::Database(Box::new(error)),
        }
    }
}

/// Whether `error` says the database is unavailable rather than that the call was wrong:
/// the connection failed or closed (refused, reset, timed out), or the server refused for
/// a condition of its own (SQLSTATE classes 08 connection, 53 resources such as a full disk,
/// 57P shutdown and startup, 58 system I/O; a cancelled statement, i.e. `statement_timeout`;
/// a read-only transaction, i.e. a standby after a failover).
fn unavailable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(state) = error.code() {
        let code = state.code();
        return ["08", "53", "57P", "58"]
            .iter()
            .any(|c| code.starts_with(c))
            || code == "57014"
            || code == "25006";
    }
    // No server error: an I/O failure (connect refused, reset) has an `io::Error` source;
    // the connect timeout has none, only its text.
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    error.to_string() == "timeout waiting for server"
}
