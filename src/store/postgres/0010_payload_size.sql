-- Payloads are stored packed (zstd with a dictionary, store/payload.rs): the claims' memory
-- budget needs the unpacked length, which the packed bytes do not show to SQL. NULL for rows
-- stored before: their payload is stored as it came, so its length is the length.
ALTER TABLE events ADD COLUMN payload_size BIGINT;
