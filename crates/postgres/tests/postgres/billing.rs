//! The plan and subscription adapters against a real server, each test in a fresh database cloned
//! from the migrated template.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Days, TimeZone, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use strata_domain::{
    BilledSubscription, BillingInterval, Currency, IdempotencyKey, Invoice, InvoiceId, InvoiceKind,
    InvoiceLine, Plan, PlanCode, Price, Subscription, SubscriptionId, SubscriptionStatus, UserId,
    period_description, prorate,
};
use strata_ports::{
    IdempotencyClaim, InvoicePageKey, NewSubscription, PlanChange, PlanRepository, Recorded,
    RenewalPass, SubscriptionRepository, SubscriptionWriteError,
};
use strata_postgres::testing::{TestDatabase, count, now};
use strata_postgres::{Database, PgPlanRepository, PgSubscriptionRepository};
use uuid::Uuid;

use crate::helpers::user;

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

async fn plan(db: &Database, code: &str) -> Plan {
    PgPlanRepository::new(db.clone())
        .find(&PlanCode::parse(code).unwrap())
        .await
        .unwrap()
        .expect("the plan exists")
}

/// A subscription to `plan` starting at `start`, with its first invoice, as the use case builds it.
fn subscription(user_id: UserId, plan: &Plan, start: DateTime<Utc>) -> NewSubscription {
    let end = plan.interval.advance(start, 1).unwrap();
    let id = SubscriptionId(Uuid::now_v7());
    let price = plan.price.money();
    NewSubscription {
        billed: BilledSubscription {
            subscription: Subscription {
                id,
                user_id,
                plan_code: plan.code.clone(),
                status: SubscriptionStatus::Active,
                anchor: start,
                current_period_start: start,
                current_period_end: end,
                cancel_at_period_end: false,
                cancelled_at: None,
                created_at: start,
                updated_at: start,
            },
            invoice: Invoice {
                id: InvoiceId(Uuid::now_v7()),
                user_id,
                subscription_id: id,
                kind: InvoiceKind::Subscription,
                lines: vec![InvoiceLine {
                    description: period_description(plan, start, end),
                    amount: price,
                }],
                total: price,
                period_start: start,
                period_end: end,
                created_at: start,
            },
        },
        idempotency: None,
    }
}

/// A change of `current` (on `old`) to `new` at `at`, with its proration invoice.
fn change(current: &Subscription, old: &Plan, new: &Plan, at: DateTime<Utc>) -> PlanChange {
    let proration = prorate(
        old,
        new,
        current.current_period_start,
        current.current_period_end,
        at,
    )
    .unwrap();
    PlanChange {
        billed: BilledSubscription {
            subscription: Subscription {
                plan_code: new.code.clone(),
                updated_at: at,
                ..current.clone()
            },
            invoice: Invoice {
                id: InvoiceId(Uuid::now_v7()),
                user_id: current.user_id,
                subscription_id: current.id,
                kind: InvoiceKind::Proration,
                lines: vec![
                    InvoiceLine {
                        description: format!("Unused time on {}", old.name),
                        amount: proration.credit,
                    },
                    InvoiceLine {
                        description: format!("Remaining time on {}", new.name),
                        amount: proration.charge,
                    },
                ],
                total: proration.total,
                period_start: at,
                period_end: current.current_period_end,
                created_at: at,
            },
        },
        expected_plan: old.code.clone(),
        expected_period_start: current.current_period_start,
        idempotency: None,
    }
}

fn claim(operation: &'static str, key: &str, fingerprint: &str) -> IdempotencyClaim {
    IdempotencyClaim {
        key: IdempotencyKey::parse(key).unwrap(),
        operation,
        fingerprint: fingerprint.to_owned(),
        expires_at: now() + chrono::Duration::hours(24),
    }
}

fn created(
    recorded: Result<Recorded<BilledSubscription>, SubscriptionWriteError>,
) -> BilledSubscription {
    match recorded {
        Ok(Recorded::Created(billed)) => billed,
        other => panic!("expected a new record, got {other:?}"),
    }
}

