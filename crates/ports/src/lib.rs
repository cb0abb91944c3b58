//! The ports of Strata's hexagon: async traits for everything a use case needs from outside.
//!
//! Each trait is `Send + Sync` and object-safe so the composition root can hand services an
//! `Arc<dyn Trait>`. Method docs say what an adapter returns on not-found, on conflict and on an
//! infrastructure failure. Infrastructure failures are always a [`PortError`]:
//! [`PortError::Unavailable`] when the dependency did not answer in time (the caller answers 503 and
//! may retry), [`PortError::Unexpected`] for anything else (a bug or a broken invariant: 500).
//!
//! With the `mocks` feature every trait has a mockall mock (`MockUserRepository`, ...).

mod analytics;
mod billing;
mod cache;
mod catalog;
mod error;
mod exports;
mod health;
mod jobs;
mod orders;
mod rate_limit;
mod reports;
mod security;
mod system;
mod tokens;
mod users;

pub use analytics::AnalyticsRepository;
pub use billing::{
    InvoicePageKey, NewSubscription, PlanChange, PlanRepository, Recorded, RenewalPass,
    SubscriptionRepository, SubscriptionWriteError,
};
pub use cache::{Cache, InvalidationListener, InvalidationPublisher};
pub use catalog::{
    ProductChanges, ProductFilter, ProductPageKey, ProductQuery, ProductRepository, ProductSort,
    ProductWriteError, SortDirection, StockAdjustError,
};
pub use error::PortError;
pub use exports::{ExportKey, ExportRange, ExportRepository, OrderExportRow, UserExportRow};
pub use health::HealthCheck;
pub use jobs::{
    Delivery, Job, JobQueue, JobRepository, JobStatus, Purged, RetentionCutoffs,
    RetentionRepository, TraceContext,
};
pub use orders::{
    IdempotencyClaim, NewOrder, OrderFilter, OrderPageKey, OrderRepository, PlaceOrderError,
    Placement, TransitionError,
};
pub use rate_limit::{RateDecision, RateLimit, RateLimiter};
pub use reports::ReportRepository;
pub use security::{HashError, PasswordHasher, PasswordVerdict};
pub use system::{Clock, IdGenerator};
pub use tokens::{
    MAX_LISTED_SESSIONS, RefreshTokenRepository, RotateOutcome, TokenBlacklist, TokenRevocation,
};
pub use users::{
    CreateUserError, NewUserRecord, UserCredentials, UserPageKey, UserRepository, UserUpdate,
};

#[cfg(feature = "mocks")]
pub use analytics::MockAnalyticsRepository;
#[cfg(feature = "mocks")]
pub use billing::{MockPlanRepository, MockSubscriptionRepository};
#[cfg(feature = "mocks")]
pub use cache::{MockCache, MockInvalidationPublisher};
#[cfg(feature = "mocks")]
pub use catalog::MockProductRepository;
#[cfg(feature = "mocks")]
pub use exports::MockExportRepository;
#[cfg(feature = "mocks")]
pub use health::MockHealthCheck;
#[cfg(feature = "mocks")]
pub use jobs::{MockJobQueue, MockJobRepository, MockRetentionRepository};
#[cfg(feature = "mocks")]
pub use orders::MockOrderRepository;
#[cfg(feature = "mocks")]
pub use rate_limit::MockRateLimiter;
#[cfg(feature = "mocks")]
pub use reports::MockReportRepository;
#[cfg(feature = "mocks")]
pub use security::MockPasswordHasher;
#[cfg(feature = "mocks")]
pub use system::{MockClock, MockIdGenerator};
#[cfg(feature = "mocks")]
pub use tokens::{MockRefreshTokenRepository, MockTokenBlacklist};
#[cfg(feature = "mocks")]
pub use users::MockUserRepository;
