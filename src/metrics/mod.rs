//! Prometheus metrics of one running service, on `prometheus-client`: counters by door,
//! kind, target and outcome, the attempt-latency histogram, the engine's memory, and the
//! figures read at scrape time (queue depth, the store's write path, per destination).
//!
//! Each service owns its [`Registry`] (never a global), so each service instance (and each
//! test's server in one process) counts on its own. The labelled children of the bounded
//! label sets are created once at start and kept in arrays indexed by the enums below:
//! counting an event, an attempt or a final state is one atomic add, with no label hashing
//! and no lock (`Family::get_or_create` takes both). What is read at scrape time goes
//! through [`Scrape`], a collector made for each scrape.

mod histogram;
mod scrape;

pub use scrape::{DestinationRow, Format, HealthRow, Scrape, WindowRow};

use std::time::Duration;

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::domain::{AttemptErrorKind, EventKind, Target};
use histogram::LatencyHistogram;

/// Every family's name starts with it (`switchboard_…`).
const PREFIX: &str = "switchboard";

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

/// The service's registry and the handles the hot path counts with.
#[derive(Debug)]
pub struct Metrics {
    /// Every family counted as things happen; the scrape-time ones come with each [`Scrape`].
    registry: Registry,
    /// By source, then kind.
    events: [[Counter; 4]; 3],
    /// By target, then outcome.
    attempts: [[Counter; 7]; 4],
    /// By target, then final state.
    finals: [[Counter; 3]; 4],
    /// Deliveries parked in the store by a saturated destination.
    deferred: Counter,
    /// Deliveries the engine holds in memory.
    held_deliveries: Gauge,
    /// Bytes of `--max-queue-memory-mib` they take.
    held_bytes: Gauge,
    /// Leases this node lost to another claim.
    leases_lost: Counter,
    /// 1 while the database answers the engine; the previous value tells an outage's start.
    store_up: Gauge,
    /// Outages this node saw begin.
    store_outages: Counter,
    /// By [`StateChange`].
    destination_changes: [Counter; 3],
    /// Attempt durations.
    latency: LatencyHistogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every family registered and every bounded child created, at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let events = two_labels(
            &mut registry,
            ("events_ingested", "Events stored, by door and kind"),
            ("source", SOURCES),
            ("kind", KINDS),
        );
        let attempts = two_labels(
            &mut registry,
            (
                "attempts",
                "Delivery attempts, by destination kind and outcome",
            ),
            ("target", TARGETS),
            ("outcome", OUTCOMES),
        );
        let finals = two_labels(
            &mut registry,
            (
                "deliveries",
                "Deliveries that reached a final state, by destination kind",
            ),
            ("target", TARGETS),
            ("state", FINAL_STATES),
        );
        let destination_changes = one_label(
            &mut registry,
            (
                "destination_state_changes",
                "Destination state changes this node made or saw: degraded (grade), paused, recovered",
            ),
            ("change", STATE_CHANGES),
        );
        let metrics = Self {
            events,
            attempts,
            finals,
            destination_changes,
            deferred: Counter::default(),
            held_deliveries: Gauge::default(),
            held_bytes: Gauge::default(),
            leases_lost: Counter::default(),
            store_up: Gauge::default(),
            store_outages: Counter::default(),
            latency: LatencyHistogram::default(),
            registry,
        };
        metrics.store_up.set(1);
        metrics.register_singles()
    }

    /// Registers the families without labels, in the order served.
    fn register_singles(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "deliveries_deferred",
            "Deliveries sent back to the store because their destination was saturated",
            self.deferred.clone(),
        );
        r.register(
            "store_up",
            "1 while the database answers the engine's writes; 0 during an outage (ingest answers 503, deliveries pause)",
            self.store_up.clone(),
        );
        r.register(
            "store_outages",
            "Outages of the database this node saw begin",
            self.store_outages.clone(),
        );
        r.register(
            "engine_deliveries_in_memory",
            "Deliveries the engine holds in memory (waiting for a slot or in flight)",
            self.held_deliveries.clone(),
        );
        r.register_with_unit(
            "engine_memory",
            "Bytes of --max-queue-memory-mib the deliveries in memory take (payload plus a fixed share)",
            Unit::Bytes,
            self.held_bytes.clone(),
        );
        r.register(
            "leases_lost",
            "Deliveries whose lease this node lost to another claim (dropped from memory, outcome not recorded)",
            self.leases_lost.clone(),
        );
        r.register_with_unit(
            "attempt_duration",
            "Duration of delivery attempts",
            Unit::Seconds,
            self.latency.clone(),
        );
        self
    }

    /// Counts one stored event by door and kind.
    pub fn event_stored(&self, source: Source, kind: EventKind) {
        self.events[source as usize][kind_index(kind)].inc();
    }

    /// Counts one attempt, by destination kind and outcome, and its duration.
    pub fn attempt(&self, target: &Target, outcome: AttemptOutcome, took: Duration) {
        self.attempts[target_index(target)][outcome.index()].inc();
        self.latency.observe(took);
    }

    /// Counts a delivery reaching a final state.
    pub fn delivery_finished(&self, target: &Target, state: FinalState) {
        self.finals[target_index(target)][state as usize].inc();
    }

    /// Counts a delivery sent back to the store because its destination was saturated.
    pub fn delivery_deferred(&self) {
        self.deferred.inc();
    }

    /// A delivery entered (`+1`, its memory cost) or left (`-1`, minus it) the engine's
    /// memory: the gauges show how much of `--max-queue-memory-mib` is in use.
    pub fn held_in_memory(&self, deliveries: i64, bytes: i64) {
        self.held_deliveries.inc_by(deliveries);
        self.held_bytes.inc_by(bytes);
    }

    /// Counts a destination's state change seen by this node.
    pub fn destination_state_changed(&self, change: StateChange) {
        self.destination_changes[change as usize].inc();
    }

    /// Counts deliveries whose lease this node lost (found at renewal or refused at settle):
    /// another node claimed them after their lease expired, so this node let them go.
    pub fn leases_lost(&self, count: u64) {
        self.leases_lost.inc_by(count);
    }

    /// The database became unavailable (`false`) or available again (`true`), as the
    /// engine saw it (`delivery/outage.rs`): `switchboard_store_up`.
    pub fn store_up(&self, up: bool) {
        let was_up = self.store_up.set(i64::from(up)) == 1;
        if !up && was_up {
            self.store_outages.inc();
        }
    }

    /// The totals the console's overview turns into rates: every event stored, every
    /// attempt, and the deliveries that reached each final state.
    pub fn totals(&self) -> Totals {
        let sum = |rows: &[&[Counter]]| -> u64 {
            rows.iter()
                .flat_map(|row| row.iter())
                .map(Counter::get)
                .sum()
        };
        let finals = |state: FinalState| -> u64 {
            self.finals
                .iter()
                .map(|row| row[state as usize].get())
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

    /// The exposition in `format`: this registry's families, then those read at scrape
    /// time (`scrape`).
    pub fn encode(&self, format: Format, scrape: Scrape) -> Result<String, std::fmt::Error> {
        let mut at_scrape = Registry::with_prefix(PREFIX);
        at_scrape.register_collector(Box::new(scrape));
        let mut out = String::with_capacity(16 * 1024);
        match format {
            Format::OpenMetrics => {
                text::encode_registry(&mut out, &self.registry)?;
                text::encode_registry(&mut out, &at_scrape)?;
                text::encode_eof(&mut out)?;
            }
            Format::Text => {
                prometheus_text::encode(&mut out, &self.registry)?;
                prometheus_text::encode(&mut out, &at_scrape)?;
            }
        }
        Ok(out)
    }
}

/// Registers a counter family over one bounded label and creates every child, returned by
/// index of the label.
fn one_label<const A: usize>(
    registry: &mut Registry,
    (name, help): (&str, &str),
    (label, values): (&'static str, [&'static str; A]),
) -> [Counter; A] {
    let family = Family::<[(&'static str, &'static str); 1], Counter>::default();
    registry.register(name, help, family.clone());
    values.map(|value| family.get_or_create_owned(&[(label, value)]))
}

/// Registers a counter family over two bounded labels and creates every child, returned by
/// index of the first label, then the second.
fn two_labels<const A: usize, const B: usize>(
    registry: &mut Registry,
    (name, help): (&str, &str),
    (first, first_values): (&'static str, [&'static str; A]),
    (second, second_values): (&'static str, [&'static str; B]),
) -> [[Counter; B]; A] {
    let family = Family::<[(&'static str, &'static str); 2], Counter>::default();
    registry.register(name, help, family.clone());
    first_values
        .map(|a| second_values.map(|b| family.get_or_create_owned(&[(first, a), (second, b)])))
}

#[cfg(test)]
mod tests;
