//! Traces and logs: the W3C trace context of an incoming notification carried onto its
//! deliveries (from memory and from a claim), malformed or absent contexts that send
//! nothing, the spans exported over OTLP/HTTP to a local receiver (the binary with
//! `--otlp-endpoint`), and `--log-format json`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, Span};
use prost::Message;
use reqwest::StatusCode;
use serde_json::{json, Value};
use switchboard::config::Secret;
use switchboard::delivery::signature;

use crate::cli::{start_binary, switchboard, wait_with_deadline};
use crate::helpers::{
    fast_delivery, fresh_database_url, provision_over_http, spawn_app_with, ADMIN_TOKEN,
};
use crate::receiver::{Behavior, TestReceiver};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const TRACESTATE: &str = "congo=t61rcWkgMzE";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{PARENT_ID}-01")
}

/// A text message value for the admin sandbox.
fn message(id: &str) -> Value {
    json!({"messages": [{"from": "4917600000000", "id": id, "type": "text", "text": {"body": "hi"}}]})
}

/// POSTs a sandbox event for `channel_id` on `base` with `headers`; returns its id.
async fn post_event(base: &str, channel_id: &str, headers: &[(&str, &str)], wamid: &str) -> i64 {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/admin/channels/{channel_id}/events"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&message(wamid));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("post event");
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "a trace header is never a 4xx"
    );
    let answer: Value = response.json().await.expect("JSON");
    answer["event_id"].as_i64().expect("event_id")
}

#[tokio::test]
async fn an_incoming_traceparent_goes_with_every_delivery_of_its_event() {
    let app = spawn_app_with(fast_delivery).await;
    let channel = app.provision().await;
    let receiver = TestReceiver::start().await;
    receiver.script([Behavior::Status(500)]);
    app.set_webhook(&channel.api_key, &receiver.url, json!({}))
        .await;
    let headers = [
        ("traceparent", traceparent()),
        ("tracestate", TRACESTATE.into()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let event = post_event(&app.base, &channel.channel_id, &headers, "wamid.traced").await;

    // The first attempt went from memory, the retry from a claim: both carry the context
    // as it came (export is off: the sender's span stays the parent).
    let received = receiver.wait_for(2).await;
    for attempt in &received {
        assert_eq!(
            attempt.header_values("traceparent"),
            [traceparent().as_str()]
        );
        assert_eq!(attempt.header_values("tracestate"), [TRACESTATE]);
    }
    let view = app.event(event).await;
    assert_eq!(view["traceparent"], traceparent());
    assert_eq!(view["tracestate"], TRACESTATE);
}

#[tokio::test]
async fn no_trace_header_is_sent_when_none_or_a_malformed_one_came_in() {
    let app = spawn_app_with(fast_delivery).await;
    let channel = app.provision().await;
    let receiver = TestReceiver::start().await;
    app.set_webhook(&channel.api_key, &receiver.url, json!({}))
        .await;
    let plain = post_event(&app.base, &channel.channel_id, &[], "wamid.plain").await;
    let malformed = [
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        ),
        ("tracestate", TRACESTATE),
    ];
    let bad = post_event(&app.base, &channel.channel_id, &malformed, "wamid.bad").await;
    let garbage = [("traceparent", "not a trace context")];
    let worse = post_event(&app.base, &channel.channel_id, &garbage, "wamid.worse").await;
    for attempt in receiver.wait_for(3).await {
        assert!(
            attempt.header_values("traceparent").is_empty(),
            "{:?}",
            attempt.headers
        );
        assert!(attempt.header_values("tracestate").is_empty());
    }
    for event in [plain, bad, worse] {
        let view = app.event(event).await;
        assert!(view.get("traceparent").is_none(), "nothing stored: {view}");
        assert!(view.get("tracestate").is_none());
    }
}

#[tokio::test]
async fn a_meta_notification_hands_its_traceparent_to_each_numbers_delivery() {
    let app = spawn_app_with(|config| {
        fast_delivery(config);
        config.meta_app_secret = Some(Secret::new("meta-app-secret"));
    })
    .await;
    let channel = app.provision().await;
    let receiver = TestReceiver::start().await;
    app.set_webhook(&channel.api_key, &receiver.url, json!({}))
        .await;
    let number_id = app.admin_channel(&channel.channel_id).await["phone_number_id"]
        .as_str()
        .expect("phone_number_id")
        .to_owned();
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": channel.waba_id.to_string(), "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000000", "phone_number_id": number_id},
            "messages": [{"from": "4917600000000", "id": "wamid.meta", "type": "text", "text": {"body": "hi"}}]}}
    ]}]})
    .to_string();
    let response = app
        .client
        .post(app.url("/webhooks/whatsapp"))
        .header(
            "X-Hub-Signature-256",
            signature("meta-app-secret", body.as_bytes()),
        )
        .header("traceparent", traceparent())
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::OK);
    let received = receiver.wait_for(1).await;
    assert_eq!(
        received[0].header_values("traceparent"),
        [traceparent().as_str()]
    );
    assert!(received[0].header_values("tracestate").is_empty());
}

