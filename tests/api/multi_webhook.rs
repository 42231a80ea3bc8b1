//! `/multi_webhook`: every status code and message of the provider's docs.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_bad_request, assert_error, spawn_app, spawn_app_with, TestApp};

const PATH: &str = "/multi_webhook";
const STARTED: &str =
    "Operation has been started, please wait several seconds until change is applied";
const DISABLED: &str = "Multi webhook is disabled, use POST to enable it first";

fn dest(name: &str) -> Value {
    json!({"name": name, "url": format!("https://{}.example.com/hook", name.to_lowercase()), "headers": {"Authorization": "Bearer abc123"}})
}

fn ok() -> (StatusCode, Value) {
    (StatusCode::OK, json!({"message": STARTED}))
}

async fn destinations(app: &TestApp, key: &str) -> Value {
    let (status, body) = app.get(PATH, key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["enabled"], true);
    body["destinations"].clone()
}

#[tokio::test]
async fn disabled_config_answers_409_to_get_put_patch_and_delete() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    let disabled = (StatusCode::CONFLICT, json!({"message": DISABLED}));
    assert_eq!(app.get(PATH, &key).await, disabled);
    assert_eq!(
        app.send(
            Method::PUT,
            PATH,
            &key,
            json!({"destinations": [dest("a")]})
        )
        .await,
        disabled
    );
    assert_eq!(
        app.send(Method::PATCH, PATH, &key, dest("a")).await,
        disabled
    );
    assert_eq!(
        app.send(Method::DELETE, "/multi_webhook/a", &key, json!({}))
            .await,
        disabled
    );
}

#[tokio::test]
async fn enable_list_append_update_delete() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    assert_eq!(
        app.send(
            Method::POST,
            PATH,
            &key,
            json!({"enabled": true, "destinations": [dest("Webhook1")]})
        )
        .await,
        ok()
    );
    assert_eq!(destinations(&app, &key).await, json!([dest("Webhook1")]));

    assert_eq!(
        app.send(
            Method::PUT,
            PATH,
            &key,
            json!({"destinations": [dest("Webhook2")]})
        )
        .await,
        ok()
    );
    assert_eq!(
        destinations(&app, &key).await,
        json!([dest("Webhook1"), dest("Webhook2")])
    );

    let update = json!({"name": "Webhook2", "url": "https://replaced.example.com", "headers": {"Authorization": "D360-API-KEY"}});
    assert_eq!(
        app.send(Method::PATCH, PATH, &key, update.clone()).await,
        ok()
    );
    assert_eq!(destinations(&app, &key).await[1], update);

    let only_url = json!({"name": "Webhook1", "url": "https://only-url.example.com"});
    assert_eq!(app.send(Method::PATCH, PATH, &key, only_url).await, ok());
    let first = &destinations(&app, &key).await[0];
    assert_eq!(first["url"], "https://only-url.example.com");
    assert_eq!(
        first["headers"],
        json!({"Authorization": "Bearer abc123"}),
        "headers kept"
    );

    assert_eq!(
        app.send(Method::DELETE, "/multi_webhook/Webhook1", &key, json!({}))
            .await,
        ok()
    );
    assert_eq!(destinations(&app, &key).await, json!([update]));
    assert_eq!(
        app.send(Method::DELETE, "/multi_webhook/Webhook2", &key, json!({}))
            .await,
        ok()
    );
    assert_eq!(destinations(&app, &key).await, json!([]));
}

