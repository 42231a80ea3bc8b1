//! Cache coherence across nodes: a dedicated connection that `LISTEN`s for configuration
//! writes (any node's) and empties the routing cache when one commits.
//!
//! The cache may only be trusted while notifications are known to arrive, so the listener
//! also checks that its connection is alive: a `SELECT 1` round trip on it every
//! [`PING_EVERY`]. A round trip proves that every notification committed before it started
//! has been received (the server sends pending notifications before it answers a query), so
//! the cache is trusted for [`FRESH_FOR`] after the start of the last one that answered:
//! with a stalled backend (it answers nothing, so no notification arrives either) the store
//! stops using the cache within that time. A round trip without an answer within
//! [`PING_TIMEOUT`], or a dead connection (closed, or found dead by TCP keepalives), drops
//! the connection: [`Listener::is_listening`] is false, routing is read from the database,
//! and a new connection is tried every [`RECONNECT_AFTER`]; once it is subscribed the cache
//! starts again empty. It connects like the pool, with the same TLS ([`Target`]).

use std::future::poll_fn;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::connect::Target;
use crate::store::cache::ConfigCache;
use crate::store::StoreError;

/// How long to wait before reconnecting a lost listener.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// How often the listener's connection is checked with a round trip.
const PING_EVERY: Duration = Duration::from_secs(1);

/// How long a round trip may take before the connection counts as stalled: a healthy one
/// answers in milliseconds, so this only has to ride out a busy server.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// How long after the start of its last answered round trip the cache is trusted: one
/// interval and some slack for the round trip itself.
const FRESH_FOR: Duration = Duration::from_millis(1_500);

/// Longest a (re)connection and its `LISTEN` may take, whatever the connect timeout.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The running listener; it stops when this is dropped (with its store).
pub struct Listener {
    fresh: Arc<Freshness>,
    _stop: DropGuard,
}

/// Until when (ms since the epoch) notifications are known to arrive; 0 while the
/// connection is down.
#[derive(Default)]
struct Freshness(AtomicI64);

impl Freshness {
    /// Every notification committed before `started` (ms) has been received.
    fn proven_at(&self, started: i64) {
        let until = started + FRESH_FOR.as_millis() as i64;
        self.0.fetch_max(until, Ordering::AcqRel);
    }

    fn lost(&self) {
        self.0.store(0, Ordering::Release);
    }

    fn is_fresh(&self) -> bool {
        crate::clock::now_ms() < self.0.load(Ordering::Acquire)
    }
}

impl Listener {
    /// Connects, subscribes to `channel`, and keeps `cache` coherent from then on.
    pub async fn start(
        mut target: Target,
        channel: &'static str,
        cache: Arc<ConfigCache>,
    ) -> Result<Self, StoreError> {
        let name = target
            .config
            .get_application_name()
            .unwrap_or("switchboard");
        target.config.application_name(format!("{name} listener"));
        let fresh = Arc::new(Freshness::default());
        let stop = CancellationToken::new();
        let started = crate::clock::now_ms();
        let first = subscribe(&target, channel).await.map_err(|e| {
            let cause = crate::error_chain(&*e);
            StoreError::Open(format!("cannot listen for configuration changes: {cause}"))
        })?;
        fresh.proven_at(started);
        let watch = Watch {
            target,
            channel,
            cache,
            fresh: Arc::clone(&fresh),
            stop: stop.clone(),
        };
        tokio::spawn(watch.keep_listening(first));
        Ok(Self {
            fresh,
            _stop: stop.drop_guard(),
        })
    }

    /// Whether notifications are known to arrive, i.e. whether cached routing can be
    /// trusted: the connection is up and answered a round trip lately.
    pub fn is_listening(&self) -> bool {
        self.fresh.is_fresh()
    }
}

