-- Unroutable events are rare: a partial index lists them without scanning every event.
CREATE INDEX IF NOT EXISTS events_unroutable ON events(id) WHERE kind = 'unroutable';
