//! Stale routing: a node caches routing and relies on its `LISTEN` connection to hear of
//! other nodes' configuration writes. When that connection dies, or its backend stalls (it
//! answers nothing, so no notification arrives either), the node must notice within
//! seconds and read routing uncached, so a webhook changed on another node is used.
//!
//! "Stalled" is staged by stopping the listener's backend process (`SIGSTOP`; the test
//! run's cluster is a local process of ours), "dead" by `pg_terminate_backend`.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_postgres::NoTls;

use crate::helpers::{fast_delivery, is_in_state, metric_sum, spawn_app_with, TestApp};
use crate::receiver::TestReceiver;

fn message(id: &str) -> Value {
    json!({"messages": [{"from": "4917600000000", "id": id, "type": "text", "text": {"body": "hi"}}]})
}

/// The backend pid of the only configuration listener connected to `app`'s database.
async fn listener_backend(app: &TestApp) -> i32 {
    let (client, connection) = tokio_postgres::connect(&app.database_url(), NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND (application_name LIKE '% listener' OR query LIKE 'LISTEN %')",
            &[],
        )
        .await
        .expect("pg_stat_activity");
    assert_eq!(rows.len(), 1, "one listener, the first node's");
    rows[0].get(0)
}

/// Sends `signal` to a process; as root or as the cluster's owner we may.
fn signal(pid: i32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// Lets a stopped backend run again when the test ends, however it ends.
struct Continue(i32);

impl Drop for Continue {
    fn drop(&mut self) {
        signal(self.0, "-CONT");
    }
}

/// Posts events to `node` until one reaches `receiver`; returns how long that took.
async fn first_routed_to(node: &TestApp, channel: &str, receiver: &TestReceiver) -> Duration {
    let started = Instant::now();
    for n in 0.. {
        let event = node
            .post_event(channel, message(&format!("wamid.r{n}")))
            .await;
        node.wait_for_event(event, |e| is_in_state(e, "primary", "delivered"))
            .await;
        if !receiver.received().is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "after 10 s the node still routes by its stale cache"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    started.elapsed()
}

/// Two nodes, the first of which has cached the channel's route to `old`.
struct Cluster {
    first: TestApp,
    second: TestApp,
    /// The backend pid of the first node's listener.
    listener: i32,
    key: String,
    channel: String,
}

async fn cached_on_first_node(old: &TestReceiver) -> Cluster {
    let first = spawn_app_with(fast_delivery).await;
    let listener = listener_backend(&first).await;
    let number = first.provision().await;
    first
        .set_webhook(&number.api_key, &old.url, json!({}))
        .await;
    let cached = first
        .post_event(&number.channel_id, message("wamid.cached"))
        .await;
    first
        .wait_for_event(cached, |e| is_in_state(e, "primary", "delivered"))
        .await;
    Cluster {
        second: first.another_node().await,
        first,
        listener,
        key: number.api_key,
        channel: number.channel_id,
    }
}

#[tokio::test]
async fn a_stalled_listener_is_found_and_routing_bypasses_the_cache() {
    let (old, new) = (TestReceiver::start().await, TestReceiver::start().await);
    let nodes = cached_on_first_node(&old).await;
    signal(nodes.listener, "-STOP");
    let _continue = Continue(nodes.listener);
    nodes
        .second
        .set_webhook(&nodes.key, &new.url, json!({}))
        .await;
    let took = first_routed_to(&nodes.first, &nodes.channel, &new).await;
    eprintln!("stalled listener: first event at the new URL {took:?} after the change");
    // Found stalled, bypassed, then replaced by a new connection.
    let up = |text: &str| metric_sum(text, "switchboard_config_listener_up", &[]);
    nodes.first.wait_for_metrics(|text| up(text) == 1).await;
}

#[tokio::test]
async fn a_dead_listener_is_replaced_and_routing_bypasses_the_cache_meanwhile() {
    let (old, new) = (TestReceiver::start().await, TestReceiver::start().await);
    let nodes = cached_on_first_node(&old).await;
    let (client, connection) = tokio_postgres::connect(&nodes.first.database_url(), NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .execute("SELECT pg_terminate_backend($1)", &[&nodes.listener])
        .await
        .expect("terminate");
    nodes
        .second
        .set_webhook(&nodes.key, &new.url, json!({}))
        .await;
    let took = first_routed_to(&nodes.first, &nodes.channel, &new).await;
    eprintln!("dead listener: first event at the new URL {took:?} after the change");
}
