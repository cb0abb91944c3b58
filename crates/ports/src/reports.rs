//! Report storage. A report is requested together with the job that generates it, in one
//! transaction, so that every stored report has a job to run it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use strata_domain::{Report, ReportId, SalesReport};

use crate::{Job, PortError};

/// Durable reports. `done` and `failed` are final: no later write changes a finished report.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait ReportRepository: Send + Sync + 'static {
    /// Stores the queued `report` and the queued `job` that will generate it, in one transaction:
    /// both or neither.
    async fn create_with_job(&self, report: &Report, job: &Job) -> Result<(), PortError>;
    /// The report; `Ok(None)` when there is none.
    async fn find(&self, id: ReportId) -> Result<Option<Report>, PortError>;
    /// Marks the report running (its first start time is kept) and returns it; `Ok(None)` when
    /// there is none or it is finished already (a duplicate delivery: nothing to do).
    async fn start(&self, id: ReportId, now: DateTime<Utc>) -> Result<Option<Report>, PortError>;
    /// Stores the result and marks the report done, unless it is finished already.
    async fn complete(
        &self,
        id: ReportId,
        result: &SalesReport,
        now: DateTime<Utc>,
    ) -> Result<(), PortError>;
    /// Marks the report failed with `reason`, unless it is finished already.
    async fn fail(&self, id: ReportId, reason: &str, now: DateTime<Utc>) -> Result<(), PortError>;
}
