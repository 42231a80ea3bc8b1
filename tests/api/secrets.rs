//! Secrets never reach the logs: a webhook URL's query (often a token) is masked when it
//! is logged, at info when it is set and at warn when an attempt to it fails, and the
//! database URL's password is never printed.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::switchboard;
use crate::helpers::ADMIN_TOKEN;
use crate::receiver::{Behavior, TestReceiver};

async fn admin_post(client: &reqwest::Client, url: String, body: Value) -> Value {
    let response = client
        .post(url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

#[tokio::test]
async fn webhook_url_tokens_are_masked_in_the_logs() {
    let data = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", data.path().join("sb.db").display());
    let mut child = switchboard()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &database,
            "--dev",
        ])
        .args(["--admin-token", ADMIN_TOKEN, "--retry-base-ms", "50"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn({
        let log = Arc::clone(&log);
        move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("switchboard listening") {
                    let address = line
                        .split_whitespace()
                        .find_map(|field| field.strip_prefix("address="))
                        .map(str::to_owned);
                    let _ = address_tx.send(address);
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
    let address = address_rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .unwrap();
    let base = format!("http://{address}");
    let client = reqwest::Client::new();
    let partner = admin_post(
        &client,
        format!("{base}/admin/partners"),
        json!({"name": "L"}),
    )
    .await;
    let partner_id = partner["id"].as_str().unwrap();
    let waba = admin_post(
        &client,
        format!("{base}/admin/partners/{partner_id}/wabas"),
        json!({}),
    )
    .await;
    let channel = admin_post(
        &client,
        format!("{base}/admin/wabas/{}/channels", waba["waba_id"]),
        json!({"phone_number": "+4915177777777"}),
    )
    .await;
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
