-- Users. Emails are stored normalised (trimmed, lower case) by the domain; the unique index on
-- lower(email) makes case-insensitive uniqueness a database guarantee as well.
CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    display_name  text        NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 80),
    role          text        NOT NULL DEFAULT 'customer' CHECK (role IN ('customer', 'admin')),
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

-- Keyset pagination of the admin list: ORDER BY created_at, id.
CREATE INDEX users_created_at_id_idx ON users (created_at, id);
