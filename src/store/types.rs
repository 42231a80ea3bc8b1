//! The records that cross the `Store` boundary for events, deliveries and attempts.

use bytes::Bytes;

use super::LeaseToken;
use crate::domain::{
    AttemptErrorKind, ChannelId, DeliveryId, DeliveryState, DestinationId, EventId, EventKind,
    MultiWebhook, Partner, PartnerEvent, PartnerEventType, PartnerId, PhoneNumber, PhoneNumberId,
    Route, Settlement, Target, TraceContext, WabaId, Webhook, WebhookHeaders, WebhookUrl,
};

/// A notification to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// What it is: `Whatsapp` events with a channel and `Partner` events get a delivery.
    pub kind: EventKind,
    /// The channel it is for, if known.
    pub channel: Option<ChannelId>,
    /// The partner it is for (partner events).
    pub partner: Option<PartnerId>,
    /// Meta's phone_number_id it came with, kept for unroutable events.
    pub phone_number_id: Option<String>,
    /// The WABA a WABA-level notification belongs to: its delivery goes to that WABA's
    /// webhook (not stored on the event: the delivery's target names it).
    pub waba: Option<WabaId>,
    /// What every destination receives.
    pub body: EventBody,
    /// Arrival time (ms since the epoch): the start of its deliveries' age window.
    pub received_at: i64,
    /// The W3C trace context it came with (Meta's webhook, the admin sandbox), carried onto
    /// its deliveries; `None` for most events, which then store nothing for it.
    pub trace: Option<TraceContext>,
}

impl NewEvent {
    /// A partner event of `kind` for `partner`, happened `at` (ms since the epoch): stored
    /// with one delivery to the partner's webhook.
    pub fn partner(
        partner: PartnerId,
        kind: PartnerEventType,
        data: serde_json::Value,
        at: i64,
    ) -> Self {
        Self {
            kind: EventKind::Partner,
            channel: None,
            partner: Some(partner.clone()),
            phone_number_id: None,
            waba: None,
            body: EventBody::Partner(PartnerEvent {
                kind,
                partner,
                data,
                created_at: at,
            }),
            received_at: at,
            trace: None,
        }
    }

    /// The delivery the event gets when stored: primary for a WhatsApp event with a channel,
    /// partner for a partner event, the WABA webhook for a WABA-level one, none otherwise.
    pub fn first_target(&self) -> Option<Target> {
        match (self.kind, &self.channel, &self.partner, self.waba) {
            (EventKind::Whatsapp, Some(_), _, _) => Some(Target::Primary),
            (EventKind::Partner, _, Some(_), _) => Some(Target::Partner),
            (EventKind::Waba, _, _, Some(waba)) => Some(Target::Waba(waba)),
            _ => None,
        }
    }
}

/// The body of an event: bytes known in advance, or a partner event rendered with its id.
#[derive(Debug, Clone)]
pub enum EventBody {
    /// The exact bytes to deliver.
    Bytes(Bytes),
    /// A partner event; the store renders it once the event has its id.
    Partner(PartnerEvent),
}

impl EventBody {
    /// The delivered body's length, known for bytes and estimated for a partner event (its
    /// data as compact JSON plus the envelope around it), to reserve engine memory before
    /// the body is rendered.
    pub fn estimated_len(&self) -> usize {
        match self {
            Self::Bytes(bytes) => bytes.len(),
            Self::Partner(event) => event.data.to_string().len() + 256,
        }
    }
}

/// A stored event, its delivery if it has one, and the bytes that delivery sends.
#[derive(Debug, Clone)]
pub struct SavedEvent {
    /// The event's id.
    pub event: EventId,
    /// Its first delivery (primary or partner), when the event is routable.
    pub delivery: Option<DeliveryId>,
    /// That delivery's lease, when it was stored leased to this node (to start from memory).
    pub lease: Option<LeaseToken>,
    /// The stored payload.
    pub payload: Bytes,
}

