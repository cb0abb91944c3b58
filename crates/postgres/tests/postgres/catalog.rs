//! The product and order adapters against a real server, each test in a fresh database cloned
//! from the migrated template.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::connection::InstrumentationEvent;
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
use strata_domain::{
    Currency, IdempotencyKey, InvalidTransition, Order, OrderId, OrderRejection, OrderRequest,
    OrderStatus, Price, Product, ProductId, ProductName, RawLine, ShortLine, Sku, Stock,
    StockError, UserId,
};
use strata_ports::{
    IdempotencyClaim, NewOrder, OrderFilter, OrderPageKey, OrderRepository, PlaceOrderError,
    Placement, PortError, ProductChanges, ProductFilter, ProductPageKey, ProductQuery,
    ProductRepository, ProductSort, ProductWriteError, SortDirection, StockAdjustError,
    TransitionError,
};
use strata_postgres::testing::{TestDatabase, count, now};
use strata_postgres::{Database, PgOrderRepository, PgProductRepository};
use uuid::Uuid;

use crate::helpers::{product_at, user};

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}

async fn stocked(db: &Database, sku: &str, price_minor: i64, stock: i64) -> Product {
    PgProductRepository::new(db.clone())
        .create(&product_at(
            sku,
            "Desk lamp",
            price_minor,
            usd(),
            stock,
            now(),
        ))
        .await
        .unwrap()
}

async fn stock_of(db: &Database, id: ProductId) -> u32 {
    PgProductRepository::new(db.clone())
        .find_by_id(id)
        .await
        .unwrap()
        .expect("the product exists")
        .stock
        .get()
}

fn request(lines: &[(ProductId, i64)]) -> OrderRequest {
    let raw: Vec<RawLine> = lines
        .iter()
        .map(|(id, quantity)| RawLine {
            product_id: Some(id.0.to_string()),
            quantity: Some(*quantity),
        })
        .collect();
    OrderRequest::parse(&raw).unwrap()
}

fn new_order(user_id: UserId, lines: &[(ProductId, i64)]) -> NewOrder {
    NewOrder {
        id: OrderId(Uuid::now_v7()),
        user_id,
        request: request(lines),
        created_at: now(),
        idempotency: None,
    }
}

fn claim(key: &str, fingerprint: &str, expires_at: DateTime<Utc>) -> IdempotencyClaim {
    IdempotencyClaim {
        key: IdempotencyKey::parse(key).unwrap(),
        operation: "orders.place",
        fingerprint: fingerprint.to_owned(),
        expires_at,
    }
}

fn placed(placement: Result<Placement, PlaceOrderError>) -> Order {
    match placement {
        Ok(Placement::Placed(order)) => order,
        other => panic!("expected a placed order, got {other:?}"),
    }
}

#[tokio::test]
async fn products_are_created_found_and_updated_and_a_duplicate_sku_is_sku_taken()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let products = PgProductRepository::new(test_db.database());
    let lamp = product_at("LAMP-1", "Desk lamp", 2_500, usd(), 4, now());
    let created = products.create(&lamp).await?;
    assert_eq!(created, lamp);
    assert_eq!(products.find_by_id(lamp.id).await?, Some(lamp.clone()));
    assert!(
        products
            .find_by_id(ProductId(Uuid::now_v7()))
            .await?
            .is_none()
    );

    let clash = product_at("LAMP-1", "Other lamp", 100, usd(), 1, now());
    assert!(matches!(
        products.create(&clash).await,
        Err(ProductWriteError::SkuTaken)
    ));
    let desk = products
        .create(&product_at("DESK-1", "Desk", 9_900, usd(), 2, now()))
        .await?;
    let to_lamp_sku = ProductChanges {
        sku: Some(Sku::parse("LAMP-1")?),
        ..ProductChanges::default()
    };
    assert!(matches!(
        products.update(desk.id, &to_lamp_sku, now()).await,
        Err(ProductWriteError::SkuTaken)
    ));

    let later = now() + chrono::Duration::seconds(5);
    let changes = ProductChanges {
        name: Some(ProductName::parse("Floor lamp")?),
        price: Some(Price::new(3_000, eur())?),
        active: Some(false),
        ..ProductChanges::default()
    };
    let updated = products.update(lamp.id, &changes, later).await?;
    let expected = Product {
        name: ProductName::parse("Floor lamp")?,
        price: Price::new(3_000, eur())?,
        active: false,
        updated_at: later,
        ..lamp.clone()
    };
    assert_eq!(
        updated, expected,
        "only the named fields and updated_at change"
    );
    assert_eq!(
        products.find_by_id(lamp.id).await?,
        Some(expected.clone()),
        "an inactive product is still found by id"
    );
    let untouched = products
        .update(
            lamp.id,
            &ProductChanges::default(),
            later + chrono::Duration::seconds(5),
        )
        .await?;
    assert_eq!(untouched, expected, "no changes: not even updated_at moves");

    let ghost = ProductId(Uuid::now_v7());
    assert!(matches!(
        products.update(ghost, &changes, later).await,
        Err(ProductWriteError::NotFound)
    ));
    assert!(matches!(
        products
            .update(ghost, &ProductChanges::default(), later)
            .await,
        Err(ProductWriteError::NotFound)
    ));
    Ok(())
}

