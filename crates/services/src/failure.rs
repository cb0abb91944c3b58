//! The infrastructure failures every use case can meet, shared by the per-area error enums.

use strata_ports::{HashError, PortError};

/// An infrastructure failure as a use case reports it.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A dependency is down or overloaded: answer 503 and let the client retry.
    #[error("service unavailable: {0:#}")]
    Unavailable(#[source] anyhow::Error),
    /// A bug or broken invariant: answer 500, log the cause.
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl From<PortError> for Failure {
    fn from(error: PortError) -> Self {
        match error {
            PortError::Unavailable(cause) => Failure::Unavailable(cause),
            PortError::Unexpected(cause) => Failure::Unexpected(cause),
        }
    }
}

impl From<HashError> for Failure {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Overloaded => {
                Failure::Unavailable(anyhow::anyhow!("password hashing is overloaded"))
            }
            HashError::Unexpected(cause) => Failure::Unexpected(cause),
        }
    }
}