/// A delivery to attempt now, with everything the attempt needs but the route.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// The delivery.
    pub id: DeliveryId,
    /// Its event.
    pub event: EventId,
    /// The channel whose config routes it.
    pub channel: Option<ChannelId>,
    /// The partner whose webhook receives it (partner events).
    pub partner: Option<PartnerId>,
    /// Which destination.
    pub target: Target,
    /// The bytes to send, shared between a primary and its extras.
    pub payload: Bytes,
    /// Attempts made so far.
    pub attempts: u32,
    /// Start of the age window (event arrival, or the last replay), ms since the epoch.
    pub window_start: i64,
    /// Attempts made before the window started: backoff counts only the ones after.
    pub window_attempts: u32,
    /// The lease this node holds it under: its settle and renewals apply only while that is
    /// still the delivery's lease.
    pub lease: LeaseToken,
    /// Its event's trace context, sent on as `traceparent` (and `tracestate`).
    pub trace: Option<TraceContext>,
}

/// What the engine charges a delivery it holds in memory besides its payload: the rest of
/// its `DueDelivery`, its task and its place in a destination's queue, rounded up.
pub const DELIVERY_MEMORY_OVERHEAD: usize = 512;

/// The bytes of the engine's memory budget that a delivery with a payload of `payload_len`
/// bytes takes while it is held (the store cuts claims by the same measure).
pub fn memory_cost(payload_len: usize) -> usize {
    payload_len + DELIVERY_MEMORY_OVERHEAD
}

impl DueDelivery {
    /// This delivery's share of the engine's memory budget.
    pub fn memory_cost(&self) -> usize {
        memory_cost(self.payload.len())
    }
}

/// One attempt as recorded for inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// 1 for the first attempt of the delivery.
    pub number: u32,
    /// When it started, ms since the epoch.
    pub started_at: i64,
    /// How long it took, ms.
    pub duration_ms: i64,
    /// Where it went.
    pub url: String,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// Why no answer came, if none did.
    pub error: Option<AttemptErrorKind>,
    /// The first bytes of the answer's body.
    pub response_excerpt: Option<String>,
    /// The delay a 429 or 503 asked for with `Retry-After`, ms, as the receiver said it
    /// (before the clamp to the maximum delay and the age window), so an operator can see
    /// why a retry came late; the delay kept is the delivery's `next_attempt_at`.
    pub retry_after_ms: Option<i64>,
}

/// A settlement of one delivery, with the attempt that led to it, if one was made.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The delivery.
    pub delivery: DeliveryId,
    /// Its channel, as claimed (a delivery's channel never changes): when the delivery
    /// leaves `pending`, PostgreSQL's group commit wakes the channel's next ordered delivery
    /// if one is held, without first reading whether the channel is ordered.
    pub channel: Option<ChannelId>,
    /// The lease it was attempted under; the settle applies only if it is still current.
    pub lease: LeaseToken,
    /// The attempt, if one was made.
    pub attempt: Option<AttemptRecord>,
    /// What follows.
    pub settlement: Settlement,
}

/// A channel's routing inputs: the resolved main route, extras, and signing secret.
#[derive(Debug, Clone)]
pub struct Routing {
    /// Phone-number webhook ▸ WABA webhook ▸ none.
    pub route: Route,
    /// The extra destinations.
    pub multi_webhook: MultiWebhook,
    /// Signs deliveries when set.
    pub signing_secret: Option<String>,
}

/// Who a Meta phone_number_id belongs to.
#[derive(Debug, Clone)]
pub struct ChannelRef {
    /// The channel.
    pub id: ChannelId,
    /// Its WABA.
    pub waba_id: WabaId,
    /// Its number.
    pub phone_number: PhoneNumber,
    /// Meta's id of the number.
    pub phone_number_id: PhoneNumberId,
}

impl From<crate::domain::Channel> for ChannelRef {
    fn from(channel: crate::domain::Channel) -> Self {
        Self {
            id: channel.id,
            waba_id: channel.waba_id,
            phone_number: channel.phone_number,
            phone_number_id: channel.phone_number_id,
        }
    }
}

/// A stored event with its deliveries, for inspection.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Id, kind, channel or partner, arrival.
    pub summary: EventSummary,
    /// The exact bytes delivered (empty once purged).
    pub payload: Bytes,
    /// When the payload retention emptied the payload (ms since the epoch), if it did.
    pub payload_purged_at: Option<i64>,
    /// The trace context it came with, if any.
    pub trace: Option<TraceContext>,
    /// Its deliveries, each with its attempts.
    pub deliveries: Vec<(DeliveryRecord, Vec<AttemptRecord>)>,
}

