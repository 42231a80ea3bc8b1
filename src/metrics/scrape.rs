//! What `/metrics` reads at scrape time (the queue depth and the per-destination figures
//! from the store and the engine, the store's write counters), handed over as one [`Scrape`]
//! that `prometheus-client` encodes as a collector; and which exposition format to serve.
//!
//! The reads are async (the store), a collector is not: the handler reads first, then
//! encodes this snapshot, so a scrape always shows fresh figures and the hot path never
//! pays for them.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::histogram::Buckets;
use crate::store::{WriteStats, COMMIT_BUCKETS};

/// The exposition formats a scraper can ask for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (what Prometheus asks for first, and the default).
    OpenMetrics,
    /// The Prometheus text format 0.0.4, for scrapers that ask for `text/plain` only.
    Text,
}

impl Format {
    /// The format an `Accept` header prefers: OpenMetrics unless `text/plain` is asked for
    /// with a higher quality (no header, `*/*` or a tie: OpenMetrics).
    pub fn negotiate(accept: Option<&str>) -> Self {
        let quality = |wanted: &str| -> f32 {
            accept
                .unwrap_or_default()
                .split(',')
                .filter_map(|range| {
                    let mut parts = range.split(';').map(str::trim);
                    let media = parts.next()?;
                    media.eq_ignore_ascii_case(wanted).then(|| {
                        parts
                            .find_map(|p| p.strip_prefix("q="))
                            .and_then(|q| q.parse().ok())
                            .unwrap_or(1.0)
                    })
                })
                .fold(0.0, f32::max)
        };
        if quality("text/plain") > quality("application/openmetrics-text") {
            Self::Text
        } else {
            Self::OpenMetrics
        }
    }

    /// The `Content-Type` of an exposition in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// One destination's backlog and pause state (every configured or attempted destination).
#[derive(Debug, Clone)]
pub struct DestinationRow {
    /// The destination id (bounded: scheme, host, port and path; no query).
    pub id: String,
    /// Deliveries pending for it.
    pub backlog: u64,
    /// Whether it is paused.
    pub paused: bool,
    /// How long its oldest pending delivery has waited (0: none).
    pub oldest_waiting_seconds: u64,
}

/// One destination's figures over one window of its recent attempts.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowRow {
    /// Attempts in the window.
    pub attempts: u64,
    /// Share answered 200.
    pub success_ratio: f64,
    /// Share that took longer than 1 s.
    pub over_1s_ratio: f64,
    /// Latency quantiles 0.5, 0.9 and 0.99, in seconds (bucket upper bounds).
    pub latency_seconds: [f64; 3],
}

/// The health of a destination this node attempted lately.
#[derive(Debug, Clone)]
pub struct HealthRow {
    /// The destination id.
    pub id: String,
    /// The last 5 minutes, then the last hour.
    pub windows: [WindowRow; 2],
    /// Every grade's name, and whether it is the destination's.
    pub grades: Vec<(&'static str, bool)>,
}

/// The figures read at scrape time, encoded after the counters.
#[derive(Debug, Default)]
pub struct Scrape {
    /// Deliveries pending, all nodes; `None` when the store did not answer.
    pub queue_depth: Option<u64>,
    /// The store's write path since it opened.
    pub writes: WriteStats,
    /// PostgreSQL's configuration listener; `None` for a store without one.
    pub listener_up: Option<bool>,
    /// Per destination (empty when the store did not answer).
    pub destinations: Vec<DestinationRow>,
    /// Per destination attempted lately.
    pub health: Vec<HealthRow>,
}

const WINDOWS: [&str; 2] = ["5m", "1h"];
const QUANTILES: [&str; 3] = ["0.5", "0.9", "0.99"];

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let e = &mut encoder;
        if let Some(depth) = self.queue_depth {
            let help = "Deliveries pending (due or scheduled), all nodes.";
            single(e, ("queue_depth", help, None), ConstGauge::new(depth))?;
        }
        if let Some(up) = self.listener_up {
            let help = "1 while the connection that keeps cached routing coherent across nodes answers; 0 while routing is read uncached.";
            let up = ConstGauge::new(u64::from(up));
            single(e, ("config_listener_up", help, None), up)?;
        }
        self.encode_writes(e)?;
        self.encode_destinations(e)?;
        self.encode_health(e)
    }
}

