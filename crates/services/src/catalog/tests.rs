//! CatalogService against mockall mocks of every port.

use std::sync::Arc;
use std::time::Duration;

use mockall::predicate::eq;
use strata_domain::{MAX_STOCK_DELTA, Role};
use strata_ports::{MockCache, MockIdGenerator, MockProductRepository, PortError};
use uuid::Uuid;

use super::*;
use crate::cache_aside::Json;
use crate::test_support::{fixed_clock, invalid_fields, now, pairs, principal, unavailable};

const TTL: Duration = Duration::from_secs(300);

fn usd() -> Currency {
    Currency::parse("USD").expect("currency")
}

/// A stored product created `seconds` after [`now`], priced `minor` cents.
fn product_at(id: ProductId, seconds: i64, minor: i64) -> Product {
    let at = now() + chrono::Duration::seconds(seconds);
    Product {
        id,
        sku: Sku::parse("KB-0042").expect("sku"),
        name: ProductName::parse("Keyboard").expect("name"),
        description: Description::parse("Clicky").expect("description"),
        price: Price::new(minor, usd()).expect("price"),
        stock: Stock::new(7).expect("stock"),
        active: true,
        created_at: at,
        updated_at: at,
    }
}

fn product(id: ProductId) -> Product {
    product_at(id, 0, 1999)
}

fn new_id() -> ProductId {
    ProductId(Uuid::now_v7())
}

/// A product read through the cache as the product's own JSON.
async fn read(service: &CatalogService, id: ProductId) -> Result<Product, CatalogError> {
    service
        .get_as(id, &Json::new())
        .await
        .map(|product| (*product).clone())
}

fn key_of(id: ProductId) -> String {
    format!("product:{id}")
}

struct Ports {
    products: MockProductRepository,
    cache: MockCache,
    ids: MockIdGenerator,
}

impl Ports {
    fn new() -> Self {
        Self {
            products: MockProductRepository::new(),
            cache: MockCache::new(),
            ids: MockIdGenerator::new(),
        }
    }

    fn service(self) -> CatalogService {
        let clock = fixed_clock();
        CatalogService::new(
            Arc::new(self.products),
            Arc::new(self.cache),
            Arc::new(clock),
            Arc::new(self.ids),
            CursorCodec::new(b"test cursor key"),
            TTL,
        )
    }

    /// Expects exactly one invalidation of `id`'s cached copy, answered with `result`.
    fn expect_invalidation(&mut self, id: ProductId, result: fn() -> Result<(), PortError>) {
        let expected = vec![key_of(id)];
        self.cache
            .expect_delete_many()
            .withf(move |keys: &[String]| keys == expected.as_slice())
            .times(1)
            .returning(move |_| result());
    }
}

fn valid_draft() -> ProductDraft {
    ProductDraft {
        sku: Some("KB-0042".into()),
        name: Some("Keyboard".into()),
        price: Some(PriceInput {
            amount_minor: Some(1999),
            currency: Some("USD".into()),
        }),
        ..ProductDraft::default()
    }
}

// ---------------------------------------------------------------------------------------------
// create

#[tokio::test]
async fn only_admins_create_products() {
    let mut ports = Ports::new();
    ports.products.expect_create().never();
    ports.ids.expect_new_id().never();
    let result = ports
        .service()
        .create(&principal(Role::Customer), valid_draft())
        .await;
    assert!(matches!(result, Err(CatalogError::Forbidden)), "{result:?}");
}

#[tokio::test]
async fn every_invalid_field_of_a_draft_is_listed_at_once() {
    let mut ports = Ports::new();
    ports.products.expect_create().never();
    let draft = ProductDraft {
        sku: Some("kb 42".into()),
        name: Some("   ".into()),
        description: Some("x".repeat(Description::MAX_CHARS + 1)),
        price: Some(PriceInput {
            amount_minor: None,
            currency: Some("usd".into()),
        }),
        stock: Some(-1),
        active: None,
    };
    let result = ports.service().create(&principal(Role::Admin), draft).await;
    assert_eq!(
        invalid_fields(result),
        pairs(&[
            ("sku", "invalid_sku"),
            ("name", "required"),
            ("description", "too_long"),
            ("price.currency", "invalid_currency"),
            ("price.amount_minor", "required"),
            ("stock", "out_of_range"),
        ])
    );
}

