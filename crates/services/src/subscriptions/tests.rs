//! SubscriptionService against mockall mocks of every port.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use mockall::predicate::eq;
use strata_domain::{BillingInterval, Currency, IdempotencyKey, Money, Price, Role, UserId};
use strata_ports::{
    MockCache, MockClock, MockIdGenerator, MockPlanRepository, MockSubscriptionRepository,
};

use super::*;
use crate::test_support::{invalid_fields, pairs, principal, unavailable};

const TTL: Duration = Duration::from_secs(300);
const WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

fn at(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, hour, minute, second)
        .single()
        .expect("valid instant")
}

fn now() -> DateTime<Utc> {
    at(2026, 11, 21, 12, 0, 0)
}

fn currency(code: &str) -> Currency {
    Currency::parse(code).expect("currency")
}

fn plan_in(code: &str, minor: i64, cur: &str, interval: BillingInterval, active: bool) -> Plan {
    Plan {
        code: PlanCode::parse(code).expect("plan code"),
        name: format!("Plan {code}"),
        price: Price::new(minor, currency(cur)).expect("price"),
        interval,
        active,
    }
}

fn basic() -> Plan {
    plan_in("basic-monthly", 1_000, "USD", BillingInterval::Month, true)
}

fn pro() -> Plan {
    plan_in("pro-monthly", 3_000, "USD", BillingInterval::Month, true)
}

fn pro_yearly() -> Plan {
    plan_in("pro-yearly", 30_000, "USD", BillingInterval::Year, true)
}

/// Retired: no new subscriptions or changes to it, but existing subscribers keep it.
fn legacy() -> Plan {
    plan_in("legacy-monthly", 500, "USD", BillingInterval::Month, false)
}

fn euro() -> Plan {
    plan_in("euro-monthly", 2_000, "EUR", BillingInterval::Month, true)
}

/// Every plan the repository holds, active or not.
fn catalogue() -> Vec<Plan> {
    vec![basic(), pro(), pro_yearly(), legacy(), euro()]
}

fn offered() -> Vec<Plan> {
    catalogue().into_iter().filter(|plan| plan.active).collect()
}

/// An active subscription of `user` on `plan`, in its period from 1 November to 1 December 2026
/// (so [`now`] is 20.5 days into it).
fn subscription_on(user: UserId, plan: &Plan) -> Subscription {
    let start = at(2026, 11, 1, 0, 0, 0);
    Subscription {
        id: SubscriptionId(Uuid::now_v7()),
        user_id: user,
        plan_code: plan.code.clone(),
        status: SubscriptionStatus::Active,
        anchor: at(2026, 10, 1, 0, 0, 0),
        current_period_start: start,
        current_period_end: at(2026, 12, 1, 0, 0, 0),
        cancel_at_period_end: false,
        cancelled_at: None,
        created_at: at(2026, 10, 1, 0, 0, 0),
        updated_at: start,
    }
}

fn cancelled(mut subscription: Subscription) -> Subscription {
    subscription.status = SubscriptionStatus::Cancelled;
    subscription.cancelled_at = Some(at(2026, 11, 10, 0, 0, 0));
    subscription
}

/// A recorded subscription and invoice, as a repository would replay them.
fn billed_for(user: UserId, plan: &Plan) -> BilledSubscription {
    let subscription = subscription_on(user, plan);
    let invoice = Invoice {
        id: InvoiceId(Uuid::now_v7()),
        user_id: user,
        subscription_id: subscription.id,
        kind: InvoiceKind::Subscription,
        lines: vec![InvoiceLine {
            description: "earlier".into(),
            amount: plan.price.money(),
        }],
        total: plan.price.money(),
        period_start: subscription.current_period_start,
        period_end: subscription.current_period_end,
        created_at: subscription.current_period_start,
    };
    BilledSubscription {
        subscription,
        invoice,
    }
}

/// An invoice of `user` issued `seconds` after [`now`].
fn invoice_at(user: UserId, seconds: i64) -> Invoice {
    let created = now() + chrono::Duration::seconds(seconds);
    let usd = currency("USD");
    Invoice {
        id: InvoiceId(Uuid::now_v7()),
        user_id: user,
        subscription_id: SubscriptionId(Uuid::now_v7()),
        kind: InvoiceKind::Renewal,
        lines: vec![InvoiceLine {
            description: "renewal".into(),
            amount: Money::new(1_000, usd),
        }],
        total: Money::new(1_000, usd),
        period_start: created,
        period_end: created,
        created_at: created,
    }
}

fn long_key() -> String {
    "k".repeat(300)
}

struct Ports {
    plans: MockPlanRepository,
    subscriptions: MockSubscriptionRepository,
    cache: MockCache,
    ids: MockIdGenerator,
    now: DateTime<Utc>,
}

impl Ports {
    fn new() -> Self {
        Self {
            plans: MockPlanRepository::new(),
            subscriptions: MockSubscriptionRepository::new(),
            cache: MockCache::new(),
            ids: MockIdGenerator::new(),
            now: now(),
        }
    }

