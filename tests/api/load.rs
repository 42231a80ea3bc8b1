//! A steady load on a running `switchboard serve` for the outage tests: senders post
//! messages one after another and record each answer, so a test can check that every
//! acknowledged message reaches the receiver and that what was not acknowledged was
//! refused the right way (503, JSON, `Retry-After`), never a 500 or a hang.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{provision_over_http, ADMIN_TOKEN};
use crate::receiver::TestReceiver;

/// How long one request may take before the client gives up: far above the server's 5 s
/// bound, so a request that hangs is told apart from a slow one.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// What the senders were answered.
#[derive(Debug, Default)]
pub struct Answers {
    /// The message ids answered 202 (stored).
    pub acknowledged: HashSet<String>,
    /// The event ids those 202s named (`{"event_id"}`), for tests that read the database.
    pub acknowledged_events: HashSet<i64>,
    /// Requests answered 503 with a JSON `error` and a `Retry-After`.
    pub unavailable: usize,
    /// Every other answer (status and body), or the client's error: none is expected.
    pub wrong: Vec<String>,
}

/// Senders posting to one channel's events URL until [`Load::finish`].
pub struct Load {
    answers: Arc<Mutex<Answers>>,
    stop: Arc<AtomicBool>,
    senders: tokio::task::JoinSet<()>,
}

impl Load {
    /// Starts `senders` senders posting to `url` (the admin events URL of a channel);
    /// message ids start with `prefix`.
    pub fn start(url: &str, senders: usize, prefix: &str) -> Load {
        let client = reqwest::Client::builder()
            .timeout(CLIENT_TIMEOUT)
            .build()
            .unwrap();
        let answers = Arc::new(Mutex::new(Answers::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for sender in 0..senders {
            let (client, url) = (client.clone(), url.to_owned());
            let (answers, stop) = (Arc::clone(&answers), Arc::clone(&stop));
            let prefix = format!("{prefix}.{sender}");
            tasks.spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("{prefix}.{n}");
                    n += 1;
                    let refused = post(&client, &url, &id, &answers).await;
                    if refused {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            });
        }
        Load {
            answers,
            stop,
            senders: tasks,
        }
    }

    /// How many messages were acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.lock().acknowledged.len()
    }

    /// The event ids acknowledged so far.
    #[allow(dead_code)] // used by the SQLite binary's backup tests only
    pub fn acknowledged_events(&self) -> HashSet<i64> {
        self.lock().acknowledged_events.clone()
    }

    /// How many requests were answered 503 so far.
    pub fn unavailable(&self) -> usize {
        self.lock().unavailable
    }

