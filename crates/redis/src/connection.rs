//! The lazily established, self-healing connections shared by the Redis adapters (one per thread
//! lane, see [`lanes`]), to one server or to a Redis Cluster.
//!
//! On a cluster every command goes to the master of its key's slot (redis' cluster client follows
//! MOVED and ASK and re-reads the slot map), a multi-key DEL or UNLINK is split by slot, and a
//! script or a MULTI block must keep its keys in one slot: the adapters give such keys one hash
//! tag. SCAN is per node, so [`RedisConnection::clear_namespace`] walks every master.
//!
//! [`RedisConnection::run`] wraps each command in a client span by OpenTelemetry's database
//! conventions: `db.system.name`, the server, and `db.operation.name` (the command, `GET`,
//! `EVALSHA`) with the span named after it. [`AnyConnection`] sees every command sent, so it names
//! the span and no call site has to.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use opentelemetry::trace::TraceContextExt as _;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError,
    RedisFuture, RedisResult, ServerErrorKind, Value,
};
use strata_ports::{HealthCheck, PortError};
use tokio::sync::OnceCell;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Where Redis is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://host:port/db`; with `cluster`, the seed nodes' URLs, comma-separated.
    pub url: String,
    /// Whether `url` names seed nodes of a Redis Cluster rather than one server.
    pub cluster: bool,
    /// Prepended to every key (`strata:` in production, random in tests).
    pub key_prefix: String,
    /// Bound on connecting and on each command.
    pub command_timeout: Duration,
}

