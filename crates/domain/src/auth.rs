//! Refresh-token sessions: the rules that decide whether a presented refresh token may be used.
//!
//! A login starts a *family*; each refresh rotates the token, marking the old one used and issuing a
//! new one in the same family. Presenting a token that was already rotated means it leaked (the
//! legitimate client holds the newer one), so the whole family is revoked.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::user::UserId;

/// A stored refresh token (only its SHA-256 digest is kept, never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    /// Identifier of this token.
    pub id: Uuid,
    /// The login session the token belongs to.
    pub family_id: Uuid,
    /// Owner.
    pub user_id: UserId,
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
    /// When it was exchanged for a newer token, if it was.
    pub rotated_at: Option<DateTime<Utc>>,
    /// When its family was revoked (logout, reuse, password change), if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What a presented refresh token amounts to at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshTokenState {
    /// May be exchanged for a new pair.
    Usable,
    /// Its family was revoked.
    Revoked,
    /// It was already exchanged: a replay, so the family must be revoked.
    Reused,
    /// Past its expiry.
    Expired,
}

impl RefreshTokenRecord {
    /// Classifies the token at `now`. Revocation wins over reuse, reuse over expiry, so that a
    /// replayed token always triggers family revocation even once it has expired.
    ///
    /// ```
    /// use chrono::{Duration, Utc};
    /// use strata_domain::{RefreshTokenRecord, RefreshTokenState, UserId};
    /// use uuid::Uuid;
    ///
    /// let now = Utc::now();
    /// let token = RefreshTokenRecord {
    ///     id: Uuid::now_v7(),
    ///     family_id: Uuid::now_v7(),
    ///     user_id: UserId(Uuid::now_v7()),
    ///     token_hash: vec![0; 32],
    ///     created_at: now,
    ///     expires_at: now + Duration::days(30),
    ///     rotated_at: Some(now),
    ///     revoked_at: None,
    /// };
    /// // Already exchanged once: presenting it again is a replay.
    /// assert_eq!(token.state_at(now), RefreshTokenState::Reused);
    /// ```
    pub fn state_at(&self, now: DateTime<Utc>) -> RefreshTokenState {
        if self.revoked_at.is_some() {
            RefreshTokenState::Revoked
        } else if self.rotated_at.is_some() {
            RefreshTokenState::Reused
        } else if now >= self.expires_at {
            RefreshTokenState::Expired
        } else {
            RefreshTokenState::Usable
        }
    }
}

/// A user's live login session: one refresh-token family, as its user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The family id, which the session's access tokens carry as `sid`.
    pub id: Uuid,
    /// When its first token was issued (the login).
    pub started_at: DateTime<Utc>,
    /// When its newest token was issued (the last refresh, or the login if none).
    pub last_active_at: DateTime<Utc>,
    /// When its live refresh token expires, unless refreshed before.
    pub expires_at: DateTime<Utc>,
    /// Whether the caller's own access token belongs to it; storage cannot know, so it leaves this
    /// false and the use case that knows the caller sets it.
    pub current: bool,
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn record(now: DateTime<Utc>) -> RefreshTokenRecord {
        RefreshTokenRecord {
            id: Uuid::now_v7(),
            family_id: Uuid::now_v7(),
            user_id: UserId(Uuid::now_v7()),
            token_hash: vec![0; 32],
            created_at: now,
            expires_at: now + Duration::days(30),
            rotated_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn a_fresh_token_is_usable_until_it_expires() {
        let now = Utc::now();
        let token = record(now);
        assert_eq!(token.state_at(now), RefreshTokenState::Usable);
        assert_eq!(
            token.state_at(now + Duration::days(30)),
            RefreshTokenState::Expired
        );
    }

    #[test]
    fn a_rotated_token_presented_again_is_a_reuse_even_after_expiry() {
        let now = Utc::now();
        let token = RefreshTokenRecord {
            rotated_at: Some(now),
            ..record(now)
        };
        assert_eq!(token.state_at(now), RefreshTokenState::Reused);
        assert_eq!(
            token.state_at(now + Duration::days(31)),
            RefreshTokenState::Reused
        );
    }

    #[test]
    fn revocation_wins_over_everything() {
        let now = Utc::now();
        let token = RefreshTokenRecord {
            rotated_at: Some(now),
            revoked_at: Some(now),
            ..record(now)
        };
        assert_eq!(token.state_at(now), RefreshTokenState::Revoked);
    }
}