/// A subscribed connection: its notifications arrive on `notified`, which closes when the
/// connection is lost. Dropping it closes the connection at once, even a stalled one (the
/// task that drives it is aborted).
struct Subscription {
    notified: mpsc::UnboundedReceiver<()>,
    client: tokio_postgres::Client,
    connection: JoinHandle<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

async fn subscribe(
    target: &Target,
    channel: &str,
) -> Result<Subscription, Box<dyn std::error::Error + Send + Sync>> {
    let connect = async {
        let (client, mut connection) = target.config.connect(target.tls.clone()).await?;
        let (notify, notified) = mpsc::unbounded_channel();
        let connection = tokio::spawn(async move {
            while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
                if matches!(message, AsyncMessage::Notification(_)) && notify.send(()).is_err() {
                    return;
                }
            }
        });
        let subscription = Subscription {
            notified,
            client,
            connection,
        };
        let listen = format!("LISTEN {channel}");
        subscription.client.batch_execute(&listen).await?;
        Ok::<_, tokio_postgres::Error>(subscription)
    };
    Ok(tokio::time::timeout(SUBSCRIBE_TIMEOUT, connect).await??)
}

/// Why a subscription ended.
enum Lost {
    /// The store is closing.
    Stopped,
    /// The connection closed or failed.
    Dead(String),
    /// A round trip got no answer in time.
    Stalled,
}

/// What the listener task works with.
struct Watch {
    target: Target,
    channel: &'static str,
    cache: Arc<ConfigCache>,
    fresh: Arc<Freshness>,
    stop: CancellationToken,
}

impl Watch {
    /// Listens on `subscription`, and after each loss reconnects, until the store closes.
    async fn keep_listening(self, mut subscription: Subscription) {
        loop {
            let lost = self.watch(&mut subscription).await;
            self.fresh.lost();
            self.cache.invalidate();
            drop(subscription);
            match lost {
                Lost::Stopped => return,
                Lost::Dead(error) => tracing::warn!(
                    %error,
                    "configuration listener lost; routing is read uncached until it is back"
                ),
                Lost::Stalled => tracing::warn!(
                    timeout_ms = PING_TIMEOUT.as_millis() as u64,
                    "configuration listener stalled (no answer to its round trip); routing is \
                     read uncached until it is back"
                ),
            }
            let Some((next, started)) = self.reconnect().await else {
                return;
            };
            subscription = next;
            self.cache.invalidate();
            self.fresh.proven_at(started);
            tracing::warn!("configuration listener back; routing is cached again");
        }
    }

    /// Empties the cache at each notification and checks the connection every
    /// [`PING_EVERY`]; returns when the connection is lost or the store closes.
    async fn watch(&self, subscription: &mut Subscription) -> Lost {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return Lost::Stopped,
                notified = subscription.notified.recv() => match notified {
                    Some(()) => self.cache.invalidate(),
                    None => return Lost::Dead("the connection closed".into()),
                },
                _ = ping.tick() => {
                    let started = crate::clock::now_ms();
                    let round_trip = subscription.client.simple_query("SELECT 1");
                    match tokio::time::timeout(PING_TIMEOUT, round_trip).await {
                        Ok(Ok(_)) => self.fresh.proven_at(started),
                        Ok(Err(error)) => return Lost::Dead(error.to_string()),
                        Err(_) => return Lost::Stalled,
                    }
                }
            }
        }
    }

    /// A new subscription, tried every [`RECONNECT_AFTER`], and when it was started;
    /// `None` once the store closes.
    async fn reconnect(&self) -> Option<(Subscription, i64)> {
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return None,
                () = tokio::time::sleep(RECONNECT_AFTER) => {}
            }
            let started = crate::clock::now_ms();
            match subscribe(&self.target, self.channel).await {
                Ok(next) => return Some((next, started)),
                Err(error) => {
                    let error = crate::error_chain(&*error);
                    tracing::debug!(%error, "configuration listener: reconnect failed");
                }
            }
        }
    }
}
