//! The infrastructure failure every port method may return.

/// An infrastructure failure behind a port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The dependency did not answer in time or refused the connection (pool acquire timeout,
    /// server down). Transient: the request may be retried; the HTTP edge answers 503.
    #[error("dependency unavailable: {0:#}")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else: a bug, a broken invariant or data the adapter cannot read. The HTTP edge
    /// answers 500 and logs the cause chain.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl PortError {
    /// Wraps a transient failure.
    pub fn unavailable(error: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable(error.into())
    }

    /// Wraps an unexpected failure.
    pub fn unexpected(error: impl Into<anyhow::Error>) -> Self {
        Self::Unexpected(error.into())
    }
}
