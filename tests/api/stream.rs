//! `GET /admin/stream`: the live tail, read over real sockets: what an event, its attempts
//! and its delivery tell, the filters, a resume from the store, a reader that reads nothing,
//! the idle timeout, the stream limit and shutdown.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    fast_delivery, is_in_state, metric_sum, spawn_app, spawn_app_with, status_and_json, TestApp,
    ADMIN_TOKEN,
};
use crate::receiver::{Behavior, TestReceiver};

/// One server-sent message.
#[derive(Debug, Clone)]
struct Message {
    id: String,
    event: String,
    data: Value,
}

/// An open stream, read with reqwest chunk by chunk.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(app: &TestApp, query: &str, last_id: Option<&str>) -> Stream {
        let mut request = app.admin(Method::GET, &format!("/admin/stream{query}"));
        if let Some(id) = last_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("stream");
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert_eq!(content_type, "text/event-stream");
        Stream {
            response,
            buffer: String::new(),
        }
    }

    /// The next message (pings skipped); `None` when the stream ended. 20 s deadline.
    async fn next(&mut self) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(message) = parse(&block) {
                    return Some(message);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .expect("no message within 20 s");
            match chunk {
                Ok(Some(bytes)) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next message that `wanted` accepts, skipping others.
    async fn next_where(&mut self, wanted: impl Fn(&Message) -> bool) -> Message {
        loop {
            let message = self.next().await.expect("the stream ended");
            if wanted(&message) {
                return message;
            }
        }
    }
}

/// A block of `field: value` lines; `None` for a comment-only block (a ping).
fn parse(block: &str) -> Option<Message> {
    let (mut id, mut event, mut data) = (String::new(), String::new(), None);
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("id: ") {
            id = value.to_owned();
        } else if let Some(value) = line.strip_prefix("event: ") {
            event = value.to_owned();
        } else if let Some(value) = line.strip_prefix("data: ") {
            data = Some(serde_json::from_str(value).expect("data is JSON"));
        }
    }
    Some(Message {
        id,
        event,
        data: data?,
    })
}

fn text_message(wamid: &str, text: &str) -> Value {
    json!({"messages": [{"from": "4917600000001", "id": wamid, "type": "text", "text": {"body": text}}]})
}

/// The messages about `event_id` (its event, and its deliveries' attempts and ends).
fn of_event(event_id: i64) -> impl Fn(&Message) -> bool {
    move |m| m.data["event_id"] == event_id
}

/// A provisioned channel whose webhook is a fresh receiver answering `default`.
async fn channel_with_receiver(app: &TestApp, default: Behavior) -> (String, TestReceiver) {
    let number = app.provision().await;
    let receiver = TestReceiver::with_default(default).await;
    app.set_webhook(&number.api_key, &receiver.url, json!({}))
        .await;
    (number.channel_id, receiver)
}

#[tokio::test]
async fn an_event_its_attempt_and_its_delivery_are_told_as_they_happen() {
    let app = spawn_app_with(fast_delivery).await;
    let (channel, receiver) = channel_with_receiver(&app, Behavior::Status(200)).await;
    let mut stream = Stream::open(&app, &format!("?channel={channel}"), None).await;
    let long = "x".repeat(300);
    let event_id = app
        .post_event(&channel, text_message("wamid.LIVE", &long))
        .await;

    let event = stream.next_where(of_event(event_id)).await;
    assert_eq!(event.event, "event");
    assert_eq!(event.id, format!("{event_id}.0"));
    assert_eq!(event.data["kind"], "whatsapp");
    assert_eq!(event.data["channel_id"], channel.as_str());
    assert!(event.data["received_at"].as_str().unwrap().ends_with('Z'));
    let message = &event.data["summary"]["messages"][0];
    assert_eq!(message["id"], "wamid.LIVE");
    assert_eq!(message["from"], "4917600000001");
    assert_eq!(message["type"], "text");
    assert_eq!(message["text"].as_str().unwrap().len(), 200);
    assert_eq!(event.data["summary"]["fields"], json!(["messages"]));

    let attempt = stream.next_where(of_event(event_id)).await;
    assert_eq!(attempt.event, "attempt");
    assert_eq!(attempt.data["status"], 200);
    assert!(attempt.data["duration_ms"].is_i64());
    assert_eq!(attempt.data["error"], Value::Null);
    assert_eq!(attempt.data["target"], "primary");
    assert_eq!(attempt.data["url"], receiver.url.as_str());
    let attempt_id = attempt.data["attempt_id"].as_i64().unwrap();
    assert_eq!(attempt.id, format!("{event_id}.{attempt_id}"));
    let destination = attempt.data["destination"].as_str().unwrap().to_owned();
    assert_eq!(destination.len(), 16);

    let delivered = stream.next_where(of_event(event_id)).await;
    assert_eq!(delivered.event, "delivery");
    assert_eq!(delivered.data["state"], "delivered");
    assert_eq!(delivered.data["delivery_id"], attempt.data["delivery_id"]);
    assert_eq!(delivered.data["destination"], destination.as_str());
    assert_eq!(delivered.data["channel_id"], channel.as_str());
}

