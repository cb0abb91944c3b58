//! Cross-instance cache invalidation on Redis pub/sub: every instance announces the keys its
//! writes made stale on one channel, and every instance (the writer included) listens to it and
//! drops its in-process copies.
//!
//! Pub/sub delivers only to connected subscribers, so the listener tells its listener when the
//! feed is up and when it may have missed something: the connection dropped, a command on it
//! failed, or a PING (one a second) went unanswered within three command timeouts (a frozen
//! server keeps the socket open). On a Redis Cluster a message published on any node reaches subscribers on every
//! node, so the listener subscribes on one seed node, moving to the next when it fails.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use futures_util::StreamExt as _;
use redis::AsyncCommands as _;
use strata_ports::{InvalidationListener, InvalidationPublisher, PortError};

use crate::connection::{RedisConnection, RedisSettings};

/// How often the listener checks that its subscription is alive.
const PING_EVERY: Duration = Duration::from_secs(1);
/// How many command timeouts a PING may take before the feed is declared down: an overloaded
/// process answers late without Redis being gone, and declaring the feed down empties the
/// in-process cache, which would only add load.
const PING_PATIENCE: u32 = 3;
/// The pause before subscribing again after the feed failed.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Publishes invalidations and listens for them, on the channel `<prefix>invalidations`.
#[derive(Debug, Clone)]
pub struct RedisInvalidations {
    redis: RedisConnection,
    channel: String,
    /// The servers the listener may subscribe on, tried in turn.
    urls: Vec<String>,
    timeout: Duration,
}

impl RedisInvalidations {
    /// Invalidations on `redis`, whose `settings` name the servers to subscribe on.
    pub fn new(redis: RedisConnection, settings: &RedisSettings) -> Self {
        let urls = settings
            .url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        Self {
            channel: redis.key("invalidations"),
            redis,
            urls,
            timeout: settings.command_timeout,
        }
    }

    /// Feeds `listener` with every announcement, for as long as the returned task runs: it
    /// subscribes, reports the feed up, forwards messages, and on any failure reports the feed
    /// down and subscribes again.
    pub fn listen(&self, listener: Arc<dyn InvalidationListener>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut attempt = 0_usize;
            loop {
                let url = &this.urls[attempt % this.urls.len().max(1)];
                match this.follow(url, listener.as_ref()).await {
                    Ok(()) => {}
                    Err(error) => {
                        tracing::warn!(%error, "cache invalidation feed interrupted; resubscribing");
                    }
                }
                listener.feed(false);
                attempt = attempt.wrapping_add(1);
                tokio::time::sleep(RETRY_AFTER).await;
            }
        })
    }

    /// One subscription, until it fails.
    async fn follow(&self, url: &str, listener: &dyn InvalidationListener) -> anyhow::Result<()> {
        let client = redis::Client::open(url)?;
        let subscribe = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&self.channel).await?;
            redis::RedisResult::Ok(pubsub)
        };
        let pubsub = tokio::time::timeout(self.timeout, subscribe)
            .await
            .map_err(|_| anyhow!("subscribing timed out after {:?}", self.timeout))??;
        let (mut sink, mut messages) = pubsub.split();
        listener.feed(true);
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else {
                        return Err(anyhow!("the subscription's connection closed"));
                    };
                    match message.get_payload::<String>() {
                        Ok(payload) => {
                            let keys: Vec<String> = payload.lines().map(str::to_owned).collect();
                            listener.invalidated(&keys);
                        }
                        // Whatever it named may now be stale: start again from nothing.
                        Err(error) => return Err(anyhow!(error).context("unreadable announcement")),
                    }
                }
                _ = ping.tick() => {
                    let patience = self.timeout * PING_PATIENCE;
                    tokio::time::timeout(patience, sink.ping::<redis::Value>())
                        .await
                        .map_err(|_| anyhow!("no answer to PING within {patience:?}"))??;
                }
            }
        }
    }
}

#[async_trait]
impl InvalidationPublisher for RedisInvalidations {
    async fn publish(&self, keys: &[String]) -> Result<(), PortError> {
        if keys.is_empty() {
            return Ok(());
        }
        let payload = keys.join("\n");
        let channel = self.channel.clone();
        self.redis
            .run(|mut conn| async move { conn.publish::<_, _, ()>(channel, payload).await })
            .await
    }
}
