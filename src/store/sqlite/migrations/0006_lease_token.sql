-- Lease generations: set anew at each claim, so a settle or a renewal applies only under the
-- lease it was made for (a delivery claimed again after its lease expired is left alone).
ALTER TABLE deliveries ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
