//! OrderService against mockall mocks of every port.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mockall::predicate::eq;
use strata_domain::IdempotencyKey;
use strata_domain::{
    Currency, Money, OrderLine, Price, ProductId, ProductName, Quantity, Role, Sku,
};
use strata_ports::{IdempotencyClaim, MockCache, MockIdGenerator, MockOrderRepository};

use super::*;
use crate::test_support::{fixed_clock, invalid_fields, now, pairs, principal, unavailable};

const WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

fn product_id(n: u128) -> ProductId {
    ProductId(Uuid::from_u128(n))
}

fn raw(product: ProductId, quantity: i64) -> RawLine {
    RawLine {
        product_id: Some(product.to_string()),
        quantity: Some(quantity),
    }
}

/// A placed order of `user`, created `seconds` after [`now`], with one unit of each product.
fn order_at(user: UserId, products: &[ProductId], seconds: i64) -> Order {
    let usd = Currency::parse("USD").expect("currency");
    let unit_price = Price::new(250, usd).expect("price").money();
    let lines: Vec<OrderLine> = products
        .iter()
        .map(|&product_id| OrderLine {
            product_id,
            sku: Sku::parse("LAMP-1").expect("sku"),
            name: ProductName::parse("Desk lamp").expect("name"),
            unit_price,
            quantity: Quantity::new(1).expect("quantity"),
            line_total: unit_price,
        })
        .collect();
    let total = Money::new(250 * products.len() as i64, usd);
    let at = now() + chrono::Duration::seconds(seconds);
    Order {
        id: OrderId(Uuid::now_v7()),
        user_id: user,
        status: OrderStatus::Placed,
        lines,
        total,
        created_at: at,
        updated_at: at,
    }
}

fn order(user: UserId, products: &[ProductId]) -> Order {
    order_at(user, products, 0)
}

fn product_keys(products: &[ProductId]) -> Vec<String> {
    products.iter().map(|id| format!("product:{id}")).collect()
}

struct Ports {
    orders: MockOrderRepository,
    cache: MockCache,
    ids: MockIdGenerator,
}

impl Ports {
    fn new() -> Self {
        Self {
            orders: MockOrderRepository::new(),
            cache: MockCache::new(),
            ids: MockIdGenerator::new(),
        }
    }

    fn service(self) -> OrderService {
        let clock = fixed_clock();
        OrderService::new(
            Arc::new(self.orders),
            Arc::new(self.cache),
            Arc::new(clock),
            Arc::new(self.ids),
            CursorCodec::new(b"test cursor key"),
            WINDOW,
        )
    }

    /// Expects one `delete_many` of exactly these products' cache keys.
    fn expect_invalidation(&mut self, products: &[ProductId]) {
        let expected = product_keys(products);
        self.cache
            .expect_delete_many()
            .withf(move |keys: &[String]| keys == expected.as_slice())
            .times(1)
            .returning(|_| Ok(()));
    }
}

// ---------------------------------------------------------------------------------------------
// place

#[tokio::test]
async fn invalid_lines_and_an_invalid_key_are_reported_together() {
    let mut ports = Ports::new();
    ports.orders.expect_place().never();
    ports.ids.expect_new_id().never();
    let service = ports.service();
    let customer = principal(Role::Customer);
    let lines = [
        RawLine {
            product_id: Some("not-a-uuid".into()),
            quantity: Some(0),
        },
        raw(product_id(1), 1),
        raw(product_id(1), 1001),
    ];
    let result = service.place(&customer, &lines, Some("has space")).await;
    assert_eq!(
        invalid_fields(result),
        pairs(&[
            ("Idempotency-Key", "invalid_idempotency_key"),
            ("items[0].product_id", "invalid_uuid"),
            ("items[0].quantity", "out_of_range"),
            ("items[2].product_id", "duplicate"),
            ("items[2].quantity", "out_of_range"),
        ])
    );
    let result = service.place(&customer, &[], Some("")).await;
    assert_eq!(
        invalid_fields(result),
        pairs(&[
            ("Idempotency-Key", "invalid_idempotency_key"),
            ("items", "out_of_range"),
        ])
    );
}

