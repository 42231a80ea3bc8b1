//! Secrets never reach the logs: a webhook URL's query (often a token) is masked when it
//! is logged, at info when it is set and at warn when an attempt to it fails, and the
//! database URL's password is never printed.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::cli::start_binary_logged;
use crate::helpers::{admin_post, provision_over_http};
use crate::receiver::{Behavior, TestReceiver};

#[tokio::test]
async fn webhook_url_tokens_are_masked_in_the_logs() {
    let data = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", data.path().join("sb.db").display());
    let (mut child, base, log) = start_binary_logged(&database, &["--retry-base-ms", "50"], |_| {});
    let client = reqwest::Client::new();
    let channel = provision_over_http(&client, &base).await;
    let receiver = TestReceiver::with_default(Behavior::Status(500)).await;
    let url = format!("{}/hook?token=s3cret-token&v=2", receiver.url);
    let response = client
        .post(format!("{base}/v1/configs/webhook"))
        .header("D360-API-KEY", channel["api_key"].as_str().unwrap())
        .json(&json!({"url": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    admin_post(
        &client,
        format!(
            "{base}/admin/channels/{}/events",
            channel["id"].as_str().unwrap()
        ),
        json!({"value": {"messages": [{"id": "wamid.log"}]}}),
    )
    .await;
    receiver.wait_for(2).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.lock().unwrap().contains("attempt failed") {
        assert!(Instant::now() < deadline, "no failed attempt was logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = log.lock().unwrap().clone();
    assert!(!log.contains("s3cret-token"), "{log}");
    assert!(log.contains("token=***&v=***"), "{log}");
}
