//! Bad input on every endpoint: a clear 4xx JSON error, never a 500, never a partial change.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_bad_request, spawn_app, status_and_json};

/// Every endpoint that takes a JSON body, with the credentials it needs.
fn body_endpoints() -> Vec<(Method, &'static str)> {
    vec![
        (Method::POST, "/v1/configs/webhook"),
        (Method::POST, "/waba_webhook"),
        (Method::POST, "/multi_webhook"),
        (Method::PUT, "/multi_webhook"),
        (Method::PATCH, "/multi_webhook"),
    ]
}

#[tokio::test]
async fn malformed_json_is_400_invalid_json_everywhere() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    app.send(
        Method::POST,
        "/multi_webhook",
        &key,
        json!({"enabled": true}),
    )
    .await;
    let bodies = [
        "",
        "{",
        "not json",
        "[]",
        "null",
        "42",
        "{\"url\": }",
        "{\"url\": \"https://example.com\",}",
        "{\"enabled\": tru}",
    ];
    for (method, path) in body_endpoints() {
        for body in bodies {
            let answer = app.send_raw(method.clone(), path, &key, body).await;
            assert_bad_request(&answer, &["Invalid json: "]);
        }
    }
}

#[tokio::test]
async fn wrong_types_are_400_invalid_json() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    app.send(
        Method::POST,
        "/multi_webhook",
        &key,
        json!({"enabled": true}),
    )
    .await;
    let cases = [
        (Method::POST, "/v1/configs/webhook", json!({"url": 5})),
        (
            Method::POST,
            "/v1/configs/webhook",
            json!({"url": "https://a.com", "headers": ["x"]}),
        ),
        (Method::POST, "/v1/configs/webhook", json!({"url": null})),
        (
            Method::POST,
            "/waba_webhook",
            json!({"url": "https://a.com", "override_all": 1}),
        ),
        (Method::POST, "/multi_webhook", json!({"enabled": "true"})),
        (
            Method::PUT,
            "/multi_webhook",
            json!({"destinations": {"name": "a"}}),
        ),
        (
            Method::PUT,
            "/multi_webhook",
            json!({"destinations": [{"name": 1, "url": "https://a.com"}]}),
        ),
        (Method::PATCH, "/multi_webhook", json!({"name": ["a"]})),
    ];
    for (method, path, body) in cases {
        let answer = app.send(method, path, &key, body).await;
        assert_bad_request(&answer, &["Invalid json: ", "invalid type"]);
    }
}

#[tokio::test]
async fn non_utf8_bodies_are_400() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    let body: &[u8] = b"{\"url\": \"https://example.com/\xff\xfe\"}";
    let response = app
        .messaging(Method::POST, "/v1/configs/webhook", &key)
        .body(body)
        .send()
        .await
        .unwrap();
    let answer = status_and_json(response).await;
    assert_bad_request(&answer, &["Invalid json: "]);
    assert_eq!(app.get("/v1/configs/webhook", &key).await.1["url"], "");
}

#[tokio::test]
async fn oversize_bodies_are_413_json() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    let padding = "a".repeat(1024 * 1024 + 1);
    let body = json!({"url": "https://example.com", "headers": {"X-Pad": padding}}).to_string();
    for (method, path) in body_endpoints() {
        let response = app
            .messaging(method, path, &key)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let (status, answer) = status_and_json(response).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            answer,
            json!({"error": "Request body is too large: the limit is 1048576 bytes"})
        );
    }
    let response = app
        .admin(Method::POST, "/admin/partners")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn unknown_fields_are_ignored_by_the_messaging_api_and_rejected_by_admin() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    let answer = app
        .send(
            Method::POST,
            "/v1/configs/webhook",
            &key,
            json!({"url": "https://a.example.com", "extra": 1}),
        )
        .await;
    assert_eq!(
        answer.0,
        StatusCode::OK,
        "the provider's schema allows other fields"
    );

    let response = app
        .admin(Method::POST, "/admin/partners")
        .json(&json!({"name": "Acme", "nmae": "typo"}))
        .send()
        .await
        .unwrap();
    let answer = status_and_json(response).await;
    assert_bad_request(&answer, &["Invalid json: ", "unknown field `nmae`"]);
}

