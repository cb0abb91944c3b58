//! [`RetentionRepository`]: batched deletes of finished jobs, old ticks and expired
//! Idempotency-Key records.

use async_trait::async_trait;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::RunQueryDsl;
use strata_ports::{PortError, Purged, RetentionCutoffs, RetentionRepository};

use crate::database::Database;

/// Retention in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgRetentionRepository {
    db: Database,
}

impl PgRetentionRepository {
    /// A repository on `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Runs one bounded delete; the statement selects at most `$2` rows older than `$1` through
    /// an index, so each call is short.
    async fn delete(
        &self,
        statement: &'static str,
        before: chrono::DateTime<chrono::Utc>,
        batch: i64,
    ) -> Result<u64, PortError> {
        let mut conn = self.db.connection().await?;
        let deleted = self
            .db
            .timed(
                diesel::sql_query(statement)
                    .bind::<Timestamptz, _>(before)
                    .bind::<BigInt, _>(batch)
                    .execute(&mut conn),
            )
            .await?;
        Ok(u64::try_from(deleted).unwrap_or(0))
    }
}

#[async_trait]
impl RetentionRepository for PgRetentionRepository {
    async fn purge(&self, cutoffs: &RetentionCutoffs, batch: usize) -> Result<Purged, PortError> {
        let batch = i64::try_from(batch.max(1)).map_err(PortError::unexpected)?;
        // Reports keep their row when their job goes (reports.job_id is ON DELETE SET NULL).
        let jobs = self
            .delete(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
                 WHERE status IN ('done', 'failed') AND updated_at < $1 \
                 ORDER BY updated_at LIMIT $2)",
                cutoffs.finished_jobs_before,
                batch,
            )
            .await?;
        let ticks = self
            .delete(
                "DELETE FROM job_ticks WHERE (name, tick) IN (SELECT name, tick FROM job_ticks \
                 WHERE tick < $1 ORDER BY tick LIMIT $2)",
                cutoffs.ticks_before,
                batch,
            )
            .await?;
        let idempotency_keys = self
            .delete(
                "DELETE FROM idempotency_keys WHERE (user_id, key) IN \
                 (SELECT user_id, key FROM idempotency_keys WHERE expires_at < $1 \
                  ORDER BY expires_at LIMIT $2)",
                cutoffs.idempotency_expired_before,
                batch,
            )
            .await?;
        Ok(Purged {
            jobs,
            ticks,
            idempotency_keys,
        })
    }
}
