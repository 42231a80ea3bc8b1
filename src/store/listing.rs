//! The read side of provisioning: partners, WABAs and channels as operators list them.
//!
//! Both backends run the same SQL, built here once: the filters of a list are a rule (which
//! rows a page holds, how the phone search becomes an index range), and a rule lives in one
//! place. Every list is keyset-paged on its primary key (`id > after ORDER BY id LIMIT n`),
//! so a page costs an index range, never an `OFFSET` walk. The phone search is a range on
//! the unique index of `channels.phone_number` for each spelling a number may be stored in
//! (`+4915…` and `4915…`), with an exact prefix check beside it so the answer does not
//! depend on the database's collation.

use crate::domain::{
    Channel, PartnerId, PhonePrefix, Route, WabaId, WabaWebhook, WebhookHeaders, WebhookUrl,
};
use crate::domain::{ChannelId, Partner};

/// Which partners to list: those with an id after `after`, at most `limit`.
#[derive(Debug, Clone)]
pub struct PartnerFilter {
    /// Only this partner (the single view runs the same query).
    pub only: Option<PartnerId>,
    /// The cursor: the last id of the previous page.
    pub after: Option<PartnerId>,
    /// Page size.
    pub limit: usize,
}

/// A partner as lists show it: its configuration and how many WABAs it owns.
#[derive(Debug, Clone)]
pub struct PartnerListing {
    /// Id and name.
    pub partner: Partner,
    /// When it was created (ms since the epoch).
    pub created_at: i64,
    /// Where partner events go, if set.
    pub webhook_url: Option<WebhookUrl>,
    /// Headers sent with partner events.
    pub webhook_headers: WebhookHeaders,
    /// Whether partner events are signed.
    pub signing: bool,
    /// How many WABAs it owns.
    pub wabas: u64,
}

/// Which WABAs to list.
#[derive(Debug, Clone)]
pub struct WabaFilter {
    /// Only this WABA (the single view runs the same query).
    pub only: Option<WabaId>,
    /// Only those of this partner.
    pub partner: Option<PartnerId>,
    /// The cursor: the last id of the previous page.
    pub after: Option<WabaId>,
    /// Page size.
    pub limit: usize,
}

/// A WABA as lists show it: owner, webhook and how many numbers it has.
#[derive(Debug, Clone)]
pub struct WabaListing {
    /// Meta's id.
    pub waba_id: WabaId,
    /// Its owner.
    pub partner_id: PartnerId,
    /// When it was created (ms since the epoch).
    pub created_at: i64,
    /// The WABA webhook, if set.
    pub webhook: Option<WabaWebhook>,
    /// Whether its WABA-level notifications are signed.
    pub signing: bool,
    /// How many channels it has.
    pub channels: u64,
}

/// Which channels to list.
#[derive(Debug, Clone)]
pub struct ChannelFilter {
    /// Only those of this partner's WABAs.
    pub partner: Option<PartnerId>,
    /// Only those of this WABA.
    pub waba: Option<WabaId>,
    /// Only numbers that start with these digits.
    pub phone: Option<PhonePrefix>,
    /// The cursor: the last id of the previous page.
    pub after: Option<ChannelId>,
    /// Page size.
    pub limit: usize,
}

/// A channel as lists show it: the channel, its owner, its route now and whether it signs.
#[derive(Debug, Clone)]
pub struct ChannelListing {
    /// The channel and its configuration.
    pub channel: Channel,
    /// The partner that owns its WABA.
    pub partner_id: PartnerId,
    /// Where a notification would go now.
    pub route: Route,
    /// Whether its deliveries are signed.
    pub signing: bool,
}

/// A value bound to a placeholder of a listing query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    /// A text column's value.
    Text(String),
    /// An integer column's value.
    Int(i64),
}

/// How a backend spells its `n`-th placeholder (from 1): `?1` or `$1`.
pub type Placeholder = fn(usize) -> String;

