//! Database outages on SQLite: the file cannot be written (a full disk, a size limit).
//!
//! Made real, not mocked, with `RLIMIT_FSIZE`: `prlimit` lowers the running server's file
//! size limit to 1 byte, so every write of the database and its WAL fails (`EFBIG`, SQLite's
//! I/O error, as a full disk's `ENOSPC` is its `SQLITE_FULL`), and lifts it again. It needs
//! no privilege (root's `chmod` would not stop a write; a tmpfs or `chattr +i` would need
//! root), and the server runs with `SIGXFSZ` ignored (`trap '' XFSZ` before `exec`, kept
//! across exec), else the kernel would kill it at the first write over the limit. During it
//! ingest answers 503 with a JSON error and `Retry-After` (never 500), `/ready` 503, and
//! nothing acknowledged is lost; once lifted everything resumes on its own.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cli::{switchboard, wait_for_address_keeping_log};
use crate::helpers::ADMIN_TOKEN;
use crate::load::{
    assert_outage_logged_once, assert_store_up, channel_events_url, drain_after_outage, wait_ready,
    Load,
};
use crate::receiver::TestReceiver;

/// `switchboard serve` on `database` with `SIGXFSZ` ignored; the child (whose pid is the
/// server's: `sh` execs it), its base URL and its log.
fn start_ignoring_sigxfsz(database: &str) -> (Child, String, Arc<Mutex<String>>) {
    let server = switchboard();
    let mut command = Command::new("sh");
    command
        .args(["-c", r#"trap '' XFSZ; exec "$0" "$@""#])
        .arg(server.get_program());
    for (name, value) in server.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
        .args([
            "--dev",
            "--admin-token",
            ADMIN_TOKEN,
            "--worker-threads",
            "2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchboard");
    let (address, log) = wait_for_address_keeping_log(&mut child);
    (child, format!("http://{address}"), log)
}

/// Sets the soft file size limit of process `pid` (`prlimit --fsize=SOFT:`).
fn set_file_size_limit(pid: u32, soft: &str) {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={soft}:")])
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit --fsize={soft}: failed");
}

/// The soft file size limit of process `pid`, as `prlimit` prints it.
fn file_size_limit(pid: u32) -> String {
    let output = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--fsize", "--output", "SOFT"])
        .arg("--noheadings")
        .output()
        .expect("run prlimit");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_database_is_answered_503_and_everything_acknowledged_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchboard.db");
    let database = format!("sqlite://{}", file.display());
    let receiver = TestReceiver::start().await;
    let (mut server, base, log) = start_ignoring_sigxfsz(&database);
    let url = channel_events_url(&base, &receiver.url).await;
    let load = Load::start(&url, 4, "wamid.sqlite");
    load.wait_until("acknowledged before the outage", 60, |a| {
        a.acknowledged.len() >= 100
    })
    .await;

    let limit = file_size_limit(server.id());
    set_file_size_limit(server.id(), "1");
    wait_ready(&base, 503, 60).await;
    let before = load.unavailable();
    load.wait_until("503s while unwritable", 60, |a| a.unavailable >= before + 8)
        .await;
    assert_store_up(&base, false).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    set_file_size_limit(server.id(), &limit);
    let answers = drain_after_outage(load, &base, &receiver).await;

    let db = rusqlite::Connection::open(&file).unwrap();
    let failed: i64 = db
        .query_row(
            "SELECT count(*) FROM attempts WHERE status IS NOT 200",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(failed, 0, "attempts that failed");
    assert_outage_logged_once(&log, &answers);
    let _ = server.kill();
    let _ = server.wait();
}
