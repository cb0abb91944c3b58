//! ReportService and the report job's handler against mockall mocks of every port.

use chrono::{DateTime, NaiveDate, Utc};
use mockall::Sequence;
use mockall::predicate::eq;
use strata_domain::{
    Currency, DaySales, DayUnits, Money, ReportRange, ReportStatus, Role, SalesFigures, UserId,
};
use strata_ports::{
    JobStatus, MockAnalyticsRepository, MockClock, MockIdGenerator, MockJobQueue,
    MockReportRepository,
};

use super::*;
use crate::test_support::{fixed_clock, now, principal, unavailable};

const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const STATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

fn clock() -> Arc<MockClock> {
    let clock = fixed_clock();
    Arc::new(clock)
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("timestamp")
        .with_timezone(&Utc)
}

fn input(kind: &str, from: &str, to: &str) -> ReportInput {
    ReportInput {
        kind: Some(kind.to_owned()),
        from: Some(from.to_owned()),
        to: Some(to.to_owned()),
    }
}

fn october() -> ReportInput {
    input("sales", "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z")
}

fn range() -> ReportRange {
    ReportRange::new(at("2026-10-01T00:00:00Z"), at("2026-10-03T00:00:00Z")).expect("range")
}

fn report(id: ReportId, status: ReportStatus) -> Report {
    Report {
        status,
        started_at: (status != ReportStatus::Queued).then(now),
        ..Report::queued(
            id,
            ReportRequest {
                kind: ReportKind::Sales,
                range: range(),
            },
            UserId(Uuid::from_u128(99)),
            now(),
        )
    }
}

fn job_for(id: ReportId, attempts: u32) -> Job {
    let payload = serde_json::json!({ "report_id": id.0 }).to_string();
    Job {
        status: JobStatus::Running,
        attempts,
        ..new_job(Uuid::now_v7(), SALES_REPORT_JOB, &payload, now())
    }
}

