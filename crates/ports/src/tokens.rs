//! Refresh-token storage and the access-token blacklist.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use strata_domain::{RefreshTokenRecord, UserId};
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
}

/// Access tokens revoked before their expiry, by `jti`, shared by every instance.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait TokenBlacklist: Send + Sync + 'static {
    /// Blacklists `jti` until `expires_at` (after that the token is refused as expired anyway).
    /// A `jti` whose expiry has passed needs no entry and succeeds.
    async fn revoke(&self, jti: Uuid, expires_at: DateTime<Utc>) -> Result<(), PortError>;
    /// True when `jti` was revoked.
    async fn is_revoked(&self, jti: Uuid) -> Result<bool, PortError>;
}
