//! [`Cache`] on Redis strings with an expiry.

use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use strata_ports::{Cache, PortError};

use crate::connection::RedisConnection;

/// The shared cache, under `<prefix>cache:`.
#[derive(Debug, Clone)]
pub struct RedisCache {
    redis: RedisConnection,
}

impl RedisCache {
    /// A cache on `redis`.
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }

    fn key(&self, key: &str) -> String {
        self.redis.key_of(&["cache:", key])
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<String>, PortError> {
        let key = self.key(key);
        self.redis
            .run(|mut conn| async move { conn.get(key).await })
            .await
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), PortError> {
        let key = self.key(key);
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.redis
            .run(|mut conn| async move { conn.pset_ex::<_, _, ()>(key, value, millis).await })
            .await
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        let key = self.key(key);
        self.redis
            .run(|mut conn| async move { conn.del::<_, ()>(key).await })
            .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), PortError> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = keys.iter().map(|key| self.key(key)).collect();
        // On a cluster the keys may sit in several slots: the cluster client splits the DEL into
        // one per slot, so the keys are not all deleted at one instant, which invalidation does
        // not need (each is deleted before this returns).
        self.redis
            .run(|mut conn| async move { conn.del::<_, ()>(keys).await })
            .await
    }
}
