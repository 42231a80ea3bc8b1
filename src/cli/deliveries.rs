//! `switchboard deliveries list|retry` and `switchboard recover`: finding what failed and
//! putting it back in the queue.

use serde_json::{json, Value};

use super::args::{DeliveriesAction, DeliveriesArgs, RecoverArgs};
use super::output::{self, Column};
use super::provisioning::{paging, segment};
use super::{CliError, Client};

/// The columns of `deliveries list`.
const DELIVERY_COLUMNS: &[Column<'_>] = &[
    ("ID", "/id"),
    ("EVENT", "/event_id"),
    ("CHANNEL", "/channel_id"),
    ("TARGET", "/target"),
    ("STATE", "/state"),
    ("ATTEMPTS", "/attempts"),
    ("UPDATED", "/updated_at"),
    ("LAST_ERROR", "/last_error"),
];

/// Runs `switchboard deliveries …`.
pub async fn deliveries(args: DeliveriesArgs) -> Result<(), CliError> {
    let client = Client::new(&args.connection)?;
    match args.action {
        DeliveriesAction::List {
            state,
            channel,
            page,
        } => {
            let mut query = paging(&page);
            query.extend([("state", state), ("channel", channel)]);
            let answer = client.get("/admin/deliveries", &query).await?;
            output::page(client.json, &answer, "deliveries", DELIVERY_COLUMNS);
            Ok(())
        }
        DeliveriesAction::Retry { ids } => retry(&client, &ids).await,
    }
}

/// Re-queues each delivery; reports each failure and fails if any did (after trying all).
async fn retry(client: &Client, ids: &[String]) -> Result<(), CliError> {
    let mut failed = Vec::new();
    let mut answers = Vec::new();
    for id in ids {
        let path = format!("/admin/deliveries/{}/retry", segment(id));
        match client.post(&path, None).await {
            Ok(answer) => {
                if !client.json {
                    output::say(&format!("delivery {id} re-queued"));
                }
                answers.push(answer);
            }
            Err(error @ CliError::Unreachable { .. }) => return Err(error),
            Err(error) => {
                output::note(&format!("delivery {id}: {error}"));
                failed.push(id.clone());
            }
        }
    }
    if client.json {
        output::json(&Value::Array(answers));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Partial(format!(
            "not re-queued: {}",
            failed.join(", ")
        )))
    }
}

/// Runs `switchboard recover …`.
pub async fn recover(args: RecoverArgs) -> Result<(), CliError> {
    let client = Client::new(&args.connection)?;
    let mut body = json!({ "since": args.since, "dry_run": args.dry_run });
    let optional = [
        ("until", args.until),
        ("channel", args.channel),
        ("destination", args.destination),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            body[name] = Value::String(value);
        }
    }
    if !args.state.is_empty() {
        body["state"] = json!(args.state);
    }
    let answer = client
        .post("/admin/deliveries/recover", Some(&body))
        .await?;
    if client.json {
        output::json(&answer);
    } else {
        let count = |name: &str| output::cell(answer.get(name));
        let dry = if args.dry_run { " (dry run)" } else { "" };
        output::say(&format!(
            "matched {}, requeued {}{dry}",
            count("matched"),
            count("requeued")
        ));
    }
    Ok(())
}
