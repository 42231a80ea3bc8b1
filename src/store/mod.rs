//! Storage: the one `Store` trait the service is written against, and its backends.
//!
//! All SQL lives below this module. The trait names the operations the service needs (not a
//! generic ORM), so a PostgreSQL backend implements the same list and the same integration
//! suite runs against both. Writes that check a rule and then change state (multi-webhook
//! edits, key rotation) happen in one transaction, so a rejected request changes nothing.

mod cache;
mod columns;
mod constraints;
mod decode;
mod listing;
mod ordering;
mod payload;
mod urls;

mod lease;
mod postgres;
mod replay;
mod replay_sql;
mod retention;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::DatabaseUrl;
use crate::domain::{
    Channel, ChannelId, DeliveryId, DeliveryState, DestinationId, EventId, KeyHash, MultiWebhook,
    MultiWebhookChange, MultiWebhookError, Partner, PartnerId, PhoneNumber, PhoneNumberId, Route,
    WabaId, WabaWebhook, Webhook, WebhookHeaders, WebhookUrl,
};

mod types;
pub use types::{
    memory_cost, ConfiguredRoute, DestinationPause, PauseReason, PendingGroup, RouteReason,
    DELIVERY_MEMORY_OVERHEAD,
};
pub use types::{
    AttemptRecord, ChannelRef, DeliveryFilter, DeliveryRecord, DueDelivery, EventBody, EventFilter,
    EventRecord, EventSummary, NewEvent, Outcome, PartnerRecord, RecoverFilter, Recovered, Routing,
    SavedEvent, WriteCounters, WriteStats, COMMIT_BUCKETS,
};

/// Re-exported where the store's callers always found it.
pub use crate::domain::Settlement;
pub use constraints::{Subject, Violation, ViolationKind};
pub use decode::Corrupt;
pub use lease::{CreatedDelivery, HeldLease, LeaseToken, Settled};
pub use listing::{
    ChannelFilter, ChannelListing, PartnerFilter, PartnerListing, WabaFilter, WabaListing,
};
pub use ordering::HELD_UNTIL;
pub use postgres::PostgresStore;
pub use replay::{Replay, ReplayFrom, StoredAttempt, StoredEvent, REPLAY_LIMIT};
pub use retention::PayloadPurge;
pub use sqlite::snapshot;
pub use sqlite::SqliteStore;

/// Why a store operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist; `what` is e.g. "partner", `id` its id.
    #[error("{what} {id} not found")]
    NotFound {
        /// What kind of thing, e.g. "partner".
        what: &'static str,
        /// Its id, as asked for.
        id: String,
    },
    /// A uniqueness rule was broken (an existing WABA id, phone number…).
    #[error("{0}")]
    Conflict(String),
    /// A schema constraint no rule explains was broken ([`Violation::explain`]); nothing
    /// of the write happened.
    #[error("{0}")]
    Constraint(Violation),
    /// A stored row holds a value this version cannot read; the error names the row.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
    /// A multi-webhook change broke one of its rules; nothing was written.
    #[error(transparent)]
    MultiWebhook(#[from] MultiWebhookError),
    /// The database failed; the source keeps the driver's error chain.
    #[error("database error")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database could not be opened or migrated.
    #[error("cannot open the database: {0}")]
    Open(String),
    /// The writer stopped (the service is shutting down).
    #[error("the store is shutting down")]
    Closed,
    /// The writer could not open a transaction for the write; nothing of it was written.
    #[error("the write was abandoned: the database could not start a transaction")]
    Abandoned,
    /// The database cannot be reached or cannot write now (connection refused or reset, no
    /// pooled connection in time, no answer within a bound, a full or read-only disk, busy
    /// beyond its timeout): a condition of the database, not of the call, that passes when
    /// the database is back. The API answers 503; the engine pauses (`delivery/outage.rs`).
    #[error("the database is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Whether the call failed because the database is unavailable (see
    /// [`StoreError::Unavailable`]; a write the writer could not start a transaction for is
    /// one too), so trying again later, once it is back, may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Abandoned)
    }

    /// An unavailable database, for `cause`.
    pub fn unavailable(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable(cause.into())
    }
}

