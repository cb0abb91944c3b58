//! The connection pool, the timeout around every query, the client span around it, the mapping of
//! driver errors, and the one way a repository runs a transaction ([`Database::in_transaction`]).
//!
//! The span follows OpenTelemetry's database conventions: `db.system.name`, the server, and
//! `db.operation.name` with the span named after it (`SELECT`). The operation is read from the
//! first keyword of the SQL the driver reports once a statement has run (diesel's
//! instrumentation), so that no call site has to name it; a span whose statements differ (a
//! transaction of reads and writes) or whose statement does several things (`WITH … UPDATE …
//! INSERT`) names none, as the conventions ask.
//!
//! A timeout cancels on the server what it abandons (ADR 0025): the client stopping to wait
//! would leave the statement running there (a lock wait lasts as long as the lock is held) and its
//! connection busy. The statement is cancelled through the connection's cancel key, which
//! PgBouncer forwards to the server connection the client holds, and a connection whose statement
//! was not seen to end is dropped rather than handed to the next request.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::AsyncConnection as _;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, PoolableConnection as _,
};
use opentelemetry::trace::TraceContextExt as _;
use strata_ports::{HealthCheck, PortError};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Pool sizing and timeouts.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Most connections open at once.
    pub max_size: u32,
    /// How long a request waits for a connection before it is answered 503.
    pub acquire_timeout: Duration,
    /// How long one query (or transaction) may run before it is abandoned.
    pub query_timeout: Duration,
    /// Pools to split `max_size` between (rounded up), one per lane of threads (threads are numbered as they
    /// first ask for a connection). With one lane the connections are made, and their I/O
    /// driven, on the runtime that built the pool; with one lane per HTTP worker each worker's
    /// connections are made and driven on that worker, so no query crosses threads (ADR 0016).
    pub lanes: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_size: 16,
            acquire_timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(5),
            lanes: 1,
        }
    }
}

/// A handle on the pool, cheap to clone, shared by every repository.
#[derive(Clone)]
pub struct Database {
    /// One pool per lane of threads (see [`PoolSettings::lanes`]).
    pools: Arc<[Pool]>,
    query_timeout: Duration,
    /// Callers inside [`Database::connection`] waiting for the pool (bb8 does not count them).
    waiting: Arc<AtomicU64>,
    /// The server's host and port, for the spans (`None` for a URL naming several hosts).
    server: Option<Arc<(String, u16)>>,
}

/// A snapshot of the pool, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open, idle or in use.
    pub connections: u32,
    /// Connections open and not in use.
    pub idle_connections: u32,
    /// Callers waiting for a connection.
    pub waiting: u64,
}

/// Counts one caller as waiting for as long as it lives, so that a caller whose request is
/// cancelled while it waits (a timeout, a client gone) stops counting too.
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn start(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("stats", &self.pool_stats())
            .finish()
    }
}

impl Database {
    /// Builds the pool without connecting: the server starts (and reports not ready) even while
    /// PostgreSQL is down, and connects as soon as it answers.
    pub fn connect_lazy(url: &str, settings: &PoolSettings) -> Self {
        let lanes = settings.lanes.max(1);
        let per_lane = settings.max_size.div_ceil(lanes);
        let pools: Arc<[Pool]> = (0..lanes)
            .map(|_| {
                let mut config = ManagerConfig::<AsyncPgConnection>::default();
                // Each connection's I/O task runs where the connection is made. With a single
                // pool, made on the runtime that builds it (the process's main one), it is not
                // queued behind thousands of HTTP requests on a saturated worker's event loop,
                // where every query of that worker's requests would wait for it.
                let runtime = if lanes == 1 {
                    tokio::runtime::Handle::try_current().ok()
                } else {
                    None
                };
                config.custom_setup = Box::new(move |url| {
                    let url = url.to_owned();
                    let made = runtime.as_ref().map(|runtime| {
                        let url = url.clone();
                        runtime.spawn(async move { AsyncPgConnection::establish(&url).await })
                    });
                    Box::pin(async move {
                        let mut connection = match made {
                            Some(made) => made.await.map_err(|error| {
                                diesel::ConnectionError::BadConnection(format!(
                                    "connecting was abandoned: {error}"
                                ))
                            })??,
                            None => AsyncPgConnection::establish(&url).await?,
                        };
                        let session = Arc::new(Session {
                            cancel: connection.cancel_token(),
                            busy: AtomicBool::new(false),
                        });
                        connection.set_instrumentation(Watch(session));
                        Ok(connection)
                    })
                });
                let manager =
                    AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
                Pool::builder()
                    .max_size(per_lane)
                    .min_idle(Some(0))
                    .connection_timeout(settings.acquire_timeout)
                    .retry_connection(false)
                    // A check per checkout is a round trip per query; `connection` skips
                    // connections whose socket closed while idle (a server restart) without one.
                    .test_on_check_out(false)
                    .build_unchecked(ConnectionManager(manager))
            })
            .collect();
        Self {
            pools,
            query_timeout: settings.query_timeout,
            waiting: Arc::default(),
            server: server_of(url).map(Arc::new),
        }
    }

