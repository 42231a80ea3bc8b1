//! SQL of the provisioning lists on PostgreSQL: runs the queries `store::listing` builds and
//! decodes their rows.

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::Param;
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

/// PostgreSQL's numbered placeholder.
fn dollar(n: usize) -> String {
    format!("${n}")
}

/// Runs `query`, decoding each row with `decode`.
async fn run<T>(
    tx: &Transaction<'_>,
    query: ListingQuery,
    decode: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let params: Vec<&Param<'_>> = query
        .values
        .iter()
        .map(|value| match value {
            SqlValue::Text(text) => text as &Param<'_>,
            SqlValue::Int(int) => int as &Param<'_>,
        })
        .collect();
    let rows = tx.query(&query.sql, &params).await?;
    rows.iter().map(decode).collect()
}

/// A page of partners.
pub async fn partners(
    tx: &Transaction<'_>,
    filter: &PartnerFilter,
) -> Result<Vec<PartnerListing>, StoreError> {
    run(tx, partners_query(filter, dollar), |row| {
        let headers: Option<String> = row.try_get(3)?;
        Ok(PartnerListing {
            partner: Partner {
                id: PartnerId::from_raw(row.try_get::<_, String>(0)?),
                name: row.try_get(1)?,
            },
            webhook_url: row
                .try_get::<_, Option<String>>(2)?
                .map(WebhookUrl::from_stored),
            webhook_headers: decode_headers(headers.as_deref())?,
            signing: row.try_get(4)?,
            created_at: row.try_get(5)?,
            wabas: row.try_get::<_, i64>(6)?.max(0) as u64,
        })
    })
    .await
}

/// A page of WABAs.
pub async fn wabas(
    tx: &Transaction<'_>,
    filter: &WabaFilter,
) -> Result<Vec<WabaListing>, StoreError> {
    run(tx, wabas_query(filter, dollar), |row| {
        Ok(WabaListing {
            waba_id: stored_waba_id(row.try_get(0)?)?,
            partner_id: PartnerId::from_raw(row.try_get::<_, String>(1)?),
            created_at: row.try_get(2)?,
            webhook: waba_webhook_from_columns(row.try_get(3)?, row.try_get(4)?, row.try_get(5)?)?,
            signing: row.try_get(6)?,
            channels: row.try_get::<_, i64>(7)?.max(0) as u64,
        })
    })
    .await
}

/// A page of channels, each with its owner and route.
pub async fn channels(
    tx: &Transaction<'_>,
    filter: &ChannelFilter,
) -> Result<Vec<ChannelListing>, StoreError> {
    run(tx, channels_query(filter, dollar), |row| {
        let multi: String = row.try_get(6)?;
        let webhook = webhook_from_columns(row.try_get(4)?, row.try_get(5)?)?;
        let waba_webhook =
            waba_webhook_from_columns(row.try_get(9)?, row.try_get(10)?, row.try_get(11)?)?;
        Ok(ChannelListing {
            channel: Channel {
                id: ChannelId::from_raw(row.try_get::<_, String>(0)?),
                waba_id: stored_waba_id(row.try_get(1)?)?,
                phone_number: PhoneNumber::from_stored(row.try_get(2)?),
                phone_number_id: PhoneNumberId::from_stored(row.try_get(3)?),
                webhook: webhook.clone(),
                multi_webhook: decode_multi_webhook(&multi)?,
                ordered: row.try_get(7)?,
            },
            partner_id: PartnerId::from_raw(row.try_get::<_, String>(8)?),
            route: Route::resolve(webhook, waba_webhook),
            signing: row.try_get(12)?,
        })
    })
    .await
}
