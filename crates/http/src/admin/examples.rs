//! Example bodies of the admin's dashboard and reports.

use serde_json::Value;

use super::dto as admin;
use crate::examples::{at, id, money, value};

fn top_product(n: u8, sku: &str, name: &str, units: u64) -> admin::ProductUnitsView {
    admin::ProductUnitsView {
        product_id: id(&format!("0193a5b2-7c1e-7d3a-9f10-3b2c4d5e6f{n:02}")),
        sku: sku.to_owned(),
        name: name.to_owned(),
        units,
    }
}

/// The admin dashboard.
pub(crate) fn dashboard() -> Value {
    let window = |since: &str, orders, usd_minor, eur_minor| admin::SalesWindowView {
        since: at(since),
        orders,
        revenue: vec![money(eur_minor, "EUR"), money(usd_minor, "USD")],
    };
    value(admin::DashboardView {
        generated_at: at("2026-11-21T12:00:05.123456Z"),
        sales: admin::DashboardSalesView {
            today: window("2026-11-21T00:00:00.000000Z", 14, 71_240, 8_990),
            last_7_days: window("2026-11-15T00:00:00.000000Z", 102, 498_310, 61_450),
            last_30_days: window("2026-10-23T00:00:00.000000Z", 431, 2_104_775, 254_300),
        },
        top_products: vec![
            top_product(70, "LAMP-001", "Walnut desk lamp", 58),
            top_product(71, "MUG-014", "Stoneware mug", 41),
        ],
        low_stock: admin::LowStockView {
            threshold: 10,
            total: 2,
            products: vec![
                admin::StockLevelView {
                    product_id: id("0193a5b2-7c1e-7d3a-9f10-3b2c4d5e6f72"),
                    sku: "KB-0042".to_owned(),
                    name: "Mechanical keyboard".to_owned(),
                    stock: 0,
                },
                admin::StockLevelView {
                    product_id: id("0193a5b2-7c1e-7d3a-9f10-3b2c4d5e6f70"),
                    sku: "LAMP-001".to_owned(),
                    name: "Walnut desk lamp".to_owned(),
                    stock: 3,
                },
            ],
        },
        active_subscriptions: 128,
    })
}

fn report_view(status: &'static str) -> admin::ReportView {
    admin::ReportView {
        id: id("0193a5f1-5e6f-7a80-9b1c-2d3e4f5a6b7c"),
        kind: "sales",
        status,
        from: at("2026-10-01T00:00:00.000000Z"),
        to: at("2026-10-03T00:00:00.000000Z"),
        requested_by: id("0193a5b2-1f00-7c3e-8d2a-5b6c7d8e9f02"),
        created_at: at("2026-11-21T12:00:00.000000Z"),
        started_at: None,
        finished_at: None,
        error: None,
        result: None,
    }
}

/// A report just requested.
pub(crate) fn queued_report() -> Value {
    value(report_view("queued"))
}

/// A generated report.
pub(crate) fn done_report() -> Value {
    let day = |d: u32, orders, units, usd_minor| admin::SalesDayView {
        date: chrono::NaiveDate::from_ymd_opt(2026, 10, d).unwrap_or_default(),
        orders,
        units,
        revenue: vec![money(usd_minor, "USD")],
    };
    value(admin::ReportView {
        started_at: Some(at("2026-11-21T12:00:00.250000Z")),
        finished_at: Some(at("2026-11-21T12:00:00.900000Z")),
        result: Some(admin::SalesReportView {
            order_count: 29,
            units: 70,
            revenue: vec![money(142_970, "USD")],
            days: vec![day(1, 17, 41, 83_120), day(2, 12, 29, 59_850)],
            top_products: vec![
                top_product(70, "LAMP-001", "Walnut desk lamp", 9),
                top_product(71, "MUG-014", "Stoneware mug", 6),
            ],
        }),
        ..report_view("done")
    })
}

/// A report whose every attempt failed.
pub(crate) fn failed_report() -> Value {
    value(admin::ReportView {
        started_at: Some(at("2026-11-21T12:00:00.250000Z")),
        finished_at: Some(at("2026-11-21T12:01:02.000000Z")),
        error: Some(
            "generation failed after 5 attempt(s): the database was unavailable or too slow"
                .to_owned(),
        ),
        ..report_view("failed")
    })
}
