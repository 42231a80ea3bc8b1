//! The web console in a real headless Chromium, against a real server: what an operator
//! does with it, step by step, checked on the page itself (the DOM is polled with a
//! deadline; no timing assertions). Runs on SQLite only: the pages do not depend on the
//! backend, and `console.rs` checks the HTTP side on both.
//!
//! `cargo test -- --ignored browser::screenshots` writes the README's screenshots.

mod cdp;

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

/// Goes to a hash route of the console and waits for its title.
async fn open(page: &Page<'_>, hash: &str, title: &str) {
    page.eval(&format!("location.hash = {}", json!(hash))).await;
    let title = json!(title);
    page.wait_for(
        &format!("document.getElementById('page-title')?.textContent === {title}"),
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
#[ignore = "needs GET /admin/stream (branch stream)"]
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

/// Writes docs/screenshots/*.png from a server with a little of everything.
#[tokio::test]
#[ignore = "writes docs/screenshots; run by hand: cargo test --test api -- --ignored screenshots"]
async fn screenshots() {
    let app = spawn_app_with(|config| {
        fast_delivery(config);
        config.retry_max_age = Duration::from_millis(400);
    })
    .await;
    let fine = app.provision().await;
    let failing = app.provision().await;
    let ok = TestReceiver::with_default(Behavior::Delay(Duration::from_millis(40), 200)).await;
    let broken = TestReceiver::with_default(Behavior::Status(503)).await;
    app.set_webhook(&fine.api_key, &ok.url, json!({"Authorization": "Bearer x"}))
        .await;
    app.set_webhook(&failing.api_key, &broken.url, json!({}))
        .await;
    let mut story = 0;
    for n in 0..30 {
        story = app
            .post_event(&fine.channel_id, message(&format!("wamid.HBgM{n:04}")))
            .await;
        app.post_event(&failing.channel_id, status_value(n)).await;
    }
    app.wait_for_event(story, |e| is_in_state(e, "primary", "delivered"))
        .await;
    // The story shown: delivered on the third attempt.
    ok.script([Behavior::Status(500), Behavior::Status(503)]);
    let story = app
        .post_event(&fine.channel_id, message("wamid.HBgMstory"))
        .await;
    app.wait_for_event(story, |e| is_in_state(e, "primary", "delivered"))
        .await;
    let browser = Browser::launch();
    let page = logged_in(&app, &browser).await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let shoot = |name: &'static str| {
        let (page, dir) = (&page, dir.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            std::fs::write(dir.join(format!("{name}.png")), page.screenshot().await).unwrap();
        }
    };
    // Let the failing one's deliveries fail, and the overview see two polls.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in 0..10 {
        app.post_event(&fine.channel_id, message(&format!("wamid.HBgN{n:04}")))
            .await;
    }
    // Traffic while the overview polls, so its rates are not zero.
    let traffic = tokio::spawn({
        let (client, url) = (
            app.client.clone(),
            app.url(&format!("/admin/channels/{}/events", fine.channel_id)),
        );
        async move {
            for n in 0.. {
                let body = message(&format!("wamid.HBgT{n:04}"));
                let _ = client
                    .post(&url)
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&body)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    });
    open(&page, "#/overview", "Overview").await;
    page.wait_for(
        "[...document.querySelectorAll('.card-value')].slice(0, 3).every(c => !c.textContent.startsWith('–'))",
        "the overview's rates",
    )
    .await;
    shoot("overview").await;
    traffic.abort();
    open(&page, "#/destinations", "Destinations").await;
    wait_for_text(&page, "#main", "Backlog").await;
    shoot("destinations").await;
    open(
        &page,
        &format!("#/events/{story}"),
        &format!("Event #{story}"),
    )
    .await;
    wait_for_text(&page, "#story", "delivered").await;
    shoot("event-story").await;
    open(&page, "#/failed", "Failed deliveries").await;
    wait_for_text(&page, "#main", "Replay").await;
    shoot("failed").await;
    // The stream is branch `stream`'s: until it is merged, the tail is fed the contract's
    // messages for these events by intercepting its request.
    let pattern = json!({"patterns": [{"urlPattern": "*/admin/stream*"}]});
    page.call("Fetch.enable", pattern).await;
    open(&page, "#/tail", "Live tail").await;
    let paused = browser.next_event("Fetch.requestPaused").await;
    let body = canned_stream(&app, story - 8..=story).await;
    let fulfil = json!({
        "requestId": paused["params"]["requestId"],
        "responseCode": 200,
        "responseHeaders": [{"name": "Content-Type", "value": "text/event-stream"}],
        "body": cdp::base64_encode(body.as_bytes()),
    });
    page.call("Fetch.fulfillRequest", fulfil).await;
    wait_for_text(&page, "#tail-rows", "wamid").await;
    // The canned answer has ended (a real stream stays open): show the status it had.
    page.eval("document.querySelector('.tail-status').textContent = 'Live'; document.querySelector('.tail-status').className = 'tail-status ok'").await;
    shoot("live-tail").await;
}

/// The contract's stream messages (event, attempt, delivery) for stored events.
async fn canned_stream(app: &TestApp, events: std::ops::RangeInclusive<i64>) -> String {
    let mut out = String::from("retry: 3600000\n\n");
    let mut push = |kind: &str, data: Value| {
        out.push_str(&format!("event: {kind}\ndata: {data}\n\n"));
    };
    for id in events {
        let event = app.event(id).await;
        let summary = match event["kind"].as_str() {
            Some("partner") => json!({"type": event["payload"]["type"]}),
            _ => summary_of(&event["payload"]),
        };
        push(
            "event",
            json!({"event_id": id, "kind": event["kind"], "channel_id": event["channel_id"],
            "partner_id": event["partner_id"], "phone_number_id": event["phone_number_id"],
            "received_at": event["received_at"], "summary": summary}),
        );
        for delivery in event["deliveries"].as_array().into_iter().flatten() {
            for attempt in delivery["attempt_log"].as_array().into_iter().flatten() {
                let url = attempt["url"].as_str().unwrap_or_default();
                push(
                    "attempt",
                    json!({"attempt_id": 0, "delivery_id": delivery["id"], "event_id": id,
                    "channel_id": event["channel_id"], "target": delivery["target"],
                    "destination": DestinationId::of(url).map(|d| d.to_string()), "url": url,
                    "status": attempt["status"], "error": attempt["error"], "duration_ms": attempt["duration_ms"],
                    "at": attempt["started_at"], "retry_after_ms": null}),
                );
            }
            push(
                "delivery",
                json!({"delivery_id": delivery["id"], "event_id": id, "channel_id": event["channel_id"],
                "target": delivery["target"], "state": delivery["state"], "destination": null}),
            );
        }
    }
    out
}

/// The contract's `summary` of an envelope (messages and statuses of its changes).
fn summary_of(payload: &Value) -> Value {
    let (mut messages, mut statuses) = (Vec::new(), Vec::new());
    for change in payload["entry"][0]["changes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let value = &change["value"];
        for m in value["messages"].as_array().into_iter().flatten() {
            messages.push(json!({"id": m["id"], "from": m["from"], "type": m["type"], "text": m["text"]["body"]}));
        }
        for s in value["statuses"].as_array().into_iter().flatten() {
            statuses.push(json!({"id": s["id"], "status": s["status"], "recipient_id": s["recipient_id"], "errors": s["errors"]}));
        }
    }
    json!({"messages": messages, "statuses": statuses, "fields": ["messages"]})
}

/// A status notification with one of Meta's error codes.
fn status_value(n: u32) -> Value {
    json!({"statuses": [{"id": format!("wamid.HBgS{n:04}"), "status": "failed", "recipient_id": "4915112345678",
        "timestamp": "1700000000", "errors": [{"code": 131026, "title": "Message undeliverable"}]}]})
}