    /// The pool's size, idle connections and waiting callers right now.
    pub fn pool_stats(&self) -> PoolStats {
        let (connections, idle_connections) =
            self.pools.iter().fold((0, 0), |(all, idle), pool| {
                let state = pool.state();
                (all + state.connections, idle + state.idle_connections)
            });
        PoolStats {
            connections,
            idle_connections,
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }

    /// The pool of the calling thread's lane.
    fn pool(&self) -> &Pool {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static LANE: usize = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        let lane = LANE.with(|lane| *lane) % self.pools.len().max(1);
        &self.pools[lane]
    }

    /// A pooled connection; [`PortError::Unavailable`] when none can be had in time.
    pub async fn connection(&self) -> Result<PooledConnection<'_>, PortError> {
        let waiting = Waiting::start(&self.waiting);
        // A connection closed while idle is dropped (bb8 discards it as broken) and the next one
        // tried; each attempt is bounded by the acquire timeout, and there are only so many.
        let pool = self.pool();
        let mut attempts = pool.state().connections + 1;
        let connection = loop {
            match pool.get().await {
                Ok(mut connection) => {
                    if attempts > 1 && connection.is_broken() {
                        attempts -= 1;
                        continue;
                    }
                    break Ok(connection);
                }
                Err(error) => break Err(error),
            }
        };
        drop(waiting);
        connection.map_err(|error| match error {
            bb8::RunError::TimedOut => {
                PortError::unavailable(anyhow!("timed out waiting for a database connection"))
            }
            bb8::RunError::User(PoolError::ConnectionError(cause)) => {
                PortError::unavailable(anyhow!(cause).context("cannot connect to the database"))
            }
            bb8::RunError::User(PoolError::QueryError(cause)) => map_error(cause),
        })
    }

    /// Runs a query (or a few on one connection) under the query timeout, mapping its error; a
    /// transaction goes through [`Database::in_transaction`].
    pub async fn timed<T>(
        &self,
        query: impl Future<Output = Result<T, DieselError>>,
    ) -> Result<T, PortError> {
        self.traced(self.query_timeout, query)
            .await
            .map_err(|_| timed_out(QUERY, self.query_timeout))?
            .map_err(map_error)
    }

    /// Runs `body` in one transaction on a pooled connection, begun as `mode` says, in one client
    /// span and under one timeout for the whole of it. A driver error is mapped like any query's
    /// (the pool's and the timeout's are [`PortError::Unavailable`]); a refusal
    /// ([`Abort::Refused`]) rolls everything back and is returned as it is. A transaction that
    /// lost a serialization race or was a deadlock's victim is run once more, under a timeout of
    /// its own: it was rolled back whole, and its body touches nothing but this connection (ADR
    /// 0024), so a second run has the one effect a first would have had.
    pub(crate) async fn in_transaction<T, E, F>(&self, mode: Transaction, body: F) -> Result<T, E>
    where
        F: for<'c> Body<'c, T, E> + Send + Clone,
        T: Send,
        E: From<PortError> + Send,
    {
        let mut conn = self.connection().await?;
        let (limit, what) = match mode {
            Transaction::Write => (self.query_timeout, QUERY),
            Transaction::ReadSnapshot { limit, what } => (limit, what),
        };
        let mut retried = false;
        loop {
            let run = run_transaction(&mut conn, mode, body.clone());
            match self.traced(limit, run).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(Abort::Refused(answer))) => return Err(answer),
                Ok(Err(Abort::Db(error))) if !retried && lost_a_race(&error) => {
                    tracing::debug!(%error, "transaction lost a race; running it once more");
                    retried = true;
                }
                Ok(Err(Abort::Db(error))) => return Err(map_error(error).into()),
                Err(_) => return Err(timed_out(what, limit).into()),
            }
        }
    }

    /// Runs `query` under `limit` in a client span: what a trace shows of the database, one span
    /// per statement (or transaction), named after its operation (see the module docs). At the
    /// limit the statement still running is cancelled on the server, and `query` polled a moment
    /// longer so that it ends (its connection free again) before it is dropped.
    pub(crate) async fn traced<R>(
        &self,
        limit: Duration,
        query: impl Future<Output = R>,
    ) -> Result<R, TimedOut> {
        let server = self.server.as_deref();
        let span = tracing::info_span!(
            "postgres",
            otel.name = "postgresql",
            otel.kind = "client",
            db.system.name = "postgresql",
            db.operation.name = tracing::field::Empty,
            server.address = server.map(|(host, _)| host.as_str()),
            server.port = server.map(|(_, port)| i64::from(*port)),
        );
        let mut run = Run {
            span,
            operation: Operation::Unnamed,
            // A statement built before the first poll (`timed(query.execute(&mut conn))`) has
            // already been reported by its connection, on this thread.
            sessions: STARTED.take().into_iter().collect(),
        };
        let mut query = std::pin::pin!(query);
        let mut deadline = std::pin::pin!(tokio::time::sleep(limit));
        let finished = std::future::poll_fn(|cx| match run.poll(query.as_mut(), cx) {
            Poll::Ready(value) => Poll::Ready(Some(value)),
            Poll::Pending => deadline.as_mut().poll(cx).map(|()| None),
        })
        .await;
        if let Some(value) = finished {
            return Ok(value);
        }
        let busy: Vec<Arc<Session>> = run
            .sessions
            .iter()
            .filter(|session| session.busy.load(Ordering::Acquire))
            .cloned()
            .collect();
        if !busy.is_empty() {
            let settle = async {
                for session in &busy {
                    if let Err(error) = session.cancel.cancel_query(tokio_postgres::NoTls).await {
                        tracing::warn!(%error, "could not cancel a statement past its timeout");
                    }
                }
                // Read what the cancelled statement answers (or a transaction's rollback), so
                // that its connection goes back to the pool with nothing in flight.
                std::future::poll_fn(|cx| run.poll(query.as_mut(), cx)).await
            };
            if tokio::time::timeout(CANCEL_GRACE, settle).await.is_err() {
                tracing::warn!(
                    "a statement past its timeout did not end within {CANCEL_GRACE:?} of its \
                     cancel; its connection is closed"
                );
            }
        }
        Err(TimedOut)
    }
}

/// How long a timeout waits for the statement it cancelled to end; past it the statement's
/// connection is closed instead (the pool drops a connection whose statement has not ended).
const CANCEL_GRACE: Duration = Duration::from_millis(500);