/// Every span of every export request the OTLP receiver got, with its resource's
/// attributes.
fn exported_spans(otlp: &TestReceiver) -> Vec<(Vec<KeyValue>, Span)> {
    let mut spans = Vec::new();
    for request in otlp.received() {
        assert_eq!(request.path, "/v1/traces");
        let decoded =
            ExportTraceServiceRequest::decode(request.body.as_slice()).expect("OTLP protobuf");
        for resource_spans in decoded.resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans.into_iter().map(|span| (resource.clone(), span)));
            }
        }
    }
    spans
}

/// The value of attribute `key`, as JSON (strings and integers are all the spans hold).
fn attribute(attributes: &[KeyValue], key: &str) -> Value {
    let found = attributes.iter().find(|kv| kv.key == key);
    match found
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
    {
        Some(any_value::Value::StringValue(text)) => json!(text),
        Some(any_value::Value::IntValue(number)) => json!(number),
        Some(other) => json!(format!("{other:?}")),
        None => Value::Null,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn one_notification_is_followed_from_the_admin_post_to_the_receivers_200() {
    let (receiver, otlp) = (TestReceiver::start().await, TestReceiver::start().await);
    let collector = otlp.url.trim_end_matches("/hook").to_owned();
    let data = tempfile::tempdir().expect("temp dir");
    let database = fresh_database_url(data.path());
    // A long batch delay: the spans reach the collector through the flush at the stop.
    let args = [
        "--otlp-endpoint",
        collector.as_str(),
        "--node-id",
        "trace-node",
    ];
    let (mut child, base) = start_binary(&database, &args, |command| {
        command.env("OTEL_BSP_SCHEDULE_DELAY", "600000");
    });
    let client = reqwest::Client::new();
    let channel = provision_over_http(&client, &base).await;
    let (channel_id, api_key) = (
        channel["id"].as_str().unwrap(),
        channel["api_key"].as_str().unwrap(),
    );
    let configured = client
        .post(format!("{base}/v1/configs/webhook"))
        .header("D360-API-KEY", api_key)
        .json(&json!({"url": receiver.url}))
        .send()
        .await
        .expect("set webhook");
    assert!(configured.status().is_success(), "{}", configured.status());
    let parent = traceparent();
    let event = post_event(&base, channel_id, &[("traceparent", &parent)], "wamid.otlp").await;

    let delivered = receiver.wait_for(1).await;
    let sent = delivered[0].header_values("traceparent");
    let fields: Vec<&str> = sent[0].split('-').collect();
    assert_eq!(fields.len(), 4, "{sent:?}");
    assert_eq!(
        (fields[0], fields[1], fields[3]),
        ("00", TRACE_ID, "01"),
        "the incoming trace"
    );
    assert_ne!(fields[2], PARENT_ID, "the parent is the attempt's own span");
    // Without a traceparent, the request span starts a trace and the delivery carries it.
    post_event(&base, channel_id, &[], "wamid.untraced").await;
    let delivered = receiver.wait_for(2).await;
    let started = delivered[1].header_values("traceparent");
    let started: Vec<&str> = started
        .first()
        .expect("a started trace")
        .split('-')
        .collect();
    assert_ne!(started[1], TRACE_ID);

    let stop = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(stop.expect("kill").success());
    assert!(wait_with_deadline(&mut child).success());
    otlp.wait_until(|received| !received.is_empty()).await;
    let spans = exported_spans(&otlp);
    let in_trace = |span: &&(Vec<KeyValue>, Span)| hex(&span.1.trace_id) == TRACE_ID;
    let (resource, request) = spans
        .iter()
        .filter(in_trace)
        .find(|(_, span)| span.name == "POST /admin/channels/{channel_id}/events")
        .unwrap_or_else(|| panic!("no request span in {spans:#?}"));
    assert_eq!(
        hex(&request.parent_span_id),
        PARENT_ID,
        "the request span joins the sender's"
    );
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(
        attribute(&request.attributes, "http.route"),
        "/admin/channels/{channel_id}/events"
    );
    assert_eq!(
        attribute(&request.attributes, "http.response.status_code"),
        202
    );
    assert_eq!(attribute(resource, "service.name"), "switchboard");
    assert_eq!(attribute(resource, "service.instance.id"), "trace-node");
    assert_eq!(
        attribute(resource, "service.version"),
        env!("CARGO_PKG_VERSION")
    );

    let (_, attempt) = spans
        .iter()
        .filter(in_trace)
        .find(|(_, span)| hex(&span.span_id) == fields[2])
        .unwrap_or_else(|| panic!("no span {} in {spans:#?}", fields[2]));
    assert_eq!(
        attempt.parent_span_id, request.span_id,
        "the attempt is the request's child"
    );
    assert_eq!(attempt.kind, SpanKind::Client as i32);
    assert_eq!(attribute(&attempt.attributes, "event.id"), event);
    assert_eq!(attribute(&attempt.attributes, "channel.id"), channel_id);
    assert_eq!(attribute(&attempt.attributes, "attempt"), 1);
    assert_eq!(attribute(&attempt.attributes, "delivery.target"), "primary");
    assert_eq!(
        attribute(&attempt.attributes, "http.response.status_code"),
        200
    );
    let destination = attribute(&attempt.attributes, "destination.id");
    assert_eq!(
        destination.as_str().map(str::len),
        Some(16),
        "{destination}"
    );

    let of_started = |span: &&(Vec<KeyValue>, Span)| hex(&span.1.trace_id) == started[1];
    let root = spans
        .iter()
        .filter(of_started)
        .find(|(_, span)| span.parent_span_id.is_empty());
    let (_, root) = root.unwrap_or_else(|| panic!("no root span of {started:?} in {spans:#?}"));
    assert_eq!(root.name, "POST /admin/channels/{channel_id}/events");
    let (_, second) = spans
        .iter()
        .filter(of_started)
        .find(|(_, span)| hex(&span.span_id) == started[2])
        .unwrap_or_else(|| panic!("no attempt span {started:?} in {spans:#?}"));
    assert_eq!(second.parent_span_id, root.span_id);
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let data = tempfile::tempdir().expect("temp dir");
    let database = fresh_database_url(data.path());
    let mut child = switchboard()
        .args(["serve", "--listen", "127.0.0.1:0", "--database", &database])
        .args(["--log-format", "json", "--dev"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchboard");
    let stdout = child.stdout.take().expect("stdout");
    let printed = Arc::new(Mutex::new(Vec::new()));
    let reader = std::thread::spawn({
        let printed = Arc::clone(&printed);
        move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                printed.lock().unwrap().push(line);
            }
        }
    });
    // Logs the address as JSON (the helper reads the JSON field) and keeps the log.
    let (address, log) = crate::cli::wait_for_address_keeping_log(&mut child);
    let client = reqwest::Client::new();
    let health = client.get(format!("http://{address}/health")).send().await;
    assert_eq!(health.expect("health").status(), StatusCode::OK);
    let stop = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(stop.expect("kill").success());
    assert!(wait_with_deadline(&mut child).success());
    reader.join().expect("stdout reader");

    let stderr = log.lock().unwrap().clone();
    let stdout = printed.lock().unwrap().clone();
    assert!(stderr.contains("shutdown requested"), "{stderr}");
    assert_eq!(stdout.len(), 1, "the generated token, once: {stdout:?}");
    let lines: Vec<&str> = stderr
        .lines()
        .chain(stdout.iter().map(String::as_str))
        .collect();
    assert!(lines.len() >= 3, "{lines:?}");
    for line in lines {
        let object: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(object["timestamp"].is_string(), "{line}");
        assert!(object["level"].is_string(), "{line}");
        assert!(object["fields"]["message"].is_string(), "{line}");
    }
}
