-- Plans, subscriptions and invoices. Money is integer minor units plus an ISO 4217 code, as
-- everywhere; an invoice's lines are signed (a proration credits the old plan).
CREATE TABLE plans (
    code        text        PRIMARY KEY CHECK (code ~ '^[a-z0-9-]{1,40}$'),
    name        text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    -- The domain's Price range, so that no stored plan is unreadable.
    price_minor bigint      NOT NULL CHECK (price_minor BETWEEN 0 AND 100000000000),
    currency    text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    interval    text        NOT NULL CHECK (interval IN ('month', 'year')),
    active      boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The plans every deployment sells; codes are referenced by clients, so they are data, not seed.
INSERT INTO plans (code, name, price_minor, currency, interval) VALUES
    ('basic-monthly', 'Basic', 999, 'USD', 'month'),
    ('pro-monthly', 'Pro', 2999, 'USD', 'month'),
    ('pro-yearly', 'Pro (yearly)', 29990, 'USD', 'year');

CREATE TABLE subscriptions (
    id                   uuid        PRIMARY KEY,
    user_id              uuid        NOT NULL REFERENCES users (id),
    plan_code            text        NOT NULL REFERENCES plans (code),
    status               text        NOT NULL CHECK (status IN ('active', 'cancelled')),
    anchor               timestamptz NOT NULL,
    current_period_start timestamptz NOT NULL,
    current_period_end   timestamptz NOT NULL,
    cancel_at_period_end boolean     NOT NULL DEFAULT false,
    cancelled_at         timestamptz,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    CONSTRAINT subscriptions_period_check CHECK (current_period_end > current_period_start),
    CONSTRAINT subscriptions_anchor_check CHECK (current_period_start >= anchor),
    -- Ended exactly when it says when.
    CONSTRAINT subscriptions_cancelled_at_check
        CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL)),
    -- The target of the invoices' (subscription_id, user_id) foreign key.
    CONSTRAINT subscriptions_id_user_id_key UNIQUE (id, user_id)
);

-- One non-cancelled subscription per user, under any concurrency.
CREATE UNIQUE INDEX subscriptions_one_live_per_user ON subscriptions (user_id)
    WHERE status <> 'cancelled';
-- A user's most recent subscription, when none is live.
CREATE INDEX subscriptions_user_id_created_at_idx ON subscriptions (user_id, created_at);
-- The renewal scan: active subscriptions whose period has ended, oldest first.
CREATE INDEX subscriptions_renewal_due_idx ON subscriptions (current_period_end)
    WHERE status = 'active';

CREATE TABLE invoices (
    id              uuid        PRIMARY KEY,
    user_id         uuid        NOT NULL REFERENCES users (id),
    subscription_id uuid        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('subscription', 'proration', 'renewal')),
    -- [{"description": text, "amount": {"amount_minor": int, "currency": text}}, ...], read and
    -- written with the invoice, never queried into.
    lines           jsonb       NOT NULL CHECK (jsonb_typeof(lines) = 'array'),
    total_minor     bigint      NOT NULL,
    currency        text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    -- A proration covers the change to the period's end, which may be an empty span.
    CONSTRAINT invoices_period_check CHECK (period_end >= period_start),
    -- An invoice is billed to its subscription's owner.
    CONSTRAINT invoices_subscription_fkey FOREIGN KEY (subscription_id, user_id)
        REFERENCES subscriptions (id, user_id)
);

-- A period is billed once, however many renewal workers run: the database's guarantee.
CREATE UNIQUE INDEX invoices_one_renewal_per_period ON invoices (subscription_id, period_start)
    WHERE kind = 'renewal';
-- A user's invoices, newest first (keyset on created_at, id).
CREATE INDEX invoices_user_id_created_at_id_idx ON invoices (user_id, created_at, id);
