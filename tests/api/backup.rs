//! `switchboard backup` and `switchboard restore` on a real server's SQLite file: a copy
//! taken under load holds every event acknowledged before it began while the server goes
//! on serving and delivering; a restored copy serves its configuration and delivers what
//! was pending; what must be refused is refused clearly, and no file is left behind.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::cli::{start_binary, switchboard};
use crate::helpers::{provision_over_http, ADMIN_TOKEN};
use crate::load::{channel_events_url, wait_until_delivered, Load};
use crate::receiver::{Behavior, TestReceiver};

/// Short retries, so what was pending is delivered soon after a restore.
const RETRIES: [&str; 4] = ["--retry-base-ms", "50", "--retry-max-delay-ms", "200"];

#[tokio::test]
async fn a_backup_under_load_holds_every_event_acknowledged_before_it_began() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.db");
    let receiver = TestReceiver::start().await;
    let (server, base) = Server::start(&sqlite_url(&live), &[]);
    let events_url = channel_events_url(&base, &receiver.url).await;
    fill(&live);
    let load = Load::start(&events_url, 4, "backup");
    load.wait_until("a database of some size", 180, |a| {
        a.acknowledged.len() >= 3000
    })
    .await;

    let before = load.acknowledged_events();
    let copy = dir.path().join("copy.db");
    let output = run(&[
        "backup",
        "--database",
        &sqlite_url(&live),
        "--to",
        &path(&copy),
    ])
    .await;
    let summary = succeeded(&output);
    for part in [
        path(&copy).as_str(),
        " bytes",
        " events",
        " deliveries",
        " s ",
    ] {
        assert!(summary.contains(part), "{part:?} in {summary}");
    }

    // The server went on: it acknowledges more, refused nothing, and delivers everything.
    let more = load.acknowledged() + 200;
    load.wait_until("acknowledged after the backup", 60, |a| {
        a.acknowledged.len() >= more
    })
    .await;
    let answers = load.finish().await;
    assert!(answers.wrong.is_empty(), "{:?}", answers.wrong);
    assert_eq!(answers.unavailable, 0, "503s during the backup");
    wait_until_delivered(&receiver, &answers.acknowledged, 120).await;

    let db = open_read_only(&copy);
    assert_eq!(integrity(&db), "ok");
    let stored: HashSet<i64> = db
        .prepare("SELECT id FROM events")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let missing: Vec<_> = before.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events missing from the copy, e.g. {:?}",
        missing.len(),
        before.len(),
        &missing[..missing.len().min(5)]
    );
    let journal: String = db
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(journal, "delete", "the copy is one self-contained file");
    server.stop();
    assert_no_partial_files(dir.path());
}

#[tokio::test]
async fn a_restored_copy_serves_its_configuration_and_delivers_what_was_pending() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.db");
    let receiver = TestReceiver::with_default(Behavior::Status(503)).await;
    let (server, base) = Server::start(&sqlite_url(&live), &RETRIES);
    let client = reqwest::Client::new();
    let channel = provision_over_http(&client, &base).await;
    let key = channel["api_key"].as_str().unwrap().to_owned();
    set_webhook(&client, &base, &key, &receiver.url).await;
    let pending = post_messages(&client, &base, channel["id"].as_str().unwrap(), 10).await;
    receiver
        .wait_until(|received| received.len() >= pending.len())
        .await;

    let copy = dir.path().join("copy.db");
    let live_url = sqlite_url(&live);
    succeeded(&run(&["backup", "--database", &live_url, "--to", &path(&copy)]).await);

    // A running server's database is refused, with --force too, and left as it was.
    let refused = run(&[
        "restore",
        "--from",
        &path(&copy),
        "--database",
        &live_url,
        "--force",
    ])
    .await;
    assert_failed(&refused, 1, "in use by another process");
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    server.stop();
    // An existing file needs --force.
    let refused = run(&["restore", "--from", &path(&copy), "--database", &live_url]).await;
    assert_failed(&refused, 2, "exists: pass --force to replace it");

    // Over the stopped server's file, whose stale sidecars go with it.
    std::fs::write(dir.path().join("live.db-wal"), b"stale").unwrap();
    let restored = run(&[
        "restore",
        "--from",
        &path(&copy),
        "--database",
        &live_url,
        "--force",
    ])
    .await;
    let summary = succeeded(&restored);
    assert!(
        summary.contains("restored") && summary.contains(" events"),
        "{summary}"
    );
    assert!(
        !dir.path().join("live.db-wal").exists(),
        "the old WAL was removed"
    );
    assert_no_partial_files(dir.path());

    receiver.set_default(Behavior::Status(200));
    let (server, base) = Server::start(&live_url, &RETRIES);
    let config = client
        .get(format!("{base}/v1/configs/webhook"))
        .header("D360-API-KEY", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(config.status(), StatusCode::OK);
    let config: serde_json::Value = config.json().await.unwrap();
    assert_eq!(config["url"], receiver.url.as_str());
    wait_until_delivered(&receiver, &pending, 60).await;
    server.stop();
}

