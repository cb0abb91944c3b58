//! [`TokenBlacklist`] as Redis keys that expire once no verifier would accept what they revoke.
//!
//! Three kinds of key, all under the user's hash tag so that the one lookup an authentication
//! makes is a single MGET on a single slot, on a Redis Cluster too:
//!
//! - `<prefix>revoked:{<user>}:<jti>`: one revoked token (a logout);
//! - `<prefix>revoked-session:{<user>}:<session>`: every token of one session (a session ended
//!   from the user's list of sessions);
//! - `<prefix>revoked-before:{<user>}`: the instant, in µs since the epoch, before which every
//!   token of the user is revoked (a password or role change).
//!
//! Each lives for the TTL the caller gives, so the keys never outnumber the tokens still alive.

use std::sync::LazyLock;
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::{AsyncCommands, Script};
use strata_domain::UserId;
use strata_ports::{PortError, TokenBlacklist, TokenRevocation};
use uuid::Uuid;

use crate::connection::RedisConnection;

/// `KEYS[1]`: the user's not-before; `ARGV[1]`: the instant in µs since the epoch; `ARGV[2]`: the
/// TTL in ms. Keeps the later of the stored and the given instant, so that two changes landing in
/// the other order cannot reopen the gap between them, and the longer of the two lifetimes, so
/// that neither change's tokens outlive their revocation. The stored text is written back as it
/// was; Lua compares the instants as doubles, exact for µs timestamps (below 2^53) for another
/// two centuries.
const LATER_NOT_BEFORE_LUA: &str = r"
local stored = redis.call('GET', KEYS[1])
local instant = ARGV[1]
if stored and tonumber(stored) > tonumber(instant) then
  instant = stored
end
local ttl = math.max(tonumber(ARGV[2]), redis.call('PTTL', KEYS[1]))
redis.call('SET', KEYS[1], instant, 'PX', ttl)
return 1
";

static LATER_NOT_BEFORE: LazyLock<Script> = LazyLock::new(|| Script::new(LATER_NOT_BEFORE_LUA));

/// Revoked access tokens, ended sessions and users' not-before instants; see the module
/// documentation.
#[derive(Debug, Clone)]
pub struct RedisTokenBlacklist {
    redis: RedisConnection,
}

impl RedisTokenBlacklist {
    /// A blacklist on `redis`.
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }

    /// The key revoking the token `jti` of `user`.
    pub fn token_key(&self, user: UserId, jti: Uuid) -> String {
        self.redis.key_of(&[
            "revoked:{",
            user.0.hyphenated().encode_lower(&mut Uuid::encode_buffer()),
            "}:",
            jti.hyphenated().encode_lower(&mut Uuid::encode_buffer()),
        ])
    }

    /// The key revoking every token of `user` in `session`.
    pub fn session_key(&self, user: UserId, session: Uuid) -> String {
        self.redis.key_of(&[
            "revoked-session:{",
            user.0.hyphenated().encode_lower(&mut Uuid::encode_buffer()),
            "}:",
            session
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer()),
        ])
    }

    /// The key holding `user`'s not-before instant.
    pub fn not_before_key(&self, user: UserId) -> String {
        self.redis.key_of(&[
            "revoked-before:{",
            user.0.hyphenated().encode_lower(&mut Uuid::encode_buffer()),
            "}",
        ])
    }
}

/// `ttl` in whole ms, rounded up so that an entry never expires early.
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_micros().div_ceil(1_000)).unwrap_or(u64::MAX)
}

#[async_trait]
impl TokenBlacklist for RedisTokenBlacklist {
    async fn revoke(&self, user: UserId, jti: Uuid, ttl: Duration) -> Result<(), PortError> {
        let millis = millis(ttl);
        if millis == 0 {
            return Ok(());
        }
        let key = self.token_key(user, jti);
        self.redis
            .run(|mut conn| async move { conn.pset_ex::<_, _, ()>(key, 1u8, millis).await })
            .await
    }

    async fn revoke_issued_before(
        &self,
        user: UserId,
        instant: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<(), PortError> {
        let millis = millis(ttl);
        if millis == 0 {
            return Ok(());
        }
        let key = self.not_before_key(user);
        let micros = instant.timestamp_micros();
        self.redis
            .run(|mut conn| async move {
                LATER_NOT_BEFORE
                    .key(key)
                    .arg(micros)
                    .arg(millis)
                    .invoke_async::<i64>(&mut conn)
                    .await
            })
            .await
            .map(|_| ())
    }

    async fn revoke_session(
        &self,
        user: UserId,
        session: Uuid,
        ttl: Duration,
    ) -> Result<(), PortError> {
        let millis = millis(ttl);
        if millis == 0 {
            return Ok(());
        }
        // A plain SET: a session gets no token after it ends, so there is no instant to keep the
        // later of, and ending it again asks for the same lifetime from later on.
        let key = self.session_key(user, session);
        self.redis
            .run(|mut conn| async move { conn.pset_ex::<_, _, ()>(key, 1u8, millis).await })
            .await
    }

    async fn lookup(
        &self,
        user: UserId,
        session: Uuid,
        jti: Uuid,
    ) -> Result<TokenRevocation, PortError> {
        let (token, session, not_before) = (
            self.token_key(user, jti),
            self.session_key(user, session),
            self.not_before_key(user),
        );
        let (revoked, session_revoked, not_before): (Option<u8>, Option<u8>, Option<i64>) = self
            .redis
            .run(|mut conn| async move {
                redis::cmd("MGET")
                    .arg(token)
                    .arg(session)
                    .arg(not_before)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let not_before = not_before
            .map(|micros| {
                DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(|| {
                    PortError::unexpected(anyhow!("a not-before of {micros} µs is out of range"))
                })
            })
            .transpose()?;
        Ok(TokenRevocation {
            revoked: revoked.is_some(),
            not_before,
            session_revoked: session_revoked.is_some(),
        })
    }
}
