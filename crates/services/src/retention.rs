//! The periodic retention sweep, as a worker job: finished jobs, old ticks and expired
//! Idempotency-Key records are deleted in short batches.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strata_ports::{Clock, Job, Purged, RetentionCutoffs, RetentionRepository};

use crate::worker::JobHandler;

/// The job kind of a retention sweep.
pub const RETENTION_JOB: &str = "maintenance.retention";

/// Deletes what no longer serves, batch by batch, until every kind comes back short.
pub struct PurgeExpired {
    retention: Arc<dyn RetentionRepository>,
    clock: Arc<dyn Clock>,
    keep_finished_jobs: Duration,
    keep_ticks: Duration,
    batch: usize,
}

impl PurgeExpired {
    /// A sweep keeping finished jobs for `keep_finished_jobs` and ticks for `keep_ticks`
    /// (expired Idempotency-Key records go as soon as they expire).
    pub fn new(
        retention: Arc<dyn RetentionRepository>,
        clock: Arc<dyn Clock>,
        keep_finished_jobs: Duration,
        keep_ticks: Duration,
        batch: usize,
    ) -> Self {
        Self {
            retention,
            clock,
            keep_finished_jobs,
            keep_ticks,
            batch: batch.max(1),
        }
    }

    /// Runs batches until none is full; returns the totals.
    pub async fn run(&self) -> anyhow::Result<Purged> {
        let now = self.clock.now();
        let ago = |keep: Duration| {
            now - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX)
        };
        let cutoffs = RetentionCutoffs {
            finished_jobs_before: ago(self.keep_finished_jobs),
            ticks_before: ago(self.keep_ticks),
            idempotency_expired_before: now,
        };
        let mut total = Purged::default();
        loop {
            let purged = self.retention.purge(&cutoffs, self.batch).await?;
            total.jobs += purged.jobs;
            total.ticks += purged.ticks;
            total.idempotency_keys += purged.idempotency_keys;
            let full = self.batch as u64;
            if purged.jobs < full && purged.ticks < full && purged.idempotency_keys < full {
                break;
            }
        }
        tracing::info!(
            jobs = total.jobs,
            ticks = total.ticks,
            idempotency_keys = total.idempotency_keys,
            "retention sweep finished"
        );
        Ok(total)
    }
}

#[async_trait]
impl JobHandler for PurgeExpired {
    async fn handle(&self, _job: &Job) -> anyhow::Result<()> {
        self.run().await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use mockall::Sequence;
    use strata_ports::{MockClock, MockRetentionRepository};

    use super::*;

    #[tokio::test]
    async fn batches_run_until_every_kind_comes_back_short_with_the_right_cutoffs() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
            .single()
            .expect("instant");
        let mut clock = MockClock::new();
        clock.expect_now().returning(move || now);
        let mut retention = MockRetentionRepository::new();
        let mut order = Sequence::new();
        let expected = RetentionCutoffs {
            finished_jobs_before: now - chrono::Duration::days(7),
            ticks_before: now - chrono::Duration::days(1),
            idempotency_expired_before: now,
        };
        retention
            .expect_purge()
            .withf(move |cutoffs, batch| *cutoffs == expected && *batch == 10)
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _| {
                Ok(Purged {
                    jobs: 10,
                    ticks: 3,
                    idempotency_keys: 0,
                })
            });
        retention
            .expect_purge()
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _| {
                Ok(Purged {
                    jobs: 4,
                    ticks: 0,
                    idempotency_keys: 9,
                })
            });
        let sweep = PurgeExpired::new(
            Arc::new(retention),
            Arc::new(clock),
            Duration::from_secs(7 * 24 * 3600),
            Duration::from_secs(24 * 3600),
            10,
        );
        let total = sweep.run().await.expect("sweep");
        assert_eq!(
            total,
            Purged {
                jobs: 14,
                ticks: 3,
                idempotency_keys: 9
            }
        );
    }
}
