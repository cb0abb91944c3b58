//! A shared cache of serialised values with a time to live.

use std::time::Duration;

use async_trait::async_trait;

use crate::PortError;

/// A key-value cache shared by every instance (cache-aside: a miss is not an error).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// The cached value, `Ok(None)` on a miss; `Err` when the cache cannot be reached, which
    /// callers treat as a miss.
    async fn get(&self, key: &str) -> Result<Option<String>, PortError>;
    /// Stores `value` for `ttl`, replacing any previous value.
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), PortError>;
    /// Removes the key; removing a missing key succeeds.
    async fn delete(&self, key: &str) -> Result<(), PortError>;
    /// Removes every key in one round trip; missing keys are fine.
    async fn delete_many(&self, keys: &[String]) -> Result<(), PortError>;
}

/// Tells every instance (this one included) which cached keys a write made stale, so that
/// in-process copies go with the shared ones.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait InvalidationPublisher: Send + Sync + 'static {
    /// Announces that `keys` changed; delivery is best effort (a lost announcement is bounded by
    /// the in-process copies' time to live).
    async fn publish(&self, keys: &[String]) -> Result<(), PortError>;
}

/// Receives the invalidations announced by every instance: implemented by the in-process cache,
/// driven by the adapter that listens for announcements.
pub trait InvalidationListener: Send + Sync + 'static {
    /// `keys` changed somewhere: drop any copy of them.
    fn invalidated(&self, keys: &[String]);
    /// The feed of announcements is up (`true`) or was interrupted (`false`). While it is down,
    /// announcements may be missed, so nothing held in process can be trusted.
    fn feed(&self, up: bool);
}