/// Every invoice of `user_id`, newest first, in one page.
async fn all_invoices(subscriptions: &PgSubscriptionRepository, user_id: UserId) -> Vec<Invoice> {
    subscriptions.invoices(user_id, None, 10_000).await.unwrap()
}

/// How many subscription rows and invoice rows the database holds.
async fn subscriptions_and_invoices(db: &Database) -> (i64, i64) {
    let subscriptions = count(db, "SELECT count(*) AS n FROM subscriptions").await;
    let invoices = count(db, "SELECT count(*) AS n FROM invoices").await;
    (subscriptions.unwrap(), invoices.unwrap())
}

#[tokio::test]
async fn the_three_plans_are_there_after_migrating_and_are_found_by_code() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let plans = PgPlanRepository::new(test_db.database());
    let usd = Currency::parse("USD")?;
    let expected = [
        ("basic-monthly", "Basic", 999, BillingInterval::Month),
        ("pro-monthly", "Pro", 2_999, BillingInterval::Month),
        ("pro-yearly", "Pro (yearly)", 29_990, BillingInterval::Year),
    ]
    .map(|(code, name, minor, interval)| Plan {
        code: PlanCode::parse(code).unwrap(),
        name: name.to_owned(),
        price: Price::new(minor, usd).unwrap(),
        interval,
        active: true,
    });
    assert_eq!(plans.list().await?, expected, "every plan, by code");
    assert_eq!(
        plans.find(&PlanCode::parse("pro-yearly")?).await?,
        Some(expected[2].clone())
    );
    assert!(
        plans
            .find(&PlanCode::parse("gold-monthly")?)
            .await?
            .is_none()
    );

    // The database refuses what the domain would not read.
    let db = test_db.database();
    let mut conn = db.connection().await?;
    for bad in [
        "INSERT INTO plans (code, name, price_minor, currency, interval) VALUES ('Gold', 'G', 1, 'USD', 'month')",
        "INSERT INTO plans (code, name, price_minor, currency, interval) VALUES ('gold', 'G', -1, 'USD', 'month')",
        "INSERT INTO plans (code, name, price_minor, currency, interval) VALUES ('gold', 'G', 1, 'usd', 'month')",
        "INSERT INTO plans (code, name, price_minor, currency, interval) VALUES ('gold', 'G', 1, 'USD', 'week')",
    ] {
        assert!(
            diesel::sql_query(bad).execute(&mut conn).await.is_err(),
            "{bad}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_subscription_is_stored_with_its_invoice_and_a_second_live_one_is_refused()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let subscriptions = PgSubscriptionRepository::new(db.clone());
    let basic = plan(&db, "basic-monthly").await;
    let pro = plan(&db, "pro-monthly").await;
    let ada = user(&db, "ada@example.com").await;
    assert!(subscriptions.current(ada).await?.is_none());

    let first = subscription(ada, &basic, now());
    let stored = created(subscriptions.create(&first).await);
    assert_eq!(stored, first.billed, "stored as given");
    assert_eq!(
        subscriptions.current(ada).await?,
        Some(stored.subscription.clone())
    );
    assert_eq!(
        all_invoices(&subscriptions, ada).await,
        std::slice::from_ref(&stored.invoice)
    );

    let second = subscriptions.create(&subscription(ada, &pro, now())).await;
    assert!(
        matches!(second, Err(SubscriptionWriteError::AlreadySubscribed)),
        "{second:?}"
    );
    assert_eq!(subscriptions_and_invoices(&db).await, (1, 1));

    // Cancelled now, it is still the current one (the most recent) until another starts.
    let later = now() + chrono::Duration::seconds(5);
    let cancelled = subscriptions
        .cancel(stored.subscription.id, false, later)
        .await?
        .expect("it was active");
    assert_eq!(subscriptions.current(ada).await?, Some(cancelled));
    // The live one wins over a more recent cancelled one.
    let backdated = subscription(ada, &pro, later - chrono::Duration::days(1));
    let live = created(subscriptions.create(&backdated).await);
    assert_eq!(
        subscriptions.current(ada).await?,
        Some(live.subscription.clone())
    );
    assert_eq!(all_invoices(&subscriptions, ada).await.len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_keyed_create_replays_its_first_result_and_a_different_request_is_key_reused()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let subscriptions = PgSubscriptionRepository::new(db.clone());
    let basic = plan(&db, "basic-monthly").await;
    let pro = plan(&db, "pro-monthly").await;
    let ada = user(&db, "ada@example.com").await;
    let keyed = |plan: &Plan, fingerprint: &str| NewSubscription {
        idempotency: Some(claim("subscriptions.create", "k", fingerprint)),
        // Every retry gets fresh ids and a fresh time, as the use case would give it.
        ..subscription(ada, plan, now())
    };

    let first = created(subscriptions.create(&keyed(&basic, "a")).await);
    match subscriptions.create(&keyed(&basic, "a")).await? {
        Recorded::Replayed(replay) => assert_eq!(replay, first),
        other => panic!("expected a replay, got {other:?}"),
    }
    let reused = subscriptions.create(&keyed(&pro, "b")).await;
    assert!(
        matches!(reused, Err(SubscriptionWriteError::KeyReused)),
        "{reused:?}"
    );
    let other_operation = NewSubscription {
        idempotency: Some(claim("orders.place", "k", "a")),
        ..subscription(ada, &basic, now())
    };
    assert!(matches!(
        subscriptions.create(&other_operation).await,
        Err(SubscriptionWriteError::KeyReused)
    ));
    assert_eq!(
        subscriptions.current(ada).await?,
        Some(first.subscription.clone())
    );
    assert_eq!(subscriptions_and_invoices(&db).await, (1, 1));

    // A refused create leaves no key behind: the same key works once the refusal's cause is gone.
    let refused = NewSubscription {
        idempotency: Some(claim("subscriptions.create", "k2", "a")),
        ..subscription(ada, &pro, now())
    };
    assert!(matches!(
        subscriptions.create(&refused).await,
        Err(SubscriptionWriteError::AlreadySubscribed)
    ));
    subscriptions
        .cancel(first.subscription.id, false, now())
        .await?
        .expect("active");
    let retried = created(subscriptions.create(&refused).await);
    assert_eq!(retried, refused.billed);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_keyed_creates_make_one_subscription_and_replay_it() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.roomy();
    let subscriptions = PgSubscriptionRepository::new(db.clone());
    let basic = plan(&db, "basic-monthly").await;
    let ada = user(&db, "ada@example.com").await;
    let key = claim("subscriptions.create", "key-1", "fingerprint-a");
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let new = NewSubscription {
                idempotency: Some(key.clone()),
                ..subscription(ada, &basic, now())
            };
            let subscriptions = subscriptions.clone();
            tokio::spawn(async move { subscriptions.create(&new).await })
        })
        .collect();
    let (mut first, mut replays) = (Vec::new(), Vec::new());
    for attempt in attempts {
        match attempt.await?? {
            Recorded::Created(billed) => first.push(billed),
            Recorded::Replayed(billed) => replays.push(billed),
        }
    }
    assert_eq!((first.len(), replays.len()), (1, 9));
    assert!(replays.iter().all(|replay| replay == &first[0]));
    assert_eq!(subscriptions_and_invoices(&db).await, (1, 1));
    assert_eq!(
        subscriptions.current(ada).await?,
        Some(first[0].subscription.clone())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_without_a_key_make_exactly_one_live_subscription() -> anyhow::Result<()>
{
    let test_db = TestDatabase::create().await?;
    let db = test_db.roomy();
    let subscriptions = PgSubscriptionRepository::new(db.clone());
    let basic = plan(&db, "basic-monthly").await;
    let ada = user(&db, "ada@example.com").await;
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let (subscriptions, new) = (subscriptions.clone(), subscription(ada, &basic, now()));
            tokio::spawn(async move { subscriptions.create(&new).await })
        })
        .collect();
    let (mut won, mut refused) = (0, 0);
    for attempt in attempts {
        match attempt.await? {
            Ok(Recorded::Created(_)) => won += 1,
            Err(SubscriptionWriteError::AlreadySubscribed) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((won, refused), (1, 9));
    assert_eq!(subscriptions_and_invoices(&db).await, (1, 1));
    Ok(())
}

#[tokio::test]
async fn a_plan_change_applies_with_its_proration_invoice_unless_the_subscription_moved_on()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let subscriptions = PgSubscriptionRepository::new(db.clone());
    let basic = plan(&db, "basic-monthly").await;
    let pro = plan(&db, "pro-monthly").await;
    let ada = user(&db, "ada@example.com").await;
    let start = now() - chrono::Duration::days(10);
    let current = created(
        subscriptions
            .create(&subscription(ada, &basic, start))
            .await,
    )
    .subscription;

    let up = change(&current, &basic, &pro, now());
    let changed = created(subscriptions.change_plan(&up).await);
    assert_eq!(
        changed, up.billed,
        "new plan and updated_at, the period unchanged"
    );
    assert_eq!(
        subscriptions.current(ada).await?,
        Some(changed.subscription.clone())
    );
    assert!(changed.invoice.total.amount_minor > 0, "an upgrade costs");

    // The caller saw basic, but it is pro now: stale, and nothing is written.
    let stale_plan = change(&current, &basic, &pro, now());
    assert!(matches!(
        subscriptions.change_plan(&stale_plan).await,
        Err(SubscriptionWriteError::Stale)
    ));
    // The right plan but another period (a renewal happened in between).
    let moved = PlanChange {
        expected_period_start: current.current_period_start - chrono::Duration::days(30),
        ..change(&changed.subscription, &pro, &basic, now())
    };
    assert!(matches!(
        subscriptions.change_plan(&moved).await,
        Err(SubscriptionWriteError::Stale)
    ));
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM invoices WHERE kind = 'proration'"
        )
        .await
        .unwrap(),
        1
    );

    // Keyed: the retry replays the first answer and changes nothing more.
    let down = PlanChange {
        idempotency: Some(claim("subscriptions.change_plan", "down", "a")),
        ..change(&changed.subscription, &pro, &basic, now())
    };
    let downgraded = created(subscriptions.change_plan(&down).await);
    assert!(
        downgraded.invoice.total.amount_minor < 0,
        "a downgrade refunds"
    );
    let retry = PlanChange {
        idempotency: Some(claim("subscriptions.change_plan", "down", "a")),
        ..change(&changed.subscription, &pro, &basic, now())
    };
    match subscriptions.change_plan(&retry).await? {
        Recorded::Replayed(replay) => assert_eq!(replay, downgraded),
        other => panic!("expected a replay, got {other:?}"),
    }
    let reused = PlanChange {
        idempotency: Some(claim("subscriptions.change_plan", "down", "b")),
        ..change(&downgraded.subscription, &basic, &pro, now())
    };
    assert!(matches!(
        subscriptions.change_plan(&reused).await,
        Err(SubscriptionWriteError::KeyReused)
    ));
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM invoices WHERE kind = 'proration'"
        )
        .await
        .unwrap(),
        2
    );

    // A cancelled subscription does not change plan.
    subscriptions
        .cancel(current.id, false, now())
        .await?
        .expect("active");
    let after_cancel = change(&downgraded.subscription, &basic, &pro, now());
    assert!(matches!(
        subscriptions.change_plan(&after_cancel).await,
        Err(SubscriptionWriteError::Stale)
    ));
    assert_eq!(all_invoices(&subscriptions, ada).await.len(), 3);
    Ok(())
}

