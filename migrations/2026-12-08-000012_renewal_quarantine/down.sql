ALTER TABLE subscriptions
    DROP CONSTRAINT subscriptions_quarantine_check,
    DROP COLUMN renewal_error,
    DROP COLUMN renewal_quarantined_at;