    /// Ports whose plan list is always a cache miss answered by the repository with `plans`.
    fn with_plans(plans: Vec<Plan>) -> Self {
        let mut ports = Self::new();
        ports.cache.expect_get().returning(|_| Ok(None));
        ports.cache.expect_set().returning(|_, _, _| Ok(()));
        ports
            .plans
            .expect_list()
            .returning(move || Ok(plans.clone()));
        ports
    }

    /// Ids 1, 2, 3, ... in call order.
    fn sequential_ids(&mut self) {
        let next = Arc::new(Mutex::new(0u128));
        self.ids.expect_new_id().returning(move || {
            let mut n = next.lock().expect("lock");
            *n += 1;
            Uuid::from_u128(*n)
        });
    }

    fn service(self) -> SubscriptionService {
        let mut clock = MockClock::new();
        let instant = self.now;
        clock.expect_now().returning(move || instant);
        SubscriptionService::new(
            Arc::new(self.plans),
            Arc::new(self.subscriptions),
            Arc::new(self.cache),
            Arc::new(clock),
            Arc::new(self.ids),
            CursorCodec::new(b"test cursor key"),
            TTL,
            WINDOW,
        )
    }

    /// No write of any kind may reach the repository.
    fn expect_no_writes(&mut self) {
        self.subscriptions.expect_create().never();
        self.subscriptions.expect_change_plan().never();
        self.subscriptions.expect_cancel().never();
        self.subscriptions.expect_renew_due().never();
    }
}

// ---------------------------------------------------------------------------------------------
// plans

#[tokio::test]
async fn cached_plans_are_served_without_reading_the_repository() {
    let json = serde_json::to_string(&catalogue()).expect("json");
    let mut ports = Ports::new();
    ports
        .cache
        .expect_get()
        .with(eq("plans:all"))
        .times(1)
        .returning(move |_| Ok(Some(json.clone())));
    ports.plans.expect_list().never();
    ports.cache.expect_set().never();
    assert_eq!(ports.service().plans().await.expect("plans"), offered());
}

#[tokio::test]
async fn a_plan_cache_miss_lists_the_repository_and_stores_every_plan_for_the_ttl() {
    let mut ports = Ports::new();
    ports
        .cache
        .expect_get()
        .with(eq("plans:all"))
        .times(1)
        .returning(|_| Ok(None));
    ports
        .plans
        .expect_list()
        .times(1)
        .returning(|| Ok(catalogue()));
    ports
        .cache
        .expect_set()
        .withf(|key: &str, value: &str, ttl: &Duration| {
            key == "plans:all"
                && *ttl == TTL
                && serde_json::from_str::<Vec<Plan>>(value).is_ok_and(|plans| plans == catalogue())
        })
        .times(1)
        .returning(|_, _, _| Ok(()));
    let plans = ports.service().plans().await.expect("plans");
    assert_eq!(plans, offered());
    assert!(plans.iter().all(|plan| plan.active));
    assert!(!plans.contains(&legacy()));
}

#[tokio::test]
async fn an_unreachable_cache_still_answers_the_plans_from_the_repository() {
    let mut ports = Ports::new();
    ports
        .cache
        .expect_get()
        .times(1)
        .returning(|_| Err(unavailable()));
    ports
        .plans
        .expect_list()
        .times(1)
        .returning(|| Ok(catalogue()));
    ports
        .cache
        .expect_set()
        .times(1)
        .returning(|_, _, _| Err(unavailable()));
    assert_eq!(ports.service().plans().await.expect("plans"), offered());
}

