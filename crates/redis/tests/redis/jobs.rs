//! The Redis Streams job queue against a real server (or a Redis Cluster, see
//! `strata_redis::testing`), each test under its own random key prefix (never a FLUSHALL: the
//! server is shared; `clear_namespace` stands in for a flush).

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use redis::AsyncCommands;
use redis::streams::StreamRangeReply;
use strata_ports::{Delivery, JobQueue};
use strata_redis::testing::{isolated, isolated_settings, raw};
use strata_redis::{JobQueueSettings, RedisConnection, RedisJobQueue, RedisSettings};
use uuid::Uuid;

const KIND: &str = "reports.sales";

fn queue() -> anyhow::Result<(RedisJobQueue, RedisConnection)> {
    let redis = isolated()?;
    Ok((
        RedisJobQueue::new(redis.clone(), JobQueueSettings::default()),
        redis,
    ))
}

async fn dead_entries(queue: &RedisJobQueue) -> anyhow::Result<StreamRangeReply> {
    Ok(raw().await?.xrange_all(queue.dead_letter_key()).await?)
}

/// Everything `consumer` receives until the queue stays empty for a moment, acknowledged.
async fn drain(queue: &RedisJobQueue, consumer: &str) -> anyhow::Result<Vec<Uuid>> {
    let mut received = Vec::new();
    while let Some(delivery) = queue.receive(consumer, Duration::from_millis(200)).await? {
        assert_eq!(delivery.deliveries, 1);
        queue.ack(&delivery).await?;
        received.push(delivery.job_id);
    }
    Ok(received)
}

#[tokio::test]
async fn a_message_is_received_once_and_gone_after_its_ack() -> anyhow::Result<()> {
    let (queue, redis) = queue()?;

    let started = Instant::now();
    assert_eq!(queue.receive("w1", Duration::from_millis(300)).await?, None);
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(280)..Duration::from_secs(2)).contains(&waited),
        "an empty receive waits about its block time: {waited:?}"
    );
    let started = Instant::now();
    assert_eq!(queue.receive("w1", Duration::ZERO).await?, None);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "a zero block is a plain read, not BLOCK 0 (forever)"
    );

    let job = Uuid::now_v7();
    queue.enqueue(job, KIND).await?;
    let delivery = queue
        .receive("w1", Duration::from_secs(1))
        .await?
        .expect("the enqueued message");
    assert_eq!(delivery.job_id, job);
    assert_eq!(delivery.kind, KIND);
    assert_eq!(delivery.deliveries, 1);
    assert_eq!(
        queue.receive("w1", Duration::from_millis(100)).await?,
        None,
        "a pending message is not handed out again"
    );

    queue.ack(&delivery).await?;
    queue.ack(&delivery).await?;
    assert_eq!(queue.receive("w2", Duration::from_millis(100)).await?, None);
    assert!(
        queue
            .claim_stale("w2", Duration::ZERO, 10)
            .await?
            .is_empty()
    );
    let length: u64 = raw().await?.xlen(queue.stream_key()).await?;
    assert_eq!(length, 0, "an acknowledged entry leaves the stream");
    redis.clear_namespace().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_of_one_group_share_the_messages_without_duplicates() -> anyhow::Result<()> {
    let (queue, redis) = queue()?;
    let jobs: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
    for job in &jobs {
        queue.enqueue(*job, KIND).await?;
    }

    let (a, b) = tokio::join!(drain(&queue, "a"), drain(&queue, "b"));
    let (a, b) = (a?, b?);
    let received: Vec<Uuid> = a.iter().chain(&b).copied().collect();
    let distinct: HashSet<Uuid> = received.iter().copied().collect();
    assert_eq!(received.len(), 20, "a: {}, b: {}", a.len(), b.len());
    assert_eq!(distinct, jobs.into_iter().collect::<HashSet<_>>());
    redis.clear_namespace().await?;
    Ok(())
}