/// How long ingest and `/ready` wait for the store before they answer 503: a database whose
/// processes hang (stopped, or a network that drops packets) answers nothing, and without a
/// bound the request would hang with it.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Bounds a store call: one that has not answered within `limit` fails as
/// [`StoreError::Unavailable`]. The call is dropped, not undone: a write may still commit
/// after its caller was told it failed (at-least-once: an event answered 503 that did
/// commit is delivered, and its sender retries it too).
pub async fn within<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::unavailable(format!(
            "no answer within {} ms",
            limit.as_millis()
        ))),
    }
}

impl StoreError {
    /// Why a delivery was not retried, given its `state` after a retry changed nothing: it
    /// does not exist (`None`), it is in a state a retry does not apply to (only failed or
    /// dropped ones are retried), or, failed or dropped, its event's payload was purged (the
    /// retry's one other condition), so there is nothing to send.
    pub fn not_retried(id: DeliveryId, state: Option<String>) -> Self {
        match state {
            None => StoreError::NotFound {
                what: "delivery",
                id: id.to_string(),
            },
            Some(state) if state != "failed" && state != "dropped" => {
                StoreError::Conflict(format!(
                    "Delivery {id} is {state}: only failed or dropped deliveries can be retried"
                ))
            }
            Some(_) => StoreError::Conflict(format!(
                "Delivery {id} cannot be retried: its payload was purged \
                 (--payload-retention-hours)"
            )),
        }
    }
}

/// A channel to provision: the number, Meta's id for it, and the hash of its first key.
#[derive(Debug, Clone)]
pub struct NewChannel {
    /// Switchboard's id for it.
    pub id: ChannelId,
    /// The WABA it joins, which must exist.
    pub waba_id: WabaId,
    /// The number, unique across Switchboard.
    pub phone_number: PhoneNumber,
    /// Meta's id, unique across Switchboard (Meta's webhooks are routed by it).
    pub phone_number_id: PhoneNumberId,
    /// Hash of the D360-API-KEY issued with it.
    pub key_hash: KeyHash,
}

/// What GET /waba_webhook shows: the WABA's webhook and the numbers it may serve.
#[derive(Debug, Clone)]
pub struct WabaWebhookView {
    /// The WABA webhook, if one is set.
    pub webhook: Option<WabaWebhook>,
    /// Every number of the WABA, in the order they were added.
    pub numbers: Vec<PhoneNumber>,
}

/// What a WABA-level notification needs from its WABA: who is told (the owning partner),
/// where it is delivered and what signs it.
#[derive(Debug, Clone)]
pub struct WabaRoute {
    /// The partner that owns the WABA: it gets the `waba_update` partner event.
    pub partner: PartnerId,
    /// The WABA webhook (URL and headers), if one is set.
    pub webhook: Option<Webhook>,
    /// The WABA's own signing secret (`POST /admin/wabas/{id}/signing_secret`): a WABA-level
    /// notification belongs to no channel, so no channel's secret signs it.
    pub signing_secret: Option<String>,
}

