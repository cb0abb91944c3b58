-- Orders and their lines. A line captures the product's sku, name and unit price at order time, so
-- an order reads the same whatever happens to the catalog later.
CREATE TABLE orders (
    id          uuid        PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES users (id),
    status      text        NOT NULL CHECK (status IN ('placed', 'fulfilled', 'cancelled')),
    currency    text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    total_minor bigint      NOT NULL CHECK (total_minor >= 0),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- Newest first, own orders (user_id = $1) or everyone's (admin).
CREATE INDEX orders_user_id_created_at_id_idx ON orders (user_id, created_at, id);
CREATE INDEX orders_created_at_id_idx ON orders (created_at, id);

CREATE TABLE order_items (
    order_id         uuid     NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    position         smallint NOT NULL CHECK (position BETWEEN 0 AND 49),
    product_id       uuid     NOT NULL REFERENCES products (id),
    sku              text     NOT NULL,
    name             text     NOT NULL,
    unit_price_minor bigint   NOT NULL CHECK (unit_price_minor >= 0),
    quantity         integer  NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    line_total_minor bigint   NOT NULL CHECK (line_total_minor = unit_price_minor * quantity),
    PRIMARY KEY (order_id, position),
    CONSTRAINT order_items_order_id_product_id_key UNIQUE (order_id, product_id)
);

CREATE INDEX order_items_product_id_idx ON order_items (product_id);

-- Idempotency-Key records: the anchor that makes a retried POST replay instead of acting twice.
-- Written in the same transaction as the effect, so a record exists exactly when the effect does.
-- The fingerprint is a digest of the operation and its validated body; the response is the first
-- answer, replayed verbatim.
CREATE TABLE idempotency_keys (
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key         text        NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    operation   text        NOT NULL,
    fingerprint text        NOT NULL,
    resource_id uuid,
    response    jsonb,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);

CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