#[tokio::test]
async fn a_crashed_consumers_message_is_claimed_by_another_with_its_delivery_count()
-> anyhow::Result<()> {
    let (queue, redis) = queue()?;
    let job = Uuid::now_v7();
    queue.enqueue(job, KIND).await?;
    let first = queue
        .receive("crashes", Duration::from_secs(1))
        .await?
        .expect("the message");

    let min_idle = Duration::from_millis(100);
    assert!(
        queue
            .claim_stale("rescuer", Duration::from_secs(10), 10)
            .await?
            .is_empty(),
        "not idle long enough yet"
    );
    tokio::time::sleep(min_idle + Duration::from_millis(50)).await;
    let claimed = queue.claim_stale("rescuer", min_idle, 10).await?;
    assert_eq!(
        claimed,
        vec![Delivery {
            deliveries: 2,
            ..first.clone()
        }]
    );
    assert!(
        queue.claim_stale("third", min_idle, 10).await?.is_empty(),
        "a claim makes the message busy again"
    );

    queue.ack(&claimed[0]).await?;
    tokio::time::sleep(min_idle + Duration::from_millis(50)).await;
    assert!(queue.claim_stale("third", min_idle, 10).await?.is_empty());
    assert_eq!(
        queue.receive("third", Duration::from_millis(100)).await?,
        None
    );
    redis.clear_namespace().await?;
    Ok(())
}

#[tokio::test]
async fn a_refreshed_claim_keeps_a_long_job_from_being_taken_over_and_counts_no_delivery()
-> anyhow::Result<()> {
    let (queue, redis) = queue()?;
    queue.enqueue(Uuid::now_v7(), KIND).await?;
    let running = queue
        .receive("slow", Duration::from_secs(1))
        .await?
        .expect("the message");

    // Refreshed every 100 ms for 600 ms, twice the idle time a takeover needs.
    let min_idle = Duration::from_millis(300);
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(queue.refresh_claim("slow", &running).await?);
        assert!(
            queue.claim_stale("rescuer", min_idle, 10).await?.is_empty(),
            "a refreshed message is not idle"
        );
    }

    // The worker died: no more refreshes.
    tokio::time::sleep(min_idle + Duration::from_millis(50)).await;
    let claimed = queue.claim_stale("rescuer", min_idle, 10).await?;
    assert_eq!(
        claimed,
        vec![Delivery {
            deliveries: 2,
            ..running.clone()
        }],
        "the refreshes were not counted as deliveries"
    );
    assert!(
        !queue.refresh_claim("slow", &running).await?,
        "a consumer cannot refresh a message another took over"
    );
    assert!(
        queue.refresh_claim("rescuer", &claimed[0]).await?,
        "the message stays with the consumer that took it over"
    );

    queue.ack(&claimed[0]).await?;
    assert!(!queue.refresh_claim("rescuer", &claimed[0]).await?);
    redis.clear_namespace().await?;
    assert!(
        !queue.refresh_claim("rescuer", &claimed[0]).await?,
        "without the group nothing is held"
    );
    redis.clear_namespace().await?;
    Ok(())
}

#[tokio::test]
async fn claiming_respects_the_count_and_pages_through_the_pending_list() -> anyhow::Result<()> {
    let (queue, redis) = queue()?;
    for _ in 0..5 {
        queue.enqueue(Uuid::now_v7(), KIND).await?;
    }
    for _ in 0..5 {
        queue
            .receive("crashes", Duration::from_secs(1))
            .await?
            .expect("a message");
    }
    assert!(
        queue
            .claim_stale("rescuer", Duration::ZERO, 0)
            .await?
            .is_empty()
    );
    let first = queue.claim_stale("rescuer", Duration::ZERO, 3).await?;
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|delivery| delivery.deliveries == 2));
    let rest = queue.claim_stale("other", Duration::ZERO, 10).await?;
    assert_eq!(rest.len(), 5, "min_idle 0 takes every pending message");
    assert!(
        rest.iter()
            .all(|delivery| delivery.deliveries == 2 || delivery.deliveries == 3)
    );
    redis.clear_namespace().await?;
    Ok(())
}

