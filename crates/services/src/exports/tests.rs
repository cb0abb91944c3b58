//! ExportService against mockall mocks: who may export, what is valid, and how batches are read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{Duration, TimeZone};
use futures_util::StreamExt;
use strata_domain::{Currency, OrderId, OrderStatus, Role, UserId};
use strata_ports::{MockClock, MockExportRepository};
use uuid::Uuid;

use super::*;
use crate::test_support::{now, principal, unavailable};

fn user_row(i: usize) -> UserExportRow {
    let at = now() + Duration::seconds(i64::try_from(i).expect("small"));
    UserExportRow {
        id: UserId(Uuid::now_v7()),
        email: format!("user{i}@example.com"),
        display_name: format!("User {i}"),
        role: Role::Customer,
        created_at: at,
        updated_at: at,
    }
}

fn order_row(i: usize) -> OrderExportRow {
    let at = now() + Duration::seconds(i64::try_from(i).expect("small"));
    OrderExportRow {
        id: OrderId(Uuid::now_v7()),
        user_id: UserId(Uuid::now_v7()),
        status: OrderStatus::Placed,
        currency: Currency::parse("USD").expect("currency"),
        total_minor: 4999,
        item_count: 2,
        created_at: at,
        updated_at: at,
    }
}

fn clock() -> Arc<MockClock> {
    let mut clock = MockClock::new();
    clock.expect_now().return_const(now());
    Arc::new(clock)
}

fn service(exports: MockExportRepository, batch_size: usize) -> ExportService {
    ExportService::new(Arc::new(exports), clock(), batch_size)
}

fn admin() -> Principal {
    principal(Role::Admin)
}

fn params(format: Option<&str>, from: Option<&str>, to: Option<&str>) -> ExportParams {
    ExportParams {
        format: format.map(str::to_owned),
        from: from.map(str::to_owned),
        to: to.map(str::to_owned),
    }
}

/// A repository whose users are `sizes[n]` rows on the n-th call (then none), recording the
/// `after` key of every call.
fn users_in_batches(sizes: &[usize]) -> (MockExportRepository, Arc<Mutex<Vec<Option<ExportKey>>>>) {
    let sizes = sizes.to_vec();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let mut exports = MockExportRepository::new();
    exports
        .expect_users_after()
        .returning(move |after, _, limit| {
            let mut calls = seen.lock().expect("lock");
            let call = calls.len();
            calls.push(after);
            let size = sizes.get(call).copied().unwrap_or(0);
            assert!(size <= limit, "the test asks for more rows than the limit");
            let first = sizes[..call.min(sizes.len())].iter().sum::<usize>();
            Ok((first..first + size).map(user_row).collect())
        });
    (exports, calls)
}

