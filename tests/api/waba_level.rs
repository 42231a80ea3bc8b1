//! WABA-level notifications from Meta (`account_update`, `security`, template updates, …: no
//! `metadata.phone_number_id`): delivered to the WABA webhook, signed with the WABA's own
//! secret, and always told to the partner as a partner event.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchboard::config::{Config, Secret};
use switchboard::delivery::signature;

use crate::helpers::{
    fast_delivery, is_in_state, spawn_app_with, status_and_json, unique_phone_number, TestApp,
};
use crate::partner::partner_with_receiver;
use crate::receiver::{Behavior, TestReceiver};

const APP_SECRET: &str = "app-secret";

fn meta(config: &mut Config) {
    fast_delivery(config);
    config.meta_app_secret = Some(Secret::new(APP_SECRET));
}

/// Posts `body` to Meta's door, signed with the app secret; returns the event ids.
async fn post_signed(app: &TestApp, body: &str) -> Vec<i64> {
    let response = app
        .client
        .post(app.url("/webhooks/whatsapp"))
        .header(
            "X-Hub-Signature-256",
            signature(APP_SECRET, body.as_bytes()),
        )
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let (status, answer) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["event_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect()
}

/// Sets the WABA webhook through one of the WABA's channels (the provider's API).
async fn set_waba_webhook(app: &TestApp, api_key: &str, url: &str) {
    let body = json!({"url": url, "headers": {"X-Waba": "yes"}});
    let answer = app.send(Method::POST, "/waba_webhook", api_key, body).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
}

async fn waba_signing_secret(app: &TestApp, waba: i64) -> String {
    let response = app
        .admin(Method::POST, &format!("/admin/wabas/{waba}/signing_secret"))
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["signing_secret"].as_str().unwrap().to_owned()
}

fn account_update(waba: i64) -> String {
    // Meta's own spacing and escapes: relayed byte for byte.
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"{waba}","time":1731000000,"changes":[{{"value":{{"phone_number":"15550001111","event":"VERIFIED_ACCOUNT","ban_info":{{"waba_ban_state":"SCHEDULE_FOR_DISABLE","waba_ban_date":"2026-12-31"}},"note":"Caf\u00e9 \ud83d\ude00"}},"field":"account_update"}}]}}]}}"#
    )
}

#[tokio::test]
async fn a_waba_level_notification_reaches_the_waba_webhook_signed_and_the_partner() {
    let app = spawn_app_with(meta).await;
    let (waba_receiver, partner_receiver) =
        (TestReceiver::start().await, TestReceiver::start().await);
    let (partner, waba) = partner_with_receiver(&app, &partner_receiver).await;
    let channel = app.create_channel(waba, &unique_phone_number()).await;
    partner_receiver.wait_for(1).await; // channel_created
    set_waba_webhook(
        &app,
        channel["api_key"].as_str().unwrap(),
        &waba_receiver.url,
    )
    .await;
    let secret = waba_signing_secret(&app, waba).await;

    let body = account_update(waba);
    let ids = post_signed(&app, &body).await;
    assert_eq!(ids.len(), 2, "the WABA's event and the partner event");

    let delivered = &waba_receiver.wait_for(1).await[0];
    assert_eq!(
        delivered.body,
        body.as_bytes(),
        "Meta's bytes, relayed as signed"
    );
    assert_eq!(
        delivered.header_values("x-hub-signature-256"),
        [signature(&secret, body.as_bytes())],
        "signed with the WABA's secret"
    );
    assert_eq!(delivered.header_values("x-waba"), ["yes"]);
    let target = format!("waba:{waba}");
    let event = app
        .wait_for_event(ids[0], |e| is_in_state(e, &target, "delivered"))
        .await;
    assert_eq!(event["kind"], "waba");
    assert_eq!(event["partner_id"], partner.id.as_str());

    let told = partner_receiver.wait_for(2).await[1].json();
    assert_eq!(told["type"], "waba_update");
    assert_eq!(told["id"], ids[1]);
    let sent: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        told["data"],
        json!({"waba_id": waba, "field": "account_update",
               "value": sent["entry"][0]["changes"][0]["value"]}),
        "the field and Meta's value unchanged"
    );
    let listed = app
        .admin(Method::GET, "/admin/events?kind=waba")
        .send()
        .await
        .unwrap();
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(listed["events"][0]["id"], ids[0]);
}

