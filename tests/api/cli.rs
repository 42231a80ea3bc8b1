//! The `switchboard` binary itself: flags, the logged address, the generated admin token,
//! clear errors for bad settings, and a graceful stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `switchboard` binary with a clean environment.
pub fn switchboard() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.env_remove("RUST_LOG");
    for (name, _) in std::env::vars() {
        if name.starts_with("SWITCHBOARD_") {
            command.env_remove(name);
        }
    }
    command
}

/// Reads stderr until the "listening" line and returns the logged address.
pub fn wait_for_address(child: &mut Child) -> String {
    wait_for_address_keeping_log(child).0
}

/// Like [`wait_for_address`], and keeps every line the server logs (to stderr) in the
/// returned buffer, as it comes.
pub fn wait_for_address_keeping_log(child: &mut Child) -> (String, Arc<Mutex<String>>) {
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    std::thread::spawn({
        let log = Arc::clone(&log);
        move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("switchboard listening") {
                    let _ = address_tx.send(logged_address(&line));
                }
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
    // Generous: a restart after kill -9 first hands back thousands of leases, slow on a
    // loaded machine.
    match address_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Some(address)) => (address, log),
        _ => {
            let logged = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
            panic!("the server never logged its address; its log:\n{logged}")
        }
    }
}

/// The address of the "listening" line, as text (`address=…`) or JSON (`--log-format json`).
fn logged_address(line: &str) -> Option<String> {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
        return json["fields"]["address"].as_str().map(str::to_owned);
    }
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("address="))
        .map(str::to_owned)
}

/// The binary serving `database` on a free loopback port in `--dev` mode with the test
/// admin token, plus `args`, after `adjust` changed its command (e.g. its environment);
/// returns the child and its base URL.
/// A server process that is killed when dropped, so a test that fails (panics) before its
/// own `kill` leaves no server running after it.
pub struct Server(pub Child);

impl std::ops::Deref for Server {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn start_binary(
    database: &str,
    args: &[&str],
    adjust: impl FnOnce(&mut Command),
) -> (Server, String) {
    let (child, base, _log) = start_binary_logged(database, args, adjust);
    (child, base)
}

/// [`start_binary`], also returning what the server logs, as it comes.
pub fn start_binary_logged(
    database: &str,
    args: &[&str],
    adjust: impl FnOnce(&mut Command),
) -> (Server, String, Arc<Mutex<String>>) {
    let mut command = switchboard();
    adjust(&mut command);
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
        .args(["--dev", "--admin-token", crate::helpers::ADMIN_TOKEN])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchboard");
    let (address, log) = wait_for_address_keeping_log(&mut child);
    (Server(child), format!("http://{address}"), log)
}

#[tokio::test]
async fn serve_logs_its_address_prints_a_generated_token_and_stops_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let database = format!(
        "sqlite://{}",
        data.path().join("nested/dir/sb.db").display()
    );
    let mut child = switchboard()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            &database,
            "--dev",
            "--worker-threads",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let address = wait_for_address(&mut child);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    stdout.read_line(&mut banner).unwrap();
    let token = banner.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(banner.contains("generated"), "{banner}");
    assert_eq!(token.len(), 32);

    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{address}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let created = client
        .post(format!("http://{address}/admin/partners"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        created.status(),
        201,
        "the printed token is the admin token"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_with_deadline(&mut child);
    assert!(exit.success(), "graceful stop exits 0, got {exit:?}");
    assert!(data.path().join("nested/dir/sb.db").exists());
}

pub fn wait_with_deadline(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not stop after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_settings_are_clear_cli_errors() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["serve", "--database", "mysql://localhost/db"],
            "expected sqlite://PATH",
        ),
        (&["serve", "--database", "sqlite://"], "needs a file path"),
        (
            &["serve", "--admin-token", "short"],
            "at least 16 characters",
        ),
        (
            &["serve", "--delivery-timeout-ms", "abc"],
            "invalid value 'abc'",
        ),
        (
            &["serve", "--config", "/nonexistent/switchboard.toml"],
            "cannot read config file",
        ),
        (
            &["serve", "--worker-threads", "5000"],
            "--worker-threads must be between 0 (one per core) and 1024",
        ),
        (
            &["serve", "--delivery-lease-s", "4"],
            "--delivery-lease-s must be between 5 and 3600",
        ),
        (
            &["serve", "--delivery-lease-s", "3601"],
            "--delivery-lease-s must be between 5 and 3600",
        ),
        (
            &[
                "serve",
                "--delivery-lease-s",
                "10",
                "--delivery-timeout-ms",
                "5000",
            ],
            "--delivery-lease-s (10) must be at least 3 times --delivery-timeout-ms (5000 ms)",
        ),
        (
            &["serve", "--delivery-timeout-ms", "11000"],
            "--delivery-lease-s (30) must be at least 3 times --delivery-timeout-ms",
        ),
        (
            &["serve", "--listen", "not-an-address"],
            "cannot listen on not-an-address",
        ),
    ];
    for (args, message) in cases {
        let output = switchboard().args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn environment_variables_configure_the_server() {
    let output = switchboard()
        .args(["serve"])
        .env("SWITCHBOARD_DATABASE_URL", "oracle://nope")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("expected sqlite://PATH"), "{stderr}");
}