/// A delivery as stored.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    /// The delivery.
    pub id: DeliveryId,
    /// Its event.
    pub event: EventId,
    /// The channel, if any.
    pub channel: Option<ChannelId>,
    /// The partner, for partner events.
    pub partner: Option<PartnerId>,
    /// Which destination.
    pub target: Target,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (pending only), ms since the epoch.
    pub next_attempt_at: i64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// Last change, ms since the epoch.
    pub updated_at: i64,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only in this state.
    pub state: Option<DeliveryState>,
    /// Only for this channel.
    pub channel: Option<ChannelId>,
    /// Only ids greater than this (paging cursor).
    pub after: Option<DeliveryId>,
    /// At most this many.
    pub limit: usize,
}

/// Which deliveries a recovery puts back in the queue: those of the events that arrived in a
/// time window (e.g. a receiver's outage), narrowed to a channel, a destination and states.
/// Parsed and checked by the API, so the store only runs it.
#[derive(Debug, Clone)]
pub struct RecoverFilter {
    /// Start of the window on `events.received_at` (ms since the epoch), included.
    pub since: i64,
    /// End of the window (ms since the epoch), excluded.
    pub until: i64,
    /// Only this channel's deliveries.
    pub channel: Option<ChannelId>,
    /// Only deliveries with an attempt to a URL of this destination.
    pub destination: Option<DestinationId>,
    /// Only deliveries in one of these states; a pending delivery is never matched (it is
    /// queued already), whatever this says.
    pub states: Vec<DeliveryState>,
    /// Count the matching deliveries and change nothing.
    pub dry_run: bool,
}

/// What a recovery did: how many deliveries matched, how many it put back in the queue
/// (none on a dry run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Deliveries matching the filter.
    pub matched: u64,
    /// Deliveries re-queued.
    pub requeued: u64,
}

/// A partner with its webhook settings.
#[derive(Debug, Clone)]
pub struct PartnerRecord {
    /// Id and name.
    pub partner: Partner,
    /// Where partner events go, if set.
    pub webhook_url: Option<WebhookUrl>,
    /// Headers sent with partner events (kept even while no URL is set).
    pub webhook_headers: WebhookHeaders,
    /// Signs partner events when set.
    pub signing_secret: Option<String>,
}

impl PartnerRecord {
    /// The partner webhook, when a URL is set.
    pub fn webhook(&self) -> Option<Webhook> {
        self.webhook_url.as_ref().map(|url| Webhook {
            url: url.clone(),
            headers: self.webhook_headers.clone(),
        })
    }
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only of this kind (e.g. `Unroutable`, to find notifications for unknown numbers).
    pub kind: Option<EventKind>,
    /// Only ids greater than this (paging cursor).
    pub after: Option<EventId>,
    /// At most this many.
    pub limit: usize,
}

/// An event without its payload and deliveries, for lists.
#[derive(Debug, Clone)]
pub struct EventSummary {
    /// The event's id.
    pub id: EventId,
    /// What it is.
    pub kind: EventKind,
    /// The channel, if known.
    pub channel: Option<ChannelId>,
    /// The partner, for partner events.
    pub partner: Option<PartnerId>,
    /// Meta's phone_number_id, if it came with one.
    pub phone_number_id: Option<String>,
    /// Arrival, ms since the epoch.
    pub received_at: i64,
}

/// Counters of the store's write path, for `/metrics`: how many transactions committed, how
/// many writes they carried (writes per commit is the group-commit factor), and how long the
/// writer was busy (its rate is the writer's utilisation, the first thing to saturate).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WriteStats {
    /// Transactions committed.
    pub commits: u64,
    /// Writes (jobs) those transactions carried.
    pub writes: u64,
    /// Seconds the writer spent running and committing batches.
    pub busy_seconds: f64,
    /// Committed transactions by how long each took, from its first write to its commit
    /// being durable, per bucket of [`COMMIT_BUCKETS`] (the last one is everything above).
    /// Every ingest a transaction carries waits that long, so its tail is the ingest's: on
    /// SQLite mostly the disk's flush (`fdatasync`) latency, which a slow disk or a busy
    /// host stretches from a fraction of a millisecond to tens.
    pub commit_buckets: [u64; COMMIT_BUCKETS.len() + 1],
    /// The sum of those durations, in seconds.
    pub commit_seconds: f64,
}