/// Work abandoned at its limit (its statement cancelled on the server).
#[derive(Debug)]
pub(crate) struct TimedOut;

/// One [`Database::traced`] call: its span, what it has seen of its statements, and the
/// connections they ran on.
struct Run {
    span: tracing::Span,
    operation: Operation,
    sessions: Vec<Arc<Session>>,
}

impl Run {
    /// Polls `query` in the span, collecting what the connections report while it runs.
    fn poll<R>(
        &mut self,
        query: std::pin::Pin<&mut impl Future<Output = R>>,
        cx: &mut Context<'_>,
    ) -> Poll<R> {
        let _entered = self.span.enter();
        // The driver reports each statement while this poll runs it, on this thread.
        let outer = OPERATION.replace(self.operation);
        let outer_started = STARTED.take();
        let poll = query.poll(cx);
        self.operation = OPERATION.replace(outer);
        if let Some(session) = STARTED.replace(outer_started)
            && !self.sessions.iter().any(|seen| Arc::ptr_eq(seen, &session))
        {
            self.sessions.push(session);
        }
        if poll.is_ready()
            && let Operation::Named(name) = self.operation
        {
            self.span.record("db.operation.name", name);
            // Started when first entered, so the exported span takes its name this way only.
            self.span.context().span().update_name(name);
        }
        poll
    }
}

/// The pool of connections of one lane.
type Pool = bb8::Pool<ConnectionManager>;

/// A connection lent by the pool, returned to it when dropped.
pub type PooledConnection<'a> = bb8::PooledConnection<'a, ConnectionManager>;

/// diesel-async's connection manager, but a connection whose last statement has not ended (its
/// future was dropped: a timeout, a client gone) is broken: handed out, it would make the next
/// request wait behind a statement nobody waits for.
pub struct ConnectionManager(AsyncDieselConnectionManager<AsyncPgConnection>);

impl bb8::ManageConnection for ConnectionManager {
    type Connection = AsyncPgConnection;
    type Error = PoolError;

    fn connect(&self) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send {
        self.0.connect()
    }

    fn is_valid(
        &self,
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.0.is_valid(conn)
    }

    fn has_broken(&self, conn: &mut Self::Connection) -> bool {
        self.0.has_broken(conn)
            || conn
                .instrumentation()
                .downcast_ref::<Watch>()
                .is_some_and(|watch| watch.0.busy.load(Ordering::Acquire))
    }
}

/// What a timeout needs of one connection, shared by its instrumentation and the calls that ran
/// statements on it.
struct Session {
    /// The connection's cancel key: asks the server (through PgBouncer, the server connection
    /// this client holds) to cancel the statement running there.
    cancel: tokio_postgres::CancelToken,
    /// A statement was sent and its end not yet read.
    busy: AtomicBool,
}

/// Each connection's instrumentation: reports the statements it runs to the call polling them.
struct Watch(Arc<Session>);

impl Instrumentation for Watch {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { .. } => {
                self.0.busy.store(true, Ordering::Release);
                STARTED.set(Some(Arc::clone(&self.0)));
            }
            InstrumentationEvent::FinishQuery { .. } => {
                self.0.busy.store(false, Ordering::Release);
                // An ended statement is nobody's to cancel: a call that starts polling later on
                // this thread (another request's, perhaps) must not take this connection for its
                // own and cancel what runs on it then.
                STARTED.with_borrow_mut(|started| {
                    if started
                        .as_ref()
                        .is_some_and(|session| Arc::ptr_eq(session, &self.0))
                    {
                        *started = None;
                    }
                });
                name_operation(event);
            }
            _ => {}
        }
    }
}

/// What a timeout calls the work it abandoned, unless a caller names it.
const QUERY: &str = "database query";

/// The error of work abandoned at its timeout: the database did not answer in time.
fn timed_out(what: &str, limit: Duration) -> PortError {
    PortError::unavailable(anyhow!("{what} timed out after {limit:?}"))
}

/// How [`Database::in_transaction`] begins a transaction, and how long it may run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Transaction {
    /// PostgreSQL's defaults (read committed, read-write) under the pool's query timeout: a
    /// write that locks the rows it decides on as it reads them (`FOR UPDATE`, advisory locks).
    Write,
    /// Repeatable read and read-only: several reads that must see one snapshot (a report's
    /// totals and its ranking), under their own limit rather than the query timeout.
    ReadSnapshot {
        /// How long the whole transaction may run.
        limit: Duration,
        /// What a timeout calls it ("report query timed out after …").
        what: &'static str,
    },
}

/// Why a transaction's body gave up: a driver error, or the port's own answer (a refusal, or an
/// invariant broken by what it read). Either way the transaction rolls back.
pub(crate) enum Abort<E> {
    /// The database failed.
    Db(DieselError),
    /// The port refuses (or an invariant broke); nothing is written.
    Refused(E),
}

impl<E> From<DieselError> for Abort<E> {
    fn from(error: DieselError) -> Self {
        Self::Db(error)
    }
}

impl<E: From<PortError>> Abort<E> {
    /// An infrastructure failure or broken invariant, as the port's error.
    pub(crate) fn port(error: PortError) -> Self {
        Self::Refused(error.into())
    }

    /// A broken invariant (unreadable stored data), as the port's error.
    pub(crate) fn unexpected(error: impl Into<anyhow::Error>) -> Self {
        Self::port(PortError::unexpected(error))
    }
}

