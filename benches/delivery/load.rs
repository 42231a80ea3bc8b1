//! The load generators (closed and open loop) and latency percentiles.

#[allow(unused_imports)]
use super::*;

/// A closed-loop run: C senders, each sending its next event when the previous was answered.
pub(crate) struct ClosedLoop {
    pub(crate) start: Instant,
    pub(crate) sent: usize,
    pub(crate) acked: usize,
    pub(crate) errors: usize,
    pub(crate) elapsed: Duration,
    pub(crate) last_ack: Instant,
    /// Send → acknowledgement, µs.
    pub(crate) latency: Percentiles,
}

impl ClosedLoop {
    pub(crate) fn rate(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64()
    }
}

pub(crate) async fn closed_loop(
    target: &Endpoint,
    tracker: &Tracker,
    base: u64,
    s: &Settings,
) -> ClosedLoop {
    let sent_at = tracker.begin(base, s.events);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let stop_at = start + s.max_send;
    let mut senders = JoinSet::new();
    for _ in 0..s.concurrency {
        let (next, sent_at, events) = (Arc::clone(&next), Arc::clone(&sent_at), s.events);
        let target = target.clone();
        let epoch = tracker.epoch;
        senders.spawn(async move {
            let mut latencies = Vec::new();
            let (mut errors, mut last) = (0, start);
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= events || Instant::now() >= stop_at {
                    return (latencies, errors, last);
                }
                let sent = Instant::now();
                let stamp = sent.saturating_duration_since(epoch).as_nanos() as u64 + 1;
                sent_at[index].store(stamp, Ordering::Release);
                let ok = target.post(base + index as u64).await;
                last = Instant::now();
                latencies.push((last - sent).as_micros() as u64);
                errors += usize::from(!ok);
            }
        });
    }
    let (mut latencies, mut errors, mut last_ack) = (Vec::with_capacity(s.events), 0, start);
    while let Some(Ok((mine, my_errors, my_last))) = senders.join_next().await {
        latencies.extend(mine);
        errors += my_errors;
        last_ack = last_ack.max(my_last);
    }
    ClosedLoop {
        start,
        sent: latencies.len(),
        acked: latencies.len() - errors,
        errors,
        elapsed: last_ack - start,
        last_ack,
        latency: Percentiles::of(&mut latencies),
    }
}

/// An open-loop run: sends scheduled at fixed intervals whatever the answers do, each timed
/// from its scheduled instant, so a stall shows up in every send it delays.
pub(crate) struct OpenLoop {
    /// The first scheduled send.
    pub(crate) start: Instant,
    pub(crate) sent: usize,
    pub(crate) acked: usize,
    pub(crate) errors: usize,
    pub(crate) last_scheduled: Instant,
    /// When the last answer came (the start if none did).
    pub(crate) last_ack: Instant,
    /// How late the generator itself fired a send, at worst.
    pub(crate) worst_fire_lag: Duration,
    /// Scheduled send → acknowledgement, µs.
    pub(crate) latency: Percentiles,
}

pub(crate) async fn open_loop(
    target: &Endpoint,
    tracker: &Tracker,
    base: u64,
    s: &Settings,
) -> OpenLoop {
    let n = (s.rate * s.paced_seconds) as usize;
    let sent_at = tracker.begin(base, n);
    let interval = Duration::from_secs_f64(1.0 / s.rate as f64);
    let in_flight = Arc::new(Semaphore::new(s.paced_concurrency));
    let target = Arc::new(target.clone());
    let start = Instant::now() + Duration::from_millis(20);
    let (mut sends, mut worst_fire_lag) = (JoinSet::new(), Duration::ZERO);
    for index in 0..n {
        let at = start + interval.mul_f64(index as f64);
        tokio::time::sleep_until(at.into()).await;
        worst_fire_lag = worst_fire_lag.max(Instant::now().saturating_duration_since(at));
        sent_at[index].store(tracker.stamp(at), Ordering::Release);
        let (target, in_flight) = (Arc::clone(&target), Arc::clone(&in_flight));
        sends.spawn(async move {
            let _slot = in_flight.acquire_owned().await;
            let ok = target.post(base + index as u64).await;
            let done = Instant::now();
            (
                done.saturating_duration_since(at).as_micros() as u64,
                ok,
                done,
            )
        });
    }
    let (mut latencies, mut errors, mut last_ack) = (Vec::with_capacity(n), 0, start);
    while let Some(Ok((latency, ok, done))) = sends.join_next().await {
        latencies.push(latency);
        errors += usize::from(!ok);
        last_ack = last_ack.max(done);
    }
    OpenLoop {
        start,
        sent: latencies.len(),
        acked: latencies.len() - errors,
        errors,
        last_scheduled: start + interval.mul_f64(n.saturating_sub(1) as f64),
        last_ack,
        worst_fire_lag,
        latency: Percentiles::of(&mut latencies),
    }
}

/// p50, p99 and max of a sample in µs (nearest rank).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Percentiles {
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) max: u64,
}

impl Percentiles {
    pub(crate) fn of(sample: &mut [u64]) -> Self {
        sample.sort_unstable();
        let rank = |p: usize| {
            let index = (sample.len() * p).div_ceil(100).saturating_sub(1);
            sample.get(index).copied().unwrap_or(0)
        };
        Self {
            p50: rank(50),
            p99: rank(99),
            max: sample.last().copied().unwrap_or(0),
        }
    }

    pub(crate) fn show(&self) -> String {
        format!("{} / {} / {}", ms(self.p50), ms(self.p99), ms(self.max))
    }
}

pub(crate) fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1_000.0)
}
