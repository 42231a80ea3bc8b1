//! SQL of provisioning and webhook configuration. Each function runs inside the caller's
//! transaction (the writer's group commit, or a reader's snapshot), so a rule checked here
//! and the write that follows it are atomic.

use rusqlite::{Connection, OptionalExtension};

use super::{deliveries, now_ms};
use crate::domain::{
    KeyHash, MultiWebhook, MultiWebhookChange, Partner, PartnerId, PhoneNumber, WabaId,
};
use crate::store::columns::{self, require_changed, waba_webhook_from_columns};
use crate::store::{NewChannel, NewEvent, StoreError, Subject, WabaWebhookView};

/// The stored key hash in `table` equal to `key_hash`, confirmed in constant time.
///
/// The index finds the row; the hash (not the key) is what the lookup's timing could leak.
pub fn stored_key_hash(
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

/// Adds a partner; its id must be new.
pub fn create_partner(
    conn: &Connection,
    partner: &Partner,
    key_hash: &KeyHash,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO partners (id, name, api_key_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        (
            partner.id.as_str(),
            &partner.name,
            key_hash.as_str(),
            now_ms(),
        ),
    )
    .map_err(|e| StoreError::from(e).explained(&Subject::partner(partner)))?;
    Ok(())
}

/// Adds a WABA to an existing partner; the id must be new (the schema's constraints say
/// which rule a failed insert broke).
pub fn create_waba(conn: &Connection, partner: &PartnerId, waba: WabaId) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO wabas (id, partner_id, created_at) VALUES (?1, ?2, ?3)",
        (waba.get(), partner.as_str(), now_ms()),
    )
    .map_err(|e| StoreError::from(e).explained(&Subject::waba(partner, waba)))?;
    Ok(())
}

/// Adds a channel (number and Meta id new, WABA existing) and stores `events` about it,
/// unleased.
pub fn create_channel(
    conn: &Connection,
    channel: &NewChannel,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO channels (id, waba_id, phone_number, phone_number_id, api_key_hash, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        (
            channel.id.as_str(),
            channel.waba_id.get(),
            channel.phone_number.as_str(),
            channel.phone_number_id.as_str(),
            channel.key_hash.as_str(),
            now_ms(),
        ),
    )
    .map_err(|e| StoreError::from(e).explained(&Subject::channel(channel)))?;
    // Partner events only: never ordered.
    deliveries::save_events(conn, events, &[], None, false)?;
    Ok(())
}

/// The WABA webhook and the WABA's numbers, from one snapshot.
pub fn waba_webhook(conn: &Connection, waba: WabaId) -> Result<WabaWebhookView, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let columns = tx
        .query_row(
            "SELECT webhook_url, webhook_headers, override_all FROM wabas WHERE id = ?1",
            [waba.get()],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let Some((url, headers, override_all)) = columns else {
        return Err(StoreError::NotFound {
            what: "WABA",
            id: waba.to_string(),
        });
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
}

/// Sets the WABA webhook columns; with `override_all`, removes the numbers' own webhooks.
pub fn set_waba_webhook(
    conn: &Connection,
    waba: WabaId,
    (url, headers): (Option<String>, Option<String>),
    override_all: bool,
) -> Result<(), StoreError> {
    let changed = conn.execute(
        "UPDATE wabas SET webhook_url = ?1, webhook_headers = ?2, override_all = ?3 WHERE id = ?4",
        (url, headers, override_all, waba.get()),
    )?;
    require_changed(changed as u64, "WABA", &waba.to_string())?;
    if override_all {
        conn.execute(
            "UPDATE channels SET webhook_url = NULL, webhook_headers = NULL WHERE waba_id = ?1",
            [waba.get()],
        )?;
    }
    Ok(())
}

/// Reads a channel's multi webhook, applies `change` (the domain's rules), writes it back.
pub fn change_multi_webhook(
    conn: &Connection,
    id: &str,
    change: MultiWebhookChange,
    max_destinations: usize,
) -> Result<MultiWebhook, StoreError> {
    let stored: Option<String> = conn
        .query_row(
            "SELECT multi_webhook FROM channels WHERE id = ?1",
            [id],
            |row| row.get(0),
        )
        .optional()?;
    let Some(stored) = stored else {
        return Err(StoreError::NotFound {
            what: "channel",
            id: id.to_owned(),
        });
    };
    let next = columns::decode_multi_webhook(&stored)?.apply(change, max_destinations)?;
    conn.execute(
        "UPDATE channels SET multi_webhook = ?1 WHERE id = ?2",
        (columns::encode(&next)?, id),
    )?;
    Ok(next)
}
