//! The Redis adapters against a real server (or a Redis Cluster, see `strata_redis::testing`),
//! each test under its own random key prefix.
//!
//! The adapter's only integration-test binary (ADR 0026): the cache, the token blacklist and the
//! connection are tested here, the job queue and the rate limiter in the modules under
//! `tests/redis/`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

#[path = "redis/jobs.rs"]
mod jobs;
#[path = "redis/rate_limit.rs"]
mod rate_limit;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use redis::AsyncCommands;
use strata_domain::UserId;
use strata_ports::{Cache, HealthCheck, PortError, TokenBlacklist, TokenRevocation};
use strata_redis::testing::{isolated, isolated_settings, raw};
use strata_redis::{RedisCache, RedisConnection, RedisSettings, RedisTokenBlacklist};
use uuid::Uuid;

#[tokio::test]
async fn the_cache_stores_replaces_and_deletes() -> anyhow::Result<()> {
    let cache = RedisCache::new(isolated()?);
    assert_eq!(cache.get("k").await?, None);
    cache.set("k", "v1", Duration::from_secs(60)).await?;
    cache.set("k", "v2", Duration::from_secs(60)).await?;
    assert_eq!(cache.get("k").await?.as_deref(), Some("v2"));
    cache.delete("k").await?;
    cache.delete("k").await?;
    assert_eq!(cache.get("k").await?, None);

    cache.set("a", "1", Duration::from_secs(60)).await?;
    cache.set("b", "2", Duration::from_secs(60)).await?;
    cache.set("c", "3", Duration::from_secs(60)).await?;
    cache
        .delete_many(&["a".to_owned(), "b".to_owned(), "missing".to_owned()])
        .await?;
    cache.delete_many(&[]).await?;
    assert_eq!(cache.get("a").await?, None);
    assert_eq!(cache.get("b").await?, None);
    assert_eq!(cache.get("c").await?.as_deref(), Some("3"));
    Ok(())
}

#[tokio::test]
async fn cached_values_expire_with_their_ttl() -> anyhow::Result<()> {
    let cache = RedisCache::new(isolated()?);
    cache.set("short", "v", Duration::from_millis(100)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cache.get("short").await?, None);
    Ok(())
}

#[tokio::test]
async fn prefixes_keep_instances_apart() -> anyhow::Result<()> {
    let (a, b) = (RedisCache::new(isolated()?), RedisCache::new(isolated()?));
    a.set("shared-name", "a", Duration::from_secs(60)).await?;
    assert_eq!(b.get("shared-name").await?, None);
    Ok(())
}

#[tokio::test]
async fn a_revoked_token_is_reported_for_the_ttl_it_was_given() -> anyhow::Result<()> {
    let connection = isolated()?;
    let blacklist = RedisTokenBlacklist::new(connection.clone());
    let (user, session) = (UserId(Uuid::now_v7()), Uuid::now_v7());
    let (revoked, other) = (Uuid::now_v7(), Uuid::now_v7());
    let ttl = Duration::from_secs(15 * 60 + 11);
    blacklist.revoke(user, revoked, ttl).await?;
    assert!(blacklist.lookup(user, session, revoked).await?.revoked);
    assert!(!blacklist.lookup(user, session, other).await?.revoked);
    assert!(
        !blacklist
            .lookup(UserId(Uuid::now_v7()), session, revoked)
            .await?
            .revoked,
        "the entry is the user's"
    );

    let ttl_ms: i64 = raw()
        .await?
        .pttl(blacklist.token_key(user, revoked))
        .await?;
    assert!(
        (911_000 - 1_000..=911_000).contains(&ttl_ms),
        "the entry lives for the TTL given: {ttl_ms} ms"
    );

    let nothing_left = Uuid::now_v7();
    blacklist.revoke(user, nothing_left, Duration::ZERO).await?;
    let exists: bool = raw()
        .await?
        .exists(blacklist.token_key(user, nothing_left))
        .await?;
    assert!(!exists, "a token no verifier accepts needs no entry");
    Ok(())
}

