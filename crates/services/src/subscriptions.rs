//! Plans, the caller's subscription, proration previews and plan changes, and invoices.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_domain::{
    BilledSubscription, FieldError, Invoice, InvoiceId, InvoiceKind, InvoiceLine, PageLimit, Plan,
    PlanCode, Proration, ProrationError, Subscription, SubscriptionId, SubscriptionStatus,
    ValidationErrors, period_description, prorate,
};
use strata_ports::{
    Cache, Clock, IdGenerator, IdempotencyClaim, InvoicePageKey, NewSubscription, PlanChange,
    PlanRepository, PortError, Recorded, SubscriptionRepository, SubscriptionWriteError,
};
use uuid::Uuid;

use crate::auth::Principal;
use crate::cache_aside::CacheAside;
use crate::cursor::CursorCodec;
use crate::failure::Failure;
use crate::idempotency;
use crate::users::Page;

/// What a caller of [`SubscriptionService`] must handle.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// Some fields are invalid; every one is listed.
    #[error("invalid input")]
    Validation(#[from] ValidationErrors),
    /// The caller has no subscription (or none that is active, where one is needed).
    #[error("no active subscription")]
    NotFound,
    /// The caller has a non-cancelled subscription already.
    #[error("already subscribed")]
    AlreadySubscribed,
    /// The caller is on this plan already.
    #[error("already on this plan")]
    SamePlan,
    /// The subscription changed while the request was being handled; retrying is safe.
    #[error("the subscription changed meanwhile")]
    Stale,
    /// The subscription is not active.
    #[error("the subscription is not active")]
    NotActive,
    /// The Idempotency-Key was used with a different request.
    #[error("idempotency key reused with a different request")]
    KeyReused,
    /// Infrastructure failure.
    #[error(transparent)]
    Failure(#[from] Failure),
}

impl From<PortError> for BillingError {
    fn from(error: PortError) -> Self {
        BillingError::Failure(error.into())
    }
}

impl From<SubscriptionWriteError> for BillingError {
    fn from(error: SubscriptionWriteError) -> Self {
        match error {
            SubscriptionWriteError::AlreadySubscribed => BillingError::AlreadySubscribed,
            SubscriptionWriteError::Stale => BillingError::Stale,
            SubscriptionWriteError::KeyReused => BillingError::KeyReused,
            SubscriptionWriteError::Port(error) => error.into(),
        }
    }
}

/// A subscription and the invoice an operation issued, and whether this answer is a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingOutcome {
    /// The subscription and its invoice, as first recorded.
    pub billed: BilledSubscription,
    /// True when the Idempotency-Key had been used already: nothing new happened.
    pub replayed: bool,
}

impl From<Recorded<BilledSubscription>> for BillingOutcome {
    fn from(recorded: Recorded<BilledSubscription>) -> Self {
        match recorded {
            Recorded::Created(billed) => Self {
                billed,
                replayed: false,
            },
            Recorded::Replayed(billed) => Self {
                billed,
                replayed: true,
            },
        }
    }
}

/// What a plan change would do now: the proration and the invoice it would issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProrationPreview {
    /// The plan now.
    pub from: Plan,
    /// The plan after the change.
    pub to: Plan,
    /// Credit, charge and total.
    pub proration: Proration,
    /// The invoice lines a change at this instant issues.
    pub lines: Vec<InvoiceLine>,
    /// The instant it was computed for.
    pub at: DateTime<Utc>,
    /// The end of the current period (the changed plan renews from then).
    pub period_end: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct InvoicesCursor {
    at: DateTime<Utc>,
    id: Uuid,
}

/// Where a page of plans ends: the last plan's code (the list is ordered by code, which is unique).
#[derive(Serialize, Deserialize)]
struct PlansCursor {
    code: String,
}

const PLANS_KEY: &str = "plans:all";
const PLANS_CURSOR_SCOPE: &str = "plans";
const CREATE_OPERATION: &str = "subscriptions.create";
const CHANGE_OPERATION: &str = "subscriptions.change_plan";

/// The subscription use cases.
pub struct SubscriptionService {
    plans: Arc<dyn PlanRepository>,
    subscriptions: Arc<dyn SubscriptionRepository>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    cursors: CursorCodec,
    plan_cache: CacheAside<Vec<Plan>>,
    idempotency_window: Duration,
}