/// The `(field, code)` pairs of a validation failure.
fn invalid(result: Result<Report, ReportError>) -> Vec<(String, &'static str)> {
    match result {
        Err(ReportError::Validation(errors)) => errors
            .0
            .into_iter()
            .map(|error| (error.field, error.code))
            .collect(),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

struct Ports {
    reports: MockReportRepository,
    queue: MockJobQueue,
    ids: MockIdGenerator,
}

impl Ports {
    fn new() -> Self {
        Self {
            reports: MockReportRepository::new(),
            queue: MockJobQueue::new(),
            ids: MockIdGenerator::new(),
        }
    }

    fn service(self) -> ReportService {
        ReportService::new(
            Arc::new(self.reports),
            Arc::new(self.queue),
            clock(),
            Arc::new(self.ids),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// request

#[tokio::test]
async fn a_report_and_its_job_are_stored_together_then_the_job_is_enqueued() {
    let admin = principal(Role::Admin);
    let (report_id, job_id) = (Uuid::now_v7(), Uuid::now_v7());
    let mut ports = Ports::new();
    let mut ids = vec![job_id, report_id];
    ports
        .ids
        .expect_new_id()
        .times(2)
        .returning(move || ids.pop().expect("an id"));
    let mut order = Sequence::new();
    let requested_by = admin.user_id;
    ports
        .reports
        .expect_create_with_job()
        .withf(move |report: &Report, job: &Job| {
            report.id == ReportId(report_id)
                && report.kind == ReportKind::Sales
                && report.status == ReportStatus::Queued
                && report.range.from() == at("2026-10-01T00:00:00Z")
                && report.range.to() == at("2026-11-01T00:00:00Z")
                && report.requested_by == requested_by
                && report.created_at == now()
                && report.started_at.is_none()
                && job.id == job_id
                && job.kind == SALES_REPORT_JOB
                && job.status == JobStatus::Queued
                && job.attempts == 0
                && job.run_after == now()
                && job.trace_parent.as_deref() == Some(TRACE)
                && job.trace_state.as_deref() == Some(STATE)
                && serde_json::from_str::<serde_json::Value>(&job.payload).ok()
                    == Some(serde_json::json!({ "report_id": report_id }))
        })
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| Ok(()));
    ports
        .queue
        .expect_enqueue()
        .with(eq(job_id), eq(SALES_REPORT_JOB))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| Ok(()));
    let report = ports
        .service()
        .request(
            &admin,
            october(),
            Some(TraceContext {
                traceparent: TRACE.to_owned(),
                tracestate: Some(STATE.to_owned()),
            }),
        )
        .await
        .expect("queued");
    assert_eq!(report.id, ReportId(report_id));
    assert_eq!(report.status, ReportStatus::Queued);
}

#[tokio::test]
async fn a_failed_enqueue_still_answers_queued_the_sweep_enqueues_the_stored_job() {
    let mut ports = Ports::new();
    ports.ids.expect_new_id().returning(Uuid::now_v7);
    ports
        .reports
        .expect_create_with_job()
        .times(1)
        .returning(|_, _| Ok(()));
    ports
        .queue
        .expect_enqueue()
        .times(1)
        .returning(|_, _| Err(unavailable()));
    let report = ports
        .service()
        .request(&principal(Role::Admin), october(), None)
        .await
        .expect("queued");
    assert_eq!(report.status, ReportStatus::Queued);
}

#[tokio::test]
async fn when_the_transaction_fails_nothing_is_enqueued() {
    let mut ports = Ports::new();
    ports.ids.expect_new_id().returning(Uuid::now_v7);
    ports
        .reports
        .expect_create_with_job()
        .returning(|_, _| Err(unavailable()));
    ports.queue.expect_enqueue().never();
    let result = ports
        .service()
        .request(&principal(Role::Admin), october(), None)
        .await;
    assert!(
        matches!(result, Err(ReportError::Failure(Failure::Unavailable(_)))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_bad_request_names_every_field_and_stores_nothing() {
    let mut ports = Ports::new();
    ports.reports.expect_create_with_job().never();
    ports.queue.expect_enqueue().never();
    ports.ids.expect_new_id().never();
    let service = ports.service();
    let admin = principal(Role::Admin);
    let pairs = |expected: &[(&str, &'static str)]| -> Vec<(String, &'static str)> {
        expected
            .iter()
            .map(|(f, c)| ((*f).to_owned(), *c))
            .collect()
    };
    assert_eq!(
        invalid(service.request(&admin, ReportInput::default(), None).await),
        pairs(&[
            ("kind", "required"),
            ("from", "required"),
            ("to", "required")
        ])
    );
    assert_eq!(
        invalid(
            service
                .request(
                    &admin,
                    input("refunds", "soon", "2026-11-01T00:00:00Z"),
                    None
                )
                .await
        ),
        pairs(&[("kind", "invalid_choice"), ("from", "invalid_timestamp")])
    );
    assert_eq!(
        invalid(
            service
                .request(
                    &admin,
                    input("sales", "2026-11-01T00:00:00Z", "2026-11-01T00:00:00Z"),
                    None
                )
                .await
        ),
        pairs(&[("to", "not_after_from")])
    );
    assert_eq!(
        invalid(
            service
                .request(
                    &admin,
                    input("sales", "2025-01-01T00:00:00Z", "2026-01-02T00:00:01Z"),
                    None
                )
                .await
        ),
        pairs(&[("to", "range_too_long")])
    );
}

#[tokio::test]
async fn only_an_admin_requests_or_reads_reports() {
    let mut ports = Ports::new();
    ports.reports.expect_create_with_job().never();
    ports.reports.expect_find().never();
    ports.ids.expect_new_id().never();
    let service = ports.service();
    let customer = principal(Role::Customer);
    // Forbidden comes first, even for an invalid body.
    let result = service
        .request(&customer, ReportInput::default(), None)
        .await;
    assert!(matches!(result, Err(ReportError::Forbidden)), "{result:?}");
    let result = service.get(&customer, ReportId(Uuid::now_v7())).await;
    assert!(matches!(result, Err(ReportError::Forbidden)), "{result:?}");
}

#[tokio::test]
async fn a_report_is_read_back_and_an_unknown_one_is_not_found() {
    let known = ReportId(Uuid::now_v7());
    let mut ports = Ports::new();
    ports
        .reports
        .expect_find()
        .returning(move |id| Ok((id == known).then(|| report(known, ReportStatus::Running))));
    let service = ports.service();
    let admin = principal(Role::Admin);
    assert_eq!(
        service.get(&admin, known).await.expect("found"),
        report(known, ReportStatus::Running)
    );
    let missing = service.get(&admin, ReportId(Uuid::now_v7())).await;
    assert!(matches!(missing, Err(ReportError::NotFound)), "{missing:?}");
}

// ---------------------------------------------------------------------------------------------
// the job's handler

fn figures() -> SalesFigures {
    let usd = Currency::parse("USD").expect("USD");
    let day = |d| NaiveDate::from_ymd_opt(2026, 10, d).expect("date");
    SalesFigures {
        sales: vec![DaySales {
            date: day(2),
            currency: usd,
            orders: 2,
            revenue_minor: 1_250,
        }],
        units: vec![DayUnits {
            date: day(2),
            units: 3,
        }],
        top_products: Vec::new(),
    }
}

fn handler(
    reports: MockReportRepository,
    analytics: MockAnalyticsRepository,
) -> GenerateSalesReport {
    GenerateSalesReport::new(Arc::new(reports), Arc::new(analytics), clock())
}

#[tokio::test]
async fn the_handler_marks_the_report_running_computes_it_and_stores_it_done() {
    let id = ReportId(Uuid::now_v7());
    let mut order = Sequence::new();
    let mut reports = MockReportRepository::new();
    let mut analytics = MockAnalyticsRepository::new();
    reports
        .expect_start()
        .with(eq(id), eq(now()))
        .times(1)
        .in_sequence(&mut order)
        .returning(move |_, _| Ok(Some(report(id, ReportStatus::Running))));
    analytics
        .expect_sales_figures()
        .with(eq(range()), eq(SalesReport::TOP_PRODUCTS))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| Ok(figures()));
    let expected = SalesReport::assemble(&range(), figures()).expect("assembled");
    assert_eq!(expected.order_count, 2);
    assert_eq!(
        expected.revenue,
        [Money::new(1_250, Currency::parse("USD").expect("USD"))]
    );
    reports
        .expect_complete()
        .withf(move |done, result, at| *done == id && *result == expected && *at == now())
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _, _| Ok(()));
    reports.expect_fail().never();
    handler(reports, analytics)
        .handle(&job_for(id, 1))
        .await
        .expect("done");
}

#[tokio::test]
async fn a_finished_report_is_left_alone_on_a_duplicate_delivery() {
    let id = ReportId(Uuid::now_v7());
    let mut reports = MockReportRepository::new();
    reports.expect_start().times(1).returning(|_, _| Ok(None));
    reports.expect_complete().never();
    reports.expect_fail().never();
    let mut analytics = MockAnalyticsRepository::new();
    analytics.expect_sales_figures().never();
    handler(reports, analytics)
        .handle(&job_for(id, 2))
        .await
        .expect("nothing to do");
}

#[tokio::test]
async fn a_failed_attempt_fails_the_job_for_a_retry_and_leaves_the_report_unfinished() {
    let id = ReportId(Uuid::now_v7());
    let mut reports = MockReportRepository::new();
    reports
        .expect_start()
        .returning(move |_, _| Ok(Some(report(id, ReportStatus::Running))));
    reports.expect_complete().never();
    // Only the worker decides when to give up (through on_dead), not the handler.
    reports.expect_fail().never();
    let mut analytics = MockAnalyticsRepository::new();
    analytics
        .expect_sales_figures()
        .returning(|_, _| Err(unavailable()));
    let error = handler(reports, analytics)
        .handle(&job_for(id, 1))
        .await
        .expect_err("fails");
    assert!(matches!(
        error.downcast_ref::<PortError>(),
        Some(PortError::Unavailable(_))
    ));
}

#[tokio::test]
async fn figures_that_cannot_make_a_report_fail_the_attempt() {
    let id = ReportId(Uuid::now_v7());
    let mut reports = MockReportRepository::new();
    reports
        .expect_start()
        .returning(move |_, _| Ok(Some(report(id, ReportStatus::Running))));
    reports.expect_complete().never();
    let mut analytics = MockAnalyticsRepository::new();
    analytics.expect_sales_figures().returning(|_, _| {
        let mut stray = figures();
        stray.units[0].date = NaiveDate::from_ymd_opt(2026, 12, 25).expect("date");
        Ok(stray)
    });
    let error = handler(reports, analytics)
        .handle(&job_for(id, 1))
        .await
        .expect_err("fails");
    assert!(
        error.downcast_ref::<SalesReportError>().is_some(),
        "{error:#}"
    );
}

#[tokio::test]
async fn when_the_worker_gives_up_the_report_is_failed_with_a_reason_free_of_internals() {
    let id = ReportId(Uuid::now_v7());
    let job = job_for(id, 5);
    let cases = [
        (
            anyhow::Error::from(PortError::unavailable(anyhow::anyhow!(
                "connection refused"
            ))),
            "generation failed after 5 attempt(s): the database was unavailable or too slow"
                .to_owned(),
        ),
        (
            anyhow::Error::from(SalesReportError::Overflow {
                currency: Currency::parse("USD").expect("USD"),
            }),
            "generation failed after 5 attempt(s): the revenue in USD does not fit in 64 bits"
                .to_owned(),
        ),
        (
            anyhow::Error::from(PortError::unexpected(anyhow::anyhow!(
                "ERROR: bigint out of range in SELECT sum(total_minor)"
            ))),
            format!(
                "generation failed after 5 attempt(s): an unexpected error occurred (the \
                 worker's log has it under job {})",
                job.id
            ),
        ),
    ];
    for (error, expected) in cases {
        let mut reports = MockReportRepository::new();
        reports
            .expect_fail()
            .withf(move |failed, reason, at| *failed == id && reason == expected && *at == now())
            .times(1)
            .returning(|_, _, _| Ok(()));
        handler(reports, MockAnalyticsRepository::new())
            .on_dead(&job, &error)
            .await
            .expect("recorded");
    }
}

#[tokio::test]
async fn a_dead_hook_that_cannot_record_the_failure_says_so() {
    let id = ReportId(Uuid::now_v7());
    let mut reports = MockReportRepository::new();
    reports
        .expect_fail()
        .times(1)
        .returning(|_, _, _| Err(unavailable()));
    let error = anyhow::anyhow!("boom");
    assert!(
        handler(reports, MockAnalyticsRepository::new())
            .on_dead(&job_for(id, 5), &error)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_job_without_a_report_id_fails_without_touching_any_report() {
    let mut reports = MockReportRepository::new();
    reports.expect_start().never();
    reports.expect_fail().never();
    let job = Job {
        payload: "{}".to_owned(),
        ..job_for(ReportId(Uuid::now_v7()), 1)
    };
    let handler = handler(reports, MockAnalyticsRepository::new());
    assert!(handler.handle(&job).await.is_err());
    assert!(
        handler
            .on_dead(&job, &anyhow::anyhow!("boom"))
            .await
            .is_err()
    );
}

#[test]
fn each_report_kind_has_its_job_kind() {
    assert_eq!(report_job_kind(ReportKind::Sales), "reports.sales");
}
