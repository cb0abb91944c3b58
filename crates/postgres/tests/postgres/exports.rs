//! The export adapter against a real server, each test in a fresh database cloned from the
//! migrated template.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use chrono::{DateTime, Duration, SubsecRound, Utc};
use diesel::sql_types::{Int2, Int8, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use strata_domain::{OrderStatus, Role, User, UserId};
use strata_ports::{
    ExportKey, ExportRange, ExportRepository, OrderExportRow, UserExportRow, UserRepository,
};
use strata_postgres::testing::TestDatabase;
use strata_postgres::{Database, PgExportRepository, PgUserRepository};
use uuid::Uuid;

use crate::helpers::new_user;

fn base() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6) - Duration::days(1)
}

async fn user_at(db: &Database, email: &str, created_at: DateTime<Utc>) -> User {
    PgUserRepository::new(db.clone())
        .create(&new_user(email, created_at))
        .await
        .unwrap()
}

async fn execute(
    db: &Database,
    query: impl diesel::query_builder::QueryFragment<diesel::pg::Pg>
    + diesel::query_builder::QueryId
    + Send,
) -> usize {
    let mut conn = db.connection().await.unwrap();
    query.execute(&mut conn).await.unwrap()
}

/// A product for order lines to refer to.
async fn product(db: &Database) -> Uuid {
    let id = Uuid::now_v7();
    execute(
        db,
        diesel::sql_query(
            "INSERT INTO products (id, sku, name, price_minor, currency, stock) \
             VALUES ($1, 'LAMP-001', 'Lamp', 500, 'USD', 10)",
        )
        .bind::<SqlUuid, _>(id),
    )
    .await;
    id
}

/// An order of `user` at `created_at` with `lines` lines (distinct products), stored directly.
async fn order_at(
    db: &Database,
    user: UserId,
    created_at: DateTime<Utc>,
    lines: i32,
    products: &[Uuid],
) -> Uuid {
    let id = Uuid::now_v7();
    execute(
        db,
        diesel::sql_query(
            "INSERT INTO orders (id, user_id, status, currency, total_minor, created_at, updated_at) \
             VALUES ($1, $2, 'placed', 'EUR', $3, $4, $4)",
        )
        .bind::<SqlUuid, _>(id)
        .bind::<SqlUuid, _>(user.0)
        .bind::<Int8, _>(500 * i64::from(lines))
        .bind::<Timestamptz, _>(created_at),
    )
    .await;
    for position in 0..lines {
        execute(
            db,
            diesel::sql_query(
                "INSERT INTO order_items (order_id, position, product_id, sku, name, \
                 unit_price_minor, quantity, line_total_minor) \
                 VALUES ($1, $2, $3, 'LAMP-001', 'Lamp', 500, 1, 500)",
            )
            .bind::<SqlUuid, _>(id)
            .bind::<Int2, _>(i16::try_from(position).unwrap())
            .bind::<SqlUuid, _>(products[usize::try_from(position).unwrap()]),
        )
        .await;
    }
    id
}

/// Every user of `range`, batch after batch of `limit`, as the service reads them.
async fn all_users(
    exports: &PgExportRepository,
    range: ExportRange,
    limit: usize,
) -> (Vec<UserExportRow>, usize) {
    let mut rows = Vec::new();
    let mut after: Option<ExportKey> = None;
    let mut calls = 0;
    loop {
        let batch = exports.users_after(after, range, limit).await.unwrap();
        calls += 1;
        assert!(batch.len() <= limit);
        let done = batch.len() < limit;
        after = batch.last().map(UserExportRow::key);
        rows.extend(batch);
        if done {
            return (rows, calls);
        }
    }
}

async fn all_orders(
    exports: &PgExportRepository,
    range: ExportRange,
    limit: usize,
) -> Vec<OrderExportRow> {
    let mut rows = Vec::new();
    let mut after: Option<ExportKey> = None;
    loop {
        let batch = exports.orders_after(after, range, limit).await.unwrap();
        let done = batch.len() < limit;
        after = batch.last().map(OrderExportRow::key);
        rows.extend(batch);
        if done {
            return rows;
        }
    }
}

fn in_use(db: &Database) -> u32 {
    let stats = db.pool_stats();
    stats.connections - stats.idle_connections
}

#[tokio::test]
async fn user_batches_walk_every_user_once_in_order_even_with_equal_timestamps() {
    let test_db = TestDatabase::create().await.unwrap();
    let db = test_db.database();
    let base = base();
    let mut expected = Vec::new();
    for i in 0..11 {
        // Groups of three share a timestamp, so the id must break ties across batches.
        let user = user_at(
            &db,
            &format!("user{i}@example.com"),
            base + Duration::seconds(i / 3),
        )
        .await;
        expected.push(user);
    }
    expected.sort_by_key(|user| (user.created_at, user.id));
    let exports = PgExportRepository::new(db.clone());

    let (rows, calls) = all_users(&exports, ExportRange::default(), 4).await;

    assert_eq!(calls, 3, "4 + 4 + 3");
    let expected: Vec<UserExportRow> = expected
        .into_iter()
        .map(|user| UserExportRow {
            id: user.id,
            email: user.email.as_str().to_owned(),
            display_name: user.display_name.as_str().to_owned(),
            role: user.role,
            created_at: user.created_at,
            updated_at: user.updated_at,
        })
        .collect();
    assert_eq!(rows, expected);
    assert_eq!(in_use(&db), 0, "no connection is kept between batches");
}

