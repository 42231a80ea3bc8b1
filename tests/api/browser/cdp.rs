//! A minimal Chrome DevTools Protocol client over `--remote-debugging-pipe`: Chromium reads
//! commands on its fd 3 and writes answers and events on its fd 4, each a JSON message
//! ended by a NUL byte. No WebSocket, no extra crate, no `unsafe`: `sh` moves the child's
//! stdin and stdout pipes to fds 3 and 4 before it `exec`s Chromium.
//!
//! One reader thread splits the answers by `id` to the waiting command; events are kept
//! for the test to look at (page errors, console output, paused requests).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::oneshot;

/// How long a command or a DOM condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// Shared between the reader thread and the test.
#[derive(Default)]
struct Inbox {
    /// `Runtime.exceptionThrown` and `Runtime.consoleAPICalled` lines, for failure messages.
    log: Vec<String>,
    /// Other events, in order (`method`, `params`, `sessionId`).
    events: Vec<Value>,
}

/// A headless Chromium, killed when dropped.
pub struct Browser {
    child: Child,
    input: Mutex<ChildStdin>,
    pending: Pending,
    inbox: Arc<Mutex<Inbox>>,
    next_id: AtomicU64,
    _profile: tempfile::TempDir,
}

/// One tab, attached with `flatten` (commands carry its `sessionId`).
pub struct Page<'a> {
    browser: &'a Browser,
    session: String,
}

/// The Chromium binary: `$CHROMIUM`, else the first of the usual names on `PATH`.
fn chromium_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "CHROMIUM={} is not a file", path.display());
        return path;
    }
    let names = ["chromium", "chromium-browser", "google-chrome", "chrome"];
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "Chromium is not installed: the browser tests (tests/api/browser.rs) need Debian's \
         `chromium` on PATH (or CHROMIUM=/path/to/chrome). `bash .ci/run` installs it; by hand: \
         apt-get install -y chromium"
    );
}

impl Browser {
    /// Starts Chromium headless with a throwaway profile.
    pub fn launch() -> Browser {
        let binary = chromium_binary();
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(&binary)
            .args([
                "--headless=new",
                "--remote-debugging-pipe",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-sync",
                "--disable-features=Translate,MediaRouter",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--mute-audio",
                "--lang=en-US",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let input = child.stdin.take().expect("stdin");
        let output = child.stdout.take().expect("stdout");
        let pending: Pending = Arc::default();
        let inbox: Arc<Mutex<Inbox>> = Arc::default();
        let (reader_pending, reader_inbox) = (Arc::clone(&pending), Arc::clone(&inbox));
        std::thread::spawn(move || {
            read_messages(BufReader::new(output), reader_pending, reader_inbox)
        });
        Browser {
            child,
            input: Mutex::new(input),
            pending,
            inbox,
            next_id: AtomicU64::new(1),
            _profile: profile,
        }
    }

    /// Sends a command (to the browser, or to a page's session) and waits for its result.
    pub async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let (sender, receiver) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, sender);
        {
            let mut input = self.input.lock().unwrap();
            let mut bytes = serde_json::to_vec(&message).unwrap();
            bytes.push(0);
            input.write_all(&bytes).expect("write to Chromium");
            input.flush().unwrap();
        }
        let answer = tokio::time::timeout(DEADLINE, receiver)
            .await
            .unwrap_or_else(|_| panic!("Chromium did not answer {method} in time"))
            .unwrap_or_else(|_| panic!("Chromium exited during {method}"));
        if let Some(error) = answer.get("error") {
            panic!("{method} failed: {error}");
        }
        answer["result"].clone()
    }