#[tokio::test]
async fn an_order_is_placed_for_the_caller_at_the_clock_time_under_the_generated_id() {
    let caller = principal(Role::Customer);
    let products = [product_id(2), product_id(1)];
    let lines = [raw(products[0], 3), raw(products[1], 1)];
    let id = Uuid::now_v7();
    let placed = order(caller.user_id, &products);
    let expected = placed.clone();
    let request = OrderRequest::parse(&lines).expect("valid lines");
    let key = IdempotencyKey::parse("key-1").expect("key");

    let mut ports = Ports::new();
    ports.ids.expect_new_id().times(1).returning(move || id);
    let user_id = caller.user_id;
    ports
        .orders
        .expect_place()
        .withf(move |new: &NewOrder| {
            new.id == OrderId(id)
                && new.user_id == user_id
                && new.request == request
                && new.created_at == now()
                && new.idempotency.as_ref().is_some_and(|claim| {
                    claim.key == key
                        && claim.operation == "orders.place"
                        && !claim.fingerprint.is_empty()
                        && claim.expires_at == now() + chrono::Duration::hours(24)
                })
        })
        .times(1)
        .returning(move |_| Ok(Placement::Placed(placed.clone())));
    ports.expect_invalidation(&products);
    let result = ports
        .service()
        .place(&caller, &lines, Some("key-1"))
        .await
        .expect("placed");
    assert_eq!(
        result,
        PlacedOrder {
            order: expected,
            replayed: false
        }
    );
}

#[tokio::test]
async fn without_a_key_no_claim_is_made() {
    let caller = principal(Role::Customer);
    let products = [product_id(1)];
    let placed = order(caller.user_id, &products);
    let mut ports = Ports::new();
    ports.ids.expect_new_id().returning(Uuid::now_v7);
    ports
        .orders
        .expect_place()
        .withf(|new: &NewOrder| new.idempotency.is_none())
        .times(1)
        .returning(move |_| Ok(Placement::Placed(placed.clone())));
    ports.expect_invalidation(&products);
    let result = ports
        .service()
        .place(&caller, &[raw(products[0], 1)], None)
        .await
        .expect("placed");
    assert!(!result.replayed);
}

/// The claim the service sends for `lines` under a fixed key.
async fn claim_for(lines: &[RawLine]) -> IdempotencyClaim {
    let seen: Arc<Mutex<Option<IdempotencyClaim>>> = Arc::default();
    let caller = principal(Role::Customer);
    let replay = order(caller.user_id, &[product_id(1)]);
    let mut ports = Ports::new();
    ports.ids.expect_new_id().returning(Uuid::now_v7);
    let recorder = seen.clone();
    ports.orders.expect_place().times(1).returning(move |new| {
        *recorder.lock().expect("lock") = new.idempotency.clone();
        Ok(Placement::Replayed(replay.clone()))
    });
    ports
        .service()
        .place(&caller, lines, Some("same-key"))
        .await
        .expect("replayed");
    let claim = seen.lock().expect("lock").take();
    claim.expect("a claim")
}

#[tokio::test]
async fn the_fingerprint_identifies_the_lines_exactly() {
    let (a, b, c) = (product_id(1), product_id(2), product_id(3));
    let first = claim_for(&[raw(a, 2), raw(b, 1)]).await;
    let same = claim_for(&[raw(a, 2), raw(b, 1)]).await;
    assert_eq!(first.fingerprint, same.fingerprint);
    assert_eq!(first.operation, "orders.place");
    assert_eq!(first.expires_at, now() + chrono::Duration::hours(24));

    let other_quantity = claim_for(&[raw(a, 3), raw(b, 1)]).await;
    let other_product = claim_for(&[raw(a, 2), raw(c, 1)]).await;
    let other_order = claim_for(&[raw(b, 1), raw(a, 2)]).await;
    let fewer_lines = claim_for(&[raw(a, 2)]).await;
    for (what, other) in [
        ("quantity", other_quantity),
        ("product", other_product),
        ("line order", other_order),
        ("line count", fewer_lines),
    ] {
        assert_ne!(first.fingerprint, other.fingerprint, "a different {what}");
    }
}

