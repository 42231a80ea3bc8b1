//! Nothing acknowledged is lost: `kill -9` the server mid-stream, restart it on the same
//! database, and every acknowledged event is delivered (duplicates allowed, losses not).
//! Also: a graceful stop lets an in-flight attempt finish and record its outcome.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::cli::start_binary;
use crate::helpers::{
    delivery, fast_delivery, is_in_state, provision_over_http, spawn_app_with, ADMIN_TOKEN,
};
use crate::receiver::{Behavior, TestReceiver};

fn start_server(database: &str) -> (crate::cli::Server, String) {
    let retries = ["--retry-base-ms", "50", "--retry-max-delay-ms", "200"];
    start_binary(database, &retries, |_| {})
}

#[tokio::test]
async fn kill_9_mid_stream_loses_no_acknowledged_event() {
    let data = tempfile::tempdir().unwrap();
    let database = crate::helpers::fresh_database_url(data.path());
    let (mut server, base) = start_server(&database);
    let client = reqwest::Client::new();
    let channel = provision_over_http(&client, &base).await;
    // Until the kill, the receiver fails everything: every acknowledged event is then still
    // owed a delivery (in flight, leased in memory, or waiting for its retry) at the kill.
    let receiver = TestReceiver::with_default(Behavior::Delay(Duration::from_millis(2), 503)).await;
    let response = client
        .post(format!("{base}/v1/configs/webhook"))
        .header("D360-API-KEY", channel["api_key"].as_str().unwrap())
        .json(&json!({"url": receiver.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let events_url = format!(
        "{base}/admin/channels/{}/events",
        channel["id"].as_str().unwrap()
    );
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..16 {
        let (client, url, acknowledged) = (
            client.clone(),
            events_url.clone(),
            Arc::clone(&acknowledged),
        );
        senders.spawn(async move {
            for n in 0..2_000 {
                let id = format!("wamid.{sender}.{n}");
                let body = json!({"messages": [{"id": id, "type": "text", "text": {"body": "x"}}]});
                match client
                    .post(&url)
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(response) if response.status() == StatusCode::ACCEPTED => {
                        acknowledged.lock().unwrap().push(id);
                    }
                    _ => return,
                }
            }
        });
    }
    // Generous: on a loaded machine (parallel builds) PostgreSQL may take long to reach 1,500.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while acknowledged.lock().unwrap().len() < 1_500 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().unwrap(); // SIGKILL: no shutdown code runs.
    server.wait().unwrap();
    senders.join_all().await;
    let acknowledged: HashSet<String> = acknowledged.lock().unwrap().iter().cloned().collect();
    assert!(
        acknowledged.len() >= 1_000,
        "the stream was cut too early: {}",
        acknowledged.len()
    );
    assert!(
        !receiver.received().is_empty(),
        "deliveries were being attempted at the kill"
    );
    receiver.set_default(Behavior::Status(200));

    let (mut restarted, _) = start_server(&database);
    // Thousands of retries of a debug build: slow on a loaded machine, never wrong.
    receiver
        .wait_until_within(Duration::from_secs(90), |_| {
            acknowledged.is_subset(&receiver.delivered_wamids())
        })
        .await;
    let _ = restarted.kill();
    let _ = restarted.wait();
}

#[tokio::test]
async fn a_graceful_stop_finishes_the_attempt_in_flight() {
    let app = spawn_app_with(fast_delivery).await;
    let number = app.provision().await;
    let receiver =
        TestReceiver::with_default(Behavior::Delay(Duration::from_millis(300), 200)).await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let event_id = app
        .post_event(&number.channel_id, json!({"messages": [{"id": "wamid.g"}]}))
        .await;
    receiver.wait_for(1).await;

    let app = app.restart().await;
    let event = app.event(event_id).await;
    assert!(is_in_state(&event, "primary", "delivered"), "{event:#}");
    assert_eq!(delivery(&event, "primary")["attempts"], 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "not sent again after the restart"
    );
    let response = app
        .admin(Method::GET, "/admin/deliveries?state=pending")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap()["deliveries"],
        json!([])
    );
}

#[tokio::test]
async fn a_stop_abandons_an_attempt_that_outlasts_the_grace_period_and_it_is_made_again() {
    let app = spawn_app_with(|config| {
        fast_delivery(config);
        config.delivery_timeout = Duration::from_secs(30);
        config.http.shutdown_grace = Duration::from_millis(300);
    })
    .await;
    let number = app.provision().await;
    let receiver = TestReceiver::with_default(Behavior::Delay(Duration::from_secs(60), 200)).await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let event_id = app
        .post_event(&number.channel_id, json!({"messages": [{"id": "wamid.s"}]}))
        .await;
    receiver.wait_for(1).await;

    // The attempt would take a minute: the stop does not wait for it.
    receiver.set_default(Behavior::Status(200));
    let app = tokio::time::timeout(Duration::from_secs(10), app.restart())
        .await
        .expect("the stop outlasted its grace period");
    let event = app
        .wait_for_event(event_id, |e| is_in_state(e, "primary", "delivered"))
        .await;
    assert_eq!(delivery(&event, "primary")["attempts"], 1, "{event:#}");
    assert_eq!(receiver.received().len(), 2, "made again after the restart");
}
