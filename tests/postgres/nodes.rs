//! Several nodes on one PostgreSQL database: configuration written on one node routes the
//! deliveries of every other at once (their caches are emptied by `NOTIFY`), and the due
//! work is split between nodes, each delivery claimed by one of them.

use serde_json::json;

use crate::helpers::{fast_delivery, is_in_state, spawn_app_with};
use crate::receiver::{Behavior, TestReceiver};

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
