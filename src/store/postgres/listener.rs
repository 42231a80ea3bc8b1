//! Cache coherence across nodes: a dedicated connection that `LISTEN`s for configuration
//! writes (any node's) and empties the routing cache when one commits.
//!
//! While the connection is down, [`Listener::is_listening`] is false and the store reads
//! routing from the database instead of the cache; on reconnect the cache starts empty.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::store::cache::ConfigCache;
use crate::store::StoreError;

/// How long to wait before reconnecting a lost listener.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// The running listener; it stops when this is dropped (with its store).
pub struct Listener {
    listening: Arc<AtomicBool>,
    _stop: DropGuard,
}

impl Listener {
    /// Connects, subscribes to `channel`, and keeps `cache` coherent from then on.
    pub async fn start(
        config: tokio_postgres::Config,
        channel: &'static str,
        cache: Arc<ConfigCache>,
    ) -> Result<Self, StoreError> {
        let listening = Arc::new(AtomicBool::new(false));
        let stop = CancellationToken::new();
        let first = subscribe(&config, channel).await.map_err(|e| {
            StoreError::Open(format!("cannot listen for configuration changes: {e}"))
        })?;
        listening.store(true, Ordering::Release);
        tokio::spawn(keep_listening(
            config,
            channel,
            cache,
            Arc::clone(&listening),
            stop.clone(),
            first,
        ));
        Ok(Self {
            listening,
            _stop: stop.drop_guard(),
        })
    }

    /// Whether notifications are arriving, i.e. whether cached routing can be trusted.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }
}

/// A subscribed connection: its notifications arrive on `notified`, which closes when the
/// connection is lost; the client keeps the connection open.
struct Subscription {
    notified: mpsc::UnboundedReceiver<()>,
    _client: tokio_postgres::Client,
}

async fn subscribe(
    config: &tokio_postgres::Config,
    channel: &str,
) -> Result<Subscription, tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (notify, notified) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
            if matches!(message, AsyncMessage::Notification(_)) && notify.send(()).is_err() {
                return;
            }
        }
    });
    client.batch_execute(&format!("LISTEN {channel}")).await?;
    Ok(Subscription {
        notified,
        _client: client,
    })
}

async fn keep_listening(
    config: tokio_postgres::Config,
    channel: &'static str,
    cache: Arc<ConfigCache>,
    listening: Arc<AtomicBool>,
    stop: CancellationToken,
    mut subscription: Subscription,
) {
    loop {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                notified = subscription.notified.recv() => match notified {
                    Some(()) => cache.invalidate(),
                    None => break,
                },
            }
        }
        listening.store(false, Ordering::Release);
        cache.invalidate();
        tracing::warn!(
            "lost the configuration listener; routing is read uncached until it is back"
        );
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(RECONNECT_AFTER) => {}
            }
            if let Ok(next) = subscribe(&config, channel).await {
                subscription = next;
                cache.invalidate();
                listening.store(true, Ordering::Release);
                break;
            }
        }
    }
}
