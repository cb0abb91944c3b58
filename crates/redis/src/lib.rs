//! Redis adapters for Strata's ports: the shared cache, the access-token blacklist, the job queue
//! and the rate limiter, on a single Redis server or on a Redis Cluster.
//!
//! Every key is namespaced by a configurable prefix (tests use a random one, so they can share a
//! server). The connection is made lazily and re-made after a drop (by redis' `ConnectionManager`,
//! or its cluster client), so the API starts while Redis is down and recovers by itself when it
//! returns. Every command runs under a timeout; a timeout, a refused or dropped connection, or a
//! cluster that is down or failing over is
//! [`PortError::Unavailable`](strata_ports::PortError::Unavailable).

mod blacklist;
mod cache;
mod connection;
mod invalidation;
mod jobs;
mod rate_limit;
#[cfg(feature = "testing")]
pub mod testing;

pub use blacklist::RedisTokenBlacklist;
pub use cache::RedisCache;
pub use connection::{AnyConnection, RedisConnection, RedisSettings};
pub use invalidation::RedisInvalidations;
pub use jobs::{JobQueueSettings, RedisJobQueue};
pub use rate_limit::RedisRateLimiter;
