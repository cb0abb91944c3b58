//! [`ProductRepository`] on the `products` table.

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use strata_domain::{Currency, Description, Price, Product, ProductId, ProductName, Sku, Stock};
use strata_ports::{
    PortError, ProductChanges, ProductPageKey, ProductQuery, ProductRepository, ProductSort,
    ProductWriteError, SortDirection, StockAdjustError,
};
use uuid::Uuid;

use crate::database::{Database, keyset, violates};
use crate::prepared::{LimitLiteral as _, PrepareOnce as _};
use crate::schema::products;

const SKU_UNIQUE: &str = "products_sku_key";

/// How many times a refused stock adjustment is retried when the re-read row says it would now
/// succeed (the stock changed between the two statements).
const ADJUST_ATTEMPTS: usize = 3;

#[derive(Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = products, check_for_backend(diesel::pg::Pg))]
struct ProductRow {
    id: Uuid,
    sku: String,
    name: String,
    description: String,
    price_minor: i64,
    currency: String,
    stock: i32,
    active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl ProductRow {
    fn from_product(product: &Product) -> Result<Self, PortError> {
        let price = product.price.money();
        Ok(Self {
            id: product.id.0,
            sku: product.sku.as_str().to_owned(),
            name: product.name.as_str().to_owned(),
            description: product.description.as_str().to_owned(),
            price_minor: price.amount_minor,
            currency: price.currency.as_str().to_owned(),
            stock: i32::try_from(product.stock.get()).map_err(PortError::unexpected)?,
            active: product.active,
            created_at: product.created_at,
            updated_at: product.updated_at,
        })
    }

    fn into_product(self) -> Result<Product, PortError> {
        let corrupt = |what: &str| {
            PortError::unexpected(anyhow!("products row {} holds an invalid {what}", self.id))
        };
        let currency = Currency::parse(&self.currency).map_err(|_| corrupt("currency"))?;
        Ok(Product {
            id: ProductId(self.id),
            sku: Sku::parse(&self.sku).map_err(|_| corrupt("sku"))?,
            name: ProductName::parse(&self.name).map_err(|_| corrupt("name"))?,
            description: Description::parse(&self.description)
                .map_err(|_| corrupt("description"))?,
            price: Price::new(self.price_minor, currency).map_err(|_| corrupt("price"))?,
            stock: Stock::new(i64::from(self.stock)).map_err(|_| corrupt("stock"))?,
            active: self.active,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(AsChangeset)]
#[diesel(table_name = products)]
struct ProductChangeset<'a> {
    sku: Option<&'a str>,
    name: Option<&'a str>,
    description: Option<&'a str>,
    price_minor: Option<i64>,
    currency: Option<&'a str>,
    active: Option<bool>,
    updated_at: DateTime<Utc>,
}

/// Products in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgProductRepository {
    db: Database,
}

impl PgProductRepository {
    /// A repository on `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    async fn find_on(
        &self,
        conn: &mut AsyncPgConnection,
        id: ProductId,
    ) -> Result<Option<Product>, PortError> {
        let row = self
            .db
            .timed(async {
                products::table
                    .find(id.0)
                    .select(ProductRow::as_select())
                    .first(conn)
                    .await
                    .optional()
            })
            .await?;
        row.map(ProductRow::into_product).transpose()
    }
}

/// `%q%` for ILIKE, with the pattern characters of `q` escaped so the user's text is literal.
fn contains_pattern(q: &str) -> String {
    let mut pattern = String::with_capacity(q.len() + 2);
    pattern.push('%');
    for c in q.chars() {
        // Backslash is PostgreSQL's default LIKE escape character.
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[async_trait]
impl ProductRepository for PgProductRepository {
    async fn create(&self, product: &Product) -> Result<Product, ProductWriteError> {
        let row = ProductRow::from_product(product)?;
        let mut conn = self.db.connection().await?;
        let inserted = self
            .db
            .timed(async {
                match diesel::insert_into(products::table)
                    .values(&row)
                    .returning(ProductRow::as_returning())
                    .prepared()
                    .get_result(&mut conn)
                    .await
                {
                    Ok(row) => Ok(Some(row)),
                    Err(error) if violates(&error, SKU_UNIQUE) => Ok(None),
                    Err(error) => Err(error),
                }
            })
            .await?;
        inserted
            .ok_or(ProductWriteError::SkuTaken)?
            .into_product()
            .map_err(Into::into)
    }

    async fn find_by_id(&self, id: ProductId) -> Result<Option<Product>, PortError> {
        let mut conn = self.db.connection().await?;
        self.find_on(&mut conn, id).await
    }

    async fn update(
        &self,
        id: ProductId,
        changes: &ProductChanges,
        now: DateTime<Utc>,
    ) -> Result<Product, ProductWriteError> {
        let mut conn = self.db.connection().await?;
        if changes.is_empty() {
            // Nothing changes, so updated_at must not move either.
            return self
                .find_on(&mut conn, id)
                .await?
                .ok_or(ProductWriteError::NotFound);
        }
        let price = changes.price.map(Price::money);
        let changeset = ProductChangeset {
            sku: changes.sku.as_ref().map(Sku::as_str),
            name: changes.name.as_ref().map(ProductName::as_str),
            description: changes.description.as_ref().map(Description::as_str),
            price_minor: price.map(|p| p.amount_minor),
            currency: price.as_ref().map(|p| p.currency.as_str()),
            active: changes.active,
            updated_at: now,
        };
        let updated = self
            .db
            .timed(async {
                match diesel::update(products::table.find(id.0))
                    .set(&changeset)
                    .returning(ProductRow::as_returning())
                    .prepared()
                    .get_result(&mut conn)
                    .await
                    .optional()
                {
                    Ok(row) => Ok(Ok(row)),
                    Err(error) if violates(&error, SKU_UNIQUE) => Ok(Err(())),
                    Err(error) => Err(error),
                }
            })
            .await?;
        match updated {
            Ok(Some(row)) => row.into_product().map_err(Into::into),
            Ok(None) => Err(ProductWriteError::NotFound),
            Err(()) => Err(ProductWriteError::SkuTaken),
        }
    }

    async fn adjust_stock(
        &self,
        id: ProductId,
        delta: i64,
        now: DateTime<Utc>,
    ) -> Result<Product, StockAdjustError> {
        // No delta beyond ±(MAX + 1) can ever succeed; clamping keeps `stock + delta` far from
        // bigint overflow without changing which adjustments the statement accepts.
        let bound = i64::from(Stock::MAX) + 1;
        let sql_delta = delta.clamp(-bound, bound);
        let mut conn = self.db.connection().await?;
        for _ in 0..ADJUST_ATTEMPTS {
            // One statement: the row lock it takes makes check-and-write atomic, and the CHECK
            // (stock >= 0) would catch a mistake here anyway.
            let adjusted = self
                .db
                .timed(async {
                    diesel::sql_query(
                        "UPDATE products SET stock = stock + $1, updated_at = $2 \
                         WHERE id = $3 AND stock::bigint + $1 BETWEEN 0 AND $4 \
                         RETURNING id, sku, name, description, price_minor, currency, stock, \
                         active, created_at, updated_at",
                    )
                    .bind::<BigInt, _>(sql_delta)
                    .bind::<Timestamptz, _>(now)
                    .bind::<SqlUuid, _>(id.0)
                    .bind::<BigInt, _>(i64::from(Stock::MAX))
                    .prepared()
                    .get_result::<ProductRow>(&mut conn)
                    .await
                    .optional()
                })
                .await?;
            if let Some(row) = adjusted {
                return row.into_product().map_err(Into::into);
            }
            let current = self
                .find_on(&mut conn, id)
                .await?
                .ok_or(StockAdjustError::NotFound)?;
            match current.stock.adjust(delta) {
                Err(refusal) => return Err(StockAdjustError::Refused(refusal)),
                // The stock moved between the two statements and would now allow it: try again.
                Ok(_) => continue,
            }
        }
        Err(PortError::unexpected(anyhow!(
            "stock of product {id} kept changing during {ADJUST_ATTEMPTS} adjustment attempts"
        ))
        .into())
    }

    async fn list(&self, query: &ProductQuery) -> Result<Vec<Product>, PortError> {
        let filter = &query.filter;
        let mut select = products::table.select(ProductRow::as_select()).into_boxed();
        if let Some(active) = filter.active {
            select = select.filter(products::active.eq(active));
        }
        if let Some(min) = filter.min_price {
            select = select.filter(products::price_minor.ge(min));
        }
        if let Some(max) = filter.max_price {
            select = select.filter(products::price_minor.le(max));
        }
        if let Some(currency) = filter.currency {
            select = select.filter(products::currency.eq(currency.as_str().to_owned()));
        }
        if let Some(q) = filter.q.as_deref() {
            let pattern = contains_pattern(q);
            select = select.filter(
                products::name
                    .ilike(pattern.clone())
                    .or(products::sku.ilike(pattern)),
            );
        }
        // Ids break ties in the sort's direction; a row comparison lets PostgreSQL seek straight
        // into the (created_at, id) or (price_minor, id) index, either way.

        select = match (query.sort, query.after) {
            (_, None) => select,
            (ProductSort::CreatedAt, Some(ProductPageKey::CreatedAt(at, id))) => {
                match query.direction {
                    SortDirection::Asc => {
                        select.filter(keyset!("created_at", after, Timestamptz, at, id.0))
                    }
                    SortDirection::Desc => {
                        select.filter(keyset!("created_at", before, Timestamptz, at, id.0))
                    }
                }
            }
            (ProductSort::Price, Some(ProductPageKey::Price(price, id))) => match query.direction {
                SortDirection::Asc => {
                    select.filter(keyset!("price_minor", after, BigInt, price, id.0))
                }
                SortDirection::Desc => {
                    select.filter(keyset!("price_minor", before, BigInt, price, id.0))
                }
            },
            (sort, Some(key)) => {
                return Err(PortError::unexpected(anyhow!(
                    "page key {key:?} does not match the sort {sort:?}"
                )));
            }
        };
        select = match (query.sort, query.direction) {
            (ProductSort::CreatedAt, SortDirection::Asc) => {
                select.order((products::created_at.asc(), products::id.asc()))
            }
            (ProductSort::CreatedAt, SortDirection::Desc) => {
                select.order((products::created_at.desc(), products::id.desc()))
            }
            (ProductSort::Price, SortDirection::Asc) => {
                select.order((products::price_minor.asc(), products::id.asc()))
            }
            (ProductSort::Price, SortDirection::Desc) => {
                select.order((products::price_minor.desc(), products::id.desc()))
            }
        };
        // Every shape of this select is one of a few hundred texts (filters present × sort ×
        // direction × first page or not × the rounded limit), so each is prepared once.
        let select = select.limit_literal(query.limit).prepared();
        let mut conn = self.db.connection().await?;
        let rows: Vec<ProductRow> = self.db.timed(select.load(&mut conn)).await?;
        rows.into_iter()
            .take(query.limit)
            .map(ProductRow::into_product)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn like_metacharacters_in_the_search_text_are_escaped() {
        assert_eq!(contains_pattern("lamp"), "%lamp%");
        assert_eq!(contains_pattern(r"50%_off\"), r"%50\%\_off\\%");
    }
}
