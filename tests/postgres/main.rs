//! The integration suite of `tests/api` against PostgreSQL: the same modules, each test on
//! a fresh database of a throwaway cluster that this test run starts (`postgres.rs`).

/// The database this binary runs the suite against.
pub const BACKEND: helpers::Backend = helpers::Backend::Postgres;

#[path = "../api/admin.rs"]
mod admin;
mod ambiguous;
#[path = "../api/bad_input.rs"]
mod bad_input;
mod batch;
#[path = "../api/cli.rs"]
mod cli;
#[path = "../api/cli_client.rs"]
mod cli_client;
#[path = "../api/console.rs"]
mod console;
#[path = "../api/corpus.rs"]
mod corpus;
#[path = "../api/crash.rs"]
mod crash;
#[path = "../api/delivery.rs"]
mod delivery;
#[path = "../api/destinations.rs"]
mod destinations;
#[path = "../api/guard.rs"]
mod guard;
#[path = "../api/headers.rs"]
mod headers;
#[path = "../api/helpers.rs"]
mod helpers;
#[path = "../api/leases.rs"]
mod leases;
mod listener;
#[path = "../api/listing.rs"]
mod listing;
#[path = "../api/load.rs"]
mod load;
#[path = "../api/meta.rs"]
mod meta;
#[path = "../api/metrics.rs"]
mod metrics;
#[path = "../api/multi_webhook.rs"]
mod multi_webhook;
mod node_loss;
mod nodes;
#[path = "../api/ordering.rs"]
mod ordering;
mod ordering_nodes;
mod outage;
#[path = "../api/partner.rs"]
mod partner;
#[path = "../api/payload_retention.rs"]
mod payload_retention;
#[path = "../api/phone_webhook.rs"]
mod phone_webhook;
#[path = "../api/postgres.rs"]
mod postgres;
mod proxy;
#[path = "../api/receiver.rs"]
mod receiver;
#[path = "../api/recover.rs"]
mod recover;
mod retention;
mod rolling;
#[path = "../api/service.rs"]
mod service;
#[path = "../api/stream.rs"]
mod stream;
mod tls;
#[path = "../api/traces.rs"]
mod traces;
#[path = "../api/waba_level.rs"]
mod waba_level;
#[path = "../api/waba_webhook.rs"]
mod waba_webhook;
