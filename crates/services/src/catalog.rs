//! The catalog: admin writes, the public list, and the cached product read.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strata_domain::{
    Currency, Description, FieldError, PageLimit, Price, Product, ProductId, ProductName, Sku,
    Stock, StockError, ValidationErrors, validate_stock_delta,
};
use strata_ports::{
    Cache, Clock, IdGenerator, PortError, ProductChanges, ProductFilter, ProductPageKey,
    ProductQuery, ProductRepository, ProductSort, ProductWriteError, SortDirection,
    StockAdjustError,
};
use uuid::Uuid;

use crate::auth::Principal;
use crate::cache_aside::{CacheAside, Representation};
use crate::cursor::CursorCodec;
use crate::failure::Failure;
use crate::local_cache::LocalCache;
use crate::users::Page;

/// What a caller of [`CatalogService`] must handle.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Some fields are invalid; every one is listed.
    #[error("invalid input")]
    Validation(#[from] ValidationErrors),
    /// The caller may not do this.
    #[error("forbidden")]
    Forbidden,
    /// No such product.
    #[error("product not found")]
    NotFound,
    /// Another product has this SKU.
    #[error("sku already in use")]
    SkuTaken,
    /// The adjustment would take the stock below zero; nothing changed.
    #[error("{requested} units requested, {available} available")]
    InsufficientStock {
        /// Units the adjustment would remove.
        requested: u64,
        /// Units on hand.
        available: u32,
    },
    /// The adjustment would take the stock above the maximum; nothing changed.
    #[error("stock would exceed {}", Stock::MAX)]
    StockTooLarge,
    /// Infrastructure failure.
    #[error(transparent)]
    Failure(#[from] Failure),
}

impl From<PortError> for CatalogError {
    fn from(error: PortError) -> Self {
        CatalogError::Failure(error.into())
    }
}

impl From<ProductWriteError> for CatalogError {
    fn from(error: ProductWriteError) -> Self {
        match error {
            ProductWriteError::SkuTaken => CatalogError::SkuTaken,
            ProductWriteError::NotFound => CatalogError::NotFound,
            ProductWriteError::Port(error) => error.into(),
        }
    }
}

impl From<StockAdjustError> for CatalogError {
    fn from(error: StockAdjustError) -> Self {
        match error {
            StockAdjustError::NotFound => CatalogError::NotFound,
            StockAdjustError::Refused(StockError::Insufficient {
                requested,
                available,
            }) => CatalogError::InsufficientStock {
                requested,
                available,
            },
            StockAdjustError::Refused(StockError::TooLarge) => CatalogError::StockTooLarge,
            StockAdjustError::Port(error) => error.into(),
        }
    }
}

/// A price as a caller sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceInput {
    /// Minor units.
    pub amount_minor: Option<i64>,
    /// ISO 4217 code.
    pub currency: Option<String>,
}

/// A new product as a caller sent it, validated by [`CatalogService::create`].
#[derive(Debug, Clone, Default)]
pub struct ProductDraft {
    /// Required.
    pub sku: Option<String>,
    /// Required.
    pub name: Option<String>,
    /// Optional, empty by default.
    pub description: Option<String>,
    /// Required.
    pub price: Option<PriceInput>,
    /// Optional, 0 by default.
    pub stock: Option<i64>,
    /// Optional, true by default.
    pub active: Option<bool>,
}

/// Changes as a caller sent them; absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct ProductPatch {
    /// New SKU.
    pub sku: Option<String>,
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New price (both parts required).
    pub price: Option<PriceInput>,
    /// Reactivate or deactivate.
    pub active: Option<bool>,
}

/// List parameters as a caller sent them (query strings).
#[derive(Debug, Clone, Default)]
pub struct ProductListParams {
    /// Substring of the name or SKU, case-insensitive.
    pub q: Option<String>,
    /// `true` (default) or `false`.
    pub active: Option<String>,
    /// Lowest price in minor units.
    pub min_price: Option<String>,
    /// Highest price in minor units.
    pub max_price: Option<String>,
    /// ISO 4217 code.
    pub currency: Option<String>,
    /// `created_at` (default) or `price`.
    pub sort: Option<String>,
    /// `asc` or `desc` (default).
    pub order: Option<String>,
    /// Position from the previous page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<String>,
}

