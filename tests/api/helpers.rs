//! `spawn_app()`: starts Switchboard on `127.0.0.1:0` with a fresh temp database and returns
//! typed helpers for provisioning and calling it.

use std::sync::Arc;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use switchboard::config::{Config, DatabaseUrl};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    config: Config,
    data: Arc<TempDir>,
    shutdown: CancellationToken,
    server: JoinHandle<()>,
}

/// A provisioned partner → WABA → channel, with the channel's D360-API-KEY.
pub struct Provisioned {
    pub waba_id: i64,
    pub channel_id: String,
    pub phone_number: String,
    pub api_key: String,
}

/// Which database a test binary runs the suite against (its `main.rs` names it in
/// `crate::BACKEND`), so one suite checks that both backends behave the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the test's temp dir.
    Sqlite,
    /// A fresh database in the test run's throwaway PostgreSQL cluster.
    Postgres,
}

/// A fresh database of this binary's backend, as a `--database` URL; SQLite files go in
/// `dir`.
pub fn fresh_database_url(dir: &std::path::Path) -> String {
    match crate::BACKEND {
        Backend::Sqlite => format!("sqlite://{}", dir.join("switchboard.db").display()),
        Backend::Postgres => crate::postgres::postgres_database(),
    }
}

/// Starts a server with the default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server after `adjust` changed its settings (e.g. `dev = true`).
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    init_test_log();
    let data = Arc::new(tempfile::tempdir().expect("temp dir"));
    let database = DatabaseUrl::parse(&fresh_database_url(data.path())).expect("test database URL");
    let mut config = Config::new(database, ADMIN_TOKEN);
    adjust(&mut config);
    start(config, data).await
}

async fn start(config: Config, data: Arc<TempDir>) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let (config, shutdown) = (config.clone(), shutdown.clone());
        async move {
            switchboard::run(config, listener, shutdown)
                .await
                .expect("server failed");
        }
    });
    let app = TestApp {
        base,
        client: reqwest::Client::new(),
        config,
        data,
        shutdown,
        server,
    };
    app.wait_until_healthy().await;
    app
}

fn init_test_log() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_test_writer()
            .try_init();
    }
}

