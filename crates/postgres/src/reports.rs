//! [`ReportRepository`] on the `reports` table (and `jobs`, for the report's job).
//!
//! `done` and `failed` are final: every later write is filtered on the unfinished statuses, so a
//! late attempt (a worker that took a job over while the first still ran) changes nothing.

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use strata_domain::{Report, ReportId, ReportKind, ReportRange, ReportStatus, SalesReport, UserId};
use strata_ports::{Job, PortError, ReportRepository};
use uuid::Uuid;

use crate::database::{Database, Transaction};
use crate::jobs::JobRow;
use crate::prepared::PrepareOnce as _;
use crate::schema::{jobs, reports};

/// The statuses a report can still leave.
const UNFINISHED: [&str; 2] = ["queued", "running"];
/// The longest failure reason stored (the column's CHECK).
const MAX_ERROR_CHARS: usize = 2000;

#[derive(Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = reports, check_for_backend(diesel::pg::Pg))]
struct ReportRow {
    id: Uuid,
    kind: String,
    status: String,
    range_from: DateTime<Utc>,
    range_to: DateTime<Utc>,
    requested_by: Uuid,
    job_id: Option<Uuid>,
    result: Option<serde_json::Value>,
    error: Option<String>,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl ReportRow {
    fn new(report: &Report, job_id: Uuid) -> Result<Self, PortError> {
        Ok(Self {
            id: report.id.0,
            kind: report.kind.as_str().to_owned(),
            status: report.status.as_str().to_owned(),
            range_from: report.range.from(),
            range_to: report.range.to(),
            requested_by: report.requested_by.0,
            job_id: Some(job_id),
            result: report
                .result
                .as_ref()
                .map(serde_json::to_value)
                .transpose()
                .map_err(PortError::unexpected)?,
            error: report.error.clone(),
            created_at: report.created_at,
            started_at: report.started_at,
            finished_at: report.finished_at,
            updated_at: report.created_at,
        })
    }

    fn into_report(self) -> Result<Report, PortError> {
        let corrupt = |what: &str| {
            PortError::unexpected(anyhow!("reports row {} holds an invalid {what}", self.id))
        };
        Ok(Report {
            id: ReportId(self.id),
            kind: ReportKind::parse(&self.kind).ok_or_else(|| corrupt("kind"))?,
            range: ReportRange::new(self.range_from, self.range_to)
                .map_err(|_| corrupt("range"))?,
            status: ReportStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
            requested_by: UserId(self.requested_by),
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            result: self
                .result
                .map(serde_json::from_value::<SalesReport>)
                .transpose()
                .map_err(|_| corrupt("result"))?,
            error: self.error,
        })
    }
}

/// Reports in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgReportRepository {
    db: Database,
}

impl PgReportRepository {
    /// A repository on `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl ReportRepository for PgReportRepository {
    async fn create_with_job(&self, report: &Report, job: &Job) -> Result<(), PortError> {
        let job_row = JobRow::new(job)?;
        let report_row = ReportRow::new(report, job.id)?;
        self.db
            .in_transaction(Transaction::Write, async |conn| {
                diesel::insert_into(jobs::table)
                    .values(&job_row)
                    .prepared()
                    .execute(conn)
                    .await?;
                diesel::insert_into(reports::table)
                    .values(&report_row)
                    .prepared()
                    .execute(conn)
                    .await?;
                Ok(())
            })
            .await
    }

    async fn find(&self, id: ReportId) -> Result<Option<Report>, PortError> {
        let mut conn = self.db.connection().await?;
        let row = self
            .db
            .timed(async {
                reports::table
                    .find(id.0)
                    .select(ReportRow::as_select())
                    .first(&mut conn)
                    .await
                    .optional()
            })
            .await?;
        row.map(ReportRow::into_report).transpose()
    }

    async fn start(&self, id: ReportId, now: DateTime<Utc>) -> Result<Option<Report>, PortError> {
        let mut conn = self.db.connection().await?;
        // `running` too: a retried or taken-over attempt starts again, keeping the first start.
        // The columns are named, not `*`: behind PgBouncer this statement stays prepared on server
        // connections across deploys, and a column added by a migration would change the result
        // type of a `*` (which PostgreSQL then refuses to execute).
        let row = self
            .db
            .timed(async {
                diesel::sql_query(
                    "UPDATE reports \
                     SET status = 'running', started_at = coalesce(started_at, $2), \
                         updated_at = $2 \
                     WHERE id = $1 AND status IN ('queued', 'running') \
                     RETURNING id, kind, status, range_from, range_to, requested_by, job_id, \
                               result, error, created_at, started_at, finished_at, updated_at",
                )
                .bind::<SqlUuid, _>(id.0)
                .bind::<Timestamptz, _>(now)
                .prepared()
                .get_result::<ReportRow>(&mut conn)
                .await
                .optional()
            })
            .await?;
        row.map(ReportRow::into_report).transpose()
    }

    async fn complete(
        &self,
        id: ReportId,
        result: &SalesReport,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let result = serde_json::to_value(result).map_err(PortError::unexpected)?;
        let mut conn = self.db.connection().await?;
        self.db
            .timed(
                diesel::update(reports::table.find(id.0))
                    .filter(reports::status.eq_any(UNFINISHED))
                    .set((
                        reports::status.eq(ReportStatus::Done.as_str()),
                        reports::result.eq(Some(result)),
                        reports::finished_at.eq(Some(now)),
                        reports::updated_at.eq(now),
                    ))
                    .prepared()
                    .execute(&mut conn),
            )
            .await?;
        Ok(())
    }

    async fn fail(&self, id: ReportId, reason: &str, now: DateTime<Utc>) -> Result<(), PortError> {
        let reason: String = reason.chars().take(MAX_ERROR_CHARS).collect();
        let mut conn = self.db.connection().await?;
        self.db
            .timed(
                diesel::update(reports::table.find(id.0))
                    .filter(reports::status.eq_any(UNFINISHED))
                    .set((
                        reports::status.eq(ReportStatus::Failed.as_str()),
                        reports::error.eq(Some(reason)),
                        reports::finished_at.eq(Some(now)),
                        reports::updated_at.eq(now),
                    ))
                    .prepared()
                    .execute(&mut conn),
            )
            .await?;
        Ok(())
    }
}
