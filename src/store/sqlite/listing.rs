//! SQL of the provisioning lists on SQLite: runs the queries `store::listing` builds and
//! decodes their rows.

use rusqlite::types::Value;
use rusqlite::{Connection, Row};

use crate::domain::{
    Channel, ChannelId, Partner, PartnerId, PhoneNumber, PhoneNumberId, Route, WebhookUrl,
};
use crate::store::columns::{
    decode_headers, decode_multi_webhook, stored_waba_id, waba_webhook_from_columns,
    webhook_from_columns,
};
use crate::store::listing::{channels_query, partners_query, wabas_query, ListingQuery, SqlValue};
use crate::store::{
    ChannelFilter, ChannelListing, PartnerFilter, PartnerListing, StoreError, WabaFilter,
    WabaListing,
};

/// SQLite's numbered placeholder.
fn question(n: usize) -> String {
    format!("?{n}")
}

/// Runs `query`, decoding each row with `decode`.
fn run<T>(
    conn: &Connection,
    query: ListingQuery,
    decode: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let values: Vec<Value> = query
        .values
        .into_iter()
        .map(|value| match value {
            SqlValue::Text(text) => Value::Text(text),
            SqlValue::Int(int) => Value::Integer(int),
        })
        .collect();
    let mut statement = conn.prepare(&query.sql)?;
    let mut rows = statement.query(rusqlite::params_from_iter(values))?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        found.push(decode(row)?);
    }
    Ok(found)
}

/// A page of partners.
pub fn partners(
    conn: &Connection,
    filter: &PartnerFilter,
) -> Result<Vec<PartnerListing>, StoreError> {
    run(conn, partners_query(filter, question), |row| {
        let headers: Option<String> = row.get(3)?;
        Ok(PartnerListing {
            partner: Partner {
                id: PartnerId::from_raw(row.get::<_, String>(0)?),
                name: row.get(1)?,
            },
            webhook_url: row
                .get::<_, Option<String>>(2)?
                .map(WebhookUrl::from_stored),
            webhook_headers: decode_headers(headers.as_deref())?,
            signing: row.get(4)?,
            created_at: row.get(5)?,
            wabas: row.get::<_, i64>(6)?.max(0) as u64,
        })
    })
}

/// A page of WABAs.
pub fn wabas(conn: &Connection, filter: &WabaFilter) -> Result<Vec<WabaListing>, StoreError> {
    run(conn, wabas_query(filter, question), |row| {
        Ok(WabaListing {
            waba_id: stored_waba_id(row.get(0)?)?,
            partner_id: PartnerId::from_raw(row.get::<_, String>(1)?),
            created_at: row.get(2)?,
            webhook: waba_webhook_from_columns(row.get(3)?, row.get(4)?, row.get(5)?)?,
            signing: row.get(6)?,
            channels: row.get::<_, i64>(7)?.max(0) as u64,
        })
    })
}

/// A page of channels, each with its owner and route.
pub fn channels(
    conn: &Connection,
    filter: &ChannelFilter,
) -> Result<Vec<ChannelListing>, StoreError> {
    run(conn, channels_query(filter, question), |row| {
        let multi: String = row.get(6)?;
        let webhook = webhook_from_columns(row.get(4)?, row.get(5)?)?;
        let waba_webhook = waba_webhook_from_columns(row.get(9)?, row.get(10)?, row.get(11)?)?;
        Ok(ChannelListing {
            channel: Channel {
                id: ChannelId::from_raw(row.get::<_, String>(0)?),
                waba_id: stored_waba_id(row.get(1)?)?,
                phone_number: PhoneNumber::from_stored(row.get(2)?),
                phone_number_id: PhoneNumberId::from_stored(row.get(3)?),
                webhook: webhook.clone(),
                multi_webhook: decode_multi_webhook(&multi)?,
                ordered: row.get(7)?,
            },
            partner_id: PartnerId::from_raw(row.get::<_, String>(8)?),
            route: Route::resolve(webhook, waba_webhook),
            signing: row.get(12)?,
        })
    })
}
