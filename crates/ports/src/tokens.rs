//! Refresh-token storage and the access-token blacklist.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use strata_domain::{RefreshTokenRecord, Session, UserId};
use uuid::Uuid;

use crate::PortError;

/// The result of trying to exchange a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The old token was marked rotated and the new one stored, atomically.
    Rotated,
    /// Another request rotated or revoked the old token first: treat as reuse.
    AlreadyUsed,
}

/// Durable storage of refresh tokens (by digest).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait RefreshTokenRepository: Send + Sync + 'static {
    /// Stores a new token.
    async fn insert(&self, record: &RefreshTokenRecord) -> Result<(), PortError>;
    /// The token with this SHA-256 digest, `Ok(None)` when unknown.
    async fn find_by_hash(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<RefreshTokenRecord>, PortError>;
    /// In one transaction: marks `old_id` rotated at `now` if it is neither rotated nor revoked,
    /// and stores `new`. [`RotateOutcome::AlreadyUsed`] (and nothing stored) when the old token
    /// was no longer usable, so that two concurrent refreshes with one token cannot both win.
    async fn rotate(
        &self,
        old_id: Uuid,
        new: &RefreshTokenRecord,
        now: DateTime<Utc>,
    ) -> Result<RotateOutcome, PortError>;
    /// Revokes every token of the family; revoking an unknown or revoked family succeeds.
    async fn revoke_family(&self, family_id: Uuid, now: DateTime<Utc>) -> Result<(), PortError>;
    /// Revokes every token of the user except those of `except_family` (the caller's own session).
    async fn revoke_all_for_user(
        &self,
        user_id: UserId,
        except_family: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<(), PortError>;
    /// The user's live sessions at `now` (family not revoked, its live token unexpired), most
    /// recently active first, at most [`MAX_LISTED_SESSIONS`] of them; `current` is left false.
    async fn sessions(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Session>, PortError>;
    /// Revokes the family if it is the user's and live at `now`, and says whether it did: `false`
    /// for an unknown, ended or expired family and for another user's alike.
    async fn revoke_user_family(
        &self,
        user_id: UserId,
        family_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, PortError>;
}

/// How many sessions [`RefreshTokenRepository::sessions`] lists at most: far more than anyone
/// uses at once, and a bound on the answer whatever a script logging in in a loop leaves behind.
pub const MAX_LISTED_SESSIONS: usize = 100;

/// What the revocation list holds against one access token, read in one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenRevocation {
    /// The token itself was revoked (its session logged out).
    pub revoked: bool,
    /// Every token of its user issued before this instant is revoked (a password or role change).
    pub not_before: Option<DateTime<Utc>>,
    /// Every token of its session is revoked (the session was ended from another one, or itself).
    pub session_revoked: bool,
}

/// Access tokens revoked before their expiry, shared by every instance: one token by its `jti`,
/// every token of one session, or every token of a user issued before an instant.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait TokenBlacklist: Send + Sync + 'static {
    /// Refuses the token `jti` of `user` for `ttl`, which the caller makes outlast every
    /// verifier's acceptance of the token. A zero `ttl` needs no entry and succeeds.
    async fn revoke(&self, user: UserId, jti: Uuid, ttl: Duration) -> Result<(), PortError>;
    /// Refuses every token of `user` issued before `instant`, for `ttl`. A later instant already
    /// recorded is kept: the user's not-before never moves back.
    async fn revoke_issued_before(
        &self,
        user: UserId,
        instant: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<(), PortError>;
    /// Refuses every token of `user` in session `session`, for `ttl`. A zero `ttl` needs no entry
    /// and succeeds.
    async fn revoke_session(
        &self,
        user: UserId,
        session: Uuid,
        ttl: Duration,
    ) -> Result<(), PortError>;
    /// Whether the token `jti` of `user` in session `session` was revoked, itself or with its
    /// session, and the user's not-before instant: one round trip.
    async fn lookup(
        &self,
        user: UserId,
        session: Uuid,
        jti: Uuid,
    ) -> Result<TokenRevocation, PortError>;
}
