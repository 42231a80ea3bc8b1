//! The embedded SQLite backend, Switchboard's zero-setup default.
//!
//! One writer thread owns the only writing connection and commits queued writes together
//! (group commit, see `writer`); reads run on a small pool of connections beside it (WAL).

mod connection;
mod deliveries;
mod events;
mod listing;
mod ordering;
mod provisioning;
mod recover;
mod replay;
mod rows;
pub mod snapshot;
mod writer;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension};

use self::connection::Readers;
use self::rows::{find_channel, find_partner};
use self::writer::Writer;
use super::cache::ConfigCache;
use super::columns::{self, require_changed, webhook_columns};
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
    WriteStats,
};
use crate::domain::DestinationId;
use crate::domain::{
    Channel, ChannelId, DeliveryId, DeliveryState, EventId, KeyHash, MultiWebhook,
    MultiWebhookChange, Partner, PartnerId, WabaId, WabaWebhook, Webhook, WebhookHeaders,
    WebhookUrl,
};

/// The SQLite store: a group-committing writer and a pool of readers on one file.
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    cache: ConfigCache,
    url_ids: UrlIds,
    ordering: ordering::OrderingInUse,
}

impl SqliteStore {
    /// The id of `url` in `attempt_urls`, stored (and committed) first if it is new.
    async fn url_id(&self, url: &str) -> Result<i64, StoreError> {
        if let Some(id) = self.url_ids.get(url) {
            return Ok(id);
        }
        let owned = url.to_owned();
        let id = self
            .writer
            .write(move |conn| deliveries::store_url(conn, &owned))
            .await?;
        self.url_ids.remember(url, id);
        Ok(id)
    }

    /// Opens (creating and migrating if needed) the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let owned = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || {
            let conn = connection::open_writer(&owned)?;
            let filled = recover::backfill_destinations(&conn)?;
            if filled > 0 {
                tracing::info!(filled, "destinations of earlier attempt URLs filled");
            }
            let ordering = ordering::OrderingInUse::read(&conn)?;
            Ok::<_, StoreError>((conn, ordering))
        })
        .await
        .map_err(|e| StoreError::Open(e.to_string()))??;
        let (conn, ordering) = conn;
        Ok(Self {
            writer: Writer::start(conn)?,
            readers: Readers::new(path),
            cache: ConfigCache::default(),
            url_ids: UrlIds::default(),
            ordering,
        })
    }

    /// Sets one webhook column of a partner and returns the partner as it is now.
    async fn update_partner(
        &self,
        id: &PartnerId,
        column: &'static str,
        value: Option<String>,
    ) -> Result<PartnerRecord, StoreError> {
        let id = id.clone();
        self.writer
            .write(move |conn| {
                let sql = format!("UPDATE partners SET {column} = ?1 WHERE id = ?2");
                let changed = conn.execute(&sql, (&value, id.as_str()))?;
                require_changed(changed as u64, "partner", id.as_str())?;
                find_partner(conn, "id = ?1", id.as_str())?.ok_or_else(|| StoreError::NotFound {
                    what: "partner",
                    id: id.to_string(),
                })
            })
            .await
    }

    /// Runs a configuration write, then drops cached routing so the next attempt sees it.
    async fn write_config<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let result = self.writer.write(work).await;
        self.cache.invalidate();
        result
    }
}

pub(crate) use crate::clock::now_ms;

use self::provisioning::stored_key_hash;