impl Scrape {
    /// The store's group-commit counters: writes ÷ commits is the batching factor, and the
    /// rate of busy seconds is the writer's utilisation (near 1, the writer is the
    /// bottleneck).
    fn encode_writes(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let WriteStats {
            commits,
            writes,
            busy_seconds,
            commit_buckets,
            commit_seconds,
        } = self.writes;
        let help = "Store transactions committed (each carries a group of writes).";
        single(e, ("store_commits", help, None), ConstCounter::new(commits))?;
        let help = "Store writes committed; divided by commits, the group-commit factor.";
        single(e, ("store_writes", help, None), ConstCounter::new(writes))?;
        let help = "Time the store's writer spent running and committing writes; its rate is the writer's utilisation.";
        let busy = ConstCounter::new(busy_seconds);
        single(e, ("store_writer_busy", help, Some(&Unit::Seconds)), busy)?;
        let help = "Time each store transaction took from its first write to its commit being durable (the flush included); every ingest it carries waits that long.";
        let durations = Buckets {
            bounds: &COMMIT_BUCKETS,
            counts: &commit_buckets,
            sum: commit_seconds,
        };
        let name = ("store_commit_duration", help, Some(&Unit::Seconds));
        single(e, name, durations)
    }

    fn encode_destinations(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let rows = &self.destinations;
        let by_id = |value: fn(&DestinationRow) -> u64| {
            rows.iter()
                .map(move |row| ([("destination", row.id.as_str())], value(row)))
        };
        let help = "Deliveries waiting for the destination (pending, routed to it).";
        gauges(e, ("destination_backlog", help, None), by_id(|r| r.backlog))?;
        let help = "1 while the destination is paused.";
        let paused = by_id(|r| u64::from(r.paused));
        gauges(e, ("destination_paused", help, None), paused)?;
        let help = "How long the oldest delivery waiting for the destination has waited (0: none).";
        let oldest = by_id(|r| r.oldest_waiting_seconds);
        let name = ("destination_oldest_waiting", help, Some(&Unit::Seconds));
        gauges(e, name, oldest)
    }

    fn encode_health(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let rows = &self.health;
        let help = "Attempts to the destination in the window.";
        let attempts = by_window(rows, |w| w.attempts);
        gauges(e, ("destination_attempts", help, None), attempts)?;
        let help = "Share of the window's attempts answered 200.";
        let success = by_window(rows, |w| w.success_ratio);
        gauges(e, ("destination_success_ratio", help, None), success)?;
        let help = "Share of the window's attempts that took longer than 1 s.";
        let slow = by_window(rows, |w| w.over_1s_ratio);
        gauges(e, ("destination_over_1s_ratio", help, None), slow)?;
        let help =
            "Attempt latency quantiles of the destination in the window (histogram bucket bounds).";
        let latency = by_window(rows, |w| w.latency_seconds).flat_map(|([d, w], seconds)| {
            QUANTILES
                .into_iter()
                .zip(seconds)
                .map(move |(q, s)| ([d, w, ("quantile", q)], s))
        });
        let name = ("destination_latency", help, Some(&Unit::Seconds));
        gauges(e, name, latency)?;
        let help = "1 for the destination's grade over the last 5 minutes.";
        let grades = rows.iter().flat_map(|row| {
            row.grades.iter().map(move |&(grade, is)| {
                let labels = [("destination", row.id.as_str()), ("grade", grade)];
                (labels, u64::from(is))
            })
        });
        gauges(e, ("destination_grade", help, None), grades)
    }
}

/// Labels of a destination's window.
type WindowLabels<'a> = [(&'static str, &'a str); 2];

/// One value per destination and window, labelled with both.
fn by_window<V>(
    rows: &[HealthRow],
    value: fn(&WindowRow) -> V,
) -> impl Iterator<Item = (WindowLabels<'_>, V)> {
    rows.iter().flat_map(move |row| {
        WINDOWS
            .into_iter()
            .zip(&row.windows)
            .map(move |(window, w)| {
                let labels = [("destination", row.id.as_str()), ("window", window)];
                (labels, value(w))
            })
    })
}

/// A family's name (without the prefix and unit), help and unit.
type Descriptor<'a> = (&'a str, &'a str, Option<&'a Unit>);

/// Encodes one family of one unlabelled metric.
fn single(
    e: &mut DescriptorEncoder,
    (name, help, unit): Descriptor,
    metric: impl EncodeMetric,
) -> fmt::Result {
    let encoder = e.encode_descriptor(name, help, unit, metric.metric_type())?;
    metric.encode(encoder)
}

/// Encodes a gauge family from its labelled values; nothing at all without any.
fn gauges<S: EncodeLabelSet, V: EncodeGaugeValue>(
    e: &mut DescriptorEncoder,
    (name, help, unit): Descriptor,
    series: impl IntoIterator<Item = (S, V)>,
) -> fmt::Result {
    let mut series = series.into_iter().peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut family = e.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}
