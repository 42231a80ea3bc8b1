//! Ordered delivery with several nodes on one PostgreSQL database: the store's rule keeps a
//! channel's notifications in order, one in flight across the nodes, whichever node
//! acknowledged them and whichever claims them.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{fast_delivery, is_in_state, spawn_app_with};
use crate::ordering::{delivered_in_order, expected, message, post_ordering};
use crate::receiver::{Behavior, TestReceiver};

#[tokio::test]
async fn two_nodes_deliver_an_ordered_channel_in_order_one_at_a_time() {
    let first = spawn_app_with(fast_delivery).await;
    let second = first.another_node().await;
    let receiver =
        TestReceiver::with_default(Behavior::Delay(Duration::from_millis(10), 200)).await;
    // The first event fails a few times: the others wait behind it on both nodes.
    receiver.script([Behavior::Status(500); 3]);
    let number = first.provision().await;
    first
        .set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let on = post_ordering(&first, &number.channel_id, r#"{"ordered": true}"#).await;
    assert_eq!(on.0, StatusCode::OK, "{}", on.1);

    let mut events = Vec::new();
    for n in 0..10 {
        let node = if n % 2 == 0 { &first } else { &second };
        let id = format!("wamid.p{n}");
        events.push(node.post_event(&number.channel_id, message(&id)).await);
    }
    for event in &events {
        second
            .wait_for_event(*event, |e| is_in_state(e, "primary", "delivered"))
            .await;
    }
    assert_eq!(delivered_in_order(&receiver), expected("wamid.p", 10));
    assert_eq!(receiver.max_in_flight(), 1, "never two in flight");
}