#[tokio::test]
async fn a_mixed_notification_gives_the_number_and_the_waba_their_own_parts() {
    let app = spawn_app_with(meta).await;
    let (number_receiver, waba_receiver, partner_receiver) = (
        TestReceiver::start().await,
        TestReceiver::start().await,
        TestReceiver::start().await,
    );
    let (_, waba) = partner_with_receiver(&app, &partner_receiver).await;
    let channel = app.create_channel(waba, &unique_phone_number()).await;
    partner_receiver.wait_for(1).await; // channel_created: partner events are not ordered
    let key = channel["api_key"].as_str().unwrap();
    set_waba_webhook(&app, key, &waba_receiver.url).await;
    app.set_webhook(key, &number_receiver.url, json!({})).await;
    let number = channel["phone_number_id"].as_str().unwrap();
    let message = json!({"field": "messages", "value": {"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": number},
        "messages": [{"from": "4917600000000", "id": "wamid.m1", "type": "text", "text": {"body": "olá"}}]}});
    let template = json!({"field": "message_template_status_update",
        "value": {"event": "APPROVED", "message_template_id": 7, "message_template_name": "hi", "message_template_language": "pt_BR", "reason": "NONE"}});
    let quality = json!({"field": "phone_number_quality_update",
        "value": {"display_phone_number": "15550000000", "event": "FLAGGED", "current_limit": "TIER_1K"}});
    let body = json!({"object": "whatsapp_business_account", "entry": [
        {"id": waba.to_string(), "time": 1731000001, "changes": [template.clone(), message.clone(), quality.clone()]}]})
    .to_string();
    let ids = post_signed(&app, &body).await;
    assert_eq!(
        ids.len(),
        4,
        "the number's, the WABA's and two partner events"
    );

    let to_number = &number_receiver.wait_for(1).await[0];
    assert!(to_number.body.is_ascii(), "built: escaped-unicode form");
    assert_eq!(
        to_number.json(),
        json!({"object": "whatsapp_business_account",
               "entry": [{"id": waba.to_string(), "time": 1731000001, "changes": [message]}]})
    );
    let to_waba = &waba_receiver.wait_for(1).await[0];
    assert!(to_waba.body.is_ascii());
    assert_eq!(
        to_waba.json(),
        json!({"object": "whatsapp_business_account",
               "entry": [{"id": waba.to_string(), "time": 1731000001, "changes": [template.clone(), quality.clone()]}]}),
        "the WABA's changes, in order, with the entry's fields"
    );
    // After channel_created, one partner event per WABA-level change.
    let told = partner_receiver.wait_for(3).await;
    let of_type = |kind: &str| {
        let found = told
            .iter()
            .map(|r| r.json())
            .find(|body| body["type"] == kind);
        found.unwrap_or_else(|| panic!("no {kind}"))["data"].clone()
    };
    assert_eq!(
        of_type("waba_template_status_changed"),
        json!({"waba_id": waba, "value": template["value"]})
    );
    assert_eq!(
        of_type("waba_update"),
        json!({"waba_id": waba, "field": "phone_number_quality_update", "value": quality["value"]})
    );
}

#[tokio::test]
async fn with_neither_webhook_a_waba_level_notification_is_kept_as_dropped() {
    let app = spawn_app_with(meta).await;
    let provisioned = app.provision().await;
    let waba = provisioned.waba_id;
    let ids = post_signed(&app, &account_update(waba)).await;
    assert_eq!(ids.len(), 2);
    let target = format!("waba:{waba}");
    let event = app
        .wait_for_event(ids[0], |e| is_in_state(e, &target, "dropped"))
        .await;
    let delivery = crate::helpers::delivery(&event, &target);
    assert_eq!(delivery["last_error"], "no WABA webhook configured");
    assert_eq!(
        event["payload"]["entry"][0]["changes"][0]["field"],
        "account_update"
    );
    let told = app
        .wait_for_event(ids[1], |e| is_in_state(e, "partner", "dropped"))
        .await;
    assert_eq!(told["payload"]["type"], "waba_update");

    // A WABA Switchboard does not know: unroutable, as before.
    let unknown = post_signed(&app, &account_update(987_654_321)).await;
    let event = app.event(unknown[0]).await;
    assert_eq!(
        (unknown.len(), event["kind"].clone()),
        (1, json!("unroutable"))
    );
}

#[tokio::test]
async fn a_waba_signing_secret_needs_a_known_waba() {
    let app = spawn_app_with(meta).await;
    let answer = |response: reqwest::Response| status_and_json(response);
    let unknown = app
        .admin(Method::POST, "/admin/wabas/987654321/signing_secret")
        .send()
        .await
        .unwrap();
    let (status, body) = answer(unknown).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "WABA 987654321 not found");
    let bad = app
        .admin(Method::POST, "/admin/wabas/not-a-number/signing_secret")
        .send()
        .await
        .unwrap();
    assert_eq!(answer(bad).await.0, StatusCode::BAD_REQUEST);
    let anonymous = app
        .client
        .post(app.url("/admin/wabas/1/signing_secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_waba_level_backlog_counts_against_the_waba_webhook() {
    let app = spawn_app_with(meta).await;
    let provisioned = app.provision().await;
    let receiver = TestReceiver::with_default(Behavior::Status(500)).await;
    set_waba_webhook(&app, &provisioned.api_key, &receiver.url).await;
    let ids = post_signed(&app, &account_update(provisioned.waba_id)).await;
    receiver.wait_for(1).await;
    let event = app.event(ids[0]).await;
    assert!(is_in_state(
        &event,
        &format!("waba:{}", provisioned.waba_id),
        "pending"
    ));
    let view = crate::destinations::destination(&app, &receiver.url).await;
    assert_eq!(view["backlog"], 1, "{view:#}");
}
