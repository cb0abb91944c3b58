//! The admin dashboard: sales today, over the last 7 and 30 days (per currency), the best sellers
//! of the last 30 days, the products running low, and the active subscriptions.
//!
//! Its five figures are independent, so they are read concurrently, each on a connection of its
//! own: the dashboard takes as long as its slowest query, not their sum. The whole dashboard is
//! cached (cache-aside, `admin:dashboard`) for a short TTL, with single-flight loading, so that any
//! number of admins refreshing it cost one set of queries per TTL per instance; `generated_at`
//! says how fresh it is.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_domain::{ProductUnits, SalesByWindow, SalesWindows, StockLevel};
use strata_ports::{AnalyticsRepository, Cache, Clock, PortError};

use crate::auth::Principal;
use crate::cache_aside::CacheAside;
use crate::failure::Failure;

/// The key of the dashboard in the shared cache.
pub const DASHBOARD_CACHE_KEY: &str = "admin:dashboard";
/// How many best sellers the dashboard ranks.
pub const TOP_PRODUCTS: usize = 5;
/// How many low-stock products the dashboard lists (their total count is given too).
pub const LOW_STOCK_LISTED: usize = 20;

/// What a caller of [`DashboardService`] must handle.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The caller is not an admin.
    #[error("forbidden")]
    Forbidden,
    /// Infrastructure failure.
    #[error(transparent)]
    Failure(#[from] Failure),
}

/// How the dashboard is computed and kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DashboardSettings {
    /// How long a computed dashboard is served from the cache.
    pub ttl: Duration,
    /// Active products with fewer units than this are low on stock.
    pub low_stock_threshold: u32,
}

/// Active products below the stock threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LowStock {
    /// The threshold: products with fewer units are listed.
    pub threshold: u32,
    /// How many active products are below it.
    pub total: u64,
    /// The first [`LOW_STOCK_LISTED`] of them, lowest stock first.
    pub products: Vec<StockLevel>,
}

/// The dashboard as computed at `generated_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dashboard {
    /// When the figures were read (a cached dashboard keeps its time).
    pub generated_at: DateTime<Utc>,
    /// Where the sales windows start.
    pub windows: SalesWindows,
    /// Orders and revenue per window.
    pub sales: SalesByWindow,
    /// The [`TOP_PRODUCTS`] products with the most units over the last 30 days.
    pub top_products: Vec<ProductUnits>,
    /// Products running low.
    pub low_stock: LowStock,
    /// Subscriptions currently active.
    pub active_subscriptions: u64,
}

/// The dashboard use case.
pub struct DashboardService {
    analytics: Arc<dyn AnalyticsRepository>,
    clock: Arc<dyn Clock>,
    settings: DashboardSettings,
    cached: CacheAside<Dashboard>,
}

impl DashboardService {
    /// Wires the service to its ports.
    pub fn new(
        analytics: Arc<dyn AnalyticsRepository>,
        cache: Arc<dyn Cache>,
        clock: Arc<dyn Clock>,
        settings: DashboardSettings,
    ) -> Self {
        Self {
            analytics,
            clock,
            settings,
            cached: CacheAside::new("dashboard", cache, settings.ttl),
        }
    }

    /// The dashboard (admins only): from the cache while it is fresh, otherwise computed now.
    pub async fn dashboard(&self, principal: &Principal) -> Result<Dashboard, DashboardError> {
        if !principal.is_admin() {
            return Err(DashboardError::Forbidden);
        }
        self.cached
            .get_or_load(DASHBOARD_CACHE_KEY, || async {
                self.compute().await.map(Some)
            })
            .await?
            .ok_or_else(|| {
                DashboardError::Failure(Failure::Unexpected(anyhow::anyhow!(
                    "the dashboard loader returned nothing"
                )))
            })
    }

    /// Reads every figure, concurrently.
    async fn compute(&self) -> Result<Dashboard, PortError> {
        let generated_at = self.clock.now();
        let windows = SalesWindows::ending_at(generated_at);
        let threshold = self.settings.low_stock_threshold;
        let analytics = &self.analytics;
        let (sales, top_products, low_stock, low_stock_total, active_subscriptions) = tokio::try_join!(
            analytics.sales_by_window(&windows),
            analytics.top_products(windows.last_30_days, windows.until, TOP_PRODUCTS),
            analytics.low_stock(threshold, LOW_STOCK_LISTED),
            analytics.count_low_stock(threshold),
            analytics.count_active_subscriptions(),
        )?;
        Ok(Dashboard {
            generated_at,
            windows,
            sales,
            top_products,
            low_stock: LowStock {
                threshold,
                total: low_stock_total,
                products: low_stock,
            },
            active_subscriptions,
        })
    }
}

#[cfg(test)]
mod tests;
