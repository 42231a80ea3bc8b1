-- Each attempt URL names its destination (scheme, host, port and path, as
-- `DestinationId::of` hashes it), so deliveries can be found by the receiver their attempts
-- went to. The id is computed in Rust: rows stored before this migration are filled at open.
ALTER TABLE attempt_urls ADD COLUMN destination TEXT;
CREATE INDEX attempt_urls_destination ON attempt_urls(destination);
