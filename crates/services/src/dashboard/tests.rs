//! DashboardService against mockall mocks (and, for concurrency, a hand-written fake).

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use strata_domain::{
    Currency, Money, ProductId, ProductName, ReportRange, Role, SalesFigures, Sku, Stock,
    WindowSales,
};
use strata_ports::{MockAnalyticsRepository, MockCache, MockClock};
use tokio::sync::Barrier;
use uuid::Uuid;

use super::*;
use crate::test_support::{fixed_clock, now, principal, unavailable};

const TTL: Duration = Duration::from_secs(30);
const THRESHOLD: u32 = 10;

fn settings() -> DashboardSettings {
    DashboardSettings {
        ttl: TTL,
        low_stock_threshold: THRESHOLD,
    }
}

fn usd(amount_minor: i64) -> Money {
    Money::new(amount_minor, Currency::parse("USD").expect("USD"))
}

fn eur(amount_minor: i64) -> Money {
    Money::new(amount_minor, Currency::parse("EUR").expect("EUR"))
}

fn sales() -> SalesByWindow {
    SalesByWindow {
        today: WindowSales {
            orders: 1,
            revenue: vec![usd(500)],
        },
        last_7_days: WindowSales {
            orders: 3,
            revenue: vec![eur(900), usd(1_500)],
        },
        last_30_days: WindowSales {
            orders: 7,
            revenue: vec![eur(900), usd(4_000)],
        },
    }
}

fn top(n: u128, units: u64) -> ProductUnits {
    ProductUnits {
        product_id: ProductId(Uuid::from_u128(n)),
        sku: Sku::parse(&format!("TOP-{n}")).expect("sku"),
        name: ProductName::parse("Best seller").expect("name"),
        units,
    }
}

fn low(n: u128, stock: i64) -> StockLevel {
    StockLevel {
        product_id: ProductId(Uuid::from_u128(n)),
        sku: Sku::parse(&format!("LOW-{n}")).expect("sku"),
        name: ProductName::parse("Running out").expect("name"),
        stock: Stock::new(stock).expect("stock"),
    }
}

fn clock() -> Arc<MockClock> {
    let clock = fixed_clock();
    Arc::new(clock)
}

/// A cache that is always empty and accepts writes.
fn empty_cache() -> MockCache {
    let mut cache = MockCache::new();
    cache.expect_get().returning(|_| Ok(None));
    cache.expect_set().returning(|_, _, _| Ok(()));
    cache
}

/// Analytics answering every figure once, with the arguments the dashboard must pass.
fn answering_analytics() -> MockAnalyticsRepository {
    let windows = SalesWindows::ending_at(now());
    let mut analytics = MockAnalyticsRepository::new();
    analytics
        .expect_sales_by_window()
        .withf(move |asked| *asked == windows)
        .times(1)
        .returning(|_| Ok(sales()));
    analytics
        .expect_top_products()
        .withf(move |from, until, limit| {
            *from == windows.last_30_days && *until == now() && *limit == TOP_PRODUCTS
        })
        .times(1)
        .returning(|_, _, _| Ok(vec![top(1, 40), top(2, 12)]));
    analytics
        .expect_low_stock()
        .withf(|threshold, limit| *threshold == THRESHOLD && *limit == LOW_STOCK_LISTED)
        .times(1)
        .returning(|_, _| Ok(vec![low(3, 0), low(4, 7)]));
    analytics
        .expect_count_low_stock()
        .withf(|threshold| *threshold == THRESHOLD)
        .times(1)
        .returning(|_| Ok(42));
    analytics
        .expect_count_active_subscriptions()
        .times(1)
        .returning(|| Ok(5));
    analytics
}

fn expected() -> Dashboard {
    Dashboard {
        generated_at: now(),
        windows: SalesWindows::ending_at(now()),
        sales: sales(),
        top_products: vec![top(1, 40), top(2, 12)],
        low_stock: LowStock {
            threshold: THRESHOLD,
            total: 42,
            products: vec![low(3, 0), low(4, 7)],
        },
        active_subscriptions: 5,
    }
}

