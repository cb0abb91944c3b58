//! [`OrderRepository`] on the `orders`, `order_items` and `idempotency_keys` tables.
//!
//! Locking discipline, which is what keeps these transactions free of deadlocks: placing an order
//! locks its products in id order; a status change locks the order row first and then its
//! products in id order. No transaction waits for an order row while holding a product lock.

use std::collections::HashMap;

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Int2, Int4, Int8, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use strata_domain::{
    Currency, Money, Order, OrderId, OrderLine, OrderStatus, Price, ProductId, ProductName,
    Quantity, Sku, Stock, StockedProduct, UserId, price_order,
};
use strata_ports::{
    NewOrder, OrderFilter, OrderPageKey, OrderRepository, PlaceOrderError, Placement, PortError,
    TransitionError,
};
use uuid::Uuid;

use crate::database::{Abort, Database, Transaction, keyset};
use crate::idempotency::{KeyClaim, claim_key, store_response};
use crate::prepared::{LimitLiteral as _, PrepareOnce as _};
use crate::schema::{order_items, orders, products};

#[derive(Queryable, QueryableByName, Selectable)]
#[diesel(table_name = orders, check_for_backend(diesel::pg::Pg))]
struct OrderRow {
    id: Uuid,
    user_id: Uuid,
    status: String,
    currency: String,
    total_minor: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = order_items, check_for_backend(diesel::pg::Pg))]
struct OrderItemRow {
    order_id: Uuid,
    position: i16,
    product_id: Uuid,
    sku: String,
    name: String,
    unit_price_minor: i64,
    quantity: i32,
    line_total_minor: i64,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = products, check_for_backend(diesel::pg::Pg))]
struct StockedRow {
    id: Uuid,
    sku: String,
    name: String,
    price_minor: i64,
    currency: String,
    stock: i32,
    active: bool,
}

fn corrupt(table: &str, id: Uuid, what: &str) -> PortError {
    PortError::unexpected(anyhow!("{table} row {id} holds an invalid {what}"))
}

impl StockedRow {
    fn into_stocked(self) -> Result<StockedProduct, PortError> {
        let corrupt = |what: &str| corrupt("products", self.id, what);
        let currency = Currency::parse(&self.currency).map_err(|_| corrupt("currency"))?;
        Ok(StockedProduct {
            id: ProductId(self.id),
            sku: Sku::parse(&self.sku).map_err(|_| corrupt("sku"))?,
            name: ProductName::parse(&self.name).map_err(|_| corrupt("name"))?,
            price: Price::new(self.price_minor, currency).map_err(|_| corrupt("price"))?,
            stock: Stock::new(i64::from(self.stock)).map_err(|_| corrupt("stock"))?,
            active: self.active,
        })
    }
}

impl OrderItemRow {
    fn new(order_id: OrderId, position: usize, line: &OrderLine) -> Result<Self, PortError> {
        Ok(Self {
            order_id: order_id.0,
            position: i16::try_from(position).map_err(PortError::unexpected)?,
            product_id: line.product_id.0,
            sku: line.sku.as_str().to_owned(),
            name: line.name.as_str().to_owned(),
            unit_price_minor: line.unit_price.amount_minor,
            quantity: i32::from(line.quantity.get()),
            line_total_minor: line.line_total.amount_minor,
        })
    }

    fn into_line(self, currency: Currency) -> Result<OrderLine, PortError> {
        let corrupt = |what: &str| corrupt("order_items", self.order_id, what);
        Ok(OrderLine {
            product_id: ProductId(self.product_id),
            sku: Sku::parse(&self.sku).map_err(|_| corrupt("sku"))?,
            name: ProductName::parse(&self.name).map_err(|_| corrupt("name"))?,
            unit_price: Money::new(self.unit_price_minor, currency),
            quantity: Quantity::new(i64::from(self.quantity)).map_err(|_| corrupt("quantity"))?,
            line_total: Money::new(self.line_total_minor, currency),
        })
    }
}

