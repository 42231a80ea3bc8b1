//! Provisioning over the admin API: partners, WABAs, channels and their keys.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{assert_error, expect_json, spawn_app, status_and_json, unique_phone_number};

#[tokio::test]
async fn admin_endpoints_require_the_admin_token() {
    let app = spawn_app().await;
    let requests = [
        (Method::POST, "/admin/partners"),
        (Method::POST, "/admin/partners/x/wabas"),
        (Method::POST, "/admin/wabas/1/channels"),
        (Method::POST, "/admin/channels/x/api_key"),
        (Method::GET, "/admin/channels/x"),
    ];
    for (method, path) in requests {
        let missing = app
            .client
            .request(method.clone(), app.url(path))
            .json(&json!({"name": "x"}));
        let (status, body) = status_and_json(missing.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(body["error"]
            .as_str()
            .unwrap()
            .contains("Missing admin token"));

        let wrong = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth("not-the-admin-token-at-all")
            .json(&json!({"name": "x"}));
        let answer = status_and_json(wrong.send().await.unwrap()).await;
        assert_error(&answer, StatusCode::UNAUTHORIZED, "Invalid admin token");
    }
}

#[tokio::test]
async fn provisioning_returns_ids_and_keys_once() {
    let app = spawn_app().await;
    let partner = app.create_partner("Acme Inc").await;
    assert_eq!(partner["name"], "Acme Inc");
    let partner_id = partner["id"].as_str().unwrap();
    assert!(
        partner["api_key"].as_str().unwrap().len() >= 22,
        "128 bits in base62"
    );

    let waba_id = app.create_waba(partner_id, Some(102290129340398)).await;
    assert_eq!(waba_id, 102290129340398);
    let generated = app.create_waba(partner_id, None).await;
    assert!(generated > 0);

    let response = app
        .admin(Method::POST, &format!("/admin/wabas/{waba_id}/channels"))
        .json(&json!({"phone_number": "+4915112345678", "phone_number_id": "106540352242922"}))
        .send()
        .await
        .unwrap();
    let channel = expect_json(response, StatusCode::CREATED).await;
    assert_eq!(channel["waba_id"], waba_id);
    assert_eq!(channel["phone_number"], "+4915112345678");
    assert_eq!(channel["phone_number_id"], "106540352242922");
    let key = channel["api_key"].as_str().unwrap();
    assert!(key.len() >= 22 && key.bytes().all(|b| b.is_ascii_alphanumeric()));

    let (status, waba) = app.get("/waba_webhook", key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(waba["waba_id"], waba_id);
    assert_eq!(waba["numbers_on_this_waba"], json!(["+4915112345678"]));
}

#[tokio::test]
async fn provisioning_errors_are_clear() {
    let app = spawn_app().await;
    let partner = app.create_partner("Acme").await;
    let partner_id = partner["id"].as_str().unwrap();
    let waba_id = app.create_waba(partner_id, Some(77)).await;

    let post = |path: String, body: serde_json::Value| {
        let request = app.admin(Method::POST, &path).json(&body);
        async move { status_and_json(request.send().await.unwrap()).await }
    };
    let answer = post("/admin/partners/unknown/wabas".into(), json!({})).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "Partner unknown not found");
    let answer = post(
        format!("/admin/partners/{partner_id}/wabas"),
        json!({"waba_id": 77}),
    )
    .await;
    assert_error(&answer, StatusCode::CONFLICT, "WABA 77 already exists");
    let answer = post(
        format!("/admin/partners/{partner_id}/wabas"),
        json!({"waba_id": -1}),
    )
    .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "Invalid waba_id -1: must be a positive integer",
    );
    let answer = post(
        "/admin/wabas/999/channels".into(),
        json!({"phone_number": "+4915100000001"}),
    )
    .await;
    assert_error(&answer, StatusCode::NOT_FOUND, "WABA 999 not found");
    let answer = post(
        "/admin/wabas/abc/channels".into(),
        json!({"phone_number": "+4915100000001"}),
    )
    .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "Invalid waba_id \"abc\": must be a positive integer",
    );
    let answer = post(
        format!("/admin/wabas/{waba_id}/channels"),
        json!({"phone_number": "12"}),
    )
    .await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "Invalid phone_number \"12\": expected an optional + and 6 to 15 digits",
    );

    let number = unique_phone_number();
    let body = json!({"phone_number": number, "phone_number_id": "555000111"});
    assert_eq!(
        post(format!("/admin/wabas/{waba_id}/channels"), body)
            .await
            .0,
        StatusCode::CREATED
    );
    // Each rule alone (with both taken, which one a database reports first is its own).
    let body = json!({"phone_number": number, "phone_number_id": "555000112"});
    let answer = post(format!("/admin/wabas/{waba_id}/channels"), body).await;
    assert_error(
        &answer,
        StatusCode::CONFLICT,
        &format!("A channel with phone_number {number} already exists"),
    );
    let body = json!({"phone_number": unique_phone_number(), "phone_number_id": "555000111"});
    let answer = post(format!("/admin/wabas/{waba_id}/channels"), body).await;
    assert_error(
        &answer,
        StatusCode::CONFLICT,
        "A channel with phone_number_id 555000111 already exists",
    );

    let answer = post("/admin/partners".into(), json!({"name": "  "})).await;
    assert_error(
        &answer,
        StatusCode::BAD_REQUEST,
        "name must be 1 to 200 characters",
    );
    let answer = post("/admin/channels/unknown/api_key".into(), json!({})).await;
    assert_error(&answer, StatusCode::NOT_FOUND, "Channel unknown not found");
}

