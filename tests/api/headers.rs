//! Each header name goes out once: a configured header replaces Switchboard's default of the
//! same name, and the signature is Switchboard's own whenever the destination signs.

use std::collections::HashSet;

use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{fast_delivery, spawn_app_with, Provisioned, TestApp};
use crate::receiver::{Received, TestReceiver};

/// Asserts that no header name appears twice on `request`.
fn assert_each_name_once(request: &Received) {
    let mut seen = HashSet::new();
    for (name, _) in &request.header_lines {
        assert!(
            seen.insert(name.as_str()),
            "{name} sent twice: {:?}",
            request.header_lines
        );
    }
}

/// Gives the channel a signing secret and returns it.
async fn sign(app: &TestApp, number: &Provisioned) -> String {
    let path = format!("/admin/channels/{}/signing_secret", number.channel_id);
    let response = app.admin(Method::POST, &path).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    answer["signing_secret"].as_str().unwrap().to_owned()
}

/// Sends one event to a receiver configured with `headers`; returns what arrived.
async fn deliver_with(app: &TestApp, number: &Provisioned, headers: Value) -> Received {
    let receiver = TestReceiver::start().await;
    app.set_webhook(&number.api_key, &receiver.url, headers)
        .await;
    let message = json!({"messages": [{"id": "wamid.headers", "type": "text"}]});
    app.post_event(&number.channel_id, message).await;
    let request = receiver.wait_for(1).await.remove(0);
    assert_each_name_once(&request);
    request
}

#[tokio::test]
async fn configured_headers_replace_the_defaults_of_the_same_name() {
    let app = spawn_app_with(fast_delivery).await;
    let number = app.provision().await;
    let headers = json!({
        "content-type": "application/json; charset=utf-8",
        "User-Agent": "acme-relay/1.0",
        "Accept": "application/json",
    });
    let request = deliver_with(&app, &number, headers).await;
    assert_eq!(
        request.header_values("content-type"),
        ["application/json; charset=utf-8"]
    );
    assert_eq!(request.header_values("user-agent"), ["acme-relay/1.0"]);
    assert_eq!(request.header_values("accept"), ["application/json"]);
}

#[tokio::test]
async fn the_defaults_are_sent_once_when_nothing_is_configured() {
    let app = spawn_app_with(fast_delivery).await;
    let number = app.provision().await;
    let request = deliver_with(&app, &number, json!({"X-Tenant": "acme"})).await;
    assert_eq!(request.header_values("content-type"), ["application/json"]);
    let agent = request.header_values("user-agent");
    assert!(
        agent.len() == 1 && agent[0].starts_with("Switchboard/"),
        "{agent:?}"
    );
    assert_eq!(request.header_values("x-tenant"), ["acme"]);
}

#[tokio::test]
async fn a_signing_destination_sends_only_its_own_signature() {
    let app = spawn_app_with(fast_delivery).await;
    let number = app.provision().await;
    let secret = sign(&app, &number).await;
    let forged = json!({"X-Hub-Signature-256": "sha256=forged"});
    let request = deliver_with(&app, &number, forged).await;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&request.body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        request.header_values("x-hub-signature-256"),
        [format!("sha256={hex}")]
    );
}

#[tokio::test]
async fn without_signing_a_configured_signature_header_is_sent_as_configured() {
    let app = spawn_app_with(fast_delivery).await;
    let number = app.provision().await;
    let upstream = json!({"x-hub-signature-256": "sha256=upstream"});
    let request = deliver_with(&app, &number, upstream).await;
    assert_eq!(
        request.header_values("x-hub-signature-256"),
        ["sha256=upstream"]
    );
}
