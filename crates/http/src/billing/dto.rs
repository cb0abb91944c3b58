//! The bodies of plans, subscriptions, proration previews and invoices.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_domain::{
    BilledSubscription, BillingInterval, Invoice, InvoiceKind, InvoiceLine, Plan, Subscription,
    SubscriptionStatus,
};
use strata_services::ProrationPreview;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::dto::schemas::one_of;
use crate::dto::{MoneyView, rfc3339, rfc3339_opt};

/// A plan as clients see it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Plan)]
pub struct PlanView {
    /// Stable code, used to subscribe.
    #[schema(examples("pro-monthly"))]
    pub code: String,
    /// Display name.
    #[schema(examples("Pro (monthly)"))]
    pub name: String,
    /// Price per interval.
    pub price: MoneyView,
    /// `month` or `year`.
    #[schema(schema_with = plan_interval)]
    pub interval: &'static str,
}

impl From<Plan> for PlanView {
    fn from(plan: Plan) -> Self {
        Self {
            code: plan.code.into(),
            name: plan.name,
            price: plan.price.money().into(),
            interval: plan.interval.as_str(),
        }
    }
}

/// POST /v1/subscriptions and POST /v1/subscriptions/me/change-plan
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"plan_code": "pro-monthly"})))]
pub struct PlanChoiceRequest {
    /// The plan's code, as listed by GET /v1/plans.
    #[schema(value_type = String, required = true, pattern = "^[a-z0-9-]{1,40}$", examples("pro-monthly"))]
    pub plan_code: Option<String>,
}

/// `?plan_code=` of the proration preview.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PlanChoiceQuery {
    /// The plan's code.
    #[param(value_type = String, required = true, pattern = "^[a-z0-9-]{1,40}$", example = "pro-monthly")]
    pub plan_code: Option<String>,
}

/// POST /v1/subscriptions/me/cancel
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"at_period_end": true})))]
pub struct CancelSubscriptionRequest {
    /// True: end at the period's end; false: end now.
    #[schema(value_type = bool, required = true)]
    pub at_period_end: Option<bool>,
}

/// One invoice line.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = InvoiceLine)]
pub struct InvoiceLineView {
    /// What for.
    #[schema(examples("Pro (monthly), 2026-11-01 to 2026-12-01"))]
    pub description: String,
    /// Signed amount (credits are negative).
    pub amount: MoneyView,
}

impl From<InvoiceLine> for InvoiceLineView {
    fn from(line: InvoiceLine) -> Self {
        Self {
            description: line.description,
            amount: line.amount.into(),
        }
    }
}