    /// Waits until `done` holds for the answers so far, within `deadline_s` seconds.
    pub async fn wait_until(&self, what: &str, deadline_s: u64, done: impl Fn(&Answers) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(deadline_s);
        while !done(&self.lock()) {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {deadline_s} s; answers so far: {} acknowledged, {} \
                 unavailable, wrong: {:?}",
                self.acknowledged(),
                self.unavailable(),
                self.lock().wrong
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the senders (each finishes its request in flight) and returns the answers.
    pub async fn finish(mut self) -> Answers {
        self.stop.store(true, Ordering::Relaxed);
        while self.senders.join_next().await.is_some() {}
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Answers> {
        self.answers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Posts message `id` and records the answer; `true` when it was refused.
async fn post(client: &reqwest::Client, url: &str, id: &str, answers: &Mutex<Answers>) -> bool {
    let body = json!({"messages": [{"id": id, "type": "text", "text": {"body": "x"}}]});
    let response = client
        .post(url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            answers.lock().unwrap().wrong.push(format!("{id}: {error}"));
            return true;
        }
    };
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    let text = response.text().await.unwrap_or_default();
    let mut answers = answers.lock().unwrap();
    match status {
        StatusCode::ACCEPTED => {
            answers.acknowledged.insert(id.to_owned());
            let event = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|body| body["event_id"].as_i64());
            answers.acknowledged_events.extend(event);
            false
        }
        StatusCode::SERVICE_UNAVAILABLE if retry_after && is_json_error(&text) => {
            answers.unavailable += 1;
            true
        }
        _ => {
            answers.wrong.push(format!("{id}: {status} {text}"));
            true
        }
    }
}

/// Whether `text` is the API's error shape, `{"error": "…"}`.
fn is_json_error(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v["error"].is_string())
}

/// Provisions a channel on `base` whose webhook is `receiver`; returns the channel's admin
/// events URL.
pub async fn channel_events_url(base: &str, receiver: &str) -> String {
    let client = reqwest::Client::new();
    let channel = provision_over_http(&client, base).await;
    let response = client
        .post(format!("{base}/v1/configs/webhook"))
        .header("D360-API-KEY", channel["api_key"].as_str().unwrap())
        .json(&json!({"url": receiver}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let id = channel["id"].as_str().unwrap();
    format!("{base}/admin/channels/{id}/events")
}

/// Waits until `GET /ready` answers `status`, within `deadline_s` seconds; every answer
/// comes within the client's timeout (a hang fails the test).
pub async fn wait_ready(base: &str, status: u16, deadline_s: u64) {
    let client = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(deadline_s);
    loop {
        let answer = client
            .get(format!("{base}/ready"))
            .send()
            .await
            .expect("/ready answers within the client's timeout");
        if answer.status().as_u16() == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/ready never answered {status} within {deadline_s} s (last: {})",
            answer.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the receiver answered 200 to every id of `owed`, within `deadline_s`.
pub async fn wait_until_delivered(
    receiver: &TestReceiver,
    owed: &HashSet<String>,
    deadline_s: u64,
) {
    let deadline = Instant::now() + Duration::from_secs(deadline_s);
    loop {
        let delivered = receiver.delivered_wamids();
        let missing: Vec<_> = owed.difference(&delivered).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged messages undelivered after {deadline_s} s, e.g. {:?}",
            missing.len(),
            owed.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks that `/metrics` (served during an outage too) shows the store up or down.
pub async fn assert_store_up(base: &str, up: bool) {
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let metrics = metrics.text().await.unwrap();
    let expected = format!("switchboard_store_up {}", u8::from(up));
    assert!(metrics.contains(&expected), "{metrics}");
}

/// Once the outage is lifted: waits until `/ready` answers 200 and 100 more messages are
/// acknowledged, stops the load, checks that every answer was a 202 or a JSON 503, and
/// waits until every acknowledged message is delivered; returns the answers.
pub async fn drain_after_outage(load: Load, base: &str, receiver: &TestReceiver) -> Answers {
    wait_ready(base, 200, 60).await;
    let after = load.acknowledged() + 100;
    load.wait_until("acknowledged after the outage", 60, |a| {
        a.acknowledged.len() >= after
    })
    .await;
    let answers = load.finish().await;
    assert!(
        answers.wrong.is_empty(),
        "wrong answers: {:?}",
        answers.wrong
    );
    wait_until_delivered(receiver, &answers.acknowledged, 90).await;
    answers
}

/// The log lines of an outage's start and of its end (the start's whole wording: other
/// warnings carry "the database is unavailable" as their error's text).
pub const OUTAGE_BEGAN: &str = "the database is unavailable: ingest answers 503";
pub const OUTAGE_ENDED: &str = "the database is available again";

/// Checks that each outage was logged once as begun and once as ended (not per request:
/// `answers` holds the 503s), and that no request was logged as failed.
pub fn assert_outage_logged_once(log: &Mutex<String>, answers: &Answers) {
    let (down, back) = (lines_with(log, OUTAGE_BEGAN), lines_with(log, OUTAGE_ENDED));
    let log_text = log.lock().unwrap().clone();
    assert!(
        down >= 1 && back == down,
        "outage logged {down}/{back} times:\n{log_text}"
    );
    assert!(
        down * 4 <= answers.unavailable,
        "the outage was logged about per request: {down} times for {} 503s",
        answers.unavailable
    );
    assert_eq!(lines_with(log, "request failed"), 0, "{log_text}");
}

/// How many lines of `log` contain `text`.
pub fn lines_with(log: &Mutex<String>, text: &str) -> usize {
    let log = log.lock().unwrap_or_else(|p| p.into_inner());
    log.lines().filter(|line| line.contains(text)).count()
}
