//! The provisioning lists of the admin API: partners, WABAs and channels, paged by a cursor,
//! filtered, searched by number, with every secret masked.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    assert_bad_request, assert_error, expect_json, spawn_app, status_and_json, TestApp,
};

/// GET `path` with the admin token, expecting 200.
async fn get(app: &TestApp, path: &str) -> Value {
    let response = app.admin(Method::GET, path).send().await.expect("request");
    expect_json(response, StatusCode::OK).await
}

/// GET `path` with the admin token: status and body.
async fn answer(app: &TestApp, path: &str) -> (StatusCode, Value) {
    status_and_json(app.admin(Method::GET, path).send().await.expect("request")).await
}

/// Every page of `path` (which has a `?`) with `limit`, following `next_after`.
async fn all_pages(app: &TestApp, path: &str, key: &str, limit: usize) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let cursor = after.map_or(String::new(), |a| format!("&after={a}"));
        let page = get(app, &format!("{path}limit={limit}{cursor}")).await;
        pages.push(page[key].as_array().expect("items").clone());
        match &page["next_after"] {
            Value::Null => return pages,
            Value::String(next) => after = Some(next.clone()),
            Value::Number(next) => after = Some(next.to_string()),
            other => panic!("next_after {other}"),
        }
        assert!(pages.len() < 10, "paging does not end");
    }
}

#[tokio::test]
async fn partners_are_paged_by_id_to_a_last_page() {
    let app = spawn_app().await;
    for n in 0..5 {
        app.create_partner(&format!("Partner {n}")).await;
    }
    let pages = all_pages(&app, "/admin/partners?", "partners", 2).await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 2, 1]);
    let ids: Vec<&str> = pages
        .iter()
        .flatten()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(ids, sorted, "ascending, each once");
    let first = &pages[0][0];
    assert_eq!(first["wabas"], 0);
    assert_eq!(first["signing"], false);
    assert_eq!(first["webhook_url"], Value::Null);
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(first.get("api_key").is_none());
}

