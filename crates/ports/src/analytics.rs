//! Read-only aggregates over orders, products and subscriptions: the admin dashboard's figures and
//! a sales report's.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use strata_domain::{
    ProductUnits, ReportRange, SalesByWindow, SalesFigures, SalesWindows, StockLevel,
};

use crate::PortError;

/// Aggregate reads for the admin. Each method is one statement (or one snapshot) on a connection
/// of its own, so that callers may run several at once.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait AnalyticsRepository: Send + Sync + 'static {
    /// Orders not cancelled, created from each window's start until `windows.until` (excluded):
    /// how many, and the sum of their totals per currency (sorted by code).
    async fn sales_by_window(&self, windows: &SalesWindows) -> Result<SalesByWindow, PortError>;
    /// The `limit` products with the most units on orders not cancelled created in
    /// `[from, until)`, most units first (ties by product id).
    async fn top_products(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ProductUnits>, PortError>;
    /// Up to `limit` active products with fewer than `threshold` units, lowest stock first (ties
    /// by product id).
    async fn low_stock(&self, threshold: u32, limit: usize) -> Result<Vec<StockLevel>, PortError>;
    /// How many active products have fewer than `threshold` units.
    async fn count_low_stock(&self, threshold: u32) -> Result<u64, PortError>;
    /// How many subscriptions are active.
    async fn count_active_subscriptions(&self) -> Result<u64, PortError>;
    /// The figures of a sales report over `range` (orders not cancelled, created in
    /// `[from, to)`, grouped by UTC day), with the `top` best-selling products; all read from one
    /// snapshot, so that they agree with each other.
    async fn sales_figures(
        &self,
        range: &ReportRange,
        top: usize,
    ) -> Result<SalesFigures, PortError>;
}
