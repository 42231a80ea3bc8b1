-- Durable delivery: events, their deliveries (one per target), and every attempt.
ALTER TABLE channels ADD COLUMN signing_secret TEXT;

CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL,
    channel_id      TEXT,
    phone_number_id TEXT,
    payload         BLOB NOT NULL,
    received_at     INTEGER NOT NULL
);
CREATE INDEX events_kind ON events(kind, id);

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    event_id        INTEGER NOT NULL REFERENCES events(id),
    channel_id      TEXT,
    target          TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    leased_until    INTEGER,
    window_start    INTEGER NOT NULL,
    window_attempts INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_event ON deliveries(event_id);
CREATE INDEX deliveries_state ON deliveries(state, id);

CREATE TABLE attempts (
    id               INTEGER PRIMARY KEY,
    delivery_id      INTEGER NOT NULL REFERENCES deliveries(id),
    number           INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    duration_ms      INTEGER NOT NULL,
    url              TEXT,
    status           INTEGER,
    error            TEXT,
    response_excerpt TEXT
);
CREATE INDEX attempts_delivery ON attempts(delivery_id);
