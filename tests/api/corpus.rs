//! Every notification type of Meta's Cloud API webhook reference relayed intact (#11 item 3).
//!
//! The corpus is `tests/fixtures/meta/*.json`: one whole envelope per file, as Meta sends it
//! (some pretty-printed as in the reference, some compact with Meta's `\u00e9` and `\/`
//! escapes as on the wire), with placeholder tokens (`"PHONE_NUMBER_ID"`, `"WABA_ID"`, …)
//! replaced textually before signing, so every other byte stays Meta's. Each is posted to
//! `/webhooks/whatsapp` and must reach the right receiver as the same JSON value, byte for
//! byte when it holds one number's changes only, and the event view must show it; the
//! WABA-level ones reach the WABA webhook and the partner (docs/ROUTING.md).

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchboard::config::{Config, Secret};
use switchboard::delivery::signature;

use crate::helpers::{
    fast_delivery, spawn_app_with, status_and_json, unique_phone_number, TestApp,
};
use crate::receiver::TestReceiver;

const APP_SECRET: &str = "corpus-app-secret";

/// One notification of the corpus: its file name without `.json`, and its text.
struct Fixture {
    name: &'static str,
    text: &'static str,
}

macro_rules! fixtures {
    ($($name:literal),* $(,)?) => {
        &[$(Fixture {
            name: $name,
            text: include_str!(concat!("../fixtures/meta/", $name, ".json")),
        }),*]
    };
}

/// Notifications that hold one number's changes only: relayed byte for byte.
const ONE_NUMBER: &[Fixture] = fixtures![
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive_button_reply",
    "interactive_list_reply",
    "button",
    "reaction",
    "order",
    "system",
    "referral",
    "unsupported",
    "value_errors",
    "status_sent",
    "status_delivered",
    "status_read",
    "status_failed",
    "multi_change",
];

/// Three numbers on two WABAs in one POST: split, one envelope per number.
const MULTI_NUMBER: &[Fixture] = fixtures!["multi_number"];

/// Two entries under the same WABA id (different `time`), each with changes for two numbers.
const BATCHED_ENTRIES: &[Fixture] = fixtures!["multi_number_batched_entries"];

/// WABA-level notifications (#11 item 2): no `value.metadata.phone_number_id`, the entry id
/// is the WABA id.
const WABA_LEVEL: &[Fixture] = fixtures![
    "account_update",
    "phone_number_quality_update",
    "phone_number_name_update",
    "template_category_update",
    "message_template_quality_update",
    "business_capability_update",
    "security",
    "message_template_status_update",
    "waba_multi_change",
];

fn meta(config: &mut Config) {
    fast_delivery(config);
    config.meta_app_secret = Some(Secret::new(APP_SECRET));
}

/// Every list of the corpus.
const CORPUS: [&[Fixture]; 4] = [ONE_NUMBER, MULTI_NUMBER, BATCHED_ENTRIES, WABA_LEVEL];

#[test]
fn every_fixture_file_is_in_the_corpus_and_a_whatsapp_envelope() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/meta");
    let on_disk: BTreeSet<String> = std::fs::read_dir(dir)
        .expect("fixture directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let all = CORPUS.iter().flat_map(|list| list.iter());
    let listed: BTreeSet<String> = all.clone().map(|f| format!("{}.json", f.name)).collect();
    assert_eq!(on_disk, listed);
    for fixture in all {
        let value: Value =
            serde_json::from_str(fixture.text).unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
        assert_eq!(
            value["object"], "whatsapp_business_account",
            "{}",
            fixture.name
        );
    }
}

/// A provisioned number, the receiver its notifications must reach, and the values its
/// placeholders (`"PHONE_NUMBER_ID"`, `"DISPLAY_PHONE_NUMBER"`, with `_2`, `_3` suffixes for
/// the second and third) stand for.
struct Number {
    channel_id: String,
    phone_number_id: String,
    display_phone_number: String,
    api_key: String,
    receiver: TestReceiver,
}

