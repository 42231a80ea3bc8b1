-- The delay a 429 or 503 asked for with Retry-After (ms, as the receiver said it, before
-- the clamp), shown in the attempt log; NULL when none was asked.
ALTER TABLE attempts ADD COLUMN retry_after_ms INTEGER;
