//! A group commit whose `COMMIT` fails after the server committed (the connection is cut
//! before the answer arrives): the batch's writes are run again alone, and that re-run must
//! not store an event twice, create its delivery twice, record an attempt twice or create
//! extra deliveries twice, nor leave the extras it created waiting out their lease.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchboard::config::DatabaseUrl;

use crate::helpers::{delivery, expect_json, fast_delivery, is_in_state, spawn_app_with, TestApp};
use crate::proxy::PgProxy;
use crate::receiver::TestReceiver;

fn message(id: &str) -> Value {
    json!({"messages": [{"from": "4917600000000", "id": id, "type": "text", "text": {"body": "hi"}}]})
}

/// A node whose database connections all go through `proxy`, beside `first`.
async fn behind(first: &TestApp, proxy: &PgProxy) -> TestApp {
    first
        .another_node_with(|config| {
            config.database = DatabaseUrl::parse(&proxy.url).expect("proxied URL");
        })
        .await
}

/// Every WhatsApp event stored, as listed by the admin API.
async fn whatsapp_events(app: &TestApp) -> Vec<Value> {
    let response = app
        .admin(Method::GET, "/admin/events?kind=whatsapp&limit=100")
        .send()
        .await
        .expect("request");
    let page = expect_json(response, StatusCode::OK).await;
    page["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn an_event_whose_commit_answer_was_lost_is_stored_and_sent_once() {
    let first = spawn_app_with(fast_delivery).await;
    let proxy = PgProxy::start(&first.database_url()).await;
    let node = behind(&first, &proxy).await;
    let number = first.provision().await;
    let receiver = TestReceiver::start().await;
    first
        .set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    proxy.cut_after_commit_of("INSERT INTO events");
    let event = node
        .post_event(&number.channel_id, message("wamid.ambiguous"))
        .await;
    assert_eq!(proxy.cuts(), 1, "the commit's answer was cut");
    node.wait_for_event(event, |e| is_in_state(e, "primary", "delivered"))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = whatsapp_events(&first).await;
    assert_eq!(stored.len(), 1, "stored once: {stored:#?}");
    assert_eq!(stored[0]["id"], event);
    let deliveries = node.event(event).await["deliveries"].clone();
    assert_eq!(
        deliveries.as_array().map(Vec::len),
        Some(1),
        "{deliveries:#}"
    );
    assert_eq!(receiver.received().len(), 1, "sent once");
}

#[tokio::test]
async fn a_settle_whose_commit_answer_was_lost_records_once_and_starts_its_extras() {
    let first = spawn_app_with(fast_delivery).await;
    let proxy = PgProxy::start(&first.database_url()).await;
    let node = behind(&first, &proxy).await;
    let number = first.provision().await;
    let (main, crm) = (TestReceiver::start().await, TestReceiver::start().await);
    first
        .set_webhook(&number.api_key, &main.url, json!({}))
        .await;
    let multi = json!({"enabled": true, "destinations": [{"name": "crm", "url": crm.url}]});
    let answer = first
        .send(Method::POST, "/multi_webhook", &number.api_key, multi)
        .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    // The main delivery's 200 is settled, with its extra created leased to the node, and
    // that commit's answer is lost.
    proxy.cut_after_commit_of("INSERT INTO attempts");
    let event = node
        .post_event(&number.channel_id, message("wamid.extras"))
        .await;
    // The extra is started from memory at once: it does not wait out its lease (5 min).
    let done = node
        .wait_for_event(event, |e| is_in_state(e, "extra:crm", "delivered"))
        .await;
    assert_eq!(proxy.cuts(), 1, "the settle's commit answer was cut");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let done = node.event(done["id"].as_i64().expect("id")).await;
    let deliveries = done["deliveries"].as_array().cloned().unwrap_or_default();
    assert_eq!(deliveries.len(), 2, "one main, one extra: {done:#}");
    let primary = delivery(&done, "primary");
    assert_eq!(primary["attempts"], 1, "{done:#}");
    assert_eq!(primary["attempt_log"].as_array().map(Vec::len), Some(1));
    assert_eq!(main.received().len(), 1);
    assert_eq!(crm.received().len(), 1, "the extra was sent once");
}
