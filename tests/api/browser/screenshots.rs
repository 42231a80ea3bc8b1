//! The README's screenshots of the console, from a server with a little of everything:
//! a healthy and a failing destination, messages and statuses with Meta error codes, failed
//! deliveries, and an event delivered on its third attempt.

use std::time::Duration;

use serde_json::{json, Value};

use super::{logged_in, message, open, wait_for_text, Browser};
use crate::helpers::{fast_delivery, is_in_state, spawn_app_with, ADMIN_TOKEN};
use crate::receiver::{Behavior, TestReceiver};

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
        "(cards => cards.length >= 3 && cards.slice(0, 3).every(c => !c.textContent.startsWith('–')))([...document.querySelectorAll('.card-value')])",
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
    // The real stream: the tail opens live, then a few messages and statuses arrive.
    open(&page, "#/tail", "Live tail").await;
    wait_for_text(&page, ".tail-status", "Live").await;
    let status = app.post_event(&failing.channel_id, status_value(99)).await;
    app.wait_for_event(status, |e| is_in_state(e, "primary", "failed"))
        .await;
    ok.script([Behavior::Status(500)]);
    let mut last = 0;
    for n in 0..4 {
        last = app
            .post_event(&fine.channel_id, message(&format!("wamid.HBgL{n:04}")))
            .await;
    }
    app.wait_for_event(last, |e| is_in_state(e, "primary", "delivered"))
        .await;
    wait_for_text(&page, "#tail-rows", "wamid.HBgL0003").await;
    shoot("live-tail").await;
}

/// A status notification with one of Meta's error codes.
fn status_value(n: u32) -> Value {
    json!({"statuses": [{"id": format!("wamid.HBgS{n:04}"), "status": "failed", "recipient_id": "4915112345678",
        "timestamp": "1700000000", "errors": [{"code": 131026, "title": "Message undeliverable"}]}]})
}