/// The key of a product in the shared cache.
pub(crate) fn product_cache_key(id: ProductId) -> String {
    // Built on every product read: written directly, not through the formatting machinery
    // (`format!` was 5 % of a cached read's instructions).
    const PREFIX: &str = "product:";
    let mut key = String::with_capacity(PREFIX.len() + uuid::fmt::Hyphenated::LENGTH);
    key.push_str(PREFIX);
    key.push_str(id.0.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
    key
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "k")]
enum ProductsCursor {
    #[serde(rename = "c")]
    CreatedAt { at: DateTime<Utc>, id: Uuid },
    #[serde(rename = "p")]
    Price { minor: i64, id: Uuid },
}

/// The longest `q` accepted, in characters.
const MAX_QUERY_CHARS: usize = 100;
/// The shortest `q` accepted: a substring search needs a trigram to be served by an index
/// (docs/catalog-queries.md); a shorter one would scan the whole catalog.
const MIN_QUERY_CHARS: usize = 3;

/// The catalog use cases.
pub struct CatalogService {
    products: Arc<dyn ProductRepository>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    cursors: CursorCodec,
    cached: CacheAside<Product>,
}

impl CatalogService {
    /// Wires the service to its ports; products are cached for `ttl`.
    pub fn new(
        products: Arc<dyn ProductRepository>,
        cache: Arc<dyn Cache>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        cursors: CursorCodec,
        ttl: Duration,
    ) -> Self {
        Self {
            products,
            clock,
            ids,
            cursors,
            cached: CacheAside::new("product", cache, ttl),
        }
    }

    /// The same, serving products from `local` (this process's copies) before the shared cache.
    #[must_use]
    pub fn with_local_cache(mut self, local: Option<Arc<LocalCache>>) -> Self {
        self.cached = self.cached.with_local(local);
        self
    }

    /// Adds a product (admin only).
    pub async fn create(
        &self,
        principal: &Principal,
        draft: ProductDraft,
    ) -> Result<Product, CatalogError> {
        require_admin(principal)?;
        let mut errors = ValidationErrors::new();
        let sku = required(&mut errors, "sku", draft.sku.as_deref(), Sku::parse);
        let name = required(
            &mut errors,
            "name",
            draft.name.as_deref(),
            ProductName::parse,
        );
        let description = match draft.description.as_deref() {
            Some(raw) => errors.check("description", Description::parse(raw)),
            None => Some(Description::default()),
        };
        let price = match &draft.price {
            Some(input) => parse_price(&mut errors, input),
            None => {
                errors.push(FieldError::new("price", "required", "is required"));
                None
            }
        };
        let stock = errors.check("stock", Stock::new(draft.stock.unwrap_or(0)));
        errors.into_result()?;
        let (Some(sku), Some(name), Some(description), Some(price), Some(stock)) =
            (sku, name, description, price, stock)
        else {
            return Err(ValidationErrors::new().into());
        };
        let now = self.clock.now();
        let product = Product {
            id: ProductId(self.ids.new_id()),
            sku,
            name,
            description,
            price,
            stock,
            active: draft.active.unwrap_or(true),
            created_at: now,
            updated_at: now,
        };
        Ok(self.products.create(&product).await?)
    }

    /// One product by id, active or not, as `representation` renders it, cache-aside: the caches
    /// keep the rendering (see [`Representation`]), so a hit costs no parsing or rendering.
    pub async fn get_as<R: Representation<Product>>(
        &self,
        id: ProductId,
        representation: &R,
    ) -> Result<Arc<R::Output>, CatalogError> {
        self.cached
            .get_or_load_as(&product_cache_key(id), representation, || {
                self.products.find_by_id(id)
            })
            .await?
            .ok_or(CatalogError::NotFound)
    }

