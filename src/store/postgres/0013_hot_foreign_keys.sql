-- The hot path's references are kept by the statements that write them, not by foreign keys:
-- an attempt is inserted from the delivery row its settle has just updated (and locked), a
-- delivery with the event its statement inserts, and attempt URLs are never deleted. Their
-- checks cost a query per row (a third of the settle's time, most of it the key-share lock
-- every attempt of a destination took on its one `attempt_urls` row, shared through a
-- multixact). The purge deletes attempts, deliveries and events together, children first.
ALTER TABLE attempts DROP CONSTRAINT IF EXISTS attempts_url_id_fkey;
ALTER TABLE attempts DROP CONSTRAINT IF EXISTS attempts_delivery_id_fkey;
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_event_id_fkey;
