//! `GET /admin/stream`: what happens now, as server-sent events (the live feed of
//! `delivery::feed`), filtered by channel, destination and kind, resumed from the store
//! after a reconnect (`Last-Event-ID` or `?after=`).
//!
//! Each stream reads the one broadcast feed: a client that falls more than the feed's
//! capacity behind is told `lagged` (with the cursor to resume from) and its stream ends,
//! so it never slows delivery nor holds more than that bounded queue. A client that reads
//! nothing at all is also cut by the server's write idle timeout. Streams end when the
//! service stops, so they do not hold the shutdown's grace period.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::error::{ApiError, ErrorBody};
use super::extract::AdminAuth;
use super::AppState;
use crate::delivery::{Feed, FeedItem};
use crate::domain::{AttemptId, ChannelId, DestinationId, EventId};
use crate::store::{Replay, ReplayFrom, REPLAY_LIMIT};

/// A comment line this often keeps proxies and clients from taking a quiet stream for dead.
const PING_EVERY: Duration = Duration::from_secs(15);

/// The kinds a stream may ask for, in the `kind` filter's words.
const KINDS: [&str; 4] = ["event", "attempt", "delivery", "destination"];

/// What every stream shares: the feed, the limit of open streams, and the service's stop.
#[derive(Clone)]
pub struct LiveStreams {
    feed: Arc<Feed>,
    slots: Arc<Semaphore>,
    max: usize,
    shutdown: CancellationToken,
}

impl LiveStreams {
    /// At most `max` streams of `feed` at once, each ended when `shutdown` is cancelled.
    pub fn new(feed: Arc<Feed>, max: usize, shutdown: CancellationToken) -> Self {
        Self {
            feed,
            slots: Arc::new(Semaphore::new(max)),
            max,
            shutdown,
        }
    }

    /// The feed, for the handlers that publish (an operator's pause or resume).
    pub fn feed(&self) -> &Feed {
        &self.feed
    }
}

/// Stream what happens now: events accepted, attempts, deliveries ended, destination changes.
#[utoipa::path(
    get, path = "/admin/stream", tag = "Admin",
    security(("admin" = [])),
    params(
        ("channel" = Option<String>, Query, description = "Only messages of this channel"),
        ("destination" = Option<String>, Query, description = "Only attempt, delivery and destination messages of this destination (16 hex digits)"),
        ("kind" = Option<String>, Query, description = "Comma list of event, attempt, delivery, destination"),
        ("after" = Option<String>, Query, description = "Resume after this cursor (`<event id>.<attempt id>`); the `Last-Event-ID` header wins"),
    ),
    responses(
        (status = 200, description = "Server-sent events: `id: <E>.<A>`, `event: <kind>`, `data: <JSON>`; `: ping` every 15 s; `event: lagged` with `{\"resume\": cursor}` ends a stream that fell behind", content_type = "text/event-stream", body = String),
        (status = 400, description = "A bad filter or cursor", body = ErrorBody),
        (status = 401, description = "Missing or invalid admin token", body = ErrorBody),
        (status = 503, description = "Too many streams open", body = ErrorBody),
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    _: AdminAuth,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let filter = Filter::parse(&query)?;
    let cursor = resume_cursor(&headers, &query)?;
    let live = &state.streams;
    let slot = Arc::clone(&live.slots)
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyStreams(live.max))?;
    // Subscribed before the store is read, so nothing falls between the replay and live.
    let receiver = live.feed.subscribe();
    let mut reader = Reader::new(receiver, filter, live.shutdown.clone(), slot);
    if let Some(from) = cursor {
        reader.cursor = from;
        let replay = state.store.replay(from, REPLAY_LIMIT).await?;
        reader.queue_replay(replay);
    }
    let messages = stream::unfold(reader, |mut reader| async move {
        let event = reader.next().await?;
        Some((Ok(event), reader))
    });
    Ok(Sse::new(messages).keep_alive(KeepAlive::new().interval(PING_EVERY).text("ping")))
}

