//! Conversions between SQLite rows and domain types (the column decoders both backends
//! share are in `store::columns`).

use rusqlite::{Connection, OptionalExtension, Row};

use crate::domain::{
    Channel, ChannelId, Partner, PartnerId, PhoneNumber, PhoneNumberId, Route, WebhookUrl,
};
use crate::store::columns::{
    decode_headers, decode_multi_webhook, stored_waba_id, waba_webhook_from_columns,
    webhook_from_columns,
};
use crate::store::{PartnerRecord, Routing, StoreError};

/// The columns [`channel_from_row`] reads, in its order.
pub const CHANNEL_COLUMNS: &str =
    "id, waba_id, phone_number, phone_number_id, webhook_url, webhook_headers, multi_webhook, \
     ordered";

/// Reads the one channel matched by `condition` (a SQL condition on `?1`), if any.
pub fn find_channel(
    conn: &Connection,
    condition: &str,
    value: &str,
) -> Result<Option<Channel>, StoreError> {
    let sql = format!("SELECT {CHANNEL_COLUMNS} FROM channels WHERE {condition}");
    let raw = conn
        .query_row(&sql, [value], RawChannel::from_row)
        .optional()?;
    raw.map(RawChannel::into_channel).transpose()
}

/// A channel row before its JSON columns are decoded.
struct RawChannel {
    id: String,
    waba_id: i64,
    phone_number: String,
    phone_number_id: String,
    webhook_url: Option<String>,
    webhook_headers: Option<String>,
    multi_webhook: String,
    ordered: bool,
}

impl RawChannel {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            waba_id: row.get(1)?,
            phone_number: row.get(2)?,
            phone_number_id: row.get(3)?,
            webhook_url: row.get(4)?,
            webhook_headers: row.get(5)?,
            multi_webhook: row.get(6)?,
            ordered: row.get(7)?,
        })
    }

    fn into_channel(self) -> Result<Channel, StoreError> {
        Ok(Channel {
            id: ChannelId::from_raw(self.id),
            waba_id: stored_waba_id(self.waba_id)?,
            phone_number: PhoneNumber::from_stored(self.phone_number),
            phone_number_id: PhoneNumberId::from_stored(self.phone_number_id),
            webhook: webhook_from_columns(self.webhook_url, self.webhook_headers)?,
            multi_webhook: decode_multi_webhook(&self.multi_webhook)?,
            ordered: self.ordered,
        })
    }
}

/// Loads a channel's routing inputs in one query.
pub fn load_routing(conn: &Connection, id: &ChannelId) -> Result<Option<Routing>, StoreError> {
    let columns = conn
        .query_row(
            "SELECT c.webhook_url, c.webhook_headers, w.webhook_url, w.webhook_headers,
                    w.override_all, c.multi_webhook, c.signing_secret
             FROM channels c JOIN wabas w ON w.id = c.waba_id WHERE c.id = ?1",
            [id.as_str()],
            |row| {
                Ok((
                    (row.get(0)?, row.get(1)?),
                    (row.get(2)?, row.get(3)?, row.get(4)?),
                    row.get::<_, String>(5)?,
                    row.get(6)?,
                ))
            },
        )
        .optional()?;
    let Some(((phone_url, phone_headers), (waba_url, waba_headers, override_all), multi, secret)) =
        columns
    else {
        return Ok(None);
    };
    Ok(Some(Routing {
        route: Route::resolve(
            webhook_from_columns(phone_url, phone_headers)?,
            waba_webhook_from_columns(waba_url, waba_headers, override_all)?,
        ),
        multi_webhook: decode_multi_webhook(&multi)?,
        signing_secret: secret,
    }))
}

/// Reads the one partner matched by `condition` (a SQL condition on `?1`), if any.
pub fn find_partner(
    conn: &Connection,
    condition: &str,
    value: &str,
) -> Result<Option<PartnerRecord>, StoreError> {
    let sql = format!(
        "SELECT id, name, webhook_url, webhook_headers, signing_secret FROM partners WHERE {condition}"
    );
    let row = conn
        .query_row(&sql, [value], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, Option<String>>(4)?,
            ))
        })
        .optional()?;
    let Some((id, name, url, headers, secret)) = row else {
        return Ok(None);
    };
    Ok(Some(PartnerRecord {
        partner: Partner {
            id: PartnerId::from_raw(id),
            name,
        },
        webhook_url: url.map(WebhookUrl::from_stored),
        webhook_headers: decode_headers(headers.as_deref())?,
        signing_secret: secret,
    }))
}

impl crate::store::decode::StoredRow for rusqlite::Row<'_> {
    fn int(&self, index: usize) -> Result<i64, StoreError> {
        Ok(self.get(index)?)
    }
    fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(index)?)
    }
    fn text(&self, index: usize) -> Result<String, StoreError> {
        Ok(self.get(index)?)
    }
    fn opt_text(&self, index: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(index)?)
    }
    fn opt_flag(&self, index: usize) -> Result<Option<bool>, StoreError> {
        Ok(self.get(index)?)
    }
}
