//! Partner API (`/api/v2/partners/{partner_id}/webhook_url|webhook_headers`): auth, the
//! provider's `{"meta"}` errors, validation; and partner events delivered to the partner
//! webhook through the same engine.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchboard::config::{Config, Secret};
use switchboard::delivery::signature;

use crate::helpers::{
    delivery, fast_delivery, is_in_state, metric_sum, spawn_app_with, status_and_json,
    unique_phone_number, TestApp,
};
use crate::receiver::{Behavior, TestReceiver};

/// A partner's id and Partner API key.
pub(crate) struct PartnerCreds {
    pub(crate) id: String,
    pub(crate) key: String,
}

async fn partner(app: &TestApp, name: &str) -> PartnerCreds {
    let created = app.create_partner(name).await;
    PartnerCreds {
        id: created["id"].as_str().unwrap().to_owned(),
        key: created["api_key"].as_str().unwrap().to_owned(),
    }
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = app.client.request(method, app.url(path));
    if let Some(key) = key {
        request = request.header("X-API-Key", key);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_owned());
    }
    status_and_json(request.send().await.unwrap()).await
}

/// Asserts the Partner API error shape and returns its `meta`.
fn assert_meta_error(answer: &(StatusCode, Value), status: StatusCode) -> Value {
    assert_eq!(answer.0, status, "{}", answer.1);
    let meta = answer.1["meta"].clone();
    assert_eq!(meta["http_code"], status.as_u16());
    assert_eq!(meta["success"], false);
    assert!(meta["developer_message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(meta["360dialog_trace_id"]
        .as_str()
        .is_some_and(|t| t.len() >= 16));
    assert_eq!(answer.1.as_object().unwrap().len(), 1, "only `meta`");
    meta
}

#[tokio::test]
async fn set_and_get_the_webhook_url_and_headers() {
    let app = spawn_app_with(fast_delivery).await;
    let p = partner(&app, "Acme Partners").await;
    let url_path = format!("/api/v2/partners/{}/webhook_url", p.id);
    let headers_path = format!("/api/v2/partners/{}/webhook_headers", p.id);

    assert_eq!(
        call(&app, Method::GET, &url_path, Some(&p.key), None).await,
        (StatusCode::OK, json!({"webhook_url": ""}))
    );
    let (status, out) = call(
        &app,
        Method::POST,
        &url_path,
        Some(&p.key),
        Some(r#"{"webhook_url": "https://partner.example.com/events"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        out,
        json!({"id": p.id, "brand_name": "Acme Partners", "webhook_url": "https://partner.example.com/events",
               "logo_url": null, "allow_client_to_add_phone_no": true})
    );
    assert_eq!(
        call(&app, Method::GET, &url_path, Some(&p.key), None).await,
        (
            StatusCode::OK,
            json!({"webhook_url": "https://partner.example.com/events"})
        )
    );

    assert_eq!(
        call(&app, Method::GET, &headers_path, Some(&p.key), None).await,
        (StatusCode::OK, json!({"webhook_headers": {}}))
    );
    let body =
        r#"{"webhook_headers": {"Authorization": "Bearer partner-secret", "X-Env": "prod"}}"#;
    let (status, out) = call(&app, Method::POST, &headers_path, Some(&p.key), Some(body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        out["webhook_headers"],
        json!({"Authorization": "Bearer partner-secret", "X-Env": "prod"})
    );
    assert_eq!(out["webhook_url"], "https://partner.example.com/events");
    assert_eq!(out["id"], p.id);

    // Bearer works as well as X-API-Key.
    let response = app
        .client
        .get(app.url(&headers_path))
        .bearer_auth(&p.key)
        .send()
        .await
        .unwrap();
    let (status, got) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        got,
        json!({"webhook_headers": {"Authorization": "Bearer partner-secret", "X-Env": "prod"}})
    );
}

#[tokio::test]
async fn missing_unknown_and_foreign_keys() {
    let app = spawn_app_with(fast_delivery).await;
    let a = partner(&app, "A").await;
    let b = partner(&app, "B").await;
    for path in ["webhook_url", "webhook_headers"] {
        for method in [Method::GET, Method::POST] {
            let own = format!("/api/v2/partners/{}/{path}", a.id);
            let missing = call(&app, method.clone(), &own, None, Some("{}")).await;
            assert_meta_error(&missing, StatusCode::UNAUTHORIZED);
            let unknown = call(&app, method.clone(), &own, Some("not-a-key"), Some("{}")).await;
            assert_meta_error(&unknown, StatusCode::UNAUTHORIZED);

            let foreign = call(
                &app,
                method.clone(),
                &format!("/api/v2/partners/{}/{path}", b.id),
                Some(&a.key),
                Some("{}"),
            )
            .await;
            let nobody = call(
                &app,
                method.clone(),
                &format!("/api/v2/partners/nobody/{path}"),
                Some(&a.key),
                Some("{}"),
            )
            .await;
            let foreign_meta = assert_meta_error(&foreign, StatusCode::NOT_FOUND);
            let nobody_meta = assert_meta_error(&nobody, StatusCode::NOT_FOUND);
            assert_eq!(
                foreign_meta["developer_message"], nobody_meta["developer_message"],
                "another partner looks unknown"
            );
        }
    }
    let first = call(
        &app,
        Method::GET,
        &format!("/api/v2/partners/{}/webhook_url", a.id),
        None,
        None,
    )
    .await;
    let second = call(
        &app,
        Method::GET,
        &format!("/api/v2/partners/{}/webhook_url", a.id),
        None,
        None,
    )
    .await;
    assert_ne!(
        first.1["meta"]["360dialog_trace_id"],
        second.1["meta"]["360dialog_trace_id"]
    );
    // The admin token is not a partner key.
    let response = app
        .client
        .get(app.url(&format!("/api/v2/partners/{}/webhook_url", a.id)))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn validation_errors_name_the_field_and_change_nothing() {
    let app = spawn_app_with(|config| config.dev = false).await;
    let p = partner(&app, "V").await;
    let url_path = format!("/api/v2/partners/{}/webhook_url", p.id);
    let headers_path = format!("/api/v2/partners/{}/webhook_headers", p.id);
    call(
        &app,
        Method::POST,
        &url_path,
        Some(&p.key),
        Some(r#"{"webhook_url": "https://ok.example.com"}"#),
    )
    .await;
    call(
        &app,
        Method::POST,
        &headers_path,
        Some(&p.key),
        Some(r#"{"webhook_headers": {"X-A": "1"}}"#),
    )
    .await;

    let cases: &[(&str, &str, &str, &str)] = &[
        (
            &url_path,
            r#"{"webhook_url": "https://x.example.com", "extra": 1}"#,
            "extra",
            "Unknown field.",
        ),
        (
            &url_path,
            r#"{}"#,
            "webhook_url",
            "Missing data for required field.",
        ),
        (
            &url_path,
            r#"{"webhook_url": 5}"#,
            "webhook_url",
            "Not a valid string.",
        ),
        (
            &url_path,
            r#"{"webhook_url": "https://my_host.example.com"}"#,
            "webhook_url",
            "underscore",
        ),
        (
            &url_path,
            r#"{"webhook_url": "https://example.com:8443"}"#,
            "webhook_url",
            "explicit port",
        ),
        (
            &url_path,
            r#"{"webhook_url": "http://example.com"}"#,
            "webhook_url",
            "https://",
        ),
        (&url_path, r#"[]"#, "json", "expected an object"),
        (&url_path, r#"{"webhook_url": "#, "json", "Invalid json"),
        (
            &headers_path,
            r#"{"webhook_headers": "x"}"#,
            "webhook_headers",
            "Not a valid mapping type.",
        ),
        (
            &headers_path,
            r#"{"webhook_headers": [1]}"#,
            "webhook_headers",
            "Not a valid mapping type.",
        ),
        (
            &headers_path,
            r#"{"webhook_headers": {"X-A": 1}}"#,
            "webhook_headers",
            "is not a valid string",
        ),
        (
            &headers_path,
            r#"{"webhook_headers": {"Bad Name": "x"}}"#,
            "webhook_headers",
            "Invalid header name",
        ),
        (
            &headers_path,
            r#"{"webhook_headers": {"X-A": "line\nbreak"}}"#,
            "webhook_headers",
            "Invalid value",
        ),
        (
            &headers_path,
            r#"{"headers": {}}"#,
            "headers",
            "Unknown field.",
        ),
        (
            &headers_path,
            r#"{}"#,
            "webhook_headers",
            "Missing data for required field.",
        ),
    ];
    for (path, body, field, problem) in cases {
        let answer = call(&app, Method::POST, path, Some(&p.key), Some(body)).await;
        let meta = assert_meta_error(&answer, StatusCode::BAD_REQUEST);
        let problems = meta["details"][field]
            .as_array()
            .unwrap_or_else(|| panic!("{body}: {meta}"));
        assert!(
            problems[0].as_str().unwrap().contains(problem),
            "{body}: {meta}"
        );
    }
    assert_eq!(
        call(&app, Method::GET, &url_path, Some(&p.key), None)
            .await
            .1,
        json!({"webhook_url": "https://ok.example.com"})
    );
    assert_eq!(
        call(&app, Method::GET, &headers_path, Some(&p.key), None)
            .await
            .1,
        json!({"webhook_headers": {"X-A": "1"}})
    );

    let big = format!(r#"{{"webhook_url": "{}"}}"#, "a".repeat(1024 * 1024 + 10));
    let answer = call(&app, Method::POST, &url_path, Some(&p.key), Some(&big)).await;
    assert_meta_error(&answer, StatusCode::PAYLOAD_TOO_LARGE);
}

fn meta_config(config: &mut Config) {
    fast_delivery(config);
    config.meta_app_secret = Some(Secret::new("app-secret"));
}

/// A partner with its webhook on a fresh receiver, and a WABA.
pub(crate) async fn partner_with_receiver(
    app: &TestApp,
    receiver: &TestReceiver,
) -> (PartnerCreds, i64) {
    let p = partner(app, "Events").await;
    let url_body = json!({"webhook_url": receiver.url}).to_string();
    let answer = call(
        app,
        Method::POST,
        &format!("/api/v2/partners/{}/webhook_url", p.id),
        Some(&p.key),
        Some(&url_body),
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    let headers = r#"{"webhook_headers": {"Authorization": "Bearer partner-secret"}}"#;
    call(
        app,
        Method::POST,
        &format!("/api/v2/partners/{}/webhook_headers", p.id),
        Some(&p.key),
        Some(headers),
    )
    .await;
    let waba = app.create_waba(&p.id, None).await;
    (p, waba)
}

fn event_types(receiver: &TestReceiver) -> Vec<String> {
    receiver
        .received()
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn each_partner_event_kind_reaches_the_partner_webhook_with_its_headers() {
    let app = spawn_app_with(meta_config).await;
    let receiver = TestReceiver::start().await;
    let (p, waba) = partner_with_receiver(&app, &receiver).await;

    let channel = app.create_channel(waba, &unique_phone_number()).await;
    let created = &receiver.wait_for(1).await[0];
    assert_eq!(created.headers["authorization"], "Bearer partner-secret");
    assert_eq!(created.headers["content-type"], "application/json");
    let body = created.json();
    assert_eq!(body["type"], "channel_created");
    assert_eq!(body["partner_id"], p.id);
    assert!(body["id"].is_i64());
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        body["data"]["channel"],
        json!({"id": channel["id"], "phone_number": channel["phone_number"], "phone_number_id": channel["phone_number_id"],
               "waba_id": waba, "partner_id": p.id})
    );
    let event = app.event(body["id"].as_i64().unwrap()).await;
    assert_eq!(event["kind"], "partner");
    assert_eq!(event["payload"], body);

    let response = app
        .admin(
            Method::POST,
            &format!(
                "/admin/channels/{}/messaging_enabled",
                channel["id"].as_str().unwrap()
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let enabled = receiver.wait_for(2).await[1].json();
    assert_eq!(enabled["type"], "template_messaging_enabled");
    assert_eq!(enabled["data"]["channel"]["id"], channel["id"]);

    let value = json!({"event": "APPROVED", "message_template_id": 1234, "message_template_name": "welcome", "message_template_language": "en_US", "reason": "NONE"});
    let notification = json!({"object": "whatsapp_business_account", "entry": [{"id": waba.to_string(), "time": 1, "changes": [{"field": "message_template_status_update", "value": value}]}]}).to_string();
    let response = app
        .client
        .post(app.url("/webhooks/whatsapp"))
        .header(
            "X-Hub-Signature-256",
            signature("app-secret", notification.as_bytes()),
        )
        .body(notification)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let template = receiver.wait_for(3).await[2].json();
    assert_eq!(template["type"], "waba_template_status_changed");
    assert_eq!(
        template["data"],
        json!({"waba_id": waba, "value": value}),
        "Meta's value unchanged"
    );

    let response = app
        .admin(Method::POST, &format!("/admin/partners/{}/events", p.id))
        .json(&json!({"type": "client_updated", "data": {"client_id": "c-1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let event_id = response.json::<Value>().await.unwrap()["event_id"]
        .as_i64()
        .unwrap();
    let sandbox = receiver.wait_for(4).await[3].json();
    assert_eq!(sandbox["type"], "client_updated");
    assert_eq!(sandbox["id"], event_id);
    assert_eq!(sandbox["data"], json!({"client_id": "c-1"}));
    assert_eq!(
        event_types(&receiver),
        [
            "channel_created",
            "template_messaging_enabled",
            "waba_template_status_changed",
            "client_updated"
        ]
    );
    // The fourth 200 is counted once its outcome is stored: wait for it.
    let finals = "switchboard_deliveries_total";
    let delivered = [("target", "partner"), ("state", "delivered")];
    let metrics = app
        .wait_for_metrics(|text| metric_sum(text, finals, &delivered) >= 4)
        .await;
    let events = "switchboard_events_ingested_total";
    let stored = |source| metric_sum(&metrics, events, &[("source", source), ("kind", "partner")]);
    assert_eq!(
        (stored("platform"), stored("meta"), stored("admin")),
        (2, 1, 1)
    );
}

#[tokio::test]
async fn sandbox_partner_events_are_validated() {
    let app = spawn_app_with(fast_delivery).await;
    let p = partner(&app, "S").await;
    let post = |path: String, body: Value| {
        let request = app.admin(Method::POST, &path).json(&body);
        async move { status_and_json(request.send().await.unwrap()).await }
    };
    let answer = post(
        format!("/admin/partners/{}/events", p.id),
        json!({"type": "Bad Type"}),
    )
    .await;
    assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{}", answer.1);
    let answer = post(
        format!("/admin/partners/{}/events", p.id),
        json!({"type": "x", "data": [1]}),
    )
    .await;
    assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{}", answer.1);
    let answer = post(
        format!("/admin/partners/{}/events", p.id),
        json!({"data": {}}),
    )
    .await;
    assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{}", answer.1);
    let answer = post("/admin/partners/nobody/events".into(), json!({"type": "x"})).await;
    assert_eq!(answer.0, StatusCode::NOT_FOUND, "{}", answer.1);
    let answer = post("/admin/channels/nobody/messaging_enabled".into(), json!({})).await;
    assert_eq!(answer.0, StatusCode::NOT_FOUND, "{}", answer.1);
}

#[tokio::test]
async fn partner_events_are_signed_with_the_partner_secret() {
    let app = spawn_app_with(fast_delivery).await;
    let receiver = TestReceiver::start().await;
    let (p, _) = partner_with_receiver(&app, &receiver).await;
    let response = app
        .admin(
            Method::POST,
            &format!("/admin/partners/{}/signing_secret", p.id),
        )
        .send()
        .await
        .unwrap();
    let secret = response.json::<Value>().await.unwrap()["signing_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    app.admin(Method::POST, &format!("/admin/partners/{}/events", p.id))
        .json(&json!({"type": "ping"}))
        .send()
        .await
        .unwrap();
    let request = &receiver.wait_for(1).await[0];
    assert_eq!(
        request.headers["x-hub-signature-256"],
        signature(&secret, &request.body)
    );
}

#[tokio::test]
async fn without_a_url_events_are_dropped_and_a_later_url_does_not_resurrect_them() {
    let app = spawn_app_with(fast_delivery).await;
    let p = partner(&app, "NoUrl").await;
    let response = app
        .admin(Method::POST, &format!("/admin/partners/{}/events", p.id))
        .json(&json!({"type": "early"}))
        .send()
        .await
        .unwrap();
    let event_id = response.json::<Value>().await.unwrap()["event_id"]
        .as_i64()
        .unwrap();
    let event = app
        .wait_for_event(event_id, |e| is_in_state(e, "partner", "dropped"))
        .await;
    assert_eq!(
        delivery(&event, "partner")["last_error"],
        "no partner webhook URL configured"
    );
    assert_eq!(delivery(&event, "partner")["partner_id"], p.id);

    let receiver = TestReceiver::start().await;
    let body = json!({"webhook_url": receiver.url}).to_string();
    call(
        &app,
        Method::POST,
        &format!("/api/v2/partners/{}/webhook_url", p.id),
        Some(&p.key),
        Some(&body),
    )
    .await;
    app.admin(Method::POST, &format!("/admin/partners/{}/events", p.id))
        .json(&json!({"type": "late"}))
        .send()
        .await
        .unwrap();
    receiver.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(event_types(&receiver), ["late"]);
    assert!(is_in_state(
        &app.event(event_id).await,
        "partner",
        "dropped"
    ));
}

#[tokio::test]
async fn a_failing_partner_webhook_is_retried_at_the_current_url() {
    let app = spawn_app_with(fast_delivery).await;
    let failing = TestReceiver::with_default(Behavior::Status(500)).await;
    let (p, _) = partner_with_receiver(&app, &failing).await;
    let response = app
        .admin(Method::POST, &format!("/admin/partners/{}/events", p.id))
        .json(&json!({"type": "retry_me"}))
        .send()
        .await
        .unwrap();
    let event_id = response.json::<Value>().await.unwrap()["event_id"]
        .as_i64()
        .unwrap();
    failing.wait_for(2).await;

    let fixed = TestReceiver::start().await;
    let body = json!({"webhook_url": fixed.url}).to_string();
    call(
        &app,
        Method::POST,
        &format!("/api/v2/partners/{}/webhook_url", p.id),
        Some(&p.key),
        Some(&body),
    )
    .await;
    let delivered = fixed.wait_for(1).await;
    assert_eq!(delivered[0].json()["type"], "retry_me");
    assert_eq!(
        delivered[0].headers["authorization"],
        "Bearer partner-secret"
    );
    let event = app
        .wait_for_event(event_id, |e| is_in_state(e, "partner", "delivered"))
        .await;
    let attempts = delivery(&event, "partner")["attempt_log"]
        .as_array()
        .unwrap()
        .clone();
    assert!(attempts.len() >= 3);
    assert_eq!(attempts.last().unwrap()["url"], fixed.url);
    assert_eq!(attempts[0]["status"], 500);
}