/// The body of a transaction: an async closure over its connection whose future may move between
/// threads. diesel-async asks this of a transaction without exporting a name for it, and a generic
/// caller has to state it.
pub(crate) trait Body<'c, T, E>:
    AsyncFnOnce(&'c mut AsyncPgConnection) -> Result<T, Abort<E>>
    + FnOnce(&'c mut AsyncPgConnection) -> <Self as Body<'c, T, E>>::Future
{
    /// The future the closure returns.
    type Future: Future<Output = Result<T, Abort<E>>> + Send;
}

impl<'c, F, Fut, T, E> Body<'c, T, E> for F
where
    F: AsyncFnOnce(&'c mut AsyncPgConnection) -> Result<T, Abort<E>>
        + FnOnce(&'c mut AsyncPgConnection) -> Fut,
    Fut: Future<Output = Result<T, Abort<E>>> + Send,
{
    type Future = Fut;
}

/// What a span has seen of the statements run under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    /// No span: a statement run outside [`Database::traced`] (migrations, test set-up).
    Outside,
    /// No statement yet, or only transaction control (`BEGIN`, `COMMIT`).
    Unnamed,
    /// Statements of this one operation.
    Named(&'static str),
    /// Statements of several operations, or one the conventions do not name.
    Several,
}

impl Operation {
    /// After one more statement, whose first keyword is `keyword`.
    fn and(self, keyword: &str) -> Self {
        const NAMED: [&str; 12] = [
            "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "CALL", "LOCK", "SET", "TRUNCATE",
            "CREATE", "DROP", "ALTER",
        ];
        const CONTROL: [&str; 6] = [
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "SAVEPOINT",
            "RELEASE",
            "START",
        ];
        if self == Operation::Outside || CONTROL.iter().any(|c| c.eq_ignore_ascii_case(keyword)) {
            return self;
        }
        let named = NAMED.iter().find(|name| name.eq_ignore_ascii_case(keyword));
        match (self, named) {
            (Operation::Unnamed, Some(name)) => Operation::Named(name),
            (Operation::Named(current), Some(name)) if current == *name => self,
            _ => Operation::Several,
        }
    }
}

thread_local! {
    /// The operation of the span whose query this thread is polling.
    static OPERATION: Cell<Operation> = const { Cell::new(Operation::Outside) };
    /// The connection of the statement last started on this thread, for the call polling it.
    static STARTED: RefCell<Option<Arc<Session>>> = const { RefCell::new(None) };
}

/// The connections' instrumentation: tells the span running a statement which statement it was.
fn name_operation(event: InstrumentationEvent<'_>) {
    if let InstrumentationEvent::FinishQuery { query, .. } = event {
        let mut keyword = Keyword::default();
        // The writer stops the formatting once it has the keyword; the error is that stop.
        let _ = write!(keyword, "{query}");
        OPERATION.set(OPERATION.get().and(keyword.as_str()));
    }
}

/// The first word of a statement, collected without allocating.
#[derive(Default)]
struct Keyword {
    bytes: [u8; 16],
    len: usize,
}

impl Keyword {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Write for Keyword {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        for byte in text.bytes() {
            if byte.is_ascii_alphabetic() {
                if self.len == self.bytes.len() {
                    return Err(std::fmt::Error);
                }
                self.bytes[self.len] = byte;
                self.len += 1;
            } else if self.len > 0 {
                return Err(std::fmt::Error);
            } else if !byte.is_ascii_whitespace() && byte != b'(' {
                // A comment or anything else first: no keyword to go by.
                return Err(std::fmt::Error);
            }
        }
        Ok(())
    }
}

/// The host and port of a `postgres://` URL; `None` when it names several hosts or a socket.
fn server_of(url: &str) -> Option<(String, u16)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    let (host, port) = match hosts.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match hosts.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hosts, None),
        },
    };
    if host.is_empty() || host.contains(',') {
        return None;
    }
    let port = port.map_or(Some(5432), |port| port.parse().ok())?;
    Some((host.to_owned(), port))
}

/// `url` with its database name replaced by `database`, the query string kept (to reach the
/// maintenance database, or a per-test clone, on the same server).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{database}?{query}"),
        None => format!("{root}/{database}"),
    }
}

/// One run of a transaction's body, begun as `mode` says.
async fn run_transaction<T, E, F>(
    conn: &mut AsyncPgConnection,
    mode: Transaction,
    body: F,
) -> Result<T, Abort<E>>
where
    F: for<'c> Body<'c, T, E> + Send,
    T: Send,
    E: Send,
{
    match mode {
        // `BEGIN` through the transaction manager rather than the builder: it keeps the body's
        // error when the rollback finds the connection broken.
        Transaction::Write => conn.transaction(body).await,
        Transaction::ReadSnapshot { .. } => {
            conn.build_transaction()
                .read_only()
                .repeatable_read()
                .run(body)
                .await
        }
    }
}

/// True when the transaction was rolled back for losing a race another one won: a serialization
/// failure (40001) or a deadlock's victim (40P01). Another run can succeed at once.
fn lost_a_race(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        DieselError::DatabaseError(_, info) => info.message().starts_with("deadlock detected"),
        _ => false,
    }
}

/// Maps a driver error that no port names: what a retry can get past is transient (503 with
/// `Retry-After`), the rest unexpected (500).
pub(crate) fn map_error(error: DieselError) -> PortError {
    match &error {
        // The connection died under the query (the server crashed or is shutting down): the
        // request may be retried once the database is back.
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        )
        | DieselError::BrokenTransactionManager => PortError::unavailable(error),
        // A server that became a read-only standby (a failover moved the primary away), or a
        // transaction that lost a serialization race: nothing was written, and the same request
        // succeeds against the new primary or on a second try.
        DieselError::DatabaseError(
            DatabaseErrorKind::ReadOnlyTransaction | DatabaseErrorKind::SerializationFailure,
            _,
        ) => PortError::unavailable(error),
        DieselError::DatabaseError(_, info)
            if is_shutdown_message(info.message()) || is_transient_message(info.message()) =>
        {
            PortError::unavailable(error)
        }
        _ => PortError::unexpected(error),
    }
}

