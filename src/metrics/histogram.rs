//! The attempt-latency histogram: lock-free storage that `prometheus-client` encodes.
//!
//! The library's `Histogram` takes a mutex on every observation; every attempt of every
//! worker thread observes one, so this one keeps a counter per bucket instead: an attempt
//! costs two relaxed atomic adds (its bucket and the sum) and never waits. The encoder gets
//! the per-bucket counts and makes them cumulative; the count is their sum, so the `+Inf`
//! bucket always equals `_count` even while attempts are being counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds of the attempt-latency buckets, in seconds (`+Inf` follows).
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of durations over [`BUCKETS`]; clones share the counts.
#[derive(Debug, Clone, Default)]
pub(super) struct LatencyHistogram(Arc<Counts>);

/// What a histogram has counted.
#[derive(Debug, Default)]
struct Counts {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of the observations, in microseconds.
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    /// Counts one duration.
    pub(super) fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BUCKETS.len());
        self.0.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.0.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let counts: Vec<u64> = (self.0.buckets.iter())
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let sum = self.0.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        Buckets {
            bounds: &BUCKETS,
            counts: &counts,
            sum,
        }
        .encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A histogram's counts as read at scrape time, for the ones kept outside this module (the
/// store's commit durations): per bucket (not cumulative) over `bounds`, then `+Inf`.
pub(super) struct Buckets<'a> {
    /// Upper bounds of the buckets but the last.
    pub bounds: &'a [f64],
    /// Observations per bucket, one more than `bounds` (the last is `+Inf`).
    pub counts: &'a [u64],
    /// Sum of the observations, in seconds.
    pub sum: f64,
}

impl TypedMetric for Buckets<'_> {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Buckets<'_> {
    /// The count is the buckets' sum, so `+Inf` always equals `_count`.
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(self.counts.iter().copied()).collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}
