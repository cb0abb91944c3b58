//! A renewal worker built on `strata-domain` alone: no runtime, no database, no I/O but printing.
//!
//! It holds three plans and a few subscriptions in memory, advances a clock one day at a time
//! over four months, asks [`decide_renewal`] what each subscription needs and applies the answer
//! as a real worker would store it: a renewal invoice and a new period, or a cancellation. On the
//! way it previews one mid-period upgrade with [`prorate`].
//!
//! ```text
//! cargo run -p strata-domain --example renewal_worker
//! ```

use std::error::Error;

use chrono::{DateTime, Days, TimeZone, Utc};
use strata_domain::{
    BillingInterval, Currency, Invoice, InvoiceId, InvoiceKind, Money, Plan, PlanCode, Price,
    RenewalDecision, Subscription, SubscriptionId, SubscriptionStatus, UserId, decide_renewal,
    prorate,
};
use uuid::Uuid;

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

/// The plans and subscriptions a real worker would read from its database.
struct Store {
    plans: Vec<Plan>,
    /// Each subscription with its holder's name, for printing.
    subscriptions: Vec<(&'static str, Subscription)>,
    invoices: Vec<Invoice>,
}

impl Store {
    fn plan(&self, code: &str) -> Result<&Plan> {
        find_plan(&self.plans, code)
    }

    /// One pass of the worker at `now`: renews or ends every due subscription. A subscription
    /// several periods behind is renewed once per period, each with its own invoice.
    fn renew_due(&mut self, now: DateTime<Utc>) -> Result<()> {
        for (holder, subscription) in &mut self.subscriptions {
            let plan = find_plan(&self.plans, subscription.plan_code.as_str())?;
            loop {
                match decide_renewal(subscription, plan, now)? {
                    RenewalDecision::NotDue => break,
                    RenewalDecision::Cancel { at } => {
                        subscription.status = SubscriptionStatus::Cancelled;
                        subscription.cancelled_at = Some(at);
                        subscription.updated_at = now;
                        println!("{}  {holder:<6} cancelled as of {}", date(now), date(at));
                    }
                    RenewalDecision::Renew {
                        period_start,
                        period_end,
                        line,
                    } => {
                        let number = u128::try_from(self.invoices.len())? + 1;
                        let invoice = Invoice {
                            id: InvoiceId(Uuid::from_u128(number)),
                            user_id: subscription.user_id,
                            subscription_id: subscription.id,
                            kind: InvoiceKind::Renewal,
                            total: line.amount,
                            lines: vec![line],
                            period_start,
                            period_end,
                            created_at: now,
                        };
                        subscription.current_period_start = period_start;
                        subscription.current_period_end = period_end;
                        subscription.updated_at = now;
                        println!(
                            "{}  {holder:<6} invoice #{number}: {:>10}  {}",
                            date(now),
                            show(invoice.total),
                            invoice
                                .lines
                                .iter()
                                .map(|l| l.description.as_str())
                                .collect::<Vec<_>>()
                                .join("; "),
                        );
                        self.invoices.push(invoice);
                    }
                }
            }
        }
        Ok(())
    }
}

fn find_plan<'a>(plans: &'a [Plan], code: &str) -> Result<&'a Plan> {
    plans
        .iter()
        .find(|plan| plan.code.as_str() == code)
        .ok_or_else(|| format!("no plan {code}").into())
}

fn new_plan(code: &str, name: &str, minor: i64, interval: BillingInterval) -> Result<Plan> {
    Ok(Plan {
        code: PlanCode::parse(code)?,
        name: name.to_owned(),
        price: Price::new(minor, Currency::parse("USD")?)?,
        interval,
        active: true,
    })
}

/// Subscription `number` to `plan`, in its period `periods_elapsed` (0 for the first) counted
/// from `anchor`, as the database would hold it.
fn subscribe(
    number: u128,
    plan: &Plan,
    anchor: DateTime<Utc>,
    periods_elapsed: u32,
    cancel_at_period_end: bool,
) -> Result<Subscription> {
    let start = plan
        .interval
        .advance(anchor, periods_elapsed)
        .ok_or("period start out of range")?;
    let end = plan
        .interval
        .advance(anchor, periods_elapsed + 1)
        .ok_or("period end out of range")?;
    Ok(Subscription {
        id: SubscriptionId(Uuid::from_u128(number)),
        user_id: UserId(Uuid::from_u128(1_000 + number)),
        plan_code: plan.code.clone(),
        status: SubscriptionStatus::Active,
        anchor,
        current_period_start: start,
        current_period_end: end,
        cancel_at_period_end,
        cancelled_at: None,
        created_at: anchor,
        updated_at: anchor,
    })
}

