//! The web console at `/console`: a single page, its script and its style sheet, embedded in
//! the binary (no CDN, no build step, works offline), and the login that turns the admin
//! token into a session cookie.
//!
//! The page reads and writes through the same admin endpoints as the CLI; `AdminAuth`
//! accepts the session cookie (`HttpOnly`, `SameSite=Strict`) in place of the Bearer token,
//! and every write with it must carry the session's CSRF token (`X-CSRF-Token`). The token
//! itself is sent once, in the login's body, and kept nowhere in the browser.

mod session;

use axum::extract::{Path, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub use session::Sessions;

use super::error::ApiError;
use super::extract::{parse_json, ConsoleSession, RawBody};
use super::AppState;
use crate::domain::KeyHash;

/// The name of the session cookie.
pub const COOKIE_NAME: &str = "switchboard_session";

/// Only the console's own files: no inline script or style, no other origin, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("console/index.html");

/// The console's other files, embedded at build time: name, `Content-Type`, body. The
/// script is ES modules, one per page (`app.js` boots and routes).
const FILES: [(&str, &str, &str); 10] = [
    ("app.css", CSS, include_str!("console/app.css")),
    ("app.js", JS, include_str!("console/app.js")),
    ("ui.js", JS, include_str!("console/ui.js")),
    ("whatsapp.js", JS, include_str!("console/whatsapp.js")),
    ("overview.js", JS, include_str!("console/overview.js")),
    ("tail.js", JS, include_str!("console/tail.js")),
    (
        "destinations.js",
        JS,
        include_str!("console/destinations.js"),
    ),
    ("story.js", JS, include_str!("console/story.js")),
    ("deliveries.js", JS, include_str!("console/deliveries.js")),
    ("config.js", JS, include_str!("console/config.js")),
];
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The console's routes (outside the OpenAPI document: they serve a browser, not clients).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/{file}", get(file))
        .route("/console/login", post(login))
        .route("/console/logout", post(logout))
        .route("/console/session", get(current_session))
}

/// An embedded file with its type and the headers every console answer carries.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated every time: a new binary serves new files at once.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure_headers(headers);
    response
}

/// The headers that keep the console's pages to themselves.
fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn file(Path(name): Path<String>) -> Result<Response, ApiError> {
    FILES
        .iter()
        .find(|(file, _, _)| *file == name)
        .map(|(_, content_type, body)| asset(content_type, body))
        .ok_or_else(|| ApiError::NotFound("Not found".into()))
}

/// The login's body, as JSON (`{"token"}`) or as a form (`token=…`).
#[derive(Debug, Deserialize)]
struct LoginRequest {
    token: String,
}

/// What the page's script needs of its session.
#[derive(Debug, Serialize)]
struct SessionView {
    /// Sent back in `X-CSRF-Token` on every write.
    csrf: String,
}

/// Checks the admin token and opens a session: the cookie, and the CSRF token in the body.
async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let request = login_request(&headers, &body)?;
    let throttle = &state.sessions.logins;
    throttle.check().map_err(ApiError::TooManyRequests)?;
    if !KeyHash::of(&request.token).matches(&state.admin_token_hash) {
        throttle.failed();
        tracing::warn!("console login refused: wrong admin token");
        return Err(ApiError::Unauthorized("Invalid admin token".into()));
    }
    let issued = state.sessions.open();
    tracing::info!("console session opened");
    let secure = if forwarded_https(&headers) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE_NAME}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        issued.id,
        session::LIFETIME.as_secs()
    );
    session_answer(issued.csrf, Some(cookie))
}

/// The login body, read as a form when it says so, else as JSON.
fn login_request(headers: &HeaderMap, body: &[u8]) -> Result<LoginRequest, ApiError> {
    let form = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return parse_json(body);
    }
    url::form_urlencoded::parse(body)
        .find(|(name, _)| name == "token")
        .map(|(_, token)| LoginRequest {
            token: token.into_owned(),
        })
        .ok_or_else(|| ApiError::BadRequest("Missing token".into()))
}

/// Whether the proxy in front says the browser came over https (then the cookie is `Secure`).
fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get("X-Forwarded-Proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// `{"csrf"}`, never cached, with the cookie to set if any.
fn session_answer(csrf: String, cookie: Option<String>) -> Result<Response, ApiError> {
    let mut response = Json(SessionView { csrf }).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(cookie) = cookie {
        let value = HeaderValue::from_str(&cookie)
            .map_err(|_| ApiError::BadRequest("Cannot set the session cookie".into()))?;
        headers.insert(SET_COOKIE, value);
    }
    Ok(response)
}

/// The session's CSRF token, for the page's script (a same-origin read: no CORS header is
/// ever sent, and a request another site started is refused).
async fn current_session(
    headers: HeaderMap,
    session: ConsoleSession,
) -> Result<Response, ApiError> {
    let site = headers
        .get("Sec-Fetch-Site")
        .and_then(|value| value.to_str().ok());
    if site.is_some_and(|site| site != "same-origin" && site != "none") {
        return Err(ApiError::Forbidden("Cross-site request refused".into()));
    }
    session_answer(session.csrf, None)
}

/// Ends the session (CSRF-guarded, as every write) and clears the cookie.
async fn logout(State(state): State<AppState>, session: ConsoleSession) -> Response {
    state.sessions.close(&session.id);
    let cookie = format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}
