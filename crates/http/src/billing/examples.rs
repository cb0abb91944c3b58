//! Example bodies of the plans', subscriptions' and invoices' operations.

use serde_json::Value;

use super::dto::*;
use crate::dto::PageView;
use crate::examples::{at, id, usd, value};

fn plan_view(code: &str, name: &str, amount_minor: i64, interval: &'static str) -> PlanView {
    PlanView {
        code: code.to_owned(),
        name: name.to_owned(),
        price: usd(amount_minor),
        interval,
    }
}

fn subscription_view() -> SubscriptionView {
    SubscriptionView {
        id: id("0193a5d1-0b1c-7d2e-9f3a-4b5c6d7e8f90"),
        plan_code: "pro-monthly".to_owned(),
        status: "active",
        current_period_start: at("2026-11-01T00:00:00.000000Z"),
        current_period_end: at("2026-12-01T00:00:00.000000Z"),
        cancel_at_period_end: false,
        cancelled_at: None,
        created_at: at("2026-11-01T00:00:00.000000Z"),
        updated_at: at("2026-11-01T00:00:00.000000Z"),
    }
}

fn first_invoice() -> InvoiceView {
    InvoiceView {
        id: id("0193a5d1-0b1c-7d2e-9f3a-4b5c6d7e8f91"),
        subscription_id: id("0193a5d1-0b1c-7d2e-9f3a-4b5c6d7e8f90"),
        kind: "subscription",
        lines: vec![InvoiceLineView {
            description: "Pro (monthly), 2026-11-01 to 2026-12-01".to_owned(),
            amount: usd(2900),
        }],
        total: usd(2900),
        period_start: at("2026-11-01T00:00:00.000000Z"),
        period_end: at("2026-12-01T00:00:00.000000Z"),
        created_at: at("2026-11-01T00:00:00.000000Z"),
    }
}

fn proration_lines() -> Vec<InvoiceLineView> {
    vec![
        InvoiceLineView {
            description: "Unused time on Basic (monthly) after 2026-11-16".to_owned(),
            amount: usd(-450),
        },
        InvoiceLineView {
            description: "Remaining time on Pro (monthly) from 2026-11-16".to_owned(),
            amount: usd(1450),
        },
    ]
}

fn proration_invoice() -> InvoiceView {
    InvoiceView {
        id: id("0193a5e2-3c4d-7e5f-8a6b-7c8d9e0f1a2c"),
        subscription_id: id("0193a5d1-0b1c-7d2e-9f3a-4b5c6d7e8f90"),
        kind: "proration",
        lines: proration_lines(),
        total: usd(1000),
        period_start: at("2026-11-16T00:00:00.000000Z"),
        period_end: at("2026-12-01T00:00:00.000000Z"),
        created_at: at("2026-11-16T00:00:00.000000Z"),
    }
}

/// The plans, all on one page.
pub(crate) fn plans() -> Value {
    value(PageView {
        items: vec![
            plan_view("basic-monthly", "Basic (monthly)", 900, "month"),
            plan_view("pro-monthly", "Pro (monthly)", 2900, "month"),
            plan_view("pro-yearly", "Pro (yearly)", 29000, "year"),
        ],
        next_cursor: None,
    })
}

/// A new subscription with its first invoice.
pub(crate) fn subscribed() -> Value {
    value(SubscribedView {
        subscription: subscription_view(),
        latest_invoice: first_invoice(),
    })
}

/// A subscription.
pub(crate) fn subscription() -> Value {
    value(subscription_view())
}

/// A subscription set to end at its period's end.
pub(crate) fn cancelled_subscription() -> Value {
    let mut subscription = subscription_view();
    subscription.cancel_at_period_end = true;
    subscription.updated_at = at("2026-11-20T10:00:00.000000Z");
    value(subscription)
}

/// A proration preview.
pub(crate) fn proration() -> Value {
    value(ProrationView {
        from_plan: "basic-monthly".to_owned(),
        to_plan: "pro-monthly".to_owned(),
        at: at("2026-11-16T00:00:00.000000Z"),
        period_end: at("2026-12-01T00:00:00.000000Z"),
        remaining_seconds: 1_296_000,
        credit: usd(-450),
        charge: usd(1450),
        total: usd(1000),
        lines: proration_lines(),
    })
}

/// A proration invoice.
pub(crate) fn proration_invoice_example() -> Value {
    value(proration_invoice())
}

/// A page of invoices.
pub(crate) fn invoice_page() -> Value {
    value(PageView {
        items: vec![proration_invoice(), first_invoice()],
        next_cursor: None,
    })
}