#[tokio::test]
async fn find_replay_reads_a_keys_earlier_result_without_claiming_it() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let subscriptions = PgSubscriptionRepository::new(db.clone());
    let basic = plan(&db, "basic-monthly").await;
    let pro = plan(&db, "pro-monthly").await;
    let ada = user(&db, "ada@example.com").await;
    let current = created(
        subscriptions
            .create(&subscription(
                ada,
                &basic,
                now() - chrono::Duration::days(3),
            ))
            .await,
    )
    .subscription;
    let up = claim("subscriptions.change_plan", "up", "to-pro");
    assert_eq!(subscriptions.find_replay(ada, &up).await?, None);
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM idempotency_keys")
            .await
            .unwrap(),
        0,
        "a look does not claim"
    );

    let changed = created(
        subscriptions
            .change_plan(&PlanChange {
                idempotency: Some(up.clone()),
                ..change(&current, &basic, &pro, now())
            })
            .await,
    );
    assert_eq!(subscriptions.find_replay(ada, &up).await?, Some(changed));
    let other_body = claim("subscriptions.change_plan", "up", "to-basic");
    assert!(matches!(
        subscriptions.find_replay(ada, &other_body).await,
        Err(SubscriptionWriteError::KeyReused)
    ));
    let other_operation = claim("subscriptions.create", "up", "to-pro");
    assert!(matches!(
        subscriptions.find_replay(ada, &other_operation).await,
        Err(SubscriptionWriteError::KeyReused)
    ));
    let bob = user(&db, "bob@example.com").await;
    assert_eq!(
        subscriptions.find_replay(bob, &up).await?,
        None,
        "keys are per user"
    );

    // An expired record is as good as none.
    let mut conn = db.connection().await?;
    diesel::sql_query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
        .execute(&mut conn)
        .await?;
    assert_eq!(subscriptions.find_replay(ada, &up).await?, None);
    Ok(())
}