#[tokio::test]
async fn wabas_are_paged_and_filtered_by_partner() {
    let app = spawn_app().await;
    let one = app.create_partner("One").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let two = app.create_partner("Two").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for id in 1..=5 {
        app.create_waba(&one, Some(id)).await;
    }
    app.create_waba(&two, Some(100)).await;

    let pages = all_pages(&app, &format!("/admin/wabas?partner={one}&"), "wabas", 2).await;
    let ids: Vec<i64> = pages
        .iter()
        .flatten()
        .map(|w| w["waba_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    assert_eq!(pages.len(), 3);

    let partner = get(&app, &format!("/admin/partners/{one}")).await;
    assert_eq!(partner["wabas"], 5);
    assert_eq!(partner["name"], "One");
    let waba = get(&app, "/admin/wabas/100").await;
    assert_eq!(waba["partner_id"], two.as_str());
    assert_eq!(waba["channels"], 0);
    assert_eq!(waba["webhook"], Value::Null);
}

#[tokio::test]
async fn channels_are_filtered_by_partner_and_waba_and_searched_by_number() {
    let app = spawn_app().await;
    let one = app.create_partner("One").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let two = app.create_partner("Two").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = app.create_waba(&one, Some(11)).await;
    let b = app.create_waba(&one, Some(12)).await;
    let c = app.create_waba(&two, Some(21)).await;
    app.create_channel(a, "+4915100000001").await;
    app.create_channel(a, "4915100000002").await;
    app.create_channel(b, "+4916000000003").await;
    let other = app.create_channel(c, "+3361000000004").await;

    let numbers = |page: &Value| -> Vec<String> {
        let mut found: Vec<String> = page["channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["phone_number"].as_str().unwrap().to_owned())
            .collect();
        found.sort();
        found
    };
    let all = get(&app, "/admin/channels").await;
    assert_eq!(numbers(&all).len(), 4);
    assert_eq!(all["next_after"], Value::Null);
    let by_partner = get(&app, &format!("/admin/channels?partner={one}")).await;
    assert_eq!(
        numbers(&by_partner),
        ["+4915100000001", "+4916000000003", "4915100000002"]
    );
    let by_waba = get(&app, &format!("/admin/channels?waba={c}")).await;
    assert_eq!(numbers(&by_waba), ["+3361000000004"]);
    let summary = &by_waba["channels"][0];
    assert_eq!(summary["id"], other["id"]);
    assert_eq!(summary["partner_id"], two.as_str());
    assert_eq!(summary["waba_id"], 21);
    assert_eq!(summary["signing"], false);
    assert_eq!(summary["route"]["type"], "none");

    for prefix in ["%2B4915", "4915", "+4915"] {
        let found = get(&app, &format!("/admin/channels?phone={prefix}")).await;
        assert_eq!(
            numbers(&found),
            ["+4915100000001", "4915100000002"],
            "phone={prefix}"
        );
    }
    let one_number = get(&app, "/admin/channels?phone=4916000000003").await;
    assert_eq!(numbers(&one_number), ["+4916000000003"]);
    let none = get(&app, "/admin/channels?phone=999").await;
    assert_eq!(numbers(&none), Vec::<String>::new());
    let combined = get(&app, &format!("/admin/channels?phone=49&waba={b}")).await;
    assert_eq!(numbers(&combined), ["+4916000000003"]);

    let pages = all_pages(&app, "/admin/channels?", "channels", 3).await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [3, 1]);
}

#[tokio::test]
async fn lists_never_show_header_values_or_url_queries() {
    let app = spawn_app().await;
    let provisioned = app.provision().await;
    app.set_webhook(
        &provisioned.api_key,
        "https://phone.example.com/hook?token=phone-s3cret",
        json!({"Authorization": "Bearer phone-header-s3cret"}),
    )
    .await;
    let waba = json!({"url": "https://waba.example.com/hook?key=waba-s3cret",
                      "headers": {"X-Token": "waba-header-s3cret"}});
    let set = app
        .send(Method::POST, "/waba_webhook", &provisioned.api_key, waba)
        .await;
    assert_eq!(set.0, StatusCode::OK, "{}", set.1);
    let channel = get(&app, &format!("/admin/channels/{}", provisioned.channel_id)).await;
    let partner_id = get(&app, &format!("/admin/wabas/{}", provisioned.waba_id)).await
        ["partner_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        channel["webhook"]["headers"]["Authorization"],
        "Bearer phone-header-s3cret"
    );

    let channels = get(&app, "/admin/channels").await;
    let wabas = get(&app, "/admin/wabas").await;
    let waba = get(&app, &format!("/admin/wabas/{}", provisioned.waba_id)).await;
    let partner = get(&app, &format!("/admin/partners/{partner_id}")).await;
    for shown in [&channels, &wabas, &waba, &partner] {
        let text = shown.to_string();
        assert!(!text.contains("s3cret"), "{text}");
    }
    let summary = &channels["channels"][0];
    assert_eq!(
        summary["webhook"],
        json!({"url": "https://phone.example.com/hook?token=***",
               "headers": {"Authorization": "***"}})
    );
    assert_eq!(summary["route"]["type"], "phone");
    assert_eq!(
        waba["webhook"],
        json!({"url": "https://waba.example.com/hook?key=***",
               "headers": {"X-Token": "***"}, "override_all": false})
    );
    assert_eq!(waba["channels"], 1);
}

#[tokio::test]
async fn the_partner_webhook_is_masked_too() {
    let app = spawn_app().await;
    let created = app.create_partner("Hooked").await;
    let id = created["id"].as_str().unwrap();
    let key = created["api_key"].as_str().unwrap();
    for (path, body) in [
        (
            "webhook_url",
            json!({"webhook_url": "https://partner.example.com/events?sig=p-s3cret"}),
        ),
        (
            "webhook_headers",
            json!({"webhook_headers": {"Authorization": "Bearer p-s3cret"}}),
        ),
    ] {
        let response = app
            .client
            .post(app.url(&format!("/api/v2/partners/{id}/{path}")))
            .header("X-API-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let partner = get(&app, &format!("/admin/partners/{id}")).await;
    assert_eq!(
        partner["webhook_url"],
        "https://partner.example.com/events?sig=***"
    );
    assert_eq!(partner["webhook_headers"], json!({"Authorization": "***"}));
    let list = get(&app, "/admin/partners").await.to_string();
    assert!(!list.contains("s3cret"), "{list}");
}

#[tokio::test]
async fn unknown_ids_are_404s() {
    let app = spawn_app().await;
    assert_error(
        &answer(&app, "/admin/partners/nope").await,
        StatusCode::NOT_FOUND,
        "Partner nope not found",
    );
    assert_error(
        &answer(&app, "/admin/wabas/424242").await,
        StatusCode::NOT_FOUND,
        "WABA 424242 not found",
    );
    assert_error(
        &answer(&app, "/admin/wabas/abc").await,
        StatusCode::NOT_FOUND,
        "WABA abc not found",
    );
}

#[tokio::test]
async fn bad_filters_are_400s_naming_the_parameter() {
    let app = spawn_app().await;
    let cases = [
        ("/admin/channels?waba=abc", "waba"),
        ("/admin/channels?phone=49x", "phone"),
        ("/admin/channels?phone=", "phone"),
        ("/admin/channels?limit=0", "limit"),
        ("/admin/partners?limit=1001", "limit"),
        ("/admin/wabas?after=x", "after"),
        ("/admin/wabas?limit=-1", "limit"),
    ];
    for (path, parameter) in cases {
        assert_bad_request(&answer(&app, path).await, &[parameter]);
    }
    let ignored = get(&app, "/admin/partners?colour=blue").await;
    assert_eq!(ignored["partners"], json!([]));
}

#[tokio::test]
async fn lists_require_the_admin_token() {
    let app = spawn_app().await;
    for path in [
        "/admin/partners",
        "/admin/partners/x",
        "/admin/wabas",
        "/admin/wabas/1",
        "/admin/channels",
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        let (status, _) = status_and_json(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn the_lists_are_in_the_openapi_document() {
    let app = spawn_app().await;
    let document: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/admin/partners",
        "/admin/partners/{partner_id}",
        "/admin/wabas",
        "/admin/wabas/{waba_id}",
        "/admin/channels",
    ] {
        assert!(document["paths"][path]["get"].is_object(), "{path}");
    }
    assert!(document["paths"]["/admin/partners"]["post"].is_object());
}