/// The messages of the other refusals a retry gets past, which diesel reports without a
/// dedicated kind (and without their SQLSTATE): a deadlock victim (40P01), a statement cancelled
/// by an operator or a timeout (57014), a server or role out of connection slots (53300), a lock
/// not available at once (55P03). PostgreSQL writes them in its `lc_messages` language; these are
/// its English ones, which a server in another language does not match (they stay 500).
fn is_transient_message(message: &str) -> bool {
    message.starts_with("deadlock detected")
        || message.starts_with("canceling statement due to")
        || message.starts_with("sorry, too many clients already")
        || message.starts_with("too many connections for")
        || message.starts_with("remaining connection slots are reserved")
        || message.starts_with("could not obtain lock on")
}

/// The messages of SQLSTATE 57P01–57P03 (administrator shutdown, crash shutdown, cannot connect
/// now), which diesel reports without a dedicated kind.
fn is_shutdown_message(message: &str) -> bool {
    message.starts_with("terminating connection due to")
        || message.contains("the database system is shutting down")
        || message.contains("the database system is starting up")
        || message.contains("the database system is in recovery mode")
}

/// True when `error` is a unique violation of the named constraint or index.
pub(crate) fn violates(error: &DieselError, constraint: &str) -> bool {
    matches!(error, DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info)
        if info.constraint_name() == Some(constraint))
}

/// The keyset condition `(<sort column>, id) > (key, id)` (`after`) or `< (key, id)` (`before`),
/// written as a row comparison so that PostgreSQL seeks straight into the `(sort column, id)` index
/// instead of filtering. `$column` is a literal column name, never user input.
macro_rules! keyset {
    ($column:literal, after, $sql_type:ty, $key:expr, $id:expr) => {
        $crate::database::keyset!(@ $column, ") > (", $sql_type, $key, $id)
    };
    ($column:literal, before, $sql_type:ty, $key:expr, $id:expr) => {
        $crate::database::keyset!(@ $column, ") < (", $sql_type, $key, $id)
    };
    (@ $column:literal, $operator:literal, $sql_type:ty, $key:expr, $id:expr) => {
        diesel::dsl::sql::<diesel::sql_types::Bool>(concat!("(", $column, ", id", $operator))
            .bind::<$sql_type, _>($key)
            .sql(", ")
            .bind::<diesel::sql_types::Uuid, _>($id)
            .sql(")")
    };
}
pub(crate) use keyset;

