-- Partner webhook (Partner API) and partner events.
ALTER TABLE partners ADD COLUMN webhook_url TEXT;
ALTER TABLE partners ADD COLUMN webhook_headers TEXT;
ALTER TABLE partners ADD COLUMN signing_secret TEXT;
ALTER TABLE events ADD COLUMN partner_id TEXT;
ALTER TABLE deliveries ADD COLUMN partner_id TEXT;
