//! The connection pool, the timeout around every query, and the mapping of driver errors.

use std::future::Future;
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::bb8::{Pool, PooledConnection};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, PoolError};
use strata_ports::{HealthCheck, PortError};

/// Pool sizing and timeouts.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Most connections open at once.
    pub max_size: u32,
    /// How long a request waits for a connection before it is answered 503.
    pub acquire_timeout: Duration,
    /// How long one query (or transaction) may run before it is abandoned.
    pub query_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_size: 16,
            acquire_timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(5),
        }
    }
}

/// A handle on the pool, cheap to clone, shared by every repository.
#[derive(Clone)]
pub struct Database {
    pool: Pool<AsyncPgConnection>,
    query_timeout: Duration,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("state", &self.pool.state())
            .finish()
    }
}

impl Database {
    /// Builds the pool without connecting: the server starts (and reports not ready) even while
    /// PostgreSQL is down, and connects as soon as it answers.
    pub fn connect_lazy(url: &str, settings: &PoolSettings) -> Self {
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
        let pool = Pool::builder()
            .max_size(settings.max_size)
            .min_idle(Some(0))
            .connection_timeout(settings.acquire_timeout)
            .retry_connection(false)
            .build_unchecked(manager);
        Self {
            pool,
            query_timeout: settings.query_timeout,
        }
    }

    /// A pooled connection; [`PortError::Unavailable`] when none can be had in time.
    pub async fn connection(&self) -> Result<PooledConnection<'_, AsyncPgConnection>, PortError> {
        self.pool.get().await.map_err(|error| match error {
            bb8::RunError::TimedOut => {
                PortError::unavailable(anyhow!("timed out waiting for a database connection"))
            }
            bb8::RunError::User(PoolError::ConnectionError(cause)) => {
                PortError::unavailable(anyhow!(cause).context("cannot connect to the database"))
            }
            bb8::RunError::User(PoolError::QueryError(cause)) => map_error(cause),
        })
    }

    /// Runs a query (or transaction) under the query timeout, mapping its error.
    pub async fn timed<T>(
        &self,
        query: impl Future<Output = Result<T, DieselError>>,
    ) -> Result<T, PortError> {
        tokio::time::timeout(self.query_timeout, query)
            .await
            .map_err(|_| {
                PortError::unavailable(anyhow!(
                    "database query timed out after {:?}",
                    self.query_timeout
                ))
            })?
            .map_err(map_error)
    }
}

/// `url` with its database name replaced by `database`, the query string kept (to reach the
/// maintenance database, or a per-test clone, on the same server).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{database}?{query}"),
        None => format!("{root}/{database}"),
    }
}

/// Maps a driver error that no port names: connection loss is transient, the rest unexpected.
pub(crate) fn map_error(error: DieselError) -> PortError {
    match &error {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
        | DieselError::BrokenTransactionManager => PortError::unavailable(error),
        _ => PortError::unexpected(error),
    }
}

/// True when `error` is a unique violation of the named constraint or index.
pub(crate) fn violates(error: &DieselError, constraint: &str) -> bool {
    matches!(error, DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
        if info.constraint_name() == Some(constraint))
}

#[async_trait]
impl HealthCheck for Database {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), PortError> {
        use diesel_async::RunQueryDsl;
        let mut conn = self.connection().await?;
        self.timed(diesel::sql_query("SELECT 1").execute(&mut conn))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_replaced_and_the_query_kept() {
        assert_eq!(
            with_database("postgres://u@h:5432/app", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h:5432/app?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h:5432", "x"),
            "postgres://u@h:5432/x"
        );
    }
}
