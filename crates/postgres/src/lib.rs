//! PostgreSQL adapters for Strata's ports, on diesel-async with a bb8 pool.
//!
//! Error policy: a pool that cannot hand out a connection within its acquire timeout, a refused or
//! dropped connection, and a query that outlives the query timeout are
//! [`PortError::Unavailable`](strata_ports::PortError::Unavailable) (503, retry); a constraint that
//! a port names (a duplicate email) becomes that port's conflict; anything else is `Unexpected`.
//! SQL never leaves this crate, and no database text reaches a client.

mod analytics;
mod billing;
mod database;
mod exports;
mod idempotency;
mod jobs;
mod migrations;
mod orders;
mod products;
mod refresh_tokens;
mod reports;
mod retention;
#[allow(missing_docs)]
pub mod schema;
#[cfg(feature = "testing")]
pub mod testing;
mod users;

pub use analytics::PgAnalyticsRepository;
pub use billing::{PgPlanRepository, PgSubscriptionRepository};
pub use database::{Database, PoolSettings, PoolStats, with_database};
pub use exports::PgExportRepository;
pub use jobs::PgJobRepository;
pub use migrations::{MIGRATIONS, run_migrations};
pub use orders::PgOrderRepository;
pub use products::PgProductRepository;
pub use refresh_tokens::PgRefreshTokenRepository;
pub use reports::PgReportRepository;
pub use retention::PgRetentionRepository;
pub use users::PgUserRepository;