/// The cursor a reconnect resumes after: `Last-Event-ID`, else `?after=`; none starts live.
fn resume_cursor(
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<Option<ReplayFrom>, ApiError> {
    let header = headers
        .get("last-event-id")
        .map(|value| value.to_str().unwrap_or("\u{0}"));
    let Some(raw) = header.or(query.get("after").map(String::as_str)) else {
        return Ok(None);
    };
    parse_cursor(raw).map(Some).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "Invalid cursor {raw:?}: expected <event id>.<attempt id>"
        ))
    })
}

/// `E.A`: two ids (0 or more).
fn parse_cursor(raw: &str) -> Option<ReplayFrom> {
    let (event, attempt) = raw.split_once('.')?;
    let id = |text: &str| {
        let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        digits.then(|| text.parse::<i64>().ok()).flatten()
    };
    Some(ReplayFrom {
        event: EventId(id(event)?),
        attempt: AttemptId(id(attempt)?),
    })
}

/// Which messages a stream keeps.
#[derive(Debug, Clone, Default)]
struct Filter {
    channel: Option<ChannelId>,
    destination: Option<DestinationId>,
    /// The kinds kept; `None`: all.
    kinds: Option<Vec<&'static str>>,
}

impl Filter {
    fn parse(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let destination = query
            .get("destination")
            .map(|raw| {
                DestinationId::parse(raw).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "Invalid destination {raw:?}: expected 16 hex digits"
                    ))
                })
            })
            .transpose()?;
        let kinds = query.get("kind").map(|raw| parse_kinds(raw)).transpose()?;
        Ok(Self {
            channel: query.get("channel").map(ChannelId::from_raw),
            destination,
            kinds,
        })
    }

    fn keeps(&self, item: &FeedItem) -> bool {
        let kind = self.kinds.as_ref().is_none_or(|k| k.contains(&item.kind()));
        let channel = self
            .channel
            .as_ref()
            .is_none_or(|c| item.channel() == Some(c.as_str()));
        let destination = self
            .destination
            .as_ref()
            .is_none_or(|d| item.destination() == Some(d.as_str()));
        kind && channel && destination
    }
}

/// `event,attempt`: each a known kind.
fn parse_kinds(raw: &str) -> Result<Vec<&'static str>, ApiError> {
    raw.split(',')
        .map(|word| {
            KINDS
                .into_iter()
                .find(|kind| *kind == word.trim())
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "Invalid kind {word:?}: expected a comma list of {}",
                        KINDS.join(", ")
                    ))
                })
        })
        .collect()
}

/// One stream's state: the replay still to send, the live feed, and the cursor told.
struct Reader {
    receiver: broadcast::Receiver<Arc<FeedItem>>,
    filter: Filter,
    /// Replayed messages not yet sent, oldest first, each with the cursor as of it (a
    /// client that leaves mid-replay resumes from what it was told, not past the rest).
    backlog: VecDeque<(FeedItem, ReplayFrom)>,
    /// The ids the replay covered: their live copies are not sent twice.
    replayed_events: HashSet<EventId>,
    replayed_attempts: HashSet<AttemptId>,
    /// The highest event and attempt ids told (or covered by the replay).
    cursor: ReplayFrom,
    shutdown: CancellationToken,
    /// Set once `lagged` was sent: the stream ends.
    ended: bool,
    /// One of the open streams' slots, held until the stream ends.
    _slot: OwnedSemaphorePermit,
}

impl Reader {
    fn new(
        receiver: broadcast::Receiver<Arc<FeedItem>>,
        filter: Filter,
        shutdown: CancellationToken,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        Self {
            receiver,
            filter,
            backlog: VecDeque::new(),
            replayed_events: HashSet::new(),
            replayed_attempts: HashSet::new(),
            cursor: ReplayFrom {
                event: EventId(0),
                attempt: AttemptId(0),
            },
            shutdown,
            ended: false,
            _slot: slot,
        }
    }

