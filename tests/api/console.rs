//! The web console over plain HTTP: its embedded files and their headers, the login that
//! turns the admin token into a session cookie, and the CSRF guard on every write made with
//! that cookie. (The pages themselves are driven in a real browser by `browser.rs`.)

use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, SET_COOKIE};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, status_and_json, TestApp, ADMIN_TOKEN};

/// A logged-in console session: the cookie header and the CSRF token.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

/// Logs in as the console does and returns the session and the `Set-Cookie` it got.
pub async fn login(app: &TestApp) -> (Session, String) {
    let response = app
        .client
        .post(app.url("/console/login"))
        .json(&json!({"token": ADMIN_TOKEN}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let set_cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let csrf = body["csrf"].as_str().unwrap().to_owned();
    (Session { cookie, csrf }, set_cookie)
}

fn with_cookie(app: &TestApp, method: Method, path: &str, session: &Session) -> RequestBuilder {
    app.client
        .request(method, app.url(path))
        .header("Cookie", &session.cookie)
}

#[tokio::test]
async fn the_console_is_served_embedded_with_a_strict_policy() {
    let app = spawn_app().await;
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
        ("/console/tail.js", "text/javascript"),
        ("/console/story.js", "text/javascript"),
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert!(headers[CONTENT_TYPE].to_str().unwrap().starts_with(kind));
        assert_eq!(headers[CACHE_CONTROL], "no-cache");
        let policy = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(policy.starts_with("default-src 'self'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    let page = app.client.get(app.url("/console")).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script type="module" src="/console/app.js">"#));
    assert!(!html.contains("<script>"), "no inline script");
    let missing = app.client.get(app.url("/console/nope.js")).send().await;
    assert_eq!(missing.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_sets_no_cookie() {
    let app = spawn_app().await;
    for body in [json!({"token": "wrong"}), json!({"token": ""})] {
        let response = app
            .client
            .post(app.url("/console/login"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(response.headers().get(SET_COOKIE).is_none());
        let answer = status_and_json(response).await;
        assert_eq!(answer.0, StatusCode::UNAUTHORIZED, "{}", answer.1);
        assert_eq!(answer.1["error"], "Invalid admin token");
    }
    let form = app
        .client
        .post(app.url("/console/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("token=wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_login_sets_an_http_only_strict_cookie_and_gives_the_csrf_token() {
    let app = spawn_app().await;
    let (session, set_cookie) = login(&app).await;
    let (name, value) = session.cookie.split_once('=').unwrap();
    assert_eq!(name, "switchboard_session");
    assert_eq!(value.len(), 64, "32 random bytes in hex");
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain http: {set_cookie}");
    assert!(!set_cookie.contains(ADMIN_TOKEN));

    let response = with_cookie(&app, Method::GET, "/console/session", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["csrf"], session.csrf.as_str());

    // A form login works too; behind a TLS proxy the cookie is Secure.
    let response = app
        .client
        .post(app.url("/console/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("X-Forwarded-Proto", "https")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test]
async fn the_cookie_reads_admin_endpoints_and_writes_only_with_the_csrf_token() {
    let app = spawn_app().await;
    let number = app.provision().await;
    let (session, _) = login(&app).await;

    let read = with_cookie(&app, Method::GET, "/admin/destinations", &session);
    assert_eq!(read.send().await.unwrap().status(), StatusCode::OK);
    let path = format!("/admin/channels/{}/events", number.channel_id);
    let value = json!({"messages": [{"from": "1", "id": "wamid.c", "type": "text"}]});

    for csrf in [None, Some("wrong"), Some("")] {
        let mut write = with_cookie(&app, Method::POST, &path, &session).json(&value);
        if let Some(csrf) = csrf {
            write = write.header("X-CSRF-Token", csrf);
        }
        let (status, body) = status_and_json(write.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{csrf:?}: {body}");
        assert_eq!(body["error"], "Missing or invalid CSRF token");
    }
    let retry = with_cookie(&app, Method::POST, "/admin/deliveries/retry", &session);
    let (status, _) = status_and_json(retry.json(&json!({})).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let logout = with_cookie(&app, Method::POST, "/console/logout", &session);
    assert_eq!(logout.send().await.unwrap().status(), StatusCode::FORBIDDEN);

    let write = with_cookie(&app, Method::POST, &path, &session)
        .header("X-CSRF-Token", &session.csrf)
        .json(&value);
    let (status, body) = status_and_json(write.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // The Bearer token works as before, without any CSRF header.
    let bearer = app.admin(Method::POST, &path).json(&value);
    assert_eq!(bearer.send().await.unwrap().status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn logout_ends_the_session_and_unknown_sessions_are_refused() {
    let app = spawn_app().await;
    let (session, _) = login(&app).await;
    let logout = with_cookie(&app, Method::POST, "/console/logout", &session)
        .header("X-CSRF-Token", &session.csrf);
    let response = logout.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));

    for path in ["/admin/destinations", "/console/session", "/admin/overview"] {
        let read = with_cookie(&app, Method::GET, path, &session);
        let (status, body) = status_and_json(read.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
    }
    let forged = Session {
        cookie: format!("switchboard_session={}", "ab".repeat(32)),
        csrf: String::new(),
    };
    let read = with_cookie(&app, Method::GET, "/admin/destinations", &forged);
    assert_eq!(
        read.send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let anonymous = app.client.get(app.url("/console/session")).send().await;
    assert_eq!(anonymous.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_session_endpoint_refuses_a_cross_site_request() {
    let app = spawn_app().await;
    let (session, _) = login(&app).await;
    let request = with_cookie(&app, Method::GET, "/console/session", &session)
        .header("Sec-Fetch-Site", "cross-site");
    let (status, _) = status_and_json(request.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_overview_counts_events_deliveries_and_the_backlog() {
    let app = spawn_app().await;
    let number = app.provision().await;
    let value = json!({"messages": [{"from": "1", "id": "wamid.o", "type": "text"}]});
    let event = app.post_event(&number.channel_id, value).await;
    // No webhook: the delivery is dropped.
    app.wait_for_event(event, |e| {
        crate::helpers::is_in_state(e, "primary", "dropped")
    })
    .await;
    let (session, _) = login(&app).await;
    let read = with_cookie(&app, Method::GET, "/admin/overview", &session);
    let (status, body) = status_and_json(read.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The message, and the partner's channel_created event.
    assert_eq!(body["events_ingested"], 2, "{body}");
    assert!(body["dropped"].as_u64().unwrap() >= 1, "{body}");
    assert!(body["backlog"].is_u64(), "{body}");
    assert!(body["at_ms"].as_i64().unwrap() > 0);
    assert_eq!(body["unhealthy_destinations"], json!([]));
}

#[tokio::test]
async fn wrong_tokens_are_throttled_after_ten_tries() {
    let app = spawn_app().await;
    let try_login = |token: &'static str| {
        let request = app.client.post(app.url("/console/login"));
        async move {
            request
                .json(&json!({ "token": token }))
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..10 {
        assert_eq!(try_login("guess").await.status(), StatusCode::UNAUTHORIZED);
    }
    let throttled = try_login("guess").await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=6).contains(&wait), "{wait}");
    let (_, body) = status_and_json(throttled).await;
    assert!(body["error"]
        .as_str()
        .unwrap()
        .starts_with("Too many failed logins"));
    // While throttled, no token is tried at all; the Bearer API is unaffected.
    let right = try_login(ADMIN_TOKEN).await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    let bearer = app
        .admin(Method::GET, "/admin/overview")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);
}
