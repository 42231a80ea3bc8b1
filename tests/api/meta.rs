//! Meta's webhook at `/webhooks/whatsapp`: the verification handshake, signature checks, and
//! one durable event per phone number of a notification.

use reqwest::StatusCode;
use serde_json::{json, Value};
use switchboard::config::{Config, Secret};
use switchboard::delivery::signature;

use crate::helpers::{
    fast_delivery, metric_sum, spawn_app_with, status_and_json, unique_phone_number, TestApp,
};
use crate::receiver::TestReceiver;

const APP_SECRET: &str = "meta-app-secret";

fn meta(config: &mut Config) {
    fast_delivery(config);
    config.meta_app_secret = Some(Secret::new(APP_SECRET));
    config.meta_verify_token = Some(Secret::new("verify-me"));
}

async fn post_signed(
    app: &TestApp,
    body: &str,
    signature_header: Option<String>,
) -> (StatusCode, Value) {
    let mut request = app
        .client
        .post(app.url("/webhooks/whatsapp"))
        .body(body.to_owned());
    if let Some(value) = signature_header {
        request = request.header("X-Hub-Signature-256", value);
    }
    status_and_json(request.send().await.unwrap()).await
}

fn change(phone_number_id: &str, message_id: &str) -> Value {
    json!({"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
        "messages": [{"from": "4917600000000", "id": message_id, "type": "text", "text": {"body": "hi"}}]
    }})
}

#[tokio::test]
async fn answers_the_verification_handshake_only_with_the_right_token() {
    let app = spawn_app_with(meta).await;
    let ok = app
        .client
        .get(app.url("/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    for query in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
        "hub.mode=unsubscribe&hub.verify_token=verify-me&hub.challenge=1",
        "hub.challenge=1",
    ] {
        let response = app
            .client
            .get(app.url(&format!("/webhooks/whatsapp?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{query}");
    }
}

#[tokio::test]
async fn unsigned_or_wrongly_signed_notifications_are_refused_and_not_stored() {
    let app = spawn_app_with(meta).await;
    let number = app.provision().await;
    let receiver = TestReceiver::start().await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let channel = app.admin_channel(&number.channel_id).await;
    let id = channel["phone_number_id"].as_str().unwrap();
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change(id, "wamid.x")]}]}).to_string();

    let answer = post_signed(&app, &body, None).await;
    assert_eq!(
        answer,
        (
            StatusCode::UNAUTHORIZED,
            json!({"error": "Missing X-Hub-Signature-256 header"})
        )
    );
    let answer = post_signed(
        &app,
        &body,
        Some(signature("another-secret", body.as_bytes())),
    )
    .await;
    assert_eq!(
        answer,
        (
            StatusCode::FORBIDDEN,
            json!({"error": "Invalid X-Hub-Signature-256"})
        )
    );
    let answer = post_signed(&app, &body, Some("sha256=nothex".into())).await;
    assert_eq!(answer.0, StatusCode::FORBIDDEN);
    let tampered = body.replace("hi", "ho");
    let answer = post_signed(
        &app,
        &tampered,
        Some(signature(APP_SECRET, body.as_bytes())),
    )
    .await;
    assert_eq!(answer.0, StatusCode::FORBIDDEN);

    let metrics = app.metrics().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "switchboard_events_ingested_total",
            &[("source", "meta")]
        ),
        0
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn without_an_app_secret_the_webhook_is_closed() {
    let app = spawn_app_with(fast_delivery).await;
    let body = "{}";
    let answer = post_signed(&app, body, Some(signature("x", body.as_bytes()))).await;
    assert_eq!(answer.0, StatusCode::FORBIDDEN);
    assert!(answer.1["error"]
        .as_str()
        .unwrap()
        .contains("--meta-app-secret"));
}

