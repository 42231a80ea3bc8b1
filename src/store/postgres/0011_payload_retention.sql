-- Payloads of finished events are purged sooner than the events themselves
-- (--payload-retention-hours): the payload is emptied and the time it was purged kept.
ALTER TABLE events ADD COLUMN payload_purged_at BIGINT;
-- Where each maintenance pass got to, so a pass never scans again what it has handled.
CREATE TABLE maintenance (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
