//! Product storage.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use strata_domain::{Currency, Description, Price, Product, ProductId, ProductName, Sku};

use crate::PortError;

/// Changes to a product; `None` leaves a field as it is. Stock changes go through
/// [`ProductRepository::adjust_stock`] only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductChanges {
    /// New SKU.
    pub sku: Option<Sku>,
    /// New name.
    pub name: Option<ProductName>,
    /// New description.
    pub description: Option<Description>,
    /// New price.
    pub price: Option<Price>,
    /// Activate or deactivate.
    pub active: Option<bool>,
}

impl ProductChanges {
    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// The column a product list is ordered by (then by id, for a total order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProductSort {
    /// Creation time.
    CreatedAt,
    /// Price in minor units.
    Price,
}

/// Ascending or descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortDirection {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// Which products a list shows. Every filter is optional; `q` is matched case-insensitively as a
/// substring of the name or the SKU.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ProductFilter {
    /// Text searched in name and SKU.
    pub q: Option<String>,
    /// Only active (`true`) or only inactive (`false`) products.
    pub active: Option<bool>,
    /// Lowest price in minor units, inclusive.
    pub min_price: Option<i64>,
    /// Highest price in minor units, inclusive.
    pub max_price: Option<i64>,
    /// Only products priced in this currency.
    pub currency: Option<Currency>,
}

/// The keyset position after the last product of a page: its sort value, then its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductPageKey {
    /// For [`ProductSort::CreatedAt`].
    CreatedAt(DateTime<Utc>, ProductId),
    /// For [`ProductSort::Price`].
    Price(i64, ProductId),
}

/// One page request of the product list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductQuery {
    /// Filters.
    pub filter: ProductFilter,
    /// Sort column.
    pub sort: ProductSort,
    /// Sort direction (ids break ties in the same direction).
    pub direction: SortDirection,
    /// Position after which to start; must match `sort`.
    pub after: Option<ProductPageKey>,
    /// Rows to return.
    pub limit: usize,
}

/// Why a product could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ProductWriteError {
    /// Another product has this SKU.
    #[error("sku already in use")]
    SkuTaken,
    /// No such product.
    #[error("product not found")]
    NotFound,
    /// Infrastructure failure.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// Why a stock adjustment was refused.
#[derive(Debug, thiserror::Error)]
pub enum StockAdjustError {
    /// No such product.
    #[error("product not found")]
    NotFound,
    /// The change was refused by the stock rule; nothing changed.
    #[error(transparent)]
    Refused(#[from] strata_domain::StockError),
    /// Infrastructure failure.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// Durable storage of the catalog.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait ProductRepository: Send + Sync + 'static {
    /// Stores a new product; [`ProductWriteError::SkuTaken`] when the SKU exists.
    async fn create(&self, product: &Product) -> Result<Product, ProductWriteError>;
    /// The product with this id, active or not; `Ok(None)` when there is none.
    async fn find_by_id(&self, id: ProductId) -> Result<Option<Product>, PortError>;
    /// Applies `changes` and sets `updated_at`.
    async fn update(
        &self,
        id: ProductId,
        changes: &ProductChanges,
        now: DateTime<Utc>,
    ) -> Result<Product, ProductWriteError>;
    /// Adds `delta` to the stock atomically (one statement under the row lock), refusing a
    /// result below zero or above the maximum.
    async fn adjust_stock(
        &self,
        id: ProductId,
        delta: i64,
        now: DateTime<Utc>,
    ) -> Result<Product, StockAdjustError>;
    /// One page of the list (keyset, never OFFSET).
    async fn list(&self, query: &ProductQuery) -> Result<Vec<Product>, PortError>;
}
