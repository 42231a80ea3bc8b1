//! TLS to PostgreSQL: the real `switchboard serve` against a second throwaway cluster that
//! takes TLS connections only (`hostssl`; plain ones are rejected), with certificates made
//! here by the `openssl` command line: a test CA, a server certificate for `localhost`
//! signed by it, and an unrelated CA as the wrong root. Since the cluster refuses plain
//! connections, a node that starts (and answers `/ready`) has its pool and its `LISTEN`
//! connection both on TLS.
//!
//! The URLs name the host `localhost` with `hostaddr=127.0.0.1`: the certificate is checked
//! against `localhost` while the connection goes to 127.0.0.1, whatever `localhost`
//! resolves to on the machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::cli::{start_binary, switchboard};
use crate::helpers::{provision_over_http, ADMIN_TOKEN};
use crate::postgres::{Cluster, ServerTls};
use crate::receiver::TestReceiver;

/// How long a node may take to start, or to give up: generous for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// The certificates and the TLS-only cluster, made once per test process.
struct Fixture {
    /// Holds the certificates and an empty home (no `~/.postgresql/root.crt`).
    dir: PathBuf,
    cluster: Cluster,
}

impl Fixture {
    fn get() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("switchboard-tls-")
                .tempdir()
                .expect("temp dir")
                .keep();
            make_certificates(&dir);
            std::fs::create_dir(dir.join("home")).expect("home");
            let tls = ServerTls {
                cert: &dir.join("server.crt"),
                key: &dir.join("server.key"),
                root: &dir.join("ca.crt"),
            };
            let cluster = Cluster::start(Some(tls));
            Fixture { dir, cluster }
        })
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The URL of a new database on the TLS-only cluster, as `host`, with `params`.
    fn database(&self, host: &str, params: &str) -> String {
        let (name, port) = (self.cluster.create_database(), self.cluster.port);
        let addr = match host {
            "localhost" => "hostaddr=127.0.0.1&",
            _ => "",
        };
        format!("postgres://switchboard@{host}:{port}/{name}?{addr}{params}")
    }

    /// Runs the binary's environment with this fixture's empty home.
    fn home(&self, command: &mut Command) {
        command.env("HOME", self.dir.join("home"));
    }
}

/// A test CA (`ca.crt`), a server certificate for `localhost` only signed by it
/// (`server.crt`, `server.key`), and an unrelated CA (`wrong-ca.crt`), in `dir`.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for (name, subject) in [
        ("ca", "/CN=Switchboard test CA"),
        ("wrong-ca", "/CN=Other CA"),
    ] {
        run(
            openssl(dir, &["req", "-x509", "-days", "30", "-subj", subject])
                .args(ec)
                .args([
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.crt"),
                ])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        );
    }
    let extensions = "subjectAltName=DNS:localhost\n\
                      basicConstraints=critical,CA:FALSE\n\
                      keyUsage=critical,digitalSignature\n\
                      extendedKeyUsage=serverAuth\n";
    std::fs::write(dir.join("server.ext"), extensions).expect("write server.ext");
    run(openssl(dir, &["req", "-new", "-subj", "/CN=localhost"])
        .args(ec)
        .args(["-keyout", "server.key", "-out", "server.csr"]));
    run(
        openssl(dir, &["x509", "-req", "-in", "server.csr", "-days", "30"])
            .args(["-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", "2"])
            .args(["-extfile", "server.ext", "-out", "server.crt"]),
    );
}