#[tokio::test]
async fn a_users_not_before_and_a_revoked_token_are_read_in_one_lookup() -> anyhow::Result<()> {
    let connection = isolated()?;
    let blacklist = RedisTokenBlacklist::new(connection.clone());
    let (user, session, jti) = (UserId(Uuid::now_v7()), Uuid::now_v7(), Uuid::now_v7());
    assert_eq!(
        blacklist.lookup(user, session, jti).await?,
        TokenRevocation::default()
    );

    // To the µs, whatever the date: a fixed instant with a sub-second part.
    let changed = Utc
        .timestamp_opt(1_800_000_000, 123_456_000)
        .single()
        .unwrap();
    let ttl = Duration::from_secs(911);
    blacklist.revoke_issued_before(user, changed, ttl).await?;
    blacklist.revoke(user, jti, ttl).await?;
    assert_eq!(
        blacklist.lookup(user, session, jti).await?,
        TokenRevocation {
            revoked: true,
            not_before: Some(changed),
            session_revoked: false,
        }
    );
    assert_eq!(
        blacklist.lookup(user, session, Uuid::now_v7()).await?,
        TokenRevocation {
            revoked: false,
            not_before: Some(changed),
            session_revoked: false,
        },
        "the not-before covers every token of the user"
    );
    assert_eq!(
        blacklist
            .lookup(UserId(Uuid::now_v7()), session, jti)
            .await?
            .not_before,
        None,
        "and no other user's"
    );

    // The lookup is one MGET; on a cluster it reaches one node only if its keys share a slot (the
    // cluster client would split it into one MGET per slot, and the round trips with it).
    if connection.is_cluster() {
        let mut conn = raw().await?;
        let mut slots = HashSet::new();
        for key in [
            blacklist.token_key(user, jti),
            blacklist.not_before_key(user),
        ] {
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query_async(&mut conn)
                .await?;
            slots.insert(slot);
        }
        assert_eq!(slots.len(), 1, "{slots:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_users_not_before_never_moves_back_nor_expires_early() -> anyhow::Result<()> {
    let connection = isolated()?;
    let blacklist = RedisTokenBlacklist::new(connection.clone());
    let user = UserId(Uuid::now_v7());
    let later = Utc
        .timestamp_opt(1_800_000_000, 500_000_000)
        .single()
        .unwrap();
    let earlier = later - chrono::Duration::microseconds(1);
    blacklist
        .revoke_issued_before(user, later, Duration::from_secs(60))
        .await?;
    // A change that landed second but happened first: the later instant stays, and lives as
    // long as the longer TTL asks.
    blacklist
        .revoke_issued_before(user, earlier, Duration::from_secs(600))
        .await?;
    let lookup = blacklist
        .lookup(user, Uuid::now_v7(), Uuid::now_v7())
        .await?;
    assert_eq!(lookup.not_before, Some(later));
    let ttl_ms: i64 = raw().await?.pttl(blacklist.not_before_key(user)).await?;
    assert!((599_000..=600_000).contains(&ttl_ms), "{ttl_ms} ms");

    let latest = later + chrono::Duration::microseconds(1);
    blacklist
        .revoke_issued_before(user, latest, Duration::from_secs(60))
        .await?;
    assert_eq!(
        blacklist
            .lookup(user, Uuid::now_v7(), Uuid::now_v7())
            .await?
            .not_before,
        Some(latest)
    );
    let ttl_ms: i64 = raw().await?.pttl(blacklist.not_before_key(user)).await?;
    assert!(
        ttl_ms > 590_000,
        "a shorter TTL does not cut a longer one: {ttl_ms} ms"
    );
    Ok(())
}

#[tokio::test]
async fn the_health_check_pings() -> anyhow::Result<()> {
    isolated()?.ping().await?;
    Ok(())
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable_within_the_timeout_and_the_url_is_checked()
-> anyhow::Result<()> {
    // In the tests' mode: on a cluster, no seed node answers.
    let dead = RedisConnection::new(&RedisSettings {
        url: "redis://127.0.0.1:1".into(),
        key_prefix: "x:".into(),
        command_timeout: Duration::from_millis(300),
        ..isolated_settings()
    })?;
    let started = Instant::now();
    let error = RedisCache::new(dead.clone())
        .get("k")
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(error, PortError::Unavailable(_)), "{error:?}");
    assert!(matches!(dead.ping().await, Err(PortError::Unavailable(_))));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );

    let invalid = RedisConnection::new(&RedisSettings {
        url: "not a url".into(),
        key_prefix: String::new(),
        command_timeout: Duration::from_secs(1),
        ..isolated_settings()
    });
    assert!(invalid.is_err());
    Ok(())
}

#[tokio::test]
async fn clearing_a_namespace_deletes_its_keys_and_no_others() -> anyhow::Result<()> {
    let (mine, theirs) = (isolated()?, isolated()?);
    let (my_cache, their_cache) = (
        RedisCache::new(mine.clone()),
        RedisCache::new(theirs.clone()),
    );
    for i in 0..25 {
        my_cache
            .set(&format!("k{i}"), "v", Duration::from_secs(60))
            .await?;
    }
    their_cache.set("k0", "v", Duration::from_secs(60)).await?;
    assert_eq!(mine.clear_namespace().await?, 25);
    assert_eq!(my_cache.get("k3").await?, None);
    assert_eq!(their_cache.get("k0").await?.as_deref(), Some("v"));
    theirs.clear_namespace().await?;
    Ok(())
}

#[tokio::test]
async fn many_keys_are_deleted_at_once_wherever_they_live() -> anyhow::Result<()> {
    let redis = isolated()?;
    let cache = RedisCache::new(redis.clone());
    let names: Vec<String> = (0..40).map(|i| format!("many:{i}")).collect();
    for name in &names {
        cache.set(name, "v", Duration::from_secs(60)).await?;
    }
    cache.set("kept", "v", Duration::from_secs(60)).await?;
    if redis.is_cluster() {
        // A DEL of keys in several slots is refused by any one node (CROSSSLOT): the adapter must
        // have split it.
        let mut slots = HashSet::new();
        let mut conn = raw().await?;
        for name in &names {
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(redis.key(&format!("cache:{name}")))
                .query_async(&mut conn)
                .await?;
            slots.insert(slot);
        }
        assert!(slots.len() > 1, "the keys span slots: {slots:?}");
    }
    cache.delete_many(&names).await?;
    for name in &names {
        assert_eq!(cache.get(name).await?, None, "{name}");
    }
    assert_eq!(cache.get("kept").await?.as_deref(), Some("v"));
    redis.clear_namespace().await?;
    Ok(())
}

/// `CLIENT ID` twice from a thread of its own, on that thread's runtime (as an HTTP worker runs).
fn client_ids_from_a_new_thread(redis: &RedisConnection) -> anyhow::Result<(i64, i64)> {
    let redis = redis.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let id = || {
                redis.run(|mut conn| async move {
                    redis::cmd("CLIENT").arg("ID").query_async(&mut conn).await
                })
            };
            Ok((id().await?, id().await?))
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread panicked"))?
}

#[test]
fn each_thread_keeps_a_connection_of_its_own() -> anyhow::Result<()> {
    let redis = isolated()?;
    if redis.is_cluster() {
        // CLIENT ID goes to whichever node the cluster client picks: not comparable.
        return Ok(());
    }
    let first = client_ids_from_a_new_thread(&redis)?;
    let second = client_ids_from_a_new_thread(&redis)?;
    assert_eq!(first.0, first.1, "one thread, one connection");
    assert_eq!(second.0, second.1, "one thread, one connection");
    // Otherwise one thread's commands would be written and answered on the other's runtime.
    assert_ne!(first.0, second.0, "each thread its own connection");
    Ok(())
}

#[tokio::test]
async fn an_ended_session_refuses_each_of_its_tokens_in_the_same_one_lookup() -> anyhow::Result<()>
{
    let connection = isolated()?;
    let blacklist = RedisTokenBlacklist::new(connection.clone());
    let user = UserId(Uuid::now_v7());
    let (ended, other) = (Uuid::now_v7(), Uuid::now_v7());
    let (jti, another_jti) = (Uuid::now_v7(), Uuid::now_v7());
    blacklist
        .revoke_session(user, ended, Duration::from_secs(911))
        .await?;
    for token in [jti, another_jti] {
        assert_eq!(
            blacklist.lookup(user, ended, token).await?,
            TokenRevocation {
                session_revoked: true,
                ..TokenRevocation::default()
            },
            "every token of the session, not one jti"
        );
    }
    assert_eq!(
        blacklist.lookup(user, other, jti).await?,
        TokenRevocation::default(),
        "the user's other sessions go on"
    );
    assert!(
        !blacklist
            .lookup(UserId(Uuid::now_v7()), ended, jti)
            .await?
            .session_revoked,
        "the entry is the user's: a session id named by another user ends nothing of theirs"
    );

    // Read with the token's own entry and the not-before.
    let changed = Utc
        .timestamp_opt(1_800_000_000, 123_456_000)
        .single()
        .unwrap();
    blacklist
        .revoke_issued_before(user, changed, Duration::from_secs(911))
        .await?;
    blacklist
        .revoke(user, jti, Duration::from_secs(911))
        .await?;
    assert_eq!(
        blacklist.lookup(user, ended, jti).await?,
        TokenRevocation {
            revoked: true,
            not_before: Some(changed),
            session_revoked: true,
        }
    );

    let ttl_ms: i64 = raw()
        .await?
        .pttl(blacklist.session_key(user, ended))
        .await?;
    assert!(
        (911_000 - 1_000..=911_000).contains(&ttl_ms),
        "the entry lives for the TTL given: {ttl_ms} ms"
    );
    let nothing_left = Uuid::now_v7();
    blacklist
        .revoke_session(user, nothing_left, Duration::ZERO)
        .await?;
    let exists: bool = raw()
        .await?
        .exists(blacklist.session_key(user, nothing_left))
        .await?;
    assert!(
        !exists,
        "a session no verifier accepts a token of needs no entry"
    );

    // Still one MGET on one slot, on a cluster too.
    if connection.is_cluster() {
        let mut conn = raw().await?;
        let mut slots = HashSet::new();
        for key in [
            blacklist.token_key(user, jti),
            blacklist.session_key(user, ended),
            blacklist.not_before_key(user),
        ] {
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query_async(&mut conn)
                .await?;
            slots.insert(slot);
        }
        assert_eq!(slots.len(), 1, "{slots:?}");
    }
    Ok(())
}

#[tokio::test]
async fn an_ended_sessions_revocation_expires_with_its_ttl() -> anyhow::Result<()> {
    let blacklist = RedisTokenBlacklist::new(isolated()?);
    let (user, session, jti) = (UserId(Uuid::now_v7()), Uuid::now_v7(), Uuid::now_v7());
    blacklist
        .revoke_session(user, session, Duration::from_millis(500))
        .await?;
    assert!(blacklist.lookup(user, session, jti).await?.session_revoked);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        blacklist.lookup(user, session, jti).await?,
        TokenRevocation::default(),
        "gone once no token of the session could be accepted any more"
    );
    Ok(())
}
