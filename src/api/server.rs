//! The HTTP server: accepts connections under a limit, serves each with hyper, and bounds
//! what one client can hold.
//!
//! axum's own `serve` has no header, body or idle timeout and no connection limit, so a
//! client that sends half a request keeps its connection (and, on SIGTERM, the whole server)
//! for as long as it likes. Here:
//! - at most `max_connections` are open; beyond, new connections wait in the kernel's
//!   listen backlog while the open ones keep working;
//! - each connection's socket is a [`Watched`] stream: while it waits for a request it must
//!   start one within the idle timeout and send its whole head within the header timeout of
//!   its first byte; an answer the client does not read is abandoned after the idle timeout
//!   (the body timeout is the body extractor's, `api/extract.rs`);
//! - a graceful stop lets requests in flight finish, then closes whatever is still open
//!   once the grace period is over.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;
use tracing::Instrument;

use crate::config::HttpLimits;

/// Largest buffer hyper keeps per connection (request heads bigger than this are refused):
/// bounds the memory a connection holds while its head arrives.
const MAX_CONNECTION_BUFFER: usize = 64 * 1024;

/// Serves `router` on `listener` until `shutdown`, then lets open requests finish for at
/// most the grace period; returns when that period ends, for the rest of the stop to keep
/// within it.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> Instant {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let force_close = CancellationToken::new();
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = shutdown.cancelled() => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let tcp = match accepted {
            Ok((tcp, _peer)) => tcp,
            Err(error) => {
                pause_after_accept_error(&error).await;
                continue;
            }
        };
        // Answers are small and written whole: send them at once rather than wait for Nagle.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let connection = Connection {
            router: router.clone(),
            limits: limits.clone(),
            shutdown: shutdown.clone(),
            force_close: force_close.clone(),
            _slot: slot,
        };
        connections.spawn(connection.serve(tcp));
    }
    drop(listener);
    connections.close();
    let grace = limits.shutdown_grace;
    let grace_ends = Instant::now() + grace;
    if tokio::time::timeout_at(grace_ends, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            grace_ms = grace.as_millis() as u64,
            "closing connections still open after the shutdown grace period"
        );
        force_close.cancel();
        connections.wait().await;
    }
    grace_ends
}