#[tokio::test]
async fn cancelling_ends_now_or_marks_the_period_end_and_only_an_active_one_cancels()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let subscriptions = PgSubscriptionRepository::new(db.clone());
    let basic = plan(&db, "basic-monthly").await;
    let ada = user(&db, "ada@example.com").await;
    let stored = created(
        subscriptions
            .create(&subscription(ada, &basic, now()))
            .await,
    )
    .subscription;

    let t1 = now() + chrono::Duration::seconds(1);
    let marked = subscriptions
        .cancel(stored.id, true, t1)
        .await?
        .expect("active");
    assert_eq!(
        marked,
        Subscription {
            cancel_at_period_end: true,
            updated_at: t1,
            ..stored.clone()
        },
        "still active, ends at the period's end"
    );

    let t2 = now() + chrono::Duration::seconds(2);
    let ended = subscriptions
        .cancel(stored.id, false, t2)
        .await?
        .expect("still active");
    assert_eq!(
        ended,
        Subscription {
            status: SubscriptionStatus::Cancelled,
            cancelled_at: Some(t2),
            updated_at: t2,
            ..marked
        }
    );
    for at_period_end in [false, true] {
        assert!(
            subscriptions
                .cancel(stored.id, at_period_end, now())
                .await?
                .is_none(),
            "a cancelled subscription is not active"
        );
    }
    assert!(
        subscriptions
            .cancel(SubscriptionId(Uuid::now_v7()), false, now())
            .await?
            .is_none()
    );
    assert_eq!(subscriptions.current(ada).await?, Some(ended));
    Ok(())
}

