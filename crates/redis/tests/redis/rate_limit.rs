//! The sliding-window rate limiter against a real server, each test under its own random key
//! prefix. Timed tests keep every check at least 250 ms away from a window's edge and assert on
//! counts, so that a loaded machine slows them down without failing them.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::collections::BTreeSet;
use std::time::Duration;

use redis::AsyncCommands;
use strata_ports::{RateDecision, RateLimit, RateLimiter};
use strata_redis::testing::{isolated, isolated_settings};
use strata_redis::{RedisConnection, RedisRateLimiter};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

fn budget(limit: u32, window_ms: u64) -> RateLimit {
    RateLimit {
        limit,
        window: Duration::from_millis(window_ms),
    }
}

fn limiter() -> anyhow::Result<(RedisRateLimiter, RedisConnection)> {
    let redis = isolated()?;
    Ok((RedisRateLimiter::new(redis.clone()), redis))
}

/// Checks `key` `n` times in a row; returns how many were allowed.
async fn allowed_of(
    limiter: &RedisRateLimiter,
    key: &str,
    limit: RateLimit,
    n: usize,
) -> anyhow::Result<usize> {
    let mut allowed = 0;
    for _ in 0..n {
        if limiter.check(key, limit).await?.allowed {
            allowed += 1;
        }
    }
    Ok(allowed)
}

async fn log_len(redis: &RedisConnection, log: String) -> anyhow::Result<u64> {
    Ok(redis
        .run(|mut conn| async move { conn.zcard(log).await })
        .await?)
}

#[tokio::test]
async fn counts_exactly_up_to_the_limit() -> anyhow::Result<()> {
    let (limiter, _redis) = limiter()?;
    let limit = budget(5, 1_000);
    for expected in [4, 3, 2, 1, 0] {
        let decision = limiter.check("ip:10.0.0.1", limit).await?;
        assert!(decision.allowed, "{decision:?}");
        assert_eq!(decision.limit, 5);
        assert_eq!(decision.remaining, expected);
        assert!(decision.reset_after > Duration::ZERO);
        assert!(decision.reset_after <= limit.window);
    }
    let refused = limiter.check("ip:10.0.0.1", limit).await?;
    assert!(!refused.allowed, "{refused:?}");
    assert_eq!(refused.limit, 5);
    assert_eq!(refused.remaining, 0);
    assert!(refused.reset_after > Duration::ZERO, "{refused:?}");
    assert!(refused.reset_after <= limit.window, "{refused:?}");
    Ok(())
}

#[tokio::test]
async fn the_window_slides_one_request_at_a_time() -> anyhow::Result<()> {
    let (limiter, _redis) = limiter()?;
    let limit = budget(3, 2_000);
    let t0 = Instant::now();
    assert_eq!(allowed_of(&limiter, "k", limit, 2).await?, 2);
    sleep_until(t0 + Duration::from_millis(1_000)).await;
    assert_eq!(allowed_of(&limiter, "k", limit, 1).await?, 1);

    // All three are inside the window: the first two leave it at t0 + 2 s.
    sleep_until(t0 + Duration::from_millis(1_500)).await;
    let refused = limiter.check("k", limit).await?;
    assert!(!refused.allowed, "{refused:?}");
    assert!(refused.reset_after > Duration::ZERO, "{refused:?}");
    assert!(
        refused.reset_after <= Duration::from_millis(1_000),
        "{refused:?}"
    );

    // The first two have left, the third stays until t0 + 3 s: exactly two slots are free.
    sleep_until(t0 + Duration::from_millis(2_500)).await;
    assert_eq!(allowed_of(&limiter, "k", limit, 4).await?, 2);
    Ok(())
}

#[tokio::test]
async fn no_double_burst_across_a_fixed_window_boundary_and_refusals_do_not_extend_the_ban()
-> anyhow::Result<()> {
    let (limiter, redis) = limiter()?;
    let limit = budget(4, 1_000);
    let t0 = Instant::now();
    assert_eq!(allowed_of(&limiter, "burst", limit, 4).await?, 4);

    // A fixed one-second window has a boundary somewhere in the next second, after which it would
    // admit four more; a sliding one admits none until the first four are a second old.
    for at_ms in [250, 500, 750] {
        sleep_until(t0 + Duration::from_millis(at_ms)).await;
        assert_eq!(
            allowed_of(&limiter, "burst", limit, 4).await?,
            0,
            "at {at_ms} ms"
        );
    }
    assert_eq!(log_len(&redis, limiter.budget_key("burst")).await?, 4);

    sleep_until(t0 + Duration::from_millis(1_250)).await;
    assert_eq!(allowed_of(&limiter, "burst", limit, 6).await?, 4);
    Ok(())
}

