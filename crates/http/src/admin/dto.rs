//! The admin's dashboard and reports: request and response bodies.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use strata_domain::{
    ProductUnits, Report, SalesDay, SalesReport, SalesWindows, StockLevel, WindowSales,
};
use strata_services::{Dashboard, ReportInput};
use utoipa::ToSchema;
use uuid::Uuid;

use strata_domain::{ReportKind, ReportStatus};

use crate::dto::schemas::one_of;
use crate::dto::{MoneyView, rfc3339, rfc3339_opt};

/// A product and the units of it sold.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProductUnits)]
pub struct ProductUnitsView {
    /// The product.
    pub product_id: Uuid,
    /// Its SKU.
    #[schema(examples("LAMP-001"))]
    pub sku: String,
    /// Its name.
    #[schema(examples("Walnut desk lamp"))]
    pub name: String,
    /// Units sold.
    #[schema(minimum = 0, examples(42))]
    pub units: u64,
}

impl From<ProductUnits> for ProductUnitsView {
    fn from(product: ProductUnits) -> Self {
        Self {
            product_id: product.product_id.0,
            sku: product.sku.into(),
            name: product.name.into(),
            units: product.units,
        }
    }
}

/// The orders of one window of the dashboard.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SalesWindow)]
pub struct SalesWindowView {
    /// Where the window starts (00:00 UTC of its first day); it ends at `generated_at`.
    #[serde(serialize_with = "rfc3339")]
    pub since: DateTime<Utc>,
    /// Orders created in the window and not cancelled.
    #[schema(minimum = 0, examples(12))]
    pub orders: u64,
    /// Their revenue, one amount per currency (by code); empty when there were none.
    pub revenue: Vec<MoneyView>,
}

impl SalesWindowView {
    fn new(since: DateTime<Utc>, sales: WindowSales) -> Self {
        Self {
            since,
            orders: sales.orders,
            revenue: sales.revenue.into_iter().map(Into::into).collect(),
        }
    }
}

/// The dashboard's sales windows.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DashboardSales)]
pub struct DashboardSalesView {
    /// Since 00:00 UTC today.
    pub today: SalesWindowView,
    /// Today and the 6 days before it.
    pub last_7_days: SalesWindowView,
    /// Today and the 29 days before it.
    pub last_30_days: SalesWindowView,
}

/// An active product's stock.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StockLevel)]
pub struct StockLevelView {
    /// The product.
    pub product_id: Uuid,
    /// Its SKU.
    #[schema(examples("LAMP-001"))]
    pub sku: String,
    /// Its name.
    #[schema(examples("Walnut desk lamp"))]
    pub name: String,
    /// Units on hand.
    #[schema(minimum = 0, examples(3))]
    pub stock: u32,
}

impl From<StockLevel> for StockLevelView {
    fn from(level: StockLevel) -> Self {
        Self {
            product_id: level.product_id.0,
            sku: level.sku.into(),
            name: level.name.into(),
            stock: level.stock.get(),
        }
    }
}

/// Active products below the stock threshold.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LowStock)]
pub struct LowStockView {
    /// Products with fewer units than this are listed (`STRATA_LOW_STOCK_THRESHOLD`).
    #[schema(examples(10))]
    pub threshold: u32,
    /// How many active products are below it.
    #[schema(minimum = 0, examples(37))]
    pub total: u64,
    /// The first 20 of them, lowest stock first (ties by id).
    pub products: Vec<StockLevelView>,
}

/// The admin dashboard.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Dashboard)]
pub struct DashboardView {
    /// When these figures were read: the dashboard is cached for a short while, and a cached
    /// answer keeps the time it was computed.
    #[serde(serialize_with = "rfc3339")]
    pub generated_at: DateTime<Utc>,
    /// Orders not cancelled and their revenue per currency, per window.
    pub sales: DashboardSalesView,
    /// The 5 products with the most units over the last 30 days (ties by id).
    pub top_products: Vec<ProductUnitsView>,
    /// Active products running low.
    pub low_stock: LowStockView,
    /// Subscriptions currently active.
    #[schema(minimum = 0, examples(128))]
    pub active_subscriptions: u64,
}

impl From<Dashboard> for DashboardView {
    fn from(dashboard: Dashboard) -> Self {
        let SalesWindows {
            today,
            last_7_days,
            last_30_days,
            ..
        } = dashboard.windows;
        Self {
            generated_at: dashboard.generated_at,
            sales: DashboardSalesView {
                today: SalesWindowView::new(today, dashboard.sales.today),
                last_7_days: SalesWindowView::new(last_7_days, dashboard.sales.last_7_days),
                last_30_days: SalesWindowView::new(last_30_days, dashboard.sales.last_30_days),
            },
            top_products: dashboard.top_products.into_iter().map(Into::into).collect(),
            low_stock: LowStockView {
                threshold: dashboard.low_stock.threshold,
                total: dashboard.low_stock.total,
                products: dashboard
                    .low_stock
                    .products
                    .into_iter()
                    .map(Into::into)
                    .collect(),
            },
            active_subscriptions: dashboard.active_subscriptions,
        }
    }
}