fn fields(error: ExportError) -> Vec<(String, &'static str)> {
    match error {
        ExportError::Validation(errors) => errors
            .0
            .into_iter()
            .map(|error| (error.field, error.code))
            .collect(),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_customer_is_forbidden_and_nothing_is_read() {
    // No expectations: any repository call would panic.
    let service = service(MockExportRepository::new(), 10);
    let customer = principal(Role::Customer);
    for outcome in [
        service
            .users(&customer, &params(None, None, None))
            .await
            .map(|_| ()),
        service
            .orders(&customer, &params(None, None, None))
            .await
            .map(|_| ()),
    ] {
        assert!(
            matches!(outcome, Err(ExportError::Forbidden)),
            "{outcome:?}"
        );
    }
}

#[tokio::test]
async fn a_customer_is_forbidden_even_with_invalid_parameters() {
    let service = service(MockExportRepository::new(), 10);
    let outcome = service
        .users(
            &principal(Role::Customer),
            &params(Some("xlsx"), None, None),
        )
        .await;
    assert!(
        matches!(outcome, Err(ExportError::Forbidden)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn every_invalid_parameter_is_listed_and_nothing_is_read() {
    let service = service(MockExportRepository::new(), 10);
    let error = service
        .users(
            &admin(),
            &params(Some("xlsx"), Some("yesterday"), Some("2026-13-01")),
        )
        .await
        .unwrap_err();
    assert_eq!(
        fields(error),
        [
            ("format".to_owned(), "invalid_choice"),
            ("from".to_owned(), "invalid_timestamp"),
            ("to".to_owned(), "invalid_timestamp"),
        ]
    );
}

#[tokio::test]
async fn a_range_must_end_after_it_starts() {
    let service = service(MockExportRepository::new(), 10);
    for (from, to) in [
        ("2026-11-02T00:00:00Z", "2026-11-01T00:00:00Z"),
        ("2026-11-01T00:00:00Z", "2026-11-01T00:00:00Z"),
        // The same instant written in two offsets.
        ("2026-11-01T02:00:00+02:00", "2026-11-01T00:00:00Z"),
    ] {
        let error = service
            .orders(&admin(), &params(Some("csv"), Some(from), Some(to)))
            .await
            .unwrap_err();
        assert_eq!(
            fields(error),
            [("to".to_owned(), "out_of_range")],
            "{from} {to}"
        );
    }
}

#[test]
fn formats_parse_by_name_and_default_to_ndjson() {
    assert_eq!(ExportFormat::parse(None), Ok(ExportFormat::Ndjson));
    assert_eq!(
        ExportFormat::parse(Some("ndjson")),
        Ok(ExportFormat::Ndjson)
    );
    assert_eq!(ExportFormat::parse(Some("csv")), Ok(ExportFormat::Csv));
    for bad in ["", "CSV", "json", "csv "] {
        assert_eq!(
            ExportFormat::parse(Some(bad)).unwrap_err().code,
            "invalid_choice"
        );
    }
}

#[tokio::test]
async fn the_range_and_batch_size_reach_every_repository_call() {
    let mut exports = MockExportRepository::new();
    let from = Utc
        .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
        .single()
        .expect("instant");
    let to = Utc
        .with_ymd_and_hms(2026, 11, 2, 0, 0, 0)
        .single()
        .expect("instant");
    exports
        .expect_orders_after()
        .times(2)
        .returning(move |after, range, limit| {
            assert_eq!(
                range,
                ExportRange {
                    from: Some(from),
                    to: Some(to)
                }
            );
            assert_eq!(limit, 3);
            Ok(match after {
                None => (0..3).map(order_row).collect(),
                Some(_) => vec![order_row(3)],
            })
        });
    let export = service(exports, 3)
        .orders(
            &admin(),
            &params(
                None,
                Some("2026-11-01T00:00:00Z"),
                Some("2026-11-02T01:00:00+01:00"),
            ),
        )
        .await
        .expect("opens");
    assert_eq!(export.format, ExportFormat::Ndjson, "the default");
    assert_eq!(export.opened_at, now());
    let rows: Vec<_> = export.rows.collect().await;
    assert_eq!(rows.len(), 4);
}

#[tokio::test]
async fn the_first_batch_is_read_on_open_and_each_later_one_only_when_its_rows_are_wanted() {
    let (exports, calls) = users_in_batches(&[2, 2, 2, 2, 2, 2]);
    let export = service(exports, 2)
        .users(&admin(), &params(Some("csv"), None, None))
        .await
        .expect("opens");
    assert_eq!(calls.lock().expect("lock").len(), 1, "read on open");
    let mut rows = export.rows;
    for expected_calls in [1, 1, 2, 2, 3] {
        rows.next().await.expect("a row").expect("no failure");
        assert_eq!(calls.lock().expect("lock").len(), expected_calls);
    }
}

#[tokio::test]
async fn the_stream_ends_on_a_short_batch_without_another_query() {
    let (exports, calls) = users_in_batches(&[3, 3, 1]);
    let export = service(exports, 3)
        .users(&admin(), &params(None, None, None))
        .await
        .expect("opens");
    let rows: Vec<_> = export.rows.collect().await;
    assert_eq!(rows.len(), 7);
    assert_eq!(calls.lock().expect("lock").len(), 3);
}

#[tokio::test]
async fn a_full_last_batch_costs_one_empty_query() {
    let (exports, calls) = users_in_batches(&[2, 2]);
    let export = service(exports, 2)
        .users(&admin(), &params(None, None, None))
        .await
        .expect("opens");
    let rows: Vec<_> = export.rows.collect().await;
    assert_eq!(rows.len(), 4);
    assert_eq!(calls.lock().expect("lock").len(), 3);
}

#[tokio::test]
async fn an_empty_table_is_one_query_and_an_empty_stream() {
    let (exports, calls) = users_in_batches(&[]);
    let export = service(exports, 2)
        .users(&admin(), &params(None, None, None))
        .await
        .expect("opens");
    let rows: Vec<_> = export.rows.collect().await;
    assert!(rows.is_empty());
    assert_eq!(calls.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn each_batch_starts_after_the_last_row_of_the_previous_one_in_order() {
    let (exports, calls) = users_in_batches(&[2, 2, 1]);
    let export = service(exports, 2)
        .users(&admin(), &params(None, None, None))
        .await
        .expect("opens");
    let rows: Vec<UserExportRow> = export
        .rows
        .map(|row| row.expect("no failure"))
        .collect()
        .await;
    let emails: Vec<&str> = rows.iter().map(|row| row.email.as_str()).collect();
    assert_eq!(
        emails,
        [
            "user0@example.com",
            "user1@example.com",
            "user2@example.com",
            "user3@example.com",
            "user4@example.com"
        ]
    );
    assert_eq!(
        *calls.lock().expect("lock"),
        [None, Some(rows[1].key()), Some(rows[3].key())]
    );
}

#[tokio::test]
async fn a_database_that_is_down_when_the_export_opens_is_a_failure() {
    let mut exports = MockExportRepository::new();
    exports
        .expect_users_after()
        .times(1)
        .returning(|_, _, _| Err(unavailable()));
    let outcome = service(exports, 2)
        .users(&admin(), &params(None, None, None))
        .await;
    assert!(
        matches!(outcome, Err(ExportError::Failure(Failure::Unavailable(_)))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_failure_mid_export_is_the_last_item_and_nothing_more_is_read() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let mut exports = MockExportRepository::new();
    exports.expect_orders_after().returning(move |_, _, _| {
        match counted.fetch_add(1, Ordering::SeqCst) {
            0 => Ok((0..2).map(order_row).collect()),
            _ => Err(unavailable()),
        }
    });
    let export = service(exports, 2)
        .orders(&admin(), &params(None, None, None))
        .await
        .expect("opens");
    let items: Vec<_> = export.rows.collect().await;
    assert_eq!(items.len(), 3);
    assert!(items[..2].iter().all(Result::is_ok));
    assert!(matches!(items[2], Err(Failure::Unavailable(_))));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn dropping_the_stream_stops_the_export_and_releases_the_repository() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let mut exports = MockExportRepository::new();
    exports.expect_orders_after().returning(move |_, _, limit| {
        counted.fetch_add(1, Ordering::SeqCst);
        Ok((0..limit).map(order_row).collect())
    });
    let exports: Arc<dyn ExportRepository> = Arc::new(exports);
    let service = ExportService::new(exports.clone(), clock(), 2);
    let baseline = Arc::strong_count(&exports);
    let mut rows = service
        .orders(&admin(), &params(None, None, None))
        .await
        .expect("opens")
        .rows;
    rows.next().await.expect("a row").expect("no failure");
    assert!(
        Arc::strong_count(&exports) > baseline,
        "the open stream holds it"
    );
    drop(rows);
    assert_eq!(Arc::strong_count(&exports), baseline);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "nothing read after the drop"
    );
}

#[tokio::test]
async fn a_batch_size_of_zero_is_taken_as_one() {
    let (exports, calls) = users_in_batches(&[1, 1, 0]);
    let export = service(exports, 0)
        .users(&admin(), &params(None, None, None))
        .await
        .expect("opens");
    assert_eq!(export.rows.count().await, 2);
    assert_eq!(calls.lock().expect("lock").len(), 3);
}
