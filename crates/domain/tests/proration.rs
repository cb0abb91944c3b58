//! The billing rules, checked as properties and on worked examples: proration against an
//! independent rational reference, calendar periods counted from an anchor, and the renewal
//! decision.
//!
//! Every generated period is a real one: period `n` of a subscription anchored anywhere in
//! 2020–2033 (month ends and 29 February over-represented), so its start may be a clamped day
//! such as 28 February of a subscription anchored on the 31st; periods start between 2020 and
//! 2035. The reference below uses chrono's calendar arithmetic and exact rationals, not the
//! billing module.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::cmp::Ordering;

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use strata_domain::{
    BillingInterval, Currency, Plan, PlanCode, Price, Proration, ProrationError, RenewalDecision,
    Subscription, SubscriptionId, SubscriptionStatus, UserId, decide_renewal, next_period, prorate,
};

const MAX_PRICE: i64 = 10_000_000;

// ---------------------------------------------------------------------------------------------
// The reference
// ---------------------------------------------------------------------------------------------

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn plan(code: &str, minor: i64, interval: BillingInterval) -> Plan {
    Plan {
        code: PlanCode::parse(code).unwrap(),
        name: code.to_owned(),
        price: Price::new(minor, usd()).unwrap(),
        interval,
        active: true,
    }
}

fn months_in(interval: BillingInterval) -> u32 {
    match interval {
        BillingInterval::Month => 1,
        BillingInterval::Year => 12,
    }
}

/// `at` plus `n` calendar months, clamped to the end of a shorter month.
fn plus_months(at: DateTime<Utc>, n: u32) -> DateTime<Utc> {
    at.checked_add_months(Months::new(n)).unwrap()
}

fn utc(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, hour, minute, second)
        .unwrap()
}

fn day(year: i32, month: u32, day: u32) -> DateTime<Utc> {
    utc(year, month, day, 0, 0, 0)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(next_year, next_month, 1)
        .and_then(|first| first.pred_opt())
        .unwrap()
        .day()
}

/// `numerator / denominator` (denominator > 0) rounded to the nearer integer, ties to the even
/// one: whichever neighbour is closer wins.
fn round_half_even(numerator: i128, denominator: i128) -> i128 {
    let below = numerator.div_euclid(denominator);
    let above = below + 1;
    match (numerator - below * denominator).cmp(&(above * denominator - numerator)) {
        Ordering::Less => below,
        Ordering::Greater => above,
        Ordering::Equal if below.rem_euclid(2) == 0 => below,
        Ordering::Equal => above,
    }
}

/// A plan change at one instant of period `index` of a subscription to the old plan.
#[derive(Debug, Clone)]
struct Change {
    // Read only in a failing case's report: where the period comes from.
    #[allow(dead_code)]
    anchor: DateTime<Utc>,
    #[allow(dead_code)]
    index: u32,
    old_interval: BillingInterval,
    new_interval: BillingInterval,
    old_price: i64,
    new_price: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    at: DateTime<Utc>,
}

impl Change {
    fn old_plan(&self) -> Plan {
        plan("old-plan", self.old_price, self.old_interval)
    }

    fn new_plan(&self) -> Plan {
        plan("new-plan", self.new_price, self.new_interval)
    }

    fn prorate(&self) -> Proration {
        prorate(
            &self.old_plan(),
            &self.new_plan(),
            self.start,
            self.end,
            self.at,
        )
        .unwrap()
    }

    fn at_start(mut self) -> Self {
        self.at = self.start;
        self
    }

    fn at_end(mut self) -> Self {
        self.at = self.end;
        self
    }

    fn period_seconds(&self) -> i64 {
        self.end.timestamp() - self.start.timestamp()
    }

    /// Whole seconds from the change to the period's end (a started second does not count).
    fn remaining(&self) -> i64 {
        let nanos = (self.end - self.at).num_nanoseconds().unwrap();
        nanos.div_euclid(1_000_000_000)
    }

