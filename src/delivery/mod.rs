//! Delivery: from a durable delivery row to an HTTP POST and back to a durable outcome.
//!
//! `dispatch` claims due work and runs each delivery as a task; `route` picks its
//! destination from the current configuration; `attempt` makes one HTTP try (resolving names
//! on `dns`'s own threads); `backoff` decides when to try again.

mod attempt;
mod backoff;
mod dispatch;
mod dns;
mod lease;
mod route;

pub use attempt::{signature, AttemptResult, Attempter, ClientError};
pub use backoff::RetryPolicy;
pub use dispatch::{Engine, EngineSettings};