/// A billing period: start and (exclusive) end.
type Period = (DateTime<Utc>, DateTime<Utc>);

/// What a due subscription should look like after renewals up to `now`.
struct Expected {
    periods: Vec<Period>,
    cancelled_at: Option<DateTime<Utc>>,
}

fn expected_after(subscription: &Subscription, plan: &Plan, now: DateTime<Utc>) -> Expected {
    let first_end = plan.interval.advance(subscription.anchor, 1).unwrap();
    if subscription.cancel_at_period_end && first_end <= now {
        return Expected {
            periods: Vec::new(),
            cancelled_at: Some(first_end),
        };
    }
    let mut periods = Vec::new();
    let mut n = 1;
    loop {
        let start = plan.interval.advance(subscription.anchor, n).unwrap();
        if start > now {
            break;
        }
        periods.push((
            start,
            plan.interval.advance(subscription.anchor, n + 1).unwrap(),
        ));
        n += 1;
    }
    Expected {
        periods,
        cancelled_at: None,
    }
}

#[derive(QueryableByName)]
struct RenewalRow {
    #[diesel(sql_type = SqlUuid)]
    subscription_id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    period_start: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    period_end: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    total_minor: i64,
}

/// Runs passes until one examines nothing.
async fn drain(subscriptions: PgSubscriptionRepository, now: DateTime<Utc>) -> RenewalPass {
    let mut total = RenewalPass::default();
    loop {
        let pass = subscriptions.renew_due(now, 3).await.unwrap();
        if pass.examined == 0 {
            return total;
        }
        assert!(pass.examined <= 3);
        assert!(pass.renewed + pass.cancelled <= pass.examined);
        total.renewed += pass.renewed;
        total.cancelled += pass.cancelled;
        total.quarantined += pass.quarantined;
        total.examined += pass.examined;
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_renewal_passes_bill_every_elapsed_period_exactly_once() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.roomy();
    let subscriptions = PgSubscriptionRepository::new(db.clone());
    let monthly = [
        plan(&db, "basic-monthly").await,
        plan(&db, "pro-monthly").await,
    ];
    let yearly = plan(&db, "pro-yearly").await;
    let now = at(2027, 4, 15, 12);

    let mut stored: Vec<(Subscription, Plan)> = Vec::new();
    for i in 0..40_u64 {
        let ada = user(&db, &format!("user{i}@example.com")).await;
        let ago =
            |days: u64| now - Days::new(days) - chrono::Duration::hours(i64::try_from(i).unwrap());
        let (plan, start) = match i % 5 {
            0 => (monthly[0].clone(), ago(40)),     // due, but ends instead
            1 => (monthly[1].clone(), ago(10)),     // not due yet
            2 => (monthly[0].clone(), ago(90 + i)), // two or three periods behind
            3 => (yearly.clone(), ago(400)),        // one yearly period due
            _ => (monthly[1].clone(), ago(35)),     // one monthly period due
        };
        let mut subscription =
            created(subscriptions.create(&subscription(ada, &plan, start)).await).subscription;
        if i % 5 == 0 {
            subscription = subscriptions
                .cancel(subscription.id, true, start)
                .await?
                .expect("active");
        }
        stored.push((subscription, plan));
    }
    // Anchored on 31 January: the periods clamp to 28 February, then go back to 31 March.
    let jan31 = user(&db, "jan31@example.com").await;
    let anchored = created(
        subscriptions
            .create(&subscription(jan31, &monthly[0], at(2027, 1, 31, 9)))
            .await,
    )
    .subscription;
    stored.push((anchored.clone(), monthly[0].clone()));

    // Two workers at once, each on its own connections, until neither finds anything.
    let workers: Vec<_> = (0..2)
        .map(|_| tokio::spawn(drain(subscriptions.clone(), now)))
        .collect();
    let mut total = RenewalPass::default();
    for worker in workers {
        let pass = worker.await?;
        println!("one worker: {pass:?}");
        total.renewed += pass.renewed;
        total.cancelled += pass.cancelled;
    }

    let expected: BTreeMap<Uuid, Expected> = stored
        .iter()
        .map(|(subscription, plan)| (subscription.id.0, expected_after(subscription, plan, now)))
        .collect();
    let due = expected.values().filter(|e| !e.periods.is_empty()).count();
    let ending = expected
        .values()
        .filter(|e| e.cancelled_at.is_some())
        .count();
    assert_eq!(
        (total.renewed, total.cancelled),
        (due, ending),
        "each due subscription handled once"
    );
    assert_eq!((due, ending), (25, 8));

    let mut conn = db.connection().await?;
    let renewals = diesel::sql_query(
        "SELECT subscription_id, period_start, period_end, total_minor FROM invoices \
         WHERE kind = 'renewal' ORDER BY subscription_id, period_start",
    )
    .load::<RenewalRow>(&mut conn)
    .await?;
    let mut billed: BTreeMap<Uuid, Vec<Period>> = BTreeMap::new();
    for row in &renewals {
        billed
            .entry(row.subscription_id)
            .or_default()
            .push((row.period_start, row.period_end));
    }
    for (subscription, plan) in &stored {
        let want = &expected[&subscription.id.0];
        let got = billed.remove(&subscription.id.0).unwrap_or_default();
        assert_eq!(got, want.periods, "renewal invoices of {}", subscription.id);
        let now_stored = PgSubscriptionRepository::new(db.clone())
            .current(subscription.user_id)
            .await?
            .expect("stored");
        match (want.cancelled_at, want.periods.last()) {
            (Some(ended), _) => {
                assert_eq!(now_stored.status, SubscriptionStatus::Cancelled);
                assert_eq!(now_stored.cancelled_at, Some(ended));
                assert!(now_stored.cancel_at_period_end, "the reason stays recorded");
            }
            (None, Some(&(start, end))) => {
                assert_eq!(now_stored.status, SubscriptionStatus::Active);
                assert_eq!(
                    (
                        now_stored.current_period_start,
                        now_stored.current_period_end
                    ),
                    (start, end)
                );
                assert_eq!(now_stored.updated_at, now);
            }
            (None, None) => assert_eq!(&now_stored, subscription, "not due: untouched"),
        }
        let price = plan.price.money().amount_minor;
        assert!(
            renewals
                .iter()
                .filter(|r| r.subscription_id == subscription.id.0)
                .all(|r| r.total_minor == price)
        );
    }
    assert!(billed.is_empty(), "no invoice for another subscription");
    assert!(
        expected[&anchored.id.0]
            .periods
            .iter()
            .any(|p| p.0 == at(2027, 2, 28, 9)),
        "the setup covers the clamped month"
    );
    assert_eq!(
        expected[&anchored.id.0].periods,
        [
            (at(2027, 2, 28, 9), at(2027, 3, 31, 9)),
            (at(2027, 3, 31, 9), at(2027, 4, 30, 9)),
        ]
    );

    // Nothing is due any more; another round changes nothing.
    let again = subscriptions.renew_due(now, 100).await?;
    assert_eq!(again, RenewalPass::default());
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM invoices WHERE kind = 'renewal'"
        )
        .await
        .unwrap(),
        i64::try_from(renewals.len())?
    );
    Ok(())
}

