//! The ports of Strata's hexagon: async traits for everything a use case needs from outside.
//!
//! Each trait is `Send + Sync` and object-safe so the composition root can hand services an
//! `Arc<dyn Trait>`. Method docs say what an adapter returns on not-found, on conflict and on an
//! infrastructure failure. Infrastructure failures are always a [`PortError`]:
//! [`PortError::Unavailable`] when the dependency did not answer in time (the caller answers 503 and
//! may retry), [`PortError::Unexpected`] for anything else (a bug or a broken invariant: 500).
//!
//! With the `mocks` feature every trait has a mockall mock (`MockUserRepository`, ...).

mod cache;
mod error;
mod health;
mod security;
mod system;
mod tokens;
mod users;

pub use cache::Cache;
pub use error::PortError;
pub use health::HealthCheck;
pub use security::{HashError, PasswordHasher, PasswordVerdict};
pub use system::{Clock, IdGenerator};
pub use tokens::{RefreshTokenRepository, RotateOutcome, TokenBlacklist};
pub use users::{
    CreateUserError, NewUserRecord, UserCredentials, UserPageKey, UserRepository, UserUpdate,
};

#[cfg(feature = "mocks")]
pub use cache::MockCache;
#[cfg(feature = "mocks")]
pub use health::MockHealthCheck;
#[cfg(feature = "mocks")]
pub use security::MockPasswordHasher;
#[cfg(feature = "mocks")]
pub use system::{MockClock, MockIdGenerator};
#[cfg(feature = "mocks")]
pub use tokens::{MockRefreshTokenRepository, MockTokenBlacklist};
#[cfg(feature = "mocks")]
pub use users::MockUserRepository;
