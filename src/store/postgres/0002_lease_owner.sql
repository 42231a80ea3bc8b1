-- Leases name the node that holds them, so a restarting node takes back only its own.
ALTER TABLE deliveries ADD COLUMN leased_by TEXT;
CREATE INDEX deliveries_leased_by ON deliveries(leased_by) WHERE leased_until IS NOT NULL;