#[tokio::test]
async fn corrupt_foreign_and_newer_files_are_not_restored() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.db");
    let (server, base) = Server::start(&sqlite_url(&live), &[]);
    provision_over_http(&reqwest::Client::new(), &base).await;
    let copy = dir.path().join("copy.db");
    succeeded(
        &run(&[
            "backup",
            "--database",
            &sqlite_url(&live),
            "--to",
            &path(&copy),
        ])
        .await,
    );
    server.stop();

    let corrupt = dir.path().join("corrupt.db");
    let mut bytes = std::fs::read(&copy).unwrap();
    let page = 4096;
    assert!(bytes.len() > 3 * page, "{} bytes", bytes.len());
    // Every page after the first two: the schema is readable, the tables are not.
    for byte in &mut bytes[2 * page..] {
        *byte = 0x5a;
    }
    std::fs::write(&corrupt, bytes).unwrap();
    let text = dir.path().join("notes.db");
    std::fs::write(&text, "these are notes, not a database\n".repeat(100)).unwrap();
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('hi');")
        .unwrap();
    let newer = dir.path().join("newer.db");
    std::fs::copy(&copy, &newer).unwrap();
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute("INSERT INTO schema_migrations VALUES (9999, 0)", [])
        .unwrap();

    let target = dir.path().join("target.db");
    let cases = [
        (&corrupt, "corrupt.db is corrupt"),
        (&text, "notes.db is not a SQLite database"),
        (&foreign, "foreign.db is not a Switchboard database"),
        (
            &newer,
            "has schema version 9999, newer than this binary knows",
        ),
    ];
    for (file, message) in cases {
        let output = run(&[
            "restore",
            "--from",
            &path(file),
            "--database",
            &sqlite_url(&target),
        ])
        .await;
        assert_failed(&output, 1, message);
        assert!(!target.exists(), "nothing restored from {}", file.display());
    }
    assert_no_partial_files(dir.path());
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.db");
    rusqlite::Connection::open(&live)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let to = dir.path().join("copy.db");
    let to_arg = path(&to);
    let missing = dir.path().join("missing.db");
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            args(&["backup", "--database", "live.db", "--to", &to_arg]),
            2,
            "expected sqlite://PATH",
        ),
        (
            args(&["backup", "--database", "mysql://h/db", "--to", &to_arg]),
            2,
            "expected sqlite://PATH",
        ),
        (
            args(&["backup", "--database", "sqlite://", "--to", &to_arg]),
            2,
            "needs a file path",
        ),
        (
            args(&[
                "backup",
                "--database",
                "postgres://u:secret@h/db",
                "--to",
                &to_arg,
            ]),
            2,
            "for PostgreSQL use pg_dump -Fc",
        ),
        (
            args(&[
                "restore",
                "--from",
                &path(&live),
                "--database",
                "postgresql://h/db",
            ]),
            2,
            "for PostgreSQL use pg_restore",
        ),
        (
            args(&[
                "backup",
                "--database",
                &sqlite_url(&missing),
                "--to",
                &to_arg,
            ]),
            4,
            "no SQLite database at",
        ),
        (
            args(&[
                "backup",
                "--database",
                &sqlite_url(dir.path()),
                "--to",
                &to_arg,
            ]),
            1,
            "is not a file",
        ),
        (
            args(&[
                "restore",
                "--from",
                &path(&missing),
                "--database",
                &sqlite_url(&to),
            ]),
            4,
            "no backup at",
        ),
        (
            args(&[
                "backup",
                "--database",
                &sqlite_url(&live),
                "--to",
                "/nonexistent/dir/copy.db",
            ]),
            1,
            "the directory /nonexistent/dir does not exist",
        ),
        // Copied, then refused by the check: the copy is removed.
        (
            args(&["backup", "--database", &sqlite_url(&live), "--to", &to_arg]),
            1,
            "is not a Switchboard database: it has no schema_migrations table",
        ),
    ];
    for (arguments, code, message) in cases {
        let output = run_owned(arguments.clone()).await;
        assert_failed(&output, code, message);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("secret"),
            "the password is not shown: {stderr}"
        );
        assert!(
            !to.exists() && !missing.exists(),
            "{arguments:?} left a file"
        );
    }

    std::fs::write(&to, b"an earlier backup").unwrap();
    let (server, _) = Server::start(&sqlite_url(&live), &[]);
    let refused = run(&["backup", "--database", &sqlite_url(&live), "--to", &to_arg]).await;
    assert_failed(&refused, 2, "exists: pass --force to replace it");
    assert_eq!(std::fs::read(&to).unwrap(), b"an earlier backup");
    let forced = run(&[
        "backup",
        "--database",
        &sqlite_url(&live),
        "--to",
        &to_arg,
        "--force",
    ])
    .await;
    succeeded(&forced);
    assert_eq!(integrity(&open_read_only(&to)), "ok");
    let live_arg = path(&live);
    let onto_itself = [
        "backup",
        "--database",
        &sqlite_url(&live),
        "--to",
        &live_arg,
        "--force",
    ];
    assert_failed(&run(&onto_itself).await, 2, "is the database itself");
    server.stop();
    assert_no_partial_files(dir.path());
}

