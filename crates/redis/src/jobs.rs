//! [`JobQueue`] on a Redis stream read by one consumer group.
//!
//! Keys, all under the connection's prefix and one hash tag so that a script or a MULTI block may
//! touch them together on a Redis Cluster (one slot, hence one master): the stream `{jobs}`, the
//! delayed set `{jobs}:delayed` (score: when due, in ms) and the dead-letter stream `{jobs}:dead`.
//! (A cluster connection refuses a prefix with braces, which could take the hash tag's place.)
//!
//! The stream holds only the messages not yet acknowledged: an acknowledgement deletes its entry,
//! so the stream stays as small as the backlog. The group is created from the start of the stream
//! (id `0`), not from its end (`$`): when the keys were flushed, the next enqueue re-creates the
//! stream without the group, and that message must still be delivered once the group is back.
//! Every entry in the stream is unacknowledged work, so reading it all is never a replay.

use std::future::Future;
use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use redis::{RedisError, RedisResult, Script};
use strata_ports::{Delivery, JobQueue, PortError};
use uuid::Uuid;

use crate::connection::RedisConnection;

/// Moves the due members of the delayed set (`KEYS[1]`) to the stream (`KEYS[2]`), at most
/// `ARGV[2]` of them with a score up to `ARGV[1]`, and returns how many moved. One script, so a
/// member is never both queued and still delayed, nor queued twice by concurrent promoters.
/// A member without a separator is queued as is, to be dead-lettered as malformed by a consumer
/// rather than left in the set forever.
const PROMOTE_LUA: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  local sep = string.find(member, '|', 1, true)
  if sep then
    redis.call('XADD', KEYS[2], '*', 'job_id', string.sub(member, 1, sep - 1),
      'kind', string.sub(member, sep + 1))
  else
    redis.call('XADD', KEYS[2], '*', 'raw', member)
  end
  redis.call('ZREM', KEYS[1], member)
end
return #due
";

static PROMOTE: LazyLock<Script> = LazyLock::new(|| Script::new(PROMOTE_LUA));

/// Resets the idle time of message `ARGV[3]` in stream `KEYS[1]`, group `ARGV[1]`, if consumer
/// `ARGV[2]` still holds it; returns 1 if so, 0 if not (another consumer took it over, it was
/// acknowledged, or the group is gone). One script, so the check and the claim cannot be split by
/// a takeover: an unguarded XCLAIM would take the message back from the worker now running it.
/// JUSTID leaves the delivery count alone, so a long job's heartbeats do not look like deliveries.
const REFRESH_CLAIM_LUA: &str = r"
local pending = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if type(pending) == 'table' and pending.err then
  if string.find(pending.err, 'NOGROUP', 1, true) then
    return 0
  end
  return redis.error_reply(pending.err)
end
if #pending == 0 or pending[1][2] ~= ARGV[2] then
  return 0
end
local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return #claimed
";

static REFRESH_CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(REFRESH_CLAIM_LUA));

/// How many delayed messages one script run moves: bounds the time Redis spends in the script.
const PROMOTE_BATCH: usize = 100;

/// How many XAUTOCLAIM pages one `claim_stale` reads at most, so a huge pending list of busy
/// messages cannot keep it looping.
const CLAIM_PAGES: usize = 16;

/// How the queue is laid out in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobQueueSettings {
    /// The consumer group every worker joins (`workers`); the only group on the stream, since an
    /// acknowledgement deletes the entry.
    pub group: String,
    /// Approximate bound on the dead-letter stream (`MAXLEN ~`); `None` keeps every entry.
    pub dead_letter_max_len: Option<usize>,
}

impl Default for JobQueueSettings {
    fn default() -> Self {
        Self {
            group: "workers".to_owned(),
            dead_letter_max_len: Some(10_000),
        }
    }
}

/// The job queue: a Redis stream, its consumer group, a delayed set and a dead-letter stream.
#[derive(Debug, Clone)]
pub struct RedisJobQueue {
    redis: RedisConnection,
    group: Arc<str>,
    dead_letter_max_len: Option<usize>,
    stream: Arc<str>,
    delayed: Arc<str>,
    dead: Arc<str>,
    /// Whether this process has made sure the group exists; cleared when Redis says it does not.
    group_ready: Arc<AtomicBool>,
}

