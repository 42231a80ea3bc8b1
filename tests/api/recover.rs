//! Recovery over a time window (`POST /admin/deliveries/recover`): the deliveries of the
//! events that arrived in a window are re-queued (or only counted, on a dry run) and reach a
//! receiver that is back; the window's limits, the state, channel and destination filters,
//! and bad input.
//!
//! Most calls name the test's channel: provisioning it stored a `channel_created` partner
//! event, dropped for want of a partner webhook, which the default states would match too.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchboard::clock::{now_ms, rfc3339};
use switchboard::domain::DestinationId;

use crate::helpers::{
    assert_bad_request, assert_error, fast_delivery, is_in_state, spawn_app_with, status_and_json,
    TestApp,
};
use crate::receiver::{Behavior, TestReceiver};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn message(id: &str) -> Value {
    json!({"messages": [{"from": "4917600000000", "id": id, "type": "text", "text": {"body": "hi"}}]})
}

/// A server whose deliveries fail (reach `failed`) within about 300 ms of failures.
async fn failing_fast() -> TestApp {
    spawn_app_with(|config| {
        fast_delivery(config);
        config.retry_max_age = Duration::from_millis(300);
    })
    .await
}

async fn recover(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let response = app
        .admin(Method::POST, "/admin/deliveries/recover")
        .json(&body)
        .send()
        .await
        .expect("request");
    status_and_json(response).await
}

fn ago(ms: i64) -> String {
    rfc3339(now_ms() - ms)
}

/// Posts one event per `(channel, wamid)` and waits until each primary delivery failed.
async fn failed_events(app: &TestApp, events: &[(&str, &str)]) -> Vec<i64> {
    let mut ids = Vec::new();
    for (channel, wamid) in events {
        ids.push(app.post_event(channel, message(wamid)).await);
    }
    for id in &ids {
        app.wait_for_event(*id, |e| is_in_state(e, "primary", "failed"))
            .await;
    }
    ids
}

fn bodies_mention(receiver: &TestReceiver, from: usize, wamid: &str) -> bool {
    receiver.received()[from..]
        .iter()
        .any(|r| String::from_utf8_lossy(&r.body).contains(wamid))
}

#[tokio::test]
async fn a_dry_run_counts_and_a_real_run_requeues_to_the_receiver() {
    let app = failing_fast().await;
    let number = app.provision().await;
    let receiver = TestReceiver::with_default(Behavior::Status(503)).await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let channel = number.channel_id.as_str();
    let events = failed_events(&app, &[(channel, "wamid.rec0"), (channel, "wamid.rec1")]).await;
    receiver.set_default(Behavior::Status(200));
    let before = receiver.received().len();

    let window = json!({"since": ago(HOUR), "channel": channel, "dry_run": true});
    let answer = recover(&app, window).await;
    assert_eq!(
        answer,
        (StatusCode::OK, json!({"matched": 2, "requeued": 0}))
    );
    for event in &events {
        assert!(
            is_in_state(&app.event(*event).await, "primary", "failed"),
            "a dry run changes nothing"
        );
    }

    let answer = recover(&app, json!({"since": ago(HOUR), "channel": channel})).await;
    assert_eq!(
        answer,
        (StatusCode::OK, json!({"matched": 2, "requeued": 2}))
    );
    for event in &events {
        app.wait_for_event(*event, |e| is_in_state(e, "primary", "delivered"))
            .await;
    }
    assert!(bodies_mention(&receiver, before, "wamid.rec0"));
    assert!(bodies_mention(&receiver, before, "wamid.rec1"));

    let answer = recover(&app, json!({"since": ago(HOUR), "channel": channel})).await;
    assert_eq!(
        answer,
        (StatusCode::OK, json!({"matched": 0, "requeued": 0})),
        "delivered deliveries are not recovered by default"
    );
}

