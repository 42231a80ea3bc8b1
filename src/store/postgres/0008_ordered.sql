-- Ordered delivery per number (opt-in): while a channel's `ordered` is on, its primary
-- deliveries carry `ordered = 1` and only the lowest-id pending one is claimable; the
-- others are held (`next_attempt_at` = the far-future sentinel `store::HELD_UNTIL`).
ALTER TABLE channels ADD COLUMN ordered BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE deliveries ADD COLUMN ordered SMALLINT;
-- Partial: only pending ordered deliveries are in it, so no other insert or settle pays.
CREATE INDEX deliveries_ordered ON deliveries(channel_id, id)
    WHERE ordered IS NOT NULL AND state = 'pending';
-- The ordered deliveries in flight (a few at most): a claim checks none of the channel's is.
CREATE INDEX deliveries_ordered_leased ON deliveries(channel_id)
    WHERE ordered IS NOT NULL AND state = 'pending' AND leased_until IS NOT NULL;
