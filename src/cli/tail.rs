//! `switchboard tail`: follows `GET /admin/stream` and prints one line per message, decoded
//! (or the data lines with `--json`). A dropped connection, or a `lagged` notice from a
//! server whose queue for this reader overflowed, is resumed with `Last-Event-ID` from the
//! last cursor seen, so nothing told is missed; Ctrl-C ends it with exit code 0.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::args::TailArgs;
use super::output;
use super::sse::{Message, Parser};
use super::{CliError, Client};
use crate::clock::{now_ms, rfc3339};

/// Longest silence before the connection is taken for dead (the server pings every 15 s).
const SILENCE: Duration = Duration::from_secs(45);

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Why one connection ended.
enum End {
    /// The server said this reader fell behind; resume at once from its cursor.
    Lagged,
    /// The connection closed or went silent.
    Dropped(String),
}

/// Runs `switchboard tail` until Ctrl-C.
pub async fn tail(args: TailArgs) -> Result<(), CliError> {
    let client = Client::new(&args.connection)?;
    tokio::select! {
        result = follow(&client, &args) => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Connects, prints, and reconnects from the cursor, backing off while the server is away.
/// An error answer (bad token, 404) ends it; so does a server unreachable at the start.
async fn follow(client: &Client, args: &TailArgs) -> Result<(), CliError> {
    let mut cursor: Option<String> = None;
    let mut connected = false;
    let mut backoff = Duration::from_millis(500);
    loop {
        match connect_once(client, args, &mut cursor, &mut connected).await {
            Ok(End::Lagged) => {
                output::note("tail: fell behind; resuming from the last cursor");
                continue;
            }
            Ok(End::Dropped(reason)) => {
                output::note(&format!("tail: connection lost ({reason}); reconnecting"));
                backoff = Duration::from_millis(500);
            }
            Err(CliError::Unreachable { reason, .. }) if connected => {
                output::note(&format!("tail: cannot reconnect ({reason}); retrying"));
            }
            Err(CliError::Server { status, message }) if connected && status.is_server_error() => {
                output::note(&format!("tail: {message} ({status}); retrying"));
            }
            Err(error) => return Err(error),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection: reads messages until it ends, keeping `cursor` at the last id seen.
async fn connect_once(
    client: &Client,
    args: &TailArgs,
    cursor: &mut Option<String>,
    connected: &mut bool,
) -> Result<End, CliError> {
    let query: Vec<(&str, &String)> = [
        ("channel", &args.channel),
        ("destination", &args.destination),
        ("kind", &args.kind),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.as_ref().map(|v| (name, v)))
    .collect();
    let mut request = client
        .request(Method::GET, "/admin/stream")
        .query(&query)
        .header("Accept", "text/event-stream");
    if let Some(id) = cursor.as_deref() {
        request = request.header("Last-Event-ID", id);
    }
    let mut response = request.send().await.map_err(|e| client.unreachable(&e))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).map_err(|_| client.not_json(status))?;
        return Err(Client::failure(status, &body));
    }
    *connected = true;
    let mut parser = Parser::default();
    loop {
        let chunk = match tokio::time::timeout(SILENCE, response.chunk()).await {
            Err(_) => return Ok(End::Dropped("no data or ping for 45 s".into())),
            Ok(Err(error)) => return Ok(End::Dropped(crate::error_chain(&error))),
            Ok(Ok(None)) => return Ok(End::Dropped("closed by the server".into())),
            Ok(Ok(Some(chunk))) => chunk,
        };
        for message in parser.feed(&chunk) {
            if let Some(id) = &message.id {
                *cursor = Some(id.clone());
            }
            if message.event == "lagged" {
                if let Some(resume) = resume_cursor(&message) {
                    *cursor = Some(resume);
                }
                return Ok(End::Lagged);
            }
            if client.json {
                output::say(&message.data);
            } else {
                output::say(&describe(&message));
            }
        }
    }
}

/// The cursor a `lagged` message says to resume from.
fn resume_cursor(message: &Message) -> Option<String> {
    let data: Value = serde_json::from_str(&message.data).ok()?;
    data["resume"].as_str().map(str::to_owned)
}

/// One human line for a message: the time, what it is, and what it says.
pub fn describe(message: &Message) -> String {
    let Ok(data) = serde_json::from_str::<Value>(&message.data) else {
        return format!("{}  {} {}", clock(None), message.event, message.data);
    };
    let text = |name: &str| output::cell(data.get(name));
    match message.event.as_str() {
        "event" => format!(
            "{}  event {}  {}  {}  {}",
            clock(data["received_at"].as_str()),
            text("event_id"),
            text("kind"),
            owner(&data),
            summary(&data["summary"])
        ),
        "attempt" => {
            let outcome = match data["status"].as_u64() {
                Some(status) => status.to_string(),
                None => text("error"),
            };
            let retry = data["retry_after_ms"]
                .as_i64()
                .map_or(String::new(), |ms| format!("  retry after {ms} ms"));
            format!(
                "{}  attempt {}  delivery {} → {} in {} ms  {}{retry}",
                clock(data["at"].as_str()),
                text("attempt_id"),
                text("delivery_id"),
                outcome,
                text("duration_ms"),
                text("url")
            )
        }
        "delivery" => format!(
            "{}  delivery {} {}  event {}  {}",
            clock(None),
            text("delivery_id"),
            text("state"),
            text("event_id"),
            text("target")
        ),
        "destination" => format!(
            "{}  destination {} {}  {}",
            clock(None),
            text("destination"),
            text("change"),
            text("url")
        ),
        other => format!("{}  {other} {}", clock(None), message.data),
    }
}

/// `HH:MM:SS` of an RFC 3339 time, or of now.
fn clock(rfc: Option<&str>) -> String {
    let time = rfc.map_or_else(|| rfc3339(now_ms()), str::to_owned);
    time.get(11..19).unwrap_or(&time).to_owned()
}

/// Whose event it is: the channel, else the partner.
fn owner(data: &Value) -> String {
    match (data["channel_id"].as_str(), data["partner_id"].as_str()) {
        (Some(channel), _) => format!("channel {channel}"),
        (None, Some(partner)) => format!("partner {partner}"),
        (None, None) => "-".to_owned(),
    }
}

/// The messages, statuses or partner event type an event summary names.
fn summary(summary: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(kind) = summary["type"].as_str() {
        parts.push(format!("partner event {kind}"));
    }
    for message in summary["messages"].as_array().into_iter().flatten() {
        let mut part = format!(
            "message {} from {} {}",
            output::cell(message.get("id")),
            output::cell(message.get("from")),
            output::cell(message.get("type"))
        );
        if let Some(text) = message["text"].as_str() {
            part.push_str(&format!(" {text:?}"));
        }
        parts.push(part);
    }
    for status in summary["statuses"].as_array().into_iter().flatten() {
        let mut part = format!(
            "status {} {} to {}",
            output::cell(status.get("id")),
            output::cell(status.get("status")),
            output::cell(status.get("recipient_id"))
        );
        for error in status["errors"].as_array().into_iter().flatten() {
            part.push_str(&format!(
                " error {} {}",
                output::cell(error.get("code")),
                output::cell(error.get("title"))
            ));
        }
        parts.push(part);
    }
    if parts.is_empty() {
        let fields: Vec<String> = summary["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| output::cell(Some(f)))
            .collect();
        parts.push(format!("fields {}", fields.join(",")));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(event: &str, data: &str) -> Message {
        Message {
            id: Some("1.0".into()),
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn an_event_line_names_its_message() {
        let line = describe(&message(
            "event",
            r#"{"event_id": 123, "kind": "whatsapp", "channel_id": "ch1", "partner_id": null,
                "phone_number_id": "1", "received_at": "2026-12-02T12:03:04.000Z",
                "summary": {"messages": [{"id": "wamid.X", "from": "4917", "type": "text", "text": "hi"}],
                            "statuses": [], "fields": ["messages"]}}"#,
        ));
        assert_eq!(
            line,
            "12:03:04  event 123  whatsapp  channel ch1  message wamid.X from 4917 text \"hi\""
        );
    }

    #[test]
    fn attempt_delivery_and_destination_lines() {
        let attempt = describe(&message(
            "attempt",
            r#"{"attempt_id": 456, "delivery_id": 77, "status": 200, "error": null,
                "duration_ms": 12, "at": "2026-12-02T12:03:05Z", "url": "https://r.example/h",
                "retry_after_ms": null}"#,
        ));
        assert_eq!(
            attempt,
            "12:03:05  attempt 456  delivery 77 → 200 in 12 ms  https://r.example/h"
        );
        let delivery = describe(&message(
            "delivery",
            r#"{"delivery_id": 77, "event_id": 123, "state": "delivered", "target": "primary"}"#,
        ));
        assert!(delivery.ends_with("delivery 77 delivered  event 123  primary"));
        let destination = describe(&message(
            "destination",
            r#"{"destination": "ab12", "url": "https://r.example/h", "change": "paused"}"#,
        ));
        assert!(destination.ends_with("destination ab12 paused  https://r.example/h"));
    }

    #[test]
    fn a_lagged_message_names_its_resume_cursor() {
        let lagged = message("lagged", r#"{"resume": "10.20"}"#);
        assert_eq!(resume_cursor(&lagged).as_deref(), Some("10.20"));
    }
}