#[tokio::test]
async fn a_repository_failure_listing_plans_is_a_failure() {
    let mut ports = Ports::new();
    ports.cache.expect_get().returning(|_| Ok(None));
    ports
        .plans
        .expect_list()
        .times(1)
        .returning(|| Err(unavailable()));
    ports.cache.expect_set().never();
    let result = ports.service().plans().await;
    assert!(
        matches!(result, Err(BillingError::Failure(Failure::Unavailable(_)))),
        "{result:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// subscribe

#[tokio::test]
async fn subscribing_without_an_offered_plan_is_a_validation_error_on_plan_code() {
    let mut ports = Ports::with_plans(catalogue());
    ports.subscriptions.expect_create().never();
    ports.ids.expect_new_id().never();
    let service = ports.service();
    let caller = principal(Role::Customer);
    for (raw, code) in [
        (None, "required"),
        (Some(""), "invalid_plan_code"),
        (Some("Pro Monthly"), "invalid_plan_code"),
        (Some("gold-monthly"), "not_found"),
        (Some("legacy-monthly"), "not_found"),
    ] {
        let result = service.subscribe(&caller, raw, Some("key-1")).await;
        assert_eq!(
            invalid_fields(result),
            pairs(&[("plan_code", code)]),
            "{raw:?}"
        );
    }
}

#[tokio::test]
async fn an_invalid_key_and_a_bad_plan_are_reported_together() {
    let mut ports = Ports::with_plans(catalogue());
    ports.subscriptions.expect_create().never();
    ports.ids.expect_new_id().never();
    let service = ports.service();
    let caller = principal(Role::Customer);
    let key = long_key();
    for (raw, code) in [
        (None, "required"),
        (Some("NOPE"), "invalid_plan_code"),
        (Some("legacy-monthly"), "not_found"),
    ] {
        let result = service.subscribe(&caller, raw, Some(&key)).await;
        assert_eq!(
            invalid_fields(result),
            pairs(&[
                ("Idempotency-Key", "invalid_idempotency_key"),
                ("plan_code", code),
            ]),
            "{raw:?}"
        );
    }
    let result = service
        .subscribe(&caller, Some("pro-monthly"), Some(&key))
        .await;
    assert_eq!(
        invalid_fields(result),
        pairs(&[("Idempotency-Key", "invalid_idempotency_key")])
    );
}

/// Subscribes to `plan` at `instant` with the key `key-1` and returns what reached the repository.
async fn subscription_sent(plan: &Plan, instant: DateTime<Utc>) -> NewSubscription {
    let caller = principal(Role::Customer);
    let seen: Arc<Mutex<Option<NewSubscription>>> = Arc::default();
    let mut ports = Ports::with_plans(catalogue());
    ports.now = instant;
    ports.sequential_ids();
    let recorder = seen.clone();
    ports
        .subscriptions
        .expect_create()
        .times(1)
        .returning(move |new| {
            *recorder.lock().expect("lock") = Some(new.clone());
            Ok(Recorded::Created(new.billed.clone()))
        });
    let outcome = ports
        .service()
        .subscribe(&caller, Some(plan.code.as_str()), Some("key-1"))
        .await
        .expect("subscribed");
    let sent = seen.lock().expect("lock").take().expect("a create");
    assert_eq!(outcome.billed, sent.billed);
    assert!(!outcome.replayed);
    assert_eq!(sent.billed.subscription.user_id, caller.user_id);
    assert_eq!(sent.billed.invoice.user_id, caller.user_id);
    sent
}

#[tokio::test]
async fn subscribing_starts_the_first_period_now_and_invoices_the_plan_price() {
    let plan = pro();
    let sent = subscription_sent(&plan, now()).await;
    let BilledSubscription {
        subscription,
        invoice,
    } = sent.billed;
    let end = at(2026, 12, 21, 12, 0, 0);
    assert_eq!(
        subscription,
        Subscription {
            id: SubscriptionId(Uuid::from_u128(1)),
            user_id: subscription.user_id,
            plan_code: plan.code.clone(),
            status: SubscriptionStatus::Active,
            anchor: now(),
            current_period_start: now(),
            current_period_end: end,
            cancel_at_period_end: false,
            cancelled_at: None,
            created_at: now(),
            updated_at: now(),
        }
    );
    assert_eq!(
        invoice,
        Invoice {
            id: InvoiceId(Uuid::from_u128(2)),
            user_id: subscription.user_id,
            subscription_id: subscription.id,
            kind: InvoiceKind::Subscription,
            lines: vec![InvoiceLine {
                description: period_description(&plan, now(), end),
                amount: Money::new(3_000, currency("USD")),
            }],
            total: Money::new(3_000, currency("USD")),
            period_start: subscription.current_period_start,
            period_end: subscription.current_period_end,
            created_at: now(),
        }
    );
}

#[tokio::test]
async fn a_monthly_subscription_started_on_january_31_ends_on_the_last_day_of_february() {
    let sent = subscription_sent(&basic(), at(2027, 1, 31, 9, 30, 0)).await;
    let subscription = &sent.billed.subscription;
    assert_eq!(subscription.anchor, at(2027, 1, 31, 9, 30, 0));
    assert_eq!(subscription.current_period_end, at(2027, 2, 28, 9, 30, 0));
    assert_eq!(sent.billed.invoice.period_end, at(2027, 2, 28, 9, 30, 0));

    let leap = subscription_sent(&basic(), at(2028, 1, 31, 9, 30, 0)).await;
    assert_eq!(
        leap.billed.subscription.current_period_end,
        at(2028, 2, 29, 9, 30, 0)
    );
}

#[tokio::test]
async fn a_yearly_subscription_ends_twelve_months_later() {
    let sent = subscription_sent(&pro_yearly(), now()).await;
    assert_eq!(
        sent.billed.subscription.current_period_end,
        at(2027, 11, 21, 12, 0, 0)
    );
    assert_eq!(
        sent.billed.invoice.total,
        Money::new(30_000, currency("USD"))
    );
    assert_eq!(sent.billed.invoice.period_end, at(2027, 11, 21, 12, 0, 0));

    let leap_day = subscription_sent(&pro_yearly(), at(2028, 2, 29, 0, 0, 0)).await;
    assert_eq!(
        leap_day.billed.subscription.current_period_end,
        at(2029, 2, 28, 0, 0, 0)
    );
}

#[tokio::test]
async fn the_subscribe_claim_fingerprints_the_plan() {
    let first = subscription_sent(&pro(), now())
        .await
        .idempotency
        .expect("a claim");
    let same = subscription_sent(&pro(), now())
        .await
        .idempotency
        .expect("a claim");
    let other = subscription_sent(&basic(), now())
        .await
        .idempotency
        .expect("a claim");
    assert_eq!(first.key, IdempotencyKey::parse("key-1").expect("key"));
    assert_eq!(first.operation, "subscriptions.create");
    assert_eq!(first.expires_at, now() + chrono::Duration::hours(24));
    assert!(!first.fingerprint.is_empty());
    assert_eq!(first.fingerprint, same.fingerprint);
    assert_ne!(first.fingerprint, other.fingerprint);
}

#[tokio::test]
async fn without_a_key_no_claim_is_sent() {
    let mut ports = Ports::with_plans(catalogue());
    ports.sequential_ids();
    ports
        .subscriptions
        .expect_create()
        .withf(|new: &NewSubscription| new.idempotency.is_none())
        .times(1)
        .returning(|new| Ok(Recorded::Created(new.billed.clone())));
    let outcome = ports
        .service()
        .subscribe(&principal(Role::Customer), Some("basic-monthly"), None)
        .await
        .expect("subscribed");
    assert!(!outcome.replayed);
}

#[tokio::test]
async fn a_replayed_subscription_answers_the_first_record_flagged_as_a_replay() {
    let caller = principal(Role::Customer);
    let first = billed_for(caller.user_id, &pro());
    let expected = first.clone();
    let mut ports = Ports::with_plans(catalogue());
    ports.sequential_ids();
    ports
        .subscriptions
        .expect_create()
        .times(1)
        .returning(move |_| Ok(Recorded::Replayed(first.clone())));
    let outcome = ports
        .service()
        .subscribe(&caller, Some("pro-monthly"), Some("key-1"))
        .await
        .expect("replayed");
    assert_eq!(
        outcome,
        BillingOutcome {
            billed: expected,
            replayed: true
        }
    );
}

/// Subscribes against a repository that answers `error`.
async fn subscribe_failing_with(error: fn() -> SubscriptionWriteError) -> BillingError {
    let mut ports = Ports::with_plans(catalogue());
    ports.sequential_ids();
    ports
        .subscriptions
        .expect_create()
        .times(1)
        .returning(move |_| Err(error()));
    ports
        .service()
        .subscribe(
            &principal(Role::Customer),
            Some("pro-monthly"),
            Some("key-1"),
        )
        .await
        .expect_err("refused")
}

#[tokio::test]
async fn refusals_of_the_repository_on_subscribe_map_to_billing_errors() {
    let error = subscribe_failing_with(|| SubscriptionWriteError::AlreadySubscribed).await;
    assert!(
        matches!(error, BillingError::AlreadySubscribed),
        "{error:?}"
    );
    let error = subscribe_failing_with(|| SubscriptionWriteError::KeyReused).await;
    assert!(matches!(error, BillingError::KeyReused), "{error:?}");
    let error = subscribe_failing_with(|| SubscriptionWriteError::Port(unavailable())).await;
    assert!(
        matches!(error, BillingError::Failure(Failure::Unavailable(_))),
        "{error:?}"
    );
    let error = subscribe_failing_with(|| {
        SubscriptionWriteError::Port(PortError::unexpected(anyhow::anyhow!("bug")))
    })
    .await;
    assert!(
        matches!(error, BillingError::Failure(Failure::Unexpected(_))),
        "{error:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// current

#[tokio::test]
async fn current_without_any_subscription_is_not_found() {
    let caller = principal(Role::Customer);
    let mut ports = Ports::new();
    ports
        .subscriptions
        .expect_current()
        .with(eq(caller.user_id))
        .times(1)
        .returning(|_| Ok(None));
    let result = ports.service().current(&caller).await;
    assert!(matches!(result, Err(BillingError::NotFound)), "{result:?}");
}

#[tokio::test]
async fn current_answers_the_callers_subscription_whatever_its_status() {
    let caller = principal(Role::Customer);
    let ended = cancelled(subscription_on(caller.user_id, &pro()));
    let expected = ended.clone();
    let mut ports = Ports::new();
    ports
        .subscriptions
        .expect_current()
        .with(eq(caller.user_id))
        .times(1)
        .returning(move |_| Ok(Some(ended.clone())));
    assert_eq!(
        ports.service().current(&caller).await.expect("current"),
        expected
    );
}

// ---------------------------------------------------------------------------------------------
// preview

#[tokio::test]
async fn previewing_without_an_active_subscription_is_not_found() {
    let caller = principal(Role::Customer);
    let ended = cancelled(subscription_on(caller.user_id, &basic()));
    let mut ports = Ports::with_plans(catalogue());
    ports.expect_no_writes();
    ports
        .subscriptions
        .expect_current()
        .times(1)
        .returning(|_| Ok(None));
    ports
        .subscriptions
        .expect_current()
        .times(1)
        .returning(move |_| Ok(Some(ended.clone())));
    let service = ports.service();
    for _ in 0..2 {
        let result = service.preview(&caller, Some("pro-monthly")).await;
        assert!(matches!(result, Err(BillingError::NotFound)), "{result:?}");
    }
}

#[tokio::test]
async fn previewing_the_current_plan_is_same_plan() {
    let caller = principal(Role::Customer);
    let current = subscription_on(caller.user_id, &pro());
    let mut ports = Ports::with_plans(catalogue());
    ports.expect_no_writes();
    ports
        .subscriptions
        .expect_current()
        .returning(move |_| Ok(Some(current.clone())));
    let result = ports.service().preview(&caller, Some("pro-monthly")).await;
    assert!(matches!(result, Err(BillingError::SamePlan)), "{result:?}");
}

#[tokio::test]
async fn previewing_a_plan_not_on_offer_is_a_validation_error() {
    let caller = principal(Role::Customer);
    let mut ports = Ports::with_plans(catalogue());
    ports.expect_no_writes();
    ports.subscriptions.expect_current().never();
    let service = ports.service();
    for (raw, code) in [
        (None, "required"),
        (Some("x y"), "invalid_plan_code"),
        (Some("legacy-monthly"), "not_found"),
    ] {
        let result = service.preview(&caller, raw).await;
        assert_eq!(
            invalid_fields(result),
            pairs(&[("plan_code", code)]),
            "{raw:?}"
        );
    }
}

#[tokio::test]
async fn a_preview_is_the_domain_proration_at_the_clock_time_and_writes_nothing() {
    let caller = principal(Role::Customer);
    let current = subscription_on(caller.user_id, &basic());
    let (start, end) = (current.current_period_start, current.current_period_end);
    let mut ports = Ports::with_plans(catalogue());
    ports.expect_no_writes();
    ports.subscriptions.expect_find_replay().never();
    ports.ids.expect_new_id().never();
    ports
        .subscriptions
        .expect_current()
        .with(eq(caller.user_id))
        .times(1)
        .returning(move |_| Ok(Some(current.clone())));
    let preview = ports
        .service()
        .preview(&caller, Some("pro-monthly"))
        .await
        .expect("preview");

    let expected = prorate(&basic(), &pro(), start, end, now()).expect("proration");
    assert_eq!(preview.proration, expected);
    // 9.5 of 30 days remain: 1000 × 9.5/30 = 316.67, 3000 × 9.5/30 = 950.
    assert_eq!(preview.proration.credit.amount_minor, -317);
    assert_eq!(preview.proration.charge.amount_minor, 950);
    assert_eq!(preview.proration.total.amount_minor, 633);
    assert_eq!(preview.from, basic());
    assert_eq!(preview.to, pro());
    assert_eq!(preview.at, now());
    assert_eq!(preview.period_end, end);

    assert_eq!(preview.lines.len(), 2);
    let (credit, charge) = (&preview.lines[0], &preview.lines[1]);
    assert_eq!(credit.amount, expected.credit);
    assert!(credit.amount.amount_minor < 0);
    assert!(credit.description.contains(&basic().name));
    assert_eq!(charge.amount, expected.charge);
    assert!(charge.amount.amount_minor > 0);
    assert!(charge.description.contains(&pro().name));
    assert_eq!(
        credit.amount.amount_minor + charge.amount.amount_minor,
        preview.proration.total.amount_minor
    );
}

#[tokio::test]
async fn a_subscriber_on_a_retired_plan_can_preview_a_change() {
    let caller = principal(Role::Customer);
    let current = subscription_on(caller.user_id, &legacy());
    let (start, end) = (current.current_period_start, current.current_period_end);
    let mut ports = Ports::with_plans(catalogue());
    ports.expect_no_writes();
    ports
        .subscriptions
        .expect_current()
        .returning(move |_| Ok(Some(current.clone())));
    let preview = ports
        .service()
        .preview(&caller, Some("basic-monthly"))
        .await
        .expect("preview");
    assert_eq!(preview.from, legacy());
    assert_eq!(
        preview.proration,
        prorate(&legacy(), &basic(), start, end, now()).expect("proration")
    );
}

#[tokio::test]
async fn previewing_a_plan_in_another_currency_is_a_validation_error() {
    let caller = principal(Role::Customer);
    let current = subscription_on(caller.user_id, &basic());
    let mut ports = Ports::with_plans(catalogue());
    ports.expect_no_writes();
    ports
        .subscriptions
        .expect_current()
        .returning(move |_| Ok(Some(current.clone())));
    let result = ports.service().preview(&caller, Some("euro-monthly")).await;
    assert_eq!(
        invalid_fields(result),
        pairs(&[("plan_code", "currency_mismatch")])
    );
}

#[tokio::test]
async fn previewing_after_the_period_ended_but_before_renewal_is_stale() {
    let caller = principal(Role::Customer);
    let current = subscription_on(caller.user_id, &basic());
    let mut ports = Ports::with_plans(catalogue());
    ports.now = current.current_period_end + chrono::Duration::seconds(1);
    ports.expect_no_writes();
    ports
        .subscriptions
        .expect_current()
        .returning(move |_| Ok(Some(current.clone())));
    let result = ports.service().preview(&caller, Some("pro-monthly")).await;
    assert!(matches!(result, Err(BillingError::Stale)), "{result:?}");
}

// ---------------------------------------------------------------------------------------------
// change_plan

#[tokio::test]
async fn a_change_whose_key_was_used_replays_without_reading_or_writing() {
    let caller = principal(Role::Customer);
    let recorded = billed_for(caller.user_id, &pro());
    let expected = recorded.clone();
    let user_id = caller.user_id;
    let mut ports = Ports::with_plans(catalogue());
    ports.expect_no_writes();
    ports.subscriptions.expect_current().never();
    ports.ids.expect_new_id().never();
    ports
        .subscriptions
        .expect_find_replay()
        .withf(move |user: &UserId, claim: &IdempotencyClaim| {
            *user == user_id
                && claim.key.as_str() == "key-1"
                && claim.operation == "subscriptions.change_plan"
                && claim.expires_at == now() + chrono::Duration::hours(24)
        })
        .times(1)
        .returning(move |_, _| Ok(Some(recorded.clone())));
    let outcome = ports
        .service()
        .change_plan(&caller, Some("pro-monthly"), Some("key-1"))
        .await
        .expect("replayed");
    assert_eq!(
        outcome,
        BillingOutcome {
            billed: expected,
            replayed: true
        }
    );
}

#[tokio::test]
async fn a_change_key_used_for_another_request_is_refused_before_anything_is_read() {
    let mut ports = Ports::with_plans(catalogue());
    ports.expect_no_writes();
    ports.subscriptions.expect_current().never();
    ports
        .subscriptions
        .expect_find_replay()
        .times(1)
        .returning(|_, _| Err(SubscriptionWriteError::KeyReused));
    let result = ports
        .service()
        .change_plan(&principal(Role::Customer), Some("pro-monthly"), Some("k"))
        .await;
    assert!(matches!(result, Err(BillingError::KeyReused)), "{result:?}");
}

#[tokio::test]
async fn a_change_with_an_invalid_key_and_a_bad_plan_reports_both_and_reads_nothing() {
    let mut ports = Ports::with_plans(catalogue());
    ports.expect_no_writes();
    ports.subscriptions.expect_current().never();
    ports.subscriptions.expect_find_replay().never();
    let result = ports
        .service()
        .change_plan(&principal(Role::Customer), Some("gold"), Some(&long_key()))
        .await;
    assert_eq!(
        invalid_fields(result),
        pairs(&[
            ("Idempotency-Key", "invalid_idempotency_key"),
            ("plan_code", "not_found"),
        ])
    );
}

#[tokio::test]
async fn a_plan_change_keeps_the_period_and_invoices_exactly_the_preview() {
    let caller = principal(Role::Customer);
    let current = subscription_on(caller.user_id, &basic());
    let read = current.clone();
    let seen: Arc<Mutex<Option<PlanChange>>> = Arc::default();
    let recorder = seen.clone();
    let mut ports = Ports::with_plans(catalogue());
    ports.sequential_ids();
    ports.subscriptions.expect_create().never();
    ports.subscriptions.expect_cancel().never();
    ports
        .subscriptions
        .expect_find_replay()
        .times(1)
        .returning(|_, _| Ok(None));
    ports
        .subscriptions
        .expect_current()
        .with(eq(caller.user_id))
        .times(2)
        .returning(move |_| Ok(Some(read.clone())));
    ports
        .subscriptions
        .expect_change_plan()
        .times(1)
        .returning(move |change| {
            *recorder.lock().expect("lock") = Some(change.clone());
            Ok(Recorded::Created(change.billed.clone()))
        });
    let service = ports.service();
    let preview = service
        .preview(&caller, Some("pro-monthly"))
        .await
        .expect("preview");
    let outcome = service
        .change_plan(&caller, Some("pro-monthly"), Some("key-1"))
        .await
        .expect("changed");
    let change = seen.lock().expect("lock").take().expect("a change");

    assert!(!outcome.replayed);
    assert_eq!(outcome.billed, change.billed);
    assert_eq!(change.expected_plan, basic().code);
    assert_eq!(change.expected_period_start, current.current_period_start);

    let mut expected_subscription = current.clone();
    expected_subscription.plan_code = pro().code;
    expected_subscription.updated_at = now();
    assert_eq!(change.billed.subscription, expected_subscription);

    assert_eq!(
        change.billed.invoice,
        Invoice {
            id: InvoiceId(Uuid::from_u128(1)),
            user_id: caller.user_id,
            subscription_id: current.id,
            kind: InvoiceKind::Proration,
            lines: preview.lines.clone(),
            total: preview.proration.total,
            period_start: now(),
            period_end: current.current_period_end,
            created_at: now(),
        }
    );
    assert_eq!(change.billed.invoice.total.amount_minor, 633);

    let claim = change.idempotency.expect("a claim");
    assert_eq!(claim.key.as_str(), "key-1");
    assert_eq!(claim.operation, "subscriptions.change_plan");
    assert_eq!(claim.expires_at, now() + chrono::Duration::hours(24));
}

#[tokio::test]
async fn a_change_without_a_key_does_not_look_for_a_replay() {
    let caller = principal(Role::Customer);
    let current = subscription_on(caller.user_id, &pro());
    let mut ports = Ports::with_plans(catalogue());
    ports.sequential_ids();
    ports.subscriptions.expect_find_replay().never();
    ports
        .subscriptions
        .expect_current()
        .returning(move |_| Ok(Some(current.clone())));
    ports
        .subscriptions
        .expect_change_plan()
        .withf(|change: &PlanChange| {
            change.idempotency.is_none()
                && change.billed.subscription.plan_code == basic().code
                && change.billed.invoice.total.amount_minor < 0
        })
        .times(1)
        .returning(|change| Ok(Recorded::Created(change.billed.clone())));
    let outcome = ports
        .service()
        .change_plan(&caller, Some("basic-monthly"), None)
        .await
        .expect("downgraded");
    assert!(!outcome.replayed);
}

#[tokio::test]
async fn changing_to_the_current_plan_or_without_an_active_subscription_writes_nothing() {
    let caller = principal(Role::Customer);
    let on_pro = subscription_on(caller.user_id, &pro());
    let ended = cancelled(subscription_on(caller.user_id, &basic()));
    let mut ports = Ports::with_plans(catalogue());
    ports.expect_no_writes();
    ports
        .subscriptions
        .expect_find_replay()
        .returning(|_, _| Ok(None));
    ports
        .subscriptions
        .expect_current()
        .times(1)
        .returning(move |_| Ok(Some(on_pro.clone())));
    ports
        .subscriptions
        .expect_current()
        .times(1)
        .returning(|_| Ok(None));
    ports
        .subscriptions
        .expect_current()
        .times(1)
        .returning(move |_| Ok(Some(ended.clone())));
    let service = ports.service();
    let result = service
        .change_plan(&caller, Some("pro-monthly"), Some("key-1"))
        .await;
    assert!(matches!(result, Err(BillingError::SamePlan)), "{result:?}");
    for _ in 0..2 {
        let result = service
            .change_plan(&caller, Some("pro-monthly"), Some("key-1"))
            .await;
        assert!(matches!(result, Err(BillingError::NotFound)), "{result:?}");
    }
}

/// Changes basic → pro against a repository whose change answers `answer`.
async fn change_answered_with(
    answer: fn(&PlanChange) -> Result<Recorded<BilledSubscription>, SubscriptionWriteError>,
) -> Result<BillingOutcome, BillingError> {
    let caller = principal(Role::Customer);
    let current = subscription_on(caller.user_id, &basic());
    let mut ports = Ports::with_plans(catalogue());
    ports.sequential_ids();
    ports
        .subscriptions
        .expect_find_replay()
        .returning(|_, _| Ok(None));
    ports
        .subscriptions
        .expect_current()
        .returning(move |_| Ok(Some(current.clone())));
    ports
        .subscriptions
        .expect_change_plan()
        .times(1)
        .returning(answer);
    ports
        .service()
        .change_plan(&caller, Some("pro-monthly"), Some("key-1"))
        .await
}

#[tokio::test]
async fn answers_of_the_repository_on_a_change_map_to_outcomes() {
    let result = change_answered_with(|_| Err(SubscriptionWriteError::Stale)).await;
    assert!(matches!(result, Err(BillingError::Stale)), "{result:?}");
    let result = change_answered_with(|_| Err(SubscriptionWriteError::KeyReused)).await;
    assert!(matches!(result, Err(BillingError::KeyReused)), "{result:?}");
    let result = change_answered_with(|_| Err(SubscriptionWriteError::Port(unavailable()))).await;
    assert!(
        matches!(result, Err(BillingError::Failure(Failure::Unavailable(_)))),
        "{result:?}"
    );
    let result = change_answered_with(|change| Ok(Recorded::Replayed(change.billed.clone()))).await;
    assert!(result.is_ok_and(|outcome| outcome.replayed));
}

// ---------------------------------------------------------------------------------------------
// cancel

#[tokio::test]
async fn cancelling_requires_at_period_end() {
    let mut ports = Ports::new();
    ports.subscriptions.expect_current().never();
    ports.subscriptions.expect_cancel().never();
    let result = ports
        .service()
        .cancel(&principal(Role::Customer), None)
        .await;
    assert_eq!(
        invalid_fields(result),
        pairs(&[("at_period_end", "required")])
    );
}

#[tokio::test]
async fn cancelling_a_cancelled_subscription_is_not_active_and_none_is_not_found() {
    let caller = principal(Role::Customer);
    let ended = cancelled(subscription_on(caller.user_id, &basic()));
    let mut ports = Ports::new();
    ports.subscriptions.expect_cancel().never();
    ports
        .subscriptions
        .expect_current()
        .times(1)
        .returning(move |_| Ok(Some(ended.clone())));
    ports
        .subscriptions
        .expect_current()
        .times(1)
        .returning(|_| Ok(None));
    let service = ports.service();
    let result = service.cancel(&caller, Some(true)).await;
    assert!(matches!(result, Err(BillingError::NotActive)), "{result:?}");
    let result = service.cancel(&caller, Some(false)).await;
    assert!(matches!(result, Err(BillingError::NotFound)), "{result:?}");
}

#[tokio::test]
async fn cancel_passes_the_subscription_the_choice_and_the_clock_time() {
    let caller = principal(Role::Customer);
    let current = subscription_on(caller.user_id, &basic());
    for at_period_end in [true, false] {
        let mut answered = current.clone();
        answered.cancel_at_period_end = at_period_end;
        if !at_period_end {
            answered.status = SubscriptionStatus::Cancelled;
            answered.cancelled_at = Some(now());
        }
        let expected = answered.clone();
        let read = current.clone();
        let mut ports = Ports::new();
        ports
            .subscriptions
            .expect_current()
            .with(eq(caller.user_id))
            .returning(move |_| Ok(Some(read.clone())));
        ports
            .subscriptions
            .expect_cancel()
            .with(eq(current.id), eq(at_period_end), eq(now()))
            .times(1)
            .returning(move |_, _, _| Ok(Some(answered.clone())));
        let result = ports
            .service()
            .cancel(&caller, Some(at_period_end))
            .await
            .expect("cancelled");
        assert_eq!(result, expected);
    }
}

#[tokio::test]
async fn a_subscription_that_ended_meanwhile_cannot_be_cancelled() {
    let caller = principal(Role::Customer);
    let current = subscription_on(caller.user_id, &basic());
    let mut ports = Ports::new();
    ports
        .subscriptions
        .expect_current()
        .returning(move |_| Ok(Some(current.clone())));
    ports
        .subscriptions
        .expect_cancel()
        .times(1)
        .returning(|_, _, _| Ok(None));
    let result = ports.service().cancel(&caller, Some(false)).await;
    assert!(matches!(result, Err(BillingError::NotActive)), "{result:?}");
}

// ---------------------------------------------------------------------------------------------
// invoices

#[tokio::test]
async fn a_full_invoice_page_carries_a_cursor_that_resumes_after_its_last_invoice() {
    let caller = principal(Role::Customer);
    let rows: Vec<Invoice> = (0..3).map(|n| invoice_at(caller.user_id, -n)).collect();
    let last = rows[1].clone();
    let first_page = rows.clone();
    let mut ports = Ports::new();
    ports
        .subscriptions
        .expect_invoices()
        .with(eq(caller.user_id), eq(None), eq(3))
        .times(1)
        .returning(move |_, _, _| Ok(first_page.clone()));
    ports
        .subscriptions
        .expect_invoices()
        .with(
            eq(caller.user_id),
            eq(Some(InvoicePageKey {
                created_at: last.created_at,
                id: last.id,
            })),
            eq(3),
        )
        .times(1)
        .returning(|_, _, _| Ok(Vec::new()));
    let service = ports.service();
    let page = service
        .invoices(&caller, None, Some("2"))
        .await
        .expect("page 1");
    assert_eq!(page.items, rows[..2]);
    let cursor = page.next_cursor.expect("more pages");
    let next = service
        .invoices(&caller, Some(&cursor), Some("2"))
        .await
        .expect("page 2");
    assert!(next.items.is_empty() && next.next_cursor.is_none());
}

#[tokio::test]
async fn an_invoice_page_that_is_not_full_has_no_cursor() {
    let caller = principal(Role::Customer);
    let rows: Vec<Invoice> = (0..2).map(|n| invoice_at(caller.user_id, -n)).collect();
    let answer = rows.clone();
    let mut ports = Ports::new();
    ports
        .subscriptions
        .expect_invoices()
        .with(eq(caller.user_id), eq(None), eq(21))
        .times(1)
        .returning(move |_, _, _| Ok(answer.clone()));
    let page = ports
        .service()
        .invoices(&caller, None, None)
        .await
        .expect("page");
    assert_eq!(page.items, rows);
    assert_eq!(page.next_cursor, None);
}

#[tokio::test]
async fn an_invoice_cursor_minted_for_another_user_is_refused() {
    let owner = principal(Role::Customer);
    let rows: Vec<Invoice> = (0..3).map(|n| invoice_at(owner.user_id, -n)).collect();
    let mut ports = Ports::new();
    ports
        .subscriptions
        .expect_invoices()
        .times(1)
        .returning(move |_, _, _| Ok(rows.clone()));
    let service = ports.service();
    let cursor = service
        .invoices(&owner, None, Some("2"))
        .await
        .expect("page 1")
        .next_cursor
        .expect("more pages");
    for (caller, cursor) in [
        (principal(Role::Customer), cursor.clone()),
        (principal(Role::Admin), cursor.clone()),
        (owner.clone(), "garbage".to_owned()),
        (owner.clone(), format!("x{cursor}")),
    ] {
        let result = service.invoices(&caller, Some(&cursor), Some("2")).await;
        assert_eq!(
            invalid_fields(result),
            pairs(&[("cursor", "invalid_cursor")]),
            "{cursor}"
        );
    }
    let result = service
        .invoices(&principal(Role::Customer), Some(&cursor), Some("0"))
        .await;
    assert_eq!(
        invalid_fields(result),
        pairs(&[("limit", "out_of_range"), ("cursor", "invalid_cursor")])
    );
}
