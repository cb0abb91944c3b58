//! Plans, subscriptions and invoices.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use strata_domain::{
    BilledSubscription, Invoice, InvoiceId, Plan, PlanCode, Subscription, SubscriptionId, UserId,
};

use crate::PortError;
use crate::orders::IdempotencyClaim;

/// The plans on offer.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait PlanRepository: Send + Sync + 'static {
    /// Every plan, active or not, by code.
    async fn list(&self) -> Result<Vec<Plan>, PortError>;
    /// The plan with this code, active or not; `Ok(None)` when there is none.
    async fn find(&self, code: &PlanCode) -> Result<Option<Plan>, PortError>;
}

/// A new subscription with its first invoice, stored together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    /// The subscription and its first invoice.
    pub billed: BilledSubscription,
    /// The client's Idempotency-Key, if it sent one.
    pub idempotency: Option<IdempotencyClaim>,
}

/// A plan change with its proration invoice, stored together if the subscription is still as the
/// caller read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanChange {
    /// The subscription after the change (new plan, `updated_at`), and the proration invoice.
    pub billed: BilledSubscription,
    /// The plan the caller saw: the change applies only if it is still the current plan ...
    pub expected_plan: PlanCode,
    /// ... and the period has not moved on since.
    pub expected_period_start: DateTime<Utc>,
    /// The client's Idempotency-Key, if it sent one.
    pub idempotency: Option<IdempotencyClaim>,
}

/// What a keyed write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded<T> {
    /// Done now.
    Created(T),
    /// The key was used before with the same request: the first result and no new effect.
    Replayed(T),
}

/// Why a subscription write was refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionWriteError {
    /// The user has a non-cancelled subscription already (subscribe).
    #[error("already subscribed")]
    AlreadySubscribed,
    /// The subscription changed since it was read, or is no longer active (change plan).
    #[error("the subscription changed meanwhile")]
    Stale,
    /// The Idempotency-Key was used before with a different request.
    #[error("idempotency key reused with a different request")]
    KeyReused,
    /// Infrastructure failure.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// What one renewal pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenewalPass {
    /// Subscriptions that got a new period and a renewal invoice.
    pub renewed: usize,
    /// Subscriptions marked to end at the period's end that ended.
    pub cancelled: usize,
    /// Due subscriptions set aside because the renewal could not read or decide on them (each
    /// logged with its reason, and skipped by later passes until repaired).
    pub quarantined: usize,
    /// Due subscriptions looked at (renewed + cancelled + quarantined + skipped); a full batch
    /// means more may be due.
    pub examined: usize,
}

/// The keyset position of an invoice in a user's list (newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvoicePageKey {
    /// `created_at` of the last invoice of the previous page.
    pub created_at: DateTime<Utc>,
    /// `id` of the last invoice of the previous page.
    pub id: InvoiceId,
}

/// Durable storage of subscriptions and their invoices.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait SubscriptionRepository: Send + Sync + 'static {
    /// In one transaction: claims the Idempotency-Key (a concurrent duplicate waits, then
    /// replays), stores the subscription and its first invoice. A second non-cancelled
    /// subscription of the same user is [`SubscriptionWriteError::AlreadySubscribed`] (a partial
    /// unique index guarantees it).
    async fn create(
        &self,
        new: &NewSubscription,
    ) -> Result<Recorded<BilledSubscription>, SubscriptionWriteError>;
    /// The earlier result recorded under `claim`'s key for `user_id`, if the key was used and has
    /// not expired: `Ok(Some)` to replay, [`SubscriptionWriteError::KeyReused`] when it was used
    /// for another request, `Ok(None)` when it is free. A read-only check before the work, so that
    /// a retry after success replays even though the state it was validated against has moved on.
    async fn find_replay(
        &self,
        user_id: UserId,
        claim: &IdempotencyClaim,
    ) -> Result<Option<BilledSubscription>, SubscriptionWriteError>;
    /// The user's non-cancelled subscription, or else the most recent one; `Ok(None)` if none.
    async fn current(&self, user_id: UserId) -> Result<Option<Subscription>, PortError>;
    /// In one transaction: claims the key, applies the change if the subscription is still as
    /// expected (else [`SubscriptionWriteError::Stale`]) and stores the proration invoice.
    async fn change_plan(
        &self,
        change: &PlanChange,
    ) -> Result<Recorded<BilledSubscription>, SubscriptionWriteError>;
    /// Ends the subscription now, or marks it to end at the period's end. `Ok(None)` when it is
    /// not active.
    async fn cancel(
        &self,
        id: SubscriptionId,
        at_period_end: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>, PortError>;
    /// Renews (or ends, when so marked) up to `limit` subscriptions whose period ended by `now`,
    /// each by the domain's `decide_renewal`, skipping rows another worker holds (`FOR UPDATE
    /// SKIP LOCKED`). A renewal invoice is unique per (subscription, period), so a period is
    /// billed once however many workers run.
    async fn renew_due(&self, now: DateTime<Utc>, limit: usize) -> Result<RenewalPass, PortError>;
    /// Up to `limit` of the user's invoices after `after`, newest first.
    async fn invoices(
        &self,
        user_id: UserId,
        after: Option<InvoicePageKey>,
        limit: usize,
    ) -> Result<Vec<Invoice>, PortError>;
}