/// A connection commands run on: to one server, or to a whole cluster. Implements redis'
/// [`ConnectionLike`], so every command of `redis::AsyncCommands` works on it alike.
#[derive(Clone)]
pub enum AnyConnection {
    /// The self-healing connection to one server that the adapters share.
    Managed(ConnectionManager),
    /// A connection to one server of its own (for a blocking command, or a test).
    Dedicated(MultiplexedConnection),
    /// Connections to the nodes of a cluster, each command routed to its key's slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for AnyConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Operation::sent(cmd);
        match self {
            Self::Managed(connection) => connection.req_packed_command(cmd),
            Self::Dedicated(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        for cmd in pipeline.cmd_iter() {
            Operation::sent(cmd);
        }
        match self {
            Self::Managed(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Dedicated(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Managed(connection) => connection.get_db(),
            Self::Dedicated(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

/// What a span has seen of the commands sent under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    /// No span: a command sent outside [`RedisConnection::run`].
    Outside,
    /// No command yet, or only transaction control (`MULTI`, `EXEC`).
    Unnamed,
    /// Commands of this one name.
    Named(&'static str),
    /// Commands of several names, or of one not in [`COMMANDS`].
    Several,
}

/// The commands a span is named after; the adapters' own and their neighbours.
const COMMANDS: [&str; 56] = [
    "GET",
    "SET",
    "SETEX",
    "PSETEX",
    "SETNX",
    "GETDEL",
    "GETEX",
    "MGET",
    "MSET",
    "DEL",
    "UNLINK",
    "EXISTS",
    "EXPIRE",
    "PEXPIRE",
    "EXPIREAT",
    "PEXPIREAT",
    "TTL",
    "PTTL",
    "INCR",
    "INCRBY",
    "DECR",
    "DECRBY",
    "HGET",
    "HSET",
    "HDEL",
    "HGETALL",
    "HINCRBY",
    "SADD",
    "SREM",
    "SMEMBERS",
    "SISMEMBER",
    "ZADD",
    "ZREM",
    "ZRANGE",
    "ZCARD",
    "ZREMRANGEBYSCORE",
    "XADD",
    "XACK",
    "XDEL",
    "XLEN",
    "XGROUP",
    "XPENDING",
    "XAUTOCLAIM",
    "XCLAIM",
    "XREADGROUP",
    "XRANGE",
    "XTRIM",
    "EVAL",
    "EVALSHA",
    "SCRIPT",
    "PUBLISH",
    "PING",
    "SCAN",
    "INFO",
    "FLUSHDB",
    "CLUSTER",
];

impl Operation {
    /// Notes `cmd` on the span of the command being run on this thread, if any.
    fn sent(cmd: &Cmd) {
        let operation = OPERATION.get();
        if operation == Operation::Outside {
            return;
        }
        let name = match cmd.args_iter().next() {
            Some(redis::Arg::Simple(name)) => name,
            _ => &[],
        };
        if [&b"MULTI"[..], b"EXEC", b"DISCARD", b"WATCH", b"UNWATCH"]
            .iter()
            .any(|control| control.eq_ignore_ascii_case(name))
        {
            return;
        }
        let known = COMMANDS
            .iter()
            .find(|command| command.as_bytes().eq_ignore_ascii_case(name));
        OPERATION.set(match (operation, known) {
            (Operation::Unnamed, Some(command)) => Operation::Named(command),
            (Operation::Named(current), Some(command)) if current == *command => operation,
            _ => Operation::Several,
        });
    }
}

thread_local! {
    /// The operation of the span whose command this thread is running.
    static OPERATION: Cell<Operation> = const { Cell::new(Operation::Outside) };
}

/// A node a per-node command (SCAN) must visit.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// The one server.
    Only,
    /// A cluster master.
    Master { host: String, port: u16 },
}

impl AnyConnection {
    /// The nodes that hold keys: the one server, or every master of the cluster as the client's
    /// slot map has them.
    async fn key_holders(&mut self) -> RedisResult<Vec<Node>> {
        let Self::Cluster(connection) = self else {
            return Ok(vec![Node::Only]);
        };
        // Without a response policy, a command sent to several nodes answers one entry per node,
        // keyed by its address.
        let replies = connection
            .route_command(
                redis::cmd("PING"),
                RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
            )
            .await?;
        let Value::Map(replies) = replies else {
            return Err(unexpected_reply("PING to every master", &replies));
        };
        replies
            .into_iter()
            .map(|(address, _)| {
                let address = String::from_redis_value(address)?;
                address
                    .rsplit_once(':')
                    .and_then(|(host, port)| {
                        Some(Node::Master {
                            host: host.to_owned(),
                            port: port.parse().ok()?,
                        })
                    })
                    .ok_or_else(|| {
                        RedisError::from((
                            ErrorKind::Client,
                            "a master's address is not host:port",
                            address,
                        ))
                    })
            })
            .collect()
    }

    /// Runs `command` on `node`.
    async fn query_on<T: FromRedisValue>(&mut self, node: &Node, command: &Cmd) -> RedisResult<T> {
        match (self, node) {
            (Self::Cluster(connection), Node::Master { host, port }) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                T::from_redis_value(connection.route_command(command.clone(), routing).await?)
                    .map_err(RedisError::from)
            }
            (connection, _) => command.query_async(connection).await,
        }
    }
}

fn unexpected_reply(what: &str, reply: &Value) -> RedisError {
    RedisError::from((
        ErrorKind::UnexpectedReturnType,
        "unexpected reply",
        format!("{what}: {reply:?}"),
    ))
}

/// How to reach Redis.
enum Topology {
    Single(Client),
    /// Boxed: a cluster client is several times the size of a single server's.
    Cluster {
        /// For the shared connection: every node answer is bounded by the command timeout.
        shared: Box<ClusterClient>,
        /// For blocking commands, whose answer may legitimately come later than that.
        blocking: Box<ClusterClient>,
    },
}

/// A shared handle on Redis; clones share a few multiplexed connections (see [`lanes`]).
#[derive(Clone)]
pub struct RedisConnection {
    topology: Arc<Topology>,
    /// Multiplexed connections, each used by the threads whose lane it is.
    shared: Arc<[OnceCell<AnyConnection>]>,
    /// Idle connections for blocking commands, reused so that a busy consumer does not connect
    /// once per message.
    blocking: Arc<Mutex<Vec<AnyConnection>>>,
    prefix: Arc<str>,
    timeout: Duration,
    /// The one server's host and port, for the spans (`None` on a cluster or a socket).
    server: Option<Arc<(String, u16)>>,
}

/// How many multiplexed connections a handle keeps: two per core. A connection's I/O runs on the
/// runtime of the thread that made it, and each thread uses the connection of its own lane, so an
/// HTTP worker's commands are written and answered on that worker's thread: with one connection
/// for all, the other worker's every command woke the connection's thread and was woken back
/// (0.6 eventfd writes per uncached product read). Two per core leaves lanes for the main
/// runtime's threads.
fn lanes() -> usize {
    std::thread::available_parallelism().map_or(2, |cores| (cores.get() * 2).clamp(2, 32))
}

/// The lane of the current thread among `lanes` (at least one): threads are numbered as they
/// first use Redis.
fn lane_of_thread(lanes: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static LANE: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    LANE.with(|lane| *lane % lanes)
}

/// How many idle blocking connections are kept; more are opened on demand and closed after use.
const IDLE_BLOCKING_CONNECTIONS: usize = 16;

/// How often a cluster command is retried after a redirection (MOVED, ASK), a reconnection or a
/// cluster that is briefly down (a failover); the command timeout bounds all attempts together.
const CLUSTER_RETRIES: u32 = 3;

/// Shortest and longest waits, in ms, before a cluster command is retried: short enough that a
/// retry fits in the command timeout.
const CLUSTER_RETRY_WAIT_MS: (u64, u64) = (10, 200);

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConnection")
            .field("prefix", &self.prefix)
            .field("cluster", &self.is_cluster())
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Validates the URL (or, for a cluster, every seed URL); connects on first use.
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        let topology = if settings.cluster {
            // The first `{…}` of a key is its hash tag: braces in the prefix would take the place
            // of the adapters' own tags, and keys that must share a slot might not.
            if settings.key_prefix.contains(['{', '}']) {
                anyhow::bail!(
                    "the Redis key prefix {:?} must not contain braces on a Redis Cluster",
                    settings.key_prefix
                );
            }
            let seeds: Vec<&str> = settings
                .url
                .split(',')
                .map(str::trim)
                .filter(|seed| !seed.is_empty())
                .collect();
            let builder = || {
                ClusterClientBuilder::new(seeds.iter().copied())
                    .connection_timeout(settings.command_timeout)
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(CLUSTER_RETRY_WAIT_MS.0)
                    .max_retry_wait(CLUSTER_RETRY_WAIT_MS.1)
            };
            let invalid = |e: RedisError| anyhow!("invalid Redis Cluster seed URLs: {e}");
            Topology::Cluster {
                shared: Box::new(
                    builder()
                        .response_timeout(settings.command_timeout)
                        .build()
                        .map_err(invalid)?,
                ),
                // No response timeout: `run_blocking` bounds the wait itself.
                blocking: Box::new(builder().build().map_err(invalid)?),
            }
        } else {
            Topology::Single(
                Client::open(settings.url.as_str())
                    .map_err(|e| anyhow!("invalid Redis URL: {e}"))?,
            )
        };
        let server = match &topology {
            Topology::Single(client) => match client.get_connection_info().addr() {
                redis::ConnectionAddr::Tcp(host, port)
                | redis::ConnectionAddr::TcpTls { host, port, .. } => {
                    Some(Arc::new((host.clone(), *port)))
                }
                _ => None,
            },
            Topology::Cluster { .. } => None,
        };
        Ok(Self {
            server,
            topology: Arc::new(topology),
            shared: (0..lanes()).map(|_| OnceCell::new()).collect(),
            blocking: Arc::new(Mutex::new(Vec::new())),
            prefix: settings.key_prefix.clone().into(),
            timeout: settings.command_timeout,
        })
    }

    /// `key` inside this connection's namespace.
    pub fn key(&self, key: &str) -> String {
        self.key_of(&[key])
    }

    /// The concatenation of `parts` inside this connection's namespace, built without the
    /// formatting machinery (it runs on every cached read).
    pub fn key_of(&self, parts: &[&str]) -> String {
        let length = self.prefix.len() + parts.iter().map(|part| part.len()).sum::<usize>();
        let mut key = String::with_capacity(length);
        key.push_str(&self.prefix);
        for part in parts {
            key.push_str(part);
        }
        key
    }

    /// Whether this is a connection to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(*self.topology, Topology::Cluster { .. })
    }

    /// The connection this thread's adapters share, made on first use (again after a failed
    /// attempt).
    pub(crate) async fn shared(&self) -> Result<AnyConnection, PortError> {
        // In bounds: a lane is a remainder of the (never empty) list's length.
        let connection = self.shared[lane_of_thread(self.shared.len())]
            .get_or_try_init(|| async {
                let connect = async {
                    match &*self.topology {
                        Topology::Single(client) => {
                            // No response timeout of the client's own: every command on this
                            // connection runs under `run`'s, and a second timer per command was
                            // 2 % of an uncached product read.
                            let config = ConnectionManagerConfig::new()
                                .set_connection_timeout(Some(self.timeout))
                                .set_response_timeout(None)
                                .set_number_of_retries(1);
                            client
                                .get_connection_manager_with_config(config)
                                .await
                                .map(AnyConnection::Managed)
                        }
                        Topology::Cluster { shared, .. } => shared
                            .get_async_connection()
                            .await
                            .map(AnyConnection::Cluster),
                    }
                };
                self.connect_in_time(connect).await
            })
            .await?;
        Ok(connection.clone())
    }

    /// A new connection of its own, unbounded in how long it waits for an answer.
    async fn dedicated(&self) -> Result<AnyConnection, PortError> {
        let connect = async {
            match &*self.topology {
                Topology::Single(client) => {
                    let config = AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(self.timeout))
                        .set_response_timeout(None);
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map(AnyConnection::Dedicated)
                }
                Topology::Cluster { blocking, .. } => blocking
                    .get_async_connection()
                    .await
                    .map(AnyConnection::Cluster),
            }
        };
        self.connect_in_time(connect).await
    }

    /// `connect`, bounded by the timeout.
    async fn connect_in_time(
        &self,
        connect: impl Future<Output = RedisResult<AnyConnection>>,
    ) -> Result<AnyConnection, PortError> {
        tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| PortError::unavailable(anyhow!("timed out connecting to Redis")))?
            .map_err(map_error)
    }