impl RedisJobQueue {
    /// A queue on `redis` laid out by `settings`; nothing is created before first use.
    pub fn new(redis: RedisConnection, settings: JobQueueSettings) -> Self {
        Self {
            stream: redis.key("{jobs}").into(),
            delayed: redis.key("{jobs}:delayed").into(),
            dead: redis.key("{jobs}:dead").into(),
            group: settings.group.into(),
            dead_letter_max_len: settings.dead_letter_max_len,
            redis,
            group_ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The stream's key.
    pub fn stream_key(&self) -> &str {
        &self.stream
    }

    /// The dead-letter stream's key.
    pub fn dead_letter_key(&self) -> &str {
        &self.dead
    }

    /// The delayed set's key.
    pub fn delayed_key(&self) -> &str {
        &self.delayed
    }

    /// Creates the stream and the group unless this process already did (or `again`).
    async fn ensure_group(&self, again: bool) -> Result<(), PortError> {
        if !again && self.group_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let (stream, group) = (self.stream.clone(), self.group.clone());
        self.redis
            .run(|mut conn| async move {
                let created: RedisResult<()> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&*stream)
                    .arg(&*group)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut conn)
                    .await;
                match created {
                    Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
                    other => other,
                }
            })
            .await?;
        self.group_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Runs `attempt`, which answers `None` when Redis said NOGROUP; then re-creates the group
    /// (the keys were flushed) and tries once more.
    async fn with_group<T, F, Fut>(&self, mut attempt: F) -> Result<T, PortError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, PortError>>,
    {
        self.ensure_group(false).await?;
        if let Some(done) = attempt().await? {
            return Ok(done);
        }
        self.group_ready.store(false, Ordering::Release);
        tracing::warn!(
            stream = %self.stream,
            group = %self.group,
            "consumer group missing; re-creating it"
        );
        self.ensure_group(true).await?;
        attempt().await?.ok_or_else(|| {
            PortError::unexpected(anyhow!(
                "consumer group {} of {} missing right after its creation",
                self.group,
                self.stream
            ))
        })
    }

    /// At most one new message for `consumer`, waiting up to `block`.
    async fn read_one(
        &self,
        consumer: &str,
        block: Duration,
    ) -> Result<Option<StreamId>, PortError> {
        // BLOCK 0 means forever: a wait under a millisecond is a plain read.
        let millis = u64::try_from(block.as_millis()).unwrap_or(u64::MAX);
        let reply: Option<StreamReadReply> = self
            .with_group(|| {
                let (stream, group) = (self.stream.clone(), self.group.clone());
                let consumer = consumer.to_owned();
                self.redis.run_blocking(block, move |mut conn| async move {
                    let mut command = redis::cmd("XREADGROUP");
                    command
                        .arg("GROUP")
                        .arg(&*group)
                        .arg(consumer)
                        .arg("COUNT")
                        .arg(1);
                    if millis > 0 {
                        command.arg("BLOCK").arg(millis);
                    }
                    command.arg("STREAMS").arg(&*stream).arg(">");
                    no_group_as_none(command.query_async(&mut conn).await)
                })
            })
            .await?;
        Ok(reply.and_then(|reply| reply.keys.into_iter().next()?.ids.into_iter().next()))
    }

    /// Records `entry`, which cannot be read as a job, on the dead-letter stream and acknowledges
    /// it, so that it does not come back forever.
    async fn dead_letter_malformed(
        &self,
        entry: &StreamId,
        deliveries: u64,
        detail: &str,
    ) -> Result<(), PortError> {
        tracing::warn!(
            stream = %self.stream,
            message_id = %entry.id,
            detail,
            "malformed job message dead-lettered"
        );
        let job_id = entry.get::<String>("job_id").unwrap_or_default();
        let kind = entry.get::<String>("kind").unwrap_or_default();
        self.move_to_dead(
            &entry.id,
            &[
                ("job_id", job_id),
                ("kind", kind),
                ("reason", "malformed".to_owned()),
                ("detail", detail.to_owned()),
                ("message_id", entry.id.clone()),
                ("deliveries", deliveries.to_string()),
            ],
        )
        .await
    }

    /// Appends `fields` to the dead-letter stream, acknowledges and deletes `message_id`, in one
    /// transaction: the message is never both dead and pending.
    async fn move_to_dead(
        &self,
        message_id: &str,
        fields: &[(&str, String)],
    ) -> Result<(), PortError> {
        let mut add = redis::cmd("XADD");
        add.arg(&*self.dead);
        if let Some(max_len) = self.dead_letter_max_len {
            add.arg("MAXLEN").arg("~").arg(max_len);
        }
        add.arg("*");
        for (name, value) in fields {
            add.arg(*name).arg(value);
        }
        let mut transaction = redis::pipe();
        transaction
            .atomic()
            .add_command(add)
            .ignore()
            .cmd("XACK")
            .arg(&*self.stream)
            .arg(&*self.group)
            .arg(message_id)
            .ignore()
            .cmd("XDEL")
            .arg(&*self.stream)
            .arg(message_id)
            .ignore();
        self.redis
            .run(|mut conn| async move { transaction.query_async::<()>(&mut conn).await })
            .await
    }

    /// How many times each of `ids` was delivered, for those `consumer` still owns: one it no
    /// longer owns was acknowledged or claimed by another meanwhile and is not its to run.
    async fn deliveries_of(
        &self,
        consumer: &str,
        ids: &[String],
    ) -> Result<Vec<Option<u64>>, PortError> {
        let mut pipeline = redis::pipe();
        for id in ids {
            pipeline
                .cmd("XPENDING")
                .arg(&*self.stream)
                .arg(&*self.group)
                .arg(id)
                .arg(id)
                .arg(1);
        }
        let replies: Option<Vec<StreamPendingCountReply>> = self
            .redis
            .run(|mut conn| async move { no_group_as_none(pipeline.query_async(&mut conn).await) })
            .await?;
        // The group vanished since the claim (keys flushed): none of them is pending any more.
        let Some(replies) = replies else {
            return Ok(vec![None; ids.len()]);
        };
        Ok(replies
            .into_iter()
            .map(|reply| {
                reply
                    .ids
                    .into_iter()
                    .find(|pending| pending.consumer == consumer)
                    .map(|pending| u64::try_from(pending.times_delivered).unwrap_or(u64::MAX))
            })
            .collect())
    }
}

/// A NOGROUP reply as `None`, for [`RedisJobQueue::with_group`].
fn no_group_as_none<T>(result: RedisResult<T>) -> RedisResult<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if is_no_group(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

fn is_no_group(error: &RedisError) -> bool {
    error.code() == Some("NOGROUP")
}

/// The job `entry` carries, or why it carries none.
fn parse(entry: &StreamId, deliveries: u64) -> Result<Delivery, String> {
    let raw_id = entry
        .get::<String>("job_id")
        .ok_or_else(|| "no job_id field".to_owned())?;
    let job_id = Uuid::parse_str(&raw_id).map_err(|_| format!("job_id {raw_id:?} is no UUID"))?;
    let kind = entry
        .get::<String>("kind")
        .filter(|kind| !kind.is_empty())
        .ok_or_else(|| "no kind field".to_owned())?;
    Ok(Delivery {
        message_id: entry.id.clone(),
        job_id,
        kind,
        deliveries,
    })
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

#[async_trait]
impl JobQueue for RedisJobQueue {
    async fn enqueue(&self, job_id: Uuid, kind: &str) -> Result<(), PortError> {
        self.ensure_group(false).await?;
        let stream = self.stream.clone();
        let job_id = job_id.to_string();
        self.redis
            .run(|mut conn| async move {
                redis::cmd("XADD")
                    .arg(&*stream)
                    .arg("*")
                    .arg("job_id")
                    .arg(job_id)
                    .arg("kind")
                    .arg(kind)
                    .query_async::<String>(&mut conn)
                    .await
            })
            .await
            .map(|_| ())
    }

    async fn enqueue_at(
        &self,
        job_id: Uuid,
        kind: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let delayed = self.delayed.clone();
        // A UUID has no `|`, so the first one splits the member however the kind is spelled.
        let member = format!("{job_id}|{kind}");
        self.redis
            .run(|mut conn| async move {
                redis::cmd("ZADD")
                    .arg(&*delayed)
                    .arg(millis(at))
                    .arg(member)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }

    async fn promote_due(&self, now: DateTime<Utc>) -> Result<usize, PortError> {
        self.ensure_group(false).await?;
        let mut moved = 0;
        loop {
            let (delayed, stream) = (self.delayed.clone(), self.stream.clone());
            let batch: usize = self
                .redis
                .run(|mut conn| async move {
                    PROMOTE
                        .key(&*delayed)
                        .key(&*stream)
                        .arg(millis(now))
                        .arg(PROMOTE_BATCH)
                        .invoke_async(&mut conn)
                        .await
                })
                .await?;
            moved += batch;
            if batch < PROMOTE_BATCH {
                return Ok(moved);
            }
        }
    }

    async fn receive(
        &self,
        consumer: &str,
        block: Duration,
    ) -> Result<Option<Delivery>, PortError> {
        let deadline = Instant::now() + block;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Some(entry) = self.read_one(consumer, remaining).await? else {
                return Ok(None);
            };
            // `>` hands out only messages never delivered to this group.
            match parse(&entry, 1) {
                Ok(delivery) => return Ok(Some(delivery)),
                // One bad message must not wedge the consumer: put it aside, read the next.
                Err(detail) => self.dead_letter_malformed(&entry, 1, &detail).await?,
            }
        }
    }

    async fn claim_stale(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, PortError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let min_idle = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
        let mut claimed: Vec<StreamId> = Vec::new();
        let mut cursor = "0-0".to_owned();
        for _ in 0..CLAIM_PAGES {
            let want = count - claimed.len();
            let page: StreamAutoClaimReply = self
                .with_group(|| {
                    let (stream, group) = (self.stream.clone(), self.group.clone());
                    let (consumer, cursor) = (consumer.to_owned(), cursor.clone());
                    self.redis.run(move |mut conn| async move {
                        no_group_as_none(
                            redis::cmd("XAUTOCLAIM")
                                .arg(&*stream)
                                .arg(&*group)
                                .arg(consumer)
                                .arg(min_idle)
                                .arg(cursor)
                                .arg("COUNT")
                                .arg(want)
                                .query_async(&mut conn)
                                .await,
                        )
                    })
                })
                .await?;
            // Entries deleted from the stream were dropped from the pending list by XAUTOCLAIM
            // itself (`deleted_ids`); there is nothing left of them to run.
            claimed.extend(page.claimed.into_iter().filter(|entry| !entry.is_empty()));
            cursor = page.next_stream_id;
            if claimed.len() >= count || cursor == "0-0" {
                break;
            }
        }
        if claimed.is_empty() {
            return Ok(Vec::new());
        }

        let ids: Vec<String> = claimed.iter().map(|entry| entry.id.clone()).collect();
        let counts = self.deliveries_of(consumer, &ids).await?;
        let mut deliveries = Vec::with_capacity(claimed.len());
        for (entry, times) in claimed.iter().zip(counts) {
            let Some(times) = times else { continue };
            match parse(entry, times) {
                Ok(delivery) => deliveries.push(delivery),
                Err(detail) => self.dead_letter_malformed(entry, times, &detail).await?,
            }
        }
        Ok(deliveries)
    }

    async fn refresh_claim(&self, consumer: &str, delivery: &Delivery) -> Result<bool, PortError> {
        let (stream, group) = (self.stream.clone(), self.group.clone());
        let (consumer, id) = (consumer.to_owned(), delivery.message_id.clone());
        let refreshed: i64 = self
            .redis
            .run(|mut conn| async move {
                REFRESH_CLAIM
                    .key(&*stream)
                    .arg(&*group)
                    .arg(consumer)
                    .arg(id)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(refreshed == 1)
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), PortError> {
        let (stream, group) = (self.stream.clone(), self.group.clone());
        let id = delivery.message_id.clone();
        // Deleting the entry keeps the stream as small as the backlog; with one group, an
        // acknowledged entry is of no further use.
        let mut transaction = redis::pipe();
        transaction
            .atomic()
            .cmd("XACK")
            .arg(&*stream)
            .arg(&*group)
            .arg(&id)
            .ignore()
            .cmd("XDEL")
            .arg(&*stream)
            .arg(&id)
            .ignore();
        self.redis
            .run(|mut conn| async move { transaction.query_async::<()>(&mut conn).await })
            .await
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), PortError> {
        self.move_to_dead(
            &delivery.message_id,
            &[
                ("job_id", delivery.job_id.to_string()),
                ("kind", delivery.kind.clone()),
                ("reason", reason.to_owned()),
                ("message_id", delivery.message_id.clone()),
                ("deliveries", delivery.deliveries.to_string()),
            ],
        )
        .await
    }

    async fn dead_letters(&self) -> Result<u64, PortError> {
        let dead = self.dead.clone();
        self.redis
            .run(|mut conn| async move {
                redis::cmd("XLEN").arg(&*dead).query_async(&mut conn).await
            })
            .await
    }
}
