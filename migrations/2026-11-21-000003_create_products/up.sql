-- Products. Money is integer minor units plus an ISO 4217 code; stock can never go negative, which
-- the domain checks first and this CHECK guarantees under any concurrency.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE products (
    id           uuid        PRIMARY KEY,
    sku          text        NOT NULL CHECK (sku ~ '^[A-Z0-9-]{3,32}$'),
    name         text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    description  text        NOT NULL DEFAULT '' CHECK (char_length(description) <= 5000),
    price_minor  bigint      NOT NULL CHECK (price_minor >= 0),
    currency     text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    stock        integer     NOT NULL CHECK (stock BETWEEN 0 AND 1000000000),
    active       boolean     NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT products_sku_key UNIQUE (sku)
);

-- Keyset pagination: ORDER BY (created_at, id) or (price_minor, id), either direction.
CREATE INDEX products_created_at_id_idx ON products (created_at, id);
CREATE INDEX products_price_id_idx ON products (price_minor, id);

-- `q` matches name or sku case-insensitively anywhere in the text (ILIKE '%q%').
CREATE INDEX products_name_trgm_idx ON products USING gin (name gin_trgm_ops);
CREATE INDEX products_sku_trgm_idx ON products USING gin (sku gin_trgm_ops);
