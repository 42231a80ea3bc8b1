//! Integration tests: the real server on 127.0.0.1 with a real SQLite file, driven over HTTP.
//! `tests/postgres/main.rs` runs the same modules against PostgreSQL.

/// The database this binary runs the suite against.
pub const BACKEND: helpers::Backend = helpers::Backend::Sqlite;

mod admin;
mod backup;
mod bad_input;
mod browser;
mod cli;
mod cli_client;
mod connections;
mod console;
mod corpus;
mod crash;
mod delivery;
mod destinations;
mod guard;
mod headers;
mod helpers;
mod leases;
mod listing;
mod load;
mod meta;
mod metrics;
mod multi_webhook;
mod ordering;
mod outage;
mod packaging;
mod partner;
mod payload_retention;
mod phone_webhook;
mod postgres;
mod readiness;
mod receiver;
mod recover;
mod secrets;
mod service;
mod stream;
mod traces;
mod waba_level;
mod waba_webhook;
