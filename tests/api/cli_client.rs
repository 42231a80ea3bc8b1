//! The client subcommands: the real binary against a server this test started, checked by
//! what an operator sees (tables, JSON) and what a script branches on (exit codes).

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::switchboard;
use crate::helpers::{spawn_app, unique_phone_number, TestApp, ADMIN_TOKEN};

/// What one run of the binary printed and how it ended.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The stdout as JSON (for `--json` runs).
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", self.stdout, self.stderr))
    }

    /// Asserts exit code 0.
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs the binary against `server` with `token` (off the async runtime, which serves the
/// in-process server meanwhile).
async fn run_with(server: &str, token: &str, args: &[&str]) -> Run {
    let mut command = switchboard();
    command
        .env("SWITCHBOARD_URL", server)
        .env("SWITCHBOARD_ADMIN_TOKEN", token)
        .args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run the binary");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs the binary against `app` with the admin token.
async fn run(app: &TestApp, args: &[&str]) -> Run {
    run_with(&app.base, ADMIN_TOKEN, args).await
}

/// Creates partner → WABA → channel with the CLI; returns the channel's id.
async fn provision_with_cli(app: &TestApp) -> (String, i64, String) {
    let partner = run(app, &["partners", "create", "--name", "Acme CLI", "--json"])
        .await
        .ok()
        .json();
    assert!(partner["api_key"].is_string());
    let partner_id = partner["id"].as_str().unwrap().to_owned();
    let waba = run(
        app,
        &["wabas", "create", "--partner", &partner_id, "--json"],
    )
    .await
    .ok()
    .json();
    let waba_id = waba["waba_id"].as_i64().unwrap();
    let phone = unique_phone_number();
    let channel = run(
        app,
        &[
            "channels",
            "create",
            "--waba",
            &waba_id.to_string(),
            "--phone",
            &phone,
            "--json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(channel["phone_number"], phone.as_str());
    (channel["id"].as_str().unwrap().to_owned(), waba_id, phone)
}

#[tokio::test]
async fn provisioning_lists_and_shows_from_the_command_line() {
    let app = spawn_app().await;
    let created = run(&app, &["partners", "create", "--name", "Tabled Partner"])
        .await
        .ok();
    assert!(created.stdout.contains("api_key"), "{}", created.stdout);
    assert!(created.stderr.contains("shown only this once"));

    let table = run(&app, &["partners", "list"]).await.ok();
    let mut lines = table.stdout.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("NAME"),
        "{header}"
    );
    assert!(table.stdout.contains("Tabled Partner"), "{}", table.stdout);

    let listed = run(&app, &["partners", "list", "--json"]).await.ok().json();
    assert_eq!(listed["partners"][0]["name"], "Tabled Partner");
    assert_eq!(listed["next_after"], Value::Null);

    let (channel, waba_id, phone) = provision_with_cli(&app).await;
    let wabas = run(&app, &["wabas", "list"]).await.ok();
    assert!(
        wabas.stdout.contains(&waba_id.to_string()),
        "{}",
        wabas.stdout
    );
    let waba = run(&app, &["wabas", "show", &waba_id.to_string(), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(waba["channels"], 1);

    let channels = run(&app, &["channels", "list", "--phone", &phone])
        .await
        .ok();
    assert!(channels.stdout.contains(&channel), "{}", channels.stdout);
    let shown = run(&app, &["channels", "show", &channel]).await.ok();
    assert!(shown.stdout.contains(&phone), "{}", shown.stdout);
    let paged = run(&app, &["partners", "list", "--limit", "1"]).await.ok();
    assert!(paged.stderr.contains("more: --after"), "{}", paged.stderr);
}

#[tokio::test]
async fn a_test_message_is_listed_among_the_deliveries() {
    let app = spawn_app().await;
    let (channel, _, _) = provision_with_cli(&app).await;
    let sent = run(&app, &["send-test", "--channel", &channel, "--text", "hi"])
        .await
        .ok();
    let event_id: i64 = sent
        .stdout
        .trim()
        .strip_prefix("event ")
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("{}", sent.stdout));
    let event = app.event(event_id).await;
    let value = &event["payload"]["entry"][0]["changes"][0]["value"];
    assert_eq!(value["messages"][0]["text"]["body"], "hi");
    assert!(value["messages"][0]["id"]
        .as_str()
        .unwrap()
        .starts_with("wamid."));
    assert!(value["metadata"]["phone_number_id"].is_string());

    let status = run(
        &app,
        &[
            "send-test",
            "--channel",
            &channel,
            "--status",
            "delivered",
            "--wamid",
            "wamid.TEST",
            "--json",
        ],
    )
    .await
    .ok()
    .json();
    assert!(status["event_id"].is_i64());

    let deliveries = run(
        &app,
        &["deliveries", "list", "--channel", &channel, "--json"],
    )
    .await
    .ok()
    .json();
    let events: Vec<i64> = deliveries["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event_id"].as_i64().unwrap())
        .collect();
    assert!(events.contains(&event_id), "{deliveries}");
}

#[tokio::test]
async fn destinations_recover_and_retry_from_the_command_line() {
    let app = spawn_app().await;
    let listed = run(&app, &["destinations", "list", "--json"])
        .await
        .ok()
        .json();
    assert!(listed["destinations"].is_array());
    let since = switchboard::clock::rfc3339(switchboard::clock::now_ms() - 3_600_000);
    let recovered = run(&app, &["recover", "--since", &since, "--dry-run"])
        .await
        .ok();
    assert!(
        recovered.stdout.contains("matched 0, requeued 0"),
        "{}",
        recovered.stdout
    );
    let retried = run(&app, &["deliveries", "retry", "987654"]).await;
    assert_eq!(retried.code, 1, "{}", retried.stderr);
    assert!(retried.stderr.contains("987654"), "{}", retried.stderr);
}

#[tokio::test]
async fn exit_codes_tell_what_went_wrong() {
    let app = spawn_app().await;
    let wrong_token = run_with(&app.base, "not-the-token", &["partners", "list"]).await;
    assert_eq!(wrong_token.code, 1, "{}", wrong_token.stderr);
    assert!(wrong_token.stderr.contains("Invalid admin token"));

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let unreachable = run_with(&closed, ADMIN_TOKEN, &["partners", "list"]).await;
    assert_eq!(unreachable.code, 3, "{}", unreachable.stderr);
    assert!(unreachable.stderr.contains("cannot reach"));

    let missing = run(&app, &["channels", "show", "no-such-channel"]).await;
    assert_eq!(missing.code, 4, "{}", missing.stderr);
    assert!(missing.stderr.contains("Channel no-such-channel not found"));

    let usage = run(&app, &["partners", "frobnicate"]).await;
    assert_eq!(usage.code, 2, "{}", usage.stderr);
    let missing_flag = run(&app, &["send-test", "--channel", "x"]).await;
    assert_eq!(missing_flag.code, 2, "{}", missing_flag.stderr);

    let help = run(&app, &["--help"]).await.ok();
    assert!(help.stdout.contains("Exit codes"), "{}", help.stdout);
    let version = run(&app, &["--version"]).await.ok();
    assert_eq!(
        version.stdout.trim(),
        format!("switchboard {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Reads `child`'s stdout lines until one satisfies `wanted`; `None` at the deadline.
fn wait_for_line(child: &mut Child, wanted: impl Fn(&str) -> bool) -> Option<String> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if wanted(&line) => return Some(line),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    None
}

#[tokio::test]
async fn tail_prints_an_injected_event() {
    let app = spawn_app().await;
    let (channel, _, _) = provision_with_cli(&app).await;
    let mut tail = switchboard();
    tail.env("SWITCHBOARD_URL", &app.base)
        .env("SWITCHBOARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .args(["tail", "--channel", &channel])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = tail.spawn().expect("start tail");
    // The stream starts live: keep sending until tail prints one (it may connect late).
    let reader = tokio::task::spawn_blocking(move || {
        let line = wait_for_line(&mut child, |line| line.contains("text \"hello tail\""));
        let _ = child.kill();
        let _ = child.wait();
        line
    });
    while !reader.is_finished() {
        run(
            &app,
            &["send-test", "--channel", &channel, "--text", "hello tail"],
        )
        .await
        .ok();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let line = reader
        .await
        .expect("join")
        .expect("tail never printed the line");
    assert!(line.contains(&format!("channel {channel}")), "{line}");
}

/// A stand-in for `GET /admin/stream` on a loopback port: the first connection tells one
/// delivery and then `lagged`; the second, one more delivery, then drops; the third tells
/// one more and stays open. Returns the base URL and the request heads, in order.
fn fake_stream() -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (heads, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let bodies = [
            ": ping\n\nid: 5.7\nevent: delivery\ndata: {\"delivery_id\": 1, \"event_id\": 5, \"state\": \"delivered\", \"target\": \"primary\"}\n\nevent: lagged\ndata: {\"resume\": \"9.9\"}\n\n",
            "id: 10.9\nevent: delivery\ndata: {\"delivery_id\": 2, \"event_id\": 10, \"state\": \"failed\", \"target\": \"primary\"}\n\n",
            "id: 11.9\nevent: delivery\ndata: {\"delivery_id\": 3, \"event_id\": 11, \"state\": \"dropped\", \"target\": \"primary\"}\n\n",
        ];
        let mut last = None;
        for (n, body) in bodies.into_iter().enumerate() {
            let Ok((mut socket, _)) = listener.accept() else {
                return;
            };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let _ = heads.send(String::from_utf8_lossy(&head).to_lowercase());
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{body}"
            );
            let _ = socket.write_all(answer.as_bytes());
            if n + 1 == bodies.len() {
                last = Some(socket);
            }
        }
        let _kept_open = last;
        std::thread::sleep(Duration::from_secs(30));
    });
    (base, received)
}

#[test]
fn tail_resumes_from_the_cursor_after_lagged_and_after_a_drop() {
    let (base, heads) = fake_stream();
    let mut child = switchboard()
        .env("SWITCHBOARD_URL", &base)
        .env("SWITCHBOARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .args(["tail", "--channel", "ch1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tail");
    let line = wait_for_line(&mut child, |line| line.contains("delivery 3 dropped"));
    // Ctrl-C (SIGINT) is how an operator stops it: a clean exit, code 0.
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(interrupted.success());
    let status = child.wait().expect("wait");
    assert!(line.is_some(), "tail never printed the third delivery");
    assert_eq!(status.code(), Some(0), "{status:?}");
    let first = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        first.starts_with("get /admin/stream?channel=ch1 "),
        "{first}"
    );
    assert!(first.contains("authorization: bearer"), "{first}");
    assert!(!first.contains("last-event-id"), "{first}");
    let second = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(second.contains("last-event-id: 9.9"), "{second}");
    let third = heads.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(third.contains("last-event-id: 10.9"), "{third}");
}