#[async_trait]
impl HealthCheck for Database {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<(), PortError> {
        use crate::prepared::PrepareOnce as _;
        use diesel_async::RunQueryDsl;
        let mut conn = self.connection().await?;
        self.timed(diesel::sql_query("SELECT 1").prepared().execute(&mut conn))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    #[test]
    fn a_waiter_stops_counting_when_it_is_dropped_even_mid_wait() {
        let counter = AtomicU64::new(0);
        let first = Waiting::start(&counter);
        let second = Waiting::start(&counter);
        assert_eq!(counter.load(Ordering::Relaxed), 2);
        drop(first);
        assert_eq!(counter.load(Ordering::Relaxed), 1);
        drop(second);
        assert_eq!(counter.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_caller_counts_as_waiting_until_its_request_is_cancelled() {
        // A listener that never answers the startup message: the caller waits until cancelled.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let database = Database::connect_lazy(
            &format!("postgres://nobody@127.0.0.1:{port}/none"),
            &PoolSettings {
                max_size: 1,
                acquire_timeout: Duration::from_secs(30),
                query_timeout: Duration::from_secs(1),
                lanes: 1,
            },
        );
        let waiter = database.clone();
        let request = tokio::spawn(async move { waiter.connection().await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(database.pool_stats().waiting, 1);
        assert_eq!(database.pool_stats().idle_connections, 0);
        request.abort();
        assert!(request.await.unwrap_err().is_cancelled());
        assert_eq!(database.pool_stats().waiting, 0);
    }

    #[test]
    fn the_database_name_is_replaced_and_the_query_kept() {
        assert_eq!(
            with_database("postgres://u@h:5432/app", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h:5432/app?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h:5432", "x"),
            "postgres://u@h:5432/x"
        );
    }

    fn keyword(sql: &str) -> String {
        let mut keyword = Keyword::default();
        let _ = write!(keyword, "{sql}");
        keyword.as_str().to_owned()
    }

    #[test]
    fn a_statement_is_named_by_its_first_keyword() {
        assert_eq!(
            keyword("SELECT \"products\".\"id\" FROM \"products\""),
            "SELECT"
        );
        assert_eq!(keyword("  insert into jobs (id) VALUES ($1)"), "insert");
        assert_eq!(keyword("(SELECT 1) UNION (SELECT 2)"), "SELECT");
        assert_eq!(keyword("-- a comment first\nSELECT 1"), "");
    }

    #[test]
    fn a_span_is_named_after_its_one_operation_and_transaction_control_does_not_count() {
        let read = Operation::Unnamed.and("BEGIN").and("select").and("COMMIT");
        assert_eq!(read, Operation::Named("SELECT"));
        assert_eq!(
            Operation::Unnamed.and("UPDATE").and("UPDATE"),
            Operation::Named("UPDATE")
        );
        assert_eq!(
            Operation::Unnamed.and("SELECT").and("UPDATE"),
            Operation::Several
        );
        // A statement of CTEs may both write and read: the conventions leave it unnamed.
        assert_eq!(Operation::Unnamed.and("WITH"), Operation::Several);
        assert_eq!(Operation::Outside.and("SELECT"), Operation::Outside);
    }

    #[test]
    fn the_server_is_read_from_the_url() {
        let server = |url| server_of(url);
        assert_eq!(
            server("postgres://u:p@db.internal:6543/strata?sslmode=require"),
            Some(("db.internal".to_owned(), 6543))
        );
        assert_eq!(
            server("postgres://127.0.0.1/strata"),
            Some(("127.0.0.1".to_owned(), 5432))
        );
        assert_eq!(
            server("postgresql://u@[::1]:5433/strata"),
            Some(("::1".to_owned(), 5433))
        );
        assert_eq!(server("postgres://a:5432,b:5432/strata"), None);
        assert_eq!(server("postgres:///strata?host=/run/postgresql"), None);
    }

    /// A port's answer besides its infrastructure failures, as a keyed write's error is.
    #[derive(Debug)]
    enum Answer {
        Refused,
        Port(PortError),
    }

    impl From<PortError> for Answer {
        fn from(error: PortError) -> Self {
            Self::Port(error)
        }
    }

    /// Adds a user inside the caller's transaction.
    async fn add_user(conn: &mut AsyncPgConnection, id: uuid::Uuid) -> Result<(), DieselError> {
        use diesel::sql_types::Uuid as SqlUuid;
        use diesel_async::RunQueryDsl;
        diesel::sql_query(
            "INSERT INTO users (id, email, display_name, password_hash) \
             VALUES ($1, $1::text || '@example.com', 'Someone', 'x')",
        )
        .bind::<SqlUuid, _>(id)
        .execute(conn)
        .await
        .map(|_| ())
    }

    async fn users(db: &Database) -> i64 {
        crate::testing::count(db, "SELECT count(*) AS n FROM users")
            .await
            .unwrap()
    }

    #[derive(diesel::QueryableByName)]
    struct Mode {
        #[diesel(sql_type = diesel::sql_types::Text)]
        isolation: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        read_only: String,
    }

    async fn mode_in(conn: &mut AsyncPgConnection) -> Result<Mode, DieselError> {
        use diesel_async::RunQueryDsl;
        diesel::sql_query(
            "SELECT current_setting('transaction_isolation') AS isolation, \
             current_setting('transaction_read_only') AS read_only",
        )
        .get_result(conn)
        .await
    }

    async fn sleep_in(conn: &mut AsyncPgConnection) -> Result<(), DieselError> {
        use diesel_async::RunQueryDsl;
        diesel::sql_query("SELECT pg_sleep(5)")
            .execute(conn)
            .await
            .map(|_| ())
    }

    fn unavailable_because(error: PortError) -> String {
        match error {
            PortError::Unavailable(cause) => cause.to_string(),
            PortError::Unexpected(cause) => panic!("unexpected, not unavailable: {cause:#}"),
        }
    }

    /// One worker thread runs many requests: a timeout must cancel the statements of its own
    /// call only, never another call's on a connection whose earlier statement ended here.
    #[tokio::test]
    async fn a_timeout_cancels_its_own_statement_and_not_another_calls_on_the_same_thread() {
        use diesel_async::SimpleAsyncConnection as _;
        let test_db = crate::testing::TestDatabase::create().await.unwrap();
        let db = Database::connect_lazy(
            test_db.url(),
            &PoolSettings {
                max_size: 2,
                acquire_timeout: Duration::from_secs(5),
                query_timeout: Duration::from_millis(300),
                lanes: 1,
            },
        );
        let mut other = db.connection().await.unwrap();
        let mut own = db.connection().await.unwrap();
        // A statement that ends on this thread outside any timed call (as a connection's set-up
        // statements do when the pool opens it in the background).
        other.batch_execute("SELECT 1").await.unwrap();
        let timed_out = db.timed(own.batch_execute("SELECT pg_sleep(3)"));
        let other_call = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            db.traced(
                Duration::from_secs(5),
                other.batch_execute("SELECT pg_sleep(1)"),
            )
            .await
        };
        let (timed_out, other_call) = tokio::join!(timed_out, other_call);
        assert!(
            unavailable_because(timed_out.unwrap_err()).contains("timed out"),
            "the own statement is cut at its timeout"
        );
        let other_call = other_call.expect("the other call has its own, longer limit");
        assert!(
            other_call.is_ok(),
            "the other call's statement was cancelled by a timeout not its own: {other_call:?}"
        );
    }

    #[tokio::test]
    async fn a_committed_transaction_keeps_what_its_body_wrote() {
        let test_db = crate::testing::TestDatabase::create().await.unwrap();
        let db = test_db.database();
        let id = uuid::Uuid::now_v7();
        let result: Result<(), Answer> = db
            .in_transaction(Transaction::Write, async |conn| {
                Ok(add_user(conn, id).await?)
            })
            .await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(users(&db).await, 1);
    }

    #[tokio::test]
    async fn a_refusal_rolls_back_what_the_body_wrote_and_is_returned_as_it_is() {
        let test_db = crate::testing::TestDatabase::create().await.unwrap();
        let db = test_db.database();
        let result: Result<(), Answer> = db
            .in_transaction(Transaction::Write, async |conn| {
                add_user(conn, uuid::Uuid::now_v7()).await?;
                Err(Abort::Refused(Answer::Refused))
            })
            .await;
        assert!(matches!(result, Err(Answer::Refused)), "{result:?}");
        assert_eq!(users(&db).await, 0);
    }

    #[tokio::test]
    async fn a_driver_error_rolls_back_and_is_mapped_like_a_single_query_error() {
        let test_db = crate::testing::TestDatabase::create().await.unwrap();
        let db = test_db.database();
        let id = uuid::Uuid::now_v7();
        let result: Result<(), Answer> = db
            .in_transaction(Transaction::Write, async |conn| {
                add_user(conn, id).await?;
                Ok(add_user(conn, id).await?)
            })
            .await;
        assert!(
            matches!(result, Err(Answer::Port(PortError::Unexpected(_)))),
            "{result:?}"
        );
        assert_eq!(users(&db).await, 0);
    }

    #[tokio::test]
    async fn a_transaction_past_the_query_timeout_is_unavailable_and_writes_nothing() {
        let test_db = crate::testing::TestDatabase::create().await.unwrap();
        let settings = PoolSettings {
            max_size: 1,
            query_timeout: Duration::from_millis(300),
            ..PoolSettings::default()
        };
        let db = Database::connect_lazy(test_db.url(), &settings);
        let result: Result<(), PortError> = db
            .in_transaction(Transaction::Write, async |conn| {
                add_user(conn, uuid::Uuid::now_v7()).await?;
                Ok(sleep_in(conn).await?)
            })
            .await;
        assert_eq!(
            unavailable_because(result.unwrap_err()),
            "database query timed out after 300ms"
        );
        assert_eq!(users(&test_db.database()).await, 0);
    }

    #[tokio::test]
    async fn a_write_runs_at_read_committed_and_a_read_snapshot_at_repeatable_read_read_only() {
        let test_db = crate::testing::TestDatabase::create().await.unwrap();
        let db = test_db.database();
        let write: Mode = db
            .in_transaction::<_, PortError, _>(Transaction::Write, async |conn| {
                Ok(mode_in(conn).await?)
            })
            .await
            .unwrap();
        assert_eq!(
            (write.isolation.as_str(), write.read_only.as_str()),
            ("read committed", "off")
        );
        let snapshot = Transaction::ReadSnapshot {
            limit: Duration::from_secs(5),
            what: "report query",
        };
        let read: Mode = db
            .in_transaction::<_, PortError, _>(snapshot, async |conn| Ok(mode_in(conn).await?))
            .await
            .unwrap();
        assert_eq!(
            (read.isolation.as_str(), read.read_only.as_str()),
            ("repeatable read", "on")
        );
    }

    #[tokio::test]
    async fn a_read_snapshot_is_bound_by_its_own_limit_and_named_in_its_timeout() {
        let test_db = crate::testing::TestDatabase::create().await.unwrap();
        let db = test_db.database();
        let snapshot = Transaction::ReadSnapshot {
            limit: Duration::from_millis(200),
            what: "report query",
        };
        let result: Result<(), PortError> = db
            .in_transaction(snapshot, async |conn| Ok(sleep_in(conn).await?))
            .await;
        assert_eq!(
            unavailable_because(result.unwrap_err()),
            "report query timed out after 200ms"
        );
    }

    /// The `postgres` spans opened on this thread, each with the operation it was named after.
    #[derive(Clone, Default)]
    struct SpanRecorder {
        spans: Arc<std::sync::Mutex<Vec<Option<String>>>>,
    }

    /// Keeps a string field's value.
    struct OperationName<'a>(&'a mut Option<String>);

    impl tracing::field::Visit for OperationName<'_> {
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            if field.name() == "db.operation.name" {
                *self.0 = Some(value.to_owned());
            }
        }

        fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
    }

