//! Delivery: from a durable delivery row to an HTTP POST and back to a durable outcome.
//!
//! `dispatch` claims due work and runs each delivery as a task; `lease` keeps the leases of
//! the deliveries held in memory (and drops those lost); `route` picks its destination from
//! the current configuration; `gate` limits each destination's share (and parks what does
//! not fit); `attempt` makes one HTTP try (resolving names on `dns`'s own threads);
//! `backoff` decides when to try again; `health` grades each destination's answers; `feed` tells what happens now to
//! the live stream's readers; `outage` pauses the engine while the database is unavailable.

mod attempt;
mod backoff;
mod dispatch;
mod dns;
mod feed;
mod gate;
mod health;
mod lease;
mod lifecycle;
mod notify;
mod outage;
mod pause;
mod route;

pub use attempt::{signature, AttemptResult, Attempter, ClientError};
pub use backoff::RetryPolicy;
pub use dispatch::{Engine, EngineSettings, DEFAULT_LEASE};
pub use feed::{
    AttemptMessage, DeliveryMessage, DestinationMessage, EventMessage, Feed, FeedItem,
    FEED_CAPACITY,
};
pub use health::{DestinationHealth, Grade, Health, WindowFigures};
pub use notify::destination_changed;
pub use outage::Outage;
pub use pause::Pauses;