    /// Queues what the store holds after the cursor: events and attempts merged by time
    /// (an event before the attempts of its arrival's millisecond), each attempt that ended
    /// its delivery followed by its `delivery` message; the cursor moves past all of it.
    fn queue_replay(&mut self, replay: Replay) {
        let mut events = replay.events.into_iter().peekable();
        let mut attempts = replay.attempts.into_iter().peekable();
        loop {
            let event_first = match (events.peek(), attempts.peek()) {
                (None, None) => break,
                (Some(e), Some(a)) => e.summary.received_at <= a.record.started_at,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            let next = if event_first {
                events.next().map(|e| {
                    self.replayed_events.insert(e.summary.id);
                    (FeedItem::event(&e), None)
                })
            } else {
                attempts.next().map(|a| {
                    self.replayed_attempts.insert(a.id);
                    FeedItem::attempt(&a)
                })
            };
            let Some((item, ended)) = next else { break };
            self.advance(&item);
            for item in std::iter::once(item).chain(ended) {
                if self.filter.keeps(&item) {
                    self.backlog.push_back((item, self.cursor));
                }
            }
        }
    }

    /// The next message to send; `None` ends the stream (stop, lag already told, feed gone).
    async fn next(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        if let Some((item, cursor)) = self.backlog.pop_front() {
            return Some(message(&item, cursor));
        }
        loop {
            let received = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return None,
                received = self.receiver.recv() => received,
            };
            match received {
                Ok(item) if self.is_new(&item) && self.filter.keeps(&item) => {
                    self.advance(&item);
                    return Some(message(&item, self.cursor));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "live stream fell behind; closing it");
                    self.ended = true;
                    return Some(self.lagged());
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Whether a live item was not already sent by the replay.
    fn is_new(&mut self, item: &FeedItem) -> bool {
        if self.replayed_events.is_empty() && self.replayed_attempts.is_empty() {
            return true;
        }
        let seen = match (item.event_id(), item.attempt_id()) {
            (Some(id), _) => self.replayed_events.contains(&id),
            (_, Some(id)) => self.replayed_attempts.contains(&id),
            // A `delivery` message follows its attempt: sent again only if that was.
            _ => false,
        };
        !seen
    }

    fn advance(&mut self, item: &FeedItem) {
        if let Some(id) = item.event_id() {
            self.cursor.event = self.cursor.event.max(id);
        }
        if let Some(id) = item.attempt_id() {
            self.cursor.attempt = self.cursor.attempt.max(id);
        }
    }

    fn lagged(&self) -> Event {
        let resume = serde_json::json!({ "resume": cursor_text(self.cursor) });
        Event::default()
            .id(cursor_text(self.cursor))
            .event("lagged")
            .data(resume.to_string())
    }
}

/// One SSE message: `id: <cursor>`, `event: <kind>`, `data: <JSON>`.
fn message(item: &FeedItem, cursor: ReplayFrom) -> Event {
    Event::default()
        .id(cursor_text(cursor))
        .event(item.kind())
        .data(item.data())
}

fn cursor_text(cursor: ReplayFrom) -> String {
    format!("{}.{}", cursor.event.0, cursor.attempt.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_is_two_ids() {
        let from = parse_cursor("12.345").unwrap();
        assert_eq!((from.event.0, from.attempt.0), (12, 345));
        assert!(parse_cursor("0.0").is_some());
        for bad in [
            "", "12", "12.", ".3", "a.b", "-1.2", "1.2.3", "+1.2", " 1.2",
        ] {
            assert!(parse_cursor(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn kinds_are_checked() {
        assert_eq!(
            parse_kinds("event,attempt").unwrap(),
            vec!["event", "attempt"]
        );
        assert!(parse_kinds("event,bogus").is_err());
        assert!(parse_kinds("").is_err());
    }
}