#[tokio::test]
async fn missing_required_fields_are_named() {
    let service = Ports::new().service();
    let admin = principal(Role::Admin);
    let result = service.create(&admin, ProductDraft::default()).await;
    assert_eq!(
        invalid_fields(result),
        pairs(&[
            ("sku", "required"),
            ("name", "required"),
            ("price", "required")
        ])
    );
    let empty_price = ProductDraft {
        price: Some(PriceInput::default()),
        ..valid_draft()
    };
    let result = service.create(&admin, empty_price).await;
    assert_eq!(
        invalid_fields(result),
        pairs(&[
            ("price.currency", "required"),
            ("price.amount_minor", "required"),
        ])
    );
}

#[tokio::test]
async fn an_out_of_range_price_and_stock_are_named() {
    let draft = ProductDraft {
        price: Some(PriceInput {
            amount_minor: Some(Price::MAX_MINOR + 1),
            currency: Some("USD".into()),
        }),
        stock: Some(i64::from(Stock::MAX) + 1),
        ..valid_draft()
    };
    let result = Ports::new()
        .service()
        .create(&principal(Role::Admin), draft)
        .await;
    assert_eq!(
        invalid_fields(result),
        pairs(&[
            ("price.amount_minor", "out_of_range"),
            ("stock", "out_of_range"),
        ])
    );
}

/// Every invalid field is listed at once — including an out-of-range amount next to an invalid
/// currency. `parse_price` returns early (`currency?`) before checking the amount, so the amount
/// error is lost.
#[tokio::test]
async fn an_invalid_amount_is_listed_even_when_the_currency_is_invalid_too() {
    let draft = ProductDraft {
        price: Some(PriceInput {
            amount_minor: Some(-1),
            currency: Some("usd".into()),
        }),
        ..valid_draft()
    };
    let result = Ports::new()
        .service()
        .create(&principal(Role::Admin), draft)
        .await;
    assert_eq!(
        invalid_fields(result),
        pairs(&[
            ("price.currency", "invalid_currency"),
            ("price.amount_minor", "out_of_range"),
        ])
    );
}

#[tokio::test]
async fn a_valid_draft_is_stored_with_the_generated_id_the_clock_time_and_the_defaults() {
    let id = Uuid::now_v7();
    let expected = Product {
        id: ProductId(id),
        sku: Sku::parse("KB-0042").expect("sku"),
        name: ProductName::parse("Keyboard").expect("name"),
        description: Description::default(),
        price: Price::new(1999, usd()).expect("price"),
        stock: Stock::new(0).expect("stock"),
        active: true,
        created_at: now(),
        updated_at: now(),
    };
    let mut ports = Ports::new();
    ports.ids.expect_new_id().times(1).returning(move || id);
    let stored = expected.clone();
    ports
        .products
        .expect_create()
        .withf(move |product: &Product| *product == stored)
        .times(1)
        .returning(|product| Ok(product.clone()));
    let created = ports
        .service()
        .create(&principal(Role::Admin), valid_draft())
        .await
        .expect("created");
    assert_eq!(created, expected);
}

#[tokio::test]
async fn given_optional_fields_are_stored_as_sent() {
    let id = Uuid::now_v7();
    let mut ports = Ports::new();
    ports.ids.expect_new_id().returning(move || id);
    ports
        .products
        .expect_create()
        .withf(|product: &Product| {
            product.description.as_str() == "Mechanical, tenkeyless"
                && product.stock.get() == 12
                && !product.active
        })
        .times(1)
        .returning(|product| Ok(product.clone()));
    let draft = ProductDraft {
        description: Some("  Mechanical, tenkeyless  ".into()),
        stock: Some(12),
        active: Some(false),
        ..valid_draft()
    };
    ports
        .service()
        .create(&principal(Role::Admin), draft)
        .await
        .expect("created");
}

