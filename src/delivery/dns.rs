//! Name resolution for attempts, on threads of its own, and the address guard on its answers.
//!
//! The system resolver (`getaddrinfo`) blocks its thread, for as long as a domain's name
//! servers take to answer or not. Run on tokio's blocking pool, which every SQLite read also
//! uses, a domain whose DNS never answers could take every blocking thread and stall key
//! lookups for every tenant. So lookups run on a small fixed pool of their own, fed by a
//! bounded queue: a full queue fails a lookup at once, and every lookup gives up after its
//! timeout, whatever its thread is still waiting for.
//!
//! Concurrent lookups of one name share one job, so a burst of new connections to one
//! destination costs one lookup, and a name that never answers holds one thread, not all.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::dns::Name;
use tokio::sync::oneshot;
use tower_service::Service;

use crate::domain::AddressPolicy;

/// Threads that run lookups: enough for a few slow names at once, few enough to stay cheap.
pub const DNS_THREADS: usize = 8;

/// Names waiting for a thread at most; beyond, a lookup fails at once.
pub const DNS_QUEUE: usize = 256;

/// The longest a lookup may take, however long the attempt's own budget is.
pub const MAX_LOOKUP_TIME: Duration = Duration::from_secs(3);

/// The blocking lookup a pool thread runs: the system resolver, or a stand-in in tests.
pub type LookupFn = dyn Fn(&str) -> std::io::Result<Vec<IpAddr>> + Send + Sync;

/// Why a name has no addresses to connect to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Every thread is busy and the queue is full: refused at once rather than waiting.
    #[error("cannot resolve {0}: {DNS_QUEUE} names are already waiting for a DNS answer")]
    QueueFull(String),
    /// No answer within the lookup timeout.
    #[error("cannot resolve {0}: no DNS answer within {1} ms")]
    Timeout(String, u128),
    /// The resolver answered with an error.
    #[error("cannot resolve {0}: {1}")]
    Failed(String, String),
    /// The pool is shutting down.
    #[error("cannot resolve {0}: the DNS threads have stopped")]
    Stopped(String),
    /// The name resolves, but only to addresses the guard refuses.
    #[error("{0} resolves only to internal addresses, which deliveries may not reach")]
    Blocked(String),
}

type Answer = Result<Arc<[IpAddr]>, LookupError>;

/// A fixed set of lookup threads behind a bounded queue of names.
pub struct DnsPool {
    queue: SyncSender<String>,
    shared: Arc<Shared>,
    timeout: Duration,
}

/// What the pool's threads share with the callers.
struct Shared {
    /// Callers waiting for each name queued or being looked up (one job per name).
    waiting: Mutex<HashMap<String, Vec<oneshot::Sender<Answer>>>>,
    lookup: Box<LookupFn>,
}

impl DnsPool {
    /// The system resolver on [`DNS_THREADS`] threads; each lookup gives up after `timeout`.
    pub fn system(timeout: Duration) -> std::io::Result<Self> {
        Self::start(DNS_THREADS, DNS_QUEUE, timeout, Box::new(system_lookup))
    }

    /// `threads` threads running `lookup`, with `queue` names waiting at most.
    pub fn start(
        threads: usize,
        queue: usize,
        timeout: Duration,
        lookup: Box<LookupFn>,
    ) -> std::io::Result<Self> {
        let (sender, receiver) = mpsc::sync_channel(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        let shared = Arc::new(Shared {
            waiting: Mutex::default(),
            lookup,
        });
        for n in 0..threads {
            let (receiver, shared) = (Arc::clone(&receiver), Arc::clone(&shared));
            std::thread::Builder::new()
                .name(format!("switchboard-dns-{n}"))
                .spawn(move || run_lookups(&receiver, &shared))?;
        }
        Ok(Self {
            queue: sender,
            shared,
            timeout,
        })
    }

    /// The addresses of `host`, or why there are none, within the pool's timeout.
    pub async fn lookup(&self, host: &str) -> Result<Arc<[IpAddr]>, LookupError> {
        let (reply, answer) = oneshot::channel();
        {
            let mut waiting = self.shared.waiting();
            if let Some(callers) = waiting.get_mut(host) {
                callers.retain(|caller| !caller.is_closed());
                callers.push(reply);
            } else {
                match self.queue.try_send(host.to_owned()) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => return Err(LookupError::QueueFull(host.into())),
                    Err(TrySendError::Disconnected(_)) => {
                        return Err(LookupError::Stopped(host.into()))
                    }
                }
                waiting.insert(host.to_owned(), vec![reply]);
            }
        }
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(LookupError::Stopped(host.into())),
            Err(_) => Err(LookupError::Timeout(host.into(), self.timeout.as_millis())),
        }
    }
}

impl Shared {
    fn waiting(&self) -> MutexGuard<'_, HashMap<String, Vec<oneshot::Sender<Answer>>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One pool thread: takes the next name, looks it up unless every caller gave up, answers
/// every caller of that name. Ends when the pool is dropped.
fn run_lookups(receiver: &Mutex<Receiver<String>>, shared: &Shared) {
    loop {
        let next = receiver.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(host) = next else { return };
        {
            let mut waiting = shared.waiting();
            let abandoned = waiting
                .get(&host)
                .is_none_or(|callers| callers.iter().all(oneshot::Sender::is_closed));
            if abandoned {
                waiting.remove(&host);
                continue;
            }
        }
        let answer: Answer = match (shared.lookup)(&host) {
            Ok(addresses) => Ok(addresses.into()),
            Err(error) => Err(LookupError::Failed(host.clone(), error.to_string())),
        };
        let callers = shared.waiting().remove(&host).unwrap_or_default();
        for caller in callers {
            let _ = caller.send(answer.clone());
        }
    }
}

/// `getaddrinfo`, through the standard library.
fn system_lookup(host: &str) -> std::io::Result<Vec<IpAddr>> {
    Ok((host, 0)
        .to_socket_addrs()?
        .map(|address| address.ip())
        .collect())
}

/// The resolver of the delivery client: the pool's answers, minus the addresses the policy
/// refuses, so the guard applies to the address actually connected to.
#[derive(Clone)]
pub struct GuardedResolver {
    pool: Arc<DnsPool>,
    policy: AddressPolicy,
}

impl GuardedResolver {
    /// Resolves on `pool`, keeping only the addresses `policy` allows.
    pub fn new(pool: Arc<DnsPool>, policy: AddressPolicy) -> Self {
        Self { pool, policy }
    }

    /// The addresses of `host` the policy allows (port 0: the connector sets the URL's), or
    /// why there are none.
    pub async fn addresses(&self, host: &str) -> Result<Vec<SocketAddr>, LookupError> {
        let allowed: Vec<SocketAddr> = self
            .pool
            .lookup(host)
            .await?
            .iter()
            .filter(|ip| self.policy.allows(**ip))
            .map(|ip| SocketAddr::new(*ip, 0))
            .collect();
        if allowed.is_empty() {
            return Err(LookupError::Blocked(host.to_owned()));
        }
        Ok(allowed)
    }
}

/// The resolver as hyper's connector calls it: always ready, one lookup per name.
impl Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = LookupError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, LookupError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), LookupError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolver = self.clone();
        Box::pin(async move { Ok(resolver.addresses(name.as_str()).await?.into_iter()) })
    }
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
