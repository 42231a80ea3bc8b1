//! Minimal HTTP/1.1 over keep-alive TCP for the load generator and the receiver.
//!
//! Why: the server, the load generator and the receiver share the machine's 2 cores, so
//! every microsecond the load side spends is taken from the server. Like `wrk`, these write
//! pre-built requests and answers and parse only the status, the head's end and
//! `Content-Length` (with `httparse`, which hyper also uses); no URL parsing, no header maps.
//! Anything they cannot read (chunked bodies, a cut connection) counts as an error.

#[allow(unused_imports)]
use super::*;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The most header lines either side reads.
const MAX_HEADERS: usize = 32;

/// One parsed message head: the status (responses; 0 for requests), its length and the
/// body's length.
struct Head {
    status: u16,
    len: usize,
    body: usize,
}

/// The request of event `id`: its body and any header lines of its own (each ending in
/// `\r\n`, e.g. a signature over the body).
pub(crate) type BodyOf = Arc<dyn Fn(u64) -> (Bytes, String) + Send + Sync>;

/// Where posts go: an address, a path, an optional `Authorization` value and the body of
/// each id (by default the in-process scenarios' [`event_body`]).
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) address: SocketAddr,
    /// Everything of the request's head but its own headers and `Content-Length`.
    prefix: Arc<str>,
    pub(crate) accepted: u16,
    pool: Arc<Mutex<Vec<Connection>>>,
    body_of: BodyOf,
}

impl Endpoint {
    /// `url` is `http://host:port/path` with an IP literal host (loopback in the bench).
    pub(crate) fn new(url: &str, auth: Option<&str>, accepted: StatusCode) -> BenchResult<Self> {
        let rest = url.strip_prefix("http://").ok_or("only http:// URLs")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let address: SocketAddr = authority.parse()?;
        let mut prefix = format!(
            "POST {} HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\n",
            if path.is_empty() { "/" } else { path }
        );
        if let Some(auth) = auth {
            prefix.push_str(&format!("authorization: {auth}\r\n"));
        }
        Ok(Self {
            address,
            prefix: prefix.into(),
            accepted: accepted.as_u16(),
            pool: Arc::default(),
            body_of: Arc::new(|id| (event_body(id), String::new())),
        })
    }

    /// The same endpoint posting `body_of(id)` instead of the default body.
    pub(crate) fn with_bodies(self, body_of: BodyOf) -> Self {
        Self { body_of, ..self }
    }

    /// A keep-alive connection of this endpoint's own.
    pub(crate) async fn connect(&self) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(self.address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buffer: Vec::with_capacity(4096),
            request: Vec::with_capacity(1024),
        })
    }

    /// POSTs the body of `id` on a pooled connection; whether the answer was the accepted
    /// status.
    pub(crate) async fn post(&self, id: u64) -> bool {
        let pooled = self.pool.lock().expect("pool lock").pop();
        let mut connection = match pooled {
            Some(c) => c,
            None => match self.connect().await {
                Ok(c) => c,
                Err(_) => return false,
            },
        };
        match connection.post(self, id).await {
            Ok(status) => {
                self.pool.lock().expect("pool lock").push(connection);
                status == self.accepted
            }
            Err(_) => false,
        }
    }
}

/// One keep-alive client connection.
pub(crate) struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
    request: Vec<u8>,
}

impl Connection {
    /// Sends one request and reads its whole answer; the answer's status.
    pub(crate) async fn post(&mut self, endpoint: &Endpoint, id: u64) -> std::io::Result<u16> {
        let (body, headers) = (endpoint.body_of)(id);
        self.request.clear();
        self.request.extend_from_slice(endpoint.prefix.as_bytes());
        self.request.extend_from_slice(headers.as_bytes());
        self.request
            .extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        self.request.extend_from_slice(&body);
        self.stream.write_all(&self.request).await?;
        let head = read_message(&mut self.stream, &mut self.buffer, parse_response).await?;
        self.buffer.drain(..head.len + head.body);
        Ok(head.status)
    }
}

/// Reads one message (head and `Content-Length` body) into `buffer`; returns its head.
/// The caller drains the message's `len + body` bytes; a next message's bytes stay.
async fn read_message(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    parse: fn(&[u8]) -> std::io::Result<Option<Head>>,
) -> std::io::Result<Head> {
    let head = loop {
        if let Some(head) = parse(buffer)? {
            break head;
        }
        fill(stream, buffer).await?;
    };
    while buffer.len() < head.len + head.body {
        fill(stream, buffer).await?;
    }
    Ok(head)
}

async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<()> {
    let start = buffer.len();
    buffer.resize(start + 8192, 0);
    let read = stream.read(&mut buffer[start..]).await;
    let read = read.inspect_err(|_| buffer.truncate(start))?;
    buffer.truncate(start + read);
    if read == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

fn content_length(headers: &[httparse::Header<'_>]) -> std::io::Result<usize> {
    let mut length = 0;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid("chunked bodies are not read"));
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| invalid("bad content-length"))?;
        }
    }
    Ok(length)
}

fn parse_response(buffer: &[u8]) -> std::io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buffer) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(Head {
            status: response.code.unwrap_or(0),
            len,
            body: content_length(response.headers)?,
        })),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(invalid("malformed response")),
    }
}

fn parse_request(buffer: &[u8]) -> std::io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buffer) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(Head {
            status: 0,
            len,
            body: content_length(request.headers)?,
        })),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(invalid("malformed request")),
    }
}

/// The webhook receiver: answers every request 200 at once and tells the tracker which id
/// it got.
pub(crate) struct Receiver {
    pub(crate) url: String,
    pub(crate) shutdown: CancellationToken,
}

impl Receiver {
    pub(crate) async fn start(tracker: Arc<Tracker>) -> BenchResult<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address: SocketAddr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = stop.cancelled() => return,
                };
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve(stream, Arc::clone(&tracker), stop.clone()));
                }
            }
        });
        Ok(Self {
            url: format!("http://{address}/hook"),
            shutdown,
        })
    }

    pub(crate) fn stop(self) {
        self.shutdown.cancel();
    }
}

/// One receiver connection: read a request, record its id, answer 200; until it closes.
async fn serve(mut stream: TcpStream, tracker: Arc<Tracker>, stop: CancellationToken) {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    let mut buffer = Vec::with_capacity(8192);
    loop {
        let head = tokio::select! {
            head = read_message(&mut stream, &mut buffer, parse_request) => head,
            () = stop.cancelled() => return,
        };
        let Ok(head) = head else { return };
        let end = head.len + head.body;
        if let Some(id) = wamid(&buffer[head.len..end]) {
            tracker.record(id);
        }
        buffer.drain(..end);
        if stream.write_all(OK).await.is_err() {
            return;
        }
    }
}
