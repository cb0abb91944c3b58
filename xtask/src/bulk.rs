//! Bulk products and orders for `cargo xtask seed`, and the demo catalog.
//!
//! Rows are generated from the seed alone (see [`generate`]) and written straight to PostgreSQL,
//! bypassing the services: a million orders through the API would take hours. Each batch is one
//! `INSERT … SELECT * FROM unnest($1::uuid[], …)` statement (a handful of array binds, whatever the
//! batch size), and a few batches are in flight at once over separate connections. Every insert is
//! `ON CONFLICT DO NOTHING` and the rows are deterministic, so re-running with the same seed
//! inserts nothing twice.

mod generate;
pub mod rng;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Int2, Int4, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::urls;
use generate::{Catalog, CatalogProduct, DEMO_PRODUCTS, OrderItemRow, OrderRow, ProductRow};

/// Products per INSERT statement.
const PRODUCT_BATCH: u64 = 5_000;
/// Orders per INSERT statement (with their lines, about three per order).
const ORDER_BATCH: u64 = 5_000;
/// Statements in flight at once, each on its own connection: enough to keep PostgreSQL busy while
/// the next batch is generated and sent, few enough not to thrash a small machine.
const WORKERS: usize = 3;

async fn connect(url: &str) -> anyhow::Result<AsyncPgConnection> {
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .with_context(|| format!("cannot connect to {}", urls::redacted(url)))?;
    // Seed data can be regenerated: no need to wait for each commit's WAL flush.
    diesel::sql_query("SET synchronous_commit TO off")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Creates the demo products whose SKU is not taken yet (an edited demo product is left as is).
pub async fn demo_products(url: &str) -> anyhow::Result<()> {
    let mut conn = connect(url).await?;
    let ids: Vec<Uuid> = DEMO_PRODUCTS.iter().map(|_| Uuid::now_v7()).collect();
    let created = diesel::sql_query(
        "WITH p AS (\
           INSERT INTO products (id, sku, name, description, price_minor, currency, stock) \
           SELECT id, sku, name, description, price_minor, 'USD', stock \
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int4[]) \
             AS d(id, sku, name, description, price_minor, stock) \
           ON CONFLICT (sku) DO NOTHING RETURNING 1) \
         SELECT count(*) AS n FROM p",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Array<Text>, _>(DEMO_PRODUCTS.iter().map(|d| d.sku).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(DEMO_PRODUCTS.iter().map(|d| d.name).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(
        DEMO_PRODUCTS
            .iter()
            .map(|d| d.description)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<BigInt>, _>(
        DEMO_PRODUCTS
            .iter()
            .map(|d| d.price_minor)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Int4>, _>(DEMO_PRODUCTS.iter().map(|d| d.stock).collect::<Vec<_>>())
    .get_result::<Count>(&mut conn)
    .await
    .context("creating the demo products")?;
    println!(
        "demo: {} products ({} created, {} already present)",
        DEMO_PRODUCTS.len(),
        created.n,
        DEMO_PRODUCTS.len() as i64 - created.n
    );
    Ok(())
}

/// One batch of rows to insert.
trait Batch: Send + 'static {
    /// Rows of each table the batch holds, for the progress bars.
    fn rows(&self) -> [u64; 2];
    /// Inserts the batch; returns the rows of each table actually inserted.
    fn insert(
        self,
        conn: &mut AsyncPgConnection,
    ) -> impl Future<Output = anyhow::Result<[u64; 2]>> + Send;
}

/// Generates batches on a blocking thread and inserts them over [`WORKERS`] connections, advancing
/// `bars` (one per table) as they land. Returns the rows of each table inserted.
async fn pump<B, G>(
    url: &str,
    batches: u64,
    generate: G,
    bars: [Option<ProgressBar>; 2],
) -> anyhow::Result<[u64; 2]>
where
    B: Batch,
    G: Fn(u64) -> B + Send + 'static,
{
    let (sender, receiver) = mpsc::channel::<B>(WORKERS);
    let producer = tokio::task::spawn_blocking(move || {
        for batch in 0..batches {
            // The receiver is gone when a worker failed: its error is the one to report.
            if sender.blocking_send(generate(batch)).is_err() {
                break;
            }
        }
    });
    let receiver = Arc::new(Mutex::new(receiver));
    let bars = Arc::new(bars);
    let mut workers = JoinSet::new();
    for _ in 0..WORKERS {
        let mut conn = connect(url).await?;
        let receiver = receiver.clone();
        let bars = bars.clone();
        workers.spawn(async move {
            let mut inserted = [0u64; 2];
            loop {
                let Some(batch) = receiver.lock().await.recv().await else {
                    return anyhow::Ok(inserted);
                };
                let rows = batch.rows();
                let done = batch.insert(&mut conn).await?;
                for table in 0..2 {
                    inserted[table] += done[table];
                    if let Some(bar) = &bars[table] {
                        bar.inc(rows[table]);
                    }
                }
            }
        });
    }
    let mut inserted = [0u64; 2];
    while let Some(joined) = workers.join_next().await {
        let done = joined.context("an insert task panicked")??;
        inserted[0] += done[0];
        inserted[1] += done[1];
    }
    producer.await.context("the row generator panicked")?;
    Ok(inserted)
}

fn bar(progress: &MultiProgress, len: Option<u64>, table: &str) -> anyhow::Result<ProgressBar> {
    let bar = match len {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(&format!(
                "{{bar:40}} {{pos}}/{{len}} {table} ({{per_sec}}, eta {{eta}})"
            ))?
            .progress_chars("=> "),
        ),
        None => ProgressBar::no_length().with_style(ProgressStyle::with_template(&format!(
            "{{spinner}} {{pos}} {table} ({{per_sec}})"
        ))?),
    };
    let bar = progress.add(bar);
    bar.enable_steady_tick(Duration::from_millis(200));
    Ok(bar)
}

/// A batch of products.
struct Products(Vec<ProductRow>);

impl Batch for Products {
    fn rows(&self) -> [u64; 2] {
        [self.0.len() as u64, 0]
    }

    async fn insert(self, conn: &mut AsyncPgConnection) -> anyhow::Result<[u64; 2]> {
        let rows = self.0;
        let inserted = diesel::sql_query(
            "WITH p AS (\
               INSERT INTO products \
                 (id, sku, name, description, price_minor, currency, stock, active, created_at, updated_at) \
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int8[], \
                 $6::text[], $7::int4[], $8::bool[], $9::timestamptz[], $10::timestamptz[]) \
               ON CONFLICT DO NOTHING RETURNING 1) \
             SELECT count(*) AS n FROM p",
        )
        .bind::<Array<SqlUuid>, _>(rows.iter().map(|p| p.id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|p| p.sku.clone()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|p| p.name.clone()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|p| p.description.clone()).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(rows.iter().map(|p| p.price_minor).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|p| p.currency).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(rows.iter().map(|p| p.stock).collect::<Vec<_>>())
        .bind::<Array<Bool>, _>(rows.iter().map(|p| p.active).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(rows.iter().map(|p| p.created_at).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(rows.iter().map(|p| p.updated_at).collect::<Vec<_>>())
        .get_result::<Count>(conn)
        .await
        .context("inserting products")?;
        Ok([inserted.n as u64, 0])
    }
}

/// Inserts products 1..=`count` of the data set of `seed`.
pub async fn products(url: &str, seed: u64, count: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let progress = MultiProgress::new();
    let bar = bar(&progress, Some(count), "products")?;
    let batches = count.div_ceil(PRODUCT_BATCH);
    let generate = move |batch: u64| {
        let first = batch * PRODUCT_BATCH + 1;
        let last = (first + PRODUCT_BATCH - 1).min(count);
        Products((first..=last).map(|i| generate::product(seed, i)).collect())
    };
    let [inserted, _] = pump(url, batches, generate, [Some(bar.clone()), None]).await?;
    bar.finish_and_clear();
    println!(
        "products: {inserted} created, {} skipped as already present ({:.1} s)",
        count - inserted,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A batch of orders and their lines.
struct Orders {
    orders: Vec<OrderRow>,
    items: Vec<OrderItemRow>,
}

/// Order lines as the columns the INSERT binds, the strings moved rather than copied.
struct ItemColumns {
    order_id: Vec<Uuid>,
    position: Vec<i16>,
    product_id: Vec<Uuid>,
    sku: Vec<String>,
    name: Vec<String>,
    unit_price_minor: Vec<i64>,
    quantity: Vec<i32>,
    line_total_minor: Vec<i64>,
}

impl ItemColumns {
    fn with_capacity(n: usize) -> Self {
        Self {
            order_id: Vec::with_capacity(n),
            position: Vec::with_capacity(n),
            product_id: Vec::with_capacity(n),
            sku: Vec::with_capacity(n),
            name: Vec::with_capacity(n),
            unit_price_minor: Vec::with_capacity(n),
            quantity: Vec::with_capacity(n),
            line_total_minor: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, item: OrderItemRow) {
        self.order_id.push(item.order_id);
        self.position.push(item.position);
        self.product_id.push(item.product_id);
        self.sku.push(item.sku);
        self.name.push(item.name);
        self.unit_price_minor.push(item.unit_price_minor);
        self.quantity.push(item.quantity);
        self.line_total_minor.push(item.line_total_minor);
    }
}

#[derive(QueryableByName)]
struct OrderCounts {
    #[diesel(sql_type = BigInt)]
    orders: i64,
    #[diesel(sql_type = BigInt)]
    items: i64,
}

impl Batch for Orders {
    fn rows(&self) -> [u64; 2] {
        [self.orders.len() as u64, self.items.len() as u64]
    }

    async fn insert(self, conn: &mut AsyncPgConnection) -> anyhow::Result<[u64; 2]> {
        let Orders { orders, items } = self;
        let mut lines = ItemColumns::with_capacity(items.len());
        for item in items {
            lines.push(item);
        }
        let counts = diesel::sql_query(
            "WITH o AS (\
               INSERT INTO orders (id, user_id, status, currency, total_minor, created_at, updated_at) \
               SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int8[], \
                 $6::timestamptz[], $7::timestamptz[]) \
               ON CONFLICT (id) DO NOTHING RETURNING id), \
             i AS (\
               INSERT INTO order_items (order_id, position, product_id, sku, name, \
                 unit_price_minor, quantity, line_total_minor) \
               SELECT l.* FROM unnest($8::uuid[], $9::int2[], $10::uuid[], $11::text[], $12::text[], \
                 $13::int8[], $14::int4[], $15::int8[]) \
                 AS l(order_id, position, product_id, sku, name, unit_price_minor, quantity, line_total_minor) \
               WHERE l.order_id IN (SELECT id FROM o) \
               RETURNING 1) \
             SELECT (SELECT count(*) FROM o) AS orders, (SELECT count(*) FROM i) AS items",
        )
        .bind::<Array<SqlUuid>, _>(orders.iter().map(|o| o.id).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(orders.iter().map(|o| o.user_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(orders.iter().map(|o| o.status).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(orders.iter().map(|o| o.currency.clone()).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(orders.iter().map(|o| o.total_minor).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(orders.iter().map(|o| o.created_at).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(orders.iter().map(|o| o.updated_at).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(lines.order_id)
        .bind::<Array<Int2>, _>(lines.position)
        .bind::<Array<SqlUuid>, _>(lines.product_id)
        .bind::<Array<Text>, _>(lines.sku)
        .bind::<Array<Text>, _>(lines.name)
        .bind::<Array<BigInt>, _>(lines.unit_price_minor)
        .bind::<Array<Int4>, _>(lines.quantity)
        .bind::<Array<BigInt>, _>(lines.line_total_minor)
        .get_result::<OrderCounts>(conn)
        .await
        .context("inserting orders")?;
        Ok([counts.orders as u64, counts.items as u64])
    }
}

#[derive(QueryableByName)]
struct UserId {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

#[derive(QueryableByName)]
struct ProductForOrders {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    sku: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = BigInt)]
    price_minor: i64,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

/// Inserts orders 1..=`count` of the data set of `seed`, placed by the users and made of the
/// products already in the database (stock is left alone: these are past orders).
pub async fn orders(url: &str, seed: u64, count: u64) -> anyhow::Result<()> {
    let mut conn = connect(url).await?;
    // Both ordered, so that the same database and seed give the same orders.
    let users: Vec<Uuid> = diesel::sql_query("SELECT id FROM users ORDER BY id")
        .load::<UserId>(&mut conn)
        .await
        .context("reading the users")?
        .into_iter()
        .map(|u| u.id)
        .collect();
    if users.is_empty() {
        bail!("orders need users: there are none (seed the demo accounts, or add --users N)");
    }
    let catalog = Catalog::new(
        diesel::sql_query(
            "SELECT id, sku, name, price_minor, currency, created_at FROM products \
             ORDER BY created_at, id",
        )
        .load::<ProductForOrders>(&mut conn)
        .await
        .context("reading the products")?
        .into_iter()
        .map(|p| CatalogProduct {
            id: p.id,
            sku: p.sku,
            name: p.name,
            price_minor: p.price_minor,
            currency: p.currency,
            created_ms: p.created_at.timestamp_millis(),
        })
        .collect(),
    );
    drop(conn);
    if catalog.is_empty() {
        bail!("orders need products: there are none (add --products N)");
    }
    println!(
        "orders: from {} user(s) and {} product(s)",
        users.len(),
        catalog.len()
    );

    let started = Instant::now();
    let progress = MultiProgress::new();
    let order_bar = bar(&progress, Some(count), "orders")?;
    let item_bar = bar(&progress, None, "order_items")?;
    let batches = count.div_ceil(ORDER_BATCH);
    let generate = move |batch: u64| {
        let first = batch * ORDER_BATCH + 1;
        let last = (first + ORDER_BATCH - 1).min(count);
        let mut items = Vec::with_capacity(ORDER_BATCH as usize * generate::MAX_LINES);
        let orders = (first..=last)
            .map(|i| generate::order(seed, i, &users, &catalog, &mut items))
            .collect();
        Orders { orders, items }
    };
    let [orders, items] = pump(
        url,
        batches,
        generate,
        [Some(order_bar.clone()), Some(item_bar.clone())],
    )
    .await?;
    order_bar.finish_and_clear();
    item_bar.finish_and_clear();
    println!(
        "orders: {orders} created with {items} lines, {} skipped as already present ({:.1} s)",
        count - orders,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Vacuums and analyzes the seeded tables after a bulk load. ANALYZE gives the planner statistics
/// for the tables as they are now rather than as they were (empty); VACUUM sets the visibility map
/// and, above all, merges the trigram GIN indexes' pending lists: until then every `q` search scans
/// the thousands of entries a bulk insert left pending (milliseconds instead of microseconds).
pub async fn vacuum_analyze(url: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut conn = connect(url).await?;
    diesel::sql_query("VACUUM (ANALYZE) products, orders, order_items")
        .execute(&mut conn)
        .await
        .context("vacuuming and analyzing the seeded tables")?;
    println!(
        "vacuum, analyze: products, orders, order_items ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
