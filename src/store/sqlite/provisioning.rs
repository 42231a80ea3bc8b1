//! SQL of provisioning and webhook configuration. Each function runs inside the caller's
//! transaction (the writer's group commit, or a reader's snapshot), so a rule checked here
//! and the write that follows it are atomic.

use rusqlite::{Connection, OptionalExtension};

use super::{deliveries, now_ms};
use crate::domain::{KeyHash, MultiWebhook, MultiWebhookChange, PartnerId, PhoneNumber, WabaId};
use crate::store::columns::{self, require_changed, waba_webhook_from_columns};
use crate::store::{NewChannel, NewEvent, StoreError, WabaWebhookView};

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

/// Whether a row matches `sql` (a `SELECT EXISTS(…)` with one parameter).
fn exists(conn: &Connection, sql: &str, value: &dyn rusqlite::ToSql) -> Result<bool, StoreError> {
    Ok(conn.query_row(sql, [value], |row| row.get(0))?)
}

/// Adds a WABA to an existing partner; the id must be new.
pub fn create_waba(conn: &Connection, partner: &PartnerId, waba: WabaId) -> Result<(), StoreError> {
    let partner_exists = "SELECT EXISTS(SELECT 1 FROM partners WHERE id = ?1)";
    if !exists(conn, partner_exists, &partner.as_str())? {
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
}

/// Adds a channel (number and Meta id new) and stores `events` about it, unleased.
pub fn create_channel(
    conn: &Connection,
    channel: &NewChannel,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    let waba = channel.waba_id;
    if !exists(
        conn,
        "SELECT EXISTS(SELECT 1 FROM wabas WHERE id = ?1)",
        &waba.get(),
    )? {
        return Err(StoreError::NotFound {
            what: "WABA",
            id: waba.to_string(),
        });
    }
    let number = channel.phone_number.as_str();
    let number_taken = "SELECT EXISTS(SELECT 1 FROM channels WHERE phone_number = ?1)";
    if exists(conn, number_taken, &number)? {
        return Err(StoreError::Conflict(format!(
            "A channel with phone_number {number} already exists"
        )));
    }
    let meta_id = channel.phone_number_id.as_str();
    let meta_id_taken = "SELECT EXISTS(SELECT 1 FROM channels WHERE phone_number_id = ?1)";
    if exists(conn, meta_id_taken, &meta_id)? {
        return Err(StoreError::Conflict(format!(
            "A channel with phone_number_id {meta_id} already exists"
        )));
    }
    conn.execute(
        "INSERT INTO channels (id, waba_id, phone_number, phone_number_id, api_key_hash, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        (
            channel.id.as_str(),
            waba.get(),
            number,
            meta_id,
            channel.key_hash.as_str(),
            now_ms(),
        ),
    )?;
    // Partner events only: never ordered.
    deliveries::save_events(conn, events, None, false)?;
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