    /// The period is one interval of the old plan, so the old plan's length is the period.
    fn old_length(&self) -> i64 {
        self.period_seconds()
    }

    /// The period for a plan of the same interval, else the new interval from the period's start.
    fn new_length(&self) -> i64 {
        if self.new_interval == self.old_interval {
            self.period_seconds()
        } else {
            let end = plus_months(self.start, months_in(self.new_interval));
            end.timestamp() - self.start.timestamp()
        }
    }

    /// `(credit, charge)` as positive amounts: price × remaining / length, rounded half-to-even.
    fn expected(&self) -> (i64, i64) {
        let remaining = i128::from(self.remaining());
        let amount = |price: i64, length: i64| {
            let rounded = round_half_even(i128::from(price) * remaining, i128::from(length));
            i64::try_from(rounded).unwrap()
        };
        (
            amount(self.old_price, self.old_length()),
            amount(self.new_price, self.new_length()),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn interval() -> impl Strategy<Value = BillingInterval> {
    prop_oneof![Just(BillingInterval::Month), Just(BillingInterval::Year)]
}

fn same_intervals() -> impl Strategy<Value = (BillingInterval, BillingInterval)> {
    interval().prop_map(|interval| (interval, interval))
}

fn any_intervals() -> impl Strategy<Value = (BillingInterval, BillingInterval)> {
    (interval(), interval())
}

fn price() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0..=MAX_PRICE,
        1 => 0..=100i64,
        1 => Just(MAX_PRICE),
    ]
}

fn any_prices() -> impl Strategy<Value = (i64, i64)> {
    (price(), price())
}

fn upgrade_prices() -> impl Strategy<Value = (i64, i64)> {
    any_prices()
        .prop_filter("an upgrade changes the price", |(a, b)| a != b)
        .prop_map(|(a, b)| (a.min(b), a.max(b)))
}

fn downgrade_prices() -> impl Strategy<Value = (i64, i64)> {
    upgrade_prices().prop_map(|(low, high)| (high, low))
}

/// An instant in 2020–2033 at a random time of day; month ends (day 28–31, clamped to the
/// month's length) are as likely as any other day, and 29 February and 31 January recur.
fn anchor() -> impl Strategy<Value = DateTime<Utc>> {
    let any_day = (
        2020i32..=2033,
        1u32..=12,
        prop_oneof![1u32..=31, 28u32..=31],
    )
        .prop_map(|(year, month, day)| (year, month, day.min(days_in_month(year, month))));
    let leap_day =
        prop_oneof![Just(2020), Just(2024), Just(2028), Just(2032)].prop_map(|year| (year, 2, 29));
    let january_31 = (2020i32..=2033).prop_map(|year| (year, 1, 31));
    (
        prop_oneof![6 => any_day, 1 => leap_day, 1 => january_31],
        0u32..24,
        0u32..60,
        0u32..60,
    )
        .prop_map(|((year, month, day), hour, minute, second)| {
            utc(year, month, day, hour, minute, second)
        })
}

/// A change in period `index` (up to two years in) of a subscription to the old plan, at its
/// start, its end, anywhere in it, in its last two minutes, or at a fraction of a second.
fn change(
    intervals: impl Strategy<Value = (BillingInterval, BillingInterval)>,
    prices: impl Strategy<Value = (i64, i64)>,
) -> impl Strategy<Value = Change> {
    (
        anchor(),
        intervals,
        prices,
        0u32..24,
        0u8..5,
        any::<u64>(),
        1u32..1_000_000_000,
    )
        .prop_map(
            |(
                anchor,
                (old_interval, new_interval),
                (old_price, new_price),
                index,
                at_kind,
                seed,
                nanos,
            )| {
                let index = match old_interval {
                    BillingInterval::Month => index,
                    BillingInterval::Year => index % 3,
                };
                let step = months_in(old_interval);
                let start = plus_months(anchor, step * index);
                let end = plus_months(anchor, step * (index + 1));
                let length = u64::try_from(end.timestamp() - start.timestamp()).unwrap();
                let offset = match at_kind {
                    0 => 0,
                    1 => length,
                    2 | 4 => seed % length,
                    _ => length - seed % 121,
                };
                let mut at = start + TimeDelta::seconds(i64::try_from(offset).unwrap());
                if at_kind == 4 {
                    at += TimeDelta::nanoseconds(i64::from(nanos));
                }
                Change {
                    anchor,
                    index,
                    old_interval,
                    new_interval,
                    old_price,
                    new_price,
                    start,
                    end,
                    at,
                }
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Proration properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    /// The whole rule: credit and charge are each the exact rational rounded half-to-even, the
    /// total is their sum, all in the plans' currency.
    #[test]
    fn proration_is_the_exact_rational_rounded_half_to_even(
        change in change(any_intervals(), any_prices())
    ) {
        let proration = change.prorate();
        let (credit, charge) = change.expected();
        prop_assert_eq!(proration.credit.amount_minor, -credit);
        prop_assert_eq!(proration.charge.amount_minor, charge);
        prop_assert_eq!(proration.total.amount_minor, charge - credit);
        prop_assert_eq!(proration.remaining_seconds, change.remaining());
        for money in [proration.credit, proration.charge, proration.total] {
            prop_assert_eq!(money.currency, usd());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// An upgrade never refunds. It costs at least one minor unit once the exact difference,
    /// `(new − old) × remaining / length`, exceeds one minor unit; at exactly one it may round to
    /// zero (3.5 → 4 and 4.5 → 4, see the worked example). Rounding each amount on its own
    /// keeps the total within one minor unit of the exact difference.
    #[test]
    fn an_upgrade_never_refunds_and_costs_once_the_difference_exceeds_one_minor_unit(
        change in change(same_intervals(), upgrade_prices())
    ) {
        let total = change.prorate().total.amount_minor;
        let exact = i128::from(change.new_price - change.old_price) * i128::from(change.remaining());
        let length = i128::from(change.period_seconds());
        prop_assert!(total >= 0);
        if exact > length {
            prop_assert!(total >= 1);
        }
        prop_assert!((i128::from(total) * length - exact).abs() <= length);
    }

    /// The mirror image: a downgrade never costs, and refunds once the difference exceeds one
    /// minor unit.
    #[test]
    fn a_downgrade_never_costs_and_refunds_once_the_difference_exceeds_one_minor_unit(
        change in change(same_intervals(), downgrade_prices())
    ) {
        let total = change.prorate().total.amount_minor;
        let exact = i128::from(change.new_price - change.old_price) * i128::from(change.remaining());
        let length = i128::from(change.period_seconds());
        prop_assert!(total <= 0);
        if -exact > length {
            prop_assert!(total <= -1);
        }
        prop_assert!((i128::from(total) * length - exact).abs() <= length);
    }

    /// Credit and charge of the same plan round identically.
    #[test]
    fn changing_to_the_same_plan_nets_to_zero(
        change in change(same_intervals(), price().prop_map(|p| (p, p)))
    ) {
        let same = change.old_plan();
        let proration = prorate(&same, &same, change.start, change.end, change.at).unwrap();
        prop_assert_eq!(proration.total.amount_minor, 0);
        prop_assert_eq!(proration.credit.amount_minor, -proration.charge.amount_minor);
    }

    /// At the period's start with equal intervals the whole old price is credited and the whole
    /// new price charged, even when the period starts on a clamped day (28 February → 31 March).
    #[test]
    fn a_change_at_the_period_start_costs_exactly_the_price_difference(
        change in change(same_intervals(), any_prices()).prop_map(Change::at_start)
    ) {
        let proration = change.prorate();
        prop_assert_eq!(proration.credit.amount_minor, -change.old_price);
        prop_assert_eq!(proration.charge.amount_minor, change.new_price);
        prop_assert_eq!(proration.total.amount_minor, change.new_price - change.old_price);
    }

    /// Nothing remains at the period's end, whatever the plans.
    #[test]
    fn a_change_at_the_period_end_costs_nothing(
        change in change(any_intervals(), any_prices()).prop_map(Change::at_end)
    ) {
        let proration = change.prorate();
        prop_assert_eq!(proration.remaining_seconds, 0);
        prop_assert_eq!(proration.credit.amount_minor, 0);
        prop_assert_eq!(proration.charge.amount_minor, 0);
        prop_assert_eq!(proration.total.amount_minor, 0);
    }

    /// The credit is never more than the old price (the period is one interval of the old
    /// plan) and the charge never more than the new price while the remaining time fits in one
    /// interval of the new plan: always for equal intervals and for monthly → yearly. A yearly →
    /// monthly change instead charges the monthly rate for all the time left in the year (see the
    /// worked example).
    #[test]
    fn the_credit_and_charge_never_exceed_a_full_price(
        change in change(any_intervals(), any_prices())
    ) {
        let proration = change.prorate();
        let (credit, charge) = (-proration.credit.amount_minor, proration.charge.amount_minor);
        prop_assert!((0..=change.old_price).contains(&credit));
        prop_assert!(charge >= 0);
        let fits = change.remaining() <= change.new_length();
        if change.old_interval == change.new_interval || change.new_interval == BillingInterval::Year {
            prop_assert!(fits);
        }
        if fits {
            prop_assert!(charge <= change.new_price);
        }
    }

    /// Changing back at the same instant undoes a change to the minor unit, whatever the
    /// intervals: the second credit is exactly the first charge and vice versa.
    #[test]
    fn changing_back_at_the_same_instant_undoes_the_change(
        change in change(any_intervals(), any_prices())
    ) {
        let there = change.prorate();
        let back = prorate(&change.new_plan(), &change.old_plan(), change.start, change.end, change.at)
            .unwrap();
        prop_assert_eq!(back.credit.amount_minor, -there.charge.amount_minor);
        prop_assert_eq!(back.charge.amount_minor, -there.credit.amount_minor);
        prop_assert_eq!(back.total.amount_minor, -there.total.amount_minor);
    }

    /// Outside `[start, end]` there is nothing to prorate.
    #[test]
    fn a_change_outside_the_period_is_refused(
        change in change(any_intervals(), any_prices()),
        seconds in 1i64..=400 * 86_400,
    ) {
        let (old, new) = (change.old_plan(), change.new_plan());
        let before = change.start - TimeDelta::seconds(seconds);
        let after = change.end + TimeDelta::seconds(seconds);
        for at in [before, after] {
            prop_assert_eq!(
                prorate(&old, &new, change.start, change.end, at),
                Err(ProrationError::OutsidePeriod)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Calendar properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// From a period's end, the next period starts there and ends at the anchor's next
    /// boundary.
    #[test]
    fn the_next_period_starts_where_the_current_one_ends(
        anchor in anchor(),
        interval in interval(),
        n in 0u32..48,
    ) {
        let step = months_in(interval);
        let current_end = plus_months(anchor, step * n);
        let (start, end) = next_period(anchor, current_end, interval).unwrap();
        prop_assert_eq!(start, current_end);
        prop_assert!(end > start);
        prop_assert_eq!(end, plus_months(anchor, step * (n + 1)));
    }

    /// Forty-eight monthly periods in a row: every boundary is the anchor plus whole months,
    /// on the anchor's day clamped to the month's length, at the anchor's time of day.
    #[test]
    fn monthly_periods_never_drift_from_their_anchor(anchor in anchor()) {
        let mut current_end = anchor;
        for n in 1..=48 {
            let (start, end) = next_period(anchor, current_end, BillingInterval::Month).unwrap();
            prop_assert_eq!(start, current_end);
            prop_assert_eq!(end, plus_months(anchor, n));
            prop_assert_eq!(end.day(), anchor.day().min(days_in_month(end.year(), end.month())));
            prop_assert_eq!(end.time(), anchor.time());
            current_end = end;
        }
    }

    /// After a monthly → yearly change the period keeps its monthly end; from there the plan
    /// renews a whole year at a time (not up to the anchor's next anniversary).
    #[test]
    fn a_yearly_plan_on_a_monthly_period_renews_for_a_whole_year(
        anchor in anchor(),
        n in 1u32..36,
    ) {
        let current_end = plus_months(anchor, n);
        let (start, end) = next_period(anchor, current_end, BillingInterval::Year).unwrap();
        prop_assert_eq!(start, current_end);
        let expected = if n % 12 == 0 {
            plus_months(anchor, n + 12)
        } else {
            plus_months(current_end, 12)
        };
        prop_assert_eq!(end, expected);
    }
}

// ---------------------------------------------------------------------------------------------
// Renewal properties
// ---------------------------------------------------------------------------------------------

fn subscription(
    plan: &Plan,
    anchor: DateTime<Utc>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    cancel_at_period_end: bool,
) -> Subscription {
    Subscription {
        id: SubscriptionId(uuid::Uuid::from_u128(1)),
        user_id: UserId(uuid::Uuid::from_u128(2)),
        plan_code: plan.code.clone(),
        status: SubscriptionStatus::Active,
        anchor,
        current_period_start: start,
        current_period_end: end,
        cancel_at_period_end,
        cancelled_at: None,
        created_at: anchor,
        updated_at: anchor,
    }
}

/// A subscription in period `n` of its plan, and the plan.
fn subscribed() -> impl Strategy<Value = (Plan, Subscription, u32)> {
    (anchor(), interval(), price(), 0u32..24, any::<bool>()).prop_map(
        |(anchor, interval, price, n, cancel)| {
            let plan = plan("some-plan", price, interval);
            let n = match interval {
                BillingInterval::Month => n,
                BillingInterval::Year => n % 3,
            };
            let step = months_in(interval);
            let start = plus_months(anchor, step * n);
            let end = plus_months(anchor, step * (n + 1));
            let subscription = subscription(&plan, anchor, start, end, cancel);
            (plan, subscription, n)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Before its period ends a subscription is left alone.
    #[test]
    fn renewal_is_not_due_before_the_period_end(
        (plan, subscription, _) in subscribed(),
        seed in any::<u64>(),
    ) {
        let length = subscription.current_period_end - subscription.current_period_start;
        let offset = seed % u64::try_from(length.num_seconds()).unwrap();
        let now = subscription.current_period_start + TimeDelta::seconds(i64::try_from(offset).unwrap());
        prop_assert_eq!(decide_renewal(&subscription, &plan, now), Ok(RenewalDecision::NotDue));
        let last_instant = subscription.current_period_end - TimeDelta::nanoseconds(1);
        prop_assert_eq!(decide_renewal(&subscription, &plan, last_instant), Ok(RenewalDecision::NotDue));
    }

    /// From the period's end on: cancel as of the end if so marked, else bill the next period at
    /// the plan's full price.
    #[test]
    fn a_due_subscription_is_cancelled_if_marked_else_renewed_at_full_price(
        (plan, subscription, n) in subscribed(),
        late_by in prop_oneof![Just(0i64), 0i64..=2 * 366 * 86_400],
    ) {
        let end = subscription.current_period_end;
        let now = end + TimeDelta::seconds(late_by);
        let decision = decide_renewal(&subscription, &plan, now).unwrap();
        if subscription.cancel_at_period_end {
            prop_assert_eq!(decision, RenewalDecision::Cancel { at: end });
        } else {
            let RenewalDecision::Renew { period_start, period_end, line } = decision else {
                return Err(TestCaseError::fail(format!("not renewed: {decision:?}")));
            };
            let step = months_in(plan.interval);
            prop_assert_eq!(period_start, end);
            prop_assert_eq!(period_end, plus_months(subscription.anchor, step * (n + 2)));
            prop_assert_eq!(line.amount, plan.price.money());
        }
    }

    /// A cancelled subscription is never renewed.
    #[test]
    fn a_cancelled_subscription_is_never_due(
        (plan, mut subscription, _) in subscribed(),
        late_by in 0i64..=2 * 366 * 86_400,
    ) {
        subscription.status = SubscriptionStatus::Cancelled;
        let now = subscription.current_period_end + TimeDelta::seconds(late_by);
        prop_assert_eq!(decide_renewal(&subscription, &plan, now), Ok(RenewalDecision::NotDue));
    }

    /// A subscription several periods behind is renewed one period per call, with contiguous
    /// periods, each at full price, until it has caught up with `now`.
    #[test]
    fn a_late_subscription_catches_up_one_invoice_per_period(
        (plan, subscription, n) in subscribed(),
        late_by in 0i64..=3 * 366 * 86_400,
    ) {
        let mut subscription = Subscription { cancel_at_period_end: false, ..subscription };
        let now = subscription.current_period_end + TimeDelta::seconds(late_by);
        let step = months_in(plan.interval);
        let mut invoices = 0u32;
        while let RenewalDecision::Renew { period_start, period_end, line } =
            decide_renewal(&subscription, &plan, now).unwrap()
        {
            prop_assert_eq!(period_start, subscription.current_period_end);
            prop_assert_eq!(line.amount, plan.price.money());
            subscription.current_period_start = period_start;
            subscription.current_period_end = period_end;
            invoices += 1;
            prop_assert!(invoices <= 40);
        }
        let boundaries_passed = (n + 1..n + 60)
            .take_while(|k| plus_months(subscription.anchor, step * k) <= now)
            .count();
        prop_assert_eq!(usize::try_from(invoices).unwrap(), boundaries_passed);
        prop_assert!(subscription.current_period_end > now);
    }
}

// ---------------------------------------------------------------------------------------------
// Worked examples
// ---------------------------------------------------------------------------------------------

fn basic() -> Plan {
    plan("basic-monthly", 999, BillingInterval::Month)
}

fn pro() -> Plan {
    plan("pro-monthly", 2_999, BillingInterval::Month)
}

fn pro_yearly() -> Plan {
    plan("pro-yearly", 29_990, BillingInterval::Year)
}

fn amounts(proration: &Proration) -> (i64, i64, i64) {
    (
        proration.credit.amount_minor,
        proration.charge.amount_minor,
        proration.total.amount_minor,
    )
}

#[test]
fn an_upgrade_ten_days_into_a_30_day_month_settles_two_thirds_of_the_difference() {
    // April 2027: 30 days, 20 remain. 999 × 2/3 = 666, 2999 × 2/3 = 1999.33.
    let proration = prorate(
        &basic(),
        &pro(),
        day(2027, 4, 1),
        day(2027, 5, 1),
        day(2027, 4, 11),
    )
    .unwrap();
    assert_eq!(amounts(&proration), (-666, 1_999, 1_333));
    assert_eq!(proration.remaining_seconds, 20 * 86_400);
}

#[test]
fn an_upgrade_ten_days_into_a_31_day_month_settles_twenty_one_thirty_firsts() {
    // May 2027: 31 days, 21 remain. 999 × 21/31 = 676.74, 2999 × 21/31 = 2031.58.
    let proration = prorate(
        &basic(),
        &pro(),
        day(2027, 5, 1),
        day(2027, 6, 1),
        day(2027, 5, 11),
    )
    .unwrap();
    assert_eq!(amounts(&proration), (-677, 2_032, 1_355));
}

#[test]
fn a_downgrade_mid_month_refunds_what_the_upgrade_would_cost() {
    let proration = prorate(
        &pro(),
        &basic(),
        day(2027, 5, 1),
        day(2027, 6, 1),
        day(2027, 5, 11),
    )
    .unwrap();
    assert_eq!(amounts(&proration), (-2_032, 677, -1_355));
}

#[test]
fn a_period_starting_on_a_clamped_day_is_prorated_over_its_own_length() {
    // Anchored on 31 January: the second period runs 28 February → 31 March, 31 days. On 10 March
    // 21 days remain: 21/31 of each price, as in any 31-day month (not 21/28).
    let anchor = utc(2027, 1, 31, 9, 0, 0);
    let (start, end) =
        next_period(anchor, utc(2027, 2, 28, 9, 0, 0), BillingInterval::Month).unwrap();
    assert_eq!(
        (start, end),
        (utc(2027, 2, 28, 9, 0, 0), utc(2027, 3, 31, 9, 0, 0))
    );
    let proration = prorate(&basic(), &pro(), start, end, utc(2027, 3, 10, 9, 0, 0)).unwrap();
    assert_eq!(amounts(&proration), (-677, 2_032, 1_355));
    // And three days into it, the credit is less than a full month.
    let early = prorate(&basic(), &pro(), start, end, utc(2027, 3, 3, 9, 0, 0)).unwrap();
    assert_eq!(amounts(&early), (-902, 2_709, 1_807));
}

#[test]
fn monthly_to_yearly_charges_the_yearly_price_pro_rata_of_a_year() {
    // 20 of April's 30 days remain; a year from 1 April 2027 is 366 days (29 February 2028).
    // Credit 2999 × 20/30 = 1999.33; charge 29990 × 20/366 = 1638.80. The yearly plan is cheaper
    // per day, so this "upgrade" refunds until the period ends, then renews for a year.
    let proration = prorate(
        &pro(),
        &pro_yearly(),
        day(2027, 4, 1),
        day(2027, 5, 1),
        day(2027, 4, 11),
    )
    .unwrap();
    assert_eq!(amounts(&proration), (-1_999, 1_639, -360));
}

#[test]
fn yearly_to_monthly_charges_the_monthly_rate_for_the_rest_of_the_year() {
    // 183 of 2027's 365 days remain; a month from 1 January is 31 days. Credit 29990 × 183/365 =
    // 15036.08; charge 2999 × 183/31 = 17703.77: almost six months of the monthly plan, not one.
    let proration = prorate(
        &pro_yearly(),
        &pro(),
        day(2027, 1, 1),
        day(2028, 1, 1),
        day(2027, 7, 2),
    )
    .unwrap();
    assert_eq!(amounts(&proration), (-15_036, 17_704, 2_668));
}

#[test]
fn each_amount_rounds_half_to_even() {
    // Half of April remains: 1 × ½ = 0.5 → 0, 3 × ½ = 1.5 → 2, 5 × ½ = 2.5 → 2, 7 × ½ = 3.5 → 4.
    let half = |price| {
        let cheap = plan("cheap", price, BillingInterval::Month);
        let free = plan("free", 0, BillingInterval::Month);
        prorate(
            &free,
            &cheap,
            day(2027, 4, 1),
            day(2027, 5, 1),
            day(2027, 4, 16),
        )
        .unwrap()
        .charge
        .amount_minor
    };
    assert_eq!([half(1), half(3), half(5), half(7)], [0, 2, 2, 4]);
}

#[test]
fn an_upgrade_worth_exactly_one_minor_unit_can_round_to_nothing() {
    // 7 → 9 with half the period left: 3.5 → 4 and 4.5 → 4. The exact difference is 1.
    let proration = prorate(
        &plan("seven", 7, BillingInterval::Month),
        &plan("nine", 9, BillingInterval::Month),
        day(2027, 4, 1),
        day(2027, 5, 1),
        day(2027, 4, 16),
    )
    .unwrap();
    assert_eq!(amounts(&proration), (-4, 4, 0));
}

#[test]
fn a_started_second_does_not_count_as_remaining() {
    let at = day(2027, 4, 30) + TimeDelta::milliseconds(86_400_000 - 1_500);
    let proration = prorate(&basic(), &pro(), day(2027, 4, 1), day(2027, 5, 1), at).unwrap();
    assert_eq!(proration.remaining_seconds, 1);
}

#[test]
fn plans_in_different_currencies_cannot_be_prorated() {
    let mut euro = pro();
    euro.price = Price::new(2_999, Currency::parse("EUR").unwrap()).unwrap();
    assert_eq!(
        prorate(
            &basic(),
            &euro,
            day(2027, 4, 1),
            day(2027, 5, 1),
            day(2027, 4, 11)
        ),
        Err(ProrationError::CurrencyMismatch)
    );
}

#[test]
fn an_empty_or_reversed_period_cannot_be_prorated() {
    let april = day(2027, 4, 1);
    assert_eq!(
        prorate(&basic(), &pro(), april, april, april),
        Err(ProrationError::OutsidePeriod)
    );
    assert_eq!(
        prorate(&basic(), &pro(), day(2027, 5, 1), april, day(2027, 4, 11)),
        Err(ProrationError::OutsidePeriod)
    );
}

#[test]
fn a_subscription_anchored_on_january_31_renews_on_each_month_end() {
    let anchor = utc(2020, 1, 31, 12, 30, 0);
    let mut current_end = anchor;
    let mut days = Vec::new();
    for _ in 0..48 {
        let (start, end) = next_period(anchor, current_end, BillingInterval::Month).unwrap();
        assert_eq!(start, current_end);
        assert_eq!(end.time(), anchor.time());
        days.push((end.month(), end.day()));
        current_end = end;
    }
    // Every boundary is the last day of its month: 29 February in 2020, 28 after.
    for (k, (month, day)) in days.iter().enumerate() {
        let year = 2020 + i32::try_from((k + 1) / 12).unwrap();
        assert_eq!(*day, days_in_month(year, *month), "period {k}");
    }
    assert_eq!(&days[..4], [(2, 29), (3, 31), (4, 30), (5, 31)]);
    assert_eq!(days[12], (2, 28));
    assert_eq!(current_end, utc(2024, 1, 31, 12, 30, 0));
}

#[test]
fn february_29_plus_a_year_is_february_28_and_comes_back_in_a_leap_year() {
    let anchor = day(2028, 2, 29);
    let year = BillingInterval::Year;
    assert_eq!(year.advance(anchor, 1), Some(day(2029, 2, 28)));
    assert_eq!(year.advance(anchor, 4), Some(day(2032, 2, 29)));
    let mut current_end = anchor;
    let mut ends = Vec::new();
    for _ in 0..4 {
        let (_, end) = next_period(anchor, current_end, year).unwrap();
        ends.push(end);
        current_end = end;
    }
    assert_eq!(
        ends,
        [
            day(2029, 2, 28),
            day(2030, 2, 28),
            day(2031, 2, 28),
            day(2032, 2, 29)
        ]
    );
}

#[test]
fn the_period_after_a_monthly_to_yearly_change_is_a_whole_year() {
    // Anchored 15 January; changed to the yearly plan during 15 March → 15 April.
    let anchor = day(2027, 1, 15);
    let plan = pro_yearly();
    let subscription = subscription(&plan, anchor, day(2027, 3, 15), day(2027, 4, 15), false);
    let decision = decide_renewal(&subscription, &plan, day(2027, 4, 15)).unwrap();
    let RenewalDecision::Renew {
        period_start,
        period_end,
        line,
    } = decision
    else {
        panic!("not renewed: {decision:?}");
    };
    assert_eq!(
        (period_start, period_end),
        (day(2027, 4, 15), day(2028, 4, 15))
    );
    assert_eq!(line.amount.amount_minor, 29_990);
    assert_eq!(
        line.description,
        "pro-yearly (yearly), 2027-04-15 to 2028-04-15"
    );
}

#[test]
fn a_subscription_marked_to_cancel_ends_at_its_period_end() {
    let plan = basic();
    let anchor = day(2027, 1, 31);
    let subscription = subscription(&plan, anchor, anchor, day(2027, 2, 28), true);
    assert_eq!(
        decide_renewal(&subscription, &plan, day(2027, 2, 27)),
        Ok(RenewalDecision::NotDue)
    );
    assert_eq!(
        decide_renewal(&subscription, &plan, day(2027, 3, 5)),
        Ok(RenewalDecision::Cancel {
            at: day(2027, 2, 28)
        })
    );
}
