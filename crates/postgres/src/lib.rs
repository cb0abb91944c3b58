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
mod prepared;
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

#[cfg(test)]
mod tests {
    /// Behind PgBouncer a prepared statement stays on shared server connections across deploys; a
    /// `*` result list changes type when a migration adds a column, and PostgreSQL then refuses to
    /// execute it. Statements name their columns.
    #[test]
    fn no_statement_selects_or_returns_star() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let needles = ["SELECT *", "RETURNING *", ".*"];
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|name| name == "lib.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (index, line) in text.lines().enumerate() {
                let upper = line.to_ascii_uppercase();
                if needles.iter().any(|needle| upper.contains(needle)) {
                    found.push(format!("{}:{}: {}", path.display(), index + 1, line.trim()));
                }
            }
        }
        assert!(
            found.is_empty(),
            "name the columns instead:\n{}",
            found.join("\n")
        );
    }
}
