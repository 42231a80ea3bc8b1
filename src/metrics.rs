//! Prometheus metrics of one running service: counters, a latency histogram, and the
//! queue depth read from the store at scrape time.
//!
//! Hand-rolled on atomics rather than the `metrics` crate's global recorder, so each service
//! instance (and each test's server in one process) counts on its own.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::domain::AttemptErrorKind;

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
const ATTEMPT_OUTCOMES: [&str; 7] = [
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

/// The service's counters.
#[derive(Default)]
pub struct Metrics {
    events: [AtomicU64; 3],
    unroutable: AtomicU64,
    attempts: [AtomicU64; 7],
    finals: [AtomicU64; 3],
    deferred: AtomicU64,
    latency_buckets: [AtomicU64; 13],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    /// Counts accepted events.
    pub fn events_ingested(&self, source: Source, count: usize) {
        self.events[source as usize].fetch_add(count as u64, Ordering::Relaxed);
    }

    /// Counts events for unknown numbers (kept, not delivered).
    pub fn events_unroutable(&self, count: usize) {
        self.unroutable.fetch_add(count as u64, Ordering::Relaxed);
    }

    /// Counts one attempt and its duration.
    pub fn attempt(&self, outcome: AttemptOutcome, took: Duration) {
        let index = match outcome {
            AttemptOutcome::Delivered => 0,
            AttemptOutcome::HttpError => 1,
            AttemptOutcome::Error(kind) => match kind {
                AttemptErrorKind::Timeout => 2,
                AttemptErrorKind::Connect => 3,
                AttemptErrorKind::Tls => 4,
                AttemptErrorKind::Blocked => 5,
                AttemptErrorKind::Io => 6,
            },
        };
        self.attempts[index].fetch_add(1, Ordering::Relaxed);
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
    pub fn delivery_finished(&self, state: FinalState) {
        self.finals[state as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a delivery sent back to the store because its destination was saturated.
    pub fn delivery_deferred(&self) {
        self.deferred.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition, with `queue_depth` pending deliveries.
    pub fn render(&self, queue_depth: u64) -> String {
        let mut out = String::with_capacity(4096);
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        header(
            &mut out,
            "switchboard_events_ingested_total",
            "counter",
            "Events accepted, by door.",
        );
        for (name, counter) in SOURCES.iter().zip(&self.events) {
            let _ = writeln!(
                out,
                "switchboard_events_ingested_total{{source=\"{name}\"}} {}",
                load(counter)
            );
        }
        header(
            &mut out,
            "switchboard_events_unroutable_total",
            "counter",
            "Events for a phone_number_id no channel has.",
        );
        let _ = writeln!(
            out,
            "switchboard_events_unroutable_total {}",
            load(&self.unroutable)
        );
        header(
            &mut out,
            "switchboard_attempts_total",
            "counter",
            "Delivery attempts, by outcome.",
        );
        for (name, counter) in ATTEMPT_OUTCOMES.iter().zip(&self.attempts) {
            let _ = writeln!(
                out,
                "switchboard_attempts_total{{outcome=\"{name}\"}} {}",
                load(counter)
            );
        }
        header(
            &mut out,
            "switchboard_deliveries_total",
            "counter",
            "Deliveries that reached a final state.",
        );
        for (name, counter) in FINAL_STATES.iter().zip(&self.finals) {
            let _ = writeln!(
                out,
                "switchboard_deliveries_total{{state=\"{name}\"}} {}",
                load(counter)
            );
        }
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
        header(
            &mut out,
            "switchboard_queue_depth",
            "gauge",
            "Deliveries pending (due or scheduled).",
        );
        let _ = writeln!(out, "switchboard_queue_depth {queue_depth}");
        header(
            &mut out,
            "switchboard_attempt_duration_seconds",
            "histogram",
            "Duration of delivery attempts.",
        );
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                out,
                "switchboard_attempt_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                load(bucket)
            );
        }
        let count = load(&self.latency_count);
        let _ = writeln!(
            out,
            "switchboard_attempt_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = load(&self.latency_sum_micros) as f64 / 1e6;
        let _ = writeln!(out, "switchboard_attempt_duration_seconds_sum {sum}");
        let _ = writeln!(out, "switchboard_attempt_duration_seconds_count {count}");
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let metrics = Metrics::default();
        metrics.events_ingested(Source::Admin, 3);
        metrics.attempt(AttemptOutcome::Delivered, Duration::from_millis(2));
        metrics.attempt(
            AttemptOutcome::Error(AttemptErrorKind::Timeout),
            Duration::from_secs(5),
        );
        metrics.delivery_finished(FinalState::Dropped);
        let text = metrics.render(7);
        assert!(text.contains("switchboard_events_ingested_total{source=\"admin\"} 3"));
        assert!(text.contains("switchboard_attempts_total{outcome=\"timeout\"} 1"));
        assert!(text.contains("switchboard_deliveries_total{state=\"dropped\"} 1"));
        assert!(text.contains("switchboard_queue_depth 7"));
        assert!(text.contains("switchboard_attempt_duration_seconds_bucket{le=\"0.0025\"} 1"));
        assert!(text.contains("switchboard_attempt_duration_seconds_bucket{le=\"5\"} 2"));
        assert!(text.contains("switchboard_attempt_duration_seconds_count 2"));
    }
}
