//! `GET|POST /waba_webhook` and its routing semantics (`override_all`), observed through the
//! admin API's resolved route.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_bad_request, spawn_app, unique_phone_number};

const STARTED: &str =
    "Operation has been started, please wait several seconds until change is applied";

#[tokio::test]
async fn get_shows_url_headers_override_waba_id_and_numbers() {
    let app = spawn_app().await;
    let number = app.provision().await;
    let key = &number.api_key;
    let (status, body) = app.get("/waba_webhook", key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({
            "url": "", "headers": {}, "override_all": false,
            "waba_id": number.waba_id, "numbers_on_this_waba": [number.phone_number]
        })
    );

    let set = json!({"url": "https://waba.example.com/hook", "headers": {"X-Token": "t"}, "override_all": true});
    assert_eq!(
        app.send(Method::POST, "/waba_webhook", key, set).await,
        (StatusCode::OK, json!({"message": STARTED}))
    );
    let (_, body) = app.get("/waba_webhook", key).await;
    assert_eq!(body["url"], "https://waba.example.com/hook");
    assert_eq!(body["headers"], json!({"X-Token": "t"}));
    assert_eq!(body["override_all"], true);
    assert!(body["waba_id"].is_i64());
}

#[tokio::test]
async fn override_all_false_keeps_phone_number_webhooks_and_serves_the_rest() {
    let app = spawn_app().await;
    let first = app.provision().await;
    let second = app
        .create_channel(first.waba_id, &unique_phone_number())
        .await;
    let second_id = second["id"].as_str().unwrap();
    let own = json!({"url": "https://first.example.com/hook"});
    app.send(Method::POST, "/v1/configs/webhook", &first.api_key, own)
        .await;

    let waba = json!({"url": "https://waba.example.com/hook", "override_all": false});
    assert_eq!(
        app.send(Method::POST, "/waba_webhook", &first.api_key, waba)
            .await
            .0,
        StatusCode::OK
    );

    let route = &app.admin_channel(&first.channel_id).await["route"];
    assert_eq!(route["type"], "phone");
    assert_eq!(route["webhook"]["url"], "https://first.example.com/hook");
    let route = &app.admin_channel(second_id).await["route"];
    assert_eq!(route["type"], "waba");
    assert_eq!(route["webhook"]["url"], "https://waba.example.com/hook");

    let later = app
        .create_channel(first.waba_id, &unique_phone_number())
        .await;
    let route = &app.admin_channel(later["id"].as_str().unwrap()).await["route"];
    assert_eq!(route["type"], "waba", "numbers added later are served too");
    let (_, view) = app.get("/waba_webhook", &first.api_key).await;
    assert_eq!(view["numbers_on_this_waba"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn override_all_true_replaces_every_phone_number_webhook() {
    let app = spawn_app().await;
    let first = app.provision().await;
    let second = app
        .create_channel(first.waba_id, &unique_phone_number())
        .await;
    let second_key = second["api_key"].as_str().unwrap();
    for key in [first.api_key.as_str(), second_key] {
        let own = json!({"url": "https://own.example.com/hook"});
        app.send(Method::POST, "/v1/configs/webhook", key, own)
            .await;
    }
    let other = app.provision().await;
    let own = json!({"url": "https://other-waba.example.com/hook"});
    app.send(Method::POST, "/v1/configs/webhook", &other.api_key, own)
        .await;

    let waba = json!({"url": "https://waba.example.com/hook", "override_all": true});
    assert_eq!(
        app.send(Method::POST, "/waba_webhook", second_key, waba)
            .await
            .0,
        StatusCode::OK
    );

    for channel in [first.channel_id.as_str(), second["id"].as_str().unwrap()] {
        let view = app.admin_channel(channel).await;
        assert_eq!(view["route"]["type"], "waba");
        assert_eq!(view["webhook"], serde_json::Value::Null);
    }
    assert_eq!(
        app.get("/v1/configs/webhook", &first.api_key).await.1["url"],
        ""
    );
    let untouched = app.admin_channel(&other.channel_id).await;
    assert_eq!(
        untouched["route"]["type"], "phone",
        "another WABA is not affected"
    );

    let again = json!({"url": "https://own-again.example.com/hook"});
    app.send(Method::POST, "/v1/configs/webhook", &first.api_key, again)
        .await;
    let view = app.admin_channel(&first.channel_id).await;
    assert_eq!(
        view["route"]["type"], "phone",
        "a webhook set afterwards has priority again"
    );
}

#[tokio::test]
async fn no_webhook_at_all_routes_nowhere_and_an_empty_url_removes_the_waba_webhook() {
    let app = spawn_app().await;
    let number = app.provision().await;
    assert_eq!(
        app.admin_channel(&number.channel_id).await["route"],
        json!({"type": "none"})
    );
    let waba = json!({"url": "https://waba.example.com/hook"});
    app.send(Method::POST, "/waba_webhook", &number.api_key, waba)
        .await;
    assert_eq!(
        app.admin_channel(&number.channel_id).await["route"]["type"],
        "waba"
    );
    let removed = app
        .send(
            Method::POST,
            "/waba_webhook",
            &number.api_key,
            json!({"url": ""}),
        )
        .await;
    assert_eq!(removed.0, StatusCode::OK);
    assert_eq!(app.get("/waba_webhook", &number.api_key).await.1["url"], "");
    assert_eq!(
        app.admin_channel(&number.channel_id).await["route"],
        json!({"type": "none"})
    );
}

#[tokio::test]
async fn waba_webhook_follows_the_same_url_and_header_rules() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    let cases = [
        (json!({"url": "https://my_hook.example.com"}), "underscore"),
        (json!({"url": "https://example.com:8443"}), "explicit port"),
        (
            json!({"url": "https://example.com", "headers": {"a b": "c"}}),
            "Invalid header name",
        ),
        (json!({"headers": {}}), "missing field `url`"),
        (
            json!({"url": "https://example.com", "override_all": "yes"}),
            "invalid type",
        ),
    ];
    for (body, problem) in cases {
        assert_bad_request(
            &app.send(Method::POST, "/waba_webhook", &key, body).await,
            &[problem],
        );
    }
    assert_eq!(
        app.get("/waba_webhook", &key).await.1["url"],
        "",
        "nothing was saved"
    );
}