/// Upper bounds of the commit-duration buckets, in seconds: a commit with its flush takes
/// a fraction of a millisecond on a good disk, so the buckets start finer than attempts'.
pub const COMMIT_BUCKETS: [f64; 11] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The atomics behind [`WriteStats`], shared by each backend's write path.
#[derive(Debug, Default)]
pub struct WriteCounters {
    commits: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
    busy_micros: std::sync::atomic::AtomicU64,
    commit_buckets: [std::sync::atomic::AtomicU64; COMMIT_BUCKETS.len() + 1],
    commit_micros: std::sync::atomic::AtomicU64,
}

impl WriteCounters {
    /// A transaction carrying `writes` writes committed; it started at `started`.
    pub fn committed(&self, writes: usize, started: std::time::Instant) {
        use std::sync::atomic::Ordering::Relaxed;
        let took = started.elapsed();
        self.commits.fetch_add(1, Relaxed);
        self.writes.fetch_add(writes as u64, Relaxed);
        let seconds = took.as_secs_f64();
        let bucket = COMMIT_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(COMMIT_BUCKETS.len());
        self.commit_buckets[bucket].fetch_add(1, Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.commit_micros.fetch_add(micros, Relaxed);
        self.busy_micros.fetch_add(micros, Relaxed);
    }

    /// Time spent on writes since `started` that committed nothing (a failed transaction).
    pub fn busy_since(&self, started: std::time::Instant) {
        let busy = started.elapsed().as_micros() as u64;
        self.busy_micros
            .fetch_add(busy, std::sync::atomic::Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn stats(&self) -> WriteStats {
        let load = |counter: &std::sync::atomic::AtomicU64| {
            counter.load(std::sync::atomic::Ordering::Relaxed)
        };
        WriteStats {
            commits: load(&self.commits),
            writes: load(&self.writes),
            busy_seconds: load(&self.busy_micros) as f64 / 1e6,
            commit_buckets: std::array::from_fn(|i| load(&self.commit_buckets[i])),
            commit_seconds: load(&self.commit_micros) as f64 / 1e6,
        }
    }
}

/// Why a configured URL receives deliveries: which configuration points at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteReason {
    /// The channel's phone-number webhook.
    PhoneNumberWebhook,
    /// The WABA webhook of the channel's WABA (used when the channel has none of its own).
    WabaWebhook,
    /// One of the channel's extra destinations (multi webhook), by name.
    ExtraDestination(String),
    /// The partner's webhook (partner events).
    PartnerWebhook,
}

impl RouteReason {
    /// The reason as the admin API names it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::PhoneNumberWebhook => "phone_number_webhook",
            Self::WabaWebhook => "waba_webhook",
            Self::ExtraDestination(_) => "extra_destination",
            Self::PartnerWebhook => "partner_webhook",
        }
    }
}

/// One configuration that sends deliveries to `url`.
#[derive(Debug, Clone)]
pub struct ConfiguredRoute {
    /// Where it sends them.
    pub url: String,
    /// The partner it serves: the channel's (through its WABA), or the partner webhook's.
    pub owner: Option<PartnerId>,
    /// The channel it serves (not for partner webhooks).
    pub channel: Option<ChannelId>,
    /// The partner it serves (partner webhooks only).
    pub partner: Option<PartnerId>,
    /// The WABA of the channel it serves (a WABA webhook also gets the WABA's WABA-level
    /// notifications).
    pub waba: Option<WabaId>,
    /// Which configuration it is.
    pub reason: RouteReason,
}

/// Every configured route, in one query both backends can run: the phone-number and WABA
/// webhooks of each channel, its enabled multi webhook (decoded by the caller), and each
/// partner's webhook.
pub const CONFIGURED_ROUTES: &str = "
    SELECT 'phone_number_webhook', c.id, w.partner_id, c.webhook_url, w.id FROM channels c
      JOIN wabas w ON w.id = c.waba_id WHERE c.webhook_url IS NOT NULL
    UNION ALL
    SELECT 'waba_webhook', c.id, w.partner_id, w.webhook_url, w.id FROM channels c
      JOIN wabas w ON w.id = c.waba_id WHERE w.webhook_url IS NOT NULL
    UNION ALL
    SELECT 'multi_webhook', c.id, w.partner_id, c.multi_webhook, w.id FROM channels c
      JOIN wabas w ON w.id = c.waba_id WHERE c.multi_webhook LIKE '%\"enabled\":true%'
    UNION ALL
    SELECT 'partner_webhook', NULL, p.id, p.webhook_url, NULL FROM partners p
     WHERE p.webhook_url IS NOT NULL";

