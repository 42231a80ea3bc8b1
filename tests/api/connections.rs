//! No unauthenticated or slow client can exhaust the server: half-sent heads, idle
//! keep-alive connections and unfinished bodies are closed after their timeouts, connections
//! beyond the limit wait while the open ones keep working, bodies beyond the memory budget
//! get a 503, cheap checks come before a body is read, and a stop ends within its grace
//! period whatever the clients do.
//!
//! These tests speak raw HTTP/1.1 over TCP, since a well-behaved client cannot misbehave.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use switchboard::config::{Config, DatabaseUrl, HttpLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::helpers::{fresh_database_url, ADMIN_TOKEN};

/// Long enough that no test below waits for it by accident.
const LONG: Duration = Duration::from_secs(60);

/// How long a test waits for something that must happen (not a timing assertion: the
/// limits under test are a few hundred milliseconds).
const DEADLINE: Duration = Duration::from_secs(10);

/// A server started without any pooled client of its own, so every connection is the test's.
struct Server {
    address: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    _data: tempfile::TempDir,
}

async fn serve(adjust: impl FnOnce(&mut Config)) -> Server {
    let data = tempfile::tempdir().unwrap();
    let database = DatabaseUrl::parse(&fresh_database_url(data.path())).unwrap();
    let mut config = Config::new(database, ADMIN_TOKEN);
    config.http = HttpLimits {
        header_timeout: LONG,
        body_timeout: LONG,
        idle_timeout: LONG,
        ..HttpLimits::default()
    };
    adjust(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { switchboard::run(config, listener, shutdown).await.unwrap() }
    });
    let server = Server {
        address,
        shutdown,
        task,
        _data: data,
    };
    let mut probe = server.connect().await;
    probe
        .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(answer(&mut probe).await.unwrap().0, 200);
    server
}

impl Server {
    async fn connect(&self) -> TcpStream {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            match TcpStream::connect(self.address).await {
                Ok(stream) => return stream,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(error) => panic!("cannot connect: {error}"),
            }
        }
    }

    /// Stops the server and waits at most `DEADLINE` for it to return.
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the server did not stop within the deadline")
            .unwrap();
    }
}

/// Reads one answer: its status and JSON body; `None` when the server closed the connection
/// first.
async fn answer(stream: &mut TcpStream) -> Option<(u16, Value)> {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&received, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |value| value.trim().parse().unwrap());
            if received.len() >= end + 4 + length {
                let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                let body = &received[end + 4..end + 4 + length];
                return Some((status, serde_json::from_slice(body).unwrap_or(Value::Null)));
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
        }
    }
}

/// `answer` within the deadline; fails the test if the server neither answers nor closes.
async fn answer_within_deadline(stream: &mut TcpStream) -> Option<(u16, Value)> {
    tokio::time::timeout(DEADLINE, answer(stream))
        .await
        .expect("the server neither answered nor closed the connection")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn post_head(path: &str, length: usize, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n{extra}\r\n"
    )
}

fn admin_header() -> String {
    format!("Authorization: Bearer {ADMIN_TOKEN}\r\n")
}