fn utc(year: i32, month: u32, day: u32, hour: u32) -> Result<DateTime<Utc>> {
    Utc.with_ymd_and_hms(year, month, day, hour, 0, 0)
        .single()
        .ok_or_else(|| format!("no such instant: {year}-{month}-{day} {hour}:00").into())
}

fn date(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// Minor units shown with two decimals (every plan here is in USD).
fn show(money: Money) -> String {
    let sign = if money.amount_minor < 0 { "-" } else { "" };
    let cents = money.amount_minor.unsigned_abs();
    format!(
        "{sign}{}.{:02} {}",
        cents / 100,
        cents % 100,
        money.currency
    )
}

fn main() -> Result<()> {
    let plans = vec![
        new_plan("basic-monthly", "Basic", 999, BillingInterval::Month)?,
        new_plan("pro-monthly", "Pro", 2_999, BillingInterval::Month)?,
        new_plan("pro-yearly", "Pro", 29_990, BillingInterval::Year)?,
    ];
    for plan in &plans {
        println!(
            "plan {:<13} {:>10} per {}",
            plan.code,
            show(plan.price.money()),
            plan.interval
        );
    }
    let (basic, pro, pro_yearly) = (
        find_plan(&plans, "basic-monthly")?,
        find_plan(&plans, "pro-monthly")?,
        find_plan(&plans, "pro-yearly")?,
    );
    let subscriptions = vec![
        // Anchored on a month end: renews on the last day of each month, never drifting.
        (
            "alice",
            subscribe(1, basic, utc(2027, 1, 31, 9)?, 0, false)?,
        ),
        // Asked to stop at the end of its first period.
        ("bob", subscribe(2, pro, utc(2027, 1, 10, 8)?, 0, true)?),
        // A year in; renews for another year on 15 March.
        (
            "carol",
            subscribe(3, pro_yearly, utc(2026, 3, 15, 10)?, 0, false)?,
        ),
        // Anchored on the 29th of a leap year: 28 February in 2027, then the 29th again.
        ("dave", subscribe(4, pro, utc(2024, 2, 29, 7)?, 35, false)?),
    ];
    let mut store = Store {
        plans: plans.clone(),
        subscriptions,
        invoices: Vec::new(),
    };

    // The worker wakes daily at noon from 1 February to 31 May 2027.
    let first = utc(2027, 2, 1, 12)?;
    let preview_day = utc(2027, 3, 10, 12)?;
    for offset in 0..120 {
        let now = first
            .checked_add_days(Days::new(offset))
            .ok_or("clock out of range")?;
        store.renew_due(now)?;
        if now == preview_day {
            preview_upgrade(&store, now)?;
        }
    }

    let billed = store
        .invoices
        .iter()
        .try_fold(Money::new(0, Currency::parse("USD")?), |sum, invoice| {
            sum.checked_add(invoice.total)
        })
        .ok_or("total overflow")?;
    let cancelled = store
        .subscriptions
        .iter()
        .filter(|(_, subscription)| subscription.status == SubscriptionStatus::Cancelled)
        .count();
    println!(
        "{} renewal invoices, {} billed, {cancelled} cancelled",
        store.invoices.len(),
        show(billed)
    );
    Ok(())
}

/// What alice would pay to move from Basic to Pro today, without changing anything.
fn preview_upgrade(store: &Store, now: DateTime<Utc>) -> Result<()> {
    let (holder, subscription) = store.subscriptions.first().ok_or("no subscriptions")?;
    let (old, new) = (
        store.plan(subscription.plan_code.as_str())?,
        store.plan("pro-monthly")?,
    );
    let proration = prorate(
        old,
        new,
        subscription.current_period_start,
        subscription.current_period_end,
        now,
    )?;
    let left = proration.remaining_seconds;
    println!(
        "{}  {holder:<6} preview {} -> {} in {} to {} ({}d {}h of {}d left):",
        date(now),
        old.code,
        new.code,
        date(subscription.current_period_start),
        date(subscription.current_period_end),
        left / 86_400,
        left % 86_400 / 3_600,
        (subscription.current_period_end - subscription.current_period_start).num_days(),
    );
    println!(
        "{:19}credit {}, charge {}, total {}",
        "",
        show(proration.credit),
        show(proration.charge),
        show(proration.total),
    );
    Ok(())
}