#[tokio::test]
async fn stock_adjusts_up_and_down_to_zero_but_never_below_and_the_refusal_says_why()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let products = PgProductRepository::new(test_db.database());
    let lamp = products
        .create(&product_at("LAMP-1", "Desk lamp", 2_500, usd(), 5, now()))
        .await?;
    let later = now() + chrono::Duration::seconds(1);
    let up = products.adjust_stock(lamp.id, 3, later).await?;
    assert_eq!((up.stock.get(), up.updated_at), (8, later));
    assert_eq!(
        products.adjust_stock(lamp.id, -8, later).await?.stock.get(),
        0
    );

    let refused = products.adjust_stock(lamp.id, -1, later).await;
    assert!(
        matches!(
            refused,
            Err(StockAdjustError::Refused(StockError::Insufficient {
                requested: 1,
                available: 0
            }))
        ),
        "{refused:?}"
    );
    products.adjust_stock(lamp.id, 5, later).await?;
    let refused = products.adjust_stock(lamp.id, -7, later).await;
    assert!(
        matches!(
            refused,
            Err(StockAdjustError::Refused(StockError::Insufficient {
                requested: 7,
                available: 5
            }))
        ),
        "{refused:?}"
    );
    assert!(matches!(
        products
            .adjust_stock(lamp.id, i64::from(Stock::MAX), later)
            .await,
        Err(StockAdjustError::Refused(StockError::TooLarge))
    ));
    // Far beyond any stock: refused by the rule, not by an arithmetic overflow in SQL.
    assert!(matches!(
        products.adjust_stock(lamp.id, i64::MIN, later).await,
        Err(StockAdjustError::Refused(StockError::Insufficient {
            available: 5,
            ..
        }))
    ));
    assert!(matches!(
        products.adjust_stock(lamp.id, i64::MAX, later).await,
        Err(StockAdjustError::Refused(StockError::TooLarge))
    ));
    assert_eq!(stock_of(&test_db.database(), lamp.id).await, 5);
    assert!(matches!(
        products
            .adjust_stock(ProductId(Uuid::now_v7()), 1, later)
            .await,
        Err(StockAdjustError::NotFound)
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_stock_takes_never_oversell() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.roomy();
    let products = PgProductRepository::new(db.clone());
    let lamp = stocked(&db, "LAMP-1", 100, 10).await;
    let takes: Vec<_> = (0..30)
        .map(|_| {
            let products = products.clone();
            tokio::spawn(async move { products.adjust_stock(lamp.id, -1, now()).await })
        })
        .collect();
    let (mut taken, mut refused) = (0, 0);
    for take in takes {
        match take.await? {
            Ok(_) => taken += 1,
            Err(StockAdjustError::Refused(StockError::Insufficient { requested: 1, .. })) => {
                refused += 1
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((taken, refused), (10, 20));
    assert_eq!(stock_of(&db, lamp.id).await, 0);
    Ok(())
}

#[tokio::test]
async fn an_order_captures_prices_and_keeps_its_lines_in_request_order() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let products = PgProductRepository::new(db.clone());
    let orders = PgOrderRepository::new(db.clone());
    let ada = user(&db, "ada@example.com").await;
    let lamp = stocked(&db, "LAMP-1", 2_500, 10).await;
    let desk = stocked(&db, "DESK-1", 9_900, 3).await;
    // The desk's id sorts after the lamp's; the request names it first.
    let order = placed(
        orders
            .place(&new_order(ada, &[(desk.id, 2), (lamp.id, 1)]))
            .await,
    );
    let ids: Vec<_> = order.lines.iter().map(|l| l.product_id).collect();
    assert_eq!(ids, [desk.id, lamp.id]);
    assert_eq!(order.total.amount_minor, 2 * 9_900 + 2_500);
    assert_eq!(order.status, OrderStatus::Placed);
    assert_eq!(order.user_id, ada);
    assert_eq!(
        (stock_of(&db, lamp.id).await, stock_of(&db, desk.id).await),
        (9, 1)
    );

    let repriced = ProductChanges {
        price: Some(Price::new(1, usd())?),
        ..ProductChanges::default()
    };
    products.update(desk.id, &repriced, now()).await?;
    assert_eq!(
        orders.find(order.id).await?,
        Some(order.clone()),
        "the stored order reads as placed, prices as captured"
    );
    assert!(orders.find(OrderId(Uuid::now_v7())).await?.is_none());

    // Unknown and inactive products are invalid lines; nothing is written.
    let deactivate = ProductChanges {
        active: Some(false),
        ..ProductChanges::default()
    };
    products.update(lamp.id, &deactivate, now()).await?;
    let ghost = ProductId(Uuid::now_v7());
    let refused = orders
        .place(&new_order(ada, &[(lamp.id, 1), (ghost, 1), (desk.id, 1)]))
        .await;
    let Err(PlaceOrderError::Rejected(OrderRejection::InvalidLines(errors))) = refused else {
        panic!("expected invalid lines, got {refused:?}");
    };
    let codes: Vec<_> = errors
        .0
        .iter()
        .map(|e| (e.field.as_str(), e.code))
        .collect();
    assert_eq!(
        codes,
        [
            ("items[0].product_id", "inactive"),
            ("items[1].product_id", "not_found")
        ]
    );
    assert_eq!(stock_of(&db, desk.id).await, 1);
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM orders")
            .await
            .unwrap(),
        1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_orders_for_ten_units_place_exactly_ten() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.roomy();
    let orders = PgOrderRepository::new(db.clone());
    let lamp = stocked(&db, "LAMP-1", 2_500, 10).await;
    let mut users = Vec::new();
    for i in 0..5 {
        users.push(user(&db, &format!("user{i}@example.com")).await);
    }
    let attempts: Vec<_> = (0..50)
        .map(|i| {
            let (orders, order) = (orders.clone(), new_order(users[i % 5], &[(lamp.id, 1)]));
            tokio::spawn(async move { orders.place(&order).await })
        })
        .collect();
    let (mut placed, mut short) = (0, 0);
    for attempt in attempts {
        match attempt.await? {
            Ok(Placement::Placed(_)) => placed += 1,
            Err(PlaceOrderError::Rejected(OrderRejection::InsufficientStock(lines))) => {
                assert_eq!(
                    lines,
                    [ShortLine {
                        index: 0,
                        product_id: lamp.id,
                        requested: 1,
                        available: 0
                    }]
                );
                short += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((placed, short), (10, 40));
    assert_eq!(stock_of(&db, lamp.id).await, 0);
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM orders")
            .await
            .unwrap(),
        10
    );
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM order_items")
            .await
            .unwrap(),
        10
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_of_one_idempotency_key_place_once_and_replay_that_order()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.roomy();
    let orders = PgOrderRepository::new(db.clone());
    let ada = user(&db, "ada@example.com").await;
    let lamp = stocked(&db, "LAMP-1", 2_500, 10).await;
    let key = claim(
        "key-1",
        "fingerprint-a",
        now() + chrono::Duration::hours(24),
    );
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            // Each retry of the request gets a fresh order id, as the service would give it.
            let order = NewOrder {
                idempotency: Some(key.clone()),
                ..new_order(ada, &[(lamp.id, 3)])
            };
            let orders = orders.clone();
            tokio::spawn(async move { orders.place(&order).await })
        })
        .collect();
    let (mut first, mut replays) = (Vec::new(), Vec::new());
    for attempt in attempts {
        match attempt.await? {
            Ok(Placement::Placed(order)) => first.push(order),
            Ok(Placement::Replayed(order)) => replays.push(order),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((first.len(), replays.len()), (1, 9));
    assert!(replays.iter().all(|replay| replay == &first[0]));
    assert_eq!(stock_of(&db, lamp.id).await, 7, "stock is taken once");
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM orders")
            .await
            .unwrap(),
        1
    );
    assert_eq!(orders.find(first[0].id).await?, Some(first[0].clone()));
    Ok(())
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_refused_and_an_expired_key_places_afresh()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let orders = PgOrderRepository::new(db.clone());
    let (ada, bob) = (
        user(&db, "ada@example.com").await,
        user(&db, "bob@example.com").await,
    );
    let lamp = stocked(&db, "LAMP-1", 2_500, 10).await;
    let tomorrow = now() + chrono::Duration::hours(24);
    let with_key = |user_id, claim: IdempotencyClaim| NewOrder {
        idempotency: Some(claim),
        ..new_order(user_id, &[(lamp.id, 1)])
    };

    let first = placed(
        orders
            .place(&with_key(ada, claim("k", "a", tomorrow)))
            .await,
    );
    let reused = orders
        .place(&with_key(ada, claim("k", "b", tomorrow)))
        .await;
    assert!(
        matches!(reused, Err(PlaceOrderError::KeyReused)),
        "{reused:?}"
    );
    let other_operation = IdempotencyClaim {
        operation: "subscriptions.create",
        ..claim("k", "a", tomorrow)
    };
    let reused = orders.place(&with_key(ada, other_operation)).await;
    assert!(
        matches!(reused, Err(PlaceOrderError::KeyReused)),
        "{reused:?}"
    );
    match orders
        .place(&with_key(ada, claim("k", "a", tomorrow)))
        .await?
    {
        Placement::Replayed(order) => assert_eq!(order, first),
        other => panic!("expected a replay, got {other:?}"),
    }
    // Keys belong to a user: another user's same key is a different key.
    placed(
        orders
            .place(&with_key(bob, claim("k", "a", tomorrow)))
            .await,
    );
    assert_eq!(stock_of(&db, lamp.id).await, 8);

    let expired = now() - chrono::Duration::seconds(1);
    let old = placed(orders.place(&with_key(ada, claim("e", "a", expired))).await);
    let again = placed(
        orders
            .place(&with_key(ada, claim("e", "a", tomorrow)))
            .await,
    );
    assert_ne!(old.id, again.id, "an expired key is used afresh");
    assert_eq!(stock_of(&db, lamp.id).await, 6);
    Ok(())
}

/// Writes an idempotency record in a transaction of its own that stays open until the caller
/// commits or rolls it back, as a concurrent request holding the key would.
async fn hold_key(
    url: &str,
    user_id: UserId,
    key: &str,
    response: Option<&Order>,
) -> diesel_async::AsyncPgConnection {
    let mut conn = diesel_async::AsyncPgConnection::establish(url)
        .await
        .unwrap();
    conn.batch_execute("BEGIN").await.unwrap();
    diesel::sql_query(
        "INSERT INTO idempotency_keys (user_id, key, operation, fingerprint, response, created_at, expires_at) \
         VALUES ($1, $2, 'orders.place', 'a', $3, now(), now() + interval '1 day')",
    )
    .bind::<diesel::sql_types::Uuid, _>(user_id.0)
    .bind::<diesel::sql_types::Text, _>(key)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Jsonb>, _>(
        response.map(|order| serde_json::to_value(order).unwrap()),
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_whose_key_is_held_waits_then_replays_or_goes_ahead_on_rollback()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let orders = PgOrderRepository::new(db.clone());
    let ada = user(&db, "ada@example.com").await;
    let lamp = stocked(&db, "LAMP-1", 2_500, 10).await;
    let tomorrow = now() + chrono::Duration::hours(24);
    let first = placed(orders.place(&new_order(ada, &[(lamp.id, 1)])).await);
    let elsewhere = Order {
        id: OrderId(Uuid::now_v7()),
        ..first
    };
    let attempt = |key: &str| {
        let (orders, order) = (
            orders.clone(),
            NewOrder {
                idempotency: Some(claim(key, "a", tomorrow)),
                ..new_order(ada, &[(lamp.id, 1)])
            },
        );
        tokio::spawn(async move { orders.place(&order).await })
    };

    let mut holder = hold_key(test_db.url(), ada, "committed", Some(&elsewhere)).await;
    let waiting = attempt("committed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "it waits for the holder of the key");
    holder.batch_execute("COMMIT").await?;
    match waiting.await?? {
        Placement::Replayed(order) => assert_eq!(order, elsewhere),
        other => panic!("expected the holder's order, got {other:?}"),
    }
    assert_eq!(stock_of(&db, lamp.id).await, 9, "no second effect");

    let mut holder = hold_key(test_db.url(), ada, "rolled-back", None).await;
    let waiting = attempt("rolled-back");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "it waits for the holder of the key");
    holder.batch_execute("ROLLBACK").await?;
    placed(waiting.await?);
    assert_eq!(stock_of(&db, lamp.id).await, 8);

    // A record committed without its response cannot be replayed: a broken invariant, not a 4xx.
    let mut holder = hold_key(test_db.url(), ada, "no-response", None).await;
    holder.batch_execute("COMMIT").await?;
    let broken = attempt("no-response").await?;
    assert!(
        matches!(broken, Err(PlaceOrderError::Port(PortError::Unexpected(_)))),
        "{broken:?}"
    );
    assert_eq!(stock_of(&db, lamp.id).await, 8);
    Ok(())
}

#[tokio::test]
async fn a_refused_order_leaves_no_key_behind_so_a_retry_after_restocking_succeeds()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let orders = PgOrderRepository::new(db.clone());
    let products = PgProductRepository::new(db.clone());
    let ada = user(&db, "ada@example.com").await;
    let lamp = stocked(&db, "LAMP-1", 2_500, 1).await;
    let attempt = NewOrder {
        idempotency: Some(claim("k", "a", now() + chrono::Duration::hours(24))),
        ..new_order(ada, &[(lamp.id, 2)])
    };
    let refused = orders.place(&attempt).await;
    let Err(PlaceOrderError::Rejected(OrderRejection::InsufficientStock(short))) = refused else {
        panic!("expected a stock refusal, got {refused:?}");
    };
    assert_eq!(
        short,
        [ShortLine {
            index: 0,
            product_id: lamp.id,
            requested: 2,
            available: 1
        }]
    );
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM idempotency_keys")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM orders")
            .await
            .unwrap(),
        0
    );
    assert_eq!(stock_of(&db, lamp.id).await, 1);

    products.adjust_stock(lamp.id, 1, now()).await?;
    let order = placed(orders.place(&attempt).await);
    assert_eq!(stock_of(&db, lamp.id).await, 0);
    match orders.place(&attempt).await? {
        Placement::Replayed(replayed) => assert_eq!(replayed, order),
        other => panic!("expected a replay, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_naming_the_same_products_in_opposite_orders_never_deadlock() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.roomy();
    let orders = PgOrderRepository::new(db.clone());
    let ada = user(&db, "ada@example.com").await;
    let a = stocked(&db, "PROD-A", 100, 60).await;
    let b = stocked(&db, "PROD-B", 100, 60).await;
    let attempts: Vec<_> = (0..60)
        .map(|i| {
            let lines = if i % 2 == 0 {
                [(a.id, 1), (b.id, 2)]
            } else {
                [(b.id, 1), (a.id, 2)]
            };
            let (orders, order) = (orders.clone(), new_order(ada, &lines));
            tokio::spawn(async move { (lines, orders.place(&order).await) })
        })
        .collect();
    let (mut taken_a, mut taken_b, mut placed, mut short) = (0, 0, 0, 0);
    for attempt in attempts {
        match attempt.await? {
            (lines, Ok(Placement::Placed(_))) => {
                placed += 1;
                for (id, quantity) in lines {
                    if id == a.id {
                        taken_a += quantity;
                    } else {
                        taken_b += quantity;
                    }
                }
            }
            (_, Err(PlaceOrderError::Rejected(OrderRejection::InsufficientStock(_)))) => short += 1,
            (_, other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        placed >= 20,
        "at most 60 units of 3 per order: {placed} placed"
    );
    assert_eq!(placed + short, 60);
    assert_eq!(i64::from(stock_of(&db, a.id).await), 60 - taken_a);
    assert_eq!(i64::from(stock_of(&db, b.id).await), 60 - taken_b);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancellation_restocks_exactly_once_even_when_two_cancels_race() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.roomy();
    let orders = PgOrderRepository::new(db.clone());
    let ada = user(&db, "ada@example.com").await;
    let bob = user(&db, "bob@example.com").await;
    let a = stocked(&db, "PROD-A", 100, 50).await;
    let b = stocked(&db, "PROD-B", 100, 50).await;

    let mut placed_orders = Vec::new();
    for i in 0..8 {
        let lines = if i % 2 == 0 {
            [(a.id, 2), (b.id, 3)]
        } else {
            [(b.id, 1), (a.id, 4)]
        };
        placed_orders.push(placed(orders.place(&new_order(ada, &lines)).await));
    }
    assert_eq!(
        (stock_of(&db, a.id).await, stock_of(&db, b.id).await),
        (26, 34)
    );

    // Two cancels of each order at once, all orders at once.
    let races: Vec<_> = placed_orders
        .iter()
        .flat_map(|order| [order.id, order.id])
        .map(|id| {
            let orders = orders.clone();
            tokio::spawn(async move {
                orders
                    .transition(id, Some(ada), OrderStatus::Cancelled, now())
                    .await
            })
        })
        .collect();
    let (mut cancelled, mut invalid) = (0, 0);
    for race in races {
        match race.await? {
            Ok(order) => {
                assert_eq!(order.status, OrderStatus::Cancelled);
                assert_eq!(order.lines.len(), 2);
                cancelled += 1;
            }
            Err(TransitionError::Invalid(InvalidTransition {
                from: OrderStatus::Cancelled,
                to: OrderStatus::Cancelled,
            })) => invalid += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((cancelled, invalid), (8, 8));
    assert_eq!(
        (stock_of(&db, a.id).await, stock_of(&db, b.id).await),
        (50, 50),
        "every line went back exactly once"
    );
    let first = placed_orders[0].id;
    assert!(matches!(
        orders
            .transition(first, Some(ada), OrderStatus::Cancelled, now())
            .await,
        Err(TransitionError::Invalid(_))
    ));
    assert_eq!(
        stock_of(&db, a.id).await,
        50,
        "a second cancel restocks nothing"
    );
    assert_eq!(
        orders.find(first).await?.map(|o| o.status),
        Some(OrderStatus::Cancelled)
    );
    assert!(matches!(
        orders
            .transition(first, None, OrderStatus::Fulfilled, now())
            .await,
        Err(TransitionError::Invalid(InvalidTransition {
            from: OrderStatus::Cancelled,
            to: OrderStatus::Fulfilled
        }))
    ));

    let order = placed(orders.place(&new_order(ada, &[(a.id, 5)])).await);
    assert!(matches!(
        orders
            .transition(order.id, Some(bob), OrderStatus::Cancelled, now())
            .await,
        Err(TransitionError::NotFound)
    ));
    assert!(matches!(
        orders
            .transition(OrderId(Uuid::now_v7()), None, OrderStatus::Cancelled, now())
            .await,
        Err(TransitionError::NotFound)
    ));
    let later = now() + chrono::Duration::seconds(3);
    let fulfilled = orders
        .transition(order.id, None, OrderStatus::Fulfilled, later)
        .await?;
    assert_eq!(
        fulfilled,
        Order {
            status: OrderStatus::Fulfilled,
            updated_at: later,
            ..order.clone()
        }
    );
    assert!(matches!(
        orders
            .transition(order.id, Some(ada), OrderStatus::Cancelled, now())
            .await,
        Err(TransitionError::Invalid(InvalidTransition {
            from: OrderStatus::Fulfilled,
            ..
        }))
    ));
    assert_eq!(stock_of(&db, a.id).await, 45, "fulfilment does not restock");
    Ok(())
}

/// Every statement text sent on the instrumented connection.
type Statements = Arc<Mutex<Vec<String>>>;

/// Whether `sql` is bb8's liveness check on checkout (diesel-async's `RecyclingMethod::Verified`).
fn is_checkout_ping(sql: &str) -> bool {
    sql.starts_with("SELECT $1 ")
}

#[tokio::test]
async fn listing_orders_runs_the_same_two_statements_whatever_the_page_size() -> anyhow::Result<()>
{
    let test_db = TestDatabase::create().await?;
    // One connection, so the repositories use the one that carries the instrumentation.
    let db = test_db.single_connection();
    let statements: Statements = Arc::default();
    {
        let log = Arc::clone(&statements);
        let mut conn = db.connection().await?;
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::StartQuery { query, .. } = event {
                log.lock().unwrap().push(query.to_string());
            }
        });
    }
    let orders = PgOrderRepository::new(db.clone());
    let ada = user(&db, "ada@example.com").await;
    let lines = [
        stocked(&db, "PROD-A", 100, 1_000).await.id,
        stocked(&db, "PROD-B", 200, 1_000).await.id,
        stocked(&db, "PROD-C", 300, 1_000).await.id,
    ];
    for _ in 0..50 {
        let request: Vec<_> = lines.iter().map(|id| (*id, 1)).collect();
        placed(orders.place(&new_order(ada, &request)).await);
    }
    assert!(
        !statements.lock().unwrap().is_empty(),
        "the pool's one connection carries the instrumentation"
    );

    let mut counts = Vec::new();
    for page in [1, 5, 50] {
        statements.lock().unwrap().clear();
        let listed = orders.list(&OrderFilter::default(), None, page).await?;
        assert_eq!(listed.len(), page);
        assert!(listed.iter().all(|order| order.lines.len() == 3));
        let sent = statements.lock().unwrap().clone();
        let queries: Vec<_> = sent.iter().filter(|sql| !is_checkout_ping(sql)).collect();
        println!("page of {page}: {} statements sent", sent.len());
        assert_eq!(queries.len(), 2, "{queries:#?}");
        counts.push(sent.len());
    }
    assert!(
        counts.windows(2).all(|w| w[0] == w[1]),
        "statement counts differ by page size: {counts:?}"
    );
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct PreparedStatement {
    #[diesel(sql_type = diesel::sql_types::Text)]
    statement: String,
}

/// The statements prepared on the pool's one connection, as PostgreSQL lists them.
async fn prepared_statements(db: &Database) -> Vec<String> {
    let mut conn = db.connection().await.unwrap();
    diesel::sql_query("SELECT statement FROM pg_prepared_statements ORDER BY statement")
        .load::<PreparedStatement>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.statement)
        .collect()
}

#[tokio::test]
async fn placing_and_listing_prepare_each_statement_once_per_connection() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.single_connection();
    let orders = PgOrderRepository::new(db.clone());
    let products = PgProductRepository::new(db.clone());
    let ada = user(&db, "ada@example.com").await;
    let a = stocked(&db, "PROD-A", 100, 1_000).await.id;
    let b = stocked(&db, "PROD-B", 200, 1_000).await.id;
    let first_page = ProductQuery {
        filter: ProductFilter {
            active: Some(true),
            ..ProductFilter::default()
        },
        sort: ProductSort::CreatedAt,
        direction: SortDirection::Desc,
        after: None,
        limit: 21,
    };
    let work = async || {
        placed(orders.place(&new_order(ada, &[(a, 1)])).await);
        placed(orders.place(&new_order(ada, &[(a, 1), (b, 2)])).await);
        assert_eq!(products.list(&first_page).await.unwrap().len(), 2);
        let short = ProductQuery {
            limit: 1,
            ..first_page.clone()
        };
        assert_eq!(products.list(&short).await.unwrap().len(), 1);
        assert_eq!(
            orders
                .list(&OrderFilter::default(), None, 1)
                .await
                .unwrap()
                .len(),
            1
        );
    };
    work().await;
    let after_first = prepared_statements(&db).await;
    // Statements diesel would prepare afresh on every use (closed again afterwards) stay
    // prepared; the page size is in the text, rounded up, and not a parameter.
    for expected in [
        "UPDATE products SET stock = v.stock",
        "INSERT INTO order_items",
        "LIMIT 21",
        "LIMIT 11",
    ] {
        assert!(
            after_first.iter().any(|sql| sql.contains(expected)),
            "no prepared statement contains {expected:?}: {after_first:#?}"
        );
    }
    assert!(
        after_first.iter().all(|sql| !sql.contains("LIMIT $")),
        "{after_first:#?}"
    );
    work().await;
    assert_eq!(
        prepared_statements(&db).await,
        after_first,
        "the same work again prepares nothing new"
    );
    Ok(())
}

fn product_key(product: &Product, sort: ProductSort) -> ProductPageKey {
    match sort {
        ProductSort::CreatedAt => ProductPageKey::CreatedAt(product.created_at, product.id),
        ProductSort::Price => ProductPageKey::Price(product.price.money().amount_minor, product.id),
    }
}

fn matches_filter(product: &Product, filter: &ProductFilter) -> bool {
    let price = product.price.money();
    filter.active.is_none_or(|active| product.active == active)
        && filter.min_price.is_none_or(|min| price.amount_minor >= min)
        && filter.max_price.is_none_or(|max| price.amount_minor <= max)
        && filter.currency.is_none_or(|c| price.currency == c)
        && filter.q.as_deref().is_none_or(|q| {
            let q = q.to_lowercase();
            product.name.as_str().to_lowercase().contains(&q)
                || product.sku.as_str().to_lowercase().contains(&q)
        })
}

#[tokio::test]
async fn product_pages_walk_every_match_once_in_order_for_every_sort_and_filter()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let products = PgProductRepository::new(test_db.database());
    let base = now();
    let mut all = Vec::new();
    for i in 0..57_i64 {
        let name = match i {
            5 => "100% Cotton Tee".to_owned(),
            6 => "1000 Cotton Tee".to_owned(),
            7 => "a_b Lamp".to_owned(),
            8 => "axb Lamp".to_owned(),
            9 => r"Back\slash".to_owned(),
            _ if i % 6 == 1 => format!("Desk lamp {i}"),
            _ => format!("Widget {i}"),
        };
        let sku = if i % 6 == 0 {
            format!("LAMP-{i:03}")
        } else {
            format!("SKU-{i:03}")
        };
        let currency = if i % 10 == 9 { eur() } else { usd() };
        let mut product = product_at(
            &sku,
            &name,
            ((i * 37) % 11) * 250,
            currency,
            i,
            // Groups of three share a timestamp, so the id must break ties.
            base + chrono::Duration::seconds(i / 3),
        );
        // Random ids, so that id order is unrelated to creation order.
        product.id = ProductId(Uuid::new_v4());
        product.active = i % 4 != 0;
        all.push(products.create(&product).await?);
    }

    let filters = [
        ProductFilter::default(),
        ProductFilter {
            min_price: Some(500),
            max_price: Some(1_500),
            ..ProductFilter::default()
        },
        ProductFilter {
            active: Some(true),
            ..ProductFilter::default()
        },
        ProductFilter {
            active: Some(false),
            ..ProductFilter::default()
        },
        ProductFilter {
            currency: Some(eur()),
            ..ProductFilter::default()
        },
        ProductFilter {
            q: Some("LaMp".into()),
            active: Some(true),
            min_price: Some(250),
            ..ProductFilter::default()
        },
        ProductFilter {
            q: Some("lamp-0".into()),
            ..ProductFilter::default()
        },
    ];
    for filter in &filters {
        for sort in [ProductSort::CreatedAt, ProductSort::Price] {
            for direction in [SortDirection::Asc, SortDirection::Desc] {
                let mut expected: Vec<_> = all
                    .iter()
                    .filter(|p| matches_filter(p, filter))
                    .cloned()
                    .collect();
                expected.sort_by_key(|p| match sort {
                    ProductSort::CreatedAt => (p.created_at.timestamp_micros(), p.id),
                    ProductSort::Price => (p.price.money().amount_minor, p.id),
                });
                if direction == SortDirection::Desc {
                    expected.reverse();
                }
                assert!(!expected.is_empty(), "{filter:?} matches something");
                let mut seen = Vec::new();
                let mut after = None;
                for _ in 0..=all.len() {
                    let query = ProductQuery {
                        filter: filter.clone(),
                        sort,
                        direction,
                        after,
                        limit: 10,
                    };
                    let page = products.list(&query).await?;
                    assert!(page.len() <= 10);
                    let Some(last) = page.last() else { break };
                    after = Some(product_key(last, sort));
                    seen.extend(page);
                }
                assert_eq!(seen, expected, "{filter:?} {sort:?} {direction:?}");
            }
        }
    }

    // Pattern characters in `q` are literal text.
    for (q, names) in [
        ("100%", vec!["100% Cotton Tee"]),
        ("a_b", vec!["a_b Lamp"]),
        (r"K\S", vec![r"Back\slash"]),
        ("%", vec!["100% Cotton Tee"]),
    ] {
        let query = ProductQuery {
            filter: ProductFilter {
                q: Some(q.into()),
                ..ProductFilter::default()
            },
            sort: ProductSort::CreatedAt,
            direction: SortDirection::Asc,
            after: None,
            limit: 100,
        };
        let found: Vec<_> = products
            .list(&query)
            .await?
            .into_iter()
            .map(|p| p.name.as_str().to_owned())
            .collect();
        assert_eq!(found, names, "q = {q:?}");
    }
    Ok(())
}

#[tokio::test]
async fn order_pages_walk_every_order_once_newest_first_for_one_user_or_everyone()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let orders = PgOrderRepository::new(db.clone());
    let ada = user(&db, "ada@example.com").await;
    let bob = user(&db, "bob@example.com").await;
    let p = stocked(&db, "PROD-P", 100, 1_000).await;
    let q = stocked(&db, "PROD-Q", 250, 1_000).await;
    let base = now();
    let mut all = Vec::new();
    for i in 0..23_i64 {
        let lines: Vec<_> = if i % 2 == 0 {
            vec![(p.id, 1 + i % 3)]
        } else {
            vec![(q.id, 1), (p.id, 2)]
        };
        let order = NewOrder {
            // Random ids and groups of three sharing a timestamp: the id must break ties.
            id: OrderId(Uuid::new_v4()),
            created_at: base + chrono::Duration::seconds(i / 3),
            ..new_order(if i % 3 == 0 { bob } else { ada }, &lines)
        };
        let mut order = placed(orders.place(&order).await);
        if i % 4 == 0 {
            order = orders
                .transition(order.id, None, OrderStatus::Cancelled, now())
                .await?;
        }
        all.push(order);
    }
    all.sort_by_key(|o| (o.created_at, o.id));
    all.reverse();

    let filters = [
        OrderFilter::default(),
        OrderFilter {
            user_id: Some(ada),
            status: None,
        },
        OrderFilter {
            user_id: Some(bob),
            status: None,
        },
        OrderFilter {
            user_id: None,
            status: Some(OrderStatus::Cancelled),
        },
        OrderFilter {
            user_id: Some(ada),
            status: Some(OrderStatus::Placed),
        },
    ];
    for filter in &filters {
        let expected: Vec<_> = all
            .iter()
            .filter(|o| filter.user_id.is_none_or(|u| o.user_id == u))
            .filter(|o| filter.status.is_none_or(|s| o.status == s))
            .cloned()
            .collect();
        assert!(!expected.is_empty(), "{filter:?} matches something");
        let mut seen = Vec::new();
        let mut after = None;
        for _ in 0..=all.len() {
            let page = orders.list(filter, after, 5).await?;
            assert!(page.len() <= 5);
            let Some(last) = page.last() else { break };
            after = Some(OrderPageKey {
                created_at: last.created_at,
                id: last.id,
            });
            seen.extend(page);
        }
        assert_eq!(seen, expected, "{filter:?}");
    }
    Ok(())
}