/// One row of [`CONFIGURED_ROUTES`], as both backends read it.
#[derive(Debug)]
pub struct ConfiguredRouteRow {
    /// `phone_number_webhook`, `waba_webhook`, `multi_webhook` or `partner_webhook`.
    pub kind: String,
    /// The channel (not for partner webhooks).
    pub channel: Option<String>,
    /// The owning partner.
    pub partner: Option<String>,
    /// The URL, or the multi webhook's JSON.
    pub value: String,
    /// The channel's WABA (not for partner webhooks).
    pub waba: Option<i64>,
}

/// The routes of one row of [`CONFIGURED_ROUTES`].
pub fn configured_routes_of_row(
    row: ConfiguredRouteRow,
) -> Result<Vec<ConfiguredRoute>, super::StoreError> {
    let owner = row.partner.map(PartnerId::from_raw);
    let waba = row.waba.map(super::columns::stored_waba_id).transpose()?;
    let channel = row.channel.map(ChannelId::from_raw);
    let route = |url: String, reason| ConfiguredRoute {
        url,
        owner: owner.clone(),
        channel: channel.clone(),
        partner: owner
            .clone()
            .filter(|_| reason == RouteReason::PartnerWebhook),
        waba,
        reason,
    };
    Ok(match row.kind.as_str() {
        "phone_number_webhook" => vec![route(row.value, RouteReason::PhoneNumberWebhook)],
        "waba_webhook" => vec![route(row.value, RouteReason::WabaWebhook)],
        "partner_webhook" => vec![route(row.value, RouteReason::PartnerWebhook)],
        _ => super::columns::decode_multi_webhook(&row.value)?
            .destinations
            .into_iter()
            .map(|d| {
                let name = d.name.as_str().to_owned();
                route(
                    d.url.as_str().to_owned(),
                    RouteReason::ExtraDestination(name),
                )
            })
            .collect(),
    })
}

/// The pending deliveries of one channel (or partner) and target: how many, since when the
/// oldest waits, and when the next is due (the admin API adds them up per destination).
#[derive(Debug, Clone)]
pub struct PendingGroup {
    /// The channel (primary and extra deliveries).
    pub channel: Option<ChannelId>,
    /// The partner (partner events).
    pub partner: Option<PartnerId>,
    /// `primary`, `extra:<name>`, `partner` or `waba:<id>`, as stored.
    pub target: String,
    /// Deliveries pending.
    pub count: u64,
    /// The earliest start of their age windows (ms since the epoch).
    pub oldest: i64,
    /// The earliest next attempt (ms since the epoch).
    pub next_attempt_at: i64,
}

/// [`PendingGroup`]s, in one query both backends can run.
pub const PENDING_GROUPS: &str = "
    SELECT channel_id, partner_id, target, count(*), min(window_start), min(next_attempt_at)
      FROM deliveries WHERE state = 'pending'
     GROUP BY channel_id, partner_id, target";

/// Why a destination is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    /// It answered nothing but failures for `--pause-after-s`.
    Failing,
    /// An operator paused it.
    Manual,
}

impl PauseReason {
    /// The stored and shown spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failing => "failing",
            Self::Manual => "manual",
        }
    }

    /// Reads a stored reason; `None` for a spelling this version does not know.
    pub fn from_stored(raw: &str) -> Option<Self> {
        [Self::Failing, Self::Manual]
            .into_iter()
            .find(|reason| reason.as_str() == raw)
    }
}

/// A paused destination, as stored (every node reads the same list).
#[derive(Debug, Clone)]
pub struct DestinationPause {
    /// Which destination.
    pub id: DestinationId,
    /// A URL of it, query masked, for operators.
    pub url: String,
    /// Why.
    pub reason: PauseReason,
    /// Since when (ms since the epoch).
    pub paused_at: i64,
}

/// SQL of the paused destinations, the same on both backends (`$n`/`?n` placeholders are
/// written per backend).
pub const PAUSED_DESTINATIONS: &str = "SELECT id, url, reason, paused_at FROM destination_pauses";
