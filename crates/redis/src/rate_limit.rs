//! [`RateLimiter`] as a sliding-window log in a Redis sorted set.
//!
//! Each budget is one sorted set, `<prefix>rl:{<key>}`, whose members are the requests counted in
//! the window and whose scores are their times in µs by Redis' own clock. The hash tag keeps a
//! budget on one slot should the deployment move to Redis Cluster. One script trims the requests
//! that left the window, counts the rest and admits or refuses, so concurrent checks from any
//! number of instances never admit more than the limit, and all of them agree on the time.
//!
//! A refused request is not logged: a client hammering a spent budget does not push its own
//! recovery further away (it is admitted again as soon as its oldest counted request leaves the
//! window), and the log never grows past the limit, which bounds the memory of a budget.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use strata_ports::{PortError, RateDecision, RateLimit, RateLimiter};
use uuid::Uuid;

use crate::connection::RedisConnection;

/// `KEYS[1]`: the log; `ARGV[1]`: the limit (≥ 1); `ARGV[2]`: the window in µs; `ARGV[3]`: the
/// key's time to live in ms; `ARGV[4]`: a member unique to this request. Returns `{allowed,
/// remaining, reset_after_us}`.
///
/// TIME rather than the caller's clock, so that instances with skewed clocks share one window;
/// Redis ≥ 5 replicates scripts by their effects, which is what allows TIME before a write.
/// `now` is built from TIME's two fields and never goes through `tostring`, whose 14 significant
/// digits would round a µs timestamp. The member comes from the caller because two requests can
/// arrive in the same µs, and a sorted set would merge equal members.
const SLIDING_WINDOW_LUA: &str = r"
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
local remaining = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  allowed = 1
  remaining = limit - count - 1
end
local reset_after = window
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if oldest[2] then
  reset_after = tonumber(oldest[2]) + window - now
end
-- A clock stepped back leaves entries from the future: never promise more than one window.
reset_after = math.max(0, math.min(window, reset_after))
return {allowed, remaining, reset_after}
";

static SLIDING_WINDOW: LazyLock<Script> = LazyLock::new(|| Script::new(SLIDING_WINDOW_LUA));

/// The shortest window: the key's expiry has ms granularity.
const MIN_WINDOW_US: u64 = 1_000;

/// The longest window: Lua numbers and sorted-set scores are doubles, exact for integers up to
/// 2^53, and `now + window` must stay below that (2^52 µs is about 142 years).
const MAX_WINDOW_US: u64 = 1 << 52;

/// Sliding-window budgets shared by every instance that uses the same Redis and prefix.
#[derive(Debug, Clone)]
pub struct RedisRateLimiter {
    redis: RedisConnection,
}

impl RedisRateLimiter {
    /// A limiter on `redis`; nothing is written before the first check.
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }

    /// The Redis key holding `key`'s log.
    pub fn budget_key(&self, key: &str) -> String {
        self.redis.key_of(&["rl:{", key, "}"])
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str, limit: RateLimit) -> Result<RateDecision, PortError> {
        let window_us = u64::try_from(limit.window.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(MIN_WINDOW_US, MAX_WINDOW_US);
        if limit.limit == 0 {
            // Nothing could ever be admitted: no need to ask Redis, nor to fail when it is down.
            return Ok(RateDecision {
                allowed: false,
                limit: 0,
                remaining: 0,
                reset_after: Duration::from_micros(window_us),
            });
        }
        // One ms over the window: the expiry counts from Redis' ms clock, which lags the µs score
        // of the newest entry by up to a ms, and the key must not vanish before that entry leaves.
        let ttl_ms = window_us.div_ceil(1_000) + 1;
        let log = self.budget_key(key);
        let member = Uuid::new_v4();
        let (allowed, remaining, reset_after_us): (i64, i64, i64) = self
            .redis
            .run(|mut conn| async move {
                SLIDING_WINDOW
                    .key(log)
                    .arg(limit.limit)
                    .arg(window_us)
                    .arg(ttl_ms)
                    .arg(member.as_bytes().as_slice())
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(RateDecision {
            allowed: allowed == 1,
            limit: limit.limit,
            remaining: u32::try_from(remaining.clamp(0, i64::from(limit.limit))).unwrap_or(0),
            reset_after: Duration::from_micros(u64::try_from(reset_after_us).unwrap_or(0)),
        })
    }
}