#[tokio::test]
async fn a_dead_lettered_message_is_recorded_and_never_redelivered() -> anyhow::Result<()> {
    let (queue, redis) = queue()?;
    assert_eq!(queue.dead_letters().await?, 0);
    let job = Uuid::now_v7();
    queue.enqueue(job, KIND).await?;
    let delivery = queue
        .receive("w", Duration::from_secs(1))
        .await?
        .expect("the message");
    queue.dead_letter(&delivery, "failed 5 times").await?;

    assert_eq!(queue.dead_letters().await?, 1);
    assert_eq!(queue.receive("w", Duration::from_millis(100)).await?, None);
    assert!(
        queue
            .claim_stale("w2", Duration::ZERO, 10)
            .await?
            .is_empty()
    );
    let dead = dead_entries(&queue).await?;
    let entry = &dead.ids[0];
    assert_eq!(entry.get::<String>("job_id"), Some(job.to_string()));
    assert_eq!(entry.get::<String>("kind").as_deref(), Some(KIND));
    assert_eq!(
        entry.get::<String>("reason").as_deref(),
        Some("failed 5 times")
    );
    assert_eq!(entry.get::<String>("message_id"), Some(delivery.message_id));
    assert_eq!(entry.get::<u64>("deliveries"), Some(1));
    redis.clear_namespace().await?;
    Ok(())
}

#[tokio::test]
async fn a_delayed_message_waits_for_its_promotion_and_is_promoted_once() -> anyhow::Result<()> {
    let (queue, redis) = queue()?;
    let now = Utc::now();
    let delay = chrono::Duration::seconds(60);
    let job = Uuid::now_v7();
    queue.enqueue_at(job, KIND, now + delay).await?;

    assert_eq!(queue.receive("w", Duration::from_millis(100)).await?, None);
    assert_eq!(queue.promote_due(now).await?, 0);
    assert_eq!(queue.receive("w", Duration::from_millis(100)).await?, None);

    assert_eq!(queue.promote_due(now + delay).await?, 1);
    assert_eq!(queue.promote_due(now + delay).await?, 0);
    let delivery = queue
        .receive("w", Duration::from_secs(1))
        .await?
        .expect("the promoted message");
    assert_eq!((delivery.job_id, delivery.kind.as_str()), (job, KIND));
    queue.ack(&delivery).await?;
    assert_eq!(queue.receive("w", Duration::from_millis(100)).await?, None);
    redis.clear_namespace().await?;
    Ok(())
}

#[tokio::test]
async fn promotion_moves_every_due_message_in_batches_and_leaves_the_rest() -> anyhow::Result<()> {
    let (queue, redis) = queue()?;
    let now = Utc::now();
    for _ in 0..250 {
        queue
            .enqueue_at(Uuid::now_v7(), "kind|with|bars", now)
            .await?;
    }
    queue
        .enqueue_at(Uuid::now_v7(), KIND, now + chrono::Duration::hours(1))
        .await?;

    assert_eq!(queue.promote_due(now).await?, 250);
    let waiting: u64 = raw().await?.zcard(queue.delayed_key()).await?;
    assert_eq!(waiting, 1);
    let delivery = queue
        .receive("w", Duration::from_secs(1))
        .await?
        .expect("a promoted message");
    assert_eq!(delivery.kind, "kind|with|bars");
    redis.clear_namespace().await?;
    Ok(())
}

#[tokio::test]
async fn the_queue_heals_after_its_keys_are_flushed() -> anyhow::Result<()> {
    let (queue, redis) = queue()?;
    queue.enqueue(Uuid::now_v7(), KIND).await?;
    let delivery = queue
        .receive("w", Duration::from_secs(1))
        .await?
        .expect("the message");
    queue.ack(&delivery).await?;

    redis.clear_namespace().await?;
    // The enqueue re-creates the stream, not the group: the group, re-made on the NOGROUP the
    // receive meets, must start early enough to deliver this message.
    let job = Uuid::now_v7();
    queue.enqueue(job, KIND).await?;
    let delivery = queue
        .receive("w", Duration::from_secs(1))
        .await?
        .expect("the message enqueued after the flush");
    assert_eq!(delivery.job_id, job);
    queue.ack(&delivery).await?;

    redis.clear_namespace().await?;
    assert!(queue.claim_stale("w", Duration::ZERO, 10).await?.is_empty());
    redis.clear_namespace().await?;
    assert_eq!(queue.receive("w", Duration::from_millis(100)).await?, None);
    queue.enqueue(job, KIND).await?;
    assert!(queue.receive("w", Duration::from_secs(1)).await?.is_some());
    redis.clear_namespace().await?;
    Ok(())
}

