//! [`JobRepository`] on the `jobs` and `job_ticks` tables.
//!
//! `done` and `failed` are final: no later write (a late `fail` or `release` from a worker whose
//! job was meanwhile re-delivered and finished elsewhere) moves a job out of them. Every write is
//! one statement, so concurrent workers never see a half-made change.

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Timestamptz};
use diesel_async::RunQueryDsl;
use strata_ports::{Job, JobRepository, JobStatus, PortError};
use uuid::Uuid;

use crate::database::Database;
use crate::prepared::PrepareOnce as _;
use crate::schema::{job_ticks, jobs};

/// The statuses a job can still leave.
const UNFINISHED: [&str; 2] = ["queued", "running"];

/// A `jobs` row (also written by the report repository, in the transaction of its report).
#[derive(Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = jobs, check_for_backend(diesel::pg::Pg))]
pub(crate) struct JobRow {
    id: Uuid,
    kind: String,
    payload: serde_json::Value,
    status: String,
    attempts: i32,
    last_error: Option<String>,
    trace_parent: Option<String>,
    run_after: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    trace_state: Option<String>,
}

impl JobRow {
    /// The row of `job`.
    pub(crate) fn new(job: &Job) -> Result<Self, PortError> {
        Ok(Self {
            id: job.id,
            kind: job.kind.clone(),
            // jsonb keeps the value, not the text: the payload reads back as compact JSON.
            payload: serde_json::from_str(&job.payload).map_err(|error| {
                PortError::unexpected(anyhow!(error).context("a job's payload must be JSON"))
            })?,
            status: job.status.as_str().to_owned(),
            attempts: i32::try_from(job.attempts).map_err(PortError::unexpected)?,
            last_error: job.last_error.clone(),
            trace_parent: job.trace_parent.clone(),
            trace_state: job.trace_state.clone(),
            run_after: job.run_after,
            created_at: job.created_at,
            updated_at: job.updated_at,
        })
    }

