//! Prometheus metrics of one running service: counters by kind, a latency histogram, and the
//! queue depth read from the store at scrape time.
//!
//! Hand-rolled on atomics rather than the `metrics` crate's global recorder, so each service
//! instance (and each test's server in one process) counts on its own.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::domain::{AttemptErrorKind, EventKind, Target};
use crate::store::WriteStats;

/// Where an event came in.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// Meta's signed webhook.
    Meta,
    /// The admin API's sandbox endpoints (`…/events`).
    Admin,
    /// The platform itself (partner events such as `channel_created`).
    Platform,
}

const SOURCES: [&str; 3] = ["meta", "admin", "platform"];
const STATE_CHANGES: [&str; 3] = ["degraded", "paused", "recovered"];

/// A destination's state change, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateChange {
    /// Its grade fell below `ok`.
    Degraded = 0,
    /// It was paused.
    Paused = 1,
    /// It is healthy again (resumed, or its grade is back to `ok`).
    Recovered = 2,
}
const KINDS: [&str; 4] = ["whatsapp", "unroutable", "partner", "waba"];
const TARGETS: [&str; 4] = ["primary", "extra", "partner", "waba"];
const OUTCOMES: [&str; 7] = [
    "delivered",
    "http_error",
    "timeout",
    "connect",
    "tls",
    "blocked",
    "io",
];
const FINAL_STATES: [&str; 3] = ["delivered", "failed", "dropped"];
/// Upper bounds of the attempt-latency buckets, in seconds.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How an attempt ended, as counted.
#[derive(Debug, Clone, Copy)]
pub enum AttemptOutcome {
    /// HTTP 200.
    Delivered,
    /// Any other status.
    HttpError,
    /// No status: why.
    Error(AttemptErrorKind),
}

impl AttemptOutcome {
    fn index(self) -> usize {
        match self {
            Self::Delivered => 0,
            Self::HttpError => 1,
            Self::Error(AttemptErrorKind::Timeout) => 2,
            Self::Error(AttemptErrorKind::Connect) => 3,
            Self::Error(AttemptErrorKind::Tls) => 4,
            Self::Error(AttemptErrorKind::Blocked) => 5,
            Self::Error(AttemptErrorKind::Io) => 6,
        }
    }
}

/// How a delivery ended, as counted.
#[derive(Debug, Clone, Copy)]
pub enum FinalState {
    /// 200.
    Delivered,
    /// Given up.
    Failed,
    /// No route.
    Dropped,
}

fn kind_index(kind: EventKind) -> usize {
    match kind {
        EventKind::Whatsapp => 0,
        EventKind::Unroutable => 1,
        EventKind::Partner => 2,
        EventKind::Waba => 3,
    }
}

fn target_index(target: &Target) -> usize {
    match target {
        Target::Primary => 0,
        Target::Extra(_) => 1,
        Target::Partner => 2,
        Target::Waba(_) => 3,
    }
}

/// This node's counters since it started, summed over doors, kinds and targets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    /// Events stored.
    pub events_ingested: u64,
    /// Delivery attempts made.
    pub attempts: u64,
    /// Deliveries answered 200.
    pub delivered: u64,
    /// Deliveries given up after their age window.
    pub failed: u64,
    /// Deliveries without a route.
    pub dropped: u64,
}

