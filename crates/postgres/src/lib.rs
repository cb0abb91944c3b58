//! PostgreSQL adapters for Strata's ports, on diesel-async with a bb8 pool.
//!
//! Error policy: a pool that cannot hand out a connection within its acquire timeout, a refused or
//! dropped connection, and a query that outlives the query timeout are
//! [`PortError::Unavailable`](strata_ports::PortError::Unavailable) (503, retry); a constraint that
//! a port names (a duplicate email) becomes that port's conflict; anything else is `Unexpected`.
//! SQL never leaves this crate, and no database text reaches a client.

mod database;
mod migrations;
mod refresh_tokens;
#[allow(missing_docs)]
pub mod schema;
#[cfg(feature = "testing")]
pub mod testing;
mod users;

pub use database::{Database, PoolSettings, with_database};
pub use migrations::{MIGRATIONS, run_migrations};
pub use refresh_tokens::PgRefreshTokenRepository;
pub use users::PgUserRepository;