#[tokio::test]
async fn a_replay_is_flagged_and_invalidates_nothing() {
    let caller = principal(Role::Customer);
    let first = order(caller.user_id, &[product_id(1)]);
    let expected = first.clone();
    let mut ports = Ports::new();
    ports.ids.expect_new_id().returning(Uuid::now_v7);
    ports
        .orders
        .expect_place()
        .times(1)
        .returning(move |_| Ok(Placement::Replayed(first.clone())));
    ports.cache.expect_delete_many().never();
    let result = ports
        .service()
        .place(&caller, &[raw(product_id(1), 1)], Some("key-1"))
        .await
        .expect("replayed");
    assert_eq!(
        result,
        PlacedOrder {
            order: expected,
            replayed: true
        }
    );
}

#[tokio::test]
async fn a_failed_invalidation_does_not_fail_a_placement() {
    let caller = principal(Role::Customer);
    let placed = order(caller.user_id, &[product_id(1)]);
    let mut ports = Ports::new();
    ports.ids.expect_new_id().returning(Uuid::now_v7);
    ports
        .orders
        .expect_place()
        .returning(move |_| Ok(Placement::Placed(placed.clone())));
    ports
        .cache
        .expect_delete_many()
        .times(1)
        .returning(|_| Err(unavailable()));
    let result = ports
        .service()
        .place(&caller, &[raw(product_id(1), 1)], None)
        .await;
    assert!(result.is_ok_and(|placed| !placed.replayed));
}

/// Places one valid order against a repository that answers `error`; nothing is invalidated.
async fn place_failing_with(error: fn() -> PlaceOrderError) -> OrderError {
    let mut ports = Ports::new();
    ports.ids.expect_new_id().returning(Uuid::now_v7);
    ports
        .orders
        .expect_place()
        .times(1)
        .returning(move |_| Err(error()));
    ports.cache.expect_delete_many().never();
    ports
        .service()
        .place(
            &principal(Role::Customer),
            &[raw(product_id(1), 5), raw(product_id(2), 1)],
            Some("key-1"),
        )
        .await
        .expect_err("refused")
}