#[tokio::test]
async fn a_message_added_before_the_group_exists_is_delivered() -> anyhow::Result<()> {
    let (queue, redis) = queue()?;
    let job = Uuid::now_v7();
    let _: String = raw()
        .await?
        .xadd(
            queue.stream_key(),
            "*",
            &[("job_id", job.to_string().as_str()), ("kind", KIND)],
        )
        .await?;
    let delivery = queue
        .receive("w", Duration::from_secs(1))
        .await?
        .expect("the early message");
    assert_eq!(delivery.job_id, job);
    redis.clear_namespace().await?;
    Ok(())
}

#[tokio::test]
async fn malformed_messages_are_dead_lettered_without_blocking_the_next() -> anyhow::Result<()> {
    let (queue, redis) = queue()?;
    let mut raw = raw().await?;
    let _: String = raw.xadd(queue.stream_key(), "*", &[("foo", "bar")]).await?;
    let _: String = raw
        .xadd(
            queue.stream_key(),
            "*",
            &[("job_id", "not-a-uuid"), ("kind", KIND)],
        )
        .await?;
    let job = Uuid::now_v7();
    queue.enqueue(job, KIND).await?;

    let delivery = queue
        .receive("w", Duration::from_secs(1))
        .await?
        .expect("the good message behind the bad ones");
    assert_eq!(delivery.job_id, job);
    assert_eq!(queue.dead_letters().await?, 2);
    let dead = dead_entries(&queue).await?;
    assert!(
        dead.ids
            .iter()
            .all(|entry| entry.get::<String>("reason").as_deref() == Some("malformed"))
    );
    assert_eq!(
        dead.ids[1].get::<String>("job_id").as_deref(),
        Some("not-a-uuid")
    );
    queue.ack(&delivery).await?;
    assert_eq!(queue.receive("w", Duration::from_millis(100)).await?, None);
    assert!(
        queue
            .claim_stale("w2", Duration::ZERO, 10)
            .await?
            .is_empty()
    );
    redis.clear_namespace().await?;
    Ok(())
}

#[tokio::test]
async fn a_blocked_receive_does_not_stall_the_shared_connection() -> anyhow::Result<()> {
    let (queue, redis) = queue()?;
    // The group exists before the wait, so the enqueue below is what wakes the receiver.
    assert_eq!(queue.receive("w", Duration::ZERO).await?, None);
    let waiting = tokio::spawn({
        let queue = queue.clone();
        async move {
            let started = Instant::now();
            let delivery = queue.receive("w", Duration::from_millis(1500)).await;
            (delivery, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let job = Uuid::now_v7();
    queue.enqueue(job, KIND).await?;
    assert!(
        queue.dead_letters().await? == 0 && started.elapsed() < Duration::from_millis(500),
        "commands on the shared connection wait for no blocked read: {:?}",
        started.elapsed()
    );
    let (delivery, waited) = waiting.await?;
    assert_eq!(delivery?.map(|delivery| delivery.job_id), Some(job));
    assert!(
        waited < Duration::from_millis(1000),
        "the enqueue woke the blocked read: {waited:?}"
    );
    redis.clear_namespace().await?;
    Ok(())
}

#[tokio::test]
async fn a_receive_may_block_longer_than_the_command_timeout() -> anyhow::Result<()> {
    let redis = RedisConnection::new(&RedisSettings {
        command_timeout: Duration::from_millis(300),
        ..isolated_settings()
    })?;
    let queue = RedisJobQueue::new(redis.clone(), JobQueueSettings::default());
    let started = Instant::now();
    assert_eq!(queue.receive("w", Duration::from_millis(700)).await?, None);
    assert!(started.elapsed() >= Duration::from_millis(650));
    redis.clear_namespace().await?;
    Ok(())
}

#[tokio::test]
async fn queues_under_other_prefixes_do_not_share_messages() -> anyhow::Result<()> {
    let (queue, redis) = queue()?;
    let (elsewhere, other_redis) = self::queue()?;
    let job = Uuid::now_v7();
    queue.enqueue(job, KIND).await?;
    assert_eq!(
        elsewhere.receive("w", Duration::from_millis(100)).await?,
        None
    );
    let mine = queue.receive("w", Duration::from_secs(1)).await?;
    assert_eq!(mine.map(|delivery| delivery.job_id), Some(job));
    redis.clear_namespace().await?;
    other_redis.clear_namespace().await?;
    Ok(())
}