impl SubscriptionService {
    /// Wires the service to its ports; the plan list is cached for `ttl`, an Idempotency-Key
    /// replays for `idempotency_window`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        plans: Arc<dyn PlanRepository>,
        subscriptions: Arc<dyn SubscriptionRepository>,
        cache: Arc<dyn Cache>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        cursors: CursorCodec,
        ttl: Duration,
        idempotency_window: Duration,
    ) -> Self {
        Self {
            plans,
            subscriptions,
            clock,
            ids,
            cursors,
            plan_cache: CacheAside::new("plans", cache, ttl),
            idempotency_window,
        }
    }

    async fn all_plans(&self) -> Result<Vec<Plan>, BillingError> {
        let plans = self
            .plan_cache
            .get_or_load(PLANS_KEY, || async { self.plans.list().await.map(Some) })
            .await?;
        Ok(plans.unwrap_or_default())
    }

    /// The plans on offer (active ones), cached.
    pub async fn plans(&self) -> Result<Vec<Plan>, BillingError> {
        let mut plans = self.all_plans().await?;
        plans.retain(|plan| plan.active);
        Ok(plans)
    }

    /// A page of the plans on offer, by code: `limit` plans (1–100, default 20) after `cursor`.
    /// The page is cut from the cached list by key (the codes after the cursor's), not by
    /// position, so it is stable while plans come and go, like every other list; the list stays
    /// one cached value because plan changes read it whole.
    pub async fn plan_page(
        &self,
        cursor: Option<&str>,
        limit: Option<&str>,
    ) -> Result<Page<Plan>, BillingError> {
        let mut errors = ValidationErrors::new();
        let limit = errors.check("limit", PageLimit::parse(limit));
        let after = match cursor {
            None => Some(None),
            Some(raw) => errors.check(
                "cursor",
                self.cursors
                    .decode::<PlansCursor>(PLANS_CURSOR_SCOPE, raw)
                    .map(|cursor| Some(cursor.code))
                    .map_err(|_| {
                        FieldError::new("cursor", "invalid_cursor", "is not a cursor of this list")
                    }),
            ),
        };
        let (Some(limit), Some(after)) = (limit, after) else {
            return Err(errors.into());
        };
        let mut offered = self.plans().await?;
        // The cursor's key is the order's: sorted here rather than trusted to the adapter.
        offered.sort_by(|a, b| a.code.as_str().cmp(b.code.as_str()));
        let items = offered
            .into_iter()
            .filter(|plan| {
                after
                    .as_deref()
                    .is_none_or(|after| plan.code.as_str() > after)
            })
            .take(limit.get() + 1)
            .collect();
        Ok(Page::cut(items, limit, |last| {
            self.cursors.encode(
                PLANS_CURSOR_SCOPE,
                &PlansCursor {
                    code: last.code.as_str().to_owned(),
                },
            )
        }))
    }

    /// The active plan named by `raw`, or a validation error on `plan_code`.
    async fn plan_for_change(&self, raw: Option<&str>) -> Result<Plan, BillingError> {
        let field = |code, message: &str| {
            BillingError::Validation(ValidationErrors::single(FieldError::new(
                "plan_code",
                code,
                message,
            )))
        };
        let Some(raw) = raw else {
            return Err(field("required", "is required"));
        };
        let code = PlanCode::parse(raw).map_err(ValidationErrors::single)?;
        self.all_plans()
            .await?
            .into_iter()
            .find(|plan| plan.code == code && plan.active)
            .ok_or_else(|| field("not_found", "is not a plan on offer; see GET /v1/plans"))
    }

    /// Subscribes the caller to a plan: the first period starts now and is invoiced at once.
    pub async fn subscribe(
        &self,
        principal: &Principal,
        plan_code: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<BillingOutcome, BillingError> {
        let key = idempotency::parse_key(idempotency_key);
        let plan = self.plan_for_change(plan_code).await;
        let (key, plan) = collect(key, plan)?;
        let now = self.clock.now();
        let end = plan
            .interval
            .advance(now, 1)
            .ok_or_else(|| Failure::Unexpected(anyhow::anyhow!("period end out of range")))?;
        let subscription = Subscription {
            id: SubscriptionId(self.ids.new_id()),
            user_id: principal.user_id,
            plan_code: plan.code.clone(),
            status: SubscriptionStatus::Active,
            anchor: now,
            current_period_start: now,
            current_period_end: end,
            cancel_at_period_end: false,
            cancelled_at: None,
            created_at: now,
            updated_at: now,
        };
        let invoice = Invoice {
            id: InvoiceId(self.ids.new_id()),
            user_id: principal.user_id,
            subscription_id: subscription.id,
            kind: InvoiceKind::Subscription,
            lines: vec![InvoiceLine {
                description: period_description(&plan, now, end),
                amount: plan.price.money(),
            }],
            total: plan.price.money(),
            period_start: now,
            period_end: end,
            created_at: now,
        };
        let idempotency = key
            .map(|key| {
                idempotency::claim(
                    key,
                    CREATE_OPERATION,
                    &[plan.code.as_str().as_bytes()],
                    now,
                    self.idempotency_window,
                )
            })
            .transpose()?;
        let new = NewSubscription {
            billed: BilledSubscription {
                subscription,
                invoice,
            },
            idempotency,
        };
        Ok(self.subscriptions.create(&new).await?.into())
    }

    /// The caller's subscription: the live one, else the most recent.
    pub async fn current(&self, principal: &Principal) -> Result<Subscription, BillingError> {
        self.subscriptions
            .current(principal.user_id)
            .await?
            .ok_or(BillingError::NotFound)
    }

    async fn active(&self, principal: &Principal) -> Result<Subscription, BillingError> {
        let subscription = self.current(principal).await?;
        if subscription.status != SubscriptionStatus::Active {
            return Err(BillingError::NotFound);
        }
        Ok(subscription)
    }

    /// What changing to `plan_code` would cost now; changes nothing.
    pub async fn preview(
        &self,
        principal: &Principal,
        plan_code: Option<&str>,
    ) -> Result<ProrationPreview, BillingError> {
        let to = self.plan_for_change(plan_code).await?;
        let subscription = self.active(principal).await?;
        self.prorated(&subscription, to, self.clock.now()).await
    }

    async fn prorated(
        &self,
        subscription: &Subscription,
        to: Plan,
        at: DateTime<Utc>,
    ) -> Result<ProrationPreview, BillingError> {
        if subscription.plan_code == to.code {
            return Err(BillingError::SamePlan);
        }
        let from = self
            .all_plans()
            .await?
            .into_iter()
            .find(|plan| plan.code == subscription.plan_code)
            .ok_or_else(|| {
                Failure::Unexpected(anyhow::anyhow!(
                    "subscription {} is on unknown plan {}",
                    subscription.id,
                    subscription.plan_code
                ))
            })?;
        let proration = prorate(
            &from,
            &to,
            subscription.current_period_start,
            subscription.current_period_end,
            at,
        )
        .map_err(|error| match error {
            ProrationError::CurrencyMismatch => {
                BillingError::Validation(ValidationErrors::single(FieldError::new(
                    "plan_code",
                    "currency_mismatch",
                    "is priced in another currency than the current plan",
                )))
            }
            // The period ended and renewal has not run yet: the change must wait for it.
            ProrationError::OutsidePeriod => BillingError::Stale,
        })?;
        let end = subscription.current_period_end.format("%Y-%m-%d");
        let lines = vec![
            InvoiceLine {
                description: format!("Unused time on {} until {end}", from.name),
                amount: proration.credit,
            },
            InvoiceLine {
                description: format!("Remaining time on {} until {end}", to.name),
                amount: proration.charge,
            },
        ];
        Ok(ProrationPreview {
            from,
            to,
            proration,
            lines,
            at,
            period_end: subscription.current_period_end,
        })
    }

    /// Moves the caller to another plan now: the period stays, the difference is invoiced at
    /// once (the invoice equals the preview for the same instant).
    pub async fn change_plan(
        &self,
        principal: &Principal,
        plan_code: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<BillingOutcome, BillingError> {
        let key = idempotency::parse_key(idempotency_key);
        let to = self.plan_for_change(plan_code).await;
        let (key, to) = collect(key, to)?;
        let now = self.clock.now();
        let idempotency: Option<IdempotencyClaim> = key
            .map(|key| {
                idempotency::claim(
                    key,
                    CHANGE_OPERATION,
                    &[to.code.as_str().as_bytes()],
                    now,
                    self.idempotency_window,
                )
            })
            .transpose()?;
        // A retry after success finds the subscription already on the new plan: answer it from
        // the record before validating against the new state.
        if let Some(claim) = &idempotency
            && let Some(billed) = self
                .subscriptions
                .find_replay(principal.user_id, claim)
                .await?
        {
            return Ok(BillingOutcome {
                billed,
                replayed: true,
            });
        }
        let subscription = self.active(principal).await?;
        let preview = self.prorated(&subscription, to, now).await?;
        let mut changed = subscription.clone();
        changed.plan_code = preview.to.code.clone();
        changed.updated_at = now;
        let invoice = Invoice {
            id: InvoiceId(self.ids.new_id()),
            user_id: principal.user_id,
            subscription_id: subscription.id,
            kind: InvoiceKind::Proration,
            lines: preview.lines,
            total: preview.proration.total,
            period_start: now,
            period_end: subscription.current_period_end,
            created_at: now,
        };
        let change = PlanChange {
            billed: BilledSubscription {
                subscription: changed,
                invoice,
            },
            expected_plan: subscription.plan_code,
            expected_period_start: subscription.current_period_start,
            idempotency,
        };
        Ok(self.subscriptions.change_plan(&change).await?.into())
    }

    /// Ends the caller's subscription now, or at the end of the period.
    pub async fn cancel(
        &self,
        principal: &Principal,
        at_period_end: Option<bool>,
    ) -> Result<Subscription, BillingError> {
        let Some(at_period_end) = at_period_end else {
            return Err(ValidationErrors::single(FieldError::new(
                "at_period_end",
                "required",
                "is required: true to end at the period's end, false to end now",
            ))
            .into());
        };
        let subscription = self.current(principal).await?;
        if subscription.status != SubscriptionStatus::Active {
            return Err(BillingError::NotActive);
        }
        self.subscriptions
            .cancel(subscription.id, at_period_end, self.clock.now())
            .await?
            .ok_or(BillingError::NotActive)
    }

    /// The caller's invoices, newest first.
    pub async fn invoices(
        &self,
        principal: &Principal,
        cursor: Option<&str>,
        limit: Option<&str>,
    ) -> Result<Page<Invoice>, BillingError> {
        let mut errors = ValidationErrors::new();
        let limit = errors.check("limit", PageLimit::parse(limit));
        let scope = format!("invoices:{}", principal.user_id);
        let after = match cursor {
            None => None,
            Some(raw) => match self.cursors.decode::<InvoicesCursor>(&scope, raw) {
                Ok(cursor) => Some(InvoicePageKey {
                    created_at: cursor.at,
                    id: InvoiceId(cursor.id),
                }),
                Err(_) => {
                    errors.push(FieldError::new(
                        "cursor",
                        "invalid_cursor",
                        "is not a cursor of this list",
                    ));
                    None
                }
            },
        };
        let Some(limit) = limit else {
            return Err(errors.into());
        };
        errors.into_result()?;
        let items = self
            .subscriptions
            .invoices(principal.user_id, after, limit.get() + 1)
            .await?;
        Ok(Page::cut(items, limit, |last| {
            self.cursors.encode(
                &scope,
                &InvoicesCursor {
                    at: last.created_at,
                    id: last.id.0,
                },
            )
        }))
    }
}

/// Both results, or every validation error of the two at once.
fn collect<K, T>(
    key: Result<K, FieldError>,
    value: Result<T, BillingError>,
) -> Result<(K, T), BillingError> {
    match (key, value) {
        (Ok(key), Ok(value)) => Ok((key, value)),
        (Err(key_error), Err(BillingError::Validation(mut errors))) => {
            errors.0.insert(0, key_error);
            Err(errors.into())
        }
        (Err(key_error), _) => Err(ValidationErrors::single(key_error).into()),
        (Ok(_), Err(error)) => Err(error),
    }
}

#[cfg(test)]
mod tests;
