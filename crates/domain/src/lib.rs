//! Strata's domain: entities, value objects and the pure rules between them.
//!
//! Nothing here performs I/O, awaits, reads the clock or knows about HTTP or SQL: every rule is a
//! plain function of its arguments (the current time is one of them), so another team can use
//! this crate as is in a worker or a batch job and test against it without mocks.
//! `examples/renewal_worker.rs` is such a worker, with the plans and subscriptions in memory
//! (`cargo run -p strata-domain --example renewal_worker`).
//!
//! # What it offers
//!
//! - **Users and sessions** ([`user`], [`auth`]): [`Email`], [`DisplayName`], [`Password`],
//!   [`Role`], when a refresh token may be used ([`RefreshTokenRecord::state_at`]), and a user's
//!   live [`Session`]s.
//! - **Catalog** ([`product`]): [`Sku`], [`ProductName`], [`Description`], and [`Stock`], which
//!   is never negative.
//! - **Orders** ([`order`]): [`OrderRequest::parse`], [`price_order`] and the status machine
//!   [`OrderStatus::transition`].
//! - **Billing** ([`billing`]): [`Plan`], [`Subscription`], [`Invoice`], and the rules
//!   [`next_period`], [`prorate`] and [`decide_renewal`].
//! - **Reports and the dashboard** ([`report`], [`dashboard`]): [`ReportRequest::parse`] (a
//!   range of at most 366 days), [`ReportStatus`] (`queued → running → done | failed`),
//!   [`SalesReport::assemble`], and the dashboard's [`SalesWindows`].
//! - **Shared pieces**: [`Money`], [`Price`] and [`Currency`] ([`money`]); [`IdempotencyKey`];
//!   [`PageLimit`]; and [`ValidationErrors`], which names every bad field at once
//!   (`items[2].quantity`) rather than the first.
//!
//! Every value object is built through a validating constructor (`Email::parse`, `Sku::parse`,
//! `Price::new`, ...), so an invalid value is unrepresentable once constructed, and every
//! failure is a typed error, never a string.
//!
//! # Money
//!
//! Money is an integer number of minor units (cents for USD) plus an ISO 4217 [`Currency`]; there
//! are no floats anywhere in money. Amounts of different currencies never mix:
//! [`Money::checked_add`] refuses them, as it refuses overflow. A [`Price`] is money that is never
//! negative and at most [`Price::MAX_MINOR`], small enough that the largest order cannot overflow
//! its total.
//!
//! # Orders
//!
//! An order is 1–50 lines of distinct products, 1–1000 units each, in one currency. Given the
//! request and the products as read under lock, [`price_order`] either refuses, naming every
//! offending line (unknown, inactive or other-currency products first; only then every line
//! short of stock), or returns the lines with their unit prices captured, the total and the new
//! stock of each product. Whoever persists it locks the products in
//! [`OrderRequest::lock_order`] (ascending ids), so two orders never deadlock. Status moves only
//! `placed → fulfilled` or `placed → cancelled`, so a cancellation restocks exactly once.
//!
//! # Billing
//!
//! The full rules are in the [`billing`] module's documentation; in short:
//!
//! - A subscription is billed in periods of its plan's interval counted from its anchor, with
//!   calendar months clamped to the end of shorter months and never drifting: anchored on 31
//!   January, it renews on 28 (or 29) February, 31 March, 30 April, ... ([`next_period`]).
//! - Changing plan mid-period keeps the period and settles at once: a credit for the old plan's
//!   unused time and a charge for the new plan's remaining time, each computed to the second and
//!   rounded half-to-even to the minor unit on its own ([`prorate`]).
//! - At a period's end, [`decide_renewal`] says to renew at the plan's full price for the next
//!   period, to cancel (when marked to end at the period's end), or that nothing is due. A
//!   subscription several periods behind is renewed one period per call, each with its own
//!   invoice.

pub mod auth;
pub mod billing;
pub mod dashboard;
pub mod idempotency;
pub mod money;
pub mod order;
pub mod pagination;
pub mod product;
pub mod report;
pub mod user;
pub mod validation;

pub use auth::{RefreshTokenRecord, RefreshTokenState, Session};
pub use billing::{
    BilledSubscription, BillingInterval, Invoice, InvoiceId, InvoiceKind, InvoiceLine, Plan,
    PlanCode, Proration, ProrationError, RenewalDecision, Subscription, SubscriptionId,
    SubscriptionStatus, decide_renewal, next_period, period_description, prorate,
};
pub use dashboard::{SalesByWindow, SalesWindows, StockLevel, WindowSales};
pub use idempotency::IdempotencyKey;
pub use money::{Currency, Money, Price};
pub use order::{
    InvalidTransition, LineRequest, Order, OrderId, OrderLine, OrderRejection, OrderRequest,
    OrderStatus, PricedOrder, Quantity, RawLine, ShortLine, StockedProduct, price_order,
};
pub use pagination::PageLimit;
pub use product::{
    Description, MAX_STOCK_DELTA, Product, ProductId, ProductName, Sku, Stock, StockError,
    validate_stock_delta,
};
pub use report::{
    DaySales, DayUnits, ProductUnits, Report, ReportId, ReportKind, ReportRange, ReportRequest,
    ReportStatus, SalesDay, SalesFigures, SalesReport, SalesReportError,
};
pub use user::{DisplayName, Email, Password, Role, User, UserId};
pub use validation::{FieldError, ValidationErrors};