#[tokio::test]
async fn instances_on_the_same_prefix_share_one_budget() -> anyhow::Result<()> {
    let settings = isolated_settings();
    let a = RedisRateLimiter::new(RedisConnection::new(&settings)?);
    let b = RedisRateLimiter::new(RedisConnection::new(&settings)?);
    let limit = budget(7, 60_000);

    assert!(a.check("user:1", limit).await?.allowed);
    let seen_by_b = b.check("user:1", limit).await?;
    assert!(seen_by_b.allowed);
    assert_eq!(seen_by_b.remaining, 5);

    let mut checks = JoinSet::new();
    for i in 0..20 {
        let limiter = if i % 2 == 0 { a.clone() } else { b.clone() };
        checks.spawn(async move { limiter.check("user:1", limit).await });
    }
    let mut allowed = 0;
    while let Some(decision) = checks.join_next().await {
        if decision??.allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_admit_exactly_the_limit() -> anyhow::Result<()> {
    let (limiter, redis) = limiter()?;
    let limit = budget(20, 60_000);
    let mut checks = JoinSet::new();
    for _ in 0..50 {
        let limiter = limiter.clone();
        checks.spawn(async move { limiter.check("hot", limit).await });
    }
    let mut decisions: Vec<RateDecision> = Vec::new();
    while let Some(decision) = checks.join_next().await {
        decisions.push(decision??);
    }
    let allowed: Vec<_> = decisions.iter().filter(|d| d.allowed).collect();
    assert_eq!(allowed.len(), 20);
    // Each admitted request saw a different count: none raced another between count and add.
    let remaining: BTreeSet<u32> = allowed.iter().map(|d| d.remaining).collect();
    assert_eq!(remaining, (0..20).collect());
    assert!(
        decisions
            .iter()
            .filter(|d| !d.allowed)
            .all(|d| d.remaining == 0)
    );
    assert_eq!(log_len(&redis, limiter.budget_key("hot")).await?, 20);
    Ok(())
}

#[tokio::test]
async fn keys_have_independent_budgets_that_expire() -> anyhow::Result<()> {
    let (limiter, redis) = limiter()?;
    let limit = budget(2, 1_500);
    assert_eq!(allowed_of(&limiter, "login:ip:1", limit, 3).await?, 2);
    let other = limiter.check("login:ip:2", limit).await?;
    assert!(other.allowed);
    assert_eq!(other.remaining, 1);

    let log = limiter.budget_key("login:ip:1");
    assert!(log.ends_with("rl:{login:ip:1}"), "{log}");
    let ttl: i64 = redis
        .run(|mut conn| {
            let log = log.clone();
            async move { conn.pttl(log).await }
        })
        .await?;
    // The window plus the one ms of rounding slack.
    assert!(ttl > 0 && ttl <= 1_501, "PTTL {ttl}");

    let short = budget(1, 100);
    assert!(limiter.check("brief", short).await?.allowed);
    sleep_until(Instant::now() + Duration::from_millis(600)).await;
    let brief = limiter.budget_key("brief");
    let exists: bool = redis
        .run(|mut conn| async move { conn.exists(brief).await })
        .await?;
    assert!(!exists, "the log outlived its window");
    assert!(limiter.check("brief", short).await?.allowed);
    Ok(())
}

#[tokio::test]
async fn a_zero_limit_refuses_everything() -> anyhow::Result<()> {
    let (limiter, redis) = limiter()?;
    let limit = budget(0, 1_000);
    for _ in 0..3 {
        let decision = limiter.check("banned", limit).await?;
        assert_eq!(
            decision,
            RateDecision {
                allowed: false,
                limit: 0,
                remaining: 0,
                reset_after: Duration::from_secs(1),
            }
        );
    }
    assert_eq!(log_len(&redis, limiter.budget_key("banned")).await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_window_shorter_than_a_millisecond_counts_as_one() -> anyhow::Result<()> {
    let (limiter, _redis) = limiter()?;
    let limit = RateLimit {
        limit: 1,
        window: Duration::ZERO,
    };
    let decision = limiter.check("tiny", limit).await?;
    assert!(decision.allowed);
    assert!(
        decision.reset_after <= Duration::from_millis(1),
        "{decision:?}"
    );
    sleep_until(Instant::now() + Duration::from_millis(20)).await;
    assert!(limiter.check("tiny", limit).await?.allowed);
    Ok(())
}