#[tokio::test]
async fn a_period_already_invoiced_is_not_billed_twice_even_past_the_row_locks()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let subscriptions = PgSubscriptionRepository::new(db.clone());
    let basic = plan(&db, "basic-monthly").await;
    let ada = user(&db, "ada@example.com").await;
    let start = at(2027, 1, 10, 0);
    let stored = created(
        subscriptions
            .create(&subscription(ada, &basic, start))
            .await,
    );
    // A renewal invoice for the first renewal period exists already (a writer that bypassed the
    // locks); the pass advances the period without a second invoice for it.
    let mut conn = db.connection().await?;
    diesel::sql_query(
        "INSERT INTO invoices (id, user_id, subscription_id, kind, lines, total_minor, currency, \
                               period_start, period_end, created_at) \
         SELECT gen_random_uuid(), user_id, id, 'renewal', '[]', 999, 'USD', \
                current_period_end, current_period_end + interval '1 month', now() \
         FROM subscriptions",
    )
    .execute(&mut conn)
    .await?;
    let pass = subscriptions.renew_due(at(2027, 2, 15, 0), 10).await?;
    assert_eq!(
        pass,
        RenewalPass {
            renewed: 1,
            cancelled: 0,
            quarantined: 0,
            examined: 1
        }
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) AS n FROM invoices WHERE kind = 'renewal'"
        )
        .await
        .unwrap(),
        1
    );
    let current = subscriptions.current(ada).await?.expect("stored");
    assert_eq!(
        current.current_period_start,
        stored.subscription.current_period_end
    );
    Ok(())
}

