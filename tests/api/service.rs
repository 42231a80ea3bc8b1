//! Service endpoints, unknown routes, the OpenAPI document, and persistence across restarts.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_json, spawn_app, status_and_json, Backend};

#[tokio::test]
async fn health_and_ready_answer_200() {
    let app = spawn_app().await;
    for path in ["/health", "/ready"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            expect_json(response, StatusCode::OK).await,
            json!({"status": "ok"})
        );
    }
}

/// Asks `/ready` until three answers in a row have `status`.
async fn ready_until(app: &crate::helpers::TestApp, status: StatusCode) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut in_a_row = 0;
    while in_a_row < 3 {
        let response = app.client.get(app.url("/ready")).send().await.unwrap();
        in_a_row = if response.status() == status {
            in_a_row + 1
        } else {
            0
        };
        assert!(
            std::time::Instant::now() < deadline,
            "/ready never {status}"
        );
    }
}

#[tokio::test]
async fn ready_answers_503_while_the_database_refuses_writes() {
    let app = spawn_app().await;
    ready_until(&app, StatusCode::OK).await;
    match crate::BACKEND {
        Backend::Sqlite => {
            // Another process holds the write lock: reads still work, writes wait it out.
            let other = rusqlite::Connection::open(app.database_path()).unwrap();
            other.execute_batch("BEGIN EXCLUSIVE;").unwrap();
            let response = app.client.get(app.url("/ready")).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            other.execute_batch("COMMIT;").unwrap();
        }
        Backend::Postgres => {
            let (client, connection) =
                tokio_postgres::connect(&app.database_url(), tokio_postgres::NoTls)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let reconnect_all = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()";
            client
                .batch_execute(&format!(
                    "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET \
                     default_transaction_read_only = on', current_database()); END $$;
                     {reconnect_all};"
                ))
                .await
                .unwrap();
            ready_until(&app, StatusCode::SERVICE_UNAVAILABLE).await;
            client
                .batch_execute(&format!(
                    "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I RESET \
                     default_transaction_read_only', current_database()); END $$;
                     {reconnect_all};"
                ))
                .await
                .unwrap();
        }
    }
    ready_until(&app, StatusCode::OK).await;
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json_errors() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/nope")).send().await.unwrap();
    let (status, body) = status_and_json(response).await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"error": "Not found"}))
    );

    let response = app
        .client
        .delete(app.url("/v1/configs/webhook"))
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body, json!({"error": "Method not allowed"}));
}

#[tokio::test]
async fn openapi_document_lists_every_endpoint() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    let doc: Value = expect_json(response, StatusCode::OK).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let expected: &[(&str, &[&str])] = &[
        ("/v1/configs/webhook", &["get", "post"]),
        ("/waba_webhook", &["get", "post"]),
        ("/multi_webhook", &["get", "post", "put", "patch"]),
        ("/multi_webhook/{name}", &["delete"]),
        ("/admin/partners", &["post"]),
        ("/admin/partners/{partner_id}/wabas", &["post"]),
        ("/admin/wabas/{waba_id}/channels", &["post"]),
        ("/admin/channels/{channel_id}/api_key", &["post"]),
        ("/admin/channels/{channel_id}", &["get"]),
        (
            "/api/v2/partners/{partner_id}/webhook_url",
            &["get", "post"],
        ),
        (
            "/api/v2/partners/{partner_id}/webhook_headers",
            &["get", "post"],
        ),
        ("/admin/partners/{partner_id}/events", &["post"]),
        ("/admin/partners/{partner_id}/signing_secret", &["post"]),
        ("/admin/channels/{channel_id}/events", &["post"]),
        ("/admin/channels/{channel_id}/signing_secret", &["post"]),
        ("/admin/channels/{channel_id}/messaging_enabled", &["post"]),
        ("/admin/channels/{channel_id}/ordering", &["post"]),
        ("/admin/events/{event_id}", &["get"]),
        ("/admin/events", &["get"]),
        ("/admin/deliveries", &["get"]),
        ("/admin/deliveries/{delivery_id}/retry", &["post"]),
        ("/admin/deliveries/retry", &["post"]),
        ("/admin/destinations", &["get"]),
        ("/admin/destinations/{id}", &["get"]),
        ("/admin/destinations/{id}/pause", &["post"]),
        ("/admin/destinations/{id}/resume", &["post"]),
        ("/admin/deliveries/recover", &["post"]),
        ("/admin/stream", &["get"]),
        ("/admin/overview", &["get"]),
        ("/webhooks/whatsapp", &["get", "post"]),
        ("/metrics", &["get"]),
        ("/health", &["get"]),
        ("/ready", &["get"]),
    ];
    for (path, methods) in expected {
        for method in *methods {
            assert!(
                doc["paths"][path][method].is_object(),
                "{method} {path} missing from /openapi.json"
            );
        }
    }
    assert!(doc["components"]["securitySchemes"]["D360-API-KEY"].is_object());
    assert!(doc["components"]["securitySchemes"]["PartnerApiKeyV2"].is_object());
    assert!(doc["components"]["schemas"]["WebhookConfig"].is_object());
}

#[tokio::test]
async fn configuration_survives_a_restart() {
    let app = spawn_app().await;
    let number = app.provision().await;
    let key = number.api_key.as_str();
    let webhook =
        json!({"url": "https://example.com/hook", "headers": {"Authorization": "Basic dGVzdA=="}});
    assert_eq!(
        app.send(Method::POST, "/v1/configs/webhook", key, webhook.clone())
            .await
            .0,
        StatusCode::OK
    );
    let waba = json!({"url": "https://waba.example.com/hook", "override_all": false});
    assert_eq!(
        app.send(Method::POST, "/waba_webhook", key, waba).await.0,
        StatusCode::OK
    );
    let multi = json!({"enabled": true, "destinations": [{"name": "crm", "url": "https://crm.example.com"}]});
    assert_eq!(
        app.send(Method::POST, "/multi_webhook", key, multi).await.0,
        StatusCode::OK
    );

    let app = app.restart().await;

    assert_eq!(
        app.get("/v1/configs/webhook", key).await,
        (StatusCode::OK, webhook)
    );
    let (status, waba) = app.get("/waba_webhook", key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(waba["url"], "https://waba.example.com/hook");
    assert_eq!(waba["numbers_on_this_waba"], json!([number.phone_number]));
    let (status, multi) = app.get("/multi_webhook", key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(multi["destinations"][0]["name"], "crm");
    app.stop().await;
}