impl TestApp {
    async fn wait_until_healthy(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Ok(response) = self.client.get(self.url("/health")).send().await {
                if response.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server never became healthy"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Stops the server and starts a new one on the same database file.
    pub async fn restart(self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    /// Like [`TestApp::restart`], with settings changed by `adjust`.
    pub async fn restart_with(self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let (mut config, data) = (self.config.clone(), Arc::clone(&self.data));
        adjust(&mut config);
        self.stop().await;
        start(config, data).await
    }

    /// A second server on the same database, as another node of a cluster (PostgreSQL).
    #[allow(dead_code)] // only the PostgreSQL binary (tests/postgres) runs several nodes
    pub async fn another_node(&self) -> TestApp {
        self.another_node_with(|_| {}).await
    }

    /// Like [`TestApp::another_node`], with settings changed by `adjust` (e.g. its database
    /// URL pointed through a proxy).
    #[allow(dead_code)] // only the PostgreSQL binary (tests/postgres) runs several nodes
    pub async fn another_node_with(&self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        static NODES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let mut config = self.config.clone();
        let n = NODES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        config.node_id = format!("{}-node{n}", self.config.node_id);
        adjust(&mut config);
        start(config, Arc::clone(&self.data)).await
    }

    /// The `--database` URL this server runs on.
    pub fn database_url(&self) -> String {
        match &self.config.database {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => url.expose().to_owned(),
        }
    }

    /// This server's node id.
    #[allow(dead_code)] // used by the PostgreSQL binary's own tests
    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// Runs `statement` on this server's database behind its back, as another process
    /// (another node, an operator) would; for tests that stage what the server must cope with.
    pub async fn execute_sql(&self, statement: &str) {
        match &self.config.database {
            DatabaseUrl::Sqlite(path) => {
                let (path, statement) = (path.clone(), statement.to_owned());
                tokio::task::spawn_blocking(move || {
                    let conn = rusqlite::Connection::open(path).expect("open the database");
                    conn.busy_timeout(std::time::Duration::from_secs(5))
                        .expect("busy timeout");
                    conn.execute_batch(&statement).expect("statement");
                })
                .await
                .expect("blocking task");
            }
            DatabaseUrl::Postgres(url) => {
                let (client, connection) =
                    tokio_postgres::connect(url.expose(), tokio_postgres::NoTls)
                        .await
                        .expect("connect");
                tokio::spawn(connection);
                client.batch_execute(statement).await.expect("statement");
            }
        }
    }

    /// The single number `query` selects, read straight from this server's database.
    pub async fn query_number(&self, query: &str) -> i64 {
        match &self.config.database {
            DatabaseUrl::Sqlite(path) => {
                let (path, query) = (path.clone(), query.to_owned());
                tokio::task::spawn_blocking(move || {
                    let conn = rusqlite::Connection::open(path).expect("open the database");
                    conn.query_row(&query, [], |row| row.get(0)).expect("query")
                })
                .await
                .expect("blocking task")
            }
            DatabaseUrl::Postgres(url) => {
                let (client, connection) =
                    tokio_postgres::connect(url.expose(), tokio_postgres::NoTls)
                        .await
                        .expect("connect");
                tokio::spawn(connection);
                let row = client.query_one(query, &[]).await.expect("query");
                row.get(0)
            }
        }
    }

    /// Stops the server gracefully and waits until it has.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.expect("server task");
    }

    /// The SQLite file of this app.
    pub fn database_path(&self) -> std::path::PathBuf {
        self.data.path().join("switchboard.db")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request authenticated with the admin token.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN)
    }

    /// A Messaging API request authenticated with `api_key`.
    pub fn messaging(&self, method: Method, path: &str, api_key: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("D360-API-KEY", api_key)
    }

    pub async fn create_partner(&self, name: &str) -> Value {
        let response = self
            .admin(Method::POST, "/admin/partners")
            .json(&json!({ "name": name }))
            .send()
            .await
            .expect("request");
        expect_json(response, StatusCode::CREATED).await
    }

    pub async fn create_waba(&self, partner_id: &str, waba_id: Option<i64>) -> i64 {
        let body = waba_id.map_or(json!({}), |id| json!({ "waba_id": id }));
        let response = self
            .admin(Method::POST, &format!("/admin/partners/{partner_id}/wabas"))
            .json(&body)
            .send()
            .await
            .expect("request");
        expect_json(response, StatusCode::CREATED).await["waba_id"]
            .as_i64()
            .expect("waba_id")
    }

    pub async fn create_channel(&self, waba_id: i64, phone_number: &str) -> Value {
        let response = self
            .admin(Method::POST, &format!("/admin/wabas/{waba_id}/channels"))
            .json(&json!({ "phone_number": phone_number }))
            .send()
            .await
            .expect("request");
        expect_json(response, StatusCode::CREATED).await
    }

    /// One partner, one WABA, one channel.
    pub async fn provision(&self) -> Provisioned {
        let partner = self.create_partner("Acme").await;
        let partner_id = partner["id"].as_str().expect("id").to_owned();
        let waba_id = self.create_waba(&partner_id, None).await;
        let channel = self.create_channel(waba_id, &unique_phone_number()).await;
        Provisioned {
            waba_id,
            channel_id: channel["id"].as_str().expect("id").to_owned(),
            phone_number: channel["phone_number"].as_str().expect("number").to_owned(),
            api_key: channel["api_key"].as_str().expect("key").to_owned(),
        }
    }

    /// Sends `body` (raw JSON text) and returns status and parsed answer.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        api_key: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let response = self
            .messaging(method, path, api_key)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request");
        status_and_json(response).await
    }

    /// Sends `body` as JSON and returns status and parsed answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        api_key: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        self.send_raw(method, path, api_key, &body.to_string())
            .await
    }

    /// GETs a Messaging API path.
    pub async fn get(&self, path: &str, api_key: &str) -> (StatusCode, Value) {
        let response = self
            .messaging(Method::GET, path, api_key)
            .send()
            .await
            .expect("request");
        status_and_json(response).await
    }

    /// The channel as the admin API shows it, with its resolved route.
    pub async fn admin_channel(&self, channel_id: &str) -> Value {
        let response = self
            .admin(Method::GET, &format!("/admin/channels/{channel_id}"))
            .send()
            .await
            .expect("request");
        expect_json(response, StatusCode::OK).await
    }
}

impl TestApp {
    /// Injects a notification `value` (or envelope) for a channel; returns the event id.
    pub async fn post_event(&self, channel_id: &str, value: Value) -> i64 {
        let response = self
            .admin(
                Method::POST,
                &format!("/admin/channels/{channel_id}/events"),
            )
            .json(&value)
            .send()
            .await
            .expect("request");
        expect_json(response, StatusCode::ACCEPTED).await["event_id"]
            .as_i64()
            .expect("event_id")
    }