#[tokio::test]
async fn the_window_is_on_arrival_time_and_at_most_14_days() {
    let app = failing_fast().await;
    let number = app.provision().await;
    let receiver = TestReceiver::with_default(Behavior::Status(503)).await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let channel = number.channel_id.as_str();
    let events = failed_events(&app, &[(channel, "wamid.old"), (channel, "wamid.new")]).await;
    let (old, new) = (events[0], events[1]);
    let arrived = now_ms() - 3 * DAY;
    app.execute_sql(&format!(
        "UPDATE events SET received_at = {arrived} WHERE id = {old}"
    ))
    .await;
    receiver.set_default(Behavior::Status(200));

    let answer = recover(&app, json!({"since": ago(15 * DAY)})).await;
    assert_bad_request(&answer, &["window", "14 days"]);
    let answer = recover(&app, json!({"since": ago(HOUR), "until": ago(2 * HOUR)})).await;
    assert_bad_request(&answer, &["window", "until", "before since"]);
    let exactly_14_days = json!({
        "since": rfc3339(arrived - 14 * DAY), "until": rfc3339(arrived), "channel": channel, "dry_run": true
    });
    let answer = recover(&app, exactly_14_days).await;
    assert_eq!(
        answer,
        (StatusCode::OK, json!({"matched": 0, "requeued": 0})),
        "until is excluded"
    );
    let from_arrival = json!({"since": rfc3339(arrived), "until": rfc3339(arrived + 1), "channel": channel,
        "dry_run": true});
    let answer = recover(&app, from_arrival).await;
    assert_eq!(
        answer,
        (StatusCode::OK, json!({"matched": 1, "requeued": 0})),
        "since is included"
    );

    let answer = recover(&app, json!({"since": ago(2 * DAY), "channel": channel})).await;
    assert_eq!(
        answer,
        (StatusCode::OK, json!({"matched": 1, "requeued": 1}))
    );
    app.wait_for_event(new, |e| is_in_state(e, "primary", "delivered"))
        .await;
    assert!(
        is_in_state(&app.event(old).await, "primary", "failed"),
        "an event outside the window is untouched"
    );

    let answer = recover(
        &app,
        json!({"since": ago(4 * DAY), "until": ago(2 * DAY), "channel": channel}),
    )
    .await;
    assert_eq!(
        answer,
        (StatusCode::OK, json!({"matched": 1, "requeued": 1}))
    );
    app.wait_for_event(old, |e| is_in_state(e, "primary", "delivered"))
        .await;
}

#[tokio::test]
async fn delivered_deliveries_are_recovered_only_when_asked() {
    let app = failing_fast().await;
    let number = app.provision().await;
    let receiver = TestReceiver::start().await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let event = app
        .post_event(&number.channel_id, message("wamid.done"))
        .await;
    app.wait_for_event(event, |e| is_in_state(e, "primary", "delivered"))
        .await;

    let answer = recover(&app, json!({"since": ago(HOUR), "state": ["failed"]})).await;
    assert_eq!(
        answer,
        (StatusCode::OK, json!({"matched": 0, "requeued": 0}))
    );
    let answer = recover(
        &app,
        json!({"since": ago(HOUR), "state": ["delivered", "failed", "delivered"]}),
    )
    .await;
    assert_eq!(
        answer,
        (StatusCode::OK, json!({"matched": 1, "requeued": 1}))
    );
    let received = receiver.wait_for(2).await;
    assert_eq!(received[0].body, received[1].body, "the same event again");
    app.wait_for_event(event, |e| is_in_state(e, "primary", "delivered"))
        .await;
}

#[tokio::test]
async fn the_channel_filter_recovers_one_channels_deliveries() {
    let app = failing_fast().await;
    let (first, second) = (app.provision().await, app.provision().await);
    let receiver = TestReceiver::with_default(Behavior::Status(503)).await;
    for number in [&first, &second] {
        app.set_webhook(&number.api_key, &receiver.url, json!({}))
            .await;
    }
    let events = failed_events(
        &app,
        &[
            (first.channel_id.as_str(), "wamid.first"),
            (second.channel_id.as_str(), "wamid.second"),
        ],
    )
    .await;
    receiver.set_default(Behavior::Status(200));

    let answer = recover(
        &app,
        json!({"since": ago(HOUR), "channel": first.channel_id}),
    )
    .await;
    assert_eq!(
        answer,
        (StatusCode::OK, json!({"matched": 1, "requeued": 1}))
    );
    app.wait_for_event(events[0], |e| is_in_state(e, "primary", "delivered"))
        .await;
    assert!(
        is_in_state(&app.event(events[1]).await, "primary", "failed"),
        "other channels untouched"
    );

    let answer = recover(&app, json!({"since": ago(HOUR), "channel": "nope"})).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "Channel nope not found");
}

