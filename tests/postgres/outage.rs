//! Database outages on PostgreSQL: a `switchboard serve` process on a cluster of its own,
//! under a steady load, while the server is stopped (`pg_ctl stop -m fast`: connections
//! refused) or frozen (`SIGSTOP` of every server process: connections accepted by the
//! kernel, nothing answered). During the outage ingest answers 503 with a JSON error and
//! `Retry-After` within its bound (never a 500, never a hang) and `/ready` 503; afterwards
//! everything resumes on its own: `/ready` 200, every acknowledged message delivered, and
//! no attempt recorded that failed (the receiver answers 200: a failure could only be the
//! database's). The outage is logged once, not per request.

use std::time::Duration;

use crate::cli::start_binary_logged;
use crate::load::{
    assert_outage_logged_once, assert_store_up, channel_events_url, drain_after_outage, lines_with,
    wait_ready, Load, OUTAGE_BEGAN, OUTAGE_ENDED,
};
use crate::postgres::Cluster;
use crate::receiver::TestReceiver;

/// Runs the load through `interrupt`, a few seconds of outage, and `resume`.
async fn outage_under_load(interrupt: fn(&Cluster), resume: fn(&Cluster)) {
    let cluster = Cluster::start(None);
    let database = cluster.database();
    let receiver = TestReceiver::start().await;
    let (mut server, base, log) =
        start_binary_logged(&database, &["--worker-threads", "2"], |_| {});
    let url = channel_events_url(&base, &receiver.url).await;
    let load = Load::start(&url, 4, "wamid.pg");
    load.wait_until("acknowledged before the outage", 60, |a| {
        a.acknowledged.len() >= 100
    })
    .await;

    interrupt(&cluster);
    wait_ready(&base, 503, 60).await;
    let before = load.unavailable();
    load.wait_until("503s during the outage", 60, |a| {
        a.unavailable >= before + 8
    })
    .await;
    assert_store_up(&base, false).await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    resume(&cluster);
    let answers = drain_after_outage(load, &base, &receiver).await;

    // A pooled connection the restart cut may still start one short outage after the first
    // ended (its first use fails); wait until every outage logged has its end logged too.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while lines_with(&log, OUTAGE_ENDED) < lines_with(&log, OUTAGE_BEGAN)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed = "SELECT count(*) FROM attempts WHERE status IS DISTINCT FROM 200";
    assert_eq!(cluster.psql(&database, failed), "0", "attempts that failed");
    assert_store_up(&base, true).await;
    assert_outage_logged_once(&log, &answers);
    let _ = server.kill();
    let _ = server.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_answered_503_and_everything_acknowledged_is_delivered() {
    outage_under_load(Cluster::stop, Cluster::restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_is_answered_503_within_the_bound_not_hung() {
    outage_under_load(Cluster::freeze, Cluster::thaw).await;
}