/// A listing query ready to run: the SQL and the values of its placeholders, in order.
#[derive(Debug, Clone)]
pub struct ListingQuery {
    /// The statement.
    pub sql: String,
    /// The value of each placeholder.
    pub values: Vec<SqlValue>,
}

/// Collects `WHERE` conditions and their values, numbering placeholders as it goes.
struct Conditions {
    parts: Vec<String>,
    values: Vec<SqlValue>,
    mark: Placeholder,
}

impl Conditions {
    fn new(mark: Placeholder) -> Self {
        Self {
            parts: Vec::new(),
            values: Vec::new(),
            mark,
        }
    }

    /// The placeholder for `value`, bound in order.
    fn bind(&mut self, value: SqlValue) -> String {
        self.values.push(value);
        (self.mark)(self.values.len())
    }

    /// Adds `column op value`.
    fn push(&mut self, column: &str, op: &str, value: SqlValue) {
        let mark = self.bind(value);
        self.parts.push(format!("{column} {op} {mark}"));
    }

    /// The query `select WHERE … ORDER BY order LIMIT limit`.
    fn finish(mut self, select: &str, order: &str, limit: usize) -> ListingQuery {
        let condition = if self.parts.is_empty() {
            "1 = 1".to_owned()
        } else {
            self.parts.join(" AND ")
        };
        let limit = self.bind(SqlValue::Int(limit as i64));
        ListingQuery {
            sql: format!("{select} WHERE {condition} ORDER BY {order} LIMIT {limit}"),
            values: self.values,
        }
    }
}

/// The columns of a partner listing, in the order the backends decode them.
const PARTNER_SELECT: &str = "SELECT p.id, p.name, p.webhook_url, p.webhook_headers, \
     p.signing_secret IS NOT NULL, p.created_at, \
     (SELECT COUNT(*) FROM wabas w WHERE w.partner_id = p.id) FROM partners p";

/// The query of a page of partners.
pub fn partners_query(filter: &PartnerFilter, mark: Placeholder) -> ListingQuery {
    let mut conditions = Conditions::new(mark);
    if let Some(id) = &filter.only {
        conditions.push("p.id", "=", SqlValue::Text(id.to_string()));
    }
    if let Some(after) = &filter.after {
        conditions.push("p.id", ">", SqlValue::Text(after.to_string()));
    }
    conditions.finish(PARTNER_SELECT, "p.id", filter.limit)
}

/// The columns of a WABA listing, in the order the backends decode them.
const WABA_SELECT: &str = "SELECT w.id, w.partner_id, w.created_at, w.webhook_url, \
     w.webhook_headers, w.override_all, w.signing_secret IS NOT NULL, \
     (SELECT COUNT(*) FROM channels c WHERE c.waba_id = w.id) FROM wabas w";

/// The query of a page of WABAs.
pub fn wabas_query(filter: &WabaFilter, mark: Placeholder) -> ListingQuery {
    let mut conditions = Conditions::new(mark);
    if let Some(id) = filter.only {
        conditions.push("w.id", "=", SqlValue::Int(id.get()));
    }
    if let Some(partner) = &filter.partner {
        conditions.push("w.partner_id", "=", SqlValue::Text(partner.to_string()));
    }
    if let Some(after) = filter.after {
        conditions.push("w.id", ">", SqlValue::Int(after.get()));
    }
    conditions.finish(WABA_SELECT, "w.id", filter.limit)
}

/// The columns of a channel listing, in the order the backends decode them: the channel's
/// own columns first (as `CHANNEL_COLUMNS`), then its owner, its WABA's webhook and signing.
const CHANNEL_SELECT: &str = "SELECT c.id, c.waba_id, c.phone_number, c.phone_number_id, \
     c.webhook_url, c.webhook_headers, c.multi_webhook, c.ordered, \
     w.partner_id, w.webhook_url, w.webhook_headers, w.override_all, \
     c.signing_secret IS NOT NULL \
     FROM channels c JOIN wabas w ON w.id = c.waba_id";