#[tokio::test]
async fn a_failed_attempt_is_told_with_its_status_and_a_delivery_without_route_is_dropped() {
    let app = spawn_app_with(fast_delivery).await;
    let (channel, receiver) = channel_with_receiver(&app, Behavior::Status(200)).await;
    receiver.script([Behavior::Status(500)]);
    let unrouted = app.provision().await.channel_id;
    let mut stream = Stream::open(&app, "?kind=attempt,delivery", None).await;

    let event_id = app
        .post_event(&channel, text_message("wamid.F", "hi"))
        .await;
    let failed = stream.next_where(of_event(event_id)).await;
    assert_eq!(failed.event, "attempt");
    assert_eq!(failed.data["status"], 500);
    let retried = stream.next_where(of_event(event_id)).await;
    assert_eq!(retried.event, "attempt");
    assert_eq!(retried.data["status"], 200);
    assert!(retried.data["attempt_id"].as_i64() > failed.data["attempt_id"].as_i64());
    let delivered = stream.next_where(of_event(event_id)).await;
    assert_eq!(delivered.data["state"], "delivered");

    let dropped_id = app
        .post_event(&unrouted, text_message("wamid.D", "hi"))
        .await;
    let dropped = stream.next_where(of_event(dropped_id)).await;
    assert_eq!(dropped.event, "delivery");
    assert_eq!(dropped.data["state"], "dropped");
    assert_eq!(dropped.data["destination"], Value::Null);
}

