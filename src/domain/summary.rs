//! The summary of a stored event that the live stream shows beside its ids: what an operator
//! watching the tail needs to recognise a notification (its messages' wamids, senders and
//! text, its statuses, the change fields; a partner event's type) without fetching the
//! whole payload.
//!
//! One function computes it, from the stored bytes, for the live feed and for a replay
//! from the store alike, so both show the same summary of the same event.

use serde::Serialize;
use serde_json::Value;

use super::EventKind;

/// How much of a text message's body the summary keeps, in characters.
pub const TEXT_PREVIEW_CHARS: usize = 200;

/// What the stream says about one event's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Summary {
    /// A Meta envelope (WhatsApp, WABA-level or unroutable events).
    Envelope(EnvelopeSummary),
    /// A partner event: its type.
    Partner {
        /// The partner event's `type` (`channel_created`, `destination_paused`, …).
        #[serde(rename = "type")]
        kind: Option<String>,
    },
}

/// The messages, statuses and change fields of a Meta envelope, in payload order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EnvelopeSummary {
    /// Inbound messages.
    pub messages: Vec<MessageSummary>,
    /// Status updates of outbound messages.
    pub statuses: Vec<StatusSummary>,
    /// Each change's `field`, once each.
    pub fields: Vec<String>,
}

/// One inbound message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageSummary {
    /// The wamid.
    pub id: Option<String>,
    /// The sender's WhatsApp id.
    pub from: Option<String>,
    /// `text`, `image`, `interactive`, …
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// A text message's body, its first [`TEXT_PREVIEW_CHARS`] characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One status update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusSummary {
    /// The wamid of the message the status is about.
    pub id: Option<String>,
    /// `sent`, `delivered`, `read`, `failed`.
    pub status: Option<String>,
    /// Who the message went to.
    pub recipient_id: Option<String>,
    /// Why it failed, when it did.
    pub errors: Vec<StatusError>,
}

/// One error of a failed status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusError {
    /// Meta's error code.
    pub code: Option<i64>,
    /// Meta's short title.
    pub title: Option<String>,
}

/// Summarises a stored event payload of `kind`; a payload that is not JSON gives an empty
/// summary (the stream never fails on what it only describes).
pub fn summary(kind: EventKind, payload: &[u8]) -> Summary {
    let parsed: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    match kind {
        EventKind::Partner => Summary::Partner {
            kind: text(&parsed, "type"),
        },
        EventKind::Whatsapp | EventKind::Waba | EventKind::Unroutable => {
            Summary::Envelope(envelope_summary(&parsed))
        }
    }
}

/// Walks `entry[].changes[]` of an envelope.
fn envelope_summary(envelope: &Value) -> EnvelopeSummary {
    let mut summary = EnvelopeSummary::default();
    let changes = items(envelope, "entry").flat_map(|entry| items(entry, "changes"));
    for change in changes {
        if let Some(field) = text(change, "field") {
            if !summary.fields.contains(&field) {
                summary.fields.push(field);
            }
        }
        let value = &change["value"];
        summary
            .messages
            .extend(items(value, "messages").map(message));
        summary
            .statuses
            .extend(items(value, "statuses").map(status));
    }
    summary
}

fn message(message: &Value) -> MessageSummary {
    MessageSummary {
        id: text(message, "id"),
        from: text(message, "from"),
        kind: text(message, "type"),
        text: message["text"]["body"]
            .as_str()
            .map(|body| body.chars().take(TEXT_PREVIEW_CHARS).collect()),
    }
}

fn status(status: &Value) -> StatusSummary {
    StatusSummary {
        id: text(status, "id"),
        status: text(status, "status"),
        recipient_id: text(status, "recipient_id"),
        errors: items(status, "errors")
            .map(|error| StatusError {
                code: error["code"].as_i64(),
                title: text(error, "title"),
            })
            .collect(),
    }
}

/// The elements of the array `value[key]` (none when it is absent or not an array).
fn items<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    value[key].as_array().into_iter().flatten()
}

/// `value[key]` when it is a string.
fn text(value: &Value, key: &str) -> Option<String> {
    value[key].as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/meta/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).unwrap()
    }

    #[test]
    fn a_text_message_gives_its_wamid_sender_and_text() {
        let summary = summary(EventKind::Whatsapp, &fixture("text.json"));
        let shown = serde_json::to_value(&summary).unwrap();
        assert_eq!(
            shown,
            json!({
                "messages": [{
                    "id": "wamid.HBgNNDkxNzYxMjM0NTY3OBUCABIYFDNBMDFBRjE0RTRGNkQ1QjVGQTA2AA==",
                    "from": "4917612345678",
                    "type": "text",
                    "text": "Grüß Gott! Können Sie mir helfen? 你好，世界 😀👍🏽",
                }],
                "statuses": [],
                "fields": ["messages"],
            })
        );
    }

    #[test]
    fn a_failed_status_gives_its_errors() {
        let summary = summary(EventKind::Whatsapp, &fixture("status_failed.json"));
        let shown = serde_json::to_value(&summary).unwrap();
        assert_eq!(shown["messages"], json!([]));
        let status = &shown["statuses"][0];
        assert_eq!(status["status"], "failed");
        assert_eq!(status["recipient_id"], "971501234567");
        assert_eq!(status["errors"][0]["code"], 131049);
        assert!(status["errors"][0]["title"]
            .as_str()
            .unwrap()
            .starts_with("This message was not delivered"));
    }

    #[test]
    fn a_non_text_message_has_no_text() {
        let summary = summary(EventKind::Whatsapp, &fixture("image.json"));
        let shown = serde_json::to_value(&summary).unwrap();
        assert_eq!(shown["messages"][0]["type"], "image");
        assert!(shown["messages"][0].get("text").is_none());
    }

    #[test]
    fn a_long_text_is_cut_at_200_characters_not_bytes() {
        let body = "ü".repeat(300);
        let envelope = json!({"entry": [{"changes": [{"field": "messages", "value": {
            "messages": [{"id": "wamid.1", "from": "1", "type": "text", "text": {"body": body}}]
        }}]}]});
        let summary = summary(EventKind::Whatsapp, envelope.to_string().as_bytes());
        let Summary::Envelope(envelope) = summary else {
            panic!("an envelope summary");
        };
        let text = envelope.messages[0].text.clone().unwrap();
        assert_eq!(text.chars().count(), TEXT_PREVIEW_CHARS);
    }

    #[test]
    fn fields_are_listed_once_each_in_order() {
        let summary = summary(EventKind::Waba, &fixture("waba_multi_change.json"));
        let Summary::Envelope(envelope) = summary else {
            panic!("an envelope summary");
        };
        assert!(!envelope.fields.is_empty());
        let mut unique = envelope.fields.clone();
        unique.dedup();
        assert_eq!(unique, envelope.fields);
    }

    #[test]
    fn a_partner_event_gives_its_type() {
        let body = json!({"id": 7, "type": "channel_created", "partner_id": "p1", "data": {}});
        let summary = summary(EventKind::Partner, body.to_string().as_bytes());
        assert_eq!(
            serde_json::to_value(summary).unwrap(),
            json!({"type": "channel_created"})
        );
    }

    #[test]
    fn a_payload_that_is_not_json_gives_an_empty_summary() {
        let summary = summary(EventKind::Unroutable, b"not json");
        assert_eq!(summary, Summary::Envelope(EnvelopeSummary::default()));
    }
}
