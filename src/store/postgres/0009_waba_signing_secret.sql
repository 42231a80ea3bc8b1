-- The secret that signs a WABA's WABA-level notifications (account_update, …) to its webhook.
ALTER TABLE wabas ADD COLUMN signing_secret TEXT;