impl Number {
    fn of(channel: &Value, receiver: TestReceiver) -> Self {
        let text = |field: &str| channel[field].as_str().expect(field).to_owned();
        Self {
            channel_id: text("id"),
            phone_number_id: text("phone_number_id"),
            display_phone_number: text("phone_number").trim_start_matches('+').to_owned(),
            api_key: text("api_key"),
            receiver,
        }
    }
}

/// The placeholders of the corpus and what replaces them.
struct Placeholders(Vec<(String, String)>);

impl Placeholders {
    fn new(numbers: &[&Number], wabas: &[i64]) -> Self {
        let suffix = |i: usize| {
            if i == 0 {
                String::new()
            } else {
                format!("_{}", i + 1)
            }
        };
        let mut pairs = Vec::new();
        for (i, number) in numbers.iter().enumerate() {
            let s = suffix(i);
            pairs.push((
                format!("PHONE_NUMBER_ID{s}"),
                number.phone_number_id.clone(),
            ));
            pairs.push((
                format!("DISPLAY_PHONE_NUMBER{s}"),
                number.display_phone_number.clone(),
            ));
        }
        for (i, waba) in wabas.iter().enumerate() {
            pairs.push((format!("WABA_ID{}", suffix(i)), waba.to_string()));
        }
        Self(pairs)
    }

    /// The fixture's text with each quoted token replaced (quotes included, so
    /// `"PHONE_NUMBER_ID"` does not touch `"PHONE_NUMBER_ID_2"`); every other byte is kept.
    fn apply(&self, fixture: &Fixture) -> String {
        let mut text = fixture.text.to_owned();
        for (token, value) in &self.0 {
            text = text.replace(&format!("\"{token}\""), &format!("\"{value}\""));
        }
        for token in ["PHONE_NUMBER_ID", "DISPLAY_PHONE_NUMBER", "WABA_ID"] {
            assert!(!text.contains(token), "{}: {token} left in", fixture.name);
        }
        text
    }
}

/// POSTs `body` as Meta does, signed with the app secret; returns the event ids.
async fn post_signed(app: &TestApp, name: &str, body: &str) -> Vec<i64> {
    let response = app
        .client
        .post(app.url("/webhooks/whatsapp"))
        .header("Content-Type", "application/json")
        .header(
            "X-Hub-Signature-256",
            signature(APP_SECRET, body.as_bytes()),
        )
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    let (status, answer) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK, "{name}: {answer}");
    answer["event_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: {answer}"))
        .iter()
        .map(|id| id.as_i64().expect("event id"))
        .collect()
}

/// Waits until every delivery of the event is in `state` and returns the event view.
async fn settled_as(app: &TestApp, event_id: i64, state: &str) -> Value {
    app.wait_for_event(event_id, |event| {
        event["deliveries"]
            .as_array()
            .is_some_and(|all| !all.is_empty() && all.iter().all(|d| d["state"] == state))
    })
    .await
}

/// What one number's envelope must be when a notification is split: the envelope with, in
/// each entry (every field of it kept), only that number's changes, in order; entries left
/// without changes dropped.
fn part_for(envelope: &Value, phone_number_id: &str) -> Value {
    let mut part = envelope.clone();
    let entries = part["entry"].as_array_mut().expect("entry array");
    for entry in entries.iter_mut() {
        let changes = entry["changes"].as_array_mut().expect("changes array");
        changes.retain(|change| change["value"]["metadata"]["phone_number_id"] == phone_number_id);
    }
    entries.retain(|entry| !entry["changes"].as_array().expect("changes").is_empty());
    part
}

