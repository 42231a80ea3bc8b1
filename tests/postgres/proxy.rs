//! `PgProxy`: a TCP proxy on loopback between one node and the test cluster, which can do
//! to that node's database traffic what a network or a server can: stall it (`pause` until
//! `resume`), or cut a connection right after the server committed a chosen transaction and
//! before its answer reaches the node (an ambiguous `COMMIT`).
//!
//! It reads the frontend protocol just enough for that: it remembers each prepared
//! statement's text (`Parse`), marks a transaction that runs a statement containing the
//! chosen text (`Bind` of it, or a simple `Query`), and when that transaction's `COMMIT`
//! has gone through, drops the server's answer and closes both sides.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The proxy; it stops accepting when dropped (open connections live on with their node).
pub struct PgProxy {
    /// The database URL through the proxy.
    pub url: String,
    shared: Arc<Shared>,
    _stop: tokio_util::sync::DropGuard,
}

struct Shared {
    upstream: SocketAddr,
    paused: watch::Sender<bool>,
    /// Cut the next transaction that runs a statement containing this text.
    armed: Mutex<Option<String>>,
    cuts: AtomicUsize,
}

impl PgProxy {
    /// A proxy in front of the database of `database_url` (`postgres://…@127.0.0.1:PORT/DB`).
    pub async fn start(database_url: &str) -> Self {
        let (head, rest) = database_url.rsplit_once('@').expect("user@host in the URL");
        let (authority, database) = rest.split_once('/').expect("a database in the URL");
        let upstream: SocketAddr = authority.parse().expect("127.0.0.1:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (paused, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            upstream,
            paused,
            armed: Mutex::new(None),
            cuts: AtomicUsize::new(0),
        });
        let stop = CancellationToken::new();
        let (accepting, stopped) = (Arc::clone(&shared), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stopped.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((client, _)) => { tokio::spawn(relay(client, Arc::clone(&accepting))); }
                        Err(_) => return,
                    },
                }
            }
        });
        Self {
            url: format!("{head}@127.0.0.1:{port}/{database}"),
            shared,
            _stop: stop.drop_guard(),
        }
    }

    /// Holds every byte in both directions until [`PgProxy::resume`]: a stalled database.
    pub fn pause(&self) {
        self.shared.paused.send_replace(true);
    }

    /// Lets the held traffic through again.
    pub fn resume(&self) {
        self.shared.paused.send_replace(false);
    }

    /// The next transaction that runs a statement containing `text` commits on the server,
    /// but its connection is closed before the answer reaches the node.
    pub fn cut_after_commit_of(&self, text: &str) {
        *self.shared.armed.lock().unwrap() = Some(text.to_owned());
    }

    /// How many connections were cut so far.
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }
}

async fn relay(client: TcpStream, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (from_client, to_client) = client.into_split();
    let (from_server, to_server) = server.into_split();
    let cut_next_answer = Arc::new(AtomicBool::new(false));
    let closed = CancellationToken::new();
    let frontend = Frontend {
        shared: Arc::clone(&shared),
        statements: HashMap::new(),
        marked: false,
        cut_next_answer: Arc::clone(&cut_next_answer),
    };
    let (one, other) = (closed.clone(), closed.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = one.cancelled() => {}
            () = frontend.pump(from_client, to_server) => {}
        }
        one.cancel();
    });
    tokio::spawn(async move {
        tokio::select! {
            () = other.cancelled() => {}
            () = backend(from_server, to_client, &shared, &cut_next_answer) => {}
        }
        other.cancel();
    });
}

async fn wait_while_paused(shared: &Shared) {
    let mut paused = shared.paused.subscribe();
    let _ = paused.wait_for(|paused| !*paused).await;
}

/// Server to node: bytes as they come, unless the answer to a marked `COMMIT` is due.
async fn backend(
    mut from_server: OwnedReadHalf,
    mut to_client: OwnedWriteHalf,
    shared: &Shared,
    cut_next_answer: &AtomicBool,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let Ok(read) = from_server.read(&mut buffer).await else {
            return;
        };
        if read == 0 {
            return;
        }
        if cut_next_answer.load(Ordering::SeqCst) {
            // The server has committed and answered; the node never hears of it.
            shared.cuts.fetch_add(1, Ordering::SeqCst);
            return;
        }
        wait_while_paused(shared).await;
        if to_client.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// Node to server, message by message.
struct Frontend {
    shared: Arc<Shared>,
    /// Prepared statement name → its text, on this connection.
    statements: HashMap<String, String>,
    /// The open transaction ran a statement containing the armed text.
    marked: bool,
    cut_next_answer: Arc<AtomicBool>,
}

impl Frontend {
    async fn pump(mut self, mut from_client: OwnedReadHalf, mut to_server: OwnedWriteHalf) {
        // The startup message has no type byte, nor has the SSLRequest that may come first
        // (`sslmode=prefer`, the default): the cluster answers it `N` and the startup follows.
        loop {
            let Some(startup) = read_message(&mut from_client, false).await else {
                return;
            };
            if to_server.write_all(&startup).await.is_err() {
                return;
            }
            if startup != SSL_REQUEST {
                break;
            }
        }
        while let Some(message) = read_message(&mut from_client, true).await {
            self.inspect(&message);
            wait_while_paused(&self.shared).await;
            if to_server.write_all(&message).await.is_err() {
                return;
            }
        }
    }

    fn inspect(&mut self, message: &[u8]) {
        let body = &message[5..];
        let armed = self.shared.armed.lock().unwrap().clone();
        match message[0] {
            b'P' => {
                let mut fields = body.split(|b| *b == 0);
                let name = String::from_utf8_lossy(fields.next().unwrap_or_default());
                let text = String::from_utf8_lossy(fields.next().unwrap_or_default());
                self.statements.insert(name.into_owned(), text.into_owned());
            }
            b'B' => {
                let mut fields = body.split(|b| *b == 0);
                let _portal = fields.next();
                let name = String::from_utf8_lossy(fields.next().unwrap_or_default());
                let text = self.statements.get(name.as_ref());
                if let (Some(text), Some(armed)) = (text, &armed) {
                    self.marked |= text.contains(armed.as_str());
                }
            }
            b'Q' => {
                let text = String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(body));
                let text = text.trim().trim_end_matches(';').to_ascii_uppercase();
                if text == "COMMIT" && self.marked && armed.is_some() {
                    *self.shared.armed.lock().unwrap() = None;
                    self.cut_next_answer.store(true, Ordering::SeqCst);
                }
                if text == "COMMIT" || text == "ROLLBACK" {
                    self.marked = false;
                } else if let Some(armed) = &armed {
                    self.marked |= text.contains(&armed.to_ascii_uppercase());
                }
            }
            _ => {}
        }
    }
}

/// One protocol message, whole (type byte, length, body); `None` at the end of the stream.
/// The SSLRequest message: length 8, then the code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

async fn read_message(from: &mut OwnedReadHalf, typed: bool) -> Option<Vec<u8>> {
    let mut message = Vec::new();
    if typed {
        message.push(from.read_u8().await.ok()?);
    }
    let length = from.read_u32().await.ok()?;
    message.extend_from_slice(&length.to_be_bytes());
    let mut body = vec![0u8; (length as usize).checked_sub(4)?];
    from.read_exact(&mut body).await.ok()?;
    message.extend_from_slice(&body);
    Some(message)
}
