//! [`TokenBlacklist`] as Redis keys that expire with the tokens they revoke.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use strata_ports::{PortError, TokenBlacklist};
use uuid::Uuid;

use crate::connection::RedisConnection;

/// Revoked access tokens, under `<prefix>revoked:`; each entry lives until its token's expiry, so
/// the set never grows beyond the tokens still alive.
#[derive(Debug, Clone)]
pub struct RedisTokenBlacklist {
    redis: RedisConnection,
}

impl RedisTokenBlacklist {
    /// A blacklist on `redis`.
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }

    fn key(&self, jti: Uuid) -> String {
        self.redis.key_of(&[
            "revoked:",
            jti.hyphenated().encode_lower(&mut Uuid::encode_buffer()),
        ])
    }
}

#[async_trait]
impl TokenBlacklist for RedisTokenBlacklist {
    async fn revoke(&self, jti: Uuid, expires_at: DateTime<Utc>) -> Result<(), PortError> {
        let remaining = (expires_at - Utc::now()).num_milliseconds();
        if remaining <= 0 {
            return Ok(());
        }
        let key = self.key(jti);
        // A second of slack covers clock skew and the verifier's leeway.
        let millis = u64::try_from(remaining)
            .unwrap_or(u64::MAX)
            .saturating_add(1000);
        self.redis
            .run(|mut conn| async move { conn.pset_ex::<_, _, ()>(key, 1u8, millis).await })
            .await
    }

    async fn is_revoked(&self, jti: Uuid) -> Result<bool, PortError> {
        let key = self.key(jti);
        self.redis
            .run(|mut conn| async move { conn.exists(key).await })
            .await
    }
}
