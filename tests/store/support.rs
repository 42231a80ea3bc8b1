//! What every conformance test starts from: a store of either backend, opened through the
//! public `store::open`, and builders for the values the `Store` trait takes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard::config::DatabaseUrl;
use switchboard::domain::{
    ChannelId, Destination, DestinationName, EventKind, KeyHash, Partner, PartnerId, PhoneNumber,
    PhoneNumberId, UrlPolicy, WabaId, Webhook, WebhookHeaders, WebhookUrl,
};
use switchboard::store::{
    AttemptRecord, DueDelivery, EventBody, NewChannel, NewEvent, Outcome, SavedEvent, Settled,
    Settlement, Store,
};

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store under test, and what it takes to open another store on the same database.
pub struct Db {
    pub store: Arc<dyn Store>,
    pub backend: Backend,
    url: DatabaseUrl,
    /// The SQLite file's directory, deleted when the last handle is dropped.
    dir: Option<Arc<tempfile::TempDir>>,
}

/// The node id of the first store of a test.
pub const NODE: &str = "conformance-a";

impl Db {
    /// A store on a new SQLite file in a temp directory.
    pub async fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = DatabaseUrl::parse(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .expect("sqlite url");
        let store = switchboard::store::open(&url, NODE)
            .await
            .expect("open sqlite");
        Db {
            store,
            backend: Backend::Sqlite,
            url,
            dir: Some(Arc::new(dir)),
        }
    }

    /// A store on a fresh database of the test run's PostgreSQL cluster; `None` (with a
    /// note) only where PostgreSQL is not installed.
    pub async fn postgres() -> Option<Db> {
        if !crate::postgres::postgres_installed() {
            eprintln!("PostgreSQL is not installed: the postgres conformance test is skipped");
            return None;
        }
        let raw = tokio::task::spawn_blocking(crate::postgres::postgres_database)
            .await
            .expect("create database");
        let url = DatabaseUrl::parse(&raw).expect("postgres url");
        let store = switchboard::store::open(&url, NODE)
            .await
            .expect("open postgres");
        Some(Db {
            store,
            backend: Backend::Postgres,
            url,
            dir: None,
        })
    }

    /// The SQLite file, for tests that look at its pages.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => Some(path.clone()),
            DatabaseUrl::Postgres(_) => None,
        }
    }

    /// The rows of `table` whose reference `column` names no row of `parent`: on
    /// PostgreSQL the hot path's references are not foreign keys (ARCHITECTURE, *Storage*),
    /// so a test that deletes says nothing was left dangling.
    pub async fn dangling(&self, table: &str, column: &str, parent: &str) -> i64 {
        self.count(&format!(
            "SELECT count(*) FROM {table} c WHERE c.{column} IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.id = c.{column})"
        ))
        .await
    }

    /// The integer `sql` selects, asked of the database itself on a connection of its own.
    pub async fn count(&self, sql: &str) -> i64 {
        match &self.url {
            DatabaseUrl::Sqlite(path) => rusqlite::Connection::open(path)
                .unwrap()
                .query_row(sql, [], |row| row.get(0))
                .unwrap(),
            DatabaseUrl::Postgres(url) => {
                let (client, connection) =
                    tokio_postgres::connect(url.expose(), tokio_postgres::NoTls)
                        .await
                        .unwrap();
                tokio::spawn(connection);
                client.query_one(sql, &[]).await.unwrap().get(0)
            }
        }
    }

    /// A handle that keeps the database's files until it is dropped: a test body that
    /// moves only `db.store` into its future lets the rest of `db` go at once.
    pub fn files(&self) -> Option<Arc<tempfile::TempDir>> {
        self.dir.clone()
    }

    /// Another store on the same database, its leases named `node` (another node on
    /// PostgreSQL). Only for PostgreSQL: one SQLite file has one writing process.
    pub async fn another_node(&self, node: &str) -> Arc<dyn Store> {
        assert_eq!(
            self.backend,
            Backend::Postgres,
            "one SQLite file, one store"
        );
        switchboard::store::open(&self.url, node)
            .await
            .expect("open a second node")
    }
}

/// Runs a conformance test on both backends: `conformance!(name, |db: Db| async move {…})`
/// expands into the tests `name::sqlite` and `name::postgres`.
macro_rules! conformance {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::support::Db::sqlite().await;
                let _files = db.files();
                ($body)(db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::support::Db::postgres().await {
                    ($body)(db).await;
                }
            }
        }
    };
}
pub(crate) use conformance;

/// Now, in ms since the epoch.
pub fn now() -> i64 {
    switchboard::clock::now_ms()
}

/// A partner with id `p_<n>`.
pub fn partner(n: u32) -> Partner {
    Partner {
        id: PartnerId::from_raw(format!("p_{n}")),
        name: format!("Partner {n}"),
    }
}

/// The hash of the key `key`.
pub fn key(key: &str) -> KeyHash {
    KeyHash::of(key)
}