    /// Runs one command (or pipeline) on this thread's connection under the timeout.
    pub async fn run<T, F, Fut>(&self, command: F) -> Result<T, PortError>
    where
        F: FnOnce(AnyConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let connection = self.shared().await?;
        let server = self.server.as_deref();
        let span = tracing::info_span!(
            "redis",
            otel.name = "redis",
            otel.kind = "client",
            db.system.name = "redis",
            db.operation.name = tracing::field::Empty,
            server.address = server.map(|(host, _)| host.as_str()),
            server.port = server.map(|(_, port)| i64::from(*port)),
        );
        let mut operation = Operation::Unnamed;
        let mut command = std::pin::pin!(tokio::time::timeout(self.timeout, command(connection)));
        std::future::poll_fn(|cx| {
            let _entered = span.enter();
            let outer = OPERATION.replace(operation);
            let poll = command.as_mut().poll(cx);
            operation = OPERATION.replace(outer);
            if poll.is_ready()
                && let Operation::Named(name) = operation
            {
                span.record("db.operation.name", name);
                // Started when first entered, so the exported span takes its name this way only.
                span.context().span().update_name(name);
            }
            poll
        })
        .await
        .map_err(|_| {
            PortError::unavailable(anyhow!("Redis command timed out after {:?}", self.timeout))
        })?
        .map_err(map_error)
    }