#[tokio::test]
async fn enable_without_destinations_then_disable_keeps_the_list() {
    let app = spawn_app().await;
    let number = app.provision().await;
    let key = number.api_key.as_str();
    assert_eq!(
        app.send(Method::POST, PATH, key, json!({"enabled": true}))
            .await,
        ok()
    );
    assert_eq!(destinations(&app, key).await, json!([]));
    app.send(Method::PUT, PATH, key, json!({"destinations": [dest("a")]}))
        .await;
    assert_eq!(
        app.send(Method::POST, PATH, key, json!({"enabled": false}))
            .await,
        ok()
    );
    assert_eq!(
        app.get(PATH, key).await,
        (StatusCode::CONFLICT, json!({"message": DISABLED}))
    );
    assert_eq!(
        app.admin_channel(&number.channel_id).await["multi_webhook_enabled"],
        false
    );
    assert_eq!(
        app.send(Method::POST, PATH, key, json!({"enabled": false}))
            .await,
        ok(),
        "idempotent"
    );
    assert_eq!(
        app.send(Method::POST, PATH, key, json!({"enabled": true}))
            .await,
        ok()
    );
    assert_eq!(destinations(&app, key).await, json!([dest("a")]));
    let channel = app.admin_channel(&number.channel_id).await;
    assert_eq!(channel["multi_webhook_enabled"], true);
    assert_eq!(channel["extra_destinations"], json!(["a"]));
}

#[tokio::test]
async fn enabling_an_enabled_config_is_400() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    app.send(Method::POST, PATH, &key, json!({"enabled": true}))
        .await;
    let answer = app
        .send(
            Method::POST,
            PATH,
            &key,
            json!({"enabled": true, "destinations": [dest("a")]}),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "Multi webhook is already enabled, use PUT to add destinations",
    );
    assert_eq!(destinations(&app, &key).await, json!([]));
}

#[tokio::test]
async fn names_must_be_unique_and_are_case_sensitive() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    let answer = app
        .send(
            Method::POST,
            PATH,
            &key,
            json!({"enabled": true, "destinations": [dest("a"), dest("a")]}),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "Destination names must be unique",
    );
    assert_eq!(
        app.get(PATH, &key).await.0,
        StatusCode::CONFLICT,
        "still disabled"
    );

    app.send(
        Method::POST,
        PATH,
        &key,
        json!({"enabled": true, "destinations": [dest("webhook")]}),
    )
    .await;
    let answer = app
        .send(
            Method::PUT,
            PATH,
            &key,
            json!({"destinations": [dest("webhook")]}),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "Destination with name webhook already exists",
    );
    let answer = app
        .send(
            Method::PUT,
            PATH,
            &key,
            json!({"destinations": [dest("x"), dest("x")]}),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "Destination names must be unique",
    );

    assert_eq!(
        app.send(
            Method::PUT,
            PATH,
            &key,
            json!({"destinations": [dest("WEBhook")]})
        )
        .await,
        ok()
    );
    let names: Vec<_> = destinations(&app, &key)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("webhook"), json!("WEBhook")]);

    let answer = app
        .send(
            Method::PATCH,
            PATH,
            &key,
            json!({"name": "WebHook", "url": "https://x.example.com"}),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::NOT_FOUND,
        "Destination with name WebHook not found",
    );
    let answer = app
        .send(Method::DELETE, "/multi_webhook/WEBHOOK", &key, json!({}))
        .await;
    assert_error(
        &answer,
        StatusCode::NOT_FOUND,
        "Destination with name WEBHOOK not found",
    );
    assert_eq!(destinations(&app, &key).await.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn at_most_three_destinations_and_no_partial_append() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    let four =
        json!({"enabled": true, "destinations": [dest("a"), dest("b"), dest("c"), dest("d")]});
    let answer = app.send(Method::POST, PATH, &key, four).await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "You cannot add more than 3 destinations",
    );
    assert_eq!(
        app.get(PATH, &key).await.0,
        StatusCode::CONFLICT,
        "nothing enabled"
    );

    app.send(
        Method::POST,
        PATH,
        &key,
        json!({"enabled": true, "destinations": [dest("a"), dest("b")]}),
    )
    .await;
    let answer = app
        .send(
            Method::PUT,
            PATH,
            &key,
            json!({"destinations": [dest("c"), dest("d")]}),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "You cannot add more than 3 destinations",
    );
    assert_eq!(
        destinations(&app, &key).await,
        json!([dest("a"), dest("b")]),
        "no partial append"
    );
    assert_eq!(
        app.send(
            Method::PUT,
            PATH,
            &key,
            json!({"destinations": [dest("c")]})
        )
        .await,
        ok()
    );
    let answer = app
        .send(
            Method::PUT,
            PATH,
            &key,
            json!({"destinations": [dest("d")]}),
        )
        .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "You cannot add more than 3 destinations",
    );
}