#[tokio::test]
async fn filters_keep_one_channel_one_destination_and_the_kinds_asked_for() {
    let app = spawn_app_with(fast_delivery).await;
    let (a, _ra) = channel_with_receiver(&app, Behavior::Status(200)).await;
    let (b, _rb) = channel_with_receiver(&app, Behavior::Status(200)).await;

    // Learn b's destination from an unfiltered stream.
    let mut all = Stream::open(&app, "", None).await;
    let first_b = app.post_event(&b, text_message("wamid.B0", "hi")).await;
    let attempt = all
        .next_where(|m| m.event == "attempt" && m.data["event_id"] == first_b)
        .await;
    let b_destination = attempt.data["destination"].as_str().unwrap().to_owned();

    let mut of_a = Stream::open(&app, &format!("?channel={a}&kind=event,delivery"), None).await;
    let mut to_b = Stream::open(&app, &format!("?destination={b_destination}"), None).await;
    let on_b = app.post_event(&b, text_message("wamid.B1", "hi")).await;
    let on_a = app.post_event(&a, text_message("wamid.A1", "hi")).await;

    let event = of_a.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), &event.data["event_id"]),
        ("event", &json!(on_a))
    );
    let delivery = of_a.next().await.unwrap();
    assert_eq!(
        delivery.event, "delivery",
        "no attempt messages: {delivery:?}"
    );
    assert_eq!(delivery.data["event_id"], on_a);

    let attempt = to_b.next().await.unwrap();
    assert_eq!(
        (attempt.event.as_str(), &attempt.data["event_id"]),
        ("attempt", &json!(on_b))
    );
    let delivery = to_b.next().await.unwrap();
    assert_eq!(delivery.event, "delivery");
    assert_eq!(delivery.data["event_id"], on_b);
    assert_eq!(delivery.data["destination"], b_destination.as_str());
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_gets_what_it_missed_once_then_live() {
    let app = spawn_app_with(fast_delivery).await;
    let (channel, _receiver) = channel_with_receiver(&app, Behavior::Status(200)).await;
    let query = format!("?channel={channel}");
    let mut stream = Stream::open(&app, &query, None).await;
    let first = app
        .post_event(&channel, text_message("wamid.R1", "one"))
        .await;
    let mut last = String::new();
    for _ in 0..3 {
        last = stream.next_where(of_event(first)).await.id;
    }
    drop(stream);

    let mut missed = Vec::new();
    for wamid in ["wamid.R2", "wamid.R3"] {
        let id = app
            .post_event(&channel, text_message(wamid, "missed"))
            .await;
        app.wait_for_event(id, |e| is_in_state(e, "primary", "delivered"))
            .await;
        missed.push(id);
    }

    let mut resumed = Stream::open(&app, &query, Some(&last)).await;
    let mut seen = HashSet::new();
    let mut told = Vec::new();
    for n in 0..6 {
        let message = resumed.next().await.unwrap();
        if n == 0 {
            // Each replayed message carries the cursor as of itself, not the replay's end.
            let (_, attempt_part) = last.split_once('.').unwrap();
            assert_eq!(message.id, format!("{}.{attempt_part}", missed[0]));
        }
        let key = (message.event.clone(), message.data.to_string());
        assert!(seen.insert(key), "told twice: {message:?}");
        told.push((
            message.event.clone(),
            message.data["event_id"].as_i64().unwrap(),
        ));
    }
    let expected: Vec<(String, i64)> = missed
        .iter()
        .flat_map(|id| ["event", "attempt", "delivery"].map(|kind| (kind.to_owned(), *id)))
        .collect();
    assert_eq!(told, expected);

    let live = app
        .post_event(&channel, text_message("wamid.R4", "live"))
        .await;
    let next = resumed.next().await.unwrap();
    assert_eq!(
        (next.event.as_str(), &next.data["event_id"]),
        ("event", &json!(live))
    );
    let (event_part, _) = next.id.split_once('.').unwrap();
    assert_eq!(event_part, live.to_string());
}

#[tokio::test]
async fn a_reader_that_reads_nothing_is_dropped_and_delivery_goes_on() {
    const EVENTS: usize = 3000;
    let app = spawn_app_with(fast_delivery).await;
    let (channel, _receiver) = channel_with_receiver(&app, Behavior::Status(200)).await;
    let mut sleeper = raw_stream(&app).await;

    let posts: Vec<_> = (0..8)
        .map(|worker| {
            let (client, url) = (
                app.client.clone(),
                app.url(&format!("/admin/channels/{channel}/events")),
            );
            tokio::spawn(async move {
                for n in (worker..EVENTS).step_by(8) {
                    let body = batch_of_messages(n);
                    let response = client
                        .post(&url)
                        .bearer_auth(ADMIN_TOKEN)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::ACCEPTED);
                }
            })
        })
        .collect();
    for post in posts {
        post.await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let text = app.metrics().await;
        if metric_sum(
            &text,
            "switchboard_deliveries_total",
            &[("state", "delivered")],
        ) >= EVENTS as u64
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries did not complete"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Now read: the stream ends (lagged, or cut), well before it told everything.
    let text = read_until_closed(&mut sleeper).await;
    let deliveries = text.matches("event: delivery\n").count();
    assert!(
        text.contains("event: lagged\n") || deliveries < EVENTS,
        "a reader that read nothing was told all {deliveries} deliveries"
    );
    if let Some(at) = text.find("event: lagged\n") {
        let data = text[at..]
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        let lagged: Value = serde_json::from_str(data).unwrap();
        assert!(lagged["resume"].as_str().unwrap().contains('.'));
    }
}

/// A notification of 20 text messages: its `event` message is about 6 KiB, so 3000 of them
/// are far more than the kernel's socket buffers hold for a reader that reads nothing.
fn batch_of_messages(n: usize) -> Value {
    let messages: Vec<Value> = (0..20)
        .map(|i| {
            json!({"from": "4917600000001", "id": format!("wamid.S{n}.{i}"), "type": "text",
                        "text": {"body": "slow ".repeat(40)}})
        })
        .collect();
    json!({ "messages": messages })
}