/// The operations Switchboard needs from its database.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database accepts writes (readiness): one real row write through the
    /// normal write path, so a locked, read-only or full database is not ready even while
    /// it still answers reads.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Adds a partner with the hash of its API key.
    async fn create_partner(&self, partner: Partner, key_hash: KeyHash) -> Result<(), StoreError>;

    /// Adds a WABA to an existing partner; the id must be new.
    async fn create_waba(&self, partner: &PartnerId, waba: WabaId) -> Result<(), StoreError>;

    /// Adds a channel to an existing WABA (number and Meta id must be new), and stores
    /// `events` about it (e.g. `channel_created`) in the same transaction, unleased: the
    /// engine's poller picks their deliveries up.
    async fn create_channel(
        &self,
        channel: NewChannel,
        events: Vec<NewEvent>,
    ) -> Result<(), StoreError>;

    /// Replaces a channel's key and removes its phone-number webhook, as the provider does
    /// when a new key is generated.
    async fn replace_channel_key(
        &self,
        id: &ChannelId,
        key_hash: KeyHash,
    ) -> Result<(), StoreError>;

    /// The channel that owns a presented key, if any.
    async fn channel_by_key(&self, key_hash: &KeyHash) -> Result<Option<Channel>, StoreError>;

    /// A channel by id, if it exists.
    async fn channel(&self, id: &ChannelId) -> Result<Option<Channel>, StoreError>;

    /// Sets (`Some`) or removes (`None`) a channel's phone-number webhook.
    async fn set_phone_webhook(
        &self,
        id: &ChannelId,
        webhook: Option<Webhook>,
    ) -> Result<(), StoreError>;

    /// The WABA webhook and the WABA's numbers.
    async fn waba_webhook(&self, waba: WabaId) -> Result<WabaWebhookView, StoreError>;

    /// Sets (`Some`) or removes (`None`) the WABA webhook; with `override_all` it also removes
    /// every phone-number webhook of the WABA in the same transaction, so the WABA webhook
    /// serves all its numbers.
    async fn set_waba_webhook(
        &self,
        waba: WabaId,
        webhook: Option<WabaWebhook>,
    ) -> Result<(), StoreError>;

    /// Applies a multi-webhook change atomically; returns the new configuration.
    async fn change_multi_webhook(
        &self,
        id: &ChannelId,
        change: MultiWebhookChange,
        max_destinations: usize,
    ) -> Result<MultiWebhook, StoreError>;

    /// Where a notification for the channel goes now.
    async fn route(&self, id: &ChannelId) -> Result<Route, StoreError> {
        match self.routing(id).await? {
            Some(routing) => Ok(routing.route.clone()),
            None => Err(StoreError::NotFound {
                what: "channel",
                id: id.to_string(),
            }),
        }
    }

    /// Turns ordered delivery of the channel on or off, in one transaction with what it
    /// does to the channel's pending primary deliveries: on marks them ordered and holds
    /// all but the head (those in flight finish); off releases the held ones, due `now`.
    /// Setting the value it has already changes nothing.
    async fn set_ordered(&self, id: &ChannelId, ordered: bool, now: i64) -> Result<(), StoreError>;

    /// Sets the secret that signs the channel's deliveries (`X-Hub-Signature-256`).
    async fn set_signing_secret(&self, id: &ChannelId, secret: String) -> Result<(), StoreError>;

    /// Everything an attempt needs to route a channel's delivery, from the current config.
    ///
    /// On the delivery hot path: backends answer from memory when they can, and must see
    /// every configuration change made before the call.
    async fn routing(&self, id: &ChannelId) -> Result<Option<Arc<Routing>>, StoreError>;

    /// A channel's fixed facts (WABA, number, Meta id) by its id, if it exists; answered from
    /// memory when the backend can, since ingest asks it for every event.
    async fn channel_ref(&self, id: &ChannelId) -> Result<Option<ChannelRef>, StoreError>;

    /// The channel Meta knows by `phone_number_id`, if any.
    async fn channel_by_phone_number_id(
        &self,
        phone_number_id: &str,
    ) -> Result<Option<ChannelRef>, StoreError>;

    /// Stores events and, for each routable one, its primary delivery, durably, in order.
    ///
    /// With `claim_until`, the new deliveries are leased to this node until then (it will
    /// attempt them from memory at once); without, they wait for [`Store::claim_due`].
    async fn save_events(
        &self,
        events: Vec<NewEvent>,
        claim_until: Option<i64>,
    ) -> Result<Vec<SavedEvent>, StoreError>;

    /// Leases up to `limit` deliveries due at `now` until `lease_until`, oldest due first,
    /// and no more than fit in `max_bytes` of the engine's memory budget ([`memory_cost`]
    /// each, summed in claim order).
    async fn claim_due(
        &self,
        now: i64,
        limit: usize,
        max_bytes: usize,
        lease_until: i64,
    ) -> Result<Vec<DueDelivery>, StoreError>;

    /// Releases the leases of this node's previous run (called at start, when none of its
    /// attempts can still be in flight): with SQLite, every lease; with PostgreSQL, those
    /// held under this node's id, leaving other running nodes' leases alone.
    async fn release_leases(&self) -> Result<u64, StoreError>;

    /// Extends the leases of `held` (deliveries this node holds in memory) until `until`,
    /// each only if it is still held under the same lease; returns the deliveries it could
    /// not renew because their lease is lost (claimed again after it expired), which the
    /// caller must drop from memory. One settled meanwhile under its lease is neither
    /// renewed nor returned.
    async fn renew_leases(
        &self,
        held: Vec<HeldLease>,
        until: i64,
    ) -> Result<Vec<DeliveryId>, StoreError>;

    /// Makes the `parked` deliveries due at `now`, those still pending and not leased (the
    /// engine parked them behind a saturated or paused destination that can take them
    /// again), moving their age windows `age_shift` ms later (the time they were paused does
    /// not age them); returns how many it woke.
    async fn wake_deliveries(
        &self,
        parked: Vec<DeliveryId>,
        now: i64,
        age_shift: i64,
    ) -> Result<u64, StoreError>;

    /// Records an attempt and what follows from it, in one transaction, if the delivery is
    /// still held under `outcome.lease` (by this node); returns the extra deliveries it
    /// created (after a 200 of a primary delivery). A lease lost meanwhile changes nothing
    /// ([`Settled::LeaseLost`]). Settling again under a lease already settled (a re-run
    /// after an answer was lost) records nothing new and returns the extras still leased.
    async fn settle(&self, outcome: Outcome) -> Result<Settled, StoreError>;

    /// Every configuration that sends deliveries somewhere (the admin API groups them by
    /// destination).
    async fn configured_routes(&self) -> Result<Vec<ConfiguredRoute>, StoreError>;

    /// Pauses a destination; `false` when it was paused already (nothing changed).
    async fn pause_destination(&self, pause: DestinationPause) -> Result<bool, StoreError>;

    /// Resumes a destination; its pause, or `None` when it was not paused.
    async fn resume_destination(
        &self,
        id: &DestinationId,
    ) -> Result<Option<DestinationPause>, StoreError>;

    /// Makes every delivery parked behind the paused destination `id` due at `now`, their
    /// age windows moved `age_shift` ms later (a pause does not age them); returns how many.
    async fn wake_paused(
        &self,
        id: &DestinationId,
        now: i64,
        age_shift: i64,
    ) -> Result<u64, StoreError>;

    /// Every paused destination.
    async fn paused_destinations(&self) -> Result<Vec<DestinationPause>, StoreError>;

    /// The pending deliveries, grouped by channel (or partner) and target.
    async fn pending_groups(&self) -> Result<Vec<PendingGroup>, StoreError>;

    /// Puts a failed or dropped delivery back in the queue, due now, with a new age window.
    async fn retry_delivery(&self, id: DeliveryId, now: i64) -> Result<(), StoreError>;

    /// Puts every delivery in `state` (failed or dropped) back in the queue, optionally only
    /// those of one channel or partner, due now with a new age window; returns how many.
    async fn retry_deliveries(
        &self,
        state: DeliveryState,
        channel: Option<ChannelId>,
        partner: Option<PartnerId>,
        now: i64,
    ) -> Result<u64, StoreError>;

    /// Puts every delivery matching `filter` that is not pending back in the queue, as
    /// [`Store::retry_delivery`] does (due `now`, a new age window), in one transaction; or,
    /// with `filter.dry_run`, only counts them. Re-queued deliveries are routed with the
    /// configuration of their next attempt.
    async fn recover_deliveries(
        &self,
        filter: RecoverFilter,
        now: i64,
    ) -> Result<Recovered, StoreError>;

    /// An event with its deliveries and every attempt of each.
    async fn event(&self, id: EventId) -> Result<Option<EventRecord>, StoreError>;

    /// Events matching `filter`, by ascending id, after `filter.after`.
    async fn events(&self, filter: EventFilter) -> Result<Vec<EventSummary>, StoreError>;

    /// Deliveries matching `filter`, by ascending id, after `filter.after`.
    async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Deletes up to `limit` events received before `before` (ms since the epoch) that have
    /// no pending delivery, with their deliveries and attempts; returns how many it deleted.
    async fn purge_finished(&self, before: i64, limit: usize) -> Result<u64, StoreError>;

    /// Empties the payloads of finished events received before `before` (ms since the
    /// epoch), up to `limit` events past the purge's persisted cursor, and records `now` as
    /// when; the events' metadata, deliveries and attempts stay. A purged event is never
    /// sent again: requeues skip it.
    async fn purge_payloads(
        &self,
        before: i64,
        limit: usize,
        now: i64,
    ) -> Result<PayloadPurge, StoreError>;

    /// Counters of the write path since the store opened.
    fn write_stats(&self) -> WriteStats;

    /// Whether the connection that keeps cached configuration coherent across nodes is up
    /// (PostgreSQL's listener); `None` for a store whose cache needs none (SQLite).
    fn config_listener_up(&self) -> Option<bool> {
        None
    }

    /// The partner that owns a presented Partner API key, if any.
    async fn partner_by_key(&self, key_hash: &KeyHash)
        -> Result<Option<PartnerRecord>, StoreError>;

    /// A partner by id, if it exists.
    async fn partner(&self, id: &PartnerId) -> Result<Option<PartnerRecord>, StoreError>;

    /// Sets (`Some`) or removes (`None`) the partner webhook URL; returns the partner.
    async fn set_partner_webhook_url(
        &self,
        id: &PartnerId,
        url: Option<WebhookUrl>,
    ) -> Result<PartnerRecord, StoreError>;

    /// Replaces the partner webhook headers; returns the partner.
    async fn set_partner_webhook_headers(
        &self,
        id: &PartnerId,
        headers: WebhookHeaders,
    ) -> Result<PartnerRecord, StoreError>;

    /// Sets the secret that signs the partner's events.
    async fn set_partner_signing_secret(
        &self,
        id: &PartnerId,
        secret: String,
    ) -> Result<(), StoreError>;

    /// The WABA's owner, webhook and signing secret, if the WABA exists (read from the
    /// database each time: WABA-level notifications are rare).
    async fn waba_route(&self, waba: WabaId) -> Result<Option<WabaRoute>, StoreError>;

    /// Sets the secret that signs the WABA's WABA-level notifications.
    async fn set_waba_signing_secret(&self, waba: WabaId, secret: String)
        -> Result<(), StoreError>;

    /// A page of partners by ascending id (keyset on the primary key), with their WABA
    /// counts: what operators browse and the CLI lists.
    async fn list_partners(&self, filter: PartnerFilter)
        -> Result<Vec<PartnerListing>, StoreError>;

    /// A page of WABAs by ascending id, optionally of one partner, with their channel counts.
    async fn list_wabas(&self, filter: WabaFilter) -> Result<Vec<WabaListing>, StoreError>;

    /// A page of channels by ascending id, filtered by partner, WABA or phone prefix, with
    /// their owner and current route (one query: no read per channel).
    async fn list_channels(&self, filter: ChannelFilter)
        -> Result<Vec<ChannelListing>, StoreError>;

    /// The events and attempts recorded after `from`, at most `limit` of each, oldest
    /// first: what the live stream missed while its client was away.
    async fn replay(&self, from: ReplayFrom, limit: usize) -> Result<Replay, StoreError>;
}