    /// Opens a tab of `width`×`height` CSS pixels.
    pub async fn new_page(&self, width: u32, height: u32) -> Page<'_> {
        let target = self
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        let page = Page {
            browser: self,
            session: attached["sessionId"].as_str().unwrap().to_owned(),
        };
        for method in ["Page.enable", "Runtime.enable"] {
            page.call(method, json!({})).await;
        }
        let metrics =
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false});
        page.call("Emulation.setDeviceMetricsOverride", metrics)
            .await;
        page
    }

    /// The page errors and console lines seen so far.
    pub fn log(&self) -> Vec<String> {
        self.inbox.lock().unwrap().log.clone()
    }

    /// Waits for the next event of `method` (e.g. `Fetch.requestPaused`): harness API for
    /// tests that wait on a protocol event (none does today).
    #[allow(dead_code)]
    pub async fn next_event(&self, method: &str) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(event) = self.take_events(method).into_iter().next() {
                return event;
            }
            assert!(Instant::now() < deadline, "no {method} event in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Takes the events of `method` seen so far.
    #[allow(dead_code)]
    pub fn take_events(&self, method: &str) -> Vec<Value> {
        let mut inbox = self.inbox.lock().unwrap();
        let (taken, kept) = std::mem::take(&mut inbox.events)
            .into_iter()
            .partition(|event| event["method"] == method);
        inbox.events = kept;
        taken
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The reader thread: one NUL-terminated JSON message at a time.
fn read_messages(mut output: impl BufRead, pending: Pending, inbox: Arc<Mutex<Inbox>>) {
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match output.read_until(0, &mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if buffer.last() == Some(&0) {
            buffer.pop();
        }
        let Ok(message) = serde_json::from_slice::<Value>(&buffer) else {
            continue;
        };
        if let Some(id) = message.get("id").and_then(Value::as_u64) {
            if let Some(sender) = pending.lock().unwrap().remove(&id) {
                let _ = sender.send(message);
            }
            continue;
        }
        let mut inbox = inbox.lock().unwrap();
        match message["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &message["params"]["exceptionDetails"];
                let text = details["exception"]["description"]
                    .as_str()
                    .or(details["text"].as_str())
                    .unwrap_or("?");
                inbox.log.push(format!("page error: {text}"));
            }
            Some("Runtime.consoleAPICalled") => {
                let args = &message["params"]["args"];
                let text: Vec<String> = args
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| a["value"].to_string())
                    .collect();
                inbox.log.push(format!("console: {}", text.join(" ")));
            }
            Some(_) => inbox.events.push(message),
            None => {}
        }
    }
}

impl Page<'_> {
    /// Sends a command to this tab.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params).await
    }

    /// Loads `url` and waits until its document is complete.
    pub async fn navigate(&self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for(
            "document.readyState === 'complete'",
            &format!("{url} to load"),
        )
        .await;
    }

    /// Evaluates `expression` (awaiting a promise) and returns its value.
    pub async fn eval(&self, expression: &str) -> Value {
        let params = json!({"expression": expression, "awaitPromise": true, "returnByValue": true});
        let result = self.call("Runtime.evaluate", params).await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Polls `condition` (a JS expression) until it is truthy; returns its value. Fails with
    /// `what`, the page's text and its errors after [`DEADLINE`].
    pub async fn wait_for(&self, condition: &str, what: &str) -> Value {
        let deadline = Instant::now() + DEADLINE;
        let guarded =
            format!("(() => {{ try {{ return ({condition}); }} catch (e) {{ return null; }} }})()");
        loop {
            let value = self.eval(&guarded).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let text = self
                    .eval("document.body ? document.body.innerText : ''")
                    .await;
                panic!(
                    "timed out waiting for {what}\n--- page text ---\n{}\n--- page log ---\n{}",
                    text.as_str().unwrap_or(""),
                    self.browser.log().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element `selector` finds (waiting for it first).
    pub async fn click(&self, selector: &str) {
        let selector = serde_json::to_string(selector).unwrap();
        self.wait_for(
            &format!("document.querySelector({selector})"),
            &format!("{selector} to appear"),
        )
        .await;
        self.eval(&format!("document.querySelector({selector}).click()"))
            .await;
    }

    /// Types `value` into the input `selector` finds, as a user's edit (an `input` event).
    pub async fn fill(&self, selector: &str, value: &str) {
        let (selector, value) = (
            serde_json::to_string(selector).unwrap(),
            serde_json::to_string(value).unwrap(),
        );
        self.wait_for(
            &format!("document.querySelector({selector})"),
            &format!("{selector} to appear"),
        )
        .await;
        self.eval(&format!(
            "(() => {{ const i = document.querySelector({selector}); i.value = {value}; \
             i.dispatchEvent(new Event('input', {{bubbles: true}})); }})()"
        ))
        .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        base64_decode(shot["data"].as_str().unwrap())
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (CDP's encoding of binary data), padded.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| (n << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64, ignoring padding.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut bits, mut count) = (0u32, 0);
    for byte in text.bytes().filter(|&b| b != b'=') {
        let value = ALPHABET.iter().position(|&c| c == byte).expect("base64") as u32;
        bits = ((bits << 6) | value) & 0xff_ffff;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

#[test]
fn base64_round_trips() {
    for input in [
        &b""[..],
        b"f",
        b"fo",
        b"foo",
        b"foob",
        b"\x00\xff\x10binary",
    ] {
        assert_eq!(base64_decode(&base64_encode(input)), input);
    }
    assert_eq!(base64_encode(b"foob"), "Zm9vYg==");
}