impl OrderRow {
    fn into_order(self, items: Vec<OrderItemRow>) -> Result<Order, PortError> {
        let corrupt = |what: &str| corrupt("orders", self.id, what);
        let currency = Currency::parse(&self.currency).map_err(|_| corrupt("currency"))?;
        let status = OrderStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?;
        let lines = items
            .into_iter()
            .map(|item| item.into_line(currency))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Order {
            id: OrderId(self.id),
            user_id: UserId(self.user_id),
            status,
            lines,
            total: Money::new(self.total_minor, currency),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Orders in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgOrderRepository {
    db: Database,
}

impl PgOrderRepository {
    /// A repository on `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// The placement's writes in one statement, one round trip instead of three: the new stock levels
/// (`$1`, `$2`), the order (`$4`…`$8`, at `$3`) and its lines (`$9`…`$15`, one array per column).
/// The lines' foreign key is checked at the end of the statement, when the order row exists.
const PLACE_SQL: &str = "WITH stock AS (\
        UPDATE products SET stock = v.stock, updated_at = $3 \
        FROM unnest($1::uuid[], $2::int4[]) AS v(id, stock) WHERE products.id = v.id\
    ), lines AS (\
        INSERT INTO order_items (order_id, position, product_id, sku, name, unit_price_minor, \
            quantity, line_total_minor) \
        SELECT $4, l.position, l.product_id, l.sku, l.name, l.unit_price_minor, l.quantity, \
            l.line_total_minor \
        FROM unnest($9::int2[], $10::uuid[], $11::text[], $12::text[], $13::int8[], \
            $14::int4[], $15::int8[]) \
            AS l(position, product_id, sku, name, unit_price_minor, quantity, line_total_minor)\
    ) \
    INSERT INTO orders (id, user_id, status, currency, total_minor, created_at, updated_at) \
    VALUES ($4, $5, $6, $7, $8, $3, $3) \
    RETURNING id, user_id, status, currency, total_minor, created_at, updated_at";

/// For the rest of a placement's transaction, plans made once per connection. PostgreSQL would
/// otherwise plan the lock and the writes afresh on every execution: estimated for an array of
/// unknown length their generic plans never look cheaper than the custom ones, though they are
/// the same plans (a primary-key probe per product, inserts). The planning was ≈ a tenth of
/// `create_order`'s throughput.
const GENERIC_PLANS: &str = "SET LOCAL plan_cache_mode = force_generic_plan";

/// The rest of [`OrderRepository::place`], inside its transaction.
async fn place_in(
    conn: &mut AsyncPgConnection,
    order: &NewOrder,
) -> Result<Placement, Abort<PlaceOrderError>> {
    let now = order.created_at;
    if let Some(claim) = &order.idempotency {
        let decode = serde_json::from_value::<Order>;
        match claim_key(conn, order.user_id, claim, now, decode).await? {
            KeyClaim::Fresh => {}
            KeyClaim::Replay(order) => return Ok(Placement::Replayed(order)),
            KeyClaim::Reused => return Err(Abort::Refused(PlaceOrderError::KeyReused)),
        }
    }

    let ids: Vec<Uuid> = order
        .request
        .lock_order()
        .into_iter()
        .map(|id| id.0)
        .collect();
    // Always in id order, so two orders sharing products queue instead of deadlocking. Sent in
    // one write with the plan-cache setting, which PostgreSQL applies before planning it.
    let shared: &AsyncPgConnection = conn;
    let (_, stocked) = tokio::try_join!(
        diesel::sql_query(GENERIC_PLANS)
            .prepared()
            .execute(&mut &*shared),
        products::table
            .filter(products::id.eq_any(&ids))
            .order(products::id.asc())
            .for_update()
            .select(StockedRow::as_select())
            .load::<StockedRow>(&mut &*shared),
    )?;
    let stocked = stocked
        .into_iter()
        .map(StockedRow::into_stocked)
        .collect::<Result<Vec<_>, _>>()
        .map_err(Abort::port)?;
    let priced = price_order(&order.request, &stocked)
        .map_err(|rejection| Abort::Refused(PlaceOrderError::Rejected(rejection)))?;

    let (stock_ids, stock_levels): (Vec<Uuid>, Vec<i32>) = priced
        .new_stock
        .iter()
        .map(|(id, stock)| i32::try_from(stock.get()).map(|level| (id.0, level)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| Abort::port(PortError::unexpected(error)))?
        .into_iter()
        .unzip();
    let items = priced
        .lines
        .iter()
        .enumerate()
        .map(|(position, line)| OrderItemRow::new(order.id, position, line))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Abort::port)?;
    // The stored row is what a later read returns (timestamps at the database's precision), so
    // it is also what this call and any replay return.
    let stored: OrderRow = diesel::sql_query(PLACE_SQL)
        .bind::<Array<SqlUuid>, _>(&stock_ids)
        .bind::<Array<Int4>, _>(&stock_levels)
        .bind::<Timestamptz, _>(now)
        .bind::<SqlUuid, _>(order.id.0)
        .bind::<SqlUuid, _>(order.user_id.0)
        .bind::<Text, _>(OrderStatus::Placed.as_str())
        .bind::<Text, _>(priced.total.currency.as_str())
        .bind::<Int8, _>(priced.total.amount_minor)
        .bind::<Array<Int2>, _>(items.iter().map(|i| i.position).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(items.iter().map(|i| i.product_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(items.iter().map(|i| i.sku.as_str()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>())
        .bind::<Array<Int8>, _>(items.iter().map(|i| i.unit_price_minor).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(items.iter().map(|i| i.quantity).collect::<Vec<_>>())
        .bind::<Array<Int8>, _>(items.iter().map(|i| i.line_total_minor).collect::<Vec<_>>())
        .prepared()
        .get_result(conn)
        .await?;
    let placed = stored.into_order(items).map_err(Abort::port)?;

    if let Some(claim) = &order.idempotency {
        let response = serde_json::to_value(&placed);
        store_response(conn, order.user_id, claim, order.id.0, response).await?;
    }
    Ok(Placement::Placed(placed))
}

/// The rest of [`OrderRepository::transition`], inside its transaction.
async fn transition_in(
    conn: &mut AsyncPgConnection,
    id: OrderId,
    owner: Option<UserId>,
    to: OrderStatus,
    now: DateTime<Utc>,
) -> Result<Order, Abort<TransitionError>> {
    // The row lock serialises status changes of one order: a second cancel waits, then sees
    // `cancelled` and is refused, so the restock below happens once.
    let current = orders::table
        .find(id.0)
        .select((orders::user_id, orders::status))
        .for_update()
        .first::<(Uuid, String)>(conn)
        .await
        .optional()?;
    let Some((user_id, status)) = current else {
        return Err(Abort::Refused(TransitionError::NotFound));
    };
    if owner.is_some_and(|owner| owner.0 != user_id) {
        return Err(Abort::Refused(TransitionError::NotFound));
    }
    let status = OrderStatus::parse(&status)
        .ok_or_else(|| Abort::port(corrupt("orders", id.0, "status")))?;
    let next = status
        .transition(to)
        .map_err(|invalid| Abort::Refused(TransitionError::Invalid(invalid)))?;
    let updated = diesel::update(orders::table.find(id.0))
        .set((orders::status.eq(next.as_str()), orders::updated_at.eq(now)))
        .returning(OrderRow::as_returning())
        .prepared()
        .get_result(conn)
        .await?;

    if next == OrderStatus::Cancelled {
        let locked = diesel::sql_query(
            "SELECT id FROM products \
             WHERE id IN (SELECT product_id FROM order_items WHERE order_id = $1) \
             ORDER BY id FOR UPDATE",
        )
        .bind::<SqlUuid, _>(id.0)
        .prepared()
        .execute(conn)
        .await?;
        // The bound keeps a restock from pushing a product past the stock maximum, which would
        // make the row unreadable; a shortfall in the count rolls the cancellation back.
        let restocked = diesel::sql_query(
            "UPDATE products p SET stock = p.stock + i.quantity, updated_at = $2 \
             FROM order_items i \
             WHERE i.order_id = $1 AND p.id = i.product_id \
             AND p.stock::bigint + i.quantity <= $3",
        )
        .bind::<SqlUuid, _>(id.0)
        .bind::<Timestamptz, _>(now)
        .bind::<Int8, _>(i64::from(Stock::MAX))
        .prepared()
        .execute(conn)
        .await?;
        if restocked != locked {
            return Err(Abort::port(PortError::unexpected(anyhow!(
                "cancelling order {id} would push {} product(s) past the stock maximum",
                locked.saturating_sub(restocked)
            ))));
        }
    }

    let items = order_items::table
        .filter(order_items::order_id.eq(id.0))
        .order(order_items::position.asc())
        .select(OrderItemRow::as_select())
        .load(conn)
        .await?;
    updated.into_order(items).map_err(Abort::port)
}

#[async_trait]
impl OrderRepository for PgOrderRepository {
    async fn place(&self, order: &NewOrder) -> Result<Placement, PlaceOrderError> {
        self.db
            .in_transaction(Transaction::Write, async |conn| place_in(conn, order).await)
            .await
    }

    async fn find(&self, id: OrderId) -> Result<Option<Order>, PortError> {
        let mut conn = self.db.connection().await?;
        let found = self
            .db
            .timed(async {
                let Some(row) = orders::table
                    .find(id.0)
                    .select(OrderRow::as_select())
                    .first(&mut conn)
                    .await
                    .optional()?
                else {
                    return Ok(None);
                };
                // Lines are written with their order and never change, so a second statement
                // outside a transaction reads a consistent order.
                let items = order_items::table
                    .filter(order_items::order_id.eq(id.0))
                    .order(order_items::position.asc())
                    .select(OrderItemRow::as_select())
                    .load(&mut conn)
                    .await?;
                Ok(Some((row, items)))
            })
            .await?;
        found.map(|(row, items)| row.into_order(items)).transpose()
    }

    async fn list(
        &self,
        filter: &OrderFilter,
        after: Option<OrderPageKey>,
        limit: usize,
    ) -> Result<Vec<Order>, PortError> {
        let mut query = orders::table
            .select(OrderRow::as_select())
            .order((orders::created_at.desc(), orders::id.desc()))
            .into_boxed();
        if let Some(user_id) = filter.user_id {
            query = query.filter(orders::user_id.eq(user_id.0));
        }
        if let Some(status) = filter.status {
            query = query.filter(orders::status.eq(status.as_str()));
        }
        if let Some(key) = after {
            // Served by (created_at, id), or (user_id, created_at, id) for one user's orders.
            query = query.filter(keyset!(
                "created_at",
                before,
                Timestamptz,
                key.created_at,
                key.id.0
            ));
        }
        // Filters present × first page or not × the rounded limit: a few texts, each prepared once.
        let query = query.limit_literal(limit).prepared();
        let mut conn = self.db.connection().await?;
        let (rows, items) = self
            .db
            .timed(async {
                let mut rows: Vec<OrderRow> = query.load(&mut conn).await?;
                rows.truncate(limit);
                if rows.is_empty() {
                    return Ok((rows, Vec::new()));
                }
                let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
                // Every line of the page in one statement, however many orders it holds.
                let items = order_items::table
                    .filter(order_items::order_id.eq_any(ids))
                    .order((order_items::order_id.asc(), order_items::position.asc()))
                    .select(OrderItemRow::as_select())
                    .load(&mut conn)
                    .await?;
                Ok((rows, items))
            })
            .await?;
        let mut lines: HashMap<Uuid, Vec<OrderItemRow>> = HashMap::with_capacity(rows.len());
        for item in items {
            lines.entry(item.order_id).or_default().push(item);
        }
        rows.into_iter()
            .map(|row| {
                let items = lines.remove(&row.id).unwrap_or_default();
                row.into_order(items)
            })
            .collect()
    }

    async fn transition(
        &self,
        id: OrderId,
        owner: Option<UserId>,
        to: OrderStatus,
        now: DateTime<Utc>,
    ) -> Result<Order, TransitionError> {
        self.db
            .in_transaction(Transaction::Write, async |conn| {
                transition_in(conn, id, owner, to, now).await
            })
            .await
    }
}