/// Opens the database named by `url`, creating and migrating it if needed; `node` names
/// this node's leases on a shared (PostgreSQL) database.
pub async fn open(url: &DatabaseUrl, node: &str) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        DatabaseUrl::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path).await?)),
        DatabaseUrl::Postgres(url) => Ok(Arc::new(PostgresStore::open(url.expose(), node).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_does_not_answer_in_time_is_unavailable() {
        let hung = std::future::pending::<Result<(), StoreError>>();
        let error = within(Duration::from_millis(10), hung).await.unwrap_err();
        assert!(error.is_unavailable(), "{error:?}");
        let answered = within(Duration::from_secs(5), async { Ok::<_, StoreError>(7) });
        assert_eq!(answered.await.unwrap(), 7);
    }

    #[test]
    fn a_full_read_only_or_busy_sqlite_database_is_unavailable_a_bad_statement_is_not() {
        let failure = |code| {
            let error = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
            StoreError::from(error).is_unavailable()
        };
        for code in [
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_READONLY,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_CANTOPEN,
            rusqlite::ffi::SQLITE_BUSY,
        ] {
            assert!(failure(code), "code {code}");
        }
        assert!(!failure(rusqlite::ffi::SQLITE_CONSTRAINT));
        assert!(!failure(rusqlite::ffi::SQLITE_ERROR));
        assert!(!StoreError::from(rusqlite::Error::QueryReturnedNoRows).is_unavailable());
    }
}
