//! Node loss: three `switchboard serve` processes on one database, one killed with
//! `kill -9` while events stream in through all of them. Every acknowledged event is
//! delivered, the dead node's deliveries (leased to it, waiting in its memory) are taken
//! over once their lease runs out (the default, 30 s), and no message is ever attempted
//! by two nodes at once. Also: a node restarted under a new name (a new pod) leaves
//! nothing stuck, the old name's leases expire and the new node delivers them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::cli::start_binary;
use crate::helpers::ADMIN_TOKEN;
use crate::load::channel_events_url;
use crate::receiver::{Behavior, Received, TestReceiver};

/// The default lease (30 s) plus a generous margin for a loaded machine: a bound the old
/// 5-minute lease would miss, not a measure of speed.
const TAKEOVER_DEADLINE: Duration = Duration::from_secs(90);

/// A node under its own name, with the default lease; few attempts in flight so that a
/// backlog waits in its memory (leased to it) while events stream in.
fn start_node(database: &str, name: &str) -> (crate::cli::Server, String) {
    let args = [
        "--node-id",
        name,
        "--max-in-flight-per-destination",
        "2",
        "--worker-threads",
        "1",
    ];
    start_binary(database, &args, |_| {})
}

/// Provisions a channel on `base` and points its webhook at `receiver`; returns the path
/// events are posted to (on any node: append the node's base URL).
async fn channel_with_webhook(base: &str, receiver: &str) -> String {
    let url = channel_events_url(base, receiver).await;
    url.trim_start_matches(base).to_owned()
}

