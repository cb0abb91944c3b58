//! [`AnalyticsRepository`] on `orders`, `order_items`, `products` and `subscriptions`.
//!
//! The statements are written out in SQL so that they can be read next to their plans in
//! docs/dashboard-queries.md. Their constant predicates (`status <> 'cancelled'`, `active`,
//! `status = 'active'`) are literals, never binds: a partial index serves a query only when the
//! planner can prove the query's predicate implies the index's, which a generic plan cannot do
//! with a parameter. Every time range is half-open, `[from, until)`.
//!
//! Sums are cast back to `bigint` in SQL: a sum beyond 64 bits fails the statement rather than
//! coming back as a number no `Money` can hold.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Date, Integer, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use strata_domain::{
    Currency, DaySales, DayUnits, Money, ProductId, ProductName, ProductUnits, ReportRange,
    SalesByWindow, SalesFigures, SalesWindows, Sku, Stock, StockLevel, WindowSales,
};
use strata_ports::{AnalyticsRepository, PortError};
use uuid::Uuid;

use crate::database::{Database, Transaction};

/// Aggregate reads in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgAnalyticsRepository {
    db: Database,
    report_timeout: Duration,
}

impl PgAnalyticsRepository {
    /// A repository on `db`. A sales report's statements may run for `report_timeout` in all
    /// (they read up to a year of orders, in the worker); the dashboard's are bound by the pool's
    /// query timeout like every request's.
    pub fn new(db: Database, report_timeout: Duration) -> Self {
        Self { db, report_timeout }
    }
}

fn count(raw: i64, what: &str) -> Result<u64, PortError> {
    u64::try_from(raw).map_err(|_| PortError::unexpected(anyhow!("a negative {what}: {raw}")))
}

fn currency(raw: &str) -> Result<Currency, PortError> {
    Currency::parse(raw)
        .map_err(|_| PortError::unexpected(anyhow!("an order holds an invalid currency {raw:?}")))
}

fn limit_of(limit: usize) -> Result<i64, PortError> {
    i64::try_from(limit).map_err(PortError::unexpected)
}

#[derive(QueryableByName)]
struct WindowRow {
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    today_orders: i64,
    #[diesel(sql_type = BigInt)]
    today_revenue: i64,
    #[diesel(sql_type = BigInt)]
    week_orders: i64,
    #[diesel(sql_type = BigInt)]
    week_revenue: i64,
    #[diesel(sql_type = BigInt)]
    month_orders: i64,
    #[diesel(sql_type = BigInt)]
    month_revenue: i64,
}

#[derive(QueryableByName)]
struct ProductUnitsRow {
    #[diesel(sql_type = SqlUuid)]
    product_id: Uuid,
    #[diesel(sql_type = Text)]
    sku: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = BigInt)]
    units: i64,
}

impl ProductUnitsRow {
    fn into_units(self) -> Result<ProductUnits, PortError> {
        let corrupt = |what: &str| {
            PortError::unexpected(anyhow!(
                "products row {} holds an invalid {what}",
                self.product_id
            ))
        };
        Ok(ProductUnits {
            product_id: ProductId(self.product_id),
            sku: Sku::parse(&self.sku).map_err(|_| corrupt("sku"))?,
            name: ProductName::parse(&self.name).map_err(|_| corrupt("name"))?,
            units: count(self.units, "number of units")?,
        })
    }
}

#[derive(QueryableByName)]
struct StockRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    sku: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Integer)]
    stock: i32,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct DaySalesRow {
    #[diesel(sql_type = Date)]
    day: NaiveDate,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    orders: i64,
    #[diesel(sql_type = BigInt)]
    revenue: i64,
}

#[derive(QueryableByName)]
struct DayUnitsRow {
    #[diesel(sql_type = Date)]
    day: NaiveDate,
    #[diesel(sql_type = BigInt)]
    units: i64,
}