    /// Runs one blocking command (`XREADGROUP … BLOCK`) that may legitimately wait `block`, under
    /// `block` plus the command timeout, on a connection of its own: Redis serves nothing else on
    /// a connection while a command on it is blocked, so on the shared one it would stall every
    /// other adapter. On a cluster the connection of its own is a cluster connection, so the
    /// command still follows its key's slot.
    pub async fn run_blocking<T, F, Fut>(&self, block: Duration, command: F) -> Result<T, PortError>
    where
        F: FnOnce(AnyConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let idle = self
            .blocking
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let connection = match idle {
            Some(connection) => connection,
            None => self.dedicated().await?,
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
    /// Deletes every key under this connection's prefix (an operator's reset; tests' cleanup),
    /// on every master of a cluster. Returns how many keys were deleted. SCAN keeps Redis
    /// responsive on a large keyspace.
    pub async fn clear_namespace(&self) -> Result<u64, PortError> {
        let pattern = format!("{}*", escape_glob(&self.prefix));
        let nodes = self
            .run(|mut conn| async move { conn.key_holders().await })
            .await?;
        let mut deleted = 0u64;
        for node in &nodes {
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let (next, keys): (u64, Vec<String>) = self
                    .run(|mut conn| async move { conn.query_on(node, &scan).await })
                    .await?;
                if !keys.is_empty() {
                    // Routed by key: on a cluster, split into one UNLINK per slot.
                    let removed: u64 = self
                        .run(|mut conn| async move {
                            redis::cmd("UNLINK").arg(keys).query_async(&mut conn).await
                        })
                        .await?;
                    deleted += removed;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(deleted)
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
    // A cluster without a master for a slot, or in the middle of a failover or a resharding, is
    // unavailable for now, like a server that does not answer; a CROSSSLOT error is a bug.
    let cluster_unavailable = error.is_cluster_error()
        || matches!(
            error.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(ServerErrorKind::MasterDown | ServerErrorKind::BusyLoading)
        );
    if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || cluster_unavailable
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

    /// On a cluster, every master must answer.
    async fn ping(&self) -> Result<(), PortError> {
        self.run(
            |mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await },
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operation a span running `commands` ends up with.
    fn operation_of(commands: &[Cmd]) -> Operation {
        OPERATION.set(Operation::Unnamed);
        for command in commands {
            Operation::sent(command);
        }
        OPERATION.replace(Operation::Outside)
    }

    #[test]
    fn a_span_is_named_after_its_command_and_a_mix_is_left_unnamed() {
        assert_eq!(operation_of(&[redis::cmd("get")]), Operation::Named("GET"));
        let script = [redis::cmd("EVALSHA"), redis::cmd("EVAL")];
        assert_eq!(operation_of(&script[..1]), Operation::Named("EVALSHA"));
        assert_eq!(operation_of(&script), Operation::Several);
        let transaction = [redis::cmd("MULTI"), redis::cmd("XADD"), redis::cmd("EXEC")];
        assert_eq!(operation_of(&transaction), Operation::Named("XADD"));
        assert_eq!(
            operation_of(&[redis::cmd("NOT-A-COMMAND")]),
            Operation::Several
        );
        // Outside a span nothing is noted.
        Operation::sent(&redis::cmd("GET"));
        assert_eq!(OPERATION.get(), Operation::Outside);
    }
}