/// Posts one message; `true` when it was acknowledged (202).
async fn post_message(client: &reqwest::Client, url: &str, id: &str) -> bool {
    let body = json!({"messages": [{"id": id, "type": "text", "text": {"body": "x"}}]});
    let response = client
        .post(url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await;
    matches!(response, Ok(r) if r.status() == StatusCode::ACCEPTED)
}

/// Waits until every id of `owed` is delivered, within [`TAKEOVER_DEADLINE`].
async fn wait_until_delivered(receiver: &TestReceiver, owed: &HashSet<String>) {
    crate::load::wait_until_delivered(receiver, owed, TAKEOVER_DEADLINE.as_secs()).await;
}

#[tokio::test]
async fn a_node_killed_mid_stream_loses_nothing_and_its_leases_are_taken_over() {
    let database = crate::postgres::postgres_database();
    let receiver =
        TestReceiver::with_default(Behavior::Delay(Duration::from_millis(100), 200)).await;
    let client = reqwest::Client::new();
    let (mut dead, dead_base) = start_node(&database, "node-a");
    let events = channel_with_webhook(&dead_base, &receiver.url).await;
    let (mut second, second_base) = start_node(&database, "node-b");
    let (mut third, third_base) = start_node(&database, "node-c");

    // Two senders per node, each posting up to 50 messages named after their node.
    let acknowledged = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let mut senders = tokio::task::JoinSet::new();
    for (node, base) in [&dead_base, &second_base, &third_base]
        .into_iter()
        .enumerate()
    {
        for sender in 0..2 {
            let (client, url) = (client.clone(), format!("{base}{events}"));
            let acknowledged = Arc::clone(&acknowledged);
            senders.spawn(async move {
                for n in 0..50 {
                    let id = format!("wamid.{node}.{sender}.{n}");
                    if !post_message(&client, &url, &id).await {
                        return;
                    }
                    acknowledged.lock().unwrap().insert(id, node);
                }
            });
        }
    }
    let started = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < 120 && Instant::now() < started {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    dead.kill().unwrap(); // SIGKILL: no shutdown code runs, its leases stay in the store.
    dead.wait().unwrap();
    let received_at_kill: HashSet<String> = receiver
        .received()
        .iter()
        .filter_map(Received::wamid)
        .collect();
    senders.join_all().await;

    let acknowledged = acknowledged.lock().unwrap().clone();
    let by_dead: HashSet<String> = acknowledged
        .iter()
        .filter(|(_, &node)| node == 0)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(
        by_dead.iter().any(|id| !received_at_kill.contains(id)),
        "the killed node held no backlog: nothing to take over"
    );
    let owed: HashSet<String> = acknowledged.keys().cloned().collect();
    wait_until_delivered(&receiver, &owed).await;

    assert_eq!(
        receiver.max_in_flight_of_one_message(),
        1,
        "a message was attempted by two nodes at once"
    );
    let mut attempts = HashMap::<String, usize>::new();
    for id in receiver.received().iter().filter_map(Received::wamid) {
        *attempts.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = attempts
        .iter()
        .filter(|(id, &n)| n > 1 && !by_dead.contains(*id))
        .collect();
    assert!(
        twice.is_empty(),
        "live nodes delivered a message twice: {twice:?}"
    );
    for node in [&mut second, &mut third] {
        let _ = node.kill();
        let _ = node.wait();
    }
}

#[tokio::test]
async fn a_node_restarted_under_a_new_name_leaves_nothing_stuck() {
    let database = crate::postgres::postgres_database();
    // A slow receiver: most deliveries wait in the old pod's memory, leased to it.
    let receiver =
        TestReceiver::with_default(Behavior::Delay(Duration::from_millis(500), 200)).await;
    let client = reqwest::Client::new();
    let (mut old, old_base) = start_node(&database, "pod-1");
    let events = channel_with_webhook(&old_base, &receiver.url).await;
    let mut owed = HashSet::new();
    for n in 0..30 {
        let id = format!("wamid.pod.{n}");
        assert!(post_message(&client, &format!("{old_base}{events}"), &id).await);
        owed.insert(id);
    }
    old.kill().unwrap();
    old.wait().unwrap();
    assert!(
        receiver.delivered_wamids().len() < owed.len(),
        "the old pod held no backlog"
    );

    // The new pod never takes the old name's leases back at start; they expire (one
    // lease), then it claims and delivers them.
    receiver.set_default(Behavior::Status(200));
    let (mut new, _) = start_node(&database, "pod-2");
    wait_until_delivered(&receiver, &owed).await;
    let _ = new.kill();
    let _ = new.wait();
}

#[tokio::test]
async fn a_node_stopped_gracefully_hands_back_what_waited_in_its_memory() {
    let database = crate::postgres::postgres_database();
    let receiver =
        TestReceiver::with_default(Behavior::Delay(Duration::from_millis(300), 200)).await;
    let client = reqwest::Client::new();
    // A lease far longer than the deadline below: only a hand-back lets the successor
    // deliver in time what the stopped node held.
    let args = |name: &'static str| {
        [
            "--node-id",
            name,
            "--max-in-flight-per-destination",
            "1",
            "--delivery-lease-s",
            "600",
        ]
    };
    let (mut old, old_base) = start_binary(&database, &args("pod-old"), |_| {});
    let events = channel_with_webhook(&old_base, &receiver.url).await;
    let mut owed = HashSet::new();
    for n in 0..20 {
        let id = format!("wamid.handback.{n}");
        assert!(post_message(&client, &format!("{old_base}{events}"), &id).await);
        owed.insert(id);
    }
    receiver.wait_for(1).await;
    let term = std::process::Command::new("kill")
        .args(["-TERM", &old.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(old.wait().unwrap().success(), "a graceful stop exits 0");
    assert!(
        receiver.delivered_wamids().len() < owed.len(),
        "the stopped node held no backlog"
    );

    // A successor under another name (a new pod) takes back nothing at start; it delivers
    // the rest at once only because the stopped node handed its leases back.
    let (mut new, _) = start_binary(&database, &args("pod-new"), |_| {});
    wait_until_delivered(&receiver, &owed).await;
    let _ = new.kill();
    let _ = new.wait();
}
