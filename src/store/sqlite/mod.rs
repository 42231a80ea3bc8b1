//! The embedded SQLite backend, Switchboard's zero-setup default.
//!
//! One writer thread owns the only writing connection and commits queued writes together
//! (group commit, see `writer`); reads run on a small pool of connections beside it (WAL).

mod cache;
mod connection;
mod deliveries;
mod rows;
mod writer;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension};

use self::cache::ConfigCache;
use self::connection::Readers;
use self::rows::{find_channel, find_partner, waba_webhook_from_columns, webhook_columns};
use self::writer::Writer;
use super::{
    ChannelRef, DeliveryFilter, DeliveryRecord, DueDelivery, EventFilter, EventRecord,
    EventSummary, NewChannel, NewEvent, Outcome, PartnerRecord, Routing, SavedEvent, Store,
    StoreError, WabaWebhookView,
};
use crate::domain::{
    Channel, ChannelId, DeliveryId, DeliveryState, EventId, KeyHash, MultiWebhook,
    MultiWebhookChange, Partner, PartnerId, PhoneNumber, Route, Target, WabaId, WabaWebhook,
    Webhook, WebhookHeaders, WebhookUrl,
};

/// The SQLite store: a group-committing writer and a pool of readers on one file.
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    cache: ConfigCache,
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let owned = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || connection::open_writer(&owned))
            .await
            .map_err(|e| StoreError::Open(e.to_string()))??;
        Ok(Self {
            writer: Writer::start(conn)?,
            readers: Readers::new(path),
            cache: ConfigCache::default(),
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
                let changed = conn.execute(&sql, (value, id.as_str()))?;
                require_changed(changed, "partner", id.as_str())?;
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
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let result = self.writer.write(work).await;
        self.cache.invalidate();
        result
    }
}

pub(crate) use crate::clock::now_ms;

/// Fails with `NotFound` unless a statement changed a row.
fn require_changed(changed: usize, what: &'static str, id: &str) -> Result<(), StoreError> {
    if changed == 0 {
        return Err(StoreError::NotFound {
            what,
            id: id.to_owned(),
        });
    }
    Ok(())
}

/// The stored key hash in `table` equal to `key_hash`, confirmed in constant time.
///
/// The index finds the row; the hash (not the key) is what the lookup's timing could leak.
fn stored_key_hash(
    conn: &Connection,
    table: &'static str,
    key_hash: &KeyHash,
) -> Result<Option<String>, StoreError> {
    let sql = format!("SELECT api_key_hash FROM {table} WHERE api_key_hash = ?1");
    let stored: Option<String> = conn
        .query_row(&sql, [key_hash.as_str()], |row| row.get(0))
        .optional()?;
    Ok(stored.filter(|hash| KeyHash::from_stored(hash.clone()).matches(key_hash)))
}

