-- Paused destinations (a receiver that answered nothing but failures for --pause-after-s, or
-- paused by an operator): their deliveries wait, unattempted but for probes, until resumed.
CREATE TABLE destination_pauses (
    id        TEXT PRIMARY KEY,
    url       TEXT NOT NULL,
    reason    TEXT NOT NULL,
    paused_at BIGINT NOT NULL
);
-- The paused destination a delivery waits behind, so a resume wakes it (after a restart too).
ALTER TABLE deliveries ADD COLUMN parked_behind TEXT;
CREATE INDEX deliveries_parked_behind ON deliveries(parked_behind) WHERE parked_behind IS NOT NULL;
