-- A user's sessions are the live tokens of their families. Every rotated and revoked token stays
-- in the table until it expires, so reading them through refresh_tokens_user_id_idx grows with
-- the user's history; this index holds the live tokens only, in the list's order.
CREATE INDEX refresh_tokens_live_by_user_idx ON refresh_tokens (user_id, created_at DESC, family_id DESC)
    WHERE rotated_at IS NULL AND revoked_at IS NULL;
-- A session's sign-in is its family's first token: one index entry, not every rotation.
CREATE INDEX refresh_tokens_family_id_created_at_idx ON refresh_tokens (family_id, created_at);
DROP INDEX refresh_tokens_family_id_idx;