/// Accept errors are mostly the peer's (reset before accept) or a full file table: log, and
/// wait a little on the latter so the loop does not spin.
async fn pause_after_accept_error(error: &io::Error) {
    match error.kind() {
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset => {}
        _ => {
            tracing::warn!(%error, "cannot accept a connection");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One accepted connection and what it needs to serve and stop.
struct Connection {
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
    force_close: CancellationToken,
    /// Held until the connection closes: one of `max_connections`.
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(self, tcp: TcpStream) {
        let phase = Arc::new(PhaseClock::new());
        let io = TokioIo::new(Watched::new(tcp, Arc::clone(&phase), self.limits.clone()));
        let router = self.router;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut router = router.clone();
            let phase = Arc::clone(&phase);
            phase.request_started();
            let span = super::traced::request_span(&request);
            let started = super::traced::started(&span);
            // Routing runs inside the span, so the route layer finds it current.
            let answer = async move { router.call(request.map(axum::body::Body::new)).await };
            async move {
                let response = answer.instrument(span.clone()).await;
                if let Ok(response) = &response {
                    super::traced::record_answer(&span, response.status(), started);
                }
                response.map(|response| response.map(|body| Answer { body, phase }))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            // The Watched stream times heads itself: hyper's timer would also run while a
            // keep-alive connection is idle, closing it after the (short) header timeout.
            .header_read_timeout(None)
            .max_buf_size(MAX_CONNECTION_BUFFER);
        let connection = builder.serve_connection(io, service);
        tokio::pin!(connection);
        let served = tokio::select! {
            served = connection.as_mut() => served,
            () = self.shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                tokio::select! {
                    served = connection.as_mut() => served,
                    () = self.force_close.cancelled() => Ok(()),
                }
            }
        };
        if let Err(error) = served {
            tracing::debug!(%error, "connection closed with an error");
        }
    }
}

/// An answer's body: the request counts as served (so the idle timeout runs again) only once
/// hyper is done with it, not when the handler returned its head. A long answer, such as
/// the live stream, is not idle while it is written; its writes are still timed (a client
/// that reads nothing for the idle timeout is cut).
struct Answer {
    body: axum::body::Body,
    phase: Arc<PhaseClock>,
}

impl http_body::Body for Answer {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.phase.request_finished();
    }
}

/// Where a connection is in its request cycle, which decides the deadline of its reads.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request since then: the idle timeout runs.
    Idle(Instant),
    /// A request's head started arriving then: the header timeout runs.
    Head(Instant),
    /// A request is being served: its body timeout is the extractor's.
    Busy,
}

/// The phase, shared by the socket wrapper (which sees bytes) and the service (which sees
/// requests start and end); both run on the connection's task, so the lock is uncontended.
struct PhaseClock(Mutex<PhaseState>);

struct PhaseState {
    phase: Phase,
    /// The connection task's waker from its last blocked read: a request that ends while
    /// hyper's read is parked (it read during the request and found nothing) must wake it,
    /// so the idle deadline gets armed.
    reader: Option<Waker>,
}

impl PhaseClock {
    /// A new connection must send its first request's head within the header timeout.
    fn new() -> Self {
        Self(Mutex::new(PhaseState {
            phase: Phase::Head(Instant::now()),
            reader: None,
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PhaseState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn request_started(&self) {
        self.state().phase = Phase::Busy;
    }

    /// The answer is out: the connection is idle, and its parked read must arm the deadline.
    fn request_finished(&self) {
        let reader = {
            let mut state = self.state();
            state.phase = Phase::Idle(Instant::now());
            state.reader.take()
        };
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    /// Bytes arrived: if the connection was idle, a request's head has started.
    fn bytes_read(&self) {
        let mut state = self.state();
        if let Phase::Idle(_) = state.phase {
            state.phase = Phase::Head(Instant::now());
        }
    }

    /// A read is parked: remembers who to wake, and gives the deadline of the phase.
    fn read_parked(&self, waker: &Waker, limits: &HttpLimits) -> Option<Instant> {
        let mut state = self.state();
        match &state.reader {
            Some(known) if known.will_wake(waker) => {}
            _ => state.reader = Some(waker.clone()),
        }
        match state.phase {
            Phase::Idle(since) => Some(since + limits.idle_timeout),
            Phase::Head(since) => Some(since + limits.header_timeout),
            Phase::Busy => None,
        }
    }
}

/// A TCP stream whose reads fail with `TimedOut` when the client is too slow for the phase
/// it is in, and whose writes fail when the client reads nothing for the idle timeout.
struct Watched {
    tcp: TcpStream,
    phase: Arc<PhaseClock>,
    limits: HttpLimits,
    read_timer: Timer,
    /// Since when a write has been waiting for the client to read.
    write_blocked_since: Option<Instant>,
    write_timer: Timer,
}

impl Watched {
    fn new(tcp: TcpStream, phase: Arc<PhaseClock>, limits: HttpLimits) -> Self {
        Self {
            tcp,
            phase,
            limits,
            read_timer: Timer::default(),
            write_blocked_since: None,
            write_timer: Timer::default(),
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.phase.bytes_read();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                let deadline = self.phase.read_parked(cx.waker(), &self.limits);
                self.read_timer.poll_expired(
                    deadline,
                    cx,
                    "the client was too slow to send a request",
                )
            }
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.tcp).poll_write(cx, data);
        self.watch_write(cx, written)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.tcp).poll_flush(cx) {
            Poll::Pending => self.write_blocked(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        self.watch_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

impl Watched {
    /// Times a write: one that made progress clears the stall clock, one that could not
    /// waits at most the idle timeout.
    fn watch_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Pending => self.write_blocked(cx).map(|result| result.map(|()| 0)),
            ready => {
                self.write_blocked_since = None;
                ready
            }
        }
    }

    /// A write could not proceed: pending until the idle timeout, then `TimedOut`.
    fn write_blocked(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let since = *self.write_blocked_since.get_or_insert_with(Instant::now);
        let deadline = Some(since + self.limits.idle_timeout);
        self.write_timer
            .poll_expired(deadline, cx, "the client read no answer")
    }
}

/// A resettable sleep that wakes the connection's task at a deadline.
#[derive(Default)]
struct Timer {
    sleep: Option<(Instant, Pin<Box<Sleep>>)>,
}

impl Timer {
    /// `Pending` (with a wake-up at `deadline` registered) while `deadline` is ahead or
    /// absent; `TimedOut` once it passed. Used only after the socket itself said `Pending`.
    fn poll_expired<T>(
        &mut self,
        deadline: Option<Instant>,
        cx: &mut Context<'_>,
        why: &'static str,
    ) -> Poll<io::Result<T>> {
        let Some(deadline) = deadline else {
            return Poll::Pending;
        };
        let sleep = match &mut self.sleep {
            Some((at, sleep)) if *at == deadline => sleep,
            slot => {
                let (_, sleep) =
                    slot.insert((deadline, Box::pin(tokio::time::sleep_until(deadline))));
                sleep
            }
        };
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.sleep = None;
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
