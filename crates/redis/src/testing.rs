//! Test support: a connection to the test Redis under a random key prefix.
//!
//! The tests run against the single server of `REDIS_URL`, or, when [`CLUSTER_URLS_VARIABLE`]
//! names seed nodes, against that Redis Cluster.

use std::time::Duration;

use anyhow::anyhow;

use crate::connection::{AnyConnection, RedisConnection, RedisSettings};

/// Comma-separated seed URLs of a Redis Cluster the tests should run against instead of the
/// single server.
pub const CLUSTER_URLS_VARIABLE: &str = "TEST_REDIS_CLUSTER_URLS";

/// The single server tests use: `REDIS_URL`, or the local default.
pub fn server_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The cluster's seed URLs when the tests run against a cluster.
pub fn cluster_urls() -> Option<String> {
    std::env::var(CLUSTER_URLS_VARIABLE)
        .ok()
        .filter(|urls| !urls.trim().is_empty())
}

/// Settings for one test: the test server (or cluster) and a prefix no other test shares.
pub fn isolated_settings() -> RedisSettings {
    let (url, cluster) = match cluster_urls() {
        Some(urls) => (urls, true),
        None => (server_url(), false),
    };
    RedisSettings {
        url,
        cluster,
        key_prefix: format!("test:{}:", uuid::Uuid::new_v4().simple()),
        command_timeout: Duration::from_secs(2),
    }
}

/// A connection for one test.
pub fn isolated() -> anyhow::Result<RedisConnection> {
    RedisConnection::new(&isolated_settings())
}

/// A connection of the test's own to the test server (or cluster), to look at and tamper with keys
/// behind the adapters' backs.
pub async fn raw() -> anyhow::Result<AnyConnection> {
    isolated()?
        .shared()
        .await
        .map_err(|error| anyhow!("connecting to the test Redis: {error}"))
}
