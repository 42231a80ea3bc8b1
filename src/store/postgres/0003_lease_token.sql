-- Lease generations: set anew at each claim, so a settle or a renewal applies only under the
-- lease it was made for (a delivery claimed again after its lease expired is left alone).
ALTER TABLE deliveries ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
-- Idempotent event inserts: a batch whose COMMIT failed ambiguously is run again alone, and
-- an event it had stored already is found by its key instead of being stored twice.
ALTER TABLE events ADD COLUMN idempotency_key BYTEA;
CREATE UNIQUE INDEX events_idempotency_key ON events(idempotency_key);