#[tokio::test]
async fn a_half_sent_request_head_is_closed_after_the_header_timeout() {
    let server = serve(|c| c.http.header_timeout = Duration::from_millis(300)).await;
    let mut slow = server.connect().await;
    slow.write_all(b"POST /admin/partners HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    assert_eq!(answer_within_deadline(&mut slow).await, None);
    // A connection that never sends a byte is closed the same way.
    let mut silent = server.connect().await;
    assert_eq!(answer_within_deadline(&mut silent).await, None);
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let server = serve(|c| c.http.idle_timeout = Duration::from_millis(300)).await;
    let mut client = server.connect().await;
    for _ in 0..2 {
        client
            .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(answer_within_deadline(&mut client).await.unwrap().0, 200);
    }
    assert_eq!(
        answer_within_deadline(&mut client).await,
        None,
        "closed when idle"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_body_that_never_finishes_is_answered_408() {
    let server = serve(|c| c.http.body_timeout = Duration::from_millis(300)).await;
    let mut client = server.connect().await;
    let head = post_head("/admin/partners", 100, &admin_header());
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(b"{\"name\":").await.unwrap();
    let (status, body) = answer_within_deadline(&mut client).await.unwrap();
    assert_eq!(status, 408);
    assert_eq!(body["error"], "Request body not received within 300 ms");
    server.stop().await;
}

#[tokio::test]
async fn cheap_checks_are_answered_before_the_body_is_read() {
    let server = serve(|_| {}).await;
    // No Meta app secret configured: 403 at once, though the body never comes.
    let mut meta = server.connect().await;
    let head = post_head("/webhooks/whatsapp", 1_000_000, "");
    meta.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(answer_within_deadline(&mut meta).await.unwrap().0, 403);
    server.stop().await;

    let server = serve(|c| c.meta_app_secret = Some(switchboard::config::Secret::new("s"))).await;
    let mut unsigned = server.connect().await;
    unsigned.write_all(head.as_bytes()).await.unwrap();
    let (status, body) = answer_within_deadline(&mut unsigned).await.unwrap();
    assert_eq!(status, 401);
    assert_eq!(body["error"], "Missing X-Hub-Signature-256 header");
    // The Partner API authenticates before it reads.
    let mut partner = server.connect().await;
    let head = post_head("/api/v2/partners/p1/webhook_url", 500_000, "");
    partner.write_all(head.as_bytes()).await.unwrap();
    let (status, body) = answer_within_deadline(&mut partner).await.unwrap();
    assert_eq!(status, 401);
    assert_eq!(body["meta"]["http_code"], 401);
    // A declared length over the limit is refused before reading too.
    let mut large = server.connect().await;
    let head = post_head("/admin/partners", 2_000_000, &admin_header());
    large.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(answer_within_deadline(&mut large).await.unwrap().0, 413);
    server.stop().await;
}

#[tokio::test]
async fn bodies_beyond_the_memory_budget_are_answered_503() {
    let server = serve(|c| c.http.max_body_buffer = 100_000).await;
    // One client holds 80 kB of an unfinished 90 kB body.
    let mut holder = server.connect().await;
    let head = post_head("/admin/partners", 90_000, &admin_header());
    holder.write_all(head.as_bytes()).await.unwrap();
    holder.write_all(&[b' '; 80_000]).await.unwrap();
    // Another's 50 kB body does not fit beside it (once the server has read the first).
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(50_000));
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut other = server.connect().await;
        let head = post_head("/admin/partners", big.len(), &admin_header());
        other.write_all(head.as_bytes()).await.unwrap();
        other.write_all(big.as_bytes()).await.unwrap();
        let (status, body) = answer_within_deadline(&mut other).await.unwrap();
        if status == 503 {
            assert_eq!(
                body["error"],
                "Too many requests are being received at once, please retry later"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never refused: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Once the first body is complete, its budget is free again.
    holder.write_all(&[b' '; 10_000]).await.unwrap();
    assert_eq!(answer_within_deadline(&mut holder).await.unwrap().0, 400);
    let mut after = server.connect().await;
    let head = post_head("/admin/partners", big.len(), &admin_header());
    after.write_all(head.as_bytes()).await.unwrap();
    after.write_all(big.as_bytes()).await.unwrap();
    assert_ne!(answer_within_deadline(&mut after).await.unwrap().0, 503);
    server.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_while_open_ones_keep_working() {
    let server = serve(|c| c.http.max_connections = 2).await;
    let health = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut first = server.connect().await;
    let mut second = server.connect().await;
    for open in [&mut first, &mut second] {
        open.write_all(health).await.unwrap();
        assert_eq!(answer_within_deadline(open).await.unwrap().0, 200);
    }
    // A third connection is accepted by the kernel but not served while two are open.
    let mut third = server.connect().await;
    third.write_all(health).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(500), answer(&mut third)).await;
    assert!(waited.is_err(), "served beyond the limit: {waited:?}");
    // The open ones keep working meanwhile.
    first.write_all(health).await.unwrap();
    assert_eq!(answer_within_deadline(&mut first).await.unwrap().0, 200);
    // When one closes, the waiting connection is served.
    drop(second);
    assert_eq!(answer_within_deadline(&mut third).await.unwrap().0, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_stop_ends_within_the_grace_period_whatever_clients_do() {
    let server = serve(|c| c.http.shutdown_grace = Duration::from_millis(500)).await;
    // A body that never finishes (its timeout is a minute away)…
    let mut stuck = server.connect().await;
    let head = post_head("/admin/partners", 100, &admin_header());
    stuck.write_all(head.as_bytes()).await.unwrap();
    stuck.write_all(b"{").await.unwrap();
    // …and a head that never finishes.
    let mut half = server.connect().await;
    half.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    // Let the server start reading both before it is asked to stop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop().await;
    assert_eq!(answer_within_deadline(&mut stuck).await, None);
    assert_eq!(answer_within_deadline(&mut half).await, None);
}