/// Adds about 16 MB of rows beside the server's (in a table of its own), so the copy takes
/// about 16 steps of 256 pages, with the server committing between them.
fn fill(live: &Path) {
    let db = rusqlite::Connection::open(live).unwrap();
    db.busy_timeout(Duration::from_secs(30)).unwrap();
    db.execute_batch(
        "CREATE TABLE filler (bytes BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000)
         INSERT INTO filler SELECT randomblob(4000) FROM n;",
    )
    .unwrap();
}

/// `sqlite://` and the path.
fn sqlite_url(file: &Path) -> String {
    format!("sqlite://{}", file.display())
}

/// The path as an argument.
fn path(file: &Path) -> String {
    file.display().to_string()
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|part| (*part).to_owned()).collect()
}

/// Runs `switchboard parts…` to its end, off the async runtime (the server's load, the
/// receiver and the test's clients keep running meanwhile).
async fn run(parts: &[&str]) -> Output {
    run_owned(args(parts)).await
}

async fn run_owned(parts: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut command: Command = switchboard();
        command.args(&parts).output().expect("run switchboard")
    })
    .await
    .unwrap()
}

/// Checks that the command succeeded with one line on stdout; returns it.
fn succeeded(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{:?}: {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.lines().count(), 1, "one summary line: {stdout}");
    stdout
}

/// Checks that the command exited with `code` and said `message` on stderr.
fn assert_failed(output: &Output, code: i32, message: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(message),
        "{message:?} in {stderr}"
    );
}

/// No temporary copy is left in `dir`.
fn assert_no_partial_files(dir: &Path) {
    let partial: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|file| {
            file.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    assert!(partial.is_empty(), "{partial:?}");
}

fn open_read_only(file: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

fn integrity(db: &rusqlite::Connection) -> String {
    db.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}

/// Sets the channel's phone-number webhook to `url`.
async fn set_webhook(client: &reqwest::Client, base: &str, key: &str, url: &str) {
    let response = client
        .post(format!("{base}/v1/configs/webhook"))
        .header("D360-API-KEY", key)
        .json(&json!({"url": url}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// Posts `count` messages to the channel; returns their message ids.
async fn post_messages(
    client: &reqwest::Client,
    base: &str,
    channel: &str,
    count: usize,
) -> HashSet<String> {
    let mut ids = HashSet::new();
    for n in 0..count {
        let id = format!("pending.{n}");
        let body = json!({"messages": [{"id": id, "type": "text", "text": {"body": "x"}}]});
        let response = client
            .post(format!("{base}/admin/channels/{channel}/events"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        ids.insert(id);
    }
    ids
}

/// A server process on a database file, killed if the test ends without stopping it.
struct Server(Option<crate::cli::Server>);

impl Server {
    /// Starts `switchboard serve` on `database` with `args`; returns it and its base URL.
    fn start(database: &str, args: &[&str]) -> (Server, String) {
        let (child, base) = start_binary(database, args, |_| {});
        (Server(Some(child)), base)
    }

    /// Stops the server with SIGTERM and waits for it (killed after 30 s).
    fn stop(mut self) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the server did not stop after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
