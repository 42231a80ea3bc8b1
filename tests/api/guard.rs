//! The address guard cannot be bypassed: deliveries ignore proxies named by the environment,
//! and `--dev` opens loopback only, not the other internal addresses.
//!
//! Every packet of these tests goes to 127.0.0.1 (or to this host's own unspecified address,
//! which the kernel connects to locally): a refused address is refused before sending.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::start_binary;
use crate::helpers::{
    delivery, fast_delivery, is_in_state, provision_over_http, spawn_app_with, ADMIN_TOKEN,
};
use crate::receiver::TestReceiver;

/// The proxy variables an HTTP client may read, in both spellings.
const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// A "proxy" on loopback that only records whether anyone connected to it.
async fn fake_proxy() -> (String, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connected = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&connected);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen.store(true, Ordering::SeqCst);
            drop(stream);
        }
    });
    (url, connected)
}

/// The real binary with `--dev`, every proxy variable pointing at `proxy` and no exemption.
fn start_server_behind(proxy: &str, database: &str) -> (crate::cli::Server, String) {
    start_binary(database, &[], |command| {
        for name in PROXY_VARIABLES {
            command.env(name, proxy);
        }
        command.env_remove("NO_PROXY").env_remove("no_proxy");
    })
}

async fn post(client: &reqwest::Client, url: String, key: Option<&str>, body: Value) -> Value {
    let request = client.post(url).json(&body);
    let request = match key {
        Some(key) => request.header("D360-API-KEY", key),
        None => request.bearer_auth(ADMIN_TOKEN),
    };
    let response = request.send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

#[tokio::test]
async fn deliveries_ignore_a_proxy_in_the_environment() {
    let (proxy, proxy_connected) = fake_proxy().await;
    let data = tempfile::tempdir().unwrap();
    let database = crate::helpers::fresh_database_url(data.path());
    let (mut server, base) = start_server_behind(&proxy, &database);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let channel = provision_over_http(&client, &base).await;
    let receiver = TestReceiver::start().await;
    let webhook = format!("{base}/v1/configs/webhook");
    let key = channel["api_key"].as_str();
    post(&client, webhook, key, json!({"url": receiver.url})).await;

    let events = format!(
        "{base}/admin/channels/{}/events",
        channel["id"].as_str().unwrap()
    );
    post(
        &client,
        events,
        None,
        json!({"messages": [{"id": "wamid.proxy"}]}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while receiver.received().is_empty()
        && !proxy_connected.load(Ordering::SeqCst)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        !proxy_connected.load(Ordering::SeqCst),
        "a delivery went through the environment's proxy"
    );
    assert_eq!(receiver.received().len(), 1, "delivered directly");
}

#[tokio::test]
async fn dev_mode_refuses_internal_addresses_other_than_loopback() {
    let app = spawn_app_with(|config| {
        fast_delivery(config);
        config.retry_max_age = Duration::from_millis(300);
    })
    .await;
    let number = app.provision().await;
    // The unspecified addresses are the classic way round a loopback-only rule: connecting to
    // them reaches this host. A refused literal is refused before any packet is sent.
    for url in [
        "https://0.0.0.0/hook",
        "https://[::]/hook",
        "https://[::ffff:0.0.0.0]/hook",
    ] {
        app.set_webhook(&number.api_key, url, json!({})).await;
        let event_id = app
            .post_event(
                &number.channel_id,
                json!({"messages": [{"id": "wamid.dev"}]}),
            )
            .await;
        let event = app
            .wait_for_event(event_id, |e| is_in_state(e, "primary", "failed"))
            .await;
        let log = &delivery(&event, "primary")["attempt_log"];
        assert_eq!(log[0]["error"], "blocked", "{url}: {event:#}");
    }
    // Loopback itself stays open in dev mode, by literal and by name (the name is resolved
    // on the delivery DNS threads and its loopback addresses pass the guard).
    let receiver = TestReceiver::start().await;
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    for url in [&receiver.url, &by_name] {
        app.set_webhook(&number.api_key, url, json!({})).await;
        let message = json!({"messages": [{"id": "wamid.ok"}]});
        let event_id = app.post_event(&number.channel_id, message).await;
        app.wait_for_event(event_id, |e| is_in_state(e, "primary", "delivered"))
            .await;
    }
    assert_eq!(receiver.received().len(), 2);
}
