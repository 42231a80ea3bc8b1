//! The web console in a real headless Chromium, against a real server: what an operator
//! does with it, step by step, checked on the page itself (the DOM is polled with a
//! deadline; no timing assertions). Runs on SQLite only: the pages do not depend on the
//! backend, and `console.rs` checks the HTTP side on both.
//!
//! `cargo test --test api -- --ignored screenshots` writes the README's screenshots
//! (`browser/screenshots.rs`).

mod cdp;
mod screenshots;

use std::time::Duration;

use serde_json::{json, Value};
use switchboard::domain::DestinationId;

use crate::helpers::{fast_delivery, is_in_state, spawn_app_with, TestApp, ADMIN_TOKEN};
use crate::receiver::{Behavior, TestReceiver};
use cdp::{Browser, Page};

/// The laptop screen the console is made for.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 800;

fn message(id: &str) -> Value {
    json!({"messages": [{"from": "4917600000001", "id": id, "type": "text", "text": {"body": "Hello there"}}]})
}

/// A tab on the console's login page.
async fn console<'a>(app: &TestApp, browser: &'a Browser) -> Page<'a> {
    let page = browser.new_page(WIDTH, HEIGHT).await;
    page.navigate(&app.url("/console")).await;
    page.wait_for("!document.getElementById('login').hidden", "the login form")
        .await;
    page
}

/// Logs in through the form, as an operator does.
async fn log_in(page: &Page<'_>, token: &str) {
    page.fill("#login-token", token).await;
    page.eval("document.getElementById('login-form').requestSubmit()")
        .await;
}

/// A tab logged in, on the overview.
async fn logged_in<'a>(app: &TestApp, browser: &'a Browser) -> Page<'a> {
    let page = console(app, browser).await;
    log_in(&page, ADMIN_TOKEN).await;
    page.wait_for(
        "!document.getElementById('shell').hidden",
        "the console after login",
    )
    .await;
    page
}

/// Goes to a hash route of the console and waits for its page (a new one: the title of the
/// page it leaves is marked, so a page of the same title is not mistaken for the new one).
async fn open(page: &Page<'_>, hash: &str, title: &str) {
    let (hash, title) = (json!(hash), json!(title));
    page.eval(&format!(
        "if (location.hash !== {hash}) {{ document.getElementById('page-title')?.setAttribute('data-left', ''); \
         location.hash = {hash}; }}"
    ))
    .await;
    page.wait_for(
        &format!(
            "(t => t && !t.hasAttribute('data-left') && t.textContent === {title})(document.getElementById('page-title'))"
        ),
        &format!("the page {title}"),
    )
    .await;
}