/// The service's counters.
#[derive(Default)]
pub struct Metrics {
    events: [[AtomicU64; 4]; 3],
    attempts: [[AtomicU64; 7]; 4],
    finals: [[AtomicU64; 3]; 4],
    deferred: AtomicU64,
    held_deliveries: AtomicI64,
    held_bytes: AtomicI64,
    leases_lost: AtomicU64,
    /// Set while the engine finds the database unavailable (the gauge shows its negation).
    store_down: AtomicBool,
    /// Outages of the database this node saw begin.
    store_outages: AtomicU64,
    destination_changes: [AtomicU64; 3],
    latency_buckets: [AtomicU64; 13],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    /// Counts one stored event by door and kind.
    pub fn event_stored(&self, source: Source, kind: EventKind) {
        self.events[source as usize][kind_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one attempt, by destination kind and outcome, and its duration.
    pub fn attempt(&self, target: &Target, outcome: AttemptOutcome, took: Duration) {
        self.attempts[target_index(target)][outcome.index()].fetch_add(1, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        for (bucket, bound) in self.latency_buckets.iter().zip(BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Counts a delivery reaching a final state.
    pub fn delivery_finished(&self, target: &Target, state: FinalState) {
        self.finals[target_index(target)][state as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a delivery sent back to the store because its destination was saturated.
    pub fn delivery_deferred(&self) {
        self.deferred.fetch_add(1, Ordering::Relaxed);
    }

    /// A delivery entered (`+1`, its memory cost) or left (`-1`, minus it) the engine's
    /// memory: the gauges show how much of `--max-queue-memory-mib` is in use.
    pub fn held_in_memory(&self, deliveries: i64, bytes: i64) {
        self.held_deliveries
            .fetch_add(deliveries, Ordering::Relaxed);
        self.held_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts a destination's state change seen by this node.
    pub fn destination_state_changed(&self, change: StateChange) {
        self.destination_changes[change as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts deliveries whose lease this node lost (found at renewal or refused at settle):
    /// another node claimed them after their lease expired, so this node let them go.
    pub fn leases_lost(&self, count: u64) {
        self.leases_lost.fetch_add(count, Ordering::Relaxed);
    }

    /// The database became unavailable (`false`) or available again (`true`), as the
    /// engine saw it (`delivery/outage.rs`): `switchboard_store_up`.
    pub fn store_up(&self, up: bool) {
        let was_down = self.store_down.swap(!up, Ordering::Relaxed);
        if !up && !was_down {
            self.store_outages.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The totals the console's overview turns into rates: every event stored, every
    /// attempt, and the deliveries that reached each final state.
    pub fn totals(&self) -> Totals {
        let sum = |rows: &[&[AtomicU64]]| -> u64 {
            rows.iter()
                .flat_map(|row| row.iter())
                .map(|counter| counter.load(Ordering::Relaxed))
                .sum()
        };
        let finals = |state: FinalState| -> u64 {
            self.finals
                .iter()
                .map(|row| row[state as usize].load(Ordering::Relaxed))
                .sum()
        };
        Totals {
            events_ingested: sum(&self.events.each_ref().map(|row| row.as_slice())),
            attempts: sum(&self.attempts.each_ref().map(|row| row.as_slice())),
            delivered: finals(FinalState::Delivered),
            failed: finals(FinalState::Failed),
            dropped: finals(FinalState::Dropped),
        }
    }

    /// The Prometheus text exposition, with `queue_depth` pending deliveries, the store's
    /// write counters, and whether its configuration listener is up (when it has one).
    pub fn render(
        &self,
        queue_depth: Option<u64>,
        writes: WriteStats,
        listener_up: Option<bool>,
    ) -> String {
        let mut out = String::with_capacity(8192);
        family(
            &mut out,
            "switchboard_events_ingested_total",
            "counter",
            "Events stored, by door and kind.",
            ("source", &SOURCES),
            ("kind", &KINDS),
            &self.events.each_ref().map(|row| row.as_slice()),
        );
        family(
            &mut out,
            "switchboard_attempts_total",
            "counter",
            "Delivery attempts, by destination kind and outcome.",
            ("target", &TARGETS),
            ("outcome", &OUTCOMES),
            &self.attempts.each_ref().map(|row| row.as_slice()),
        );
        family(
            &mut out,
            "switchboard_deliveries_total",
            "counter",
            "Deliveries that reached a final state, by destination kind.",
            ("target", &TARGETS),
            ("state", &FINAL_STATES),
            &self.finals.each_ref().map(|row| row.as_slice()),
        );
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        header(
            &mut out,
            "switchboard_deliveries_deferred_total",
            "counter",
            "Deliveries sent back to the store because their destination was saturated.",
        );
        let _ = writeln!(
            out,
            "switchboard_deliveries_deferred_total {}",
            load(&self.deferred)
        );
        if let Some(depth) = queue_depth {
            header(
                &mut out,
                "switchboard_queue_depth",
                "gauge",
                "Deliveries pending (due or scheduled).",
            );
            let _ = writeln!(out, "switchboard_queue_depth {depth}");
        }
        self.render_store_up(&mut out);
        for (name, help, gauge) in [
            (
                "switchboard_engine_deliveries_in_memory",
                "Deliveries the engine holds in memory (waiting for a slot or in flight).",
                &self.held_deliveries,
            ),
            (
                "switchboard_engine_memory_bytes",
                "Bytes of --max-queue-memory-mib those deliveries take (payload plus a fixed share).",
                &self.held_bytes,
            ),
        ] {
            header(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {}", gauge.load(Ordering::Relaxed));
        }
        header(
            &mut out,
            "switchboard_leases_lost_total",
            "counter",
            "Deliveries whose lease this node lost to another claim (dropped from memory, outcome not recorded).",
        );
        let lost = load(&self.leases_lost);
        let _ = writeln!(out, "switchboard_leases_lost_total {lost}");
        header(
            &mut out,
            "switchboard_destination_state_changes_total",
            "counter",
            "Destination state changes this node made or saw: degraded (grade), paused, recovered.",
        );
        for (change, counter) in STATE_CHANGES.iter().zip(&self.destination_changes) {
            let _ = writeln!(
                out,
                "switchboard_destination_state_changes_total{{change=\"{change}\"}} {}",
                load(counter)
            );
        }
        if let Some(up) = listener_up {
            header(
                &mut out,
                "switchboard_config_listener_up",
                "gauge",
                "1 while the connection that keeps cached routing coherent across nodes answers; 0 while routing is read uncached.",
            );
            let _ = writeln!(out, "switchboard_config_listener_up {}", u8::from(up));
        }
        render_writes(&mut out, writes);
        self.render_latency(&mut out);
        out
    }

    fn render_store_up(&self, out: &mut String) {
        let up = !self.store_down.load(Ordering::Relaxed);
        header(
            out,
            "switchboard_store_up",
            "gauge",
            "1 while the database answers the engine's writes; 0 during an outage (ingest answers 503, deliveries pause).",
        );
        let _ = writeln!(out, "switchboard_store_up {}", u8::from(up));
        header(
            out,
            "switchboard_store_outages_total",
            "counter",
            "Outages of the database this node saw begin.",
        );
        let outages = self.store_outages.load(Ordering::Relaxed);
        let _ = writeln!(out, "switchboard_store_outages_total {outages}");
    }

    fn render_latency(&self, out: &mut String) {
        let name = "switchboard_attempt_duration_seconds";
        header(out, name, "histogram", "Duration of delivery attempts.");
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", load(bucket));
        }
        let count = load(&self.latency_count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = load(&self.latency_sum_micros) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Writes a counter family with two labels, every combination (zeros included).
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    (first, first_values): (&str, &[&str]),
    (second, second_values): (&str, &[&str]),
    counters: &[&[AtomicU64]],
) {
    header(out, name, kind, help);
    for (a, row) in first_values.iter().zip(counters) {
        for (b, counter) in second_values.iter().zip(row.iter()) {
            let value = counter.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{{first}=\"{a}\",{second}=\"{b}\"}} {value}");
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The store's group-commit counters: writes ÷ commits is the batching factor, and the rate
/// of busy seconds is the writer's utilisation (near 1, the writer is the bottleneck).
fn render_writes(out: &mut String, writes: WriteStats) {
    let counters = [
        (
            "switchboard_store_commits_total",
            "Store transactions committed (each carries a group of writes).",
            writes.commits.to_string(),
        ),
        (
            "switchboard_store_writes_total",
            "Store writes committed; divided by commits, the group-commit factor.",
            writes.writes.to_string(),
        ),
        (
            "switchboard_store_writer_busy_seconds_total",
            "Time the store's writer spent running and committing writes; its rate is the writer's utilisation.",
            writes.busy_seconds.to_string(),
        ),
    ];
    for (name, help, value) in counters {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_counters_and_a_cumulative_histogram() {
        let metrics = Metrics::default();
        for _ in 0..3 {
            metrics.event_stored(Source::Admin, EventKind::Whatsapp);
        }
        metrics.event_stored(Source::Meta, EventKind::Unroutable);
        metrics.attempt(
            &Target::Primary,
            AttemptOutcome::Delivered,
            Duration::from_millis(2),
        );
        metrics.attempt(
            &Target::Partner,
            AttemptOutcome::Error(AttemptErrorKind::Timeout),
            Duration::from_secs(5),
        );
        metrics.delivery_finished(&Target::Partner, FinalState::Dropped);
        let writes = WriteStats {
            commits: 4,
            writes: 10,
            busy_seconds: 0.5,
        };
        metrics.leases_lost(2);
        metrics.store_up(false);
        metrics.store_up(false);
        let text = metrics.render(Some(7), writes, Some(false));
        for line in [
            "switchboard_events_ingested_total{source=\"admin\",kind=\"whatsapp\"} 3",
            "switchboard_events_ingested_total{source=\"meta\",kind=\"unroutable\"} 1",
            "switchboard_events_ingested_total{source=\"platform\",kind=\"partner\"} 0",
            "switchboard_attempts_total{target=\"primary\",outcome=\"delivered\"} 1",
            "switchboard_attempts_total{target=\"partner\",outcome=\"timeout\"} 1",
            "switchboard_deliveries_total{target=\"partner\",state=\"dropped\"} 1",
            "switchboard_queue_depth 7",
            "switchboard_leases_lost_total 2",
            "switchboard_store_up 0",
            "switchboard_store_outages_total 1",
            "switchboard_config_listener_up 0",
            "switchboard_store_commits_total 4",
            "switchboard_store_writes_total 10",
            "switchboard_store_writer_busy_seconds_total 0.5",
            "switchboard_attempt_duration_seconds_bucket{le=\"0.0025\"} 1",
            "switchboard_attempt_duration_seconds_bucket{le=\"5\"} 2",
            "switchboard_attempt_duration_seconds_count 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        metrics.store_up(true);
        let text = metrics.render(None, writes, None);
        assert!(text.lines().any(|l| l == "switchboard_store_up 1"));
        assert!(!text.contains("switchboard_queue_depth"));
    }
}
