//! The analytics and report adapters against a real server, each test in a fresh database cloned
//! from the migrated template. The fixtures are written in SQL, with the exact times, statuses,
//! currencies and totals every figure depends on.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::sql_types::{BigInt, Integer, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use strata_domain::{
    Currency, DaySales, DayUnits, Money, ProductUnits, Report, ReportId, ReportKind, ReportRange,
    ReportRequest, ReportStatus, SalesByWindow, SalesReport, SalesWindows, Stock, UserId,
    WindowSales,
};
use strata_ports::{AnalyticsRepository, Job, JobRepository, JobStatus, ReportRepository};
use strata_postgres::testing::{TestDatabase, insert_user, now};
use strata_postgres::{Database, PgAnalyticsRepository, PgJobRepository, PgReportRepository};
use uuid::Uuid;

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

fn usd(amount_minor: i64) -> Money {
    Money::new(amount_minor, Currency::parse("USD").unwrap())
}

fn eur(amount_minor: i64) -> Money {
    Money::new(amount_minor, Currency::parse("EUR").unwrap())
}

fn day(month: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, month, d).unwrap()
}

fn analytics(db: &Database) -> PgAnalyticsRepository {
    PgAnalyticsRepository::new(db.clone(), Duration::from_secs(30))
}

/// Inserts a product and returns its id (ids increase with each call: UUIDv7).
async fn product(db: &Database, sku: &str, currency: &str, stock: i32, active: bool) -> Uuid {
    let id = Uuid::now_v7();
    let mut conn = db.connection().await.unwrap();
    diesel::sql_query(
        "INSERT INTO products (id, sku, name, price_minor, currency, stock, active) \
         VALUES ($1, $2, $3, 100, $4, $5, $6)",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(sku)
    .bind::<Text, _>(format!("Product {sku}"))
    .bind::<Text, _>(currency)
    .bind::<Integer, _>(stock)
    .bind::<diesel::sql_types::Bool, _>(active)
    .execute(&mut conn)
    .await
    .unwrap();
    id
}

/// Inserts an order of `user` created at `created_at` with a total of `total_minor` and lines of
/// `(product, quantity)` at 100 minor units each; returns its id.
async fn order(
    db: &Database,
    user: UserId,
    created_at: &str,
    status: &str,
    currency: &str,
    total_minor: i64,
    lines: &[(Uuid, i32)],
) -> Uuid {
    let id = Uuid::now_v7();
    let created_at = at(created_at);
    let mut conn = db.connection().await.unwrap();
    diesel::sql_query(
        "INSERT INTO orders (id, user_id, status, currency, total_minor, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(user.0)
    .bind::<Text, _>(status)
    .bind::<Text, _>(currency)
    .bind::<BigInt, _>(total_minor)
    .bind::<Timestamptz, _>(created_at)
    .execute(&mut conn)
    .await
    .unwrap();
    for (position, (product_id, quantity)) in lines.iter().enumerate() {
        diesel::sql_query(
            "INSERT INTO order_items (order_id, position, product_id, sku, name, \
               unit_price_minor, quantity, line_total_minor) \
             SELECT $1, $2, id, sku, name, 100, $3, 100 * $3 FROM products WHERE id = $4",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<diesel::sql_types::SmallInt, _>(position as i16)
        .bind::<Integer, _>(*quantity)
        .bind::<SqlUuid, _>(*product_id)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    id
}

async fn subscription(db: &Database, user: UserId, status: &str) {
    let mut conn = db.connection().await.unwrap();
    diesel::sql_query(
        "INSERT INTO subscriptions (id, user_id, plan_code, status, anchor, current_period_start, \
           current_period_end, cancelled_at, created_at, updated_at) \
         VALUES ($1, $2, 'basic-monthly', $3, now(), now(), now() + interval '1 month', \
           CASE WHEN $3 = 'cancelled' THEN now() END, now(), now())",
    )
    .bind::<SqlUuid, _>(Uuid::now_v7())
    .bind::<SqlUuid, _>(user.0)
    .bind::<Text, _>(status)
    .execute(&mut conn)
    .await
    .unwrap();
}

/// Six products and nine orders around the windows ending at 2026-11-21 15:00 UTC.
struct Fixture {
    products: [Uuid; 6],
}

async fn fixture(db: &Database) -> Fixture {
    let user = insert_user(db, "buyer@example.com").await.unwrap();
    let p1 = product(db, "P-1", "USD", 0, true).await;
    let p2 = product(db, "P-2", "USD", 9, true).await;
    let p3 = product(db, "P-3", "EUR", 10, true).await;
    let p4 = product(db, "P-4", "USD", 5, false).await;
    let p5 = product(db, "P-5", "USD", 3, true).await;
    let p6 = product(db, "P-6", "USD", 100, true).await;
    // Today.
    order(
        db,
        user,
        "2026-11-21T09:00:00Z",
        "placed",
        "USD",
        1_000,
        &[(p1, 3), (p2, 1)],
    )
    .await;
    order(
        db,
        user,
        "2026-11-21T00:00:00Z",
        "fulfilled",
        "EUR",
        2_000,
        &[(p3, 2)],
    )
    .await;
    order(
        db,
        user,
        "2026-11-21T10:00:00Z",
        "cancelled",
        "USD",
        500,
        &[(p2, 10)],
    )
    .await;
    // The window's end is excluded.
    order(
        db,
        user,
        "2026-11-21T15:00:00Z",
        "placed",
        "USD",
        600,
        &[(p6, 40)],
    )
    .await;
    // The last 7 days, not today.
    order(
        db,
        user,
        "2026-11-20T23:59:59.999999Z",
        "placed",
        "USD",
        300,
        &[(p2, 2)],
    )
    .await;
    order(
        db,
        user,
        "2026-11-15T00:00:00Z",
        "fulfilled",
        "USD",
        700,
        &[(p6, 1)],
    )
    .await;
    // The last 30 days only.
    order(
        db,
        user,
        "2026-11-14T23:59:59Z",
        "placed",
        "EUR",
        400,
        &[(p3, 1)],
    )
    .await;
    order(
        db,
        user,
        "2026-10-23T00:00:00Z",
        "fulfilled",
        "USD",
        900,
        &[(p4, 1), (p5, 1)],
    )
    .await;
    // Too old.
    order(
        db,
        user,
        "2026-10-22T23:59:59Z",
        "placed",
        "USD",
        800,
        &[(p4, 50)],
    )
    .await;
    Fixture {
        products: [p1, p2, p3, p4, p5, p6],
    }
}

fn ranked(products: &[ProductUnits]) -> Vec<(Uuid, u64)> {
    products.iter().map(|p| (p.product_id.0, p.units)).collect()
}

#[tokio::test]
async fn the_dashboard_counts_orders_not_cancelled_per_window_and_currency() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let Fixture { products } = fixture(&db).await;
    let [p1, p2, p3, p4, p5, _p6] = products;
    let analytics = analytics(&db);
    let windows = SalesWindows::ending_at(at("2026-11-21T15:00:00Z"));

    assert_eq!(
        analytics.sales_by_window(&windows).await?,
        SalesByWindow {
            today: WindowSales {
                orders: 2,
                revenue: vec![eur(2_000), usd(1_000)],
            },
            last_7_days: WindowSales {
                orders: 4,
                revenue: vec![eur(2_000), usd(2_000)],
            },
            last_30_days: WindowSales {
                orders: 6,
                revenue: vec![eur(2_400), usd(2_900)],
            },
        }
    );
    // p1, p2 and p3 sold 3 units each (ties by id), then p4, p5 and p6 one each.
    let top = analytics
        .top_products(windows.last_30_days, windows.until, 5)
        .await?;
    assert_eq!(ranked(&top), [(p1, 3), (p2, 3), (p3, 3), (p4, 1), (p5, 1)]);
    assert_eq!(top[0].sku.as_str(), "P-1");
    assert_eq!(top[0].name.as_str(), "Product P-1");

    // An empty window.
    let later = SalesWindows::ending_at(at("2027-06-01T00:00:00Z"));
    assert_eq!(
        analytics.sales_by_window(&later).await?,
        SalesByWindow::default()
    );
    assert!(
        analytics
            .top_products(later.last_30_days, later.until, 5)
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn low_stock_lists_active_products_below_the_threshold_lowest_first() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let Fixture { products } = fixture(&db).await;
    let [p1, p2, _p3, _p4, p5, _p6] = products;
    let analytics = analytics(&db);

    let low = analytics.low_stock(10, 20).await?;
    let levels: Vec<(Uuid, u32)> = low
        .iter()
        .map(|l| (l.product_id.0, l.stock.get()))
        .collect();
    // p3 has exactly 10 (not below), p4 is inactive.
    assert_eq!(levels, [(p1, 0), (p5, 3), (p2, 9)]);
    assert_eq!(low[1].sku.as_str(), "P-5");
    assert_eq!(analytics.count_low_stock(10).await?, 3);

    let first = analytics.low_stock(10, 2).await?;
    assert_eq!(first.len(), 2);
    assert_eq!(first[1].stock, Stock::new(3).unwrap());
    assert_eq!(analytics.count_low_stock(1).await?, 1);
    assert_eq!(analytics.count_low_stock(0).await?, 0);
    assert_eq!(analytics.count_low_stock(u32::MAX).await?, 5);
    Ok(())
}

#[tokio::test]
async fn only_active_subscriptions_are_counted() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let analytics = analytics(&db);
    assert_eq!(analytics.count_active_subscriptions().await?, 0);
    for (n, status) in ["active", "active", "cancelled"].into_iter().enumerate() {
        let user = insert_user(&db, &format!("subscriber{n}@example.com")).await?;
        subscription(&db, user, status).await;
    }
    assert_eq!(analytics.count_active_subscriptions().await?, 2);
    Ok(())
}

#[tokio::test]
async fn a_report_s_figures_cover_from_included_to_excluded_by_utc_day() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let Fixture { products } = fixture(&db).await;
    let [_p1, p2, p3, p4, _p5, p6] = products;
    let analytics = analytics(&db);

    // From the last microsecond of 20 November (an order then) to 09:00 on the 21st (an order
    // exactly then, excluded).
    let range = ReportRange::new(
        at("2026-11-20T23:59:59.999999Z"),
        at("2026-11-21T09:00:00Z"),
    )?;
    let figures = analytics.sales_figures(&range, 10).await?;
    let eur_code = Currency::parse("EUR")?;
    let usd_code = Currency::parse("USD")?;
    assert_eq!(
        figures.sales,
        [
            DaySales {
                date: day(11, 20),
                currency: usd_code,
                orders: 1,
                revenue_minor: 300,
            },
            DaySales {
                date: day(11, 21),
                currency: eur_code,
                orders: 1,
                revenue_minor: 2_000,
            },
        ]
    );
    assert_eq!(
        figures.units,
        [
            DayUnits {
                date: day(11, 20),
                units: 2,
            },
            DayUnits {
                date: day(11, 21),
                units: 2,
            },
        ]
    );
    assert_eq!(ranked(&figures.top_products), [(p2, 2), (p3, 2)]);

    // The whole fixture, assembled: the cancelled order never counts.
    let range = ReportRange::new(at("2026-10-01T00:00:00Z"), at("2026-12-01T00:00:00Z"))?;
    let report = SalesReport::assemble(&range, analytics.sales_figures(&range, 2).await?)?;
    assert_eq!(report.order_count, 8);
    assert_eq!(report.units, 3 + 1 + 2 + 40 + 2 + 1 + 1 + 2 + 50);
    assert_eq!(report.revenue, [eur(2_400), usd(4_300)]);
    assert_eq!(report.days.len(), 61);
    assert_eq!(ranked(&report.top_products), [(p4, 51), (p6, 41)]);
    let the_21st = report.days.iter().find(|d| d.date == day(11, 21)).unwrap();
    assert_eq!(
        (the_21st.orders, the_21st.units, the_21st.revenue.clone()),
        (3, 46, vec![eur(2_000), usd(1_600)])
    );
    Ok(())
}

#[tokio::test]
async fn a_revenue_beyond_64_bits_fails_the_statement() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let user = insert_user(&db, "whale@example.com").await?;
    for _ in 0..2 {
        order(
            &db,
            user,
            "2026-11-21T09:00:00Z",
            "placed",
            "USD",
            6_000_000_000_000_000_000,
            &[],
        )
        .await;
    }
    let analytics = analytics(&db);
    let range = ReportRange::new(at("2026-11-21T00:00:00Z"), at("2026-11-22T00:00:00Z"))?;
    let error = analytics.sales_figures(&range, 10).await.unwrap_err();
    assert!(format!("{error:#}").contains("out of range"), "{error:#}");
    let windows = SalesWindows::ending_at(at("2026-11-21T15:00:00Z"));
    assert!(analytics.sales_by_window(&windows).await.is_err());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// reports

fn queued_report(requested_by: UserId) -> Report {
    let request = ReportRequest::parse(
        Some("sales"),
        Some("2026-10-01T00:00:00Z"),
        Some("2026-11-01T00:00:00Z"),
    )
    .unwrap();
    Report::queued(ReportId(Uuid::now_v7()), request, requested_by, now())
}

fn job_for(report: &Report) -> Job {
    let t = now();
    Job {
        id: Uuid::now_v7(),
        kind: "reports.sales".into(),
        payload: format!(r#"{{"report_id":"{}"}}"#, report.id),
        status: JobStatus::Queued,
        attempts: 0,
        last_error: None,
        trace_parent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        trace_state: Some("congo=t61rcWkgMzE".into()),
        run_after: t,
        created_at: t,
        updated_at: t,
    }
}

fn sample_result(report: &Report) -> SalesReport {
    SalesReport::assemble(&report.range, Default::default()).unwrap()
}

#[tokio::test]
async fn a_report_is_stored_with_its_job_in_one_transaction_or_not_at_all() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let admin = insert_user(&db, "admin@example.com").await?;
    let reports = PgReportRepository::new(db.clone());
    let jobs = PgJobRepository::new(db.clone());

    let report = queued_report(admin);
    let job = job_for(&report);
    reports.create_with_job(&report, &job).await?;
    assert_eq!(reports.find(report.id).await?, Some(report.clone()));
    assert_eq!(jobs.find(job.id).await?, Some(job.clone()));
    assert!(reports.find(ReportId(Uuid::now_v7())).await?.is_none());

    // A job that cannot be stored (its id is taken) takes its report with it.
    let orphan = queued_report(admin);
    assert!(reports.create_with_job(&orphan, &job).await.is_err());
    assert!(reports.find(orphan.id).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_report_goes_queued_running_done_and_a_finished_one_never_changes() -> anyhow::Result<()>
{
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let admin = insert_user(&db, "admin@example.com").await?;
    let reports = PgReportRepository::new(db.clone());
    let report = queued_report(admin);
    reports.create_with_job(&report, &job_for(&report)).await?;

    let t1 = now() + chrono::Duration::seconds(1);
    let running = reports.start(report.id, t1).await?.expect("queued");
    assert_eq!(
        (running.status, running.started_at, running.finished_at),
        (ReportStatus::Running, Some(t1), None)
    );
    // A retried attempt starts it again; the first start is kept.
    let t2 = now() + chrono::Duration::seconds(2);
    let again = reports.start(report.id, t2).await?.expect("running");
    assert_eq!(again.started_at, Some(t1));

    let t3 = now() + chrono::Duration::seconds(3);
    let result = sample_result(&report);
    reports.complete(report.id, &result, t3).await?;
    let done = reports.find(report.id).await?.expect("stored");
    assert_eq!(done.status, ReportStatus::Done);
    assert_eq!(done.result, Some(result.clone()));
    assert_eq!((done.started_at, done.finished_at), (Some(t1), Some(t3)));
    assert_eq!(done.error, None);
    assert_eq!(done.kind, ReportKind::Sales);

    // A duplicate delivery finds nothing to do; late writes change nothing.
    assert!(reports.start(report.id, now()).await?.is_none());
    reports.fail(report.id, "late failure", now()).await?;
    reports.complete(report.id, &result, now()).await?;
    assert_eq!(reports.find(report.id).await?, Some(done));
    assert!(
        reports
            .start(ReportId(Uuid::now_v7()), now())
            .await?
            .is_none()
    );
    Ok(())
}

/// Prepared statements outlive a migration: on the application's pooled connections, and behind
/// PgBouncer on server connections that every client shares and that outlive the application's
/// restarts. A statement whose result columns are `*` changes its result type when a column is
/// added, and PostgreSQL then refuses to run it ("cached plan must not change result type").
#[tokio::test]
async fn a_column_added_after_a_report_started_does_not_break_the_next_start() -> anyhow::Result<()>
{
    let test_db = TestDatabase::create().await?;
    // One connection, so that the second start runs the statement the first one prepared.
    let db = test_db.single_connection();
    let admin = insert_user(&db, "admin@example.com").await?;
    let reports = PgReportRepository::new(db.clone());
    let first = queued_report(admin);
    reports.create_with_job(&first, &job_for(&first)).await?;
    reports.start(first.id, now()).await?.expect("queued");

    let mut conn = db.connection().await?;
    diesel::sql_query("ALTER TABLE reports ADD COLUMN added_later integer")
        .execute(&mut conn)
        .await?;
    drop(conn);

    let second = queued_report(admin);
    reports.create_with_job(&second, &job_for(&second)).await?;
    let started = reports.start(second.id, now()).await?.expect("queued");
    assert_eq!(started.status, ReportStatus::Running);
    Ok(())
}

#[tokio::test]
async fn a_failed_report_keeps_its_reason_and_never_gets_a_result() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let admin = insert_user(&db, "admin@example.com").await?;
    let reports = PgReportRepository::new(db.clone());

    // Failed without ever starting (every attempt failed before it could be marked running),
    // with an over-long reason.
    let report = queued_report(admin);
    reports.create_with_job(&report, &job_for(&report)).await?;
    let t = now() + chrono::Duration::seconds(5);
    reports.fail(report.id, &"x".repeat(3_000), t).await?;
    let failed = reports.find(report.id).await?.expect("stored");
    assert_eq!(failed.status, ReportStatus::Failed);
    assert_eq!(failed.error.as_deref().map(str::len), Some(2_000));
    assert_eq!((failed.started_at, failed.finished_at), (None, Some(t)));

    reports
        .complete(report.id, &sample_result(&report), now())
        .await?;
    assert!(reports.start(report.id, now()).await?.is_none());
    assert_eq!(reports.find(report.id).await?, Some(failed));
    Ok(())
}