#[tokio::test]
async fn a_new_key_revokes_the_old_one_and_removes_the_phone_number_webhook() {
    let app = spawn_app().await;
    let number = app.provision().await;
    let old = number.api_key.as_str();
    let hook = json!({"url": "https://example.com/hook"});
    assert_eq!(
        app.send(Method::POST, "/v1/configs/webhook", old, hook)
            .await
            .0,
        StatusCode::OK
    );
    let waba = json!({"url": "https://waba.example.com/hook"});
    assert_eq!(
        app.send(Method::POST, "/waba_webhook", old, waba).await.0,
        StatusCode::OK
    );

    let response = app
        .admin(
            Method::POST,
            &format!("/admin/channels/{}/api_key", number.channel_id),
        )
        .send()
        .await
        .unwrap();
    let issued = expect_json(response, StatusCode::OK).await;
    let new = issued["api_key"].as_str().unwrap();
    assert_ne!(new, old);

    assert_error(
        &app.get("/v1/configs/webhook", old).await,
        StatusCode::UNAUTHORIZED,
        "Invalid D360-API-KEY",
    );
    assert_eq!(
        app.get("/v1/configs/webhook", new).await,
        (StatusCode::OK, json!({"url": "", "headers": {}}))
    );
    let (_, waba) = app.get("/waba_webhook", new).await;
    assert_eq!(
        waba["url"], "https://waba.example.com/hook",
        "the WABA webhook stays"
    );
    let channel = app.admin_channel(&number.channel_id).await;
    assert_eq!(channel["route"]["type"], "waba");
}

#[tokio::test]
async fn keys_are_stored_only_as_hashes() {
    if crate::BACKEND != crate::helpers::Backend::Sqlite {
        return; // reads the SQLite files; PostgreSQL stores the same hashes.
    }
    let app = spawn_app().await;
    let partner = app.create_partner("Acme").await;
    let number = app.provision().await;
    let database = app_database_bytes(&app);
    for key in [
        partner["api_key"].as_str().unwrap(),
        number.api_key.as_str(),
    ] {
        assert!(
            !database.windows(key.len()).any(|w| w == key.as_bytes()),
            "a clear-text key is in the database"
        );
    }
}

/// Every byte of the database files (main file and WAL).
fn app_database_bytes(app: &crate::helpers::TestApp) -> Vec<u8> {
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", app.database_path().display());
        if let Ok(content) = std::fs::read(path) {
            bytes.extend(content);
        }
    }
    bytes
}