#[tokio::test]
async fn the_destination_filter_recovers_what_went_to_one_receiver() {
    let app = failing_fast().await;
    let (first, second) = (app.provision().await, app.provision().await);
    let back = TestReceiver::with_default(Behavior::Status(503)).await;
    let still_down = TestReceiver::with_default(Behavior::Status(503)).await;
    app.set_webhook(&first.api_key, &back.url, json!({})).await;
    app.set_webhook(&second.api_key, &still_down.url, json!({}))
        .await;
    let events = failed_events(
        &app,
        &[
            (first.channel_id.as_str(), "wamid.back"),
            (second.channel_id.as_str(), "wamid.down"),
        ],
    )
    .await;
    back.set_default(Behavior::Status(200));
    let down_before = still_down.received().len();

    let destination = DestinationId::of(&back.url).expect("a URL");
    let answer = recover(
        &app,
        json!({"since": ago(HOUR), "destination": destination.as_str()}),
    )
    .await;
    assert_eq!(
        answer,
        (StatusCode::OK, json!({"matched": 1, "requeued": 1}))
    );
    app.wait_for_event(events[0], |e| is_in_state(e, "primary", "delivered"))
        .await;
    assert!(is_in_state(
        &app.event(events[1]).await,
        "primary",
        "failed"
    ));
    assert_eq!(still_down.received().len(), down_before, "nothing re-sent");

    let nowhere = DestinationId::of("https://example.com/other").expect("a URL");
    let answer = recover(
        &app,
        json!({"since": ago(HOUR), "destination": nowhere.as_str(), "dry_run": true}),
    )
    .await;
    assert_eq!(
        answer,
        (StatusCode::OK, json!({"matched": 0, "requeued": 0}))
    );
}

#[tokio::test]
async fn destinations_of_urls_stored_before_they_were_recorded_are_filled_at_open() {
    let app = failing_fast().await;
    let number = app.provision().await;
    let receiver = TestReceiver::with_default(Behavior::Status(503)).await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    failed_events(&app, &[(number.channel_id.as_str(), "wamid.early")]).await;
    app.execute_sql("UPDATE attempt_urls SET destination = NULL")
        .await;

    let app = app.restart().await;
    let missing = "SELECT count(*) FROM attempt_urls WHERE destination IS NULL";
    assert_eq!(app.query_number(missing).await, 0);
    let destination = DestinationId::of(&receiver.url).expect("a URL");
    let answer = recover(
        &app,
        json!({"since": ago(HOUR), "destination": destination.as_str(), "dry_run": true}),
    )
    .await;
    assert_eq!(
        answer,
        (StatusCode::OK, json!({"matched": 1, "requeued": 0}))
    );
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_problem_and_the_admin_token_is_required() {
    let app = failing_fast().await;
    let since = ago(HOUR);
    let cases = [
        (
            json!({"since": since, "sinse": since}),
            vec!["unknown field", "sinse"],
        ),
        (json!({"until": since}), vec!["missing field", "since"]),
        (
            json!({"since": "yesterday"}),
            vec!["since", "yesterday", "RFC 3339"],
        ),
        (
            json!({"since": since, "until": "2026-13-01T00:00:00Z"}),
            vec!["until", "RFC 3339"],
        ),
        (
            json!({"since": since, "state": ["lost"]}),
            vec!["state", "lost"],
        ),
        (
            json!({"since": since, "state": ["pending"]}),
            vec!["state", "pending"],
        ),
        (json!({"since": since, "state": []}), vec!["state"]),
        (
            json!({"since": since, "destination": "XYZ"}),
            vec!["destination", "XYZ"],
        ),
        (
            json!({"since": since, "dry_run": "yes"}),
            vec!["Invalid json"],
        ),
    ];
    for (body, parts) in cases {
        let answer = recover(&app, body).await;
        assert_bad_request(&answer, &parts);
    }

    let response = app
        .client
        .post(app.url("/admin/deliveries/recover"))
        .json(&json!({"since": since}))
        .send()
        .await
        .expect("request");
    let answer = status_and_json(response).await;
    assert_eq!(answer.0, StatusCode::UNAUTHORIZED, "{}", answer.1);
    assert!(answer.1["error"].is_string(), "{}", answer.1);
}