    impl tracing::Subscriber for SpanRecorder {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }

        fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            let mut spans = self.spans.lock().unwrap();
            if span.metadata().name() != "postgres" {
                // Ids start at 1; other spans share one that is never looked up.
                return tracing::span::Id::from_u64(u64::MAX);
            }
            spans.push(None);
            tracing::span::Id::from_u64(spans.len() as u64)
        }

        fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
            let mut spans = self.spans.lock().unwrap();
            if let Some(operation) = usize::try_from(span.into_u64() - 1)
                .ok()
                .and_then(|index| spans.get_mut(index))
            {
                values.record(&mut OperationName(operation));
            }
        }

        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

        fn event(&self, _: &tracing::Event<'_>) {}

        fn enter(&self, _: &tracing::span::Id) {}

        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[tokio::test]
    async fn a_transaction_is_one_client_span_named_after_its_one_operation() {
        let test_db = crate::testing::TestDatabase::create().await.unwrap();
        let db = test_db.database();
        let recorder = SpanRecorder::default();
        let guard = tracing::subscriber::set_default(recorder.clone());
        db.in_transaction::<_, PortError, _>(Transaction::Write, async |conn| {
            add_user(conn, uuid::Uuid::now_v7()).await?;
            Ok(add_user(conn, uuid::Uuid::now_v7()).await?)
        })
        .await
        .unwrap();
        db.in_transaction::<_, PortError, _>(Transaction::Write, async |conn| {
            add_user(conn, uuid::Uuid::now_v7()).await?;
            Ok(mode_in(conn).await.map(|_| ())?)
        })
        .await
        .unwrap();
        drop(guard);
        let spans = recorder.spans.lock().unwrap().clone();
        assert_eq!(spans, [Some("INSERT".to_owned()), None]);
    }

    #[test]
    fn refusals_a_retry_gets_past_are_unavailable_and_the_rest_unexpected() {
        let database_error =
            |kind, message: &str| DieselError::DatabaseError(kind, Box::new(message.to_owned()));
        for transient in [
            database_error(
                DatabaseErrorKind::ReadOnlyTransaction,
                "cannot execute UPDATE in a read-only transaction",
            ),
            database_error(
                DatabaseErrorKind::SerializationFailure,
                "could not serialize access due to concurrent update",
            ),
            database_error(DatabaseErrorKind::Unknown, "deadlock detected"),
            database_error(
                DatabaseErrorKind::Unknown,
                "canceling statement due to user request",
            ),
            database_error(
                DatabaseErrorKind::Unknown,
                "canceling statement due to statement timeout",
            ),
            database_error(
                DatabaseErrorKind::Unknown,
                "sorry, too many clients already",
            ),
            database_error(
                DatabaseErrorKind::Unknown,
                "too many connections for role \"strata\"",
            ),
            database_error(
                DatabaseErrorKind::Unknown,
                "could not obtain lock on row in relation \"products\"",
            ),
            database_error(
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command",
            ),
            database_error(DatabaseErrorKind::ClosedConnection, "connection closed"),
        ] {
            let shown = format!("{transient:?}");
            assert!(
                matches!(map_error(transient), PortError::Unavailable(_)),
                "{shown} is transient"
            );
        }
        // Of those, only a lost race is run again at once: a read-only server or a cancelled
        // statement would refuse a second run just the same.
        assert!(lost_a_race(&database_error(
            DatabaseErrorKind::SerializationFailure,
            "could not serialize access due to concurrent update",
        )));
        assert!(lost_a_race(&database_error(
            DatabaseErrorKind::Unknown,
            "deadlock detected"
        )));
        for refused_again in [
            database_error(
                DatabaseErrorKind::ReadOnlyTransaction,
                "cannot execute UPDATE in a read-only transaction",
            ),
            database_error(
                DatabaseErrorKind::Unknown,
                "canceling statement due to user request",
            ),
        ] {
            assert!(!lost_a_race(&refused_again), "{refused_again:?}");
        }
        for unexpected in [
            database_error(
                DatabaseErrorKind::Unknown,
                "column \"colour\" does not exist",
            ),
            database_error(
                DatabaseErrorKind::CheckViolation,
                "violates check constraint",
            ),
            DieselError::NotFound,
        ] {
            let shown = format!("{unexpected:?}");
            assert!(
                matches!(map_error(unexpected), PortError::Unexpected(_)),
                "{shown} is a bug, not a transient refusal"
            );
        }
    }

    /// A failover leaves the application on a server that refuses writes (the old primary, now a
    /// standby, or a new primary not yet promoted): writes are 503 until a connection reaches a
    /// writable server, then everything works again without a restart.
    #[tokio::test]
    async fn a_database_turned_read_only_refuses_writes_as_unavailable_then_recovers() {
        use diesel_async::SimpleAsyncConnection as _;
        let test_db = crate::testing::TestDatabase::create().await.unwrap();
        let admin = test_db.direct();
        let flip = async |read_only: bool| {
            let mut conn = admin.connection().await.unwrap();
            let setting = if read_only { "on" } else { "off" };
            conn.batch_execute(&format!(
                "ALTER DATABASE \"{}\" SET default_transaction_read_only = {setting}",
                test_db.name()
            ))
            .await
            .unwrap();
            // What a failover does to the connections of the old primary.
            conn.batch_execute(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{}' AND pid <> pg_backend_pid()",
                test_db.name()
            ))
            .await
            .unwrap();
        };
        let db = test_db.database();
        let write = async || -> Result<(), Answer> {
            db.in_transaction(Transaction::Write, async |conn| {
                Ok(add_user(conn, uuid::Uuid::now_v7()).await?)
            })
            .await
        };
        write().await.expect("a writable database takes the write");
        flip(true).await;
        // The first call may meet a connection the termination closed (also unavailable).
        for _ in 0..3 {
            match write().await {
                Err(Answer::Port(PortError::Unavailable(_))) => {}
                other => panic!("a read-only database's refusal is transient: {other:?}"),
            }
        }
        let reads = crate::testing::count(&db, "SELECT count(*) AS n FROM users").await;
        assert!(reads.is_ok(), "reads go on: {reads:?}");
        flip(false).await;
        let mut recovered = false;
        for _ in 0..3 {
            if write().await.is_ok() {
                recovered = true;
                break;
            }
        }
        assert!(recovered, "writes work again once the server is writable");
    }

    /// Two transactions that lock the same rows in opposite orders: PostgreSQL ends one as the
    /// deadlock's victim and rolls it back; it runs once more, after the other committed, and
    /// both writes are made, with no error reaching the caller.
    #[tokio::test]
    async fn a_deadlocks_victim_runs_once_more_and_both_commit() {
        use std::sync::atomic::AtomicUsize;

        use diesel::sql_types::Uuid as SqlUuid;
        use diesel_async::RunQueryDsl;
        let test_db = crate::testing::TestDatabase::create().await.unwrap();
        let db = test_db.roomy();
        let (first, second) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        for id in [first, second] {
            let result: Result<(), Answer> = db
                .in_transaction(Transaction::Write, async |conn| {
                    Ok(add_user(conn, id).await?)
                })
                .await;
            result.unwrap();
        }
        let both_hold_one = tokio::sync::Barrier::new(2);
        let runs = AtomicUsize::new(0);
        let lock_in_order = async |one: uuid::Uuid, other: uuid::Uuid| -> Result<(), Answer> {
            db.in_transaction(Transaction::Write, async |conn| {
                let run = runs.fetch_add(1, Ordering::SeqCst);
                for (index, id) in [one, other].into_iter().enumerate() {
                    diesel::sql_query("UPDATE users SET display_name = 'Locked' WHERE id = $1")
                        .bind::<SqlUuid, _>(id)
                        .execute(conn)
                        .await?;
                    // Only the first two runs meet: the victim's second run finds the rows free.
                    if index == 0 && run < 2 {
                        both_hold_one.wait().await;
                    }
                }
                Ok(())
            })
            .await
        };
        let (a, b) = tokio::join!(lock_in_order(first, second), lock_in_order(second, first));
        assert!(a.is_ok() && b.is_ok(), "both commit: {a:?} {b:?}");
        assert_eq!(
            AtomicUsize::load(&runs, Ordering::SeqCst),
            3,
            "the victim ran once more"
        );
    }
}
