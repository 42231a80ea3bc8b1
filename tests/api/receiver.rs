//! `TestReceiver`: a real HTTP/1.1 server on `127.0.0.1:0` that answers deliveries as a
//! script says (a status, with extra headers or not, a hang, a dropped connection) and
//! records what it received.
//!
//! Hand-written on a `TcpListener` so it can misbehave in ways a framework will not: close
//! the connection mid-request, or never answer.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How to answer one request.
#[derive(Debug, Clone, Copy)]
pub enum Behavior {
    /// Answer with this status.
    Status(u16),
    /// Wait, then answer with the status.
    Delay(Duration, u16),
    /// Answer with the status and these extra header lines (`"name: value"`, joined by
    /// `\r\n`), e.g. a `Retry-After` on a 429 or 503.
    StatusWithHeaders(u16, &'static str),
    /// Close the connection without answering.
    Close,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Each header's last value, by lower-cased name.
    pub headers: HashMap<String, String>,
    /// Every header line in the order received (lower-cased names), duplicates included.
    pub header_lines: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// The status this request is answered with (0: the connection is closed instead).
    pub answered: u16,
}

impl Received {
    /// Every value received for header `name` (lower-case), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.header_lines
            .iter()
            .filter(|(line_name, _)| line_name == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// The id of the message this delivery carries (`entry[0].changes[0].value.messages[0]`).
    pub fn wamid(&self) -> Option<String> {
        self.json()["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
            .as_str()
            .map(str::to_owned)
    }
}

#[derive(Default)]
struct Shared {
    script: VecDeque<Behavior>,
    default: Option<Behavior>,
    received: Vec<Received>,
    /// Requests received and not answered yet, and the most there ever were at once.
    in_flight: usize,
    max_in_flight: usize,
    /// Requests being answered per message (by [`message_key`]), and the most there ever
    /// were at once for any one message: 2 means one message was attempted twice at once.
    in_flight_by_message: HashMap<Vec<u8>, usize>,
    max_in_flight_of_one_message: usize,
}

/// A scripted receiver; clones share the script and the record.
#[derive(Clone)]
pub struct TestReceiver {
    pub url: String,
    shared: Arc<Mutex<Shared>>,
}

impl TestReceiver {
    /// A receiver answering 200 to everything.
    pub async fn start() -> Self {
        Self::with_default(Behavior::Status(200)).await
    }

    /// A receiver answering `default` unless the script says otherwise.
    pub async fn with_default(default: Behavior) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let shared = Arc::new(Mutex::new(Shared {
            default: Some(default),
            ..Shared::default()
        }));
        let accepting = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&accepting)));
            }
        });
        Self { url, shared }
    }

    /// The next requests get these answers, in order; then the default again.
    pub fn script(&self, behaviors: impl IntoIterator<Item = Behavior>) {
        self.lock().script.extend(behaviors);
    }

    /// Changes the answer given once the script is used up.
    pub fn set_default(&self, behavior: Behavior) {
        self.lock().default = Some(behavior);
    }

    /// The most requests that were ever being answered at once.
    #[allow(dead_code)] // only some test modules ask
    pub fn max_in_flight(&self) -> usize {
        self.lock().max_in_flight
    }

    /// The most requests that were ever being answered at once for one message (the same
    /// `wamid`, or the same body when it has none).
    #[allow(dead_code)] // only some test modules ask
    pub fn max_in_flight_of_one_message(&self) -> usize {
        self.lock().max_in_flight_of_one_message
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// The message ids of every delivery answered 200, once each.
    pub fn delivered_wamids(&self) -> HashSet<String> {
        self.received()
            .iter()
            .filter(|r| r.answered == 200)
            .filter_map(Received::wamid)
            .collect()
    }

    /// Waits until at least `count` requests arrived (20 s deadline) and returns them all.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        self.wait_until(|received| received.len() >= count).await
    }

    /// Waits until `done` holds for the requests received (20 s deadline).
    pub async fn wait_until(&self, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        self.wait_until_within(Duration::from_secs(20), done).await
    }

    /// Waits until `done` holds for the requests received, for at most `within`.
    pub async fn wait_until_within(
        &self,
        within: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "receiver {} timed out with {} requests",
                self.url,
                received.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Mutex<Shared>>) {
    let mut buffer = Vec::new();
    loop {
        let Some(mut request) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        let behavior = {
            let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
            let default = shared.default.unwrap_or(Behavior::Status(200));
            let behavior = shared.script.pop_front().unwrap_or(default);
            request.answered = match behavior {
                Behavior::Status(status)
                | Behavior::Delay(_, status)
                | Behavior::StatusWithHeaders(status, _) => status,
                Behavior::Close => 0,
            };
            let key = message_key(&request.body);
            shared.received.push(request);
            shared.in_flight += 1;
            shared.max_in_flight = shared.max_in_flight.max(shared.in_flight);
            let of_message = shared.in_flight_by_message.entry(key.clone()).or_default();
            *of_message += 1;
            let of_message = *of_message;
            shared.max_in_flight_of_one_message =
                shared.max_in_flight_of_one_message.max(of_message);
            (behavior, key)
        };
        let (behavior, key) = behavior;
        let answered = answer(&mut stream, behavior).await;
        {
            let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
            shared.in_flight -= 1;
            if let Some(of_message) = shared.in_flight_by_message.get_mut(&key) {
                *of_message -= 1;
                if *of_message == 0 {
                    shared.in_flight_by_message.remove(&key);
                }
            }
        }
        if !answered {
            return;
        }
    }
}

/// What names the message a delivery carries: its `wamid` (in a Cloud API envelope), else
/// the whole body.
fn message_key(body: &[u8]) -> Vec<u8> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| {
            json["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
                .as_str()
                .map(|id| id.as_bytes().to_vec())
        })
        .unwrap_or_else(|| body.to_vec())
}

/// Answers one request as `behavior` says; `false` when the connection is to be closed.
async fn answer(stream: &mut TcpStream, behavior: Behavior) -> bool {
    let (status, extra) = match behavior {
        Behavior::Close => return false,
        Behavior::Status(status) => (status, String::new()),
        Behavior::StatusWithHeaders(status, headers) => (status, format!("{headers}\r\n")),
        Behavior::Delay(wait, status) => {
            tokio::time::sleep(wait).await;
            (status, String::new())
        }
    };
    let answer = format!(
        "HTTP/1.1 {status} Scripted\r\ncontent-type: text/plain\r\n{extra}content-length: 8\r\n\r\nreceived"
    );
    stream.write_all(answer.as_bytes()).await.is_ok()
}

/// Reads one request (headers and a content-length body); `None` when the peer closed.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Received> {
    let header_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0u8; 8192];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let header_lines: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_owned()))
        .collect();
    let headers: HashMap<String, String> = header_lines.iter().cloned().collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body_start = header_end + 4;
    while buffer.len() < body_start + length {
        let mut chunk = [0u8; 8192];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let body = buffer[body_start..body_start + length].to_vec();
    buffer.drain(..body_start + length);
    Some(Received {
        path,
        headers,
        header_lines,
        body,
        at: Instant::now(),
        answered: 0,
    })
}
