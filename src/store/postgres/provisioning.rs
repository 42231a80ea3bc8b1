//! SQL of provisioning and webhook configuration on PostgreSQL. Each function runs inside
//! the caller's transaction, so a rule checked here and the write that follows are atomic;
//! read-modify-write sequences lock their row (`FOR UPDATE`) against other nodes.

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;

use super::idempotency::EventKey;
use super::{deliveries, Param};
use crate::clock::now_ms;
use crate::domain::{
    Channel, ChannelId, KeyHash, MultiWebhook, MultiWebhookChange, Partner, PartnerId, PhoneNumber,
    PhoneNumberId, Route, WabaId,
};
use crate::store::columns::{
    self, decode_headers, decode_multi_webhook, require_changed, stored_waba_id,
    waba_webhook_from_columns, webhook_from_columns,
};
use crate::store::{
    NewChannel, NewEvent, PartnerRecord, Routing, StoreError, Subject, WabaRoute, WabaWebhookView,
};

/// The stored key hash in `table` equal to `key_hash`, confirmed in constant time.
pub async fn stored_key_hash(
    tx: &Transaction<'_>,
    table: &'static str,
    key_hash: &KeyHash,
) -> Result<Option<String>, StoreError> {
    let sql = format!("SELECT api_key_hash FROM {table} WHERE api_key_hash = $1");
    let row = tx.query_opt(&sql, &[&key_hash.as_str()]).await?;
    let stored = row.map(|row| row.try_get::<_, String>(0)).transpose()?;
    Ok(stored.filter(|hash| KeyHash::from_stored(hash.clone()).matches(key_hash)))
}

/// Adds a partner; its id must be new.
pub async fn create_partner(
    tx: &Transaction<'_>,
    partner: &Partner,
    key_hash: &KeyHash,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO partners (id, name, api_key_hash, created_at) VALUES ($1, $2, $3, $4)",
        &[
            &partner.id.as_str(),
            &partner.name,
            &key_hash.as_str(),
            &now_ms(),
        ],
    )
    .await
    .map_err(|e| StoreError::from(e).explained(&Subject::partner(partner)))?;
    Ok(())
}

/// Adds a WABA to an existing partner; the id must be new (the schema's constraints say
/// which rule a failed insert broke).
pub async fn create_waba(
    tx: &Transaction<'_>,
    partner: &PartnerId,
    waba: WabaId,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO wabas (id, partner_id, created_at) VALUES ($1, $2, $3)",
        &[&waba.get(), &partner.as_str(), &now_ms()],
    )
    .await
    .map_err(|e| StoreError::from(e).explained(&Subject::waba(partner, waba)))?;
    Ok(())
}

/// Adds a channel (number and Meta id new, WABA existing) and stores `events` about it,
/// unleased.
pub async fn create_channel(
    tx: &Transaction<'_>,
    channel: &NewChannel,
    events: &[NewEvent],
    keys: &[EventKey],
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO channels (id, waba_id, phone_number, phone_number_id, api_key_hash,
                               created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &channel.id.as_str(),
            &channel.waba_id.get(),
            &channel.phone_number.as_str(),
            &channel.phone_number_id.as_str(),
            &channel.key_hash.as_str(),
            &now_ms(),
        ],
    )
    .await
    .map_err(|e| StoreError::from(e).explained(&Subject::channel(channel)))?;
    deliveries::save_events(tx, events, &[], keys, None).await?;
    Ok(())
}

