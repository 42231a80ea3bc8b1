-- Provisioning and webhook configuration.
CREATE TABLE partners (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    api_key_hash TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL
);

CREATE TABLE wabas (
    id              INTEGER PRIMARY KEY,
    partner_id      TEXT NOT NULL REFERENCES partners(id),
    webhook_url     TEXT,
    webhook_headers TEXT,
    override_all    INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
);
CREATE INDEX wabas_partner ON wabas(partner_id);

CREATE TABLE channels (
    id              TEXT PRIMARY KEY,
    waba_id         INTEGER NOT NULL REFERENCES wabas(id),
    phone_number    TEXT NOT NULL UNIQUE,
    phone_number_id TEXT NOT NULL UNIQUE,
    api_key_hash    TEXT NOT NULL UNIQUE,
    webhook_url     TEXT,
    webhook_headers TEXT,
    multi_webhook   TEXT NOT NULL DEFAULT '{"enabled":false,"destinations":[]}',
    created_at      INTEGER NOT NULL
);
CREATE INDEX channels_waba ON channels(waba_id);
