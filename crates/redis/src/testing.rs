//! Test support: a connection to the test Redis under a random key prefix.

use std::time::Duration;

use crate::connection::{RedisConnection, RedisSettings};

/// The server tests use: `REDIS_URL`, or the local default.
pub fn server_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Settings for one test: the test server and a prefix no other test shares.
pub fn isolated_settings() -> RedisSettings {
    RedisSettings {
        url: server_url(),
        key_prefix: format!("test:{}:", uuid::Uuid::new_v4().simple()),
        command_timeout: Duration::from_secs(2),
    }
}

/// A connection for one test.
pub fn isolated() -> anyhow::Result<RedisConnection> {
    RedisConnection::new(&isolated_settings())
}