fn openssl(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("openssl");
    command.args(args).current_dir(dir).stdin(Stdio::null());
    command
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?} (is openssl installed?): {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A running node, killed when the test ends, however it ends.
type Node = crate::cli::Server;

/// Starts `switchboard serve` on `database` (with the fixture's empty home) and checks
/// that it is ready; returns it and its base URL.
async fn serves(database: &str) -> (Node, String) {
    let (child, base) = start_binary(database, &["--worker-threads", "1"], |command| {
        Fixture::get().home(command);
    });
    let node = child;
    let ready = reqwest::get(format!("{base}/ready")).await.expect("/ready");
    assert_eq!(ready.status(), StatusCode::OK);
    (node, base)
}

/// Runs `switchboard serve` on `database`, which must fail to start: returns what it
/// printed on stderr once it exited non-zero.
fn fails_to_start(database: &str) -> String {
    let mut command = switchboard();
    Fixture::get().home(&mut command);
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
        .args(["--dev", "--admin-token", ADMIN_TOKEN])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchboard");
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("switchboard serve did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().expect("stderr");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!status.success(), "it started: {stderr}");
    assert!(!stderr.contains("switchboard listening"), "{stderr}");
    stderr
}

#[tokio::test]
async fn require_connects_and_an_event_is_delivered() {
    let database = Fixture::get().database("127.0.0.1", "sslmode=require");
    let (_node, base) = serves(&database).await;
    let client = reqwest::Client::new();
    let channel = provision_over_http(&client, &base).await;
    let receiver = TestReceiver::start().await;
    let webhook = client
        .post(format!("{base}/v1/configs/webhook"))
        .header("D360-API-KEY", channel["api_key"].as_str().unwrap())
        .json(&json!({"url": receiver.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(webhook.status(), StatusCode::OK);
    let events = format!(
        "{base}/admin/channels/{}/events",
        channel["id"].as_str().unwrap()
    );
    let body = json!({"messages": [{"id": "wamid.tls", "type": "text", "text": {"body": "x"}}]});
    let posted = client
        .post(events)
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::ACCEPTED);
    let received = receiver.wait_for(1).await;
    let id = &received[0].json()["entry"][0]["changes"][0]["value"]["messages"][0]["id"];
    assert_eq!(id, "wamid.tls");
}

#[tokio::test]
async fn verify_full_with_the_right_root_connects() {
    let fixture = Fixture::get();
    let params = format!("sslmode=verify-full&sslrootcert={}", fixture.file("ca.crt"));
    serves(&fixture.database("localhost", &params)).await;
}

#[test]
fn verify_full_with_the_wrong_root_fails_at_start_naming_the_cause() {
    let fixture = Fixture::get();
    let params = format!(
        "sslmode=verify-full&sslrootcert={}",
        fixture.file("wrong-ca.crt")
    );
    let stderr = fails_to_start(&fixture.database("localhost", &params));
    let expected = format!(
        "error: cannot open the database: TLS handshake with localhost:{} failed: invalid \
         peer certificate: UnknownIssuer",
        fixture.cluster.port
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn verify_full_with_a_host_name_not_in_the_certificate_fails_clearly() {
    let fixture = Fixture::get();
    let params = format!("sslmode=verify-full&sslrootcert={}", fixture.file("ca.crt"));
    let stderr = fails_to_start(&fixture.database("127.0.0.1", &params));
    let expected = format!(
        "error: cannot open the database: TLS handshake with 127.0.0.1:{} failed: invalid \
         peer certificate: certificate not valid for name",
        fixture.cluster.port
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[tokio::test]
async fn verify_ca_with_the_right_root_takes_another_host_name() {
    let fixture = Fixture::get();
    let params = format!("sslmode=verify-ca&sslrootcert={}", fixture.file("ca.crt"));
    serves(&fixture.database("127.0.0.1", &params)).await;
}

#[test]
fn require_with_sslrootcert_checks_the_chain() {
    let fixture = Fixture::get();
    let params = format!(
        "sslmode=require&sslrootcert={}",
        fixture.file("wrong-ca.crt")
    );
    let stderr = fails_to_start(&fixture.database("127.0.0.1", &params));
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
}

#[test]
fn verify_ca_without_a_root_says_to_set_sslrootcert() {
    let database = Fixture::get().database("127.0.0.1", "sslmode=verify-ca");
    let stderr = fails_to_start(&database);
    assert!(
        stderr.contains(
            "error: cannot open the database: sslmode=verify-ca needs the server's root \
             certificate: set sslrootcert=<path to PEM>"
        ),
        "{stderr}"
    );
}

#[test]
fn disable_against_a_tls_only_server_is_refused_clearly() {
    let fixture = Fixture::get();
    let stderr = fails_to_start(&fixture.database("127.0.0.1", "sslmode=disable"));
    let expected = format!(
        "error: cannot open the database: cannot connect to 127.0.0.1:{} (sslmode=disable): \
         db error: FATAL: pg_hba.conf rejects connection",
        fixture.cluster.port
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("no encryption"), "{stderr}");
}

#[test]
fn a_bad_sslmode_fails_at_start_with_the_valid_ones() {
    let database = Fixture::get().database("127.0.0.1", "sslmode=verify_full");
    let stderr = fails_to_start(&database);
    assert!(
        stderr.contains(
            "error: cannot open the database: invalid sslmode \"verify_full\": expected \
             disable, prefer, require, verify-ca or verify-full"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn prefer_and_the_default_connect_to_a_server_without_tls() {
    let plain = crate::postgres::postgres_database();
    serves(&format!("{plain}?sslmode=prefer")).await;
    serves(&crate::postgres::postgres_database()).await;
}

#[test]
fn require_against_a_server_without_tls_fails_clearly() {
    let plain = crate::postgres::postgres_database();
    let stderr = fails_to_start(&format!("{plain}?sslmode=require"));
    assert!(
        stderr.contains(
            "(sslmode=require): error performing TLS handshake: server does not support TLS"
        ),
        "{stderr}"
    );
}
