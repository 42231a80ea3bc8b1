//! A node settles only what it still holds: when another claim takes a delivery's lease over
//! (the lease expired, and another node, or this node's own poller, claimed it again), the
//! old holder drops the delivery from memory without sending it if it is still waiting, and
//! its outcome is refused if it was in flight; either way the delivery's state is the new
//! holder's. The takeover is staged in SQL, as another node's claim would write it.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{
    delivery, fast_delivery, is_in_state, metric_sum, spawn_app_with, Backend, TestApp,
};
use crate::receiver::{Behavior, TestReceiver};

fn message(id: &str) -> serde_json::Value {
    json!({"messages": [{"from": "4917600000000", "id": id, "type": "text", "text": {"body": "hi"}}]})
}

/// The id of the event's primary delivery.
async fn primary_delivery(app: &TestApp, event: i64) -> i64 {
    delivery(&app.event(event).await, "primary")["id"]
        .as_i64()
        .expect("delivery id")
}

/// Writes what another node's claim of `delivery` writes (a new lease generation, its own
/// name), then `and_set` (e.g. the state it settled).
async fn another_node_takes(app: &TestApp, delivery: i64, and_set: &str) {
    let owner = match crate::BACKEND {
        Backend::Postgres => ", leased_by = 'another-node'",
        Backend::Sqlite => "",
    };
    app.execute_sql(&format!(
        "UPDATE deliveries SET lease_token = lease_token + 1{owner}, {and_set} WHERE id = {delivery}"
    ))
    .await;
}

fn leases_lost(metrics: &str) -> u64 {
    metric_sum(metrics, "switchboard_leases_lost_total", &[])
}

#[tokio::test]
async fn a_delivery_waiting_for_its_destination_is_dropped_unsent_when_its_lease_is_lost() {
    let app = spawn_app_with(|config| {
        fast_delivery(config);
        config.delivery_timeout = Duration::from_secs(5);
        config.delivery_lease = Duration::from_millis(600);
        config.max_in_flight_per_destination = 1;
    })
    .await;
    let number = app.provision().await;
    let slow = Duration::from_secs(2);
    let receiver = TestReceiver::with_default(Behavior::Delay(slow, 200)).await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    // The first event holds the destination's only slot; the second waits in memory...
    let first = app
        .post_event(&number.channel_id, message("wamid.first"))
        .await;
    receiver.wait_for(1).await;
    let second = app
        .post_event(&number.channel_id, message("wamid.second"))
        .await;
    // ...when another node takes its lease over. The next renewal finds it lost.
    let far = switchboard::clock::now_ms() + 3_600_000;
    let taken = format!("next_attempt_at = {far}, leased_until = {far}");
    another_node_takes(&app, primary_delivery(&app, second).await, &taken).await;
    app.wait_for_event(first, |e| is_in_state(e, "primary", "delivered"))
        .await;
    // The slot is free now: a delivery still held would be sent at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent: Vec<_> = receiver.received().iter().map(|r| r.json()).collect();
    assert_eq!(sent.len(), 1, "only the first event was sent: {sent:#?}");
    let waiting = app.event(second).await;
    assert_eq!(delivery(&waiting, "primary")["attempts"], 0, "{waiting:#}");
    assert!(is_in_state(&waiting, "primary", "pending"), "{waiting:#}");
    assert_eq!(leases_lost(&app.metrics().await), 1);
}

#[tokio::test]
async fn an_outcome_under_a_lost_lease_changes_nothing() {
    // The default lease (5 min): no renewal runs during the test, so only the settle itself
    // can notice that the lease is gone.
    let app = spawn_app_with(|config| {
        fast_delivery(config);
        config.delivery_timeout = Duration::from_secs(5);
    })
    .await;
    let number = app.provision().await;
    let receiver = TestReceiver::start().await;
    receiver.script([Behavior::Delay(Duration::from_millis(1_500), 500)]);
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let event = app
        .post_event(&number.channel_id, message("wamid.taken"))
        .await;
    receiver.wait_for(1).await;
    // While the attempt is in flight, another node (whose claim came after this node's
    // lease expired) delivers the event.
    let delivered = "state = 'delivered', attempts = 1, leased_until = NULL";
    another_node_takes(&app, primary_delivery(&app, event).await, delivered).await;
    // This node's attempt then fails (500): it must not turn `delivered` back into
    // `pending`, which would send the event again.
    app.wait_for_metrics(|text| leases_lost(text) == 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1, "the event was not sent again");
    let stored = app.event(event).await;
    let primary = delivery(&stored, "primary");
    assert_eq!(primary["state"], "delivered", "{stored:#}");
    assert_eq!(primary["attempts"], 1, "{stored:#}");
    assert_eq!(
        primary["attempt_log"].as_array().map(Vec::len),
        Some(0),
        "the refused outcome recorded no attempt: {stored:#}"
    );
}
