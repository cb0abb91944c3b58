//! What every handler can reach: the use cases and the health probe; and the metrics exporter,
//! which only the metrics listener reaches.

use std::sync::Arc;

use strata_services::{
    AuthService, CatalogService, DashboardService, ExportService, OrderService, ReportService,
    SubscriptionService, UserService,
};

use crate::edge::Edge;
use crate::health::Health;

/// Shared, immutable application state (cheap to clone: `Arc`s).
#[derive(Clone)]
pub struct AppState {
    /// Authentication use cases.
    pub auth: Arc<AuthService>,
    /// User use cases.
    pub users: Arc<UserService>,
    /// Catalog use cases.
    pub catalog: Arc<CatalogService>,
    /// Order use cases.
    pub orders: Arc<OrderService>,
    /// Subscription use cases.
    pub subscriptions: Arc<SubscriptionService>,
    /// Admin export use cases.
    pub exports: Arc<ExportService>,
    /// The admin dashboard.
    pub dashboard: Arc<DashboardService>,
    /// Admin report use cases.
    pub reports: Arc<ReportService>,
    /// Admission control, rate limiting and the request timeout.
    pub edge: Arc<Edge>,
    /// Liveness, readiness and the deep check (`/health`).
    pub health: Arc<Health>,
}

/// Produces the scrape body (Prometheus text format) on demand. The composition root chooses the
/// recorder behind it; this crate only records through the `metrics` facade.
#[derive(Clone)]
pub struct MetricsExporter(Arc<dyn Fn() -> String + Send + Sync>);

impl MetricsExporter {
    /// An exporter whose scrape body is whatever `render` returns when called (so it can refresh
    /// scrape-time gauges first).
    pub fn new(render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        Self(Arc::new(render))
    }

    /// The scrape body now.
    pub fn render(&self) -> String {
        (self.0)()
    }
}

impl std::fmt::Debug for MetricsExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsExporter")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn the_exporter_renders_afresh_at_each_scrape() {
        let scrapes = Arc::new(AtomicUsize::new(0));
        let counted = scrapes.clone();
        let exporter = MetricsExporter::new(move || {
            format!("scrapes {}\n", counted.fetch_add(1, Ordering::Relaxed) + 1)
        });
        assert_eq!(exporter.render(), "scrapes 1\n");
        assert_eq!(exporter.clone().render(), "scrapes 2\n");
    }
}