#[tokio::test]
async fn a_notification_is_split_per_number_and_unknown_numbers_are_kept() {
    let app = spawn_app_with(meta).await;
    let first = app.provision().await;
    let second = app
        .create_channel(first.waba_id, &unique_phone_number())
        .await;
    let (first_receiver, second_receiver) =
        (TestReceiver::start().await, TestReceiver::start().await);
    app.set_webhook(&first.api_key, &first_receiver.url, json!({}))
        .await;
    app.set_webhook(
        second["api_key"].as_str().unwrap(),
        &second_receiver.url,
        json!({}),
    )
    .await;
    let first_id = app.admin_channel(&first.channel_id).await["phone_number_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second_id = second["phone_number_id"].as_str().unwrap().to_owned();

    let waba = first.waba_id.to_string();
    let body = json!({"object": "whatsapp_business_account", "entry": [
        {"id": waba, "changes": [change(&first_id, "wamid.a"), change(&second_id, "wamid.b"), change("999999", "wamid.lost")]},
        {"id": waba, "changes": [change(&first_id, "wamid.c")]},
    ]})
    .to_string();
    let (status, answer) =
        post_signed(&app, &body, Some(signature(APP_SECRET, body.as_bytes()))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let event_ids = answer["event_ids"].as_array().unwrap().clone();
    assert_eq!(event_ids.len(), 3, "one event per number");

    let to_first = first_receiver.wait_for(1).await[0].json();
    let ids: Vec<&Value> = to_first["entry"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["value"]["messages"][0]["id"])
        .collect();
    assert_eq!(ids, [&json!("wamid.a"), &json!("wamid.c")]);
    assert_eq!(to_first["entry"][0]["id"], waba);
    let to_second = second_receiver.wait_for(1).await[0].json();
    assert_eq!(
        to_second["entry"][0]["changes"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        to_second["entry"][0]["changes"][0]["value"]["messages"][0]["id"],
        "wamid.b"
    );

    let lost = app.event(event_ids[2].as_i64().unwrap()).await;
    assert_eq!(lost["kind"], "unroutable");
    assert_eq!(lost["phone_number_id"], "999999");
    assert_eq!(lost["deliveries"], json!([]));
    assert_eq!(
        lost["payload"]["entry"][0]["changes"][0]["value"]["messages"][0]["id"],
        "wamid.lost"
    );
    let metrics = app.metrics().await;
    let events = "switchboard_events_ingested_total";
    assert_eq!(
        metric_sum(&metrics, events, &[("source", "meta")]),
        3,
        "{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, events, &[("kind", "unroutable")]),
        1,
        "{metrics}"
    );
}

#[tokio::test]
async fn malformed_notifications_are_400() {
    let app = spawn_app_with(meta).await;
    for body in [
        "not json",
        "[]",
        "{\"object\": \"whatsapp_business_account\"}",
        "{\"entry\": [{\"id\": \"1\"}]}",
    ] {
        let (status, answer) =
            post_signed(&app, body, Some(signature(APP_SECRET, body.as_bytes()))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
    }
}

/// A channel's signing secret, issued by the admin API.
async fn signing_secret(app: &TestApp, channel_id: &str) -> String {
    let response = app
        .admin(
            reqwest::Method::POST,
            &format!("/admin/channels/{channel_id}/signing_secret"),
        )
        .send()
        .await
        .unwrap();
    response.json::<Value>().await.unwrap()["signing_secret"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Checks a delivery the way both kinds of receiver library do: the HMAC over the raw
/// bytes (pywa, Meta's SDK), and over the escaped-unicode form (whatsapp-api-js).
fn verify_like_every_library(received: &crate::receiver::Received, secret: &str) {
    let header = received.header_values("x-hub-signature-256");
    assert_eq!(header.len(), 1);
    assert_eq!(
        header[0],
        signature(secret, &received.body),
        "HMAC over the raw bytes"
    );
    let text = std::str::from_utf8(&received.body).unwrap();
    let escaped = switchboard::domain::ascii_escaped(text);
    assert_eq!(
        header[0],
        signature(secret, escaped.as_bytes()),
        "HMAC over the escaped form"
    );
}

const UNICODE: &str = "café, 中文, emoji 😀";

#[tokio::test]
async fn signed_deliveries_verify_in_every_receiver_library_whatever_the_characters() {
    let app = spawn_app_with(meta).await;
    let first = app.provision().await;
    let second = app
        .create_channel(first.waba_id, &unique_phone_number())
        .await;
    let second_channel = second["id"].as_str().unwrap();
    let (first_receiver, second_receiver) =
        (TestReceiver::start().await, TestReceiver::start().await);
    app.set_webhook(&first.api_key, &first_receiver.url, json!({}))
        .await;
    let second_key = second["api_key"].as_str().unwrap();
    app.set_webhook(second_key, &second_receiver.url, json!({}))
        .await;
    let first_secret = signing_secret(&app, &first.channel_id).await;
    let second_secret = signing_secret(&app, second_channel).await;
    let first_id = app.admin_channel(&first.channel_id).await["phone_number_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second_id = second["phone_number_id"].as_str().unwrap().to_owned();
    let with_text = |number: &str, id: &str| {
        let mut change = change(number, id);
        change["value"]["messages"][0]["text"]["body"] = json!(UNICODE);
        change
    };

    // One number: Meta's bytes (escaped, as Meta sends them, with its own spacing) relayed
    // as they are.
    let waba = first.waba_id.to_string();
    let envelope = json!({"object": "whatsapp_business_account",
                          "entry": [{"id": waba, "time": 1700000000, "changes": [with_text(&first_id, "wamid.u1")]}]});
    let meta_bytes =
        switchboard::domain::ascii_escaped(&serde_json::to_string_pretty(&envelope).unwrap())
            .into_owned();
    let signed = Some(signature(APP_SECRET, meta_bytes.as_bytes()));
    assert_eq!(
        post_signed(&app, &meta_bytes, signed).await.0,
        StatusCode::OK
    );
    let got = first_receiver.wait_for(1).await.remove(0);
    assert_eq!(got.body, meta_bytes.as_bytes(), "byte for byte");
    verify_like_every_library(&got, &first_secret);

    // Two numbers in one POST (raw UTF-8 this time): each part is built, ASCII-only,
    // keeps every field of its entry, and is the same JSON value.
    let body = json!({"object": "whatsapp_business_account", "entry": [
        {"id": waba, "time": 1700000001, "changes": [with_text(&first_id, "wamid.u2"), with_text(&second_id, "wamid.u3")]},
    ]})
    .to_string();
    let signed = Some(signature(APP_SECRET, body.as_bytes()));
    assert_eq!(post_signed(&app, &body, signed).await.0, StatusCode::OK);
    let got = first_receiver.wait_for(2).await.remove(1);
    assert!(
        got.body.is_ascii(),
        "{}",
        String::from_utf8_lossy(&got.body)
    );
    verify_like_every_library(&got, &first_secret);
    let expected = json!({"object": "whatsapp_business_account", "entry": [
        {"id": waba, "time": 1700000001, "changes": [with_text(&first_id, "wamid.u2")]},
    ]});
    assert_eq!(got.json(), expected);
    let other = second_receiver.wait_for(1).await.remove(0);
    assert!(other.body.is_ascii());
    verify_like_every_library(&other, &second_secret);
    assert_eq!(
        other.json()["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"],
        UNICODE
    );

    // A wrapped admin value is built too: ASCII-only, signed over those bytes.
    let value =
        json!({"messages": [{"id": "wamid.u4", "type": "text", "text": {"body": UNICODE}}]});
    app.post_event(&first.channel_id, value).await;
    let got = first_receiver.wait_for(3).await.remove(2);
    assert!(got.body.is_ascii());
    verify_like_every_library(&got, &first_secret);
    assert_eq!(
        got.json()["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"],
        UNICODE
    );
}
