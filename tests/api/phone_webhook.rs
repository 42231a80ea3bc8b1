//! `GET|POST /v1/configs/webhook`: the phone-number webhook, its auth, URL and header rules.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_bad_request, assert_error, spawn_app, spawn_app_with};

const PATH: &str = "/v1/configs/webhook";

#[tokio::test]
async fn missing_or_unknown_key_is_401_on_every_messaging_endpoint() {
    let app = spawn_app().await;
    let requests = [
        (Method::GET, "/v1/configs/webhook"),
        (Method::POST, "/v1/configs/webhook"),
        (Method::GET, "/waba_webhook"),
        (Method::POST, "/waba_webhook"),
        (Method::GET, "/multi_webhook"),
        (Method::POST, "/multi_webhook"),
        (Method::PUT, "/multi_webhook"),
        (Method::PATCH, "/multi_webhook"),
        (Method::DELETE, "/multi_webhook/x"),
    ];
    for (method, path) in requests {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .body("{}")
            .send()
            .await
            .unwrap();
        let answer = crate::helpers::status_and_json(response).await;
        assert_error(
            &answer,
            StatusCode::UNAUTHORIZED,
            "Missing D360-API-KEY header",
        );
        let answer = app.send_raw(method.clone(), path, "wrong-key", "{}").await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "Invalid D360-API-KEY");
    }
}

#[tokio::test]
async fn set_then_get_returns_the_saved_config() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    assert_eq!(
        app.get(PATH, &key).await,
        (StatusCode::OK, json!({"url": "", "headers": {}}))
    );
    let config = json!({
        "url": "https://www.example.com/webhook",
        "headers": {"Authorization": "Basic dGVzdHVzZXI6dGVzdHBhc3M="}
    });
    assert_eq!(
        app.send(Method::POST, PATH, &key, config.clone()).await,
        (StatusCode::OK, config.clone())
    );
    assert_eq!(app.get(PATH, &key).await, (StatusCode::OK, config));

    let without_headers = json!({"url": "https://other.example.com/hook"});
    let saved = json!({"url": "https://other.example.com/hook", "headers": {}});
    assert_eq!(
        app.send(Method::POST, PATH, &key, without_headers).await,
        (StatusCode::OK, saved.clone())
    );
    assert_eq!(app.get(PATH, &key).await, (StatusCode::OK, saved));
}

#[tokio::test]
async fn an_empty_url_removes_the_webhook() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    app.send(
        Method::POST,
        PATH,
        &key,
        json!({"url": "https://example.com/hook"}),
    )
    .await;
    let empty = json!({"url": "", "headers": {}});
    assert_eq!(
        app.send(Method::POST, PATH, &key, json!({"url": ""})).await,
        (StatusCode::OK, empty.clone())
    );
    assert_eq!(app.get(PATH, &key).await, (StatusCode::OK, empty));
    let answer = app
        .send(
            Method::POST,
            PATH,
            &key,
            json!({"url": "", "headers": {"X-A": "1"}}),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "headers cannot be set without a url",
    );
}

#[tokio::test]
async fn each_number_sees_only_its_own_webhook() {
    let app = spawn_app().await;
    let first = app.provision().await.api_key;
    let second = app.provision().await.api_key;
    app.send(
        Method::POST,
        PATH,
        &first,
        json!({"url": "https://first.example.com"}),
    )
    .await;
    assert_eq!(app.get(PATH, &second).await.1["url"], "");
}

#[tokio::test]
async fn url_rules_reject_with_a_message_that_names_the_problem() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    let cases: &[(&str, &[&str])] = &[
        (
            "https://your_webhook.example.com",
            &["your_webhook.example.com", "underscore"],
        ),
        (
            "https://subdomain.your_webhook.example.com:3000",
            &["underscore"],
        ),
        (
            "https://subdomain.yourwebhook.example.com:3000",
            &["explicit port"],
        ),
        ("https://example.com:443/hook", &["explicit port"]),
        ("http://example.com/hook", &["only absolute https:// URLs"]),
        ("www.example.com/webhook", &["www.example.com/webhook"]),
        ("/relative/path", &["/relative/path"]),
        ("ftp://example.com", &["only absolute https:// URLs"]),
        ("https://user:pass@example.com/", &["credentials"]),
        ("https://exa mple.com", &["Invalid URL"]),
        (
            "http://127.0.0.1:8080/hook",
            &["only absolute https:// URLs"],
        ),
    ];
    for (url, parts) in cases {
        let answer = app
            .send(Method::POST, PATH, &key, json!({"url": url}))
            .await;
        assert_bad_request(&answer, parts);
    }
    assert_eq!(app.get(PATH, &key).await.1["url"], "", "nothing was saved");
}

#[tokio::test]
async fn header_rules_reject_with_a_message_that_names_the_header() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    let cases: &[(serde_json::Value, &[&str])] = &[
        (
            json!({"Bad Header": "x"}),
            &["Invalid header name", "Bad Header"],
        ),
        (
            json!({"X-Ok": "line\nbreak"}),
            &["Invalid value for header", "X-Ok"],
        ),
        (json!({"X-Ok": "naïve"}), &["Invalid value for header"]),
        (
            json!({"Content-Length": "10"}),
            &["Content-Length", "cannot be configured"],
        ),
        (json!({"X-A": "1", "x-a": "2"}), &["more than once"]),
    ];
    for (headers, parts) in cases {
        let body = json!({"url": "https://example.com/hook", "headers": headers});
        assert_bad_request(&app.send(Method::POST, PATH, &key, body).await, parts);
    }
    let answer = app
        .send(
            Method::POST,
            PATH,
            &key,
            json!({"url": "https://example.com", "headers": {"X-A": 5}}),
        )
        .await;
    assert_bad_request(&answer, &["Invalid json:", "invalid type"]);
}

#[tokio::test]
async fn dev_mode_accepts_http_and_ports_for_loopback_hosts_only() {
    let app = spawn_app_with(|config| config.dev = true).await;
    let key = app.provision().await.api_key;
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://localhost:3000",
        "http://[::1]:8080/x",
        "https://127.0.0.2:8443/",
    ] {
        let answer = app
            .send(Method::POST, PATH, &key, json!({"url": url}))
            .await;
        assert_eq!(answer.0, StatusCode::OK, "{url}: {}", answer.1);
        assert_eq!(app.get(PATH, &key).await.1["url"], *url);
    }
    for (url, problem) in [
        ("http://10.0.0.1:8080/", "only absolute https:// URLs"),
        ("http://example.com/", "only absolute https:// URLs"),
        ("https://example.com:8443/", "explicit port"),
    ] {
        let answer = app
            .send(Method::POST, PATH, &key, json!({"url": url}))
            .await;
        assert_bad_request(&answer, &[problem]);
    }
}
