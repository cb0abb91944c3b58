//! The lazily established, self-healing connection shared by the Redis adapters.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisError, RedisResult};
use strata_ports::{HealthCheck, PortError};
use tokio::sync::OnceCell;
use tracing::Instrument as _;

/// Where Redis is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prepended to every key (`strata:` in production, random in tests).
    pub key_prefix: String,
    /// Bound on connecting and on each command.
    pub command_timeout: Duration,
}

/// A shared handle on Redis; clones share one multiplexed connection.
#[derive(Clone)]
pub struct RedisConnection {
    client: Client,
    manager: Arc<OnceCell<ConnectionManager>>,
    /// Idle connections for blocking commands, reused so that a busy consumer does not connect
    /// once per message.
    blocking: Arc<Mutex<Vec<MultiplexedConnection>>>,
    prefix: Arc<str>,
    timeout: Duration,
}

/// How many idle blocking connections are kept; more are opened on demand and closed after use.
const IDLE_BLOCKING_CONNECTIONS: usize = 16;

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Validates the URL; connects on first use.
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        let client =
            Client::open(settings.url.as_str()).map_err(|e| anyhow!("invalid Redis URL: {e}"))?;
        Ok(Self {
            client,
            manager: Arc::new(OnceCell::new()),
            blocking: Arc::new(Mutex::new(Vec::new())),
            prefix: settings.key_prefix.clone().into(),
            timeout: settings.command_timeout,
        })
    }

    /// `key` inside this connection's namespace.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn manager(&self) -> Result<ConnectionManager, PortError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let manager = self
            .manager
            .get_or_try_init(|| async {
                tokio::time::timeout(
                    self.timeout,
                    self.client.get_connection_manager_with_config(config),
                )
                .await
                .map_err(|_| PortError::unavailable(anyhow!("timed out connecting to Redis")))?
                .map_err(map_error)
            })
            .await?;
        Ok(manager.clone())
    }

    /// Runs one command (or pipeline) on the shared connection under the timeout.
    pub async fn run<T, F, Fut>(&self, command: F) -> Result<T, PortError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let manager = self.manager().await?;
        let span = tracing::info_span!("redis", otel.kind = "client", db.system = "redis");
        tokio::time::timeout(self.timeout, command(manager))
            .instrument(span)
            .await
            .map_err(|_| {
                PortError::unavailable(anyhow!("Redis command timed out after {:?}", self.timeout))
            })?
            .map_err(map_error)
    }

    /// Runs one blocking command (`XREADGROUP … BLOCK`) that may legitimately wait `block`, under
    /// `block` plus the command timeout, on a connection of its own: Redis serves nothing else on
    /// a connection while a command on it is blocked, so on the shared one it would stall every
    /// other adapter.
    pub async fn run_blocking<T, F, Fut>(&self, block: Duration, command: F) -> Result<T, PortError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let idle = self
            .blocking
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let connection = match idle {
            Some(connection) => connection,
            None => {
                // The timeout below bounds the response; a second one inside would only race it.
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(None);
                tokio::time::timeout(
                    self.timeout,
                    self.client
                        .get_multiplexed_async_connection_with_config(&config),
                )
                .await
                .map_err(|_| PortError::unavailable(anyhow!("timed out connecting to Redis")))?
                .map_err(map_error)?
            }
        };
        let limit = block.saturating_add(self.timeout);
        let outcome = tokio::time::timeout(limit, command(connection.clone()))
            .await
            .map_err(|_| {
                PortError::unavailable(anyhow!("Redis command timed out after {limit:?}"))
            })?;
        // A connection whose command timed out may still be blocked server-side and one that
        // failed on I/O is dead: neither goes back. A server's error reply leaves it usable.
        let mut idle = self.blocking.lock().unwrap_or_else(PoisonError::into_inner);
        match &outcome {
            // The idle ones went down with it (a restart, a network cut): do not fail on each.
            Err(error) if error.is_io_error() || error.is_connection_dropped() => idle.clear(),
            Err(error) if error.is_timeout() => {}
            _ if idle.len() < IDLE_BLOCKING_CONNECTIONS => idle.push(connection),
            _ => {}
        }
        drop(idle);
        outcome.map_err(map_error)
    }
}

impl RedisConnection {
    /// Deletes every key under this connection's prefix (an operator's reset; tests' cleanup).
    /// Returns how many keys were deleted. SCAN keeps Redis responsive on a large keyspace.
    pub async fn clear_namespace(&self) -> Result<u64, PortError> {
        let pattern = format!("{}*", escape_glob(&self.prefix));
        let mut cursor = 0u64;
        let mut deleted = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .run(|mut conn| {
                    let pattern = pattern.clone();
                    async move {
                        redis::cmd("SCAN")
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(pattern)
                            .arg("COUNT")
                            .arg(1000)
                            .query_async(&mut conn)
                            .await
                    }
                })
                .await?;
            if !keys.is_empty() {
                let removed: u64 = self
                    .run(|mut conn| async move {
                        redis::cmd("UNLINK").arg(keys).query_async(&mut conn).await
                    })
                    .await?;
                deleted += removed;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

/// `prefix` with Redis glob metacharacters escaped, so it matches only itself.
fn escape_glob(prefix: &str) -> String {
    let mut escaped = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn map_error(error: RedisError) -> PortError {
    if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
    {
        PortError::unavailable(error)
    } else {
        PortError::unexpected(error)
    }
}

#[async_trait]
impl HealthCheck for RedisConnection {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), PortError> {
        self.run(
            |mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await },
        )
        .await
        .map(|_| ())
    }
}