/// Whether a row matches `sql` (a `SELECT EXISTS(…)` with one parameter).
fn exists(conn: &Connection, sql: &str, value: &dyn rusqlite::ToSql) -> Result<bool, StoreError> {
    Ok(conn.query_row(sql, [value], |row| row.get(0))?)
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.readers
            .read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn create_partner(&self, partner: Partner, key_hash: KeyHash) -> Result<(), StoreError> {
        self.writer
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO partners (id, name, api_key_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                    (partner.id.as_str(), &partner.name, key_hash.as_str(), now_ms()),
                )?;
                Ok(())
            })
            .await
    }

    async fn create_waba(&self, partner: &PartnerId, waba: WabaId) -> Result<(), StoreError> {
        let partner = partner.clone();
        self.writer
            .write(move |conn| {
                if !exists(
                    conn,
                    "SELECT EXISTS(SELECT 1 FROM partners WHERE id = ?1)",
                    &partner.as_str(),
                )? {
                    return Err(StoreError::NotFound {
                        what: "partner",
                        id: partner.to_string(),
                    });
                }
                if exists(
                    conn,
                    "SELECT EXISTS(SELECT 1 FROM wabas WHERE id = ?1)",
                    &waba.get(),
                )? {
                    return Err(StoreError::Conflict(format!("WABA {waba} already exists")));
                }
                conn.execute(
                    "INSERT INTO wabas (id, partner_id, created_at) VALUES (?1, ?2, ?3)",
                    (waba.get(), partner.as_str(), now_ms()),
                )?;
                Ok(())
            })
            .await
    }

    async fn create_channel(
        &self,
        channel: NewChannel,
        events: Vec<NewEvent>,
    ) -> Result<(), StoreError> {
        self.writer
            .write(move |conn| {
                if !exists(conn, "SELECT EXISTS(SELECT 1 FROM wabas WHERE id = ?1)", &channel.waba_id.get())? {
                    return Err(StoreError::NotFound { what: "WABA", id: channel.waba_id.to_string() });
                }
                let number = channel.phone_number.as_str();
                if exists(conn, "SELECT EXISTS(SELECT 1 FROM channels WHERE phone_number = ?1)", &number)? {
                    return Err(StoreError::Conflict(format!(
                        "A channel with phone_number {number} already exists"
                    )));
                }
                let meta_id = channel.phone_number_id.as_str();
                if exists(conn, "SELECT EXISTS(SELECT 1 FROM channels WHERE phone_number_id = ?1)", &meta_id)? {
                    return Err(StoreError::Conflict(format!(
                        "A channel with phone_number_id {meta_id} already exists"
                    )));
                }
                conn.execute(
                    "INSERT INTO channels (id, waba_id, phone_number, phone_number_id, api_key_hash, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    (channel.id.as_str(), channel.waba_id.get(), number, meta_id, channel.key_hash.as_str(), now_ms()),
                )?;
                deliveries::save_events(conn, &events, None)?;
                Ok(())
            })
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
            require_changed(changed, "channel", id.as_str())
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
                (url, headers, id.as_str()),
            )?;
            require_changed(changed, "channel", id.as_str())
        })
        .await
    }

    async fn waba_webhook(&self, waba: WabaId) -> Result<WabaWebhookView, StoreError> {
        self.readers
            .read(move |conn| {
                let tx = conn.unchecked_transaction()?;
                let columns = tx
                    .query_row(
                        "SELECT webhook_url, webhook_headers, override_all FROM wabas WHERE id = ?1",
                        [waba.get()],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                    )
                    .optional()?;
                let Some((url, headers, override_all)) = columns else {
                    return Err(StoreError::NotFound { what: "WABA", id: waba.to_string() });
                };
                let mut statement = tx.prepare(
                    "SELECT phone_number FROM channels WHERE waba_id = ?1 ORDER BY created_at, rowid",
                )?;
                let numbers = statement
                    .query_map([waba.get()], |row| row.get::<_, String>(0))?
                    .map(|number| number.map(PhoneNumber::from_stored))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(WabaWebhookView {
                    webhook: waba_webhook_from_columns(url, headers, override_all)?,
                    numbers,
                })
            })
            .await
    }

    async fn set_waba_webhook(
        &self,
        waba: WabaId,
        webhook: Option<WabaWebhook>,
    ) -> Result<(), StoreError> {
        let (url, headers) = webhook_columns(webhook.as_ref().map(|w| &w.webhook))?;
        let override_all = webhook.is_some_and(|w| w.override_all);
        self.write_config(move |conn| {
                let changed = conn.execute(
                    "UPDATE wabas SET webhook_url = ?1, webhook_headers = ?2, override_all = ?3 WHERE id = ?4",
                    (url, headers, override_all, waba.get()),
                )?;
                require_changed(changed, "WABA", &waba.to_string())?;
                if override_all {
                    conn.execute(
                        "UPDATE channels SET webhook_url = NULL, webhook_headers = NULL WHERE waba_id = ?1",
                        [waba.get()],
                    )?;
                }
                Ok(())
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
            let stored: Option<String> = conn
                .query_row(
                    "SELECT multi_webhook FROM channels WHERE id = ?1",
                    [id.as_str()],
                    |row| row.get(0),
                )
                .optional()?;
            let Some(stored) = stored else {
                return Err(StoreError::NotFound {
                    what: "channel",
                    id: id.to_string(),
                });
            };
            let next = rows::decode_multi_webhook(&stored)?.apply(change, max_destinations)?;
            conn.execute(
                "UPDATE channels SET multi_webhook = ?1 WHERE id = ?2",
                (rows::encode(&next)?, id.as_str()),
            )?;
            Ok(next)
        })
        .await
    }

    async fn route(&self, id: &ChannelId) -> Result<Route, StoreError> {
        match self.routing(id).await? {
            Some(routing) => Ok(routing.route.clone()),
            None => Err(StoreError::NotFound {
                what: "channel",
                id: id.to_string(),
            }),
        }
    }

    async fn set_signing_secret(&self, id: &ChannelId, secret: String) -> Result<(), StoreError> {
        let id = id.clone();
        self.write_config(move |conn| {
            let changed = conn.execute(
                "UPDATE channels SET signing_secret = ?1 WHERE id = ?2",
                (secret, id.as_str()),
            )?;
            require_changed(changed, "channel", id.as_str())
        })
        .await
    }

    async fn routing(&self, id: &ChannelId) -> Result<Option<Arc<Routing>>, StoreError> {
        if let Some(hit) = self.cache.routing(id) {
            return Ok(Some(hit));
        }
        let generation = self.cache.generation();
        let owned = id.clone();
        let loaded = self
            .readers
            .read(move |conn| rows::load_routing(conn, &owned))
            .await?;
        Ok(loaded.map(|routing| self.cache.remember_routing(id, routing, generation)))
    }

    async fn channel_ref(&self, id: &ChannelId) -> Result<Option<ChannelRef>, StoreError> {
        if let Some(hit) = self.cache.channel_ref_by_id(id) {
            return Ok(Some(hit));
        }
        let found = self.channel(id).await?.map(ChannelRef::from);
        if let Some(reference) = &found {
            self.cache.remember_channel_ref_by_id(reference.clone());
        }
        Ok(found)
    }

    async fn channel_by_phone_number_id(
        &self,
        phone_number_id: &str,
    ) -> Result<Option<ChannelRef>, StoreError> {
        if let Some(hit) = self.cache.channel_ref(phone_number_id) {
            return Ok(Some(hit));
        }
        let owned = phone_number_id.to_owned();
        let found = self
            .readers
            .read(move |conn| find_channel(conn, "phone_number_id = ?1", &owned))
            .await?;
        Ok(found.map(|channel| {
            let reference = ChannelRef::from(channel);
            self.cache
                .remember_channel_ref(phone_number_id, reference.clone());
            reference
        }))
    }

    async fn save_events(
        &self,
        events: Vec<NewEvent>,
        claim_until: Option<i64>,
    ) -> Result<Vec<SavedEvent>, StoreError> {
        self.writer
            .write(move |conn| deliveries::save_events(conn, &events, claim_until))
            .await
    }

    async fn claim_due(
        &self,
        now: i64,
        limit: usize,
        lease_until: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        self.writer
            .write(move |conn| deliveries::claim_due(conn, now, limit, lease_until))
            .await
    }

    async fn release_leases(&self) -> Result<u64, StoreError> {
        self.writer.write(deliveries::release_leases).await
    }

    async fn settle(&self, outcome: Outcome) -> Result<Vec<(DeliveryId, Target)>, StoreError> {
        self.writer
            .write(move |conn| deliveries::settle(conn, &outcome))
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

    async fn event(&self, id: EventId) -> Result<Option<EventRecord>, StoreError> {
        self.readers
            .read(move |conn| deliveries::event(conn, id))
            .await
    }

    async fn events(&self, filter: EventFilter) -> Result<Vec<EventSummary>, StoreError> {
        self.readers
            .read(move |conn| deliveries::events(conn, &filter))
            .await
    }

    async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.readers
            .read(move |conn| deliveries::deliveries(conn, &filter))
            .await
    }

    async fn purge_finished(&self, before: i64, limit: usize) -> Result<u64, StoreError> {
        self.writer
            .write(move |conn| deliveries::purge_finished(conn, before, limit))
            .await
    }

    async fn count_by_state(&self, state: DeliveryState) -> Result<u64, StoreError> {
        self.readers
            .read(move |conn| deliveries::count_by_state(conn, state))
            .await
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
        let encoded = rows::encode(headers.as_map())?;
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
                    (secret, id.as_str()),
                )?;
                require_changed(changed, "partner", id.as_str())
            })
            .await
    }

    async fn waba_partner(&self, waba: WabaId) -> Result<Option<PartnerId>, StoreError> {
        self.readers
            .read(move |conn| {
                let partner: Option<String> = conn
                    .query_row(
                        "SELECT partner_id FROM wabas WHERE id = ?1",
                        [waba.get()],
                        |row| row.get(0),
                    )
                    .optional()?;
                Ok(partner.map(PartnerId::from_raw))
            })
            .await
    }
}