/// Readiness writes one row (SQLite and PostgreSQL write a row even when its value does not
/// change), so a database that cannot take writes fails it.
const WRITE_PROBE: &str = "UPDATE schema_migrations SET version = version
     WHERE version = (SELECT max(version) FROM schema_migrations)";

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.writer
            .write(|conn| {
                conn.execute(WRITE_PROBE, [])?;
                Ok(())
            })
            .await
    }

    async fn create_partner(&self, partner: Partner, key_hash: KeyHash) -> Result<(), StoreError> {
        self.writer
            .write(move |conn| provisioning::create_partner(conn, &partner, &key_hash))
            .await
    }

    async fn create_waba(&self, partner: &PartnerId, waba: WabaId) -> Result<(), StoreError> {
        let partner = partner.clone();
        self.writer
            .write(move |conn| provisioning::create_waba(conn, &partner, waba))
            .await
    }

    async fn create_channel(
        &self,
        channel: NewChannel,
        events: Vec<NewEvent>,
    ) -> Result<(), StoreError> {
        self.writer
            .write(move |conn| provisioning::create_channel(conn, &channel, &events))
            .await
    }

    async fn replace_channel_key(
        &self,
        id: &ChannelId,
        key_hash: KeyHash,
    ) -> Result<(), StoreError> {
        let id = id.clone();
        self.write_config(move |conn| {
            let changed = conn.execute(
                "UPDATE channels SET api_key_hash = ?1, webhook_url = NULL, webhook_headers = NULL
                     WHERE id = ?2",
                (key_hash.as_str(), id.as_str()),
            )?;
            require_changed(changed as u64, "channel", id.as_str())
        })
        .await
    }

    async fn channel_by_key(&self, key_hash: &KeyHash) -> Result<Option<Channel>, StoreError> {
        let key_hash = key_hash.clone();
        self.readers
            .read(
                move |conn| match stored_key_hash(conn, "channels", &key_hash)? {
                    Some(hash) => find_channel(conn, "api_key_hash = ?1", &hash),
                    None => Ok(None),
                },
            )
            .await
    }

    async fn channel(&self, id: &ChannelId) -> Result<Option<Channel>, StoreError> {
        let id = id.clone();
        self.readers
            .read(move |conn| find_channel(conn, "id = ?1", id.as_str()))
            .await
    }

    async fn set_phone_webhook(
        &self,
        id: &ChannelId,
        webhook: Option<Webhook>,
    ) -> Result<(), StoreError> {
        let id = id.clone();
        let (url, headers) = webhook_columns(webhook.as_ref())?;
        self.write_config(move |conn| {
            let changed = conn.execute(
                "UPDATE channels SET webhook_url = ?1, webhook_headers = ?2 WHERE id = ?3",
                (&url, &headers, id.as_str()),
            )?;
            require_changed(changed as u64, "channel", id.as_str())
        })
        .await
    }

    async fn waba_webhook(&self, waba: WabaId) -> Result<WabaWebhookView, StoreError> {
        self.readers
            .read(move |conn| provisioning::waba_webhook(conn, waba))
            .await
    }

    async fn set_waba_webhook(
        &self,
        waba: WabaId,
        webhook: Option<WabaWebhook>,
    ) -> Result<(), StoreError> {
        let columns = webhook_columns(webhook.as_ref().map(|w| &w.webhook))?;
        let override_all = webhook.is_some_and(|w| w.override_all);
        self.write_config(move |conn| {
            provisioning::set_waba_webhook(conn, waba, columns.clone(), override_all)
        })
        .await
    }

    async fn change_multi_webhook(
        &self,
        id: &ChannelId,
        change: MultiWebhookChange,
        max_destinations: usize,
    ) -> Result<MultiWebhook, StoreError> {
        let id = id.clone();
        self.write_config(move |conn| {
            provisioning::change_multi_webhook(conn, id.as_str(), change.clone(), max_destinations)
        })
        .await
    }

    async fn set_ordered(&self, id: &ChannelId, on: bool, now: i64) -> Result<(), StoreError> {
        let id = id.clone();
        let in_use = self.ordering.clone();
        self.write_config(move |conn| {
            if on {
                // In the writer, before the switch: every write after it sees the flag.
                in_use.set();
            }
            ordering::set_ordered(conn, &id, on, now)
        })
        .await
    }

    async fn set_signing_secret(&self, id: &ChannelId, secret: String) -> Result<(), StoreError> {
        let id = id.clone();
        self.write_config(move |conn| {
            let changed = conn.execute(
                "UPDATE channels SET signing_secret = ?1 WHERE id = ?2",
                (&secret, id.as_str()),
            )?;
            require_changed(changed as u64, "channel", id.as_str())
        })
        .await
    }

    async fn routing(&self, id: &ChannelId) -> Result<Option<Arc<Routing>>, StoreError> {
        let owned = id.clone();
        let load = self
            .readers
            .read(move |conn| rows::load_routing(conn, &owned));
        // This process is the only writer: the cache is always coherent.
        self.cache.routing_or_load(id, true, load).await
    }

    async fn channel_ref(&self, id: &ChannelId) -> Result<Option<ChannelRef>, StoreError> {
        self.cache.channel_ref_or_load(id, self.channel(id)).await
    }

    async fn channel_by_phone_number_id(
        &self,
        phone_number_id: &str,
    ) -> Result<Option<ChannelRef>, StoreError> {
        let owned = phone_number_id.to_owned();
        let load = self
            .readers
            .read(move |conn| find_channel(conn, "phone_number_id = ?1", &owned));
        self.cache
            .channel_by_phone_number_id_or_load(phone_number_id, load)
            .await
    }

    async fn save_events(
        &self,
        events: Vec<NewEvent>,
        claim_until: Option<i64>,
    ) -> Result<Vec<SavedEvent>, StoreError> {
        let ordering = self.ordering.clone();
        let packed = payload::pack_all(&events);
        self.writer
            .write(move |conn| {
                deliveries::save_events(conn, &events, &packed, claim_until, ordering.get())
            })
            .await
    }

    async fn claim_due(
        &self,
        now: i64,
        limit: usize,
        max_bytes: usize,
        lease_until: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        self.writer
            .write(move |conn| deliveries::claim_due(conn, now, (limit, max_bytes), lease_until))
            .await
    }

    async fn release_leases(&self) -> Result<u64, StoreError> {
        self.writer.write(deliveries::release_leases).await
    }

    async fn renew_leases(
        &self,
        held: Vec<HeldLease>,
        until: i64,
    ) -> Result<Vec<DeliveryId>, StoreError> {
        self.writer
            .write(move |conn| deliveries::renew_leases(conn, &held, until))
            .await
    }

    async fn wake_deliveries(
        &self,
        parked: Vec<DeliveryId>,
        now: i64,
        age_shift: i64,
    ) -> Result<u64, StoreError> {
        self.writer
            .write(move |conn| deliveries::wake_deliveries(conn, &parked, now, age_shift))
            .await
    }

    async fn settle(&self, outcome: Outcome) -> Result<Settled, StoreError> {
        let url_id = match &outcome.attempt {
            Some(attempt) => Some(self.url_id(&attempt.url).await?),
            None => None,
        };
        let ordering = self.ordering.clone();
        self.writer
            .write(move |conn| deliveries::settle(conn, &outcome, url_id, ordering.get()))
            .await
    }

    async fn configured_routes(&self) -> Result<Vec<ConfiguredRoute>, StoreError> {
        self.readers
            .read(|conn| {
                let mut statement = conn.prepare_cached(types::CONFIGURED_ROUTES)?;
                let rows = statement.query_map([], |row| {
                    Ok(types::ConfiguredRouteRow {
                        kind: row.get(0)?,
                        channel: row.get(1)?,
                        partner: row.get(2)?,
                        value: row.get(3)?,
                        waba: row.get(4)?,
                    })
                })?;
                let mut routes = Vec::new();
                for row in rows {
                    routes.extend(types::configured_routes_of_row(row?)?);
                }
                Ok(routes)
            })
            .await
    }

    async fn pause_destination(&self, pause: DestinationPause) -> Result<bool, StoreError> {
        self.writer
            .write(move |conn| {
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO destination_pauses (id, url, reason, paused_at)
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING",
                    )?
                    .execute(rusqlite::params![
                        pause.id.as_str(),
                        pause.url,
                        pause.reason.as_str(),
                        pause.paused_at
                    ])?;
                Ok(inserted > 0)
            })
            .await
    }

    async fn resume_destination(
        &self,
        id: &DestinationId,
    ) -> Result<Option<DestinationPause>, StoreError> {
        let id = id.as_str().to_owned();
        self.writer
            .write(move |conn| {
                let mut delete = conn.prepare_cached(
                    "DELETE FROM destination_pauses WHERE id = ?1
                     RETURNING id, url, reason, paused_at",
                )?;
                let mut rows = delete.query([&id])?;
                let Some(row) = rows.next()? else {
                    return Ok(None);
                };
                Ok(Some(decode::destination_pause(row)?))
            })
            .await
    }

    async fn wake_paused(
        &self,
        id: &DestinationId,
        now: i64,
        age_shift: i64,
    ) -> Result<u64, StoreError> {
        let id = id.as_str().to_owned();
        self.writer
            .write(move |conn| {
                let woken = conn
                    .prepare_cached(
                        "UPDATE deliveries SET next_attempt_at = ?1, window_start = window_start + ?2,
                            parked_behind = NULL
                 WHERE parked_behind = ?3 AND state = 'pending' AND leased_until IS NULL
                   AND next_attempt_at <> ?4",
                    )?
                    .execute(rusqlite::params![now, age_shift, id, super::HELD_UNTIL])?;
                Ok(woken as u64)
            })
            .await
    }

    async fn paused_destinations(&self) -> Result<Vec<DestinationPause>, StoreError> {
        self.readers
            .read(|conn| {
                let mut statement = conn.prepare_cached(types::PAUSED_DESTINATIONS)?;
                events::collect(&mut statement, [], |row| decode::destination_pause(row))
            })
            .await
    }

    async fn pending_groups(&self) -> Result<Vec<PendingGroup>, StoreError> {
        self.readers
            .read(|conn| {
                let mut statement = conn.prepare_cached(types::PENDING_GROUPS)?;
                let rows = statement.query_map([], |row| {
                    Ok(PendingGroup {
                        channel: row.get::<_, Option<String>>(0)?.map(ChannelId::from_raw),
                        partner: row.get::<_, Option<String>>(1)?.map(PartnerId::from_raw),
                        target: row.get(2)?,
                        count: row.get(3)?,
                        oldest: row.get(4)?,
                        next_attempt_at: row.get(5)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    async fn retry_delivery(&self, id: DeliveryId, now: i64) -> Result<(), StoreError> {
        self.writer
            .write(move |conn| deliveries::retry_delivery(conn, id, now))
            .await
    }

    async fn retry_deliveries(
        &self,
        state: DeliveryState,
        channel: Option<ChannelId>,
        partner: Option<PartnerId>,
        now: i64,
    ) -> Result<u64, StoreError> {
        self.writer
            .write(move |conn| {
                deliveries::retry_deliveries(conn, state, channel.as_ref(), partner.as_ref(), now)
            })
            .await
    }

    async fn recover_deliveries(
        &self,
        filter: RecoverFilter,
        now: i64,
    ) -> Result<Recovered, StoreError> {
        if filter.dry_run {
            let matched = self
                .readers
                .read(move |conn| recover::count(conn, &filter))
                .await?;
            return Ok(Recovered {
                matched,
                requeued: 0,
            });
        }
        let requeued = self
            .writer
            .write(move |conn| recover::requeue(conn, &filter, now))
            .await?;
        Ok(Recovered {
            matched: requeued,
            requeued,
        })
    }

    async fn event(&self, id: EventId) -> Result<Option<EventRecord>, StoreError> {
        self.readers.read(move |conn| events::event(conn, id)).await
    }

    async fn events(&self, filter: EventFilter) -> Result<Vec<EventSummary>, StoreError> {
        self.readers
            .read(move |conn| events::events(conn, &filter))
            .await
    }

    async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.readers
            .read(move |conn| events::deliveries(conn, &filter))
            .await
    }

    async fn purge_finished(&self, before: i64, limit: usize) -> Result<u64, StoreError> {
        self.writer
            .write(move |conn| events::purge_finished(conn, before, limit))
            .await
    }

    async fn purge_payloads(
        &self,
        before: i64,
        limit: usize,
        now: i64,
    ) -> Result<PayloadPurge, StoreError> {
        self.writer
            .write(move |conn| events::purge_payloads(conn, before, limit, now))
            .await
    }

    fn write_stats(&self) -> WriteStats {
        self.writer.stats()
    }

    async fn partner_by_key(
        &self,
        key_hash: &KeyHash,
    ) -> Result<Option<PartnerRecord>, StoreError> {
        let key_hash = key_hash.clone();
        self.readers
            .read(
                move |conn| match stored_key_hash(conn, "partners", &key_hash)? {
                    Some(hash) => find_partner(conn, "api_key_hash = ?1", &hash),
                    None => Ok(None),
                },
            )
            .await
    }

    async fn partner(&self, id: &PartnerId) -> Result<Option<PartnerRecord>, StoreError> {
        let id = id.clone();
        self.readers
            .read(move |conn| find_partner(conn, "id = ?1", id.as_str()))
            .await
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
        let id = id.clone();
        self.writer
            .write(move |conn| {
                let changed = conn.execute(
                    "UPDATE partners SET signing_secret = ?1 WHERE id = ?2",
                    (&secret, id.as_str()),
                )?;
                require_changed(changed as u64, "partner", id.as_str())
            })
            .await
    }

    async fn waba_route(&self, waba: WabaId) -> Result<Option<WabaRoute>, StoreError> {
        self.readers
            .read(move |conn| {
                conn.query_row(
                    "SELECT partner_id, webhook_url, webhook_headers, signing_secret
                     FROM wabas WHERE id = ?1",
                    [waba.get()],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                )
                .optional()?
                .map(columns::waba_route_from_columns)
                .transpose()
            })
            .await
    }

    async fn set_waba_signing_secret(
        &self,
        waba: WabaId,
        secret: String,
    ) -> Result<(), StoreError> {
        self.writer
            .write(move |conn| {
                let changed = conn.execute(
                    "UPDATE wabas SET signing_secret = ?1 WHERE id = ?2",
                    (&secret, waba.get()),
                )?;
                require_changed(changed as u64, "WABA", &waba.to_string())
            })
            .await
    }

    async fn list_partners(
        &self,
        filter: PartnerFilter,
    ) -> Result<Vec<PartnerListing>, StoreError> {
        self.readers
            .read(move |conn| listing::partners(conn, &filter))
            .await
    }

    async fn list_wabas(&self, filter: WabaFilter) -> Result<Vec<WabaListing>, StoreError> {
        self.readers
            .read(move |conn| listing::wabas(conn, &filter))
            .await
    }

    async fn list_channels(
        &self,
        filter: ChannelFilter,
    ) -> Result<Vec<ChannelListing>, StoreError> {
        self.readers
            .read(move |conn| listing::channels(conn, &filter))
            .await
    }

    async fn replay(
        &self,
        from: super::ReplayFrom,
        limit: usize,
    ) -> Result<super::Replay, StoreError> {
        self.readers
            .read(move |conn| replay::replay(conn, from, limit))
            .await
    }
}