    /// The event with its deliveries and attempts.
    pub async fn event(&self, event_id: i64) -> Value {
        let response = self
            .admin(Method::GET, &format!("/admin/events/{event_id}"))
            .send()
            .await
            .expect("request");
        expect_json(response, StatusCode::OK).await
    }

    /// Polls the event until `done` holds (20 s deadline) and returns it.
    pub async fn wait_for_event(&self, event_id: i64, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let event = self.event(event_id).await;
            if done(&event) {
                return event;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "event never got there: {event:#}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Polls `/metrics` until `done` holds (20 s deadline) and returns that scrape.
    pub async fn wait_for_metrics(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let text = self.metrics().await;
            if done(&text) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "metrics never got there:\n{text}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Sets the phone-number webhook of the number that owns `api_key`.
    pub async fn set_webhook(&self, api_key: &str, url: &str, headers: Value) {
        let body = json!({"url": url, "headers": headers});
        let answer = self
            .send(Method::POST, "/v1/configs/webhook", api_key, body)
            .await;
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("body")
    }
}

/// POSTs `body` to `url` with the admin token and returns the (successful) answer; for
/// servers a test runs as a child process, which have no `TestApp`.
pub async fn admin_post(client: &reqwest::Client, url: String, body: Value) -> Value {
    let response = client
        .post(url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("admin request");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("JSON answer")
}

/// Provisions a partner, a WABA and a channel on the server at `base` over HTTP; returns the
/// channel as created (its `id` and `api_key`).
pub async fn provision_over_http(client: &reqwest::Client, base: &str) -> Value {
    let partner = admin_post(
        client,
        format!("{base}/admin/partners"),
        json!({"name": "P"}),
    )
    .await;
    let partner_id = partner["id"].as_str().expect("partner id");
    let waba = admin_post(
        client,
        format!("{base}/admin/partners/{partner_id}/wabas"),
        json!({}),
    )
    .await;
    admin_post(
        client,
        format!("{base}/admin/wabas/{}/channels", waba["waba_id"]),
        json!({"phone_number": unique_phone_number()}),
    )
    .await
}

/// Settings for delivery tests: loopback receivers, short timeouts and retries.
pub fn fast_delivery(config: &mut Config) {
    config.dev = true;
    config.delivery_timeout = std::time::Duration::from_millis(500);
    config.retry_base = std::time::Duration::from_millis(50);
    config.retry_max_delay = std::time::Duration::from_millis(200);
}

/// The state of the event's delivery to `target` (`primary`, `extra:<name>`).
pub fn delivery<'a>(event: &'a Value, target: &str) -> &'a Value {
    event["deliveries"]
        .as_array()
        .and_then(|all| all.iter().find(|d| d["target"] == target))
        .unwrap_or_else(|| panic!("no {target} delivery in {event:#}"))
}

/// Whether the event's delivery to `target` is in `state`.
pub fn is_in_state(event: &Value, target: &str, state: &str) -> bool {
    event["deliveries"].as_array().is_some_and(|all| {
        all.iter()
            .any(|d| d["target"] == target && d["state"] == state)
    })
}

/// The sum of a Prometheus family's samples whose labels include every `(name, value)`.
pub fn metric_sum(text: &str, family: &str, labels: &[(&str, &str)]) -> u64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let rest = series.strip_prefix(family)?;
            let labels_of_line = match rest {
                "" => "",
                _ => rest.strip_prefix('{')?.strip_suffix('}')?,
            };
            let matches = labels.iter().all(|(k, v)| {
                labels_of_line
                    .split(',')
                    .any(|l| l == format!("{k}=\"{v}\""))
            });
            matches.then(|| value.parse::<u64>().ok()).flatten()
        })
        .sum()
}

/// A phone number no other test uses.
pub fn unique_phone_number() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "+49151{:07}",
        NEXT.fetch_add(1, Ordering::Relaxed) + u64::from(std::process::id() % 1000) * 10_000
    )
}

pub async fn status_and_json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body");
    assert!(
        content_type.starts_with("application/json"),
        "{status}: expected JSON, got {content_type:?}: {text}"
    );
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: {e}: {text}"));
    (status, value)
}

pub async fn expect_json(response: Response, expected: StatusCode) -> Value {
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, expected, "{body}");
    body
}

/// Asserts a Messaging API error: `status` and `{"error": message}`.
pub fn assert_error(answer: &(StatusCode, Value), status: StatusCode, message: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1, json!({ "error": message }));
}

/// Asserts a 400 whose error message contains every one of `parts`.
pub fn assert_bad_request(answer: &(StatusCode, Value), parts: &[&str]) {
    assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{}", answer.1);
    let message = answer.1["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", answer.1));
    for part in parts {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
}