#[tokio::test]
async fn hostile_keys_and_headers_are_401_not_500() {
    let app = spawn_app().await;
    for key in [
        "",
        " ",
        "x".repeat(10_000).as_str(),
        "'; DROP TABLE channels; --",
    ] {
        let response = app
            .client
            .get(app.url("/v1/configs/webhook"))
            .header("D360-API-KEY", key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = app
        .client
        .get(app.url("/v1/configs/webhook"))
        .header(
            "D360-API-KEY",
            reqwest::header::HeaderValue::from_bytes(b"caf\xe9").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "still healthy");
}

#[tokio::test]
async fn bodies_nested_deeper_than_128_levels_are_refused_everywhere() {
    let app = spawn_app().await;
    let number = app.provision().await;
    let deep = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
    // Injected events are stored without being parsed whole: the same limit applies.
    let path = format!("/admin/channels/{}/events", number.channel_id);
    let body = format!("{{\"value\": {{\"messages\": {}}}}}", deep(100_000));
    let response = app
        .admin(Method::POST, &path)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let answer = status_and_json(response).await;
    assert_bad_request(&answer, &["Invalid json", "128"]);
    // Within the limit, the same shape is accepted.
    let body = format!(
        "{{\"value\": {{\"messages\": [{{\"n\": {}}}]}}}}",
        deep(100)
    );
    let response = app
        .admin(Method::POST, &path)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // The Messaging API's bodies too.
    let body = format!("{{\"url\": {}}}", deep(200));
    let response = app
        .messaging(Method::POST, "/v1/configs/webhook", &number.api_key)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let answer = status_and_json(response).await;
    assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{answer:?}");
}

#[tokio::test]
async fn null_where_the_schema_has_a_type_is_a_400_naming_the_field_and_changes_nothing() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    let cases = [
        (
            Method::POST,
            "/v1/configs/webhook",
            json!({"url": "https://a.example.com", "headers": null}),
            "headers",
        ),
        (
            Method::POST,
            "/waba_webhook",
            json!({"url": "https://a.example.com", "headers": null}),
            "headers",
        ),
        (
            Method::POST,
            "/waba_webhook",
            json!({"url": "https://a.example.com", "override_all": null}),
            "override_all",
        ),
        (
            Method::POST,
            "/multi_webhook",
            json!({"enabled": true, "destinations": null}),
            "destinations",
        ),
        (
            Method::POST,
            "/multi_webhook",
            json!({"enabled": true, "destinations": [
            {"name": "crm", "url": "https://crm.example.com", "headers": null}]}),
            "destinations[0].headers",
        ),
    ];
    for (method, path, body, field) in cases {
        let answer = app.send(method.clone(), path, &key, body.clone()).await;
        assert_bad_request(&answer, &["Invalid json", field, "null"]);
    }
    // Nothing was set by any of them.
    let (_, webhook) = app.get("/v1/configs/webhook", &key).await;
    assert_eq!(webhook["url"], "", "{webhook}");
    let (_, waba) = app.get("/waba_webhook", &key).await;
    assert_ne!(waba["url"], "https://a.example.com", "{waba}");
    // PATCH of an existing destination: null url or headers are refused too.
    let multi = json!({"enabled": true, "destinations": [{"name": "crm", "url": "https://crm.example.com"}]});
    assert_eq!(
        app.send(Method::POST, "/multi_webhook", &key, multi)
            .await
            .0,
        StatusCode::OK
    );
    for (body, field) in [
        (json!({"name": "crm", "url": null}), "url"),
        (json!({"name": "crm", "headers": null}), "headers"),
    ] {
        let answer = app.send(Method::PATCH, "/multi_webhook", &key, body).await;
        assert_bad_request(&answer, &["Invalid json", field, "null"]);
    }
}
