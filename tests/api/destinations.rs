//! Destinations: every receiver, graded against the provider's standards from its recent
//! answers, with the configurations that send it deliveries and why.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchboard::domain::DestinationId;

use crate::helpers::{fast_delivery, metric_sum, spawn_app_with, status_and_json, TestApp};
use crate::receiver::{Behavior, TestReceiver};

fn message(id: &str) -> Value {
    json!({"messages": [{"from": "4917600000000", "id": id, "type": "text", "text": {"body": "hi"}}]})
}

/// The admin view of the destination of `url`.
pub(crate) async fn destination(app: &TestApp, url: &str) -> Value {
    let id = DestinationId::of(url).unwrap();
    let response = app
        .admin(Method::GET, &format!("/admin/destinations/{id}"))
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn destinations_are_graded_and_list_their_routes() {
    let app = spawn_app_with(|config| {
        fast_delivery(config);
        config.delivery_timeout = Duration::from_secs(5);
    })
    .await;
    let fast_number = app.provision().await;
    let slow_number = app.provision().await;
    let fast = TestReceiver::start().await;
    let slow = TestReceiver::with_default(Behavior::Delay(Duration::from_millis(300), 200)).await;
    let extra = TestReceiver::start().await;
    app.set_webhook(
        &fast_number.api_key,
        &format!("{}?token=s3cret", fast.url),
        json!({}),
    )
    .await;
    let waba = json!({"url": slow.url, "override_all": false});
    let key = slow_number.api_key.as_str();
    assert_eq!(
        app.send(Method::POST, "/waba_webhook", key, waba).await.0,
        StatusCode::OK
    );
    let multi = json!({"enabled": true, "destinations": [{"name": "crm", "url": extra.url}]});
    assert_eq!(
        app.send(Method::POST, "/multi_webhook", key, multi).await.0,
        StatusCode::OK
    );

    for n in 0..20 {
        app.post_event(&fast_number.channel_id, message(&format!("wamid.f{n}")))
            .await;
        app.post_event(&slow_number.channel_id, message(&format!("wamid.s{n}")))
            .await;
    }
    fast.wait_for(20).await;
    slow.wait_for(20).await;
    extra.wait_for(20).await;

    // The slow receiver's median is over 250 ms: degraded. The fast one meets the standards.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let slow_view = loop {
        let view = destination(&app, &slow.url).await;
        if view["last_5m"]["attempts"] == 20 {
            break view;
        }
        assert!(std::time::Instant::now() < deadline, "{view:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(slow_view["grade"], "degraded", "{slow_view:#}");
    assert_eq!(slow_view["state"], "degraded");
    assert!(slow_view["last_5m"]["latency_ms"]["p50"].as_u64().unwrap() > 250);
    assert_eq!(slow_view["last_1h"]["delivered"], 20);
    let routes = slow_view["routes"].as_array().unwrap();
    assert!(
        routes
            .iter()
            .any(|r| r["reason"] == "waba_webhook"
                && r["channel_id"] == slow_number.channel_id.as_str()),
        "{slow_view:#}"
    );

    let fast_view = destination(&app, &fast.url).await;
    assert_eq!(fast_view["grade"], "ok", "{fast_view:#}");
    assert_eq!(fast_view["state"], "healthy");
    assert_eq!(fast_view["last_5m"]["success_rate"], 1.0);
    assert!(
        !fast_view["url"].as_str().unwrap().contains("s3cret"),
        "{fast_view:#}"
    );
    assert_eq!(fast_view["routes"][0]["reason"], "phone_number_webhook");

    let extra_view = destination(&app, &extra.url).await;
    assert_eq!(extra_view["routes"][0]["reason"], "extra_destination");
    assert_eq!(extra_view["routes"][0]["name"], "crm");

    // The list pages through all of them, by id.
    let page = |limit: usize, after: String| {
        let path = format!("/admin/destinations?limit={limit}&after={after}");
        let request = app.admin(Method::GET, &path);
        async move { status_and_json(request.send().await.unwrap()).await.1 }
    };
    let first = page(2, String::new()).await;
    assert_eq!(
        first["destinations"].as_array().unwrap().len(),
        2,
        "{first:#}"
    );
    let after = first["next_after"].as_str().unwrap().to_owned();
    let rest = page(2, after).await;
    assert_eq!(
        rest["destinations"].as_array().unwrap().len(),
        1,
        "{rest:#}"
    );
    assert!(rest.get("next_after").is_none());

    // /metrics carries the same, labelled by destination id.
    let metrics = app.metrics().await;
    let slow_id = DestinationId::of(&slow.url).unwrap().to_string();
    let degraded = [("destination", slow_id.as_str()), ("grade", "degraded")];
    assert_eq!(
        metric_sum(&metrics, "switchboard_destination_grade", &degraded),
        1
    );
    let attempts = [("destination", slow_id.as_str()), ("window", "5m")];
    assert_eq!(
        metric_sum(&metrics, "switchboard_destination_attempts", &attempts),
        20
    );
}

#[tokio::test]
async fn unknown_destinations_are_404_and_the_token_is_required() {
    let app = spawn_app_with(fast_delivery).await;
    for id in ["0123456789abcdef", "not-an-id"] {
        let response = app
            .admin(Method::GET, &format!("/admin/destinations/{id}"))
            .send()
            .await
            .unwrap();
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"], format!("Destination {id} not found"));
    }
    let response = app
        .client
        .get(app.url("/admin/destinations"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app
        .admin(Method::GET, "/admin/destinations?limit=0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_failing_receiver_shows_its_backlog_and_is_graded_failing() {
    let app = spawn_app_with(fast_delivery).await;
    let number = app.provision().await;
    let receiver = TestReceiver::with_default(Behavior::Status(500)).await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    for n in 0..3 {
        app.post_event(&number.channel_id, message(&format!("wamid.b{n}")))
            .await;
    }
    // Retried every 50–200 ms: 20 failed attempts come within seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let view = loop {
        let view = destination(&app, &receiver.url).await;
        if view["last_5m"]["attempts"].as_u64().unwrap() >= 20 {
            break view;
        }
        assert!(std::time::Instant::now() < deadline, "{view:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(view["grade"], "failing", "{view:#}");
    assert_eq!(view["last_5m"]["success_rate"], 0.0);
    assert_eq!(view["backlog"], 3, "{view:#}");
    assert!(view["oldest_waiting_s"].as_i64().unwrap() >= 0);
    assert!(view["next_attempt_at"].is_string(), "{view:#}");
    let metrics = app.metrics().await;
    let id = DestinationId::of(&receiver.url).unwrap().to_string();
    let labels = [("destination", id.as_str())];
    assert_eq!(
        metric_sum(&metrics, "switchboard_destination_backlog", &labels),
        3
    );
    let failing = [("destination", id.as_str()), ("grade", "failing")];
    assert_eq!(
        metric_sum(&metrics, "switchboard_destination_grade", &failing),
        1
    );
}

async fn post_admin(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let response = app.admin(Method::POST, path).send().await.unwrap();
    status_and_json(response).await
}

/// Waits until the destination of `url` is in `state`.
async fn wait_for_state(app: &TestApp, url: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let view = destination(app, url).await;
        if view["state"] == state {
            return view;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never {state}: {view:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_paused_destination_gets_nothing_until_resumed_even_across_a_restart() {
    let app = spawn_app_with(|config| {
        fast_delivery(config);
        config.probe_interval = Duration::from_secs(600);
    })
    .await;
    let number = app.provision().await;
    let receiver = TestReceiver::start().await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let id = DestinationId::of(&receiver.url).unwrap();
    let (status, view) = post_admin(&app, &format!("/admin/destinations/{id}/pause")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["state"], "paused");
    assert_eq!(view["pause_reason"], "manual");

    let mut events = Vec::new();
    for n in 0..3 {
        events.push(
            app.post_event(&number.channel_id, message(&format!("wamid.p{n}")))
                .await,
        );
    }
    let app = app.restart().await;
    assert_eq!(
        wait_for_state(&app, &receiver.url, "paused").await["backlog"],
        3
    );
    events.push(
        app.post_event(&number.channel_id, message("wamid.p3"))
            .await,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        receiver.received().is_empty(),
        "nothing is attempted while paused"
    );
    let labels = [("destination", id.as_str())];
    let metrics = app.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "switchboard_destination_paused", &labels),
        1
    );

    let (status, view) = post_admin(&app, &format!("/admin/destinations/{id}/resume")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["state"], "healthy");
    for event in events {
        app.wait_for_event(event, |e| {
            crate::helpers::is_in_state(e, "primary", "delivered")
        })
        .await;
    }
    assert_eq!(receiver.received().len(), 4, "each sent once, none lost");
    let (status, body) = post_admin(&app, &format!("/admin/destinations/{id}/resume")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test]
async fn continuous_failure_pauses_a_destination_and_a_probe_answered_200_recovers_it() {
    let app = spawn_app_with(|config| {
        fast_delivery(config);
        config.pause_after = Some(Duration::from_millis(500));
        config.probe_interval = Duration::from_millis(400);
    })
    .await;
    let number = app.provision().await;
    let receiver = TestReceiver::with_default(Behavior::Status(500)).await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    let mut events = Vec::new();
    for n in 0..3 {
        events.push(
            app.post_event(&number.channel_id, message(&format!("wamid.c{n}")))
                .await,
        );
    }
    let view = wait_for_state(&app, &receiver.url, "paused").await;
    assert_eq!(view["pause_reason"], "failing");
    // Paused: one probe every 400 ms, not the 50–200 ms retries of three deliveries.
    let before = receiver.received().len();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let probes = receiver.received().len() - before;
    assert!(probes <= 7, "{probes} attempts in 2 s while paused");

    receiver.set_default(Behavior::Status(200));
    // Resumed: healthy, or degraded while the last 5 minutes still hold the failures.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while destination(&app, &receiver.url).await["state"] == "paused" {
        assert!(std::time::Instant::now() < deadline, "never resumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for event in events {
        app.wait_for_event(event, |e| {
            crate::helpers::is_in_state(e, "primary", "delivered")
        })
        .await;
    }
    let metrics = app.metrics().await;
    let changes = "switchboard_destination_state_changes_total";
    assert_eq!(metric_sum(&metrics, changes, &[("change", "paused")]), 1);
    assert_eq!(metric_sum(&metrics, changes, &[("change", "recovered")]), 1);
}

#[tokio::test]
async fn state_changes_are_partner_events_for_the_partners_whose_channels_route_there() {
    let app = spawn_app_with(|config| {
        fast_delivery(config);
        config.pause_after = Some(Duration::from_millis(500));
        config.probe_interval = Duration::from_millis(300);
    })
    .await;
    let partner = app.create_partner("Ops").await;
    let partner_id = partner["id"].as_str().unwrap();
    let partner_receiver = TestReceiver::start().await;
    let response = app
        .client
        .post(app.url(&format!("/api/v2/partners/{partner_id}/webhook_url")))
        .header("X-API-Key", partner["api_key"].as_str().unwrap())
        .json(&json!({"webhook_url": partner_receiver.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let waba = app.create_waba(partner_id, None).await;
    let channel = app
        .create_channel(waba, &crate::helpers::unique_phone_number())
        .await;
    let (channel_id, key) = (
        channel["id"].as_str().unwrap(),
        channel["api_key"].as_str().unwrap(),
    );
    let receiver = TestReceiver::with_default(Behavior::Status(500)).await;
    app.set_webhook(key, &receiver.url, json!({})).await;
    app.post_event(channel_id, message("wamid.ops")).await;

    let event_of = |kind: &'static str| {
        let partner_receiver = partner_receiver.clone();
        async move {
            let all = partner_receiver
                .wait_until(|r| r.iter().any(|r| r.json()["type"] == kind))
                .await;
            all.into_iter()
                .map(|r| r.json())
                .find(|e| e["type"] == kind)
                .unwrap()
        }
    };
    let paused = event_of("destination_paused").await;
    let id = DestinationId::of(&receiver.url).unwrap();
    assert_eq!(paused["partner_id"], partner_id);
    assert_eq!(
        paused["data"]["destination"]["id"],
        id.as_str(),
        "{paused:#}"
    );
    assert_eq!(paused["data"]["channels"], json!([channel_id]));
    assert_eq!(paused["data"]["reason"], "failing");

    receiver.set_default(Behavior::Status(200));
    let recovered = event_of("destination_recovered").await;
    assert_eq!(recovered["data"]["from"], "paused", "{recovered:#}");
    assert_eq!(recovered["data"]["destination"]["id"], id.as_str());

    // A slow receiver misses the standards: degraded (graded at most once a second).
    let slow = TestReceiver::with_default(Behavior::Delay(Duration::from_millis(300), 200)).await;
    app.set_webhook(key, &slow.url, json!({})).await;
    for n in 0..22 {
        app.post_event(channel_id, message(&format!("wamid.slow{n}")))
            .await;
    }
    slow.wait_for(22).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.post_event(channel_id, message("wamid.slow-last")).await;
    let degraded = event_of("destination_degraded").await;
    let slow_id = DestinationId::of(&slow.url).unwrap();
    assert_eq!(
        degraded["data"]["destination"]["id"],
        slow_id.as_str(),
        "{degraded:#}"
    );
    assert_eq!(degraded["data"]["grade"], "degraded");
}
