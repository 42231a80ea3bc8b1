-- Switchboard on PostgreSQL: the same tables as the SQLite backend (its migrations 0001-0005
-- folded into one), with identity columns for ids and milliseconds since the epoch in BIGINT.
CREATE TABLE partners (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    api_key_hash    TEXT NOT NULL UNIQUE,
    webhook_url     TEXT,
    webhook_headers TEXT,
    signing_secret  TEXT,
    created_at      BIGINT NOT NULL
);

CREATE TABLE wabas (
    id              BIGINT PRIMARY KEY,
    partner_id      TEXT NOT NULL REFERENCES partners(id),
    webhook_url     TEXT,
    webhook_headers TEXT,
    override_all    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      BIGINT NOT NULL
);
CREATE INDEX wabas_partner ON wabas(partner_id);

CREATE TABLE channels (
    id              TEXT PRIMARY KEY,
    seq             BIGINT GENERATED ALWAYS AS IDENTITY,
    waba_id         BIGINT NOT NULL REFERENCES wabas(id),
    phone_number    TEXT NOT NULL UNIQUE,
    phone_number_id TEXT NOT NULL UNIQUE,
    api_key_hash    TEXT NOT NULL UNIQUE,
    webhook_url     TEXT,
    webhook_headers TEXT,
    multi_webhook   TEXT NOT NULL DEFAULT '{"enabled":false,"destinations":[]}',
    signing_secret  TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX channels_waba ON channels(waba_id);

CREATE TABLE events (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            TEXT NOT NULL,
    channel_id      TEXT,
    partner_id      TEXT,
    phone_number_id TEXT,
    payload         BYTEA NOT NULL,
    received_at     BIGINT NOT NULL
);
CREATE INDEX events_unroutable ON events(id) WHERE kind = 'unroutable';

CREATE TABLE deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        BIGINT NOT NULL REFERENCES events(id),
    channel_id      TEXT,
    partner_id      TEXT,
    target          TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    leased_until    BIGINT,
    window_start    BIGINT NOT NULL,
    window_attempts BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_event ON deliveries(event_id);
CREATE INDEX deliveries_state ON deliveries(state, id);

CREATE TABLE attempts (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id      BIGINT NOT NULL REFERENCES deliveries(id),
    number           BIGINT NOT NULL,
    started_at       BIGINT NOT NULL,
    duration_ms      BIGINT NOT NULL,
    url              TEXT,
    status           BIGINT,
    error            TEXT,
    response_excerpt TEXT
);
CREATE INDEX attempts_delivery ON attempts(delivery_id);