/// The text of the element `selector` finds, once it contains `wanted`.
async fn wait_for_text(page: &Page<'_>, selector: &str, wanted: &str) -> String {
    let (s, w) = (json!(selector), json!(wanted));
    let value = page
        .wait_for(
            &format!("(document.querySelector({s})?.textContent || '').includes({w}) && document.querySelector({s}).textContent"),
            &format!("{selector} to show {wanted:?}"),
        )
        .await;
    value.as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_login_refuses_a_wrong_token_and_keeps_the_token_out_of_the_page() {
    let app = spawn_app_with(|_| {}).await;
    let browser = Browser::launch();
    let page = console(&app, &browser).await;

    log_in(&page, "not-the-token").await;
    wait_for_text(&page, "#login-error", "Wrong admin token").await;
    assert_eq!(
        page.eval("document.getElementById('shell').hidden").await,
        true
    );

    log_in(&page, ADMIN_TOKEN).await;
    page.wait_for("!document.getElementById('shell').hidden", "the console")
        .await;
    wait_for_text(&page, ".cards", "Events in").await;
    // The session is an HttpOnly cookie: the page's script sees neither it nor the token.
    assert_eq!(page.eval("document.cookie").await, "");
    assert_eq!(
        page.eval("localStorage.length + sessionStorage.length")
            .await,
        0
    );
    let url = page.eval("location.href").await;
    assert!(!url.as_str().unwrap().contains(ADMIN_TOKEN), "{url}");
    assert_eq!(
        page.eval("document.getElementById('login-token').value")
            .await,
        ""
    );

    // A write from the page without the CSRF header is refused; with it, it passes.
    let refused = page
        .eval("fetch('/admin/deliveries/retry', {method: 'POST', body: '{}'}).then(r => r.status)")
        .await;
    assert_eq!(refused, 403);
    let allowed = page
        .eval(
            "fetch('/console/session').then(r => r.json()).then(s => fetch('/admin/deliveries/retry', \
             {method: 'POST', body: '{}', headers: {'X-CSRF-Token': s.csrf}})).then(r => r.status)",
        )
        .await;
    assert_eq!(allowed, 202);

    // The configuration lists (branch `lists`) show their rows, or say they are not there.
    for (hash, title) in [
        ("#/channels", "Channels"),
        ("#/wabas", "WABAs"),
        ("#/partners", "Partners"),
    ] {
        open(&page, hash, title).await;
        page.wait_for(
            "document.querySelector('#page table, #page .empty')",
            &format!("the {title} list or its error state"),
        )
        .await;
    }

    // Reloading keeps the session; logging out ends it.
    page.navigate(&app.url("/console/#/destinations")).await;
    page.wait_for(
        "!document.getElementById('shell').hidden",
        "the console after a reload",
    )
    .await;
    page.click("#logout").await;
    page.wait_for(
        "!document.getElementById('login').hidden",
        "the login form after logout",
    )
    .await;
    let status = page
        .eval("fetch('/admin/destinations').then(r => r.status)")
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn an_injected_event_appears_in_the_live_tail_decoded() {
    let app = spawn_app_with(fast_delivery).await;
    let number = app.provision().await;
    let receiver = TestReceiver::start().await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let browser = Browser::launch();
    let page = logged_in(&app, &browser).await;
    open(&page, "#/tail", "Live tail").await;
    wait_for_text(&page, ".tail-status", "Live").await;

    let event = app
        .post_event(&number.channel_id, message("wamid.TAIL1"))
        .await;
    let row = wait_for_text(&page, "#tail-rows", "wamid.TAIL1").await;
    assert!(row.contains("4917600000001"), "{row}");
    assert!(row.contains(&format!("#{event}")), "{row}");
    wait_for_text(&page, "#tail-rows", "delivered").await;

    // Paused, new lines wait in the buffer; resumed, they show.
    page.click("button[aria-pressed]").await;
    app.post_event(&number.channel_id, message("wamid.TAIL2"))
        .await;
    wait_for_text(&page, ".tail-status", "buffered").await;
    let shown = page
        .eval("document.getElementById('tail-rows').textContent")
        .await;
    assert!(!shown.as_str().unwrap().contains("wamid.TAIL2"));
    page.click("button[aria-pressed]").await;
    wait_for_text(&page, "#tail-rows", "wamid.TAIL2").await;

    // The row links to the event's story.
    page.click(&format!("#tail-rows a[href='#/events/{event}']"))
        .await;
    wait_for_text(&page, "#story", "Delivery").await;
}

#[tokio::test]
async fn a_purged_events_story_says_its_payload_was_purged() {
    let app = spawn_app_with(|config| {
        fast_delivery(config);
        config.payload_retention = Some(std::time::Duration::from_millis(1));
    })
    .await;
    let number = app.provision().await;
    let receiver = TestReceiver::start().await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let event = app
        .post_event(&number.channel_id, message("wamid.PURGED"))
        .await;
    app.wait_for_event(event, |e| is_in_state(e, "primary", "delivered"))
        .await;
    // The maintenance loop purges at start, then every minute: a restart makes it run now.
    let app = app.restart_with(|_| {}).await;
    app.wait_for_event(event, |e| e["payload_purged_at"].is_string())
        .await;

    let browser = Browser::launch();
    let page = logged_in(&app, &browser).await;
    open(
        &page,
        &format!("#/events/{event}"),
        &format!("Event #{event}"),
    )
    .await;
    let story = wait_for_text(&page, "#story", "delivered").await;
    assert!(
        story.contains("Payload purged") && story.contains("--payload-retention-hours"),
        "{story}"
    );
    assert!(!story.contains("wamid.PURGED"), "{story}");
}

#[tokio::test]
async fn an_events_story_shows_its_route_and_every_attempt() {
    let app = spawn_app_with(fast_delivery).await;
    let number = app.provision().await;
    let receiver = TestReceiver::start().await;
    receiver.script([Behavior::Status(500)]);
    app.set_webhook(
        &number.api_key,
        &receiver.url,
        json!({"X-Secret": "hunter2"}),
    )
    .await;
    let event = app
        .post_event(&number.channel_id, message("wamid.STORY"))
        .await;
    app.wait_for_event(event, |e| is_in_state(e, "primary", "delivered"))
        .await;

    let browser = Browser::launch();
    let page = logged_in(&app, &browser).await;
    open(
        &page,
        &format!("#/events/{event}"),
        &format!("Event #{event}"),
    )
    .await;
    let story = wait_for_text(&page, "#story", "delivered").await;
    for wanted in [
        "wamid.STORY",
        "Hello there",
        "Phone-number webhook",
        "X-Secret: ***",
    ] {
        assert!(story.contains(wanted), "{wanted:?} in {story}");
    }
    assert!(
        !story.contains("hunter2"),
        "header values are masked: {story}"
    );
    let chosen = page
        .eval("document.querySelector('.route .chosen').textContent")
        .await;
    assert!(
        chosen.as_str().unwrap().contains("Phone-number webhook"),
        "{chosen}"
    );
    // Two attempts: the 500, then the 200.
    let rows = page
        .eval("[...document.querySelectorAll('.delivery tbody tr')].map(r => r.textContent)")
        .await;
    let rows: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows[0].contains("500") && rows[1].contains("200"),
        "{rows:?}"
    );
}

#[tokio::test]
async fn a_failing_destination_degrades_pauses_and_recovers_from_the_page() {
    let app = spawn_app_with(|config| {
        fast_delivery(config);
        config.pause_after = Some(Duration::from_secs(8));
    })
    .await;
    let number = app.provision().await;
    let receiver = TestReceiver::with_default(Behavior::Status(500)).await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let id = DestinationId::of(&receiver.url).unwrap();
    let mut events = Vec::new();
    for n in 0..25 {
        events.push(
            app.post_event(&number.channel_id, message(&format!("wamid.F{n}")))
                .await,
        );
    }

    let browser = Browser::launch();
    let page = logged_in(&app, &browser).await;
    open(&page, &format!("#/destinations/{id}"), "Destination").await;
    wait_for_text(&page, "#destination-state", "degraded").await;
    wait_for_text(&page, "#destination-state", "paused").await;
    // The overview lists it.
    open(&page, "#/overview", "Overview").await;
    wait_for_text(&page, "#main", id.as_str()).await;

    receiver.set_default(Behavior::Status(200));
    open(&page, &format!("#/destinations/{id}"), "Destination").await;
    page.click("#resume").await;
    page.wait_for(
        "!(document.getElementById('destination-state')?.textContent || 'paused').includes('paused')",
        "the destination to leave the paused state",
    )
    .await;
    for &event in &events {
        app.wait_for_event(event, |e| is_in_state(e, "primary", "delivered"))
            .await;
    }

    // Recover the window: counted first, then replayed on confirmation.
    page.eval("document.getElementById('rs-failed').checked = false; document.getElementById('rs-dropped').checked = false; document.getElementById('rs-delivered').checked = true")
        .await;
    let before = receiver.received().len();
    page.click("#recover-count").await;
    wait_for_text(&page, "#recover-matched", "25 deliveries match").await;
    assert_eq!(
        receiver.received().len(),
        before,
        "a dry run replays nothing"
    );
    page.click("#recover-run").await;
    wait_for_text(&page, "#recover-result", "25 deliveries requeued").await;
    receiver.wait_for(before + 25).await;
}

#[tokio::test]
async fn failed_deliveries_replayed_from_the_page_are_delivered() {
    let app = spawn_app_with(|config| {
        fast_delivery(config);
        config.retry_max_age = Duration::from_millis(300);
    })
    .await;
    let number = app.provision().await;
    let receiver = TestReceiver::with_default(Behavior::Status(500)).await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let first = app
        .post_event(&number.channel_id, message("wamid.R1"))
        .await;
    let second = app
        .post_event(&number.channel_id, message("wamid.R2"))
        .await;
    for event in [first, second] {
        app.wait_for_event(event, |e| is_in_state(e, "primary", "failed"))
            .await;
    }
    receiver.set_default(Behavior::Status(200));
    let delivery_of = |event: &Value| event["deliveries"][0]["id"].as_i64().unwrap();
    let first_delivery = delivery_of(&app.event(first).await);

    let browser = Browser::launch();
    let page = logged_in(&app, &browser).await;
    open(&page, "#/failed", "Failed deliveries").await;
    page.click(&format!("button.replay[data-delivery='{first_delivery}']"))
        .await;
    wait_for_text(&page, "#main", "requeued").await;
    open(
        &page,
        &format!("#/events/{first}"),
        &format!("Event #{first}"),
    )
    .await;
    wait_for_text(&page, ".delivery-state", "delivered").await;

    // The rest, all at once, after a confirmation.
    open(&page, "#/failed", "Failed deliveries").await;
    wait_for_text(&page, "#main", "Replay").await;
    page.click("#replay-all").await;
    page.click("#replay-all-confirm").await;
    wait_for_text(&page, "#main", "1 deliveries requeued").await;
    app.wait_for_event(second, |e| is_in_state(e, "primary", "delivered"))
        .await;
}
