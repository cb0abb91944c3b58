//! A statement that waits on a lock past the query timeout, against a real server: the request is
//! answered `Unavailable` at the timeout, the statement is cancelled on the server (not only
//! abandoned by the client), the connection it ran on is never handed out still busy, and other
//! work keeps being answered meanwhile.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::time::{Duration, Instant};

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use strata_domain::{Currency, ProductId, Stock};
use strata_ports::{PortError, ProductRepository, StockAdjustError};
use strata_postgres::testing::{TestDatabase, count, now};
use strata_postgres::{Database, PgProductRepository, PoolSettings};
use uuid::Uuid;

use crate::helpers::product_at;

const QUERY_TIMEOUT: Duration = Duration::from_millis(300);
/// What the cancel may add to the timeout: a round trip to the server (or the pooler).
const MARGIN: Duration = Duration::from_millis(700);

async fn product(db: &Database) -> ProductId {
    let sku = format!(
        "LOCK-{}",
        &Uuid::new_v4().simple().to_string()[..8].to_uppercase()
    );
    PgProductRepository::new(db.clone())
        .create(&product_at(
            &sku,
            "Desk lamp",
            1999,
            Currency::parse("USD").unwrap(),
            10,
            now(),
        ))
        .await
        .unwrap()
        .id
}

/// A direct connection's transaction holding the product's row lock until [`release`].
async fn hold_row_lock(
    holder: &Database,
    id: ProductId,
) -> impl std::ops::DerefMut<Target = AsyncPgConnection> + '_ {
    let mut conn = holder.connection().await.unwrap();
    conn.batch_execute(&format!(
        "BEGIN; SELECT 1 FROM products WHERE id = '{}' FOR UPDATE",
        id.0
    ))
    .await
    .unwrap();
    conn
}

async fn release(mut lock: impl std::ops::DerefMut<Target = AsyncPgConnection>) {
    lock.batch_execute("ROLLBACK").await.unwrap();
}

/// Backends of this database, but the observer's own, still running an `UPDATE products`.
async fn updates_running(observer: &Database) -> i64 {
    count(
        observer,
        "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND state = 'active' AND query LIKE 'UPDATE products%'",
    )
    .await
    .unwrap()
}

fn pool(test_db: &TestDatabase, max_size: u32, query_timeout: Duration) -> Database {
    Database::connect_lazy(
        test_db.url(),
        &PoolSettings {
            max_size,
            query_timeout,
            ..PoolSettings::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_waiting_on_a_lock_is_cancelled_on_the_server_at_the_query_timeout()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let id = product(&test_db.database()).await;
    let direct = test_db.direct();
    let lock = hold_row_lock(&direct, id).await;
    // One connection: whatever runs next runs where the abandoned statement ran.
    let db = pool(&test_db, 1, QUERY_TIMEOUT);
    let products = PgProductRepository::new(db.clone());

    let started = Instant::now();
    let result = products.adjust_stock(id, 1, now()).await;
    let answered = started.elapsed();
    assert!(
        matches!(
            result,
            Err(StockAdjustError::Port(PortError::Unavailable(_)))
        ),
        "{result:?}"
    );
    assert!(
        answered >= QUERY_TIMEOUT && answered < QUERY_TIMEOUT + MARGIN,
        "answered after {answered:?}"
    );

    // The lock is still held: only a cancel on the server can have ended the statement.
    let deadline = Instant::now() + MARGIN;
    let mut running = updates_running(&direct).await;
    while running > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        running = updates_running(&direct).await;
    }
    assert_eq!(running, 0, "the abandoned UPDATE still runs on the server");

    let started = Instant::now();
    // Bounded here: behind a statement still waiting on the lock it would wait as long.
    let users = tokio::time::timeout(
        Duration::from_secs(2),
        count(&db, "SELECT count(*) AS n FROM users"),
    )
    .await;
    assert!(matches!(users, Ok(Ok(_))), "{users:?}");
    assert!(
        started.elapsed() < QUERY_TIMEOUT,
        "the next statement waited {:?}: its connection was still busy",
        started.elapsed()
    );

    release(lock).await;
    let stock = products.find_by_id(id).await?.unwrap().stock;
    assert_eq!(
        stock,
        Stock::new(10).unwrap(),
        "the cancelled UPDATE applied"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_work_is_answered_while_a_statement_waits_on_a_lock() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let id = product(&test_db.database()).await;
    let other = product(&test_db.database()).await;
    let direct = test_db.direct();
    let lock = hold_row_lock(&direct, id).await;
    let db = pool(&test_db, 4, Duration::from_secs(2));
    let products = PgProductRepository::new(db.clone());

    let waiting = {
        let products = products.clone();
        tokio::spawn(async move { products.adjust_stock(id, 1, now()).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..10 {
        let started = Instant::now();
        let found = products.find_by_id(other).await?;
        assert!(found.is_some());
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "a read waited {:?} behind the locked statement",
            started.elapsed()
        );
    }
    assert!(!waiting.is_finished(), "the locked statement did not wait");

    release(lock).await;
    let adjusted = waiting.await?;
    assert!(adjusted.is_ok(), "{adjusted:?}");
    Ok(())
}