    /// Changes a product (admin only). Stock has its own operation.
    pub async fn update(
        &self,
        principal: &Principal,
        id: ProductId,
        patch: ProductPatch,
    ) -> Result<Product, CatalogError> {
        require_admin(principal)?;
        let mut errors = ValidationErrors::new();
        let changes = ProductChanges {
            sku: patch
                .sku
                .as_deref()
                .and_then(|raw| errors.check("sku", Sku::parse(raw))),
            name: patch
                .name
                .as_deref()
                .and_then(|raw| errors.check("name", ProductName::parse(raw))),
            description: patch
                .description
                .as_deref()
                .and_then(|raw| errors.check("description", Description::parse(raw))),
            price: patch
                .price
                .as_ref()
                .and_then(|input| parse_price(&mut errors, input)),
            active: patch.active,
        };
        if errors.is_empty() && changes.is_empty() {
            errors.push(FieldError::new(
                "body",
                "empty",
                "give at least one of sku, name, description, price, active",
            ));
        }
        errors.into_result()?;
        let product = self.products.update(id, &changes, self.clock.now()).await?;
        self.cached.invalidate(&[product_cache_key(id)]).await;
        Ok(product)
    }

    /// Soft-deletes a product: it stays readable (orders refer to it) but can no longer be
    /// ordered. Deleting an inactive product succeeds.
    pub async fn deactivate(
        &self,
        principal: &Principal,
        id: ProductId,
    ) -> Result<(), CatalogError> {
        require_admin(principal)?;
        let changes = ProductChanges {
            active: Some(false),
            ..ProductChanges::default()
        };
        self.products.update(id, &changes, self.clock.now()).await?;
        self.cached.invalidate(&[product_cache_key(id)]).await;
        Ok(())
    }

    /// Adds `delta` (negative to remove) to the stock atomically (admin only).
    pub async fn adjust_stock(
        &self,
        principal: &Principal,
        id: ProductId,
        delta: Option<i64>,
    ) -> Result<Product, CatalogError> {
        require_admin(principal)?;
        let delta = match delta {
            Some(delta) => validate_stock_delta(delta)
                .map_err(|e| ValidationErrors::single(e.for_field("delta")))?,
            None => {
                return Err(ValidationErrors::single(FieldError::new(
                    "delta",
                    "required",
                    "is required",
                ))
                .into());
            }
        };
        let product = self
            .products
            .adjust_stock(id, delta, self.clock.now())
            .await?;
        self.cached.invalidate(&[product_cache_key(id)]).await;
        Ok(product)
    }

