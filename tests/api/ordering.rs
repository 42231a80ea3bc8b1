//! Ordered delivery per number (opt-in): while a channel is ordered, its notifications reach
//! the primary destination one at a time, in the order they were acknowledged; a failing one
//! holds back the later ones, which wait in the store (also across `kill -9`). Other channels
//! are not held up.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::cli::start_binary;
use crate::helpers::{
    assert_bad_request, assert_error, delivery, fast_delivery, is_in_state, provision_over_http,
    spawn_app_with, status_and_json, Provisioned, TestApp, ADMIN_TOKEN,
};
use crate::receiver::{Behavior, TestReceiver};

pub fn message(id: &str) -> Value {
    json!({"messages": [{"from": "4917600000000", "id": id, "type": "text", "text": {"body": "hi"}}]})
}

/// The message id of a received notification.
fn message_id(body: &Value) -> String {
    body["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The message ids the receiver answered 200 to, in the order they arrived.
pub fn delivered_in_order(receiver: &TestReceiver) -> Vec<String> {
    receiver
        .received()
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| message_id(&r.json()))
        .collect()
}

/// POST /admin/channels/{id}/ordering with `body`.
#[allow(dead_code)] // used by tests/postgres only
pub async fn post_ordering(app: &TestApp, channel: &str, body: &str) -> (StatusCode, Value) {
    let response = app
        .admin(Method::POST, &format!("/admin/channels/{channel}/ordering"))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    status_and_json(response).await
}

/// A provisioned channel whose webhook is `receiver`, with ordering on.
async fn ordered_channel(app: &TestApp, receiver: &TestReceiver) -> Provisioned {
    let number = app.provision().await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let answer = post_ordering(app, &number.channel_id, r#"{"ordered": true}"#).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    number
}

/// Posts `count` events `{prefix}0…`; returns their ids and message ids, in order.
async fn post_events(app: &TestApp, channel: &str, prefix: &str, count: usize) -> Vec<i64> {
    let mut events = Vec::new();
    for n in 0..count {
        events.push(
            app.post_event(channel, message(&format!("{prefix}{n}")))
                .await,
        );
    }
    events
}

pub fn expected(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}{n}")).collect()
}

#[tokio::test]
async fn a_failing_first_event_holds_back_the_later_ones_which_then_arrive_in_order() {
    let app = spawn_app_with(fast_delivery).await;
    let receiver = TestReceiver::with_default(Behavior::Delay(Duration::from_millis(5), 500)).await;
    let number = ordered_channel(&app, &receiver).await;
    let events = post_events(&app, &number.channel_id, "wamid.o", 5).await;

    // The first is attempted again and again; the others wait in the store, unattempted.
    let failing = receiver.wait_for(3).await;
    assert!(failing.iter().all(|r| message_id(&r.json()) == "wamid.o0"));
    for later in &events[1..] {
        let event = app.event(*later).await;
        let primary = delivery(&event, "primary");
        assert_eq!(primary["state"], "pending", "{event:#}");
        assert_eq!(primary["attempts"], 0, "{event:#}");
    }

    receiver.set_default(Behavior::Delay(Duration::from_millis(5), 200));
    for event in &events {
        app.wait_for_event(*event, |e| is_in_state(e, "primary", "delivered"))
            .await;
    }
    assert_eq!(delivered_in_order(&receiver), expected("wamid.o", 5));
    assert_eq!(receiver.max_in_flight(), 1, "never two in flight");
}

#[tokio::test]
async fn an_ordered_channel_does_not_hold_up_another_channel() {
    let app = spawn_app_with(fast_delivery).await;
    let failing = TestReceiver::with_default(Behavior::Status(500)).await;
    let ordered = ordered_channel(&app, &failing).await;
    let held = post_events(&app, &ordered.channel_id, "wamid.a", 3).await;
    failing.wait_for(1).await;

    let healthy = TestReceiver::start().await;
    let other = app.provision().await;
    app.set_webhook(&other.api_key, &healthy.url, json!({}))
        .await;
    for event in post_events(&app, &other.channel_id, "wamid.b", 5).await {
        app.wait_for_event(event, |e| is_in_state(e, "primary", "delivered"))
            .await;
    }
    // Meanwhile the ordered channel's head still fails, and the rest still wait.
    let head = app.event(held[0]).await;
    assert!(is_in_state(&head, "primary", "pending"), "{head:#}");
    for later in &held[1..] {
        let event = app.event(*later).await;
        assert_eq!(delivery(&event, "primary")["attempts"], 0, "{event:#}");
    }
}

#[tokio::test]
async fn ordering_is_switched_on_and_off_and_off_releases_the_held_ones() {
    let app = spawn_app_with(fast_delivery).await;
    let receiver = TestReceiver::with_default(Behavior::Status(500)).await;
    let number = app.provision().await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let channel = number.channel_id.as_str();
    assert_eq!(app.admin_channel(channel).await["ordered"], false);

    let on = post_ordering(&app, channel, r#"{"ordered": true}"#).await;
    assert_eq!(on.0, StatusCode::OK, "{}", on.1);
    assert_eq!(on.1, json!({"channel_id": channel, "ordered": true}));
    // Idempotent.
    let again = post_ordering(&app, channel, r#"{"ordered": true}"#).await;
    assert_eq!(again.1, json!({"channel_id": channel, "ordered": true}));
    assert_eq!(app.admin_channel(channel).await["ordered"], true);

    let events = post_events(&app, channel, "wamid.s", 3).await;
    receiver.wait_for(2).await;
    for later in &events[1..] {
        assert_eq!(delivery(&app.event(*later).await, "primary")["attempts"], 0);
    }
    let off = post_ordering(&app, channel, r#"{"ordered": false}"#).await;
    assert_eq!(off.1, json!({"channel_id": channel, "ordered": false}));
    assert_eq!(app.admin_channel(channel).await["ordered"], false);
    // The held ones are released: attempted while the first still fails.
    for later in &events[1..] {
        app.wait_for_event(*later, |e| {
            delivery(e, "primary")["attempts"].as_i64() >= Some(1)
        })
        .await;
    }
}

#[tokio::test]
async fn the_ordering_switch_checks_its_body_its_channel_and_the_admin_token() {
    let app = spawn_app_with(fast_delivery).await;
    let number = app.provision().await;
    let channel = number.channel_id.as_str();
    let null = post_ordering(&app, channel, r#"{"ordered": null}"#).await;
    assert_bad_request(&null, &["Invalid json", "ordered"]);
    let text = post_ordering(&app, channel, r#"{"ordered": "yes"}"#).await;
    assert_bad_request(&text, &["Invalid json", "ordered"]);
    let missing = post_ordering(&app, channel, "{}").await;
    assert_bad_request(&missing, &["ordered"]);
    let unknown = post_ordering(&app, channel, r#"{"ordered": true, "strict": true}"#).await;
    assert_bad_request(&unknown, &["strict"]);
    assert_eq!(app.admin_channel(channel).await["ordered"], false);

    let absent = post_ordering(&app, "no-such-channel", r#"{"ordered": true}"#).await;
    assert_error(
        &absent,
        StatusCode::NOT_FOUND,
        "Channel no-such-channel not found",
    );

    let response = app
        .client
        .post(app.url(&format!("/admin/channels/{channel}/ordering")))
        .json(&json!({"ordered": true}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.admin_channel(channel).await["ordered"], false);
}

#[tokio::test]
async fn replayed_events_of_an_ordered_channel_go_again_one_at_a_time_in_order() {
    let app = spawn_app_with(|config| {
        fast_delivery(config);
        config.retry_max_age = Duration::from_millis(300);
    })
    .await;
    let receiver = TestReceiver::with_default(Behavior::Status(500)).await;
    let number = ordered_channel(&app, &receiver).await;
    // Held ones age too: once the first gave up, each of the others fails at its first try.
    let events = post_events(&app, &number.channel_id, "wamid.r", 3).await;
    for event in &events {
        app.wait_for_event(*event, |e| is_in_state(e, "primary", "failed"))
            .await;
    }
    receiver.set_default(Behavior::Delay(Duration::from_millis(5), 200));
    let response = app
        .admin(Method::POST, "/admin/deliveries/retry")
        .json(&json!({"channel": number.channel_id}))
        .send()
        .await
        .expect("request");
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["requeued"], 3);
    for event in &events {
        app.wait_for_event(*event, |e| is_in_state(e, "primary", "delivered"))
            .await;
    }
    assert_eq!(delivered_in_order(&receiver), expected("wamid.r", 3));
    assert_eq!(receiver.max_in_flight(), 1, "never two in flight");
}

#[tokio::test]
async fn after_kill_9_the_held_events_still_arrive_in_order() {
    let data = tempfile::tempdir().unwrap();
    let database = crate::helpers::fresh_database_url(data.path());
    let retries = ["--retry-base-ms", "50", "--retry-max-delay-ms", "200"];
    let (mut server, base) = start_binary(&database, &retries, |_| {});
    let client = reqwest::Client::new();
    let channel = provision_over_http(&client, &base).await;
    let channel_id = channel["id"].as_str().unwrap();
    let receiver = TestReceiver::with_default(Behavior::Status(503)).await;
    let response = client
        .post(format!("{base}/v1/configs/webhook"))
        .header("D360-API-KEY", channel["api_key"].as_str().unwrap())
        .json(&json!({"url": receiver.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let admin = |path: String| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(ADMIN_TOKEN)
    };
    let on = admin(format!("/admin/channels/{channel_id}/ordering"))
        .json(&json!({"ordered": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(on.status(), StatusCode::OK);
    for n in 0..5 {
        let posted = admin(format!("/admin/channels/{channel_id}/events"))
            .json(&message(&format!("wamid.k{n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), StatusCode::ACCEPTED);
    }
    // The head fails (and is retried) when the server is killed; the rest wait in the store.
    receiver.wait_for(2).await;
    server.kill().unwrap(); // SIGKILL: no shutdown code runs.
    server.wait().unwrap();
    assert!(receiver
        .received()
        .iter()
        .all(|r| message_id(&r.json()) == "wamid.k0"));

    receiver.set_default(Behavior::Status(200));
    let (mut restarted, _) = start_binary(&database, &retries, |_| {});
    receiver
        .wait_until(|all| all.iter().filter(|r| r.answered == 200).count() >= 5)
        .await;
    let _ = restarted.kill();
    let _ = restarted.wait();
    assert_eq!(delivered_in_order(&receiver), expected("wamid.k", 5));
    assert_eq!(receiver.max_in_flight(), 1, "never two in flight");
}