    fn into_job(self) -> Result<Job, PortError> {
        let corrupt = |what: &str| {
            PortError::unexpected(anyhow!("jobs row {} holds an invalid {what}", self.id))
        };
        Ok(Job {
            id: self.id,
            payload: self.payload.to_string(),
            status: JobStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
            attempts: u32::try_from(self.attempts).map_err(|_| corrupt("attempts"))?,
            kind: self.kind,
            last_error: self.last_error,
            trace_parent: self.trace_parent,
            trace_state: self.trace_state,
            run_after: self.run_after,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Job state in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgJobRepository {
    db: Database,
}

impl PgJobRepository {
    /// A repository on `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl JobRepository for PgJobRepository {
    async fn create(&self, job: &Job) -> Result<(), PortError> {
        let row = JobRow::new(job)?;
        let mut conn = self.db.connection().await?;
        self.db
            .timed(
                diesel::insert_into(jobs::table)
                    .values(&row)
                    .prepared()
                    .execute(&mut conn),
            )
            .await?;
        Ok(())
    }

    async fn find(&self, id: Uuid) -> Result<Option<Job>, PortError> {
        let mut conn = self.db.connection().await?;
        let row = self
            .db
            .timed(async {
                jobs::table
                    .find(id)
                    .select(JobRow::as_select())
                    .first(&mut conn)
                    .await
                    .optional()
            })
            .await?;
        row.map(JobRow::into_job).transpose()
    }

    async fn start(&self, id: Uuid, now: DateTime<Utc>) -> Result<Option<Job>, PortError> {
        let mut conn = self.db.connection().await?;
        // `running` too: a redelivery after a crash starts the job again, as a new attempt.
        let row = self
            .db
            .timed(async {
                diesel::update(jobs::table.find(id))
                    .filter(jobs::status.eq_any(UNFINISHED))
                    .set((
                        jobs::status.eq(JobStatus::Running.as_str()),
                        jobs::attempts.eq(jobs::attempts + 1),
                        jobs::updated_at.eq(now),
                    ))
                    .returning(JobRow::as_returning())
                    .prepared()
                    .get_result(&mut conn)
                    .await
                    .optional()
            })
            .await?;
        row.map(JobRow::into_job).transpose()
    }

    async fn complete(&self, id: Uuid, now: DateTime<Utc>) -> Result<(), PortError> {
        let mut conn = self.db.connection().await?;
        self.db
            .timed(
                diesel::update(jobs::table.find(id))
                    .filter(jobs::status.eq_any(UNFINISHED))
                    .set((
                        jobs::status.eq(JobStatus::Done.as_str()),
                        jobs::updated_at.eq(now),
                    ))
                    .prepared()
                    .execute(&mut conn),
            )
            .await?;
        Ok(())
    }

    async fn fail(
        &self,
        id: Uuid,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let unfinished = jobs::table.find(id).filter(jobs::status.eq_any(UNFINISHED));
        let mut conn = self.db.connection().await?;
        match retry_at {
            Some(retry_at) => {
                self.db
                    .timed(
                        diesel::update(unfinished)
                            .set((
                                jobs::status.eq(JobStatus::Queued.as_str()),
                                jobs::run_after.eq(retry_at),
                                jobs::last_error.eq(error),
                                jobs::updated_at.eq(now),
                            ))
                            .prepared()
                            .execute(&mut conn),
                    )
                    .await?
            }
            None => {
                self.db
                    .timed(
                        diesel::update(unfinished)
                            .set((
                                jobs::status.eq(JobStatus::Failed.as_str()),
                                jobs::last_error.eq(error),
                                jobs::updated_at.eq(now),
                            ))
                            .prepared()
                            .execute(&mut conn),
                    )
                    .await?
            }
        };
        Ok(())
    }

    async fn heartbeat(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, PortError> {
        let mut conn = self.db.connection().await?;
        // `updated_at` is what the stranded sweep reads as "untouched"; the sweep itself touches
        // it the same way, so a touch without a change of state is what the column already means.
        let touched = self
            .db
            .timed(
                diesel::update(jobs::table.find(id))
                    .filter(jobs::status.eq(JobStatus::Running.as_str()))
                    .set(jobs::updated_at.eq(now))
                    .prepared()
                    .execute(&mut conn),
            )
            .await?;
        Ok(touched == 1)
    }

    async fn release(&self, id: Uuid, now: DateTime<Utc>) -> Result<(), PortError> {
        let mut conn = self.db.connection().await?;
        self.db
            .timed(
                diesel::update(jobs::table.find(id))
                    .filter(jobs::status.eq(JobStatus::Running.as_str()))
                    .set((
                        jobs::status.eq(JobStatus::Queued.as_str()),
                        jobs::updated_at.eq(now),
                    ))
                    .prepared()
                    .execute(&mut conn),
            )
            .await?;
        Ok(())
    }

    async fn stranded(
        &self,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Job>, PortError> {
        let limit = i64::try_from(limit).map_err(PortError::unexpected)?;
        let mut conn = self.db.connection().await?;
        // One statement: the touch is what keeps concurrent sweepers from picking the same jobs
        // (SKIP LOCKED while it runs, `updated_at < before` once it committed).
        let rows = self
            .db
            .timed(
                diesel::sql_query(
                    "UPDATE jobs SET updated_at = $2 \
                     WHERE id IN (SELECT id FROM jobs \
                                  WHERE status IN ('queued', 'running') \
                                    AND updated_at < $1 AND run_after <= $2 \
                                  ORDER BY updated_at LIMIT $3 \
                                  FOR UPDATE SKIP LOCKED) \
                     RETURNING id, kind, payload, status, attempts, last_error, trace_parent, \
                               run_after, created_at, updated_at, trace_state",
                )
                .bind::<Timestamptz, _>(before)
                .bind::<Timestamptz, _>(now)
                .bind::<BigInt, _>(limit)
                .prepared()
                .load::<JobRow>(&mut conn),
            )
            .await?;
        let mut found = rows
            .into_iter()
            .map(JobRow::into_job)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING follows no order; oldest first.
        found.sort_by_key(|job| (job.created_at, job.id));
        Ok(found)
    }

    async fn claim_tick(&self, name: &str, tick: DateTime<Utc>) -> Result<bool, PortError> {
        let mut conn = self.db.connection().await?;
        // The primary key decides: a concurrent insert of the same tick waits for the first and
        // then inserts nothing.
        let inserted = self
            .db
            .timed(
                diesel::insert_into(job_ticks::table)
                    .values((job_ticks::name.eq(name), job_ticks::tick.eq(tick)))
                    .on_conflict_do_nothing()
                    .prepared()
                    .execute(&mut conn),
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn queued_by_kind(&self) -> Result<Vec<(String, u64)>, PortError> {
        let mut conn = self.db.connection().await?;
        // The status is written into the text, not bound: only then can even the cached generic
        // plan prove the rows are in the partial index of unfinished jobs, and read the backlog
        // rather than the far larger history of finished ones.
        let counts: Vec<(String, i64)> = self
            .db
            .timed(
                jobs::table
                    .filter(diesel::dsl::sql::<Bool>("status = 'queued'"))
                    .group_by(jobs::kind)
                    .select((jobs::kind, diesel::dsl::count_star()))
                    .prepared()
                    .load(&mut conn),
            )
            .await?;
        Ok(counts
            .into_iter()
            .map(|(kind, count)| (kind, u64::try_from(count).unwrap_or_default()))
            .collect())
    }
}