/// Two numbers on one WABA and a third on another: the first two with phone-number
/// webhooks, the third served by its WABA webhook.
async fn three_numbers(app: &TestApp) -> ([Number; 3], [i64; 2]) {
    let partner = app.create_partner("Corpus").await;
    let partner_id = partner["id"].as_str().expect("id");
    let wabas = [
        app.create_waba(partner_id, None).await,
        app.create_waba(partner_id, None).await,
    ];
    let mut numbers = Vec::new();
    for waba in [wabas[0], wabas[0], wabas[1]] {
        let channel = app.create_channel(waba, &unique_phone_number()).await;
        numbers.push(Number::of(&channel, TestReceiver::start().await));
    }
    for number in &numbers[..2] {
        app.set_webhook(&number.api_key, &number.receiver.url, json!({}))
            .await;
    }
    let body = json!({"url": numbers[2].receiver.url});
    let answer = app
        .send(Method::POST, "/waba_webhook", &numbers[2].api_key, body)
        .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    let numbers: [Number; 3] = numbers.try_into().ok().expect("three numbers");
    (numbers, wabas)
}

#[tokio::test]
async fn every_notification_type_reaches_its_number_byte_for_byte_and_shows_in_the_event_view() {
    let app = spawn_app_with(meta).await;
    let (numbers, wabas) = three_numbers(&app).await;

    // Each one-number fixture goes to one of the three numbers in turn (the third through its
    // WABA webhook); all are posted, then checked.
    let mut posted = Vec::new();
    for (i, fixture) in ONE_NUMBER.iter().enumerate() {
        let number = &numbers[i % numbers.len()];
        let wabas = [wabas[if i % numbers.len() == 2 { 1 } else { 0 }]];
        let body = Placeholders::new(&[number], &wabas).apply(fixture);
        let event_ids = post_signed(&app, fixture.name, &body).await;
        assert_eq!(event_ids.len(), 1, "{}: one event", fixture.name);
        posted.push((fixture.name, number, body, event_ids[0]));
    }
    for (name, number, body, event_id) in &posted {
        let event = settled_as(&app, *event_id, "delivered").await;
        assert_eq!(event["kind"], "whatsapp", "{name}");
        assert_eq!(event["channel_id"], number.channel_id.as_str(), "{name}");
        assert_eq!(
            event["phone_number_id"],
            number.phone_number_id.as_str(),
            "{name}"
        );
        let sent: Value = serde_json::from_str(body).expect("fixture JSON");
        assert_eq!(
            event["payload"], sent,
            "{name}: the event view shows what Meta sent"
        );
        let targets: Vec<&Value> = event["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .map(|d| &d["target"])
            .collect();
        assert_eq!(targets, [&json!("primary")], "{name}");
    }
    for number in &numbers {
        let mut received: Vec<Vec<u8>> = number
            .receiver
            .received()
            .into_iter()
            .map(|r| r.body)
            .collect();
        let expected: Vec<&(&str, &Number, String, i64)> = posted
            .iter()
            .filter(|(_, to, _, _)| to.channel_id == number.channel_id)
            .collect();
        assert_eq!(
            received.len(),
            expected.len(),
            "one delivery per notification"
        );
        for (name, _, body, _) in expected {
            let at = received
                .iter()
                .position(|r| r == body.as_bytes())
                .unwrap_or_else(|| panic!("{name}: not relayed byte for byte"));
            received.remove(at);
        }
    }

    // Three numbers in one POST: each number's envelope is built (ASCII-only) and is the
    // same JSON value as its part of what Meta sent.
    let fixture = &MULTI_NUMBER[0];
    let before: Vec<usize> = numbers
        .iter()
        .map(|n| n.receiver.received().len())
        .collect();
    let body = Placeholders::new(&[&numbers[0], &numbers[1], &numbers[2]], &wabas).apply(fixture);
    let sent: Value = serde_json::from_str(&body).expect("fixture JSON");
    let event_ids = post_signed(&app, fixture.name, &body).await;
    assert_eq!(event_ids.len(), 3, "one event per number");
    for event_id in event_ids {
        let event = settled_as(&app, event_id, "delivered").await;
        let number = numbers
            .iter()
            .find(|n| event["phone_number_id"] == n.phone_number_id.as_str())
            .unwrap_or_else(|| panic!("an event for no number of the POST: {event:#}"));
        assert_eq!(event["channel_id"], number.channel_id.as_str());
        let part = part_for(&sent, &number.phone_number_id);
        assert_eq!(
            event["payload"], part,
            "the event view shows the number's part"
        );
    }
    for (number, before) in numbers.iter().zip(before) {
        let received = number.receiver.received();
        assert_eq!(received.len(), before + 1, "one delivery per number");
        let got = &received[before];
        assert!(
            got.body.is_ascii(),
            "{}",
            String::from_utf8_lossy(&got.body)
        );
        assert_eq!(got.json(), part_for(&sent, &number.phone_number_id));
    }
}

/// Meta batches entries: two entries under the same WABA id, each with its own `time`. Each
/// number's part keeps both entries with their own fields.
#[tokio::test]
async fn entries_batched_under_one_waba_id_keep_their_own_fields_when_split() {
    let app = spawn_app_with(meta).await;
    let (numbers, wabas) = three_numbers(&app).await;
    let fixture = &BATCHED_ENTRIES[0];
    let body = Placeholders::new(&[&numbers[0], &numbers[1]], &wabas[..1]).apply(fixture);
    let sent: Value = serde_json::from_str(&body).expect("fixture JSON");
    let event_ids = post_signed(&app, fixture.name, &body).await;
    assert_eq!(event_ids.len(), 2, "one event per number");
    for event_id in event_ids {
        settled_as(&app, event_id, "delivered").await;
    }
    for number in &numbers[..2] {
        let got = number.receiver.wait_for(1).await.remove(0);
        assert!(got.body.is_ascii());
        assert_eq!(
            got.json(),
            part_for(&sent, &number.phone_number_id),
            "each entry keeps its own fields"
        );
    }
}

/// Sets the partner's webhook through the Partner API.
async fn set_partner_webhook(app: &TestApp, partner: &Value, url: &str) {
    let id = partner["id"].as_str().expect("id");
    let response = app
        .client
        .post(app.url(&format!("/api/v2/partners/{id}/webhook_url")))
        .header("X-API-Key", partner["api_key"].as_str().expect("api_key"))
        .json(&json!({ "webhook_url": url }))
        .send()
        .await
        .expect("request");
    let (status, answer) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

/// The partner event a WABA-level `change` of `waba` becomes: its type and data.
fn partner_event_of(waba: i64, change: &Value) -> (String, Value) {
    let (field, value) = (&change["field"], &change["value"]);
    if field == "message_template_status_update" {
        let data = json!({"waba_id": waba, "value": value});
        ("waba_template_status_changed".to_owned(), data)
    } else {
        let data = json!({"waba_id": waba, "field": field, "value": value});
        ("waba_update".to_owned(), data)
    }
}

/// The events of a WABA-level notification, settled in `state`: the one of kind `waba`, and
/// the partner events (type and data, sorted, with their views).
async fn waba_level_events(
    app: &TestApp,
    name: &str,
    event_ids: &[i64],
    state: &str,
) -> (Value, Vec<Value>) {
    let mut waba_events = Vec::new();
    let mut partner_events = Vec::new();
    for &event_id in event_ids {
        let event = settled_as(app, event_id, state).await;
        match event["kind"].as_str() {
            Some("waba") => waba_events.push(event),
            Some("partner") => partner_events.push(event),
            _ => panic!("{name}: an event of neither kind: {event:#}"),
        }
    }
    assert_eq!(waba_events.len(), 1, "{name}: one waba event");
    partner_events.sort_by_key(|event| event["payload"]["data"].to_string());
    (waba_events.remove(0), partner_events)
}

#[tokio::test]
async fn waba_level_notifications_reach_the_waba_webhook_and_the_partner() {
    let app = spawn_app_with(meta).await;
    let partner_receiver = TestReceiver::start().await;
    let partner = app.create_partner("WABA level").await;
    set_partner_webhook(&app, &partner, &partner_receiver.url).await;
    let partner_id = partner["id"].as_str().expect("id");
    let waba = app.create_waba(partner_id, None).await;
    let channel = app.create_channel(waba, &unique_phone_number()).await;
    // The number has a webhook of its own: WABA-level notifications must not go there.
    let number = Number::of(&channel, TestReceiver::start().await);
    app.set_webhook(&number.api_key, &number.receiver.url, json!({}))
        .await;
    let waba_receiver = TestReceiver::start().await;
    let body = json!({"url": waba_receiver.url});
    let answer = app
        .send(Method::POST, "/waba_webhook", &number.api_key, body)
        .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);

    let placeholders = Placeholders::new(&[&number], &[waba]);
    for fixture in WABA_LEVEL {
        let (name, body) = (fixture.name, placeholders.apply(fixture));
        let sent: Value = serde_json::from_str(&body).expect("fixture JSON");
        let changes = sent["entry"][0]["changes"].as_array().expect("changes");
        let event_ids = post_signed(&app, name, &body).await;
        assert_eq!(
            event_ids.len(),
            1 + changes.len(),
            "{name}: one waba event, one partner event per change"
        );
        let (waba_event, partner_events) =
            waba_level_events(&app, name, &event_ids, "delivered").await;
        assert_eq!(
            waba_event["payload"], sent,
            "{name}: the event view shows it"
        );
        let relayed = waba_receiver.received();
        assert_eq!(
            relayed.iter().filter(|r| r.body == body.as_bytes()).count(),
            1,
            "{name}: relayed to the WABA webhook byte for byte"
        );

        let mut expected: Vec<(String, Value)> =
            changes.iter().map(|c| partner_event_of(waba, c)).collect();
        expected.sort_by_key(|(_, data)| data.to_string());
        let shown: Vec<(String, Value)> = partner_events
            .iter()
            .map(|e| {
                let payload = &e["payload"];
                assert_eq!(payload["partner_id"], partner_id, "{name}");
                (
                    payload["type"].as_str().unwrap_or_default().to_owned(),
                    payload["data"].clone(),
                )
            })
            .collect();
        assert_eq!(shown, expected, "{name}: the partner events");
        let to_partner: Vec<Value> = partner_receiver
            .received()
            .iter()
            .map(|r| r.json())
            .collect();
        for event in &partner_events {
            assert!(
                to_partner.contains(&event["payload"]),
                "{name}: partner event {} not at the partner webhook",
                event["id"]
            );
        }
    }
    assert_eq!(waba_receiver.received().len(), WABA_LEVEL.len());
    assert!(
        number.receiver.received().is_empty(),
        "nothing WABA-level reaches a number's webhook"
    );

    // Neither a WABA webhook nor a partner webhook: both recorded dropped.
    let quiet = app.create_partner("Quiet").await;
    let quiet_waba = app
        .create_waba(quiet["id"].as_str().expect("id"), None)
        .await;
    let quiet_channel = app.create_channel(quiet_waba, &unique_phone_number()).await;
    let quiet_number = Number::of(&quiet_channel, TestReceiver::start().await);
    let fixture = WABA_LEVEL
        .iter()
        .find(|f| f.name == "security")
        .expect("security fixture");
    let body = Placeholders::new(&[&quiet_number], &[quiet_waba]).apply(fixture);
    let event_ids = post_signed(&app, fixture.name, &body).await;
    assert_eq!(event_ids.len(), 2, "one waba event, one partner event");
    let (waba_event, partner_events) =
        waba_level_events(&app, fixture.name, &event_ids, "dropped").await;
    let sent: Value = serde_json::from_str(&body).expect("fixture JSON");
    assert_eq!(waba_event["payload"], sent);
    assert_eq!(partner_events.len(), 1);
    assert_eq!(partner_events[0]["payload"]["type"], "waba_update");
}