#[tokio::test]
async fn invoice_pages_walk_every_invoice_once_newest_first() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let subscriptions = PgSubscriptionRepository::new(db.clone());
    let basic = plan(&db, "basic-monthly").await;
    let ada = user(&db, "ada@example.com").await;
    let bob = user(&db, "bob@example.com").await;
    for who in [ada, bob] {
        subscriptions
            .create(&subscription(who, &basic, at(2025, 1, 10, 0)))
            .await?;
    }
    // Two passes: two groups of invoices that share their created_at, so the id breaks ties.
    subscriptions.renew_due(at(2026, 1, 15, 0), 10).await?;
    subscriptions.renew_due(at(2027, 1, 15, 0), 10).await?;

    let all = all_invoices(&subscriptions, ada).await;
    assert_eq!(all.len(), 1 + 24);
    assert!(all.iter().all(|invoice| invoice.user_id == ada));
    assert!(
        all.windows(2)
            .all(|w| (w[0].created_at, w[0].id) > (w[1].created_at, w[1].id)),
        "newest first, ties broken by id"
    );
    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..=all.len() {
        let page = subscriptions.invoices(ada, after, 5).await?;
        assert!(page.len() <= 5);
        let Some(last) = page.last() else { break };
        after = Some(InvoicePageKey {
            created_at: last.created_at,
            id: last.id,
        });
        seen.extend(page);
    }
    assert_eq!(seen, all);
    let ids: HashSet<_> = seen.iter().map(|invoice| invoice.id).collect();
    assert_eq!(ids.len(), seen.len(), "every invoice once");
    Ok(())
}