#[tokio::test]
async fn a_taken_sku_is_reported_as_such() {
    let mut ports = Ports::new();
    ports.ids.expect_new_id().returning(Uuid::now_v7);
    ports
        .products
        .expect_create()
        .times(1)
        .returning(|_| Err(ProductWriteError::SkuTaken));
    let result = ports
        .service()
        .create(&principal(Role::Admin), valid_draft())
        .await;
    assert!(matches!(result, Err(CatalogError::SkuTaken)), "{result:?}");
}

// ---------------------------------------------------------------------------------------------
// get

#[tokio::test]
async fn a_cached_product_is_served_without_the_repository() {
    let id = new_id();
    let cached = product(id);
    let json = serde_json::to_string(&cached).expect("json");
    let mut ports = Ports::new();
    ports
        .cache
        .expect_get()
        .with(eq(key_of(id)))
        .times(1)
        .returning(move |_| Ok(Some(json.clone())));
    ports.products.expect_find_by_id().never();
    ports.cache.expect_set().never();
    assert_eq!(read(&ports.service(), id).await.expect("product"), cached);
}

#[tokio::test]
async fn a_miss_loads_once_and_caches_the_json_for_the_ttl() {
    let id = new_id();
    let stored = product(id);
    let expected = stored.clone();
    let mut ports = Ports::new();
    ports
        .cache
        .expect_get()
        .with(eq(key_of(id)))
        .times(1)
        .returning(|_| Ok(None));
    ports
        .products
        .expect_find_by_id()
        .with(eq(id))
        .times(1)
        .returning(move |_| Ok(Some(stored.clone())));
    let cached = expected.clone();
    let key = key_of(id);
    ports
        .cache
        .expect_set()
        .withf(move |k: &str, value: &str, ttl: &Duration| {
            k == key
                && *ttl == TTL
                && serde_json::from_str::<Product>(value).is_ok_and(|p| p == cached)
        })
        .times(1)
        .returning(|_, _, _| Ok(()));
    assert_eq!(read(&ports.service(), id).await.expect("product"), expected);
}

#[tokio::test]
async fn an_unreachable_cache_falls_back_to_the_repository() {
    let id = new_id();
    let stored = product(id);
    let expected = stored.clone();
    let mut ports = Ports::new();
    ports
        .cache
        .expect_get()
        .times(1)
        .returning(|_| Err(unavailable()));
    ports
        .products
        .expect_find_by_id()
        .with(eq(id))
        .times(1)
        .returning(move |_| Ok(Some(stored.clone())));
    ports
        .cache
        .expect_set()
        .returning(|_, _, _| Err(unavailable()));
    assert_eq!(read(&ports.service(), id).await.expect("product"), expected);
}

#[tokio::test]
async fn an_unreadable_cache_entry_is_reloaded() {
    let id = new_id();
    let stored = product(id);
    let expected = stored.clone();
    let mut ports = Ports::new();
    ports
        .cache
        .expect_get()
        .returning(|_| Ok(Some("{not json".into())));
    ports
        .products
        .expect_find_by_id()
        .times(1)
        .returning(move |_| Ok(Some(stored.clone())));
    ports
        .cache
        .expect_set()
        .times(1)
        .returning(|_, _, _| Ok(()));
    assert_eq!(read(&ports.service(), id).await.expect("product"), expected);
}

#[tokio::test]
async fn an_unknown_product_is_not_found_and_nothing_is_cached() {
    let id = new_id();
    let mut ports = Ports::new();
    ports.cache.expect_get().returning(|_| Ok(None));
    ports
        .products
        .expect_find_by_id()
        .with(eq(id))
        .times(1)
        .returning(|_| Ok(None));
    ports.cache.expect_set().never();
    let result = read(&ports.service(), id).await;
    assert!(matches!(result, Err(CatalogError::NotFound)), "{result:?}");
}

