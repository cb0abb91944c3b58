//! Strata's use cases: the only place where business flow lives.
//!
//! A service receives its ports as `Arc<dyn Port>`, validates input into domain types, decides, and
//! calls the ports. It knows nothing of HTTP, SQL or Redis; the composition root wires adapters in.
//! Each area has its own error enum whose variants are the outcomes a caller must handle; the
//! HTTP edge maps each of them, exhaustively, to a problem+json response.
//!
//! The pure-compute implementations of ports that need no I/O driver — the argon2id hasher, the
//! system clock, UUIDv7 ids — live here too (see `docs/decisions/0003-compute-adapters-in-services.md`).

pub mod auth;
pub mod catalog;
pub mod cursor;
pub mod dashboard;
pub mod exports;
pub mod local_cache;
pub mod orders;
pub mod password;
pub mod renewal;
pub mod reports;
pub mod retention;
pub mod single_flight;
pub mod subscriptions;
pub mod system;
pub mod tokens;
pub mod users;
pub mod worker;

mod cache_aside;
mod failure;
mod idempotency;
#[cfg(test)]
mod test_support;

pub use auth::{
    AccessRevocation, AuthError, AuthService, AuthSettings, Principal, RegisterInput,
    RevocationCheckPolicy, TokenPair,
};
pub use cache_aside::Representation;
pub use catalog::{
    CatalogError, CatalogService, PriceInput, ProductDraft, ProductListParams, ProductPatch,
};
pub use cursor::{CursorCodec, InvalidCursor, derive_key};
pub use dashboard::{Dashboard, DashboardError, DashboardService, DashboardSettings, LowStock};
pub use exports::{Export, ExportError, ExportFormat, ExportParams, ExportService};
pub use failure::Failure;
pub use local_cache::{InvalidatingCache, LocalCache, LocalCacheSettings};
pub use orders::{OrderError, OrderListParams, OrderService, PlacedOrder};
pub use password::{Argon2Hasher, Argon2Settings};
pub use renewal::{RENEWAL_JOB, RenewDueSubscriptions};
pub use reports::{GenerateSalesReport, ReportError, ReportInput, ReportService, SALES_REPORT_JOB};
pub use retention::{PurgeExpired, RETENTION_JOB};
pub use subscriptions::{BillingError, BillingOutcome, ProrationPreview, SubscriptionService};
pub use system::{SystemClock, UuidV7Ids};
pub use tokens::{AccessClaims, JwtCodec, JwtError, JwtSettings};
pub use users::{Page, ProfileChanges, UserError, UserService};
pub use worker::{JobHandler, Outcome, PeriodicJob, TraceLink, Worker, WorkerSettings};
