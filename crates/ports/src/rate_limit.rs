//! Request budgets shared by every instance.

use std::time::Duration;

use async_trait::async_trait;

use crate::PortError;

/// A budget: at most `limit` requests in any window of `window` (sliding, not fixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub limit: u32,
    /// The window's length.
    pub window: Duration,
}

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// True when the request fits the budget (and was counted).
    pub allowed: bool,
    /// The budget's limit.
    pub limit: u32,
    /// Requests still allowed in the current window after this one.
    pub remaining: u32,
    /// Until the oldest counted request leaves the window (a slot frees): for a refused request,
    /// how long to wait before retrying.
    pub reset_after: Duration,
}

/// A sliding-window limiter keyed by caller.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one request against `key`'s budget, atomically, unless the budget is spent.
    async fn check(&self, key: &str, limit: RateLimit) -> Result<RateDecision, PortError>;
}
