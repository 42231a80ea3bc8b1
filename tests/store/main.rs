//! The store-level conformance suite: every `Store` operation, written once and run against
//! both backends (`name::sqlite` on a temp SQLite file, `name::postgres` on a fresh database
//! of the throwaway cluster `tests/api/postgres.rs` starts), opened through `store::open`.
//! Where the backends differ, the test asserts the contract, not either backend.
//!
//! Operations, and where each is tested: ping, write_stats, config_listener_up (`service`);
//! create_partner, create_waba, create_channel, channel, channel_by_key, channel_ref,
//! channel_by_phone_number_id, replace_channel_key, partner, partner_by_key (`provisioning`);
//! set_phone_webhook, waba_webhook, set_waba_webhook, change_multi_webhook, route, routing,
//! set_signing_secret, configured_routes, set_partner_webhook_url, set_partner_webhook_headers,
//! set_partner_signing_secret, waba_route, set_waba_signing_secret (`config`); save_events,
//! claim_due, release_leases, renew_leases (`claims`); settle (`settle`); wake_deliveries,
//! pause_destination, resume_destination, wake_paused, paused_destinations, set_ordered
//! (`parking`); retry_delivery, retry_deliveries, recover_deliveries (`requeue`); event,
//! events, deliveries, pending_groups, purge_finished, replay (`inspection`); purge_payloads
//! (`retention`); list_partners,
//! list_wabas, list_channels (`listing`); concurrent writes and consumers (`concurrency`); on
//! PostgreSQL, the hot path's plans as the tables grow (`plans`) and its transactions rolled
//! back when their future is dropped (`cancelled`).

mod cancelled;
mod claims;
mod concurrency;
mod config;
mod inspection;
mod listing;
mod parking;
mod payloads;
mod plans;
#[path = "../api/postgres.rs"]
mod postgres;
mod provisioning;
mod requeue;
mod retention;
mod service;
mod settle;
mod support;