/// The query of a page of channels.
pub fn channels_query(filter: &ChannelFilter, mark: Placeholder) -> ListingQuery {
    let mut conditions = Conditions::new(mark);
    if let Some(partner) = &filter.partner {
        conditions.push("w.partner_id", "=", SqlValue::Text(partner.to_string()));
    }
    if let Some(waba) = filter.waba {
        conditions.push("c.waba_id", "=", SqlValue::Int(waba.get()));
    }
    if let Some(prefix) = &filter.phone {
        let spellings = [format!("+{}", prefix.digits()), prefix.digits().to_owned()];
        let ranges: Vec<String> = spellings
            .iter()
            .map(|start| prefix_range(&mut conditions, start))
            .collect();
        conditions.parts.push(format!("({})", ranges.join(" OR ")));
    }
    if let Some(after) = &filter.after {
        conditions.push("c.id", ">", SqlValue::Text(after.to_string()));
    }
    conditions.finish(CHANNEL_SELECT, "c.id", filter.limit)
}

/// `phone_number >= start AND phone_number < end` (an index range) and the exact check
/// that the number starts with `start`, whatever the collation says about `+`.
fn prefix_range(conditions: &mut Conditions, start: &str) -> String {
    let low = conditions.bind(SqlValue::Text(start.to_owned()));
    let mut range = format!("c.phone_number >= {low}");
    if let Some(end) = prefix_end(start) {
        let high = conditions.bind(SqlValue::Text(end));
        range.push_str(&format!(" AND c.phone_number < {high}"));
    }
    let exact = conditions.bind(SqlValue::Text(start.to_owned()));
    let length = start.len();
    format!("({range} AND substr(c.phone_number, 1, {length}) = {exact})")
}

/// The smallest digit string above every string that starts with `prefix`: its last digit
/// below 9 raised by one, the 9s after it dropped (`+4919` → `+492`); `None` when every
/// digit is 9 (the range is then open above, and the exact check bounds it).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last.is_ascii_digit() && last < b'9' {
            bytes.push(last + 1);
            return String::from_utf8(bytes).ok();
        }
        if !last.is_ascii_digit() {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(n: usize) -> String {
        format!("?{n}")
    }

    #[test]
    fn a_prefix_ends_at_its_next_digit_string() {
        assert_eq!(prefix_end("+4915").as_deref(), Some("+4916"));
        assert_eq!(prefix_end("4919").as_deref(), Some("492"));
        assert_eq!(prefix_end("+99"), None);
        assert_eq!(prefix_end("9"), None);
    }

    #[test]
    fn the_phone_search_is_two_index_ranges_with_an_exact_check() {
        let filter = ChannelFilter {
            partner: None,
            waba: None,
            phone: Some(PhonePrefix::parse("+4915").unwrap()),
            after: None,
            limit: 2,
        };
        let query = channels_query(&filter, question);
        assert!(query.sql.contains(
            "(c.phone_number >= ?1 AND c.phone_number < ?2 AND substr(c.phone_number, 1, 5) = ?3)"
        ));
        assert!(query.sql.ends_with("ORDER BY c.id LIMIT ?7"));
        assert_eq!(query.values[0], SqlValue::Text("+4915".into()));
        assert_eq!(query.values[4], SqlValue::Text("4916".into()));
        assert!(!query.sql.contains("LIKE"));
    }

    #[test]
    fn pages_are_keyset_on_the_primary_key() {
        let filter = WabaFilter {
            only: None,
            partner: Some(PartnerId::from_raw("p1")),
            after: Some(WabaId::new(7).unwrap()),
            limit: 5,
        };
        let query = wabas_query(&filter, question);
        assert!(query
            .sql
            .ends_with("WHERE w.partner_id = ?1 AND w.id > ?2 ORDER BY w.id LIMIT ?3"));
        assert!(!query.sql.contains("OFFSET"));
    }
}
