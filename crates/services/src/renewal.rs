//! The periodic renewal of due subscriptions, as a worker job.

use std::sync::Arc;

use async_trait::async_trait;
use strata_ports::{Clock, Job, RenewalPass, SubscriptionRepository};

use crate::worker::JobHandler;

/// The job kind of a renewal run.
pub const RENEWAL_JOB: &str = "subscriptions.renew";

/// Renews every subscription whose period has ended, in batches, until none is due. Safe to run
/// on several workers at once: each batch skips rows another holds, and a period's renewal
/// invoice is unique.
pub struct RenewDueSubscriptions {
    subscriptions: Arc<dyn SubscriptionRepository>,
    clock: Arc<dyn Clock>,
    batch: usize,
}

impl RenewDueSubscriptions {
    /// A renewal run over `subscriptions`, `batch` rows per transaction.
    pub fn new(
        subscriptions: Arc<dyn SubscriptionRepository>,
        clock: Arc<dyn Clock>,
        batch: usize,
    ) -> Self {
        Self {
            subscriptions,
            clock,
            batch: batch.max(1),
        }
    }

    /// Runs batches until one comes back short; returns the totals.
    pub async fn run(&self) -> anyhow::Result<RenewalPass> {
        let now = self.clock.now();
        let mut total = RenewalPass::default();
        loop {
            let pass = self.subscriptions.renew_due(now, self.batch).await?;
            total.renewed += pass.renewed;
            total.cancelled += pass.cancelled;
            total.quarantined += pass.quarantined;
            total.examined += pass.examined;
            // A subscription several periods behind is renewed one period per batch: keep going
            // while batches are full or still renewing.
            if pass.examined < self.batch && pass.renewed == 0 {
                break;
            }
            if pass.examined == 0 {
                break;
            }
        }
        tracing::info!(
            renewed = total.renewed,
            cancelled = total.cancelled,
            quarantined = total.quarantined,
            "renewal run finished"
        );
        Ok(total)
    }
}

#[async_trait]
impl JobHandler for RenewDueSubscriptions {
    async fn handle(&self, _job: &Job) -> anyhow::Result<()> {
        self.run().await.map(|_| ())
    }
}