/// Runs an `UPDATE … WHERE id = $last` and fails with `NotFound` if no row changed.
pub async fn update_one(
    tx: &impl GenericClient,
    sql: &str,
    params: &[&Param<'_>],
    (what, id): (&'static str, &str),
) -> Result<(), StoreError> {
    let changed = tx.execute(sql, params).await?;
    require_changed(changed, what, id)
}

const CHANNEL_COLUMNS: &str =
    "id, waba_id, phone_number, phone_number_id, webhook_url, webhook_headers, multi_webhook, \
     ordered";

/// Reads the one channel matched by `condition` (a SQL condition on `$1`), if any.
pub async fn find_channel(
    tx: &Transaction<'_>,
    condition: &str,
    value: &str,
) -> Result<Option<Channel>, StoreError> {
    let sql = format!("SELECT {CHANNEL_COLUMNS} FROM channels WHERE {condition}");
    match tx.query_opt(&sql, &[&value]).await? {
        Some(row) => Ok(Some(channel_from_row(&row)?)),
        None => Ok(None),
    }
}

fn channel_from_row(row: &Row) -> Result<Channel, StoreError> {
    let multi: String = row.try_get(6)?;
    Ok(Channel {
        id: ChannelId::from_raw(row.try_get::<_, String>(0)?),
        waba_id: stored_waba_id(row.try_get(1)?)?,
        phone_number: PhoneNumber::from_stored(row.try_get(2)?),
        phone_number_id: PhoneNumberId::from_stored(row.try_get(3)?),
        webhook: webhook_from_columns(row.try_get(4)?, row.try_get(5)?)?,
        multi_webhook: decode_multi_webhook(&multi)?,
        ordered: row.try_get(7)?,
    })
}

/// Loads a channel's routing inputs in one query.
pub async fn load_routing(
    tx: &Transaction<'_>,
    id: &ChannelId,
) -> Result<Option<Routing>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT c.webhook_url, c.webhook_headers, w.webhook_url, w.webhook_headers,
                    w.override_all, c.multi_webhook, c.signing_secret
             FROM channels c JOIN wabas w ON w.id = c.waba_id WHERE c.id = $1",
            &[&id.as_str()],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let multi: String = row.try_get(5)?;
    Ok(Some(Routing {
        route: Route::resolve(
            webhook_from_columns(row.try_get(0)?, row.try_get(1)?)?,
            waba_webhook_from_columns(row.try_get(2)?, row.try_get(3)?, row.try_get(4)?)?,
        ),
        multi_webhook: decode_multi_webhook(&multi)?,
        signing_secret: row.try_get(6)?,
    }))
}

/// The WABA webhook and the WABA's numbers (the caller's transaction is one snapshot).
pub async fn waba_webhook(
    tx: &Transaction<'_>,
    waba: WabaId,
) -> Result<WabaWebhookView, StoreError> {
    let row = tx
        .query_opt(
            "SELECT webhook_url, webhook_headers, override_all FROM wabas WHERE id = $1",
            &[&waba.get()],
        )
        .await?;
    let Some(row) = row else {
        return Err(StoreError::NotFound {
            what: "WABA",
            id: waba.to_string(),
        });
    };
    let numbers = tx
        .query(
            "SELECT phone_number FROM channels WHERE waba_id = $1 ORDER BY created_at, seq",
            &[&waba.get()],
        )
        .await?
        .iter()
        .map(|row| Ok(PhoneNumber::from_stored(row.try_get(0)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(WabaWebhookView {
        webhook: waba_webhook_from_columns(row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)?,
        numbers,
    })
}

/// Sets the WABA webhook columns; with `override_all`, removes the numbers' own webhooks.
pub async fn set_waba_webhook(
    tx: &Transaction<'_>,
    waba: WabaId,
    (url, headers): (Option<String>, Option<String>),
    override_all: bool,
) -> Result<(), StoreError> {
    update_one(
        tx,
        "UPDATE wabas SET webhook_url = $1, webhook_headers = $2, override_all = $3
         WHERE id = $4",
        &[&url, &headers, &override_all, &waba.get()],
        ("WABA", &waba.to_string()),
    )
    .await?;
    if override_all {
        tx.execute(
            "UPDATE channels SET webhook_url = NULL, webhook_headers = NULL WHERE waba_id = $1",
            &[&waba.get()],
        )
        .await?;
    }
    Ok(())
}

/// Reads a channel's multi webhook (locked), applies `change`, writes it back.
pub async fn change_multi_webhook(
    tx: &Transaction<'_>,
    id: &str,
    change: MultiWebhookChange,
    max_destinations: usize,
) -> Result<MultiWebhook, StoreError> {
    let row = tx
        .query_opt(
            "SELECT multi_webhook FROM channels WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    let Some(row) = row else {
        return Err(StoreError::NotFound {
            what: "channel",
            id: id.to_owned(),
        });
    };
    let stored: String = row.try_get(0)?;
    let next = decode_multi_webhook(&stored)?.apply(change, max_destinations)?;
    tx.execute(
        "UPDATE channels SET multi_webhook = $1 WHERE id = $2",
        &[&columns::encode(&next)?, &id],
    )
    .await?;
    Ok(next)
}

/// Reads the one partner matched by `condition` (a SQL condition on `$1`), if any.
pub async fn find_partner(
    tx: &Transaction<'_>,
    condition: &str,
    value: &str,
) -> Result<Option<PartnerRecord>, StoreError> {
    let sql = format!(
        "SELECT id, name, webhook_url, webhook_headers, signing_secret FROM partners
         WHERE {condition}"
    );
    let Some(row) = tx.query_opt(&sql, &[&value]).await? else {
        return Ok(None);
    };
    let headers: Option<String> = row.try_get(3)?;
    Ok(Some(PartnerRecord {
        partner: Partner {
            id: PartnerId::from_raw(row.try_get::<_, String>(0)?),
            name: row.try_get(1)?,
        },
        webhook_url: row
            .try_get::<_, Option<String>>(2)?
            .map(crate::domain::WebhookUrl::from_stored),
        webhook_headers: decode_headers(headers.as_deref())?,
        signing_secret: row.try_get(4)?,
    }))
}

/// The partner owning a WABA, if the WABA exists.
pub async fn waba_route(
    tx: &Transaction<'_>,
    waba: WabaId,
) -> Result<Option<WabaRoute>, StoreError> {
    let row = tx
        .query_opt(
            "SELECT partner_id, webhook_url, webhook_headers, signing_secret
             FROM wabas WHERE id = $1",
            &[&waba.get()],
        )
        .await?;
    row.map(|row| {
        columns::waba_route_from_columns((
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        ))
    })
    .transpose()
}
