//! Password hashing.

use async_trait::async_trait;
use strata_domain::Password;

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordVerdict {
    /// The password matches.
    pub matches: bool,
    /// The hash was made with other parameters than the current ones and should be replaced.
    pub needs_rehash: bool,
}

/// Why hashing could not be done.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing slot is busy and none freed up in time: shed load (503), do not queue forever.
    #[error("password hashing is overloaded")]
    Overloaded,
    /// The stored hash is unreadable, or hashing failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Hashes and verifies passwords. Implementations must keep the CPU-heavy work off the async
/// workers and bound how much of it runs at once.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync + 'static {
    /// A self-describing hash (PHC string: algorithm, version and parameters included).
    async fn hash(&self, password: &Password) -> Result<String, HashError>;
    /// Checks `password` against `stored`.
    async fn verify(&self, password: &Password, stored: &str)
    -> Result<PasswordVerdict, HashError>;
    /// Spends the same time as a real verification and always fails, so that an unknown account
    /// cannot be told from a wrong password by timing.
    async fn verify_dummy(&self, password: &Password) -> Result<(), HashError>;
}
