//! Several nodes on one PostgreSQL database: configuration written on one node routes the
//! deliveries of every other at once (their caches are emptied by `NOTIFY`), the due work
//! is split between nodes, each delivery claimed by one of them, and a node whose lease
//! expired cannot undo what the node that claimed the delivery next did.

use std::time::Duration;

use serde_json::json;
use switchboard::config::DatabaseUrl;

use crate::helpers::{delivery, fast_delivery, is_in_state, metric_sum, spawn_app_with};
use crate::proxy::PgProxy;
use crate::receiver::{Behavior, TestReceiver};

/// Waits until the node has no pending delivery (20 s deadline).
async fn nothing_pending(app: &crate::helpers::TestApp) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pending: serde_json::Value = app
            .admin(reqwest::Method::GET, "/admin/deliveries?state=pending")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if pending["deliveries"] == json!([]) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still pending: {pending}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn message(id: &str) -> serde_json::Value {
    json!({"messages": [{"from": "4917600000000", "id": id, "type": "text", "text": {"body": "hi"}}]})
}

#[tokio::test]
async fn a_webhook_set_on_one_node_routes_the_next_event_on_another() {
    let first = spawn_app_with(fast_delivery).await;
    let second = first.another_node().await;
    let number = first.provision().await;
    // The second node caches "no route" for the channel...
    let dropped = second
        .post_event(&number.channel_id, message("wamid.n1"))
        .await;
    second
        .wait_for_event(dropped, |e| is_in_state(e, "primary", "dropped"))
        .await;
    // ...then the first node sets a webhook; the second must route to it right away.
    let receiver = TestReceiver::start().await;
    first
        .set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let routed = second
        .post_event(&number.channel_id, message("wamid.n2"))
        .await;
    second
        .wait_for_event(routed, |e| is_in_state(e, "primary", "delivered"))
        .await;
    assert_eq!(receiver.wait_for(1).await.len(), 1);
}

#[tokio::test]
async fn nodes_split_a_backlog_and_deliver_each_event_once() {
    let first = spawn_app_with(fast_delivery).await;
    let number = first.provision().await;
    let receiver = TestReceiver::start().await;
    // A backlog waits in the store while the webhook points nowhere reachable...
    first
        .set_webhook(&number.api_key, "http://127.0.0.1:9/closed", json!({}))
        .await;
    let mut events = Vec::new();
    for i in 0..40 {
        let id = format!("wamid.b{i}");
        events.push(first.post_event(&number.channel_id, message(&id)).await);
    }
    // ...then two more nodes join, the URL is fixed, and all three drain it by polling.
    let second = first.another_node().await;
    let third = first.another_node().await;
    first
        .set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    for event in &events {
        first
            .wait_for_event(*event, |e| is_in_state(e, "primary", "delivered"))
            .await;
    }
    let received = receiver.wait_for(events.len()).await;
    let mut ids: Vec<String> = received
        .iter()
        .filter_map(|r| {
            r.json()["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "every event arrived");
    assert_eq!(before, ids.len(), "no event was claimed by two nodes");
    drop((second, third));
}

#[tokio::test]
async fn a_starting_node_leaves_the_leases_of_running_nodes_alone() {
    let first = spawn_app_with(fast_delivery).await;
    let number = first.provision().await;
    // Attempts that take a while: the first node holds their leases meanwhile...
    let delay = std::time::Duration::from_millis(400);
    let receiver = TestReceiver::with_default(Behavior::Delay(delay, 200)).await;
    first
        .set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let mut events = Vec::new();
    for i in 0..5 {
        let id = format!("wamid.l{i}");
        events.push(first.post_event(&number.channel_id, message(&id)).await);
    }
    // ...and a node starting now must not take them back (only its own previous run's).
    let second = first.another_node().await;
    for event in &events {
        first
            .wait_for_event(*event, |e| is_in_state(e, "primary", "delivered"))
            .await;
    }
    tokio::time::sleep(2 * delay).await;
    assert_eq!(
        receiver.received().len(),
        events.len(),
        "each event sent once"
    );
    drop(second);
}

#[tokio::test]
async fn a_node_whose_lease_expired_cannot_overwrite_another_nodes_delivered() {
    // Short leases, renewed every 200 ms while held; a receiver slow to answer the first try.
    let lease = |config: &mut switchboard::config::Config| {
        fast_delivery(config);
        config.delivery_timeout = Duration::from_secs(5);
        config.delivery_lease = Duration::from_millis(600);
    };
    let other = spawn_app_with(lease).await;
    let number = other.provision().await;
    // The channel's `channel_created` partner event is finished before the stalled node
    // starts, so the only lease it can lose is the message's.
    nothing_pending(&other).await;
    let proxy = PgProxy::start(&other.database_url()).await;
    let stalled = other
        .another_node_with(|config| {
            config.database = DatabaseUrl::parse(&proxy.url).expect("proxied URL");
        })
        .await;
    let receiver = TestReceiver::start().await;
    let slow = Duration::from_secs(3);
    receiver.script([Behavior::Delay(slow, 500)]);
    other
        .set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    // The node starts the attempt, then its database stalls for longer than its lease...
    let event = stalled
        .post_event(&number.channel_id, message("wamid.expired"))
        .await;
    receiver.wait_for(1).await;
    proxy.pause();
    // ...so its lease expires, the other node claims the delivery and delivers it...
    other
        .wait_for_event(event, |e| is_in_state(e, "primary", "delivered"))
        .await;
    proxy.resume();
    // ...and the first node's late 500 must change nothing: no `pending` over `delivered`,
    // so no third send (a retry would come within 200 ms).
    let first_answered = receiver.received()[0].at + slow;
    tokio::time::sleep_until((first_answered + Duration::from_secs(1)).into()).await;
    let sent = receiver.received();
    assert_eq!(
        sent.len(),
        2,
        "sent by the first node, then once by the other"
    );
    assert_eq!((sent[0].answered, sent[1].answered), (500, 200));
    let stored = other.event(event).await;
    let primary = delivery(&stored, "primary");
    assert_eq!(primary["state"], "delivered", "{stored:#}");
    assert_eq!(
        primary["attempts"], 1,
        "only the other node's attempt: {stored:#}"
    );
    let lost = metric_sum(
        &stalled.metrics().await,
        "switchboard_leases_lost_total",
        &[],
    );
    assert_eq!(lost, 1, "the first node counted its lost lease once");
}
