//! Asynchronous reports: an admin asks for one, a worker generates it, the admin reads it back.
//!
//! Requesting a report stores the report (`queued`) and the job that will generate it in one
//! transaction, then enqueues the job; if the enqueue fails the worker's stranded-job sweep finds
//! the job later, so a stored report always gets generated. The job's handler,
//! [`GenerateSalesReport`], marks the report `running`, computes it, and stores the result with
//! `done`. A failed attempt is retried by the worker; when the worker gives up, the handler's
//! dead hook marks the report `failed` with a reason (docs/decisions/0010-reports.md).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use strata_domain::{
    Report, ReportId, ReportKind, ReportRequest, SalesReport, SalesReportError, ValidationErrors,
};
use strata_ports::{
    AnalyticsRepository, Clock, IdGenerator, Job, JobQueue, PortError, ReportRepository,
    TraceContext,
};
use uuid::Uuid;

use crate::auth::Principal;
use crate::failure::Failure;
use crate::worker::{JobHandler, new_job};

/// The job kind that generates a sales report.
pub const SALES_REPORT_JOB: &str = "reports.sales";

/// The job kind that generates a report of `kind`.
pub fn report_job_kind(kind: ReportKind) -> &'static str {
    match kind {
        ReportKind::Sales => SALES_REPORT_JOB,
    }
}

/// What a caller of [`ReportService`] must handle.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Some fields are invalid; every one is listed.
    #[error("invalid input")]
    Validation(#[from] ValidationErrors),
    /// The caller is not an admin.
    #[error("forbidden")]
    Forbidden,
    /// No such report.
    #[error("report not found")]
    NotFound,
    /// Infrastructure failure.
    #[error(transparent)]
    Failure(#[from] Failure),
}

impl From<PortError> for ReportError {
    fn from(error: PortError) -> Self {
        ReportError::Failure(error.into())
    }
}

/// A report request as a caller sent it, validated by [`ReportService::request`].
#[derive(Debug, Clone, Default)]
pub struct ReportInput {
    /// `sales`.
    pub kind: Option<String>,
    /// RFC 3339: the first instant covered.
    pub from: Option<String>,
    /// RFC 3339: the first instant no longer covered.
    pub to: Option<String>,
}

/// A report job's payload.
#[derive(Debug, Serialize, Deserialize)]
struct ReportJob {
    report_id: Uuid,
}

/// The report use cases (admins only).
pub struct ReportService {
    reports: Arc<dyn ReportRepository>,
    queue: Arc<dyn JobQueue>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
}

impl ReportService {
    /// Wires the service to its ports.
    pub fn new(
        reports: Arc<dyn ReportRepository>,
        queue: Arc<dyn JobQueue>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> Self {
        Self {
            reports,
            queue,
            clock,
            ids,
        }
    }

    /// Queues a report: stores it with the job that generates it (one transaction), then
    /// enqueues the job. `trace` (the request's W3C trace context) makes the job's spans part of
    /// the request's trace.
    pub async fn request(
        &self,
        principal: &Principal,
        input: ReportInput,
        trace: Option<TraceContext>,
    ) -> Result<Report, ReportError> {
        if !principal.is_admin() {
            return Err(ReportError::Forbidden);
        }
        let request = ReportRequest::parse(
            input.kind.as_deref(),
            input.from.as_deref(),
            input.to.as_deref(),
        )?;
        let now = self.clock.now();
        let report = Report::queued(ReportId(self.ids.new_id()), request, principal.user_id, now);
        let payload = serde_json::to_string(&ReportJob {
            report_id: report.id.0,
        })
        .map_err(|error| Failure::Unexpected(error.into()))?;
        let mut job = new_job(
            self.ids.new_id(),
            report_job_kind(report.kind),
            &payload,
            now,
        );
        if let Some(trace) = trace {
            job.trace_parent = Some(trace.traceparent);
            job.trace_state = trace.tracestate;
        }
        self.reports.create_with_job(&report, &job).await?;
        if let Err(error) = self.queue.enqueue(job.id, &job.kind).await {
            // The job is stored: the worker's sweep enqueues it once it has waited long enough.
            tracing::warn!(%error, report_id = %report.id, job_id = %job.id, "report stored but its job not enqueued; the sweep will enqueue it");
        }
        Ok(report)
    }

    /// A report, with its result once done (admins only).
    pub async fn get(&self, principal: &Principal, id: ReportId) -> Result<Report, ReportError> {
        if !principal.is_admin() {
            return Err(ReportError::Forbidden);
        }
        self.reports.find(id).await?.ok_or(ReportError::NotFound)
    }
}

/// The worker's handler of [`SALES_REPORT_JOB`]: generates the report its job names. Idempotent:
/// a report already finished is left as it is, and a repeated attempt recomputes the same result.
pub struct GenerateSalesReport {
    reports: Arc<dyn ReportRepository>,
    analytics: Arc<dyn AnalyticsRepository>,
    clock: Arc<dyn Clock>,
}

impl GenerateSalesReport {
    /// A handler storing reports in `reports` and reading figures from `analytics`.
    pub fn new(
        reports: Arc<dyn ReportRepository>,
        analytics: Arc<dyn AnalyticsRepository>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            reports,
            analytics,
            clock,
        }
    }
}

/// The report a job generates.
fn report_of(job: &Job) -> anyhow::Result<ReportId> {
    let payload: ReportJob = serde_json::from_str(&job.payload)
        .map_err(|error| anyhow::anyhow!("job {} has no report id: {error}", job.id))?;
    Ok(ReportId(payload.report_id))
}

/// What a report's reader is told when it failed: why in terms they can act on, never the
/// internals (those are in the job's `last_error` and the worker's log, under the job's id).
fn failure_reason(job: &Job, error: &anyhow::Error) -> String {
    let attempts = job.attempts;
    let why = if let Some(refused) = error.downcast_ref::<SalesReportError>() {
        refused.to_string()
    } else if let Some(PortError::Unavailable(_)) = error.downcast_ref::<PortError>() {
        "the database was unavailable or too slow".to_owned()
    } else {
        format!(
            "an unexpected error occurred (the worker's log has it under job {})",
            job.id
        )
    };
    format!("generation failed after {attempts} attempt(s): {why}")
}

#[async_trait]
impl JobHandler for GenerateSalesReport {
    async fn handle(&self, job: &Job) -> anyhow::Result<()> {
        let id = report_of(job)?;
        let Some(report) = self.reports.start(id, self.clock.now()).await? else {
            tracing::info!(report_id = %id, "the report is finished already (or gone); nothing to do");
            return Ok(());
        };
        let figures = self
            .analytics
            .sales_figures(&report.range, SalesReport::TOP_PRODUCTS)
            .await?;
        let result = SalesReport::assemble(&report.range, figures)?;
        self.reports.complete(id, &result, self.clock.now()).await?;
        tracing::info!(report_id = %id, orders = result.order_count, "sales report done");
        Ok(())
    }

    async fn on_dead(&self, job: &Job, error: &anyhow::Error) -> anyhow::Result<()> {
        let id = report_of(job)?;
        let reason = failure_reason(job, error);
        self.reports.fail(id, &reason, self.clock.now()).await?;
        tracing::warn!(report_id = %id, job_id = %job.id, %reason, "sales report failed");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
