//! Unit tests of the DNS pool and the guarded resolver, with a stand-in lookup function:
//! nothing here asks a real resolver or sends a packet.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Condvar;
use std::task::Poll;

use tokio::sync::mpsc;

use super::*;

/// A stand-in resolver: names starting with `slow` block until the gate opens; every name
/// resolves to `answer`; each lookup is announced on `started` and counted.
struct StandIn {
    open: Mutex<bool>,
    opened: Condvar,
    calls: AtomicUsize,
    started: mpsc::UnboundedSender<String>,
    answer: Vec<IpAddr>,
}

impl StandIn {
    fn new(answer: &[&str]) -> (Arc<Self>, mpsc::UnboundedReceiver<String>) {
        let (started, announced) = mpsc::unbounded_channel();
        let stand_in = Arc::new(Self {
            open: Mutex::new(false),
            opened: Condvar::new(),
            calls: AtomicUsize::new(0),
            started,
            answer: answer.iter().map(|ip| ip.parse().unwrap()).collect(),
        });
        (stand_in, announced)
    }

    fn lookup(self: &Arc<Self>) -> Box<LookupFn> {
        let stand_in = Arc::clone(self);
        Box::new(move |host: &str| {
            stand_in.calls.fetch_add(1, Ordering::SeqCst);
            let _ = stand_in.started.send(host.to_owned());
            if host.starts_with("slow") {
                let mut open = stand_in.open.lock().unwrap();
                while !*open {
                    open = stand_in.opened.wait(open).unwrap();
                }
            }
            Ok(stand_in.answer.clone())
        })
    }

    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

const LONG: Duration = Duration::from_secs(60);

/// Waits until `count` callers wait for `host`'s (queued or running) lookup.
async fn wait_for_callers(pool: &DnsPool, host: &str, count: usize) {
    while pool.shared.waiting().get(host).map_or(0, Vec::len) < count {
        tokio::task::yield_now().await;
    }
}

/// Polls `future` once: `Some` if it was ready at once.
async fn at_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

#[tokio::test]
async fn a_full_queue_fails_a_lookup_at_once() {
    let (stand_in, mut started) = StandIn::new(&["192.0.2.1"]);
    let pool = Arc::new(DnsPool::start(1, 1, LONG, stand_in.lookup()).unwrap());
    let busy = tokio::spawn({
        let pool = Arc::clone(&pool);
        async move { pool.lookup("slow-a").await }
    });
    assert_eq!(
        started.recv().await.unwrap(),
        "slow-a",
        "the thread is busy"
    );
    let queued = tokio::spawn({
        let pool = Arc::clone(&pool);
        async move { pool.lookup("slow-b").await }
    });
    wait_for_callers(&pool, "slow-b", 1).await; // it holds the queue's only place
    let refused = at_once(pool.lookup("slow-c")).await;
    assert_eq!(
        refused,
        Some(Err(LookupError::QueueFull("slow-c".into()))),
        "refused on the first poll, without waiting"
    );
    stand_in.release();
    assert!(busy.await.unwrap().is_ok());
    assert!(queued.await.unwrap().is_ok());
}

#[tokio::test]
async fn a_slow_name_holds_one_thread_and_other_names_resolve() {
    let (stand_in, mut started) = StandIn::new(&["192.0.2.1"]);
    let pool = Arc::new(DnsPool::start(2, 8, LONG, stand_in.lookup()).unwrap());
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let pool = Arc::clone(&pool);
        slow.spawn(async move { pool.lookup("slow.example").await });
    }
    assert_eq!(started.recv().await.unwrap(), "slow.example");
    wait_for_callers(&pool, "slow.example", 3).await;
    for name in ["a.example", "b.example", "c.example"] {
        let addresses = pool.lookup(name).await.unwrap();
        assert_eq!(&addresses[..], &["192.0.2.1".parse::<IpAddr>().unwrap()]);
    }
    stand_in.release();
    for answer in slow.join_all().await {
        assert!(answer.is_ok(), "{answer:?}");
    }
    assert_eq!(
        stand_in.calls.load(Ordering::SeqCst),
        4,
        "three callers of one name share one lookup"
    );
}

#[tokio::test]
async fn a_lookup_gives_up_after_its_timeout() {
    let (stand_in, mut started) = StandIn::new(&["192.0.2.1"]);
    let pool = DnsPool::start(2, 8, Duration::from_millis(50), stand_in.lookup()).unwrap();
    assert_eq!(
        pool.lookup("slow.example").await,
        Err(LookupError::Timeout("slow.example".into(), 50))
    );
    assert_eq!(started.recv().await.unwrap(), "slow.example");
    assert!(
        pool.lookup("fast.example").await.is_ok(),
        "the other thread"
    );
    stand_in.release();
}

#[test]
fn stuck_lookups_leave_tokios_blocking_pool_free() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let (stand_in, mut started) = StandIn::new(&["192.0.2.1"]);
    runtime.block_on(async {
        let pool = Arc::new(DnsPool::start(2, 8, LONG, stand_in.lookup()).unwrap());
        let mut stuck = tokio::task::JoinSet::new();
        for name in ["slow-1", "slow-2", "slow-3"] {
            let pool = Arc::clone(&pool);
            stuck.spawn(async move { pool.lookup(name).await });
        }
        started.recv().await.unwrap();
        started.recv().await.unwrap(); // both DNS threads are stuck, a third name waits
                                       // What every SQLite read does: it still gets the (only) blocking thread.
        let read = tokio::task::spawn_blocking(|| "row").await.unwrap();
        assert_eq!(read, "row");
        stand_in.release();
        stuck.join_all().await;
    });
}

async fn resolve(resolver: &GuardedResolver, host: &str) -> Result<Vec<IpAddr>, String> {
    match resolver.addresses(host).await {
        Ok(addresses) => Ok(addresses.iter().map(|address| address.ip()).collect()),
        Err(error) => Err(error.to_string()),
    }
}

#[tokio::test]
async fn the_resolver_keeps_only_the_addresses_the_policy_allows() {
    let (stand_in, _started) =
        StandIn::new(&["10.0.0.1", "127.0.0.1", "0.0.0.0", "::1", "fe80::1"]);
    let pool = Arc::new(DnsPool::start(1, 8, LONG, stand_in.lookup()).unwrap());
    let dev = GuardedResolver::new(
        Arc::clone(&pool),
        AddressPolicy {
            allow_loopback: true,
        },
    );
    let loopback: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
    assert_eq!(resolve(&dev, "receiver.test").await, Ok(loopback));
    let production = GuardedResolver::new(pool, AddressPolicy::default());
    assert_eq!(
        resolve(&production, "receiver.test").await,
        Err(
            "receiver.test resolves only to internal addresses, which deliveries may not reach"
                .into()
        )
    );
}

#[tokio::test]
async fn dev_mode_refuses_a_name_with_only_internal_addresses() {
    let (stand_in, _started) = StandIn::new(&["0.0.0.0", "192.168.1.1", "fd00::1"]);
    let pool = Arc::new(DnsPool::start(1, 8, LONG, stand_in.lookup()).unwrap());
    let dev = GuardedResolver::new(
        pool,
        AddressPolicy {
            allow_loopback: true,
        },
    );
    assert!(resolve(&dev, "rebind.test").await.is_err());
}