#[tokio::test]
async fn refusals_of_the_repository_map_to_their_errors() {
    let error = place_failing_with(|| {
        PlaceOrderError::Rejected(OrderRejection::InvalidLines(ValidationErrors::single(
            FieldError::new("items[1].product_id", "inactive", "no longer sold"),
        )))
    })
    .await;
    assert_eq!(
        invalid_fields::<(), _>(Err(error)),
        pairs(&[("items[1].product_id", "inactive")])
    );

    let short = ShortLine {
        index: 0,
        product_id: product_id(1),
        requested: 5,
        available: 2,
    };
    let error = place_failing_with(|| {
        PlaceOrderError::Rejected(OrderRejection::InsufficientStock(vec![ShortLine {
            index: 0,
            product_id: product_id(1),
            requested: 5,
            available: 2,
        }]))
    })
    .await;
    assert!(
        matches!(&error, OrderError::InsufficientStock(lines) if lines == &[short]),
        "{error:?}"
    );

    let error = place_failing_with(|| PlaceOrderError::KeyReused).await;
    assert!(matches!(error, OrderError::KeyReused), "{error:?}");

    let error = place_failing_with(|| PlaceOrderError::Port(unavailable())).await;
    assert!(
        matches!(error, OrderError::Failure(Failure::Unavailable(_))),
        "{error:?}"
    );

    let error =
        place_failing_with(|| PlaceOrderError::Port(PortError::unexpected(anyhow::anyhow!("bug"))))
            .await;
    assert!(
        matches!(error, OrderError::Failure(Failure::Unexpected(_))),
        "{error:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// list

#[tokio::test]
async fn a_customer_only_ever_lists_their_own_orders() {
    let caller = principal(Role::Customer);
    let mut ports = Ports::new();
    ports
        .orders
        .expect_list()
        .with(
            eq(OrderFilter {
                user_id: Some(caller.user_id),
                status: None,
            }),
            eq(None),
            eq(21),
        )
        .times(1)
        .returning(|_, _, _| Ok(Vec::new()));
    let page = ports
        .service()
        .list(&caller, OrderListParams::default())
        .await
        .expect("page");
    assert!(page.items.is_empty() && page.next_cursor.is_none());
}

#[tokio::test]
async fn a_customer_naming_a_user_is_forbidden() {
    let caller = principal(Role::Customer);
    let mut ports = Ports::new();
    ports.orders.expect_list().never();
    let service = ports.service();
    for user_id in [Uuid::now_v7().to_string(), caller.user_id.to_string()] {
        let params = OrderListParams {
            user_id: Some(user_id),
            ..OrderListParams::default()
        };
        let result = service.list(&caller, params).await;
        assert!(matches!(result, Err(OrderError::Forbidden)), "{result:?}");
    }
}

#[tokio::test]
async fn an_admin_lists_everyone_or_one_user() {
    let admin = principal(Role::Admin);
    let customer = UserId(Uuid::now_v7());
    let mut ports = Ports::new();
    ports
        .orders
        .expect_list()
        .with(eq(OrderFilter::default()), eq(None), eq(21))
        .times(1)
        .returning(|_, _, _| Ok(Vec::new()));
    ports
        .orders
        .expect_list()
        .with(
            eq(OrderFilter {
                user_id: Some(customer),
                status: None,
            }),
            eq(None),
            eq(21),
        )
        .times(1)
        .returning(|_, _, _| Ok(Vec::new()));
    let service = ports.service();
    service
        .list(&admin, OrderListParams::default())
        .await
        .expect("everyone's");
    service
        .list(
            &admin,
            OrderListParams {
                user_id: Some(customer.to_string()),
                ..OrderListParams::default()
            },
        )
        .await
        .expect("one user's");
    let result = service
        .list(
            &admin,
            OrderListParams {
                user_id: Some("someone".into()),
                ..OrderListParams::default()
            },
        )
        .await;
    assert_eq!(
        invalid_fields(result),
        pairs(&[("user_id", "invalid_uuid")])
    );
}

#[tokio::test]
async fn the_status_filter_is_parsed_and_bad_parameters_are_listed_together() {
    let caller = principal(Role::Customer);
    let mut ports = Ports::new();
    ports
        .orders
        .expect_list()
        .with(
            eq(OrderFilter {
                user_id: Some(caller.user_id),
                status: Some(OrderStatus::Fulfilled),
            }),
            eq(None),
            eq(6),
        )
        .times(1)
        .returning(|_, _, _| Ok(Vec::new()));
    let service = ports.service();
    service
        .list(
            &caller,
            OrderListParams {
                status: Some("fulfilled".into()),
                limit: Some("5".into()),
                ..OrderListParams::default()
            },
        )
        .await
        .expect("page");
    let result = service
        .list(
            &caller,
            OrderListParams {
                status: Some("shipped".into()),
                limit: Some("101".into()),
                ..OrderListParams::default()
            },
        )
        .await;
    assert_eq!(
        invalid_fields(result),
        pairs(&[("limit", "out_of_range"), ("status", "invalid_choice")])
    );
    let result = service
        .list(
            &principal(Role::Admin),
            OrderListParams {
                status: Some("Placed".into()),
                user_id: Some("nope".into()),
                limit: Some("x".into()),
                ..OrderListParams::default()
            },
        )
        .await;
    assert_eq!(
        invalid_fields(result),
        pairs(&[
            ("limit", "invalid_integer"),
            ("status", "invalid_choice"),
            ("user_id", "invalid_uuid"),
        ])
    );
}

#[tokio::test]
async fn a_full_page_carries_a_cursor_that_resumes_after_its_last_order() {
    let caller = principal(Role::Customer);
    let rows: Vec<Order> = (0..3)
        .map(|n| order_at(caller.user_id, &[product_id(1)], -n))
        .collect();
    let last = rows[1].clone();
    let filter = OrderFilter {
        user_id: Some(caller.user_id),
        status: Some(OrderStatus::Placed),
    };
    let mut ports = Ports::new();
    let first_page = rows.clone();
    ports
        .orders
        .expect_list()
        .with(eq(filter), eq(None), eq(3))
        .times(1)
        .returning(move |_, _, _| Ok(first_page.clone()));
    ports
        .orders
        .expect_list()
        .with(
            eq(filter),
            eq(Some(OrderPageKey {
                created_at: last.created_at,
                id: last.id,
            })),
            eq(3),
        )
        .times(1)
        .returning(|_, _, _| Ok(Vec::new()));
    let service = ports.service();
    let params = OrderListParams {
        status: Some("placed".into()),
        limit: Some("2".into()),
        ..OrderListParams::default()
    };
    let page = service.list(&caller, params.clone()).await.expect("page 1");
    assert_eq!(page.items, rows[..2]);
    let cursor = page.next_cursor.expect("more pages");
    let next = service
        .list(
            &caller,
            OrderListParams {
                cursor: Some(cursor),
                ..params
            },
        )
        .await
        .expect("page 2");
    assert!(next.items.is_empty() && next.next_cursor.is_none());
}

#[tokio::test]
async fn a_page_that_is_not_full_has_no_cursor() {
    let caller = principal(Role::Customer);
    let rows: Vec<Order> = (0..2)
        .map(|n| order_at(caller.user_id, &[product_id(1)], -n))
        .collect();
    let mut ports = Ports::new();
    let page = rows.clone();
    ports
        .orders
        .expect_list()
        .returning(move |_, _, _| Ok(page.clone()));
    let page = ports
        .service()
        .list(
            &caller,
            OrderListParams {
                limit: Some("2".into()),
                ..OrderListParams::default()
            },
        )
        .await
        .expect("page");
    assert_eq!(page.items, rows);
    assert_eq!(page.next_cursor, None);
}

#[tokio::test]
async fn a_cursor_minted_for_another_user_or_status_is_refused() {
    let owner = principal(Role::Customer);
    let rows: Vec<Order> = (0..3)
        .map(|n| order_at(owner.user_id, &[product_id(1)], -n))
        .collect();
    let mut ports = Ports::new();
    ports
        .orders
        .expect_list()
        .times(1)
        .returning(move |_, _, _| Ok(rows.clone()));
    let service = ports.service();
    let params = OrderListParams {
        limit: Some("2".into()),
        ..OrderListParams::default()
    };
    let cursor = service
        .list(&owner, params.clone())
        .await
        .expect("page 1")
        .next_cursor
        .expect("more pages");
    let with_cursor = |cursor: &str| OrderListParams {
        cursor: Some(cursor.to_owned()),
        ..params.clone()
    };
    let refused = [
        (principal(Role::Customer), with_cursor(&cursor)),
        (
            owner.clone(),
            OrderListParams {
                status: Some("placed".into()),
                ..with_cursor(&cursor)
            },
        ),
        (principal(Role::Admin), with_cursor(&cursor)),
        (owner.clone(), with_cursor("garbage")),
        (owner.clone(), with_cursor(&format!("x{cursor}"))),
    ];
    for (caller, params) in refused {
        let described = format!("{:?} {params:?}", caller.role);
        assert_eq!(
            invalid_fields(service.list(&caller, params).await),
            pairs(&[("cursor", "invalid_cursor")]),
            "{described}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// get

#[tokio::test]
async fn a_customer_reads_only_their_own_orders_and_an_admin_reads_any() {
    let owner = principal(Role::Customer);
    let stored = order(owner.user_id, &[product_id(1)]);
    let id = stored.id;
    let expected = stored.clone();
    let mut ports = Ports::new();
    ports
        .orders
        .expect_find()
        .with(eq(id))
        .times(3)
        .returning(move |_| Ok(Some(stored.clone())));
    let service = ports.service();
    assert_eq!(service.get(&owner, id).await.expect("own"), expected);
    let result = service.get(&principal(Role::Customer), id).await;
    assert!(matches!(result, Err(OrderError::NotFound)), "{result:?}");
    assert_eq!(
        service
            .get(&principal(Role::Admin), id)
            .await
            .expect("admin"),
        expected
    );
}

#[tokio::test]
async fn an_unknown_order_is_not_found() {
    let mut ports = Ports::new();
    ports.orders.expect_find().returning(|_| Ok(None));
    let result = ports
        .service()
        .get(&principal(Role::Admin), OrderId(Uuid::now_v7()))
        .await;
    assert!(matches!(result, Err(OrderError::NotFound)), "{result:?}");
}

// ---------------------------------------------------------------------------------------------
// cancel and fulfill

#[tokio::test]
async fn a_customer_cancels_as_the_owner_and_the_products_are_invalidated() {
    let caller = principal(Role::Customer);
    let products = [product_id(1), product_id(2)];
    let cancelled = Order {
        status: OrderStatus::Cancelled,
        ..order(caller.user_id, &products)
    };
    let id = cancelled.id;
    let expected = cancelled.clone();
    let mut ports = Ports::new();
    ports
        .orders
        .expect_transition()
        .with(
            eq(id),
            eq(Some(caller.user_id)),
            eq(OrderStatus::Cancelled),
            eq(now()),
        )
        .times(1)
        .returning(move |_, _, _, _| Ok(cancelled.clone()));
    ports.expect_invalidation(&products);
    assert_eq!(
        ports
            .service()
            .cancel(&caller, id)
            .await
            .expect("cancelled"),
        expected
    );
}

#[tokio::test]
async fn an_admin_cancels_any_order() {
    let admin = principal(Role::Admin);
    let products = [product_id(3)];
    let cancelled = Order {
        status: OrderStatus::Cancelled,
        ..order(UserId(Uuid::now_v7()), &products)
    };
    let id = cancelled.id;
    let mut ports = Ports::new();
    ports
        .orders
        .expect_transition()
        .with(eq(id), eq(None), eq(OrderStatus::Cancelled), eq(now()))
        .times(1)
        .returning(move |_, _, _, _| Ok(cancelled.clone()));
    ports.expect_invalidation(&products);
    ports.service().cancel(&admin, id).await.expect("cancelled");
}

#[tokio::test]
async fn a_refused_cancellation_is_mapped_and_invalidates_nothing() {
    let invalid = InvalidTransition {
        from: OrderStatus::Fulfilled,
        to: OrderStatus::Cancelled,
    };
    let mut ports = Ports::new();
    ports
        .orders
        .expect_transition()
        .times(1)
        .returning(move |_, _, _, _| Err(TransitionError::Invalid(invalid)));
    ports.cache.expect_delete_many().never();
    let result = ports
        .service()
        .cancel(&principal(Role::Customer), OrderId(Uuid::now_v7()))
        .await;
    assert!(
        matches!(result, Err(OrderError::InvalidTransition(error)) if error == invalid),
        "{result:?}"
    );

    let mut ports = Ports::new();
    ports
        .orders
        .expect_transition()
        .times(1)
        .returning(|_, _, _, _| Err(TransitionError::NotFound));
    ports.cache.expect_delete_many().never();
    let result = ports
        .service()
        .cancel(&principal(Role::Customer), OrderId(Uuid::now_v7()))
        .await;
    assert!(matches!(result, Err(OrderError::NotFound)), "{result:?}");
}

#[tokio::test]
async fn only_admins_fulfil() {
    let mut ports = Ports::new();
    ports.orders.expect_transition().never();
    let result = ports
        .service()
        .fulfill(&principal(Role::Customer), OrderId(Uuid::now_v7()))
        .await;
    assert!(matches!(result, Err(OrderError::Forbidden)), "{result:?}");
}

#[tokio::test]
async fn an_admin_fulfils_any_placed_order() {
    let fulfilled = Order {
        status: OrderStatus::Fulfilled,
        ..order(UserId(Uuid::now_v7()), &[product_id(1)])
    };
    let id = fulfilled.id;
    let expected = fulfilled.clone();
    let mut ports = Ports::new();
    ports
        .orders
        .expect_transition()
        .with(eq(id), eq(None), eq(OrderStatus::Fulfilled), eq(now()))
        .times(1)
        .returning(move |_, _, _, _| Ok(fulfilled.clone()));
    ports.cache.expect_delete_many().never();
    assert_eq!(
        ports
            .service()
            .fulfill(&principal(Role::Admin), id)
            .await
            .expect("fulfilled"),
        expected
    );

    let mut ports = Ports::new();
    ports.orders.expect_transition().returning(|_, _, _, _| {
        Err(TransitionError::Invalid(InvalidTransition {
            from: OrderStatus::Cancelled,
            to: OrderStatus::Fulfilled,
        }))
    });
    let result = ports
        .service()
        .fulfill(&principal(Role::Admin), OrderId(Uuid::now_v7()))
        .await;
    assert!(
        matches!(result, Err(OrderError::InvalidTransition(_))),
        "{result:?}"
    );
}