/// Orders not cancelled in `[$1, $2)`, the best sellers first (`$3` of them), with their current
/// SKU and name. Index-only on `orders_sales_created_at_idx` and
/// `order_items_order_id_product_id_key` for a dashboard's 30 days.
const TOP_PRODUCTS: &str = "\
    SELECT t.product_id, p.sku, p.name, t.units \
    FROM (SELECT i.product_id, sum(i.quantity)::bigint AS units \
          FROM orders o JOIN order_items i ON i.order_id = o.id \
          WHERE o.status <> 'cancelled' AND o.created_at >= $1 AND o.created_at < $2 \
          GROUP BY i.product_id \
          ORDER BY units DESC, i.product_id \
          LIMIT $3) t \
    JOIN products p ON p.id = t.product_id \
    ORDER BY t.units DESC, t.product_id";

async fn top_products_in(
    conn: &mut AsyncPgConnection,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ProductUnitsRow>, diesel::result::Error> {
    diesel::sql_query(TOP_PRODUCTS)
        .bind::<Timestamptz, _>(from)
        .bind::<Timestamptz, _>(until)
        .bind::<BigInt, _>(limit)
        .load::<ProductUnitsRow>(conn)
        .await
}

/// The money of one window: the currencies that had orders, by code.
fn window(
    rows: &[WindowRow],
    pick: impl Fn(&WindowRow) -> (i64, i64),
) -> Result<WindowSales, PortError> {
    let mut sales = WindowSales::default();
    for row in rows {
        let (orders, revenue) = pick(row);
        if orders == 0 {
            continue;
        }
        sales.orders = sales
            .orders
            .saturating_add(count(orders, "number of orders")?);
        sales
            .revenue
            .push(Money::new(revenue, currency(&row.currency)?));
    }
    sales.revenue.sort_by_key(|money| money.currency);
    Ok(sales)
}

#[async_trait]
impl AnalyticsRepository for PgAnalyticsRepository {
    async fn sales_by_window(&self, windows: &SalesWindows) -> Result<SalesByWindow, PortError> {
        let mut conn = self.db.connection().await?;
        // One range scan of the widest window; the narrower ones are filters of its rows.
        let rows = self
            .db
            .timed(
                diesel::sql_query(
                    "SELECT currency, \
                       count(*) FILTER (WHERE created_at >= $1) AS today_orders, \
                       coalesce(sum(total_minor) FILTER (WHERE created_at >= $1), 0)::bigint \
                         AS today_revenue, \
                       count(*) FILTER (WHERE created_at >= $2) AS week_orders, \
                       coalesce(sum(total_minor) FILTER (WHERE created_at >= $2), 0)::bigint \
                         AS week_revenue, \
                       count(*) AS month_orders, \
                       sum(total_minor)::bigint AS month_revenue \
                     FROM orders \
                     WHERE status <> 'cancelled' AND created_at >= $3 AND created_at < $4 \
                     GROUP BY currency",
                )
                .bind::<Timestamptz, _>(windows.today)
                .bind::<Timestamptz, _>(windows.last_7_days)
                .bind::<Timestamptz, _>(windows.last_30_days)
                .bind::<Timestamptz, _>(windows.until)
                .load::<WindowRow>(&mut conn),
            )
            .await?;
        Ok(SalesByWindow {
            today: window(&rows, |r| (r.today_orders, r.today_revenue))?,
            last_7_days: window(&rows, |r| (r.week_orders, r.week_revenue))?,
            last_30_days: window(&rows, |r| (r.month_orders, r.month_revenue))?,
        })
    }

    async fn top_products(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ProductUnits>, PortError> {
        let limit = limit_of(limit)?;
        let mut conn = self.db.connection().await?;
        let rows = self
            .db
            .timed(top_products_in(&mut conn, from, until, limit))
            .await?;
        rows.into_iter().map(ProductUnitsRow::into_units).collect()
    }

    async fn low_stock(&self, threshold: u32, limit: usize) -> Result<Vec<StockLevel>, PortError> {
        let threshold = i32::try_from(threshold).unwrap_or(i32::MAX);
        let limit = limit_of(limit)?;
        let mut conn = self.db.connection().await?;
        let rows = self
            .db
            .timed(
                diesel::sql_query(
                    "SELECT id, sku, name, stock FROM products \
                     WHERE active AND stock < $1 ORDER BY stock, id LIMIT $2",
                )
                .bind::<Integer, _>(threshold)
                .bind::<BigInt, _>(limit)
                .load::<StockRow>(&mut conn),
            )
            .await?;
        rows.into_iter()
            .map(|row| {
                let corrupt = |what: &str| {
                    PortError::unexpected(anyhow!(
                        "products row {} holds an invalid {what}",
                        row.id
                    ))
                };
                Ok(StockLevel {
                    product_id: ProductId(row.id),
                    sku: Sku::parse(&row.sku).map_err(|_| corrupt("sku"))?,
                    name: ProductName::parse(&row.name).map_err(|_| corrupt("name"))?,
                    stock: Stock::new(i64::from(row.stock)).map_err(|_| corrupt("stock"))?,
                })
            })
            .collect()
    }

    async fn count_low_stock(&self, threshold: u32) -> Result<u64, PortError> {
        let threshold = i32::try_from(threshold).unwrap_or(i32::MAX);
        let mut conn = self.db.connection().await?;
        let counted = self
            .db
            .timed(
                diesel::sql_query("SELECT count(*) AS n FROM products WHERE active AND stock < $1")
                    .bind::<Integer, _>(threshold)
                    .get_result::<Count>(&mut conn),
            )
            .await?;
        count(counted.n, "count")
    }

    async fn count_active_subscriptions(&self) -> Result<u64, PortError> {
        let mut conn = self.db.connection().await?;
        let counted = self
            .db
            .timed(
                diesel::sql_query(
                    "SELECT count(*) AS n FROM subscriptions WHERE status = 'active'",
                )
                .get_result::<Count>(&mut conn),
            )
            .await?;
        count(counted.n, "count")
    }

    async fn sales_figures(
        &self,
        range: &ReportRange,
        top: usize,
    ) -> Result<SalesFigures, PortError> {
        let (from, to) = (range.from(), range.to());
        let top = limit_of(top)?;
        // One snapshot for the three statements, so that the totals, the days and the ranking
        // count the same orders even while orders are placed and cancelled.
        let snapshot = Transaction::ReadSnapshot {
            limit: self.report_timeout,
            what: "report query",
        };
        let (sales, units, products) = self
            .db
            .in_transaction::<_, PortError, _>(snapshot, async |conn| {
                let sales = diesel::sql_query(
                    "SELECT (created_at AT TIME ZONE 'UTC')::date AS day, currency, \
                       count(*) AS orders, sum(total_minor)::bigint AS revenue \
                     FROM orders \
                     WHERE status <> 'cancelled' AND created_at >= $1 AND created_at < $2 \
                     GROUP BY 1, 2",
                )
                .bind::<Timestamptz, _>(from)
                .bind::<Timestamptz, _>(to)
                .load::<DaySalesRow>(conn)
                .await?;
                let units = diesel::sql_query(
                    "SELECT (o.created_at AT TIME ZONE 'UTC')::date AS day, \
                       sum(i.quantity)::bigint AS units \
                     FROM orders o JOIN order_items i ON i.order_id = o.id \
                     WHERE o.status <> 'cancelled' \
                       AND o.created_at >= $1 AND o.created_at < $2 \
                     GROUP BY 1",
                )
                .bind::<Timestamptz, _>(from)
                .bind::<Timestamptz, _>(to)
                .load::<DayUnitsRow>(conn)
                .await?;
                let products = top_products_in(conn, from, to, top).await?;
                Ok((sales, units, products))
            })
            .await?;
        let mut by_day: BTreeMap<(NaiveDate, Currency), DaySales> = BTreeMap::new();
        for row in sales {
            let currency = currency(&row.currency)?;
            by_day.insert(
                (row.day, currency),
                DaySales {
                    date: row.day,
                    currency,
                    orders: count(row.orders, "number of orders")?,
                    revenue_minor: row.revenue,
                },
            );
        }
        let mut units = units
            .into_iter()
            .map(|row| {
                Ok(DayUnits {
                    date: row.day,
                    units: count(row.units, "number of units")?,
                })
            })
            .collect::<Result<Vec<_>, PortError>>()?;
        units.sort_by_key(|day| day.date);
        Ok(SalesFigures {
            sales: by_day.into_values().collect(),
            units,
            top_products: products
                .into_iter()
                .map(ProductUnitsRow::into_units)
                .collect::<Result<_, _>>()?,
        })
    }
}