    /// One page of the catalog: filtered, sorted, keyset-paginated. Lists are not cached.
    pub async fn list(&self, params: ProductListParams) -> Result<Page<Product>, CatalogError> {
        let mut errors = ValidationErrors::new();
        let limit = errors.check("limit", PageLimit::parse(params.limit.as_deref()));
        let q = match params.q.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(q) if q.chars().count() < MIN_QUERY_CHARS => {
                errors.push(FieldError::new(
                    "q",
                    "too_short",
                    format!("must be at least {MIN_QUERY_CHARS} characters"),
                ));
                None
            }
            Some(q) if q.chars().count() > MAX_QUERY_CHARS => {
                errors.push(FieldError::new(
                    "q",
                    "too_long",
                    format!("must be at most {MAX_QUERY_CHARS} characters"),
                ));
                None
            }
            Some(q) if q.chars().any(char::is_control) => {
                errors.push(FieldError::new(
                    "q",
                    "invalid_characters",
                    "must not contain control characters",
                ));
                None
            }
            Some(q) => Some(q.to_owned()),
        };
        let active = match params.active.as_deref() {
            None | Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => {
                errors.push(FieldError::new(
                    "active",
                    "invalid_boolean",
                    "must be true or false",
                ));
                None
            }
        };
        let min_price = parse_amount(&mut errors, "min_price", params.min_price.as_deref());
        let max_price = parse_amount(&mut errors, "max_price", params.max_price.as_deref());
        if let (Some(Some(min)), Some(Some(max))) = (min_price, max_price)
            && min > max
        {
            errors.push(FieldError::new(
                "max_price",
                "out_of_range",
                "must not be below min_price",
            ));
        }
        let currency = match params.currency.as_deref() {
            None => Some(None),
            Some(raw) => errors.check("currency", Currency::parse(raw).map(Some)),
        };
        let sort = match params.sort.as_deref() {
            None | Some("created_at") => Some(ProductSort::CreatedAt),
            Some("price") => Some(ProductSort::Price),
            Some(_) => {
                errors.push(FieldError::new(
                    "sort",
                    "invalid_choice",
                    "must be created_at or price",
                ));
                None
            }
        };
        let direction = match params.order.as_deref() {
            None | Some("desc") => Some(SortDirection::Desc),
            Some("asc") => Some(SortDirection::Asc),
            Some(_) => {
                errors.push(FieldError::new(
                    "order",
                    "invalid_choice",
                    "must be asc or desc",
                ));
                None
            }
        };
        let (Some(limit), Some(active), Some(min_price), Some(max_price), Some(currency)) =
            (limit, active, min_price, max_price, currency)
        else {
            return Err(errors.into());
        };
        let (Some(sort), Some(direction)) = (sort, direction) else {
            return Err(errors.into());
        };
        let filter = ProductFilter {
            q,
            active: Some(active),
            min_price,
            max_price,
            currency,
        };
        let scope = list_scope(&filter, sort, direction);
        let after = match params.cursor.as_deref() {
            None => None,
            Some(raw) => match self.cursors.decode::<ProductsCursor>(&scope, raw) {
                Ok(ProductsCursor::CreatedAt { at, id }) if sort == ProductSort::CreatedAt => {
                    Some(ProductPageKey::CreatedAt(at, ProductId(id)))
                }
                Ok(ProductsCursor::Price { minor, id }) if sort == ProductSort::Price => {
                    Some(ProductPageKey::Price(minor, ProductId(id)))
                }
                _ => {
                    errors.push(FieldError::new(
                        "cursor",
                        "invalid_cursor",
                        "is not a cursor of this list with these filters and sort",
                    ));
                    None
                }
            },
        };
        errors.into_result()?;
        let query = ProductQuery {
            filter,
            sort,
            direction,
            after,
            limit: limit.get() + 1,
        };
        let items = self.products.list(&query).await?;
        Ok(Page::cut(items, limit, |last| {
            let position = match sort {
                ProductSort::CreatedAt => ProductsCursor::CreatedAt {
                    at: last.created_at,
                    id: last.id.0,
                },
                ProductSort::Price => ProductsCursor::Price {
                    minor: last.price.money().amount_minor,
                    id: last.id.0,
                },
            };
            self.cursors.encode(&scope, &position)
        }))
    }
}

/// The cursor scope of a list: a cursor is valid only with the filters and sort it came from.
fn list_scope(filter: &ProductFilter, sort: ProductSort, direction: SortDirection) -> String {
    let described = format!("{filter:?}|{sort:?}|{direction:?}");
    let digest = Sha256::digest(described.as_bytes());
    format!("products:{}", URL_SAFE_NO_PAD.encode(&digest[..12]))
}

fn required<T>(
    errors: &mut ValidationErrors,
    field: &str,
    raw: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, FieldError>,
) -> Option<T> {
    match raw {
        Some(raw) => errors.check(field, parse(raw)),
        None => {
            errors.push(FieldError::new(field, "required", "is required"));
            None
        }
    }
}

fn parse_price(errors: &mut ValidationErrors, input: &PriceInput) -> Option<Price> {
    let currency = required(
        errors,
        "price.currency",
        input.currency.as_deref(),
        Currency::parse,
    );
    let Some(amount) = input.amount_minor else {
        errors.push(FieldError::new(
            "price.amount_minor",
            "required",
            "is required",
        ));
        return None;
    };
    // Checked apart from the currency, so that a bad amount and a bad currency are both reported.
    let amount = errors.check("price.amount_minor", Price::check_amount(amount))?;
    Price::new(amount, currency?).ok()
}

fn parse_amount(
    errors: &mut ValidationErrors,
    field: &str,
    raw: Option<&str>,
) -> Option<Option<i64>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    match raw.trim().parse::<i64>() {
        Ok(amount) if (0..=Price::MAX_MINOR).contains(&amount) => Some(Some(amount)),
        _ => {
            errors.push(FieldError::new(
                field,
                "out_of_range",
                format!(
                    "must be an integer amount in minor units between 0 and {}",
                    Price::MAX_MINOR
                ),
            ));
            None
        }
    }
}

fn require_admin(principal: &Principal) -> Result<(), CatalogError> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(CatalogError::Forbidden)
    }
}

#[cfg(test)]
mod tests;