/// Reads the raw stream until the server closes it (60 s deadline); returns the text.
async fn read_until_closed(tcp: &mut tokio::net::TcpStream) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::time::timeout_at(deadline, tcp.read(&mut buffer)).await;
        let text = String::from_utf8_lossy(&received).into_owned();
        let Ok(read) = read else {
            let deliveries = text.matches("event: delivery\n").count();
            panic!(
                "never closed; {deliveries} deliveries told, {} bytes",
                received.len()
            );
        };
        match read {
            Ok(0) | Err(_) => return text,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// A stream opened on a raw socket with a small receive buffer, asking the server to close
/// the connection when the stream ends; nothing is read until the test does.
async fn raw_stream(app: &TestApp) -> tokio::net::TcpStream {
    let address: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(address).await.unwrap();
    let request = format!(
        "GET /admin/stream HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Connection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    tcp
}

#[tokio::test]
async fn a_stream_longer_than_the_idle_timeout_is_not_cut() {
    let app = spawn_app_with(|config| {
        fast_delivery(config);
        config.http.idle_timeout = Duration::from_millis(200);
    })
    .await;
    let (channel, _receiver) = channel_with_receiver(&app, Behavior::Status(200)).await;
    let mut stream = Stream::open(&app, &format!("?channel={channel}&kind=event"), None).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let id = app
        .post_event(&channel, text_message("wamid.I", "still here"))
        .await;
    let event = stream.next().await.expect("the stream was cut");
    assert_eq!(event.data["event_id"], id);
}

#[tokio::test]
async fn streams_end_at_shutdown_without_holding_the_grace_period() {
    let app = spawn_app_with(|config| config.http.shutdown_grace = Duration::from_secs(60)).await;
    let mut stream = Stream::open(&app, "", None).await;
    tokio::time::timeout(Duration::from_secs(20), app.stop())
        .await
        .expect("the stop waited for the stream");
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn streams_beyond_the_limit_are_answered_503() {
    let app = spawn_app_with(|config| config.http.max_streams = 2).await;
    let first = Stream::open(&app, "", None).await;
    let _second = Stream::open(&app, "", None).await;
    let third = app
        .admin(Method::GET, "/admin/stream")
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_json(third).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["error"].as_str().unwrap().contains("at most 2"),
        "{body}"
    );

    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let again = app
            .admin(Method::GET, "/admin/stream")
            .send()
            .await
            .unwrap();
        if again.status() == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed stream's slot was kept"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bad_filters_cursors_and_credentials_are_refused() {
    let app = spawn_app().await;
    let unauthenticated = app
        .client
        .get(app.url("/admin/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    for (query, word) in [
        ("?destination=nothex", "destination"),
        ("?destination=0123456789ABCDEF", "destination"),
        ("?kind=event,bogus", "kind"),
        ("?after=12", "cursor"),
        ("?after=a.b", "cursor"),
    ] {
        let response = app
            .admin(Method::GET, &format!("/admin/stream{query}"))
            .send()
            .await
            .unwrap();
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            body["error"].as_str().unwrap().contains(word),
            "{query}: {body}"
        );
    }
    let response = app
        .admin(Method::GET, "/admin/stream")
        .header("Last-Event-ID", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_destination_paused_by_hand_is_told_with_its_partner_event() {
    let app = spawn_app_with(fast_delivery).await;
    let (channel, receiver) = channel_with_receiver(&app, Behavior::Status(200)).await;
    let event_id = app
        .post_event(&channel, text_message("wamid.P", "hi"))
        .await;
    app.wait_for_event(event_id, |e| is_in_state(e, "primary", "delivered"))
        .await;
    let mut stream = Stream::open(&app, "?kind=event,destination", None).await;
    let id = switchboard::domain::DestinationId::of(&receiver.url).unwrap();
    let response = app
        .admin(Method::POST, &format!("/admin/destinations/{id}/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let changed = stream.next_where(|m| m.event == "destination").await;
    assert_eq!(changed.data["change"], "paused");
    assert_eq!(changed.data["destination"], id.as_str());
    let told = stream.next_where(|m| m.event == "event").await;
    assert_eq!(told.data["kind"], "partner");
    assert_eq!(told.data["summary"]["type"], "destination_paused");
}
