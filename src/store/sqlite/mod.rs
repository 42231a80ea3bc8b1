//! The embedded SQLite backend, Switchboard's zero-setup default.
//!
//! One writer thread owns the only writing connection and commits queued writes together
//! (group commit, see `writer`); reads run on a small pool of connections beside it (WAL).

mod connection;
mod rows;
mod writer;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension};

use self::connection::Readers;
use self::rows::{find_channel, waba_webhook_from_columns, webhook_columns, webhook_from_columns};
use self::writer::Writer;
use super::{NewChannel, Store, StoreError, WabaWebhookView};
use crate::domain::{
    Channel, ChannelId, KeyHash, MultiWebhook, MultiWebhookChange, Partner, PartnerId, PhoneNumber,
    Route, WabaId, WabaWebhook, Webhook,
};

/// The SQLite store: a group-committing writer and a pool of readers on one file.
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
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
        })
    }
}

/// Milliseconds since the Unix epoch, the stores' timestamp unit.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

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

    async fn create_channel(&self, channel: NewChannel) -> Result<(), StoreError> {
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
        self.writer
            .write(move |conn| {
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
            .read(move |conn| {
                let stored: Option<String> = conn
                    .query_row(
                        "SELECT api_key_hash FROM channels WHERE api_key_hash = ?1",
                        [key_hash.as_str()],
                        |row| row.get(0),
                    )
                    .optional()?;
                match stored {
                    Some(hash) if KeyHash::from_stored(hash.clone()).matches(&key_hash) => {
                        find_channel(conn, "api_key_hash = ?1", &hash)
                    }
                    _ => Ok(None),
                }
            })
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
        self.writer
            .write(move |conn| {
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
        self.writer
            .write(move |conn| {
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
        self.writer
            .write(move |conn| {
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
        let id = id.clone();
        self.readers
            .read(move |conn| {
                let columns = conn
                    .query_row(
                        "SELECT c.webhook_url, c.webhook_headers, w.webhook_url, w.webhook_headers, w.override_all
                         FROM channels c JOIN wabas w ON w.id = c.waba_id WHERE c.id = ?1",
                        [id.as_str()],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)),
                    )
                    .optional()?;
                let Some((phone_url, phone_headers, waba_url, waba_headers, override_all)) = columns else {
                    return Err(StoreError::NotFound { what: "channel", id: id.to_string() });
                };
                Ok(Route::resolve(
                    webhook_from_columns(phone_url, phone_headers)?,
                    waba_webhook_from_columns(waba_url, waba_headers, override_all)?,
                ))
            })
            .await
    }
}