#[tokio::test]
async fn only_an_admin_sees_the_dashboard() {
    let mut analytics = MockAnalyticsRepository::new();
    analytics.expect_sales_by_window().never();
    analytics.expect_count_active_subscriptions().never();
    let mut cache = MockCache::new();
    cache.expect_get().never();
    let service = DashboardService::new(Arc::new(analytics), Arc::new(cache), clock(), settings());
    let result = service.dashboard(&principal(Role::Customer)).await;
    assert!(
        matches!(result, Err(DashboardError::Forbidden)),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_miss_reads_every_figure_and_caches_the_dashboard_under_its_key_for_the_ttl() {
    let mut cache = MockCache::new();
    cache
        .expect_get()
        .withf(|key| key == DASHBOARD_CACHE_KEY)
        .times(1)
        .returning(|_| Ok(None));
    cache
        .expect_set()
        .withf(|key, json, ttl| {
            key == DASHBOARD_CACHE_KEY
                && *ttl == TTL
                && serde_json::from_str::<Dashboard>(json).ok() == Some(expected())
        })
        .times(1)
        .returning(|_, _, _| Ok(()));
    let service = DashboardService::new(
        Arc::new(answering_analytics()),
        Arc::new(cache),
        clock(),
        settings(),
    );
    let dashboard = service
        .dashboard(&principal(Role::Admin))
        .await
        .expect("dashboard");
    assert_eq!(dashboard, expected());
}

#[tokio::test]
async fn a_hit_is_served_from_the_cache_with_its_own_generation_time() {
    let earlier = Dashboard {
        generated_at: now() - chrono::Duration::seconds(20),
        ..expected()
    };
    let json = serde_json::to_string(&earlier).expect("json");
    let mut cache = MockCache::new();
    cache
        .expect_get()
        .times(1)
        .returning(move |_| Ok(Some(json.clone())));
    cache.expect_set().never();
    let mut analytics = MockAnalyticsRepository::new();
    analytics.expect_sales_by_window().never();
    analytics.expect_top_products().never();
    analytics.expect_low_stock().never();
    analytics.expect_count_low_stock().never();
    analytics.expect_count_active_subscriptions().never();
    let service = DashboardService::new(Arc::new(analytics), Arc::new(cache), clock(), settings());
    let dashboard = service
        .dashboard(&principal(Role::Admin))
        .await
        .expect("dashboard");
    assert_eq!(dashboard, earlier);
}

#[tokio::test]
async fn an_unreachable_cache_is_bypassed() {
    let mut cache = MockCache::new();
    cache.expect_get().returning(|_| Err(unavailable()));
    cache.expect_set().returning(|_, _, _| Err(unavailable()));
    let service = DashboardService::new(
        Arc::new(answering_analytics()),
        Arc::new(cache),
        clock(),
        settings(),
    );
    let dashboard = service
        .dashboard(&principal(Role::Admin))
        .await
        .expect("dashboard");
    assert_eq!(dashboard, expected());
}

#[tokio::test]
async fn a_failing_query_fails_the_dashboard_and_nothing_is_cached() {
    let mut analytics = MockAnalyticsRepository::new();
    analytics
        .expect_sales_by_window()
        .returning(|_| Ok(SalesByWindow::default()));
    analytics
        .expect_top_products()
        .returning(|_, _, _| Err(unavailable()));
    analytics.expect_low_stock().returning(|_, _| Ok(vec![]));
    analytics.expect_count_low_stock().returning(|_| Ok(0));
    analytics
        .expect_count_active_subscriptions()
        .returning(|| Ok(0));
    let mut cache = MockCache::new();
    cache.expect_get().returning(|_| Ok(None));
    cache.expect_set().never();
    let service = DashboardService::new(Arc::new(analytics), Arc::new(cache), clock(), settings());
    let result = service.dashboard(&principal(Role::Admin)).await;
    assert!(
        matches!(
            result,
            Err(DashboardError::Failure(Failure::Unavailable(_)))
        ),
        "{result:?}"
    );
}

/// Analytics whose every dashboard query waits until all five have started: run one after
/// another, they would wait forever.
struct Rendezvous {
    barrier: Barrier,
    started: AtomicUsize,
}

impl Rendezvous {
    async fn meet(&self) {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.barrier.wait().await;
    }
}

#[async_trait]
impl AnalyticsRepository for Rendezvous {
    async fn sales_by_window(&self, _: &SalesWindows) -> Result<SalesByWindow, PortError> {
        self.meet().await;
        Ok(SalesByWindow::default())
    }

    async fn top_products(
        &self,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
        _: usize,
    ) -> Result<Vec<ProductUnits>, PortError> {
        self.meet().await;
        Ok(Vec::new())
    }

    async fn low_stock(&self, _: u32, _: usize) -> Result<Vec<StockLevel>, PortError> {
        self.meet().await;
        Ok(Vec::new())
    }

    async fn count_low_stock(&self, _: u32) -> Result<u64, PortError> {
        self.meet().await;
        Ok(0)
    }

    async fn count_active_subscriptions(&self) -> Result<u64, PortError> {
        self.meet().await;
        Ok(0)
    }

    async fn sales_figures(&self, _: &ReportRange, _: usize) -> Result<SalesFigures, PortError> {
        unreachable!("not a dashboard query")
    }
}

#[tokio::test]
async fn the_five_queries_run_concurrently() {
    let analytics = Arc::new(Rendezvous {
        barrier: Barrier::new(5),
        started: AtomicUsize::new(0),
    });
    let service = DashboardService::new(
        analytics.clone(),
        Arc::new(empty_cache()),
        clock(),
        settings(),
    );
    let admin = principal(Role::Admin);
    let dashboard = tokio::time::timeout(Duration::from_secs(5), service.dashboard(&admin))
        .await
        .expect("every query started before any finished: they run concurrently")
        .expect("dashboard");
    assert_eq!(analytics.started.load(Ordering::SeqCst), 5);
    assert_eq!(dashboard.generated_at, now());
    assert_eq!(dashboard.low_stock.threshold, THRESHOLD);
}

/// Windows for instants chosen where calendars trip: month and year ends, a leap day, the
/// seconds around midnight, and the days European and American clocks change (the windows are
/// UTC, so none of these may shift them).
#[test]
fn the_windows_are_today_and_whole_utc_days_before_it_whatever_the_date() {
    let at = |raw: &str| -> DateTime<Utc> { raw.parse().expect("instant") };
    // (now, today, last_7_days, last_30_days)
    let cases = [
        (
            "2026-11-21T12:00:00Z",
            "2026-11-21T00:00:00Z",
            "2026-11-15T00:00:00Z",
            "2026-10-23T00:00:00Z",
        ),
        (
            "2026-12-31T23:59:59Z",
            "2026-12-31T00:00:00Z",
            "2026-12-25T00:00:00Z",
            "2026-12-02T00:00:00Z",
        ),
        (
            "2027-01-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
            "2026-12-26T00:00:00Z",
            "2026-12-03T00:00:00Z",
        ),
        (
            "2028-02-29T08:30:00Z",
            "2028-02-29T00:00:00Z",
            "2028-02-23T00:00:00Z",
            "2028-01-31T00:00:00Z",
        ),
        (
            "2028-03-01T00:00:01Z",
            "2028-03-01T00:00:00Z",
            "2028-02-24T00:00:00Z",
            "2028-02-01T00:00:00Z",
        ),
        (
            "2027-03-01T00:00:00Z",
            "2027-03-01T00:00:00Z",
            "2027-02-23T00:00:00Z",
            "2027-01-31T00:00:00Z",
        ),
        (
            "2026-03-29T01:30:00Z",
            "2026-03-29T00:00:00Z",
            "2026-03-23T00:00:00Z",
            "2026-02-28T00:00:00Z",
        ),
        (
            "2026-11-01T06:30:00Z",
            "2026-11-01T00:00:00Z",
            "2026-10-26T00:00:00Z",
            "2026-10-03T00:00:00Z",
        ),
    ];
    for (now, today, week, month) in cases {
        let windows = SalesWindows::ending_at(at(now));
        assert_eq!(windows.today, at(today), "today at {now}");
        assert_eq!(windows.last_7_days, at(week), "7 days at {now}");
        assert_eq!(windows.last_30_days, at(month), "30 days at {now}");
        assert_eq!(windows.until, at(now), "until at {now}");
    }
}

#[test]
fn the_windows_of_the_test_clock_start_at_its_utc_midnight() {
    let windows = SalesWindows::ending_at(now());
    assert_eq!(windows.today.date_naive(), now().date_naive());
    assert_eq!(windows.today.time(), chrono::NaiveTime::MIN);
    assert_eq!(windows.until, now());
}