#[derive(QueryableByName)]
struct Quarantine {
    #[diesel(sql_type = diesel::sql_types::Nullable<Timestamptz>)]
    renewal_quarantined_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    renewal_error: Option<String>,
}

/// A due subscription the renewal cannot decide on (here: its plan is in a currency the domain
/// does not know, which the table's check lets through) is set aside with its reason; every other
/// due subscription is renewed, later passes skip it, and once repaired it is renewed again.
#[tokio::test]
async fn a_corrupt_due_subscription_is_quarantined_and_never_stops_the_others() -> anyhow::Result<()>
{
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let subscriptions = PgSubscriptionRepository::new(db.clone());
    let basic = plan(&db, "basic-monthly").await;
    let start = at(2027, 1, 10, 0);
    let ada = user(&db, "ada@example.com").await;
    let bob = user(&db, "bob@example.com").await;
    let poisoned = created(
        subscriptions
            .create(&subscription(ada, &basic, start))
            .await,
    );
    let healthy = created(
        subscriptions
            .create(&subscription(bob, &basic, start))
            .await,
    );
    let mut conn = db.connection().await?;
    diesel::sql_query(
        "INSERT INTO plans (code, name, price_minor, currency, interval) \
         VALUES ('legacy-monthly', 'Legacy', 500, 'XXX', 'month')",
    )
    .execute(&mut conn)
    .await?;
    diesel::sql_query("UPDATE subscriptions SET plan_code = 'legacy-monthly' WHERE id = $1")
        .bind::<SqlUuid, _>(poisoned.subscription.id.0)
        .execute(&mut conn)
        .await?;
    let due = at(2027, 2, 15, 0);
    let pass = subscriptions.renew_due(due, 10).await?;
    assert_eq!(
        pass,
        RenewalPass {
            renewed: 1,
            cancelled: 0,
            quarantined: 1,
            examined: 2
        }
    );
    let renewed = subscriptions.current(bob).await?.expect("stored");
    assert!(renewed.current_period_end > healthy.subscription.current_period_end);
    let quarantine = |id: Uuid| {
        diesel::sql_query(
            "SELECT renewal_quarantined_at, renewal_error FROM subscriptions WHERE id = $1",
        )
        .bind::<SqlUuid, _>(id)
    };
    let set_aside = quarantine(poisoned.subscription.id.0)
        .get_result::<Quarantine>(&mut conn)
        .await?;
    assert_eq!(set_aside.renewal_quarantined_at, Some(due));
    let reason = set_aside.renewal_error.unwrap_or_default();
    assert!(
        reason.contains("legacy-monthly") && reason.contains("currency"),
        "{reason}"
    );
    let unchanged = subscriptions.current(ada).await?.expect("stored");
    assert_eq!(
        unchanged.current_period_end, poisoned.subscription.current_period_end,
        "nothing of a quarantined subscription is written"
    );
    assert_eq!(
        subscriptions.renew_due(due, 10).await?,
        RenewalPass::default(),
        "later passes skip it"
    );
    // An operator repairs the row and clears the mark: the next pass renews it.
    diesel::sql_query(
        "UPDATE subscriptions SET plan_code = 'basic-monthly', renewal_quarantined_at = NULL, \
                                  renewal_error = NULL WHERE id = $1",
    )
    .bind::<SqlUuid, _>(poisoned.subscription.id.0)
    .execute(&mut conn)
    .await?;
    let repaired = subscriptions.renew_due(due, 10).await?;
    assert_eq!((repaired.renewed, repaired.quarantined), (1, 0));
    Ok(())
}
