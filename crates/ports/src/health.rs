//! Readiness probes of the dependencies.

use async_trait::async_trait;

use crate::PortError;

/// A dependency that readiness pings.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait HealthCheck: Send + Sync + 'static {
    /// A short, stable name for reports (`postgres`, `redis`).
    fn name(&self) -> &'static str;
    /// Succeeds when the dependency answers a trivial request; the caller applies the timeout.
    async fn ping(&self) -> Result<(), PortError>;
}
