//! `switchboard send-test`: injects a notification shaped like Meta's for a channel's
//! number (a text message, or a status of a sent message), through the admin API's
//! sandbox endpoint, which wraps the value into Meta's envelope with the channel's metadata.
//! It is how an operator checks a receiver end to end without a phone.

use serde_json::{json, Value};

use super::args::{SendTestArgs, TestStatus};
use super::output;
use super::provisioning::segment;
use super::{CliError, Client};
use crate::clock::now_ms;
use crate::domain::random_alphanumeric;

/// Runs `switchboard send-test`.
pub async fn send_test(args: SendTestArgs) -> Result<(), CliError> {
    let client = Client::new(&args.connection)?;
    let timestamp = (now_ms() / 1000).to_string();
    let value = match (&args.text, args.status, &args.wamid) {
        (Some(text), _, _) => text_message(&args, text, &timestamp),
        (None, Some(status), Some(wamid)) => {
            status_update(&args.contact, status, wamid, &timestamp)
        }
        _ => {
            return Err(CliError::Usage(
                "send-test needs --text, or --status with --wamid".into(),
            ))
        }
    };
    let path = format!("/admin/channels/{}/events", segment(&args.channel));
    let answer = client.post(&path, Some(&value)).await?;
    if client.json {
        output::json(&answer);
    } else {
        output::say(&format!("event {}", output::cell(answer.get("event_id"))));
    }
    Ok(())
}

/// A `value` with one incoming text message from the contact, as Meta sends it.
fn text_message(args: &SendTestArgs, text: &str, timestamp: &str) -> Value {
    json!({
        "contacts": [{"profile": {"name": args.name}, "wa_id": args.contact}],
        "messages": [{
            "from": args.contact,
            "id": format!("wamid.{}", random_alphanumeric(48)),
            "timestamp": timestamp,
            "type": "text",
            "text": {"body": text},
        }],
    })
}

/// A `value` with one status of message `wamid` sent to `recipient`, as Meta sends it:
/// `sent` and `delivered` carry the conversation and pricing, `failed` an error.
fn status_update(recipient: &str, status: TestStatus, wamid: &str, timestamp: &str) -> Value {
    let name = match status {
        TestStatus::Sent => "sent",
        TestStatus::Delivered => "delivered",
        TestStatus::Read => "read",
        TestStatus::Failed => "failed",
    };
    let mut entry = json!({
        "id": wamid,
        "status": name,
        "timestamp": timestamp,
        "recipient_id": recipient,
    });
    match status {
        TestStatus::Sent | TestStatus::Delivered => {
            entry["conversation"] = json!({
                "id": random_alphanumeric(32).to_lowercase(),
                "origin": {"type": "service"},
            });
            entry["pricing"] = json!({
                "billable": true,
                "pricing_model": "CBP",
                "category": "service",
            });
        }
        TestStatus::Failed => {
            entry["errors"] = json!([{
                "code": 131026,
                "title": "Message undeliverable",
                "message": "Message undeliverable",
                "error_data": {"details": "Message could not be delivered to the recipient."},
            }]);
        }
        TestStatus::Read => {}
    }
    json!({ "statuses": [entry] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivered_status_carries_conversation_and_pricing() {
        let value = status_update(
            "4915550001234",
            TestStatus::Delivered,
            "wamid.X",
            "1700000000",
        );
        let status = &value["statuses"][0];
        assert_eq!(status["id"], "wamid.X");
        assert_eq!(status["status"], "delivered");
        assert_eq!(status["recipient_id"], "4915550001234");
        assert_eq!(status["pricing"]["category"], "service");
        assert!(status["conversation"]["id"].is_string());
        let read = status_update("1", TestStatus::Read, "wamid.Y", "1");
        assert!(read["statuses"][0].get("pricing").is_none());
    }
}