/// An invoice as clients see it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Invoice)]
pub struct InvoiceView {
    /// Identifier.
    pub id: Uuid,
    /// The subscription it belongs to.
    pub subscription_id: Uuid,
    /// `subscription`, `proration` or `renewal`.
    #[schema(schema_with = invoice_kind)]
    pub kind: &'static str,
    /// The lines.
    pub lines: Vec<InvoiceLineView>,
    /// Sum of the lines (negative for a net credit).
    pub total: MoneyView,
    /// Start of the time it covers.
    #[serde(serialize_with = "rfc3339")]
    pub period_start: DateTime<Utc>,
    /// End of the time it covers.
    #[serde(serialize_with = "rfc3339")]
    pub period_end: DateTime<Utc>,
    /// Issue time.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

impl From<Invoice> for InvoiceView {
    fn from(invoice: Invoice) -> Self {
        Self {
            id: invoice.id.0,
            subscription_id: invoice.subscription_id.0,
            kind: invoice.kind.as_str(),
            lines: invoice.lines.into_iter().map(Into::into).collect(),
            total: invoice.total.into(),
            period_start: invoice.period_start,
            period_end: invoice.period_end,
            created_at: invoice.created_at,
        }
    }
}

/// A subscription as clients see it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Subscription)]
pub struct SubscriptionView {
    /// Identifier.
    pub id: Uuid,
    /// The current plan.
    #[schema(examples("pro-monthly"))]
    pub plan_code: String,
    /// `active` or `cancelled`.
    #[schema(schema_with = subscription_status)]
    pub status: &'static str,
    /// Start of the period being billed.
    #[serde(serialize_with = "rfc3339")]
    pub current_period_start: DateTime<Utc>,
    /// End of the period being billed; it renews (or ends) then.
    #[serde(serialize_with = "rfc3339")]
    pub current_period_end: DateTime<Utc>,
    /// Ends at the period's end instead of renewing.
    pub cancel_at_period_end: bool,
    /// When it ended.
    #[serde(serialize_with = "rfc3339_opt")]
    #[schema(required = true)]
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Creation time.
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

impl From<Subscription> for SubscriptionView {
    fn from(subscription: Subscription) -> Self {
        Self {
            id: subscription.id.0,
            plan_code: subscription.plan_code.into(),
            status: subscription.status.as_str(),
            current_period_start: subscription.current_period_start,
            current_period_end: subscription.current_period_end,
            cancel_at_period_end: subscription.cancel_at_period_end,
            cancelled_at: subscription.cancelled_at,
            created_at: subscription.created_at,
            updated_at: subscription.updated_at,
        }
    }
}

/// A new subscription with the invoice of its first period.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SubscriptionWithInvoice)]
pub struct SubscribedView {
    /// The subscription.
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    /// The invoice of the first period.
    pub latest_invoice: InvoiceView,
}

impl From<BilledSubscription> for SubscribedView {
    fn from(billed: BilledSubscription) -> Self {
        Self {
            subscription: billed.subscription.into(),
            latest_invoice: billed.invoice.into(),
        }
    }
}

/// What a plan change would cost now.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProrationPreview)]
pub struct ProrationView {
    /// The current plan's code.
    #[schema(examples("basic-monthly"))]
    pub from_plan: String,
    /// The new plan's code.
    #[schema(examples("pro-monthly"))]
    pub to_plan: String,
    /// The instant it is computed for.
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    /// End of the current period.
    #[serde(serialize_with = "rfc3339")]
    pub period_end: DateTime<Utc>,
    /// Whole seconds left in the period.
    #[schema(minimum = 0, examples(1296000))]
    pub remaining_seconds: i64,
    /// Credit for the unused time of the current plan (negative).
    pub credit: MoneyView,
    /// Charge for the remaining time on the new plan.
    pub charge: MoneyView,
    /// What the change would invoice: `charge + credit`.
    pub total: MoneyView,
    /// The invoice lines a change now would issue.
    pub lines: Vec<InvoiceLineView>,
}

impl From<ProrationPreview> for ProrationView {
    fn from(preview: ProrationPreview) -> Self {
        Self {
            from_plan: preview.from.code.into(),
            to_plan: preview.to.code.into(),
            at: preview.at,
            period_end: preview.period_end,
            remaining_seconds: preview.proration.remaining_seconds,
            credit: preview.proration.credit.into(),
            charge: preview.proration.charge.into(),
            total: preview.proration.total.into(),
            lines: preview.lines.into_iter().map(Into::into).collect(),
        }
    }
}

/// A plan's billing interval.
fn plan_interval() -> utoipa::openapi::schema::Object {
    one_of(
        &[
            BillingInterval::Month.as_str(),
            BillingInterval::Year.as_str(),
        ],
        "`month` or `year`.",
    )
}

/// What an invoice is for.
fn invoice_kind() -> utoipa::openapi::schema::Object {
    one_of(
        &[
            InvoiceKind::Subscription.as_str(),
            InvoiceKind::Proration.as_str(),
            InvoiceKind::Renewal.as_str(),
        ],
        "`subscription` (first period), `proration` (plan change) or `renewal`.",
    )
}

/// A subscription's status.
fn subscription_status() -> utoipa::openapi::schema::Object {
    one_of(
        &[
            SubscriptionStatus::Active.as_str(),
            SubscriptionStatus::Cancelled.as_str(),
        ],
        "`active` or `cancelled`.",
    )
}