#[tokio::test]
async fn text_the_domain_would_refuse_today_is_exported_as_stored() {
    let test_db = TestDatabase::create().await.unwrap();
    let db = test_db.database();
    let user = user_at(&db, "ada@example.com", base()).await;
    // A legacy row: the database allows what the domain's rules (no control characters) refuse.
    execute(
        &db,
        diesel::sql_query("UPDATE users SET display_name = $1, role = 'admin' WHERE id = $2")
            .bind::<Text, _>("a, \"b\"\nc")
            .bind::<SqlUuid, _>(user.id.0),
    )
    .await;
    let exports = PgExportRepository::new(db);
    let rows = exports
        .users_after(None, ExportRange::default(), 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].display_name, "a, \"b\"\nc");
    assert_eq!(rows[0].role, Role::Admin);
}

#[tokio::test]
async fn order_batches_count_each_order_s_lines_and_walk_in_order() {
    let test_db = TestDatabase::create().await.unwrap();
    let db = test_db.database();
    let base = base();
    let buyer = user_at(&db, "ada@example.com", base).await.id;
    let mut products = Vec::new();
    for i in 0..3 {
        let id = Uuid::now_v7();
        execute(
            &db,
            diesel::sql_query(
                "INSERT INTO products (id, sku, name, price_minor, currency, stock) \
                 VALUES ($1, $2, 'Lamp', 500, 'USD', 10)",
            )
            .bind::<SqlUuid, _>(id)
            .bind::<Text, _>(format!("LAMP-00{i}")),
        )
        .await;
        products.push(id);
    }
    let mut expected = Vec::new();
    for i in 0..7 {
        let lines = i % 4; // 0 to 3 lines: an order without lines counts 0, not 1
        let at = base + Duration::seconds(i64::from(i / 2));
        let id = order_at(&db, buyer, at, lines, &products).await;
        expected.push((at, id, i64::from(lines)));
    }
    expected.sort();
    let exports = PgExportRepository::new(db.clone());

    let rows = all_orders(&exports, ExportRange::default(), 3).await;

    let seen: Vec<(DateTime<Utc>, Uuid, i64)> = rows
        .iter()
        .map(|row| (row.created_at, row.id.0, row.item_count))
        .collect();
    assert_eq!(seen, expected);
    for row in &rows {
        assert_eq!(row.user_id, buyer);
        assert_eq!(row.status, OrderStatus::Placed);
        assert_eq!(row.currency.as_str(), "EUR");
        assert_eq!(row.total_minor, 500 * row.item_count);
        assert_eq!(row.updated_at, row.created_at);
    }
    assert_eq!(in_use(&db), 0);
}

#[tokio::test]
async fn the_range_is_half_open_on_created_at_for_both_tables() {
    let test_db = TestDatabase::create().await.unwrap();
    let db = test_db.database();
    let base = base();
    let product = product(&db).await;
    let mut users = Vec::new();
    let mut orders = Vec::new();
    for hour in 0..6 {
        let at = base + Duration::hours(hour);
        let user = user_at(&db, &format!("user{hour}@example.com"), at).await;
        orders.push(order_at(&db, user.id, at, 1, &[product]).await);
        users.push(user.id);
    }
    let range = ExportRange {
        from: Some(base + Duration::hours(1)),
        to: Some(base + Duration::hours(4)),
    };
    let exports = PgExportRepository::new(db);

    // Batches of 2 so that the keyset and the range combine.
    let (user_rows, _) = all_users(&exports, range, 2).await;
    let order_rows = all_orders(&exports, range, 2).await;

    assert_eq!(
        user_rows.iter().map(|row| row.id).collect::<Vec<_>>(),
        users[1..4],
        "from is included, to is not"
    );
    assert_eq!(
        order_rows.iter().map(|row| row.id.0).collect::<Vec<_>>(),
        orders[1..4]
    );
    let (open_ended, _) = all_users(
        &exports,
        ExportRange {
            from: Some(base + Duration::hours(4)),
            to: None,
        },
        10,
    )
    .await;
    assert_eq!(
        open_ended.iter().map(|row| row.id).collect::<Vec<_>>(),
        users[4..]
    );
    let (until, _) = all_users(
        &exports,
        ExportRange {
            from: None,
            to: Some(base + Duration::hours(1)),
        },
        10,
    )
    .await;
    assert_eq!(
        until.iter().map(|row| row.id).collect::<Vec<_>>(),
        users[..1]
    );
}

#[tokio::test]
async fn an_empty_table_is_an_empty_batch() {
    let test_db = TestDatabase::create().await.unwrap();
    let exports = PgExportRepository::new(test_db.database());
    assert!(
        exports
            .orders_after(None, ExportRange::default(), 100)
            .await
            .unwrap()
            .is_empty()
    );
}
