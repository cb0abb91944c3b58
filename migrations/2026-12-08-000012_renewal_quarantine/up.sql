-- A due subscription the renewal cannot read or decide on (a corrupt row, a plan in a currency
-- the domain does not know) is set aside with the reason, so that it never stops the renewal of
-- every other one; the scan skips it until an operator repairs it and clears the mark.
ALTER TABLE subscriptions
    ADD COLUMN renewal_quarantined_at timestamptz,
    ADD COLUMN renewal_error text CHECK (char_length(renewal_error) <= 1000),
    ADD CONSTRAINT subscriptions_quarantine_check
        CHECK ((renewal_quarantined_at IS NULL) = (renewal_error IS NULL));