#[tokio::test]
async fn an_unavailable_repository_is_a_failure_and_nothing_is_cached() {
    let mut ports = Ports::new();
    ports.cache.expect_get().returning(|_| Ok(None));
    ports
        .products
        .expect_find_by_id()
        .times(1)
        .returning(|_| Err(unavailable()));
    ports.cache.expect_set().never();
    let result = read(&ports.service(), new_id()).await;
    assert!(
        matches!(result, Err(CatalogError::Failure(Failure::Unavailable(_)))),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_one_product_make_one_repository_call() {
    let id = new_id();
    let stored = product(id);
    let expected = stored.clone();
    let mut ports = Ports::new();
    ports.cache.expect_get().returning(|_| Ok(None));
    ports
        .cache
        .expect_set()
        .times(1)
        .returning(|_, _, _| Ok(()));
    // The slow load holds one worker thread while the other requests arrive on the other.
    ports
        .products
        .expect_find_by_id()
        .with(eq(id))
        .times(1)
        .returning(move |_| {
            std::thread::sleep(Duration::from_millis(300));
            Ok(Some(stored.clone()))
        });
    let service = Arc::new(ports.service());
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move { read(&service, id).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task").expect("product"), expected);
    }
}

// ---------------------------------------------------------------------------------------------
// update

#[tokio::test]
async fn only_admins_change_products_or_their_stock() {
    let mut ports = Ports::new();
    ports.products.expect_update().never();
    ports.products.expect_adjust_stock().never();
    ports.cache.expect_delete_many().never();
    let service = ports.service();
    let customer = principal(Role::Customer);
    let patch = ProductPatch {
        name: Some("Lamp".into()),
        ..ProductPatch::default()
    };
    assert!(matches!(
        service.update(&customer, new_id(), patch).await,
        Err(CatalogError::Forbidden)
    ));
    assert!(matches!(
        service.deactivate(&customer, new_id()).await,
        Err(CatalogError::Forbidden)
    ));
    assert!(matches!(
        service.adjust_stock(&customer, new_id(), Some(5)).await,
        Err(CatalogError::Forbidden)
    ));
}

#[tokio::test]
async fn an_empty_patch_is_refused_naming_the_body() {
    let mut ports = Ports::new();
    ports.products.expect_update().never();
    let result = ports
        .service()
        .update(&principal(Role::Admin), new_id(), ProductPatch::default())
        .await;
    assert_eq!(invalid_fields(result), pairs(&[("body", "empty")]));
}

#[tokio::test]
async fn every_invalid_patch_field_is_listed_at_once() {
    let mut ports = Ports::new();
    ports.products.expect_update().never();
    let patch = ProductPatch {
        sku: Some("no".into()),
        name: Some(String::new()),
        description: Some("d".repeat(Description::MAX_CHARS + 1)),
        price: Some(PriceInput {
            amount_minor: Some(-5),
            currency: Some("USD".into()),
        }),
        active: Some(true),
    };
    let result = ports
        .service()
        .update(&principal(Role::Admin), new_id(), patch)
        .await;
    assert_eq!(
        invalid_fields(result),
        pairs(&[
            ("sku", "invalid_sku"),
            ("name", "required"),
            ("description", "too_long"),
            ("price.amount_minor", "out_of_range"),
        ])
    );
}

/// The same early return as in `create`: a patch with an invalid currency and an invalid amount
/// reports only the currency.
#[tokio::test]
async fn a_patch_lists_an_invalid_amount_even_when_the_currency_is_invalid_too() {
    let patch = ProductPatch {
        price: Some(PriceInput {
            amount_minor: Some(-5),
            currency: Some("dollars".into()),
        }),
        ..ProductPatch::default()
    };
    let result = Ports::new()
        .service()
        .update(&principal(Role::Admin), new_id(), patch)
        .await;
    assert_eq!(
        invalid_fields(result),
        pairs(&[
            ("price.currency", "invalid_currency"),
            ("price.amount_minor", "out_of_range"),
        ])
    );
}

#[tokio::test]
async fn a_successful_update_sends_only_the_changes_and_invalidates_the_cached_product() {
    let id = new_id();
    let updated = product(id);
    let expected = updated.clone();
    let changes = ProductChanges {
        name: Some(ProductName::parse("Desk lamp").expect("name")),
        price: Some(Price::new(2500, usd()).expect("price")),
        ..ProductChanges::default()
    };
    let mut ports = Ports::new();
    ports
        .products
        .expect_update()
        .with(eq(id), eq(changes), eq(now()))
        .times(1)
        .returning(move |_, _, _| Ok(updated.clone()));
    ports.expect_invalidation(id, || Ok(()));
    let patch = ProductPatch {
        name: Some(" Desk lamp ".into()),
        price: Some(PriceInput {
            amount_minor: Some(2500),
            currency: Some("USD".into()),
        }),
        ..ProductPatch::default()
    };
    let product = ports
        .service()
        .update(&principal(Role::Admin), id, patch)
        .await
        .expect("updated");
    assert_eq!(product, expected);
}

#[tokio::test]
async fn a_failed_invalidation_does_not_fail_the_update() {
    let id = new_id();
    let updated = product(id);
    let mut ports = Ports::new();
    ports
        .products
        .expect_update()
        .times(1)
        .returning(move |_, _, _| Ok(updated.clone()));
    ports.expect_invalidation(id, || Err(unavailable()));
    let patch = ProductPatch {
        active: Some(true),
        ..ProductPatch::default()
    };
    let result = ports
        .service()
        .update(&principal(Role::Admin), id, patch)
        .await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn update_maps_an_unknown_product_and_a_taken_sku() {
    let patch = ProductPatch {
        sku: Some("KB-0043".into()),
        ..ProductPatch::default()
    };
    let admin = principal(Role::Admin);

    let mut ports = Ports::new();
    ports
        .products
        .expect_update()
        .returning(|_, _, _| Err(ProductWriteError::NotFound));
    ports.cache.expect_delete_many().never();
    let result = ports
        .service()
        .update(&admin, new_id(), patch.clone())
        .await;
    assert!(matches!(result, Err(CatalogError::NotFound)), "{result:?}");

    let mut ports = Ports::new();
    ports
        .products
        .expect_update()
        .returning(|_, _, _| Err(ProductWriteError::SkuTaken));
    ports.cache.expect_delete_many().never();
    let result = ports.service().update(&admin, new_id(), patch).await;
    assert!(matches!(result, Err(CatalogError::SkuTaken)), "{result:?}");
}

// ---------------------------------------------------------------------------------------------
// deactivate

#[tokio::test]
async fn deactivating_clears_the_active_flag_and_invalidates() {
    let id = new_id();
    let deactivated = Product {
        active: false,
        ..product(id)
    };
    let mut ports = Ports::new();
    ports
        .products
        .expect_update()
        .with(
            eq(id),
            eq(ProductChanges {
                active: Some(false),
                ..ProductChanges::default()
            }),
            eq(now()),
        )
        .times(1)
        .returning(move |_, _, _| Ok(deactivated.clone()));
    ports.expect_invalidation(id, || Ok(()));
    ports
        .service()
        .deactivate(&principal(Role::Admin), id)
        .await
        .expect("deactivated");
}

#[tokio::test]
async fn deactivating_an_unknown_product_is_not_found() {
    let mut ports = Ports::new();
    ports
        .products
        .expect_update()
        .returning(|_, _, _| Err(ProductWriteError::NotFound));
    ports.cache.expect_delete_many().never();
    let result = ports
        .service()
        .deactivate(&principal(Role::Admin), new_id())
        .await;
    assert!(matches!(result, Err(CatalogError::NotFound)), "{result:?}");
}

// ---------------------------------------------------------------------------------------------
// adjust_stock

#[tokio::test]
async fn a_missing_zero_or_huge_delta_is_refused() {
    let mut ports = Ports::new();
    ports.products.expect_adjust_stock().never();
    let service = ports.service();
    let admin = principal(Role::Admin);
    assert_eq!(
        invalid_fields(service.adjust_stock(&admin, new_id(), None).await),
        pairs(&[("delta", "required")])
    );
    for delta in [0, MAX_STOCK_DELTA + 1, -MAX_STOCK_DELTA - 1, i64::MIN] {
        assert_eq!(
            invalid_fields(service.adjust_stock(&admin, new_id(), Some(delta)).await),
            pairs(&[("delta", "out_of_range")]),
            "delta {delta}"
        );
    }
}

#[tokio::test]
async fn a_refused_removal_reports_what_was_requested_and_available() {
    let mut ports = Ports::new();
    ports.products.expect_adjust_stock().returning(|_, _, _| {
        Err(StockAdjustError::Refused(StockError::Insufficient {
            requested: 9,
            available: 2,
        }))
    });
    ports.cache.expect_delete_many().never();
    let result = ports
        .service()
        .adjust_stock(&principal(Role::Admin), new_id(), Some(-9))
        .await;
    assert!(
        matches!(
            result,
            Err(CatalogError::InsufficientStock {
                requested: 9,
                available: 2
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn adjust_stock_maps_too_large_and_not_found() {
    let admin = principal(Role::Admin);

    let mut ports = Ports::new();
    ports
        .products
        .expect_adjust_stock()
        .returning(|_, _, _| Err(StockAdjustError::Refused(StockError::TooLarge)));
    ports.cache.expect_delete_many().never();
    let result = ports
        .service()
        .adjust_stock(&admin, new_id(), Some(5))
        .await;
    assert!(
        matches!(result, Err(CatalogError::StockTooLarge)),
        "{result:?}"
    );

    let mut ports = Ports::new();
    ports
        .products
        .expect_adjust_stock()
        .returning(|_, _, _| Err(StockAdjustError::NotFound));
    ports.cache.expect_delete_many().never();
    let result = ports
        .service()
        .adjust_stock(&admin, new_id(), Some(5))
        .await;
    assert!(matches!(result, Err(CatalogError::NotFound)), "{result:?}");
}

#[tokio::test]
async fn a_stock_adjustment_is_applied_atomically_and_invalidates() {
    let id = new_id();
    let adjusted = product(id);
    let expected = adjusted.clone();
    let mut ports = Ports::new();
    ports
        .products
        .expect_adjust_stock()
        .with(eq(id), eq(-3), eq(now()))
        .times(1)
        .returning(move |_, _, _| Ok(adjusted.clone()));
    ports.expect_invalidation(id, || Ok(()));
    let product = ports
        .service()
        .adjust_stock(&principal(Role::Admin), id, Some(-3))
        .await
        .expect("adjusted");
    assert_eq!(product, expected);
}

// ---------------------------------------------------------------------------------------------
// list

fn default_query(limit: usize) -> ProductQuery {
    ProductQuery {
        filter: ProductFilter {
            active: Some(true),
            ..ProductFilter::default()
        },
        sort: ProductSort::CreatedAt,
        direction: SortDirection::Desc,
        after: None,
        limit,
    }
}

#[tokio::test]
async fn the_default_list_asks_for_twenty_one_active_products_newest_first() {
    let mut ports = Ports::new();
    ports
        .products
        .expect_list()
        .with(eq(default_query(21)))
        .times(1)
        .returning(|_| Ok(Vec::new()));
    let page = ports
        .service()
        .list(ProductListParams::default())
        .await
        .expect("page");
    assert!(page.items.is_empty() && page.next_cursor.is_none());
}

#[tokio::test]
async fn filters_and_sort_reach_the_repository() {
    let expected = ProductQuery {
        filter: ProductFilter {
            q: Some("lamp".into()),
            active: Some(false),
            min_price: Some(100),
            max_price: Some(100),
            currency: Some(Currency::parse("EUR").expect("currency")),
        },
        sort: ProductSort::Price,
        direction: SortDirection::Asc,
        after: None,
        limit: 6,
    };
    let mut ports = Ports::new();
    ports
        .products
        .expect_list()
        .with(eq(expected))
        .times(1)
        .returning(|_| Ok(Vec::new()));
    let params = ProductListParams {
        q: Some("  lamp ".into()),
        active: Some("false".into()),
        min_price: Some("100".into()),
        max_price: Some("100".into()),
        currency: Some("EUR".into()),
        sort: Some("price".into()),
        order: Some("asc".into()),
        cursor: None,
        limit: Some("5".into()),
    };
    ports.service().list(params).await.expect("page");
}

#[tokio::test]
async fn every_invalid_list_parameter_is_listed_at_once() {
    let mut ports = Ports::new();
    ports.products.expect_list().never();
    let service = ports.service();
    let cases = [
        ("0", "out_of_range", "-1", None, "min_price"),
        ("101", "out_of_range", "-1", Some("abc"), "min_price"),
        ("abc", "invalid_integer", "500", Some("100"), "max_price"),
    ];
    for (limit, limit_code, min_price, max_price, price_field) in cases {
        let params = ProductListParams {
            q: Some("q".repeat(101)),
            active: Some("maybe".into()),
            min_price: Some(min_price.into()),
            max_price: max_price.map(Into::into),
            currency: Some("usd".into()),
            sort: Some("bogus".into()),
            order: Some("up".into()),
            cursor: None,
            limit: Some(limit.into()),
        };
        let mut expected = vec![
            ("limit", limit_code),
            ("q", "too_long"),
            ("active", "invalid_boolean"),
            (price_field, "out_of_range"),
        ];
        if max_price == Some("abc") {
            expected.push(("max_price", "out_of_range"));
        }
        expected.extend([
            ("currency", "invalid_currency"),
            ("sort", "invalid_choice"),
            ("order", "invalid_choice"),
        ]);
        assert_eq!(
            invalid_fields(service.list(params).await),
            pairs(&expected),
            "limit {limit}"
        );
    }
}

#[tokio::test]
async fn a_minimum_price_above_the_maximum_is_refused() {
    let mut ports = Ports::new();
    ports.products.expect_list().never();
    let params = ProductListParams {
        min_price: Some("500".into()),
        max_price: Some("499".into()),
        ..ProductListParams::default()
    };
    assert_eq!(
        invalid_fields(ports.service().list(params).await),
        pairs(&[("max_price", "out_of_range")])
    );
}

#[tokio::test]
async fn a_next_cursor_comes_only_with_a_page_that_has_more() {
    let rows: Vec<Product> = (0..3).map(|n| product_at(new_id(), -n, 1999)).collect();
    let exactly_full = rows[..2].to_vec();
    let mut ports = Ports::new();
    ports
        .products
        .expect_list()
        .withf(|query| query.limit == 3 && query.filter.q.is_none())
        .times(1)
        .returning(move |_| Ok(exactly_full.clone()));
    let one_more = rows.clone();
    ports
        .products
        .expect_list()
        .withf(|query| query.limit == 3 && query.filter.q.is_some())
        .times(1)
        .returning(move |_| Ok(one_more.clone()));
    let service = ports.service();

    let page = service
        .list(ProductListParams {
            limit: Some("2".into()),
            ..ProductListParams::default()
        })
        .await
        .expect("page");
    assert_eq!(page.items, rows[..2]);
    assert_eq!(page.next_cursor, None);

    let page = service
        .list(ProductListParams {
            q: Some("key".into()),
            limit: Some("2".into()),
            ..ProductListParams::default()
        })
        .await
        .expect("page");
    assert_eq!(page.items, rows[..2], "the extra row is not shown");
    assert!(page.next_cursor.is_some());
}

#[tokio::test]
async fn a_created_at_cursor_resumes_after_the_last_product_of_the_page() {
    let rows: Vec<Product> = (0..3).map(|n| product_at(new_id(), -n, 1999)).collect();
    let last = rows[1].clone();
    let mut ports = Ports::new();
    let first_page = rows.clone();
    ports
        .products
        .expect_list()
        .withf(|query| query.after.is_none())
        .times(1)
        .returning(move |_| Ok(first_page.clone()));
    let expected = ProductQuery {
        after: Some(ProductPageKey::CreatedAt(last.created_at, last.id)),
        ..default_query(3)
    };
    ports
        .products
        .expect_list()
        .with(eq(expected))
        .times(1)
        .returning(|_| Ok(Vec::new()));
    let service = ports.service();
    let params = ProductListParams {
        limit: Some("2".into()),
        ..ProductListParams::default()
    };
    let cursor = service
        .list(params.clone())
        .await
        .expect("page 1")
        .next_cursor
        .expect("more pages");
    let next = service
        .list(ProductListParams {
            cursor: Some(cursor),
            ..params
        })
        .await
        .expect("page 2");
    assert!(next.items.is_empty() && next.next_cursor.is_none());
}

#[tokio::test]
async fn a_price_cursor_resumes_after_the_last_price_of_the_page() {
    let rows: Vec<Product> = [100, 250, 400]
        .into_iter()
        .map(|minor| product_at(new_id(), 0, minor))
        .collect();
    let last = rows[1].clone();
    let mut ports = Ports::new();
    let first_page = rows.clone();
    ports
        .products
        .expect_list()
        .withf(|query| query.after.is_none())
        .times(1)
        .returning(move |_| Ok(first_page.clone()));
    let expected = ProductQuery {
        sort: ProductSort::Price,
        direction: SortDirection::Asc,
        after: Some(ProductPageKey::Price(250, last.id)),
        ..default_query(3)
    };
    ports
        .products
        .expect_list()
        .with(eq(expected))
        .times(1)
        .returning(|_| Ok(Vec::new()));
    let service = ports.service();
    let params = ProductListParams {
        sort: Some("price".into()),
        order: Some("asc".into()),
        limit: Some("2".into()),
        ..ProductListParams::default()
    };
    let cursor = service
        .list(params.clone())
        .await
        .expect("page 1")
        .next_cursor
        .expect("more pages");
    service
        .list(ProductListParams {
            cursor: Some(cursor),
            ..params
        })
        .await
        .expect("page 2");
}

#[tokio::test]
async fn a_cursor_of_another_list_or_a_garbage_cursor_is_refused() {
    let rows: Vec<Product> = (0..3).map(|n| product_at(new_id(), -n, 1999)).collect();
    let mut ports = Ports::new();
    ports
        .products
        .expect_list()
        .times(1)
        .returning(move |_| Ok(rows.clone()));
    let service = ports.service();
    let params = ProductListParams {
        limit: Some("2".into()),
        ..ProductListParams::default()
    };
    let cursor = service
        .list(params.clone())
        .await
        .expect("page 1")
        .next_cursor
        .expect("more pages");
    let with_cursor = |cursor: &str| ProductListParams {
        cursor: Some(cursor.to_owned()),
        ..params.clone()
    };
    let elsewhere = [
        ProductListParams {
            sort: Some("price".into()),
            ..with_cursor(&cursor)
        },
        ProductListParams {
            order: Some("asc".into()),
            ..with_cursor(&cursor)
        },
        ProductListParams {
            active: Some("false".into()),
            ..with_cursor(&cursor)
        },
        ProductListParams {
            q: Some("lamp".into()),
            ..with_cursor(&cursor)
        },
        ProductListParams {
            min_price: Some("1".into()),
            ..with_cursor(&cursor)
        },
        ProductListParams {
            currency: Some("USD".into()),
            ..with_cursor(&cursor)
        },
        with_cursor("garbage"),
        with_cursor(&format!("{cursor}x")),
        with_cursor(""),
    ];
    for params in elsewhere {
        let described = format!("{params:?}");
        assert_eq!(
            invalid_fields(service.list(params).await),
            pairs(&[("cursor", "invalid_cursor")]),
            "{described}"
        );
    }
}
