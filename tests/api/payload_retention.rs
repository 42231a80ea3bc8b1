//! The payload retention (`--payload-retention-hours`) on the real server: the payloads of
//! finished events are emptied by the maintenance loop while the event view keeps their
//! metadata, deliveries and attempts and says when; a purged event cannot be retried; and a
//! delivery of a purged event that comes due anyway is dropped with the reason.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{delivery, fast_delivery, is_in_state, spawn_app_with};
use crate::receiver::{Behavior, TestReceiver};

fn message(id: &str) -> Value {
    json!({"messages": [{"from": "4917600000000", "id": id, "type": "text", "text": {"body": "hi"}}]})
}

#[tokio::test]
async fn payloads_of_finished_events_are_purged_and_a_purged_event_is_not_retried() {
    let app = spawn_app_with(|config| {
        fast_delivery(config);
        config.retry_max_age = Duration::from_millis(300);
        config.payload_retention = None;
    })
    .await;
    let (good, bad) = (app.provision().await, app.provision().await);
    let receiver = TestReceiver::start().await;
    let failing = TestReceiver::with_default(Behavior::Status(500)).await;
    app.set_webhook(&good.api_key, &receiver.url, json!({}))
        .await;
    app.set_webhook(&bad.api_key, &failing.url, json!({})).await;
    let delivered = app
        .post_event(&good.channel_id, message("wamid.kept"))
        .await;
    let failed = app
        .post_event(&bad.channel_id, message("wamid.gave-up"))
        .await;
    app.wait_for_event(delivered, |e| is_in_state(e, "primary", "delivered"))
        .await;
    let before = app
        .wait_for_event(failed, |e| is_in_state(e, "primary", "failed"))
        .await;
    assert!(
        before["payload"]["entry"][0]["id"].is_string(),
        "{before:#}"
    );
    assert!(before.get("payload_purged_at").is_none(), "{before:#}");

    let app = app
        .restart_with(|config| config.payload_retention = Some(Duration::from_millis(1)))
        .await;
    for event in [delivered, failed] {
        let purged = app
            .wait_for_event(event, |e| e["payload_purged_at"].is_string())
            .await;
        assert_eq!(purged["payload"], Value::Null, "{purged:#}");
        assert!(
            purged["channel_id"].is_string(),
            "metadata stays: {purged:#}"
        );
        let attempts = delivery(&purged, "primary")["attempt_log"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(attempts >= 1, "attempts stay: {purged:#}");
    }

    let failed_delivery = delivery(&app.event(failed).await, "primary")["id"]
        .as_i64()
        .unwrap();
    let response = app
        .admin(
            Method::POST,
            &format!("/admin/deliveries/{failed_delivery}/retry"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": format!(
            "Delivery {failed_delivery} cannot be retried: its payload was purged \
             (--payload-retention-hours)"
        )})
    );
    let bulk: Value = app
        .admin(Method::POST, "/admin/deliveries/retry")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bulk, json!({"requeued": 0}), "a bulk retry skips it");
    assert!(is_in_state(&app.event(failed).await, "primary", "failed"));
}

#[tokio::test]
async fn a_delivery_of_a_purged_event_that_comes_due_is_dropped_with_the_reason() {
    let app = spawn_app_with(fast_delivery).await;
    let number = app.provision().await;
    let failing = TestReceiver::with_default(Behavior::Status(500)).await;
    app.set_webhook(&number.api_key, &failing.url, json!({}))
        .await;
    let event = app
        .post_event(&number.channel_id, message("wamid.purged-under-it"))
        .await;
    failing.wait_for(1).await;
    // What a purge on another node, racing a requeue, can leave: a pending delivery whose
    // event's payload is gone. The restart makes the engine read it back from the store.
    let empty = match crate::BACKEND {
        crate::helpers::Backend::Sqlite => "X''",
        crate::helpers::Backend::Postgres => "''::bytea",
    };
    app.execute_sql(&format!(
        "UPDATE events SET payload = {empty}, payload_purged_at = 1 WHERE id = {event}"
    ))
    .await;
    let app = app.restart_with(|_| {}).await;
    let dropped = app
        .wait_for_event(event, |e| is_in_state(e, "primary", "dropped"))
        .await;
    assert_eq!(
        delivery(&dropped, "primary")["last_error"],
        "the event's payload was purged (--payload-retention-hours)",
        "{dropped:#}"
    );
}