/// POST /v1/admin/reports
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"kind": "sales", "from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"})))]
pub struct CreateReportRequest {
    /// What to report on: `sales`.
    #[schema(required = true, schema_with = report_kind)]
    pub kind: Option<String>,
    /// The first instant covered (RFC 3339, any offset).
    #[schema(value_type = String, format = DateTime, required = true, examples("2026-10-01T00:00:00Z"))]
    pub from: Option<String>,
    /// The first instant no longer covered (RFC 3339): later than `from`, at most 366 days after.
    #[schema(value_type = String, format = DateTime, required = true, examples("2026-11-01T00:00:00Z"))]
    pub to: Option<String>,
}

impl From<CreateReportRequest> for ReportInput {
    fn from(body: CreateReportRequest) -> Self {
        Self {
            kind: body.kind,
            from: body.from,
            to: body.to,
        }
    }
}

/// One UTC day of a sales report.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SalesDay)]
pub struct SalesDayView {
    /// The date (UTC).
    #[schema(value_type = String, format = Date, examples("2026-10-01"))]
    pub date: NaiveDate,
    /// Orders created that day and not cancelled.
    #[schema(minimum = 0, examples(31))]
    pub orders: u64,
    /// Units on them.
    #[schema(minimum = 0, examples(74))]
    pub units: u64,
    /// Their revenue, one amount per currency (by code); empty on a day without orders.
    pub revenue: Vec<MoneyView>,
}

impl From<SalesDay> for SalesDayView {
    fn from(day: SalesDay) -> Self {
        Self {
            date: day.date,
            orders: day.orders,
            units: day.units,
            revenue: day.revenue.into_iter().map(Into::into).collect(),
        }
    }
}

/// A sales report's result.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SalesReport)]
pub struct SalesReportView {
    /// Orders created in `[from, to)` and not cancelled.
    #[schema(minimum = 0, examples(1250))]
    pub order_count: u64,
    /// Units on them.
    #[schema(minimum = 0, examples(3012))]
    pub units: u64,
    /// Their revenue, one amount per currency (by code); never summed across currencies.
    pub revenue: Vec<MoneyView>,
    /// Every UTC day the range touches, in order (the first and last may be partial).
    pub days: Vec<SalesDayView>,
    /// The 10 products with the most units (ties by id).
    pub top_products: Vec<ProductUnitsView>,
}

impl From<SalesReport> for SalesReportView {
    fn from(report: SalesReport) -> Self {
        Self {
            order_count: report.order_count,
            units: report.units,
            revenue: report.revenue.into_iter().map(Into::into).collect(),
            days: report.days.into_iter().map(Into::into).collect(),
            top_products: report.top_products.into_iter().map(Into::into).collect(),
        }
    }
}

/// A report as clients see it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Report)]
pub struct ReportView {
    /// Identifier.
    pub id: Uuid,
    /// `sales`.
    #[schema(schema_with = report_kind)]
    pub kind: &'static str,
    /// `queued`, `running`, then `done` or `failed`.
    #[schema(schema_with = report_status)]
    pub status: &'static str,
    /// The first instant covered (UTC).
    #[serde(serialize_with = "rfc3339")]
    pub from: DateTime<Utc>,
    /// The first instant no longer covered (UTC).
    #[serde(serialize_with = "rfc3339")]
    pub to: DateTime<Utc>,
    /// The admin who asked for it.
    pub requested_by: Uuid,
    /// When it was asked for.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// When a worker first started on it; absent while queued.
    #[serde(
        serialize_with = "rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<DateTime<Utc>>, nullable = false)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it became `done` or `failed`; absent before.
    #[serde(
        serialize_with = "rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<DateTime<Utc>>, nullable = false)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed; present only when `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(
        nullable = false,
        examples("generation failed after 5 attempt(s): the database was unavailable or too slow")
    )]
    pub error: Option<String>,
    /// The report; present only when `done`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub result: Option<SalesReportView>,
}

impl From<Report> for ReportView {
    fn from(report: Report) -> Self {
        Self {
            id: report.id.0,
            kind: report.kind.as_str(),
            status: report.status.as_str(),
            from: report.range.from(),
            to: report.range.to(),
            requested_by: report.requested_by.0,
            created_at: report.created_at,
            started_at: report.started_at,
            finished_at: report.finished_at,
            error: report.error,
            result: report.result.map(Into::into),
        }
    }
}

/// What a report is about.
fn report_kind() -> utoipa::openapi::schema::Object {
    let kinds: Vec<&'static str> = ReportKind::ALL.iter().map(|k| k.as_str()).collect();
    one_of(&kinds, "`sales`.")
}

/// Where a report is.
fn report_status() -> utoipa::openapi::schema::Object {
    let statuses: Vec<&'static str> = ReportStatus::ALL.iter().map(|s| s.as_str()).collect();
    one_of(
        &statuses,
        "`queued`, `running` (a worker is on it, or will retry it), then `done` or `failed`.",
    )
}