#[tokio::test]
async fn the_maximum_is_a_setting() {
    let app = spawn_app_with(|config| config.max_extra_destinations = 1).await;
    let key = app.provision().await.api_key;
    let two = json!({"enabled": true, "destinations": [dest("a"), dest("b")]});
    let answer = app.send(Method::POST, PATH, &key, two).await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "You cannot add more than 1 destinations",
    );
}

#[tokio::test]
async fn invalid_destinations_change_nothing() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    app.send(
        Method::POST,
        PATH,
        &key,
        json!({"enabled": true, "destinations": [dest("a")]}),
    )
    .await;
    let bad_url =
        json!({"destinations": [dest("b"), {"name": "c", "url": "https://c_d.example.com"}]});
    assert_bad_request(
        &app.send(Method::PUT, PATH, &key, bad_url).await,
        &["underscore"],
    );
    let bad_header =
        json!({"name": "a", "url": "https://ok.example.com", "headers": {"bad header": "x"}});
    assert_bad_request(
        &app.send(Method::PATCH, PATH, &key, bad_header).await,
        &["Invalid header name"],
    );
    let bad_name = json!({"destinations": [{"name": "", "url": "https://ok.example.com"}]});
    assert_bad_request(
        &app.send(Method::PUT, PATH, &key, bad_name).await,
        &["name must not be empty"],
    );
    let no_url = json!({"destinations": [{"name": "x"}]});
    assert_bad_request(
        &app.send(Method::PUT, PATH, &key, no_url).await,
        &["Invalid json:", "missing field `url`"],
    );
    let empty = json!({"destinations": []});
    assert_bad_request(
        &app.send(Method::PUT, PATH, &key, empty).await,
        &["destinations must not be empty"],
    );
    let missing = json!({});
    assert_bad_request(
        &app.send(Method::PUT, PATH, &key, missing).await,
        &["missing field `destinations`"],
    );
    let disable_with = json!({"enabled": false, "destinations": [dest("z")]});
    assert_bad_request(
        &app.send(Method::POST, PATH, &key, disable_with).await,
        &["enabled=true"],
    );
    let no_enabled = json!({"destinations": []});
    assert_bad_request(
        &app.send(Method::POST, PATH, &key, no_enabled).await,
        &["missing field `enabled`"],
    );
    assert_eq!(destinations(&app, &key).await, json!([dest("a")]));
}

#[tokio::test]
async fn delete_without_a_name_is_400() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    let answer = app
        .send(Method::DELETE, "/multi_webhook/", &key, json!({}))
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "dest_name is required");
}

#[tokio::test]
async fn names_with_spaces_and_unicode_round_trip_through_the_path() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    let destination = json!({"name": "CRM hook ✓", "url": "https://crm.example.com"});
    let enabled = app
        .send(
            Method::POST,
            PATH,
            &key,
            json!({"enabled": true, "destinations": [destination]}),
        )
        .await;
    assert_eq!(enabled, ok());
    let answer = app
        .send(
            Method::DELETE,
            "/multi_webhook/CRM%20hook%20%E2%9C%93",
            &key,
            json!({}),
        )
        .await;
    assert_eq!(answer, ok());
    let answer = app
        .send(Method::DELETE, "/multi_webhook/%FF", &key, json!({}))
        .await;
    assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{}", answer.1);
}

#[tokio::test]
async fn concurrent_appends_never_exceed_the_maximum() {
    let app = spawn_app().await;
    let key = app.provision().await.api_key;
    app.send(Method::POST, PATH, &key, json!({"enabled": true}))
        .await;
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..8 {
        let request = app
            .messaging(Method::PUT, PATH, &key)
            .json(&json!({"destinations": [dest(&format!("d{i}"))]}));
        requests.spawn(async move { request.send().await.unwrap().status() });
    }
    let statuses = requests.join_all().await;
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 3);
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::BAD_REQUEST)
            .count(),
        5
    );
    assert_eq!(destinations(&app, &key).await.as_array().unwrap().len(), 3);
}