/// WABA `n`.
pub fn waba(n: i64) -> WabaId {
    WabaId::new(n).expect("positive WABA id")
}

/// Channel `c_<n>` of `waba`: number `+49151000<n>`, Meta id `10<n>`, key `key-c<n>`.
pub fn new_channel(waba: WabaId, n: u32) -> NewChannel {
    NewChannel {
        id: ChannelId::from_raw(format!("c_{n}")),
        waba_id: waba,
        phone_number: PhoneNumber::parse(&format!("+49151{n:06}")).expect("number"),
        phone_number_id: PhoneNumberId::parse(&format!("10{n}")).expect("Meta id"),
        key_hash: key(&format!("key-c{n}")),
    }
}

/// Partner 1 with WABA 1 and its channel 1, provisioned; returns the channel's id.
pub async fn provisioned(store: &dyn Store) -> ChannelId {
    store
        .create_partner(partner(1), key("key-p1"))
        .await
        .expect("partner");
    store
        .create_waba(&partner(1).id, waba(1))
        .await
        .expect("WABA");
    let channel = new_channel(waba(1), 1);
    let id = channel.id.clone();
    store
        .create_channel(channel, Vec::new())
        .await
        .expect("channel");
    id
}

/// A checked URL.
pub fn url(raw: &str) -> WebhookUrl {
    WebhookUrl::parse(raw, UrlPolicy::default()).expect("valid URL")
}

/// Checked headers.
pub fn headers(pairs: &[(&str, &str)]) -> WebhookHeaders {
    let raw: BTreeMap<String, String> = pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    WebhookHeaders::parse(raw).expect("valid headers")
}

/// A webhook to `raw` with one header.
pub fn hook(raw: &str) -> Webhook {
    Webhook {
        url: url(raw),
        headers: headers(&[("X-Test", raw)]),
    }
}

/// An extra destination `name` at `raw`.
pub fn destination(name: &str, raw: &str) -> Destination {
    Destination {
        name: DestinationName::parse(name).expect("name"),
        url: url(raw),
        headers: WebhookHeaders::default(),
    }
}

/// A destination name.
pub fn name(raw: &str) -> DestinationName {
    DestinationName::parse(raw).expect("name")
}

/// A WhatsApp event for `channel` with body `{"n":<n>}`, received at `at`.
pub fn whatsapp(channel: &ChannelId, n: usize, at: i64) -> NewEvent {
    NewEvent {
        kind: EventKind::Whatsapp,
        channel: Some(channel.clone()),
        partner: None,
        phone_number_id: None,
        waba: None,
        body: EventBody::Bytes(Bytes::from(format!("{{\"n\":{n}}}"))),
        received_at: at,
        trace: None,
    }
}

/// An event for a phone_number_id no channel has (stored, never delivered).
pub fn unroutable(n: usize, at: i64) -> NewEvent {
    NewEvent {
        kind: EventKind::Unroutable,
        channel: None,
        partner: None,
        phone_number_id: Some(format!("999{n}")),
        waba: None,
        body: EventBody::Bytes(Bytes::from(format!("{{\"u\":{n}}}"))),
        received_at: at,
        trace: None,
    }
}

/// Stores `events` unleased; returns what was saved.
pub async fn save(store: &dyn Store, events: Vec<NewEvent>) -> Vec<SavedEvent> {
    store.save_events(events, None).await.expect("save events")
}

/// Claims every due delivery now, leased for a minute.
pub async fn claim_all(store: &dyn Store) -> Vec<DueDelivery> {
    let now = now();
    store
        .claim_due(now, 1000, usize::MAX, now + 60_000)
        .await
        .expect("claim")
}

/// An attempt to `url` that got `status`.
pub fn attempt(url: &str, number: u32, status: u16) -> AttemptRecord {
    AttemptRecord {
        number,
        started_at: now(),
        duration_ms: 12,
        url: url.to_owned(),
        status: Some(status),
        error: None,
        response_excerpt: Some(format!("answer {status}")),
        retry_after_ms: None,
    }
}

/// The outcome of attempting `due` with `attempt`, settled as `settlement`.
pub fn outcome(
    due: &DueDelivery,
    attempt: Option<AttemptRecord>,
    settlement: Settlement,
) -> Outcome {
    Outcome {
        delivery: due.id,
        channel: due.channel.clone(),
        lease: due.lease,
        attempt,
        settlement,
    }
}

/// Settles and expects it recorded; returns the extras and the attempt id.
pub async fn settle_recorded(store: &dyn Store, outcome: Outcome) -> Settled {
    let settled = store.settle(outcome).await.expect("settle");
    assert!(
        matches!(settled, Settled::Recorded { .. }),
        "recorded: {settled:?}"
    );
    settled
}

/// Polls `check` until it holds, for at most 30 s (a loaded machine is slow, never wrong).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "not within 30 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
