//! The protective layers in front of the routes: admission control, rate limiting, the request
//! timeout, and the compression threshold.
//!
//! # Order (outermost first), and why
//!
//! 1. `observe` (request id, span, access log, panic containment, security headers, HSTS): first, so
//!    that every response below — including a 429, a 503 or a panic — carries the request id and
//!    the security headers and is logged once.
//! 2. CORS: answers preflight requests before any budget, slot or credential is spent, and adds
//!    its headers to every response, errors included, so that browsers can read problems.
//! 3. Compression (gzip/br by `Accept-Encoding`), with the small-body marker just inside it:
//!    compresses whatever the inner layers produce, except bodies under the threshold, where the
//!    framing would cost more than it saves.
//! 4. Admission (a bound on in-flight requests): the cheapest refusal under overload, before any
//!    Redis or database call is made for a request that would only queue.
//! 5. Rate limiting: one Redis round trip; a refused caller costs nothing more.
//! 6. The request timeout: innermost, so it bounds exactly the work of extractors
//!    and handlers, and cancels it by dropping it.
//!
//! Layers 3 (the marker, not the compressor itself) to 6 run as one middleware, [`guard`]: one
//! boxed future per request rather than one per layer.
//!
//! Metrics: [`REQUESTS_IN_FLIGHT`] counts admitted requests; [`RATE_LIMIT_REJECTIONS_TOTAL`]
//! counts every 429, by route group.

use std::future::Future as _;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};
use strata_ports::{RateDecision, RateLimit, RateLimiter};
use tokio::sync::Semaphore;

use crate::problem::{ApiError, ProblemCode};
use crate::request_id;
use crate::state::AppState;

/// Requests admitted and not yet answered.
pub const REQUESTS_IN_FLIGHT: &str = "http_requests_in_flight";
/// Requests refused with 429, by route `group` (`read`, `write`, `auth`, `auth_email`).
pub const RATE_LIMIT_REJECTIONS_TOTAL: &str = "rate_limit_rejections_total";

/// `X-Forwarded-For`.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The most `X-Forwarded-For` entries read from the right: more trusted hops than this is not a
/// deployment but a client padding the chain.
const MAX_FORWARDED_HOPS: usize = 16;

/// One `X-Forwarded-For` entry: an address, bracketed or not, with or without a port (some proxies
/// append one); anything else (`unknown`, `-`, an empty entry, an obfuscated RFC 7239 name) is
/// `None`.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(socket) = entry.parse::<std::net::SocketAddr>() {
        return Some(canonical(socket.ip()));
    }
    entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<std::net::Ipv6Addr>().ok())
        .map(|v6| canonical(IpAddr::V6(v6)))
}

/// `RateLimit-Limit`.
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`.
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`: seconds until a slot frees.
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers-09): the budget as a structured
/// field, `"read_anonymous";q=1200;w=60` (quota, window in seconds).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (the same draft): what is left of the budget, `"read_anonymous";r=1187;t=42`
/// (remaining, seconds until a slot frees): the same numbers as the three `RateLimit-*` fields
/// that clients of the earlier drafts read.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// A budget and the name `RateLimit-Policy` and `RateLimit` give it: the suffix of its setting
/// (`read_anonymous` for `STRATA_RATE_LIMIT_READ_ANONYMOUS`), so that a client's report points at
/// the setting.
#[derive(Debug, Clone, Copy)]
struct Policy {
    name: &'static sfv::StringRef,
    limit: RateLimit,
}

impl Policy {
    /// Names `limit`; `name` is checked as a structured-field string at compile time, so it is
    /// given as `sfv::string_ref("…")` in a const.
    const fn new(name: &'static sfv::StringRef, limit: RateLimit) -> Self {
        Self { name, limit }
    }
}

const READ_ANONYMOUS: &sfv::StringRef = sfv::string_ref("read_anonymous");
const READ_USER: &sfv::StringRef = sfv::string_ref("read_user");
const WRITE_ANONYMOUS: &sfv::StringRef = sfv::string_ref("write_anonymous");
const WRITE_USER: &sfv::StringRef = sfv::string_ref("write_user");
const AUTH_IP: &sfv::StringRef = sfv::string_ref("auth_ip");
const AUTH_EMAIL: &sfv::StringRef = sfv::string_ref("auth_email");

/// The budgets of one route group: for anonymous callers (per IP) and authenticated ones (per
/// user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBudget {
    /// Per client IP, when no valid bearer token is sent.
    pub anonymous: RateLimit,
    /// Per user, when a valid bearer token is sent.
    pub user: RateLimit,
}

/// Every budget, by route group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// GET and HEAD.
    pub read: GroupBudget,
    /// POST, PATCH, PUT and DELETE outside `/v1/auth`.
    pub write: GroupBudget,
    /// POST /v1/auth/* per client IP (register, login and refresh hash passwords or rotate
    /// tokens: the stricter budget).
    pub auth_ip: RateLimit,
    /// Register and login per email address, whatever the IP (slows password guessing spread
    /// over many addresses).
    pub auth_email: RateLimit,
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// True when `ip` is inside the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) compare as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let raw = raw.trim();
        let (addr, prefix) = match raw.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (raw, None),
        };
        let addr = canonical(
            addr.parse::<IpAddr>()
                .map_err(|_| format!("{raw:?} is not an IP address or CIDR network"))?,
        );
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{raw:?} has an invalid prefix length"))?,
        };
        Ok(Self { addr, prefix })
    }
}

/// How the edge behaves; from configuration.
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// Whether requests are rate limited at all.
    pub rate_limiting: bool,
    /// With the limiter unreachable: let requests through (true) or refuse them with 503.
    pub fail_open: bool,
    /// The budgets.
    pub budgets: Budgets,
    /// Peers whose `X-Forwarded-For` is believed; from anyone else it is ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// IPv6 clients share one per-IP budget per network of this prefix length (a host is handed
    /// a /64 or more, so a per-/128 budget would be one budget per address it chooses).
    pub ipv6_budget_prefix: u8,
    /// The longest a request may run before it is abandoned with 503.
    pub request_timeout: Duration,
    /// Requests handled at once by this process; beyond it, 503 with Retry-After.
    pub max_in_flight: usize,
    /// Bodies smaller than this are sent uncompressed.
    pub compress_min_bytes: u64,
    /// Admin exports streaming at once; beyond it 503 with Retry-After (each holds a database
    /// connection for a moment per batch, for as long as the client reads).
    pub max_concurrent_exports: usize,
    /// Origins allowed to call the API from a browser (exact `scheme://host[:port]`); empty: none.
    pub cors_origins: Vec<String>,
    /// `Strict-Transport-Security: max-age=…` when set (behind TLS only).
    pub hsts_max_age_secs: Option<u64>,
}

/// The edge's shared state: settings, the limiter and the admission slots.
pub struct Edge {
    settings: EdgeSettings,
    limiter: Arc<dyn RateLimiter>,
    slots: Arc<Semaphore>,
    export_slots: Arc<Semaphore>,
    hsts: Option<HeaderValue>,
}

impl Edge {
    /// The edge with `settings`, counting budgets in `limiter`.
    pub fn new(settings: EdgeSettings, limiter: Arc<dyn RateLimiter>) -> Self {
        let slots = Arc::new(Semaphore::new(settings.max_in_flight.max(1)));
        let export_slots = Arc::new(Semaphore::new(settings.max_concurrent_exports.max(1)));
        let hsts = settings.hsts_max_age_secs.and_then(|age| {
            HeaderValue::from_str(&format!("max-age={age}; includeSubDomains")).ok()
        });
        Self {
            settings,
            limiter,
            slots,
            export_slots,
            hsts,
        }
    }

    /// The `Strict-Transport-Security` value every response carries, when HSTS is configured.
    pub fn hsts(&self) -> Option<&HeaderValue> {
        self.hsts.as_ref()
    }

    /// A slot for one streaming export, held until its body is dropped; 503 when all are taken.
    pub fn export_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.export_slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                ProblemCode::ServiceUnavailable,
                format!(
                    "{} exports are streaming already; retry when one has finished",
                    self.settings.max_concurrent_exports
                ),
            )
            .with_retry_after(5)
        })
    }

    /// The settings.
    pub fn settings(&self) -> &EdgeSettings {
        &self.settings
    }

    /// The client's address: the peer, or — when the peer is a trusted proxy — the first hop of
    /// `X-Forwarded-For`, walked from the right, that is not itself a trusted proxy.
    ///
    /// Only the right end of the chain was written by our proxies; everything left of the first
    /// untrusted hop is whatever the client chose to send. So the walk stops there, and it stops
    /// too at an entry it cannot parse (the client is then the last trusted hop reached: an
    /// address we know rather than one anyone could have written). `Forwarded` (RFC 7239) is not
    /// read: the proxies Strata is deployed behind write `X-Forwarded-For`, and believing two
    /// headers would let a client pick the one a proxy does not overwrite.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = canonical(peer?);
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        let mut client = peer;
        let mut walked = 0;
        'chain: for value in headers.get_all(X_FORWARDED_FOR).rev() {
            let Ok(value) = value.to_str() else { break };
            for entry in value.rsplit(',') {
                walked += 1;
                if walked > MAX_FORWARDED_HOPS {
                    break 'chain;
                }
                let Some(hop) = parse_hop(entry) else {
                    break 'chain;
                };
                client = hop;
                if !self.is_trusted(hop) {
                    break 'chain;
                }
            }
        }
        Some(client)
    }

    /// The key under which a client's per-IP budgets are counted: the address, or for IPv6 its
    /// network of the configured prefix.
    pub fn budget_key(&self, ip: IpAddr) -> String {
        match canonical(ip) {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let prefix = u32::from(self.settings.ipv6_budget_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                let network = std::net::Ipv6Addr::from(u128::from(v6) & mask);
                format!("{network}/{prefix}")
            }
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.settings
            .trusted_proxies
            .iter()
            .any(|net| net.contains(ip))
    }

    /// Counts a request against `key`: `Ok(Some)` with the decision, `Ok(None)` when the limiter
    /// is unreachable and the policy fails open, `Err` (503) when it fails closed.
    async fn count(&self, key: &str, policy: Policy) -> Result<Option<RateDecision>, ApiError> {
        match self.limiter.check(key, policy.limit).await {
            Ok(decision) => Ok(Some(decision)),
            Err(error) if self.settings.fail_open => {
                tracing::warn!(%error, "rate limiter unreachable; letting the request through");
                Ok(None)
            }
            Err(error) => Err(ApiError::unavailable(
                anyhow::Error::new(error).context("rate limiter unreachable"),
            )),
        }
    }

    /// The per-email budget of register and login: `Err` (429) once it is spent.
    ///
    /// Counted under the normalised address, so that `Ada@Example.com ` and `ada@example.com`
    /// share a budget; strings that are not an address at all share one budget between them,
    /// so that a client cannot make a key per request (nor a key of the body's size).
    pub async fn check_email(&self, email: &str) -> Result<Option<RateDecision>, ApiError> {
        if !self.settings.rate_limiting {
            return Ok(None);
        }
        let key = match strata_domain::Email::parse(email) {
            Ok(email) => format!("auth-email:{}", email.as_str()),
            Err(_) => "auth-email-invalid".to_owned(),
        };
        let policy = Policy::new(AUTH_EMAIL, self.settings.budgets.auth_email);
        let decision = self.count(&key, policy).await?;
        match decision {
            Some(decision) if !decision.allowed => {
                count_rejection("auth_email");
                Err(rate_limited(&decision, policy))
            }
            other => Ok(other),
        }
    }
}

/// The CORS policy: the configured origins only, with the methods and headers the API uses, and
/// the headers a client needs to read exposed.
pub fn cors(origins: &[String]) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allowed_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
        ])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static(request_id::HEADER),
        ])
        .expose_headers([
            header::ETAG,
            header::LOCATION,
            header::RETRY_AFTER,
            RATELIMIT_LIMIT,
            RATELIMIT_REMAINING,
            RATELIMIT_RESET,
            RATELIMIT_POLICY,
            RATELIMIT,
            HeaderName::from_static(request_id::HEADER),
            HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// The path as the router matches it: percent-decoded except `%2F`, `%25` and `%2B` (which would
/// change the path's segments). Every decision the edge makes about a path is made on this, never
/// on the raw request line, so that `/%761/auth/login` is `/v1/auth/login` here as it is there.
fn routed_path(req: &ServiceRequest) -> &str {
    req.match_info().as_str()
}

/// True for the liveness and readiness probes and the deep health check, which are never shed nor
/// limited: a probe refused under load reads as a dead instance, and its restart would make the
/// overload worse; a deep check refused under load would page someone about the wrong thing.
fn is_probe(path: &str) -> bool {
    path == "/health/live" || path == "/health/ready" || path == "/health"
}

/// Which budget a request spends, if any, from its method and its routed path.
///
/// Only operator paths are free (probes, the OpenAPI document and its viewer, problem pages);
/// every other path spends a budget, one the router does not know included, so that probing for
/// routes costs what calling them does. The router is exact: a path that differs from a route
/// by case, a doubled or trailing slash, a `.` or `..` segment or an encoded `/` matches no route
/// (404) and spends the budget of the group its method and prefix put it in.
fn route_group(method: &Method, path: &str) -> Option<Group> {
    if *method == Method::OPTIONS || is_free(path) {
        return None;
    }
    if *method == Method::POST && path.starts_with("/v1/auth/") && path != "/v1/auth/logout" {
        return Some(Group::Auth);
    }
    if *method == Method::GET || *method == Method::HEAD {
        Some(Group::Read)
    } else {
        Some(Group::Write)
    }
}

/// Paths for probes and operators, never limited.
fn is_free(path: &str) -> bool {
    is_probe(path)
        || path == "/openapi.json"
        || path == "/docs"
        || path.starts_with("/docs/")
        || path.starts_with("/problems/")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Read,
    Write,
    Auth,
}

impl Group {
    /// The `group` label of [`RATE_LIMIT_REJECTIONS_TOTAL`].
    fn label(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Auth => "auth",
        }
    }
}

fn count_rejection(group: &'static str) {
    metrics::counter!(RATE_LIMIT_REJECTIONS_TOTAL, "group" => group).increment(1);
}

/// Counts a request in [`REQUESTS_IN_FLIGHT`] for as long as it lives, so that a request dropped
/// half-way (a client gone, the request timeout) stops counting too.
struct InFlight;

thread_local! {
    /// The gauge's handle, looked up once per worker thread rather than twice per request.
    static IN_FLIGHT: metrics::Gauge = metrics::gauge!(REQUESTS_IN_FLIGHT);
}

impl InFlight {
    fn enter() -> Self {
        IN_FLIGHT.with(|gauge| gauge.increment(1.0));
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.with(|gauge| gauge.decrement(1.0));
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// 429 with `Retry-After` and the budget headers.
fn rate_limited(decision: &RateDecision, policy: Policy) -> ApiError {
    ApiError::rate_limited(ceil_secs(decision.reset_after).max(1))
        .with_rate_limit(rate_limit_headers(decision, policy))
}

fn ceil_secs(duration: Duration) -> u64 {
    duration.as_micros().div_ceil(1_000_000) as u64
}

/// The three fields of the earlier drafts, then `RateLimit-Policy` and `RateLimit` of the
/// current one, all from the same numbers.
fn rate_limit_headers(decision: &RateDecision, policy: Policy) -> [(HeaderName, HeaderValue); 5] {
    let reset = ceil_secs(decision.reset_after);
    let quota_policy = sfv::ItemSerializer::new()
        .bare_item(policy.name)
        .parameter(sfv::key_ref("q"), policy.limit.limit)
        .parameter(
            sfv::key_ref("w"),
            sf_integer(ceil_secs(policy.limit.window)),
        )
        .finish();
    let service_limit = sfv::ItemSerializer::new()
        .bare_item(policy.name)
        .parameter(sfv::key_ref("r"), decision.remaining)
        .parameter(sfv::key_ref("t"), sf_integer(reset))
        .finish();
    [
        (RATELIMIT_LIMIT, HeaderValue::from(decision.limit)),
        (RATELIMIT_REMAINING, HeaderValue::from(decision.remaining)),
        (RATELIMIT_RESET, HeaderValue::from(reset)),
        (RATELIMIT_POLICY, structured(quota_policy)),
        (RATELIMIT, structured(service_limit)),
    ]
}

/// `seconds` as a structured-field integer (at most 15 digits: some 31 million years, so the cap
/// is never reached by a window or a reset).
fn sf_integer(seconds: u64) -> sfv::Integer {
    sfv::Integer::try_from(seconds).unwrap_or(sfv::Integer::MAX)
}

/// A serialised structured field as a header value.
fn structured(serialized: String) -> HeaderValue {
    // A serialiser writes visible ASCII only, which every header value accepts.
    HeaderValue::try_from(serialized).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn edge_of(req: &ServiceRequest) -> Option<(Arc<Edge>, web::Data<AppState>)> {
    let state = req.app_data::<web::Data<AppState>>()?.clone();
    Some((state.edge.clone(), state))
}

/// The layers between the compressor and the routes, in the order of the module docs — the
/// small-body marker, admission, rate limiting, the request timeout — as one middleware: one boxed
/// future per request instead of four.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some((edge, state)) = edge_of(&req) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let mut response = admit(req, next, &edge, &state).await?;
    mark_small_bodies(&mut response, edge.settings.compress_min_bytes);
    Ok(response)
}

/// Refuses a request with 503 when `max_in_flight` requests are being handled already, rather
/// than queueing it until everything is slow.
async fn admit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    edge: &Edge,
    state: &AppState,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if is_probe(routed_path(&req)) {
        return deadline(req, next, edge).await;
    }
    let Ok(_slot) = edge.slots.clone().try_acquire_owned() else {
        let error = ApiError::overloaded();
        return Ok(req.into_response(error.error_response()));
    };
    let _in_flight = InFlight::enter();
    rate_limit(req, next, edge, state).await
}

/// Spends the request's budget (per user with a valid token, else per client IP) and adds the
/// `RateLimit-*` headers to the response; 429 with `Retry-After` once the budget is spent.
async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    edge: &Edge,
    state: &AppState,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let group = route_group(req.method(), routed_path(&req));
    let (Some(group), true) = (group, edge.settings.rate_limiting) else {
        return deadline(req, next, edge).await;
    };
    let budgets = edge.settings.budgets;
    let user = bearer(req.headers()).and_then(|token| state.auth.token_subject(token));
    let ip = edge.client_ip(req.peer_addr().map(|a| a.ip()), req.headers());
    let ip = ip.map_or_else(|| "unknown".to_owned(), |ip| edge.budget_key(ip));
    let (key, policy) = match (group, user) {
        (Group::Auth, _) => (
            format!("auth:ip:{ip}"),
            Policy::new(AUTH_IP, budgets.auth_ip),
        ),
        (Group::Read, Some(user)) => (
            format!("read:user:{user}"),
            Policy::new(READ_USER, budgets.read.user),
        ),
        (Group::Read, None) => (
            format!("read:ip:{ip}"),
            Policy::new(READ_ANONYMOUS, budgets.read.anonymous),
        ),
        (Group::Write, Some(user)) => (
            format!("write:user:{user}"),
            Policy::new(WRITE_USER, budgets.write.user),
        ),
        (Group::Write, None) => (
            format!("write:ip:{ip}"),
            Policy::new(WRITE_ANONYMOUS, budgets.write.anonymous),
        ),
    };
    let decision = match edge.count(&key, policy).await {
        Ok(decision) => decision,
        Err(error) => return Ok(req.into_response(error.error_response())),
    };
    match decision {
        Some(decision) if !decision.allowed => {
            tracing::info!(%key, "rate limited");
            count_rejection(group.label());
            Ok(req.into_response(rate_limited(&decision, policy).error_response()))
        }
        Some(decision) => {
            let mut response = deadline(req, next, edge).await?;
            for (name, value) in rate_limit_headers(&decision, policy) {
                // A handler's own, stricter budget (per email) wins.
                if !response.headers().contains_key(&name) {
                    response.headers_mut().insert(name, value);
                }
            }
            Ok(response)
        }
        None => deadline(req, next, edge).await,
    }
}

/// Abandons a request that runs longer than the request timeout: the handler's future is dropped
/// (its work stops at the next await) and the client gets 503 with Retry-After.
///
/// The timer is armed only if the request does not finish on its first poll: one answered from
/// memory (a cached product) never waits, and a timer per request was 3 % of its time. The
/// deadline still counts from the request's arrival.
async fn deadline(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    edge: &Edge,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let timeout = edge.settings.request_timeout;
    let arrived = tokio::time::Instant::now();
    let mut call = std::pin::pin!(next.call(req));
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let finished = std::future::poll_fn(|cx| {
        if let Poll::Ready(response) = call.as_mut().poll(cx) {
            return Poll::Ready(Some(response));
        }
        let timer =
            timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(arrived + timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    match finished {
        Some(response) => response.map(ServiceResponse::map_into_boxed_body),
        None => {
            // The request was moved into the abandoned future, so the error carries what the
            // outer layers would otherwise add themselves.
            let mut error = ApiError::new(
                ProblemCode::ServiceUnavailable,
                format!(
                    "the request took longer than {} ms and was abandoned; retry later",
                    timeout.as_millis()
                ),
            )
            .with_retry_after(1);
            if let Some(id) = request_id::current() {
                error = error.with_request_id(id);
            }
            Err(error.into())
        }
    }
}

/// Keeps small bodies out of the compressor: a body under the threshold is marked
/// `Content-Encoding: identity` (which the compressor leaves alone); `observe` removes the marker.
fn mark_small_bodies(response: &mut ServiceResponse<BoxBody>, threshold: u64) {
    let small = match response.response().body().size() {
        BodySize::Sized(size) => size < threshold,
        BodySize::None => true,
        BodySize::Stream => false,
    };
    if small && !response.headers().contains_key(header::CONTENT_ENCODING) {
        response.headers_mut().insert(
            header::CONTENT_ENCODING,
            const { HeaderValue::from_static("identity") },
        );
    }
}

/// Removes the `identity` marker of the small-body marker before the response leaves.
pub fn unmark_identity(headers: &mut HeaderMap) {
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v == "identity")
    {
        headers.remove(header::CONTENT_ENCODING);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(trusted: &[&str]) -> Edge {
        let limit = RateLimit {
            limit: 1,
            window: Duration::from_secs(1),
        };
        let group = GroupBudget {
            anonymous: limit,
            user: limit,
        };
        Edge::new(
            EdgeSettings {
                rate_limiting: true,
                fail_open: true,
                budgets: Budgets {
                    read: group,
                    write: group,
                    auth_ip: limit,
                    auth_email: limit,
                },
                trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
                ipv6_budget_prefix: 64,
                request_timeout: Duration::from_secs(1),
                max_in_flight: 1,
                max_concurrent_exports: 1,
                compress_min_bytes: 0,
                cors_origins: Vec::new(),
                hsts_max_age_secs: None,
            },
            Arc::new(strata_ports::MockRateLimiter::new()),
        )
    }

    #[test]
    fn the_draft_s_fields_carry_the_numbers_of_the_earlier_drafts_fields() {
        let policy = Policy::new(
            READ_USER,
            RateLimit {
                limit: 100,
                window: Duration::from_secs(60),
            },
        );
        let decision = RateDecision {
            allowed: false,
            limit: 100,
            remaining: 0,
            reset_after: Duration::from_millis(29_001),
        };
        let headers = rate_limit_headers(&decision, policy);
        let field = |name: HeaderName| {
            headers
                .iter()
                .find(|(header, _)| *header == name)
                .map(|(_, value)| value.to_str().unwrap().to_owned())
                .unwrap()
        };
        assert_eq!(field(RATELIMIT_LIMIT), "100");
        assert_eq!(field(RATELIMIT_REMAINING), "0");
        assert_eq!(field(RATELIMIT_RESET), "30");
        assert_eq!(field(RATELIMIT_POLICY), r#""read_user";q=100;w=60"#);
        assert_eq!(field(RATELIMIT), r#""read_user";r=0;t=30"#);
        // Each is a list of one item to a structured-field parser.
        for name in [RATELIMIT_POLICY, RATELIMIT] {
            let list: sfv::List = sfv::Parser::new(&field(name.clone())).parse().unwrap();
            assert_eq!(list.len(), 1, "{name}");
        }
    }

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-forwarded-for"),
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let untrusting = edge(&[]);
        let headers = forwarded("203.0.113.9");
        assert_eq!(
            untrusting.client_ip(Some(ip("198.51.100.1")), &headers),
            Some(ip("198.51.100.1"))
        );
        let trusting = edge(&["10.0.0.0/8"]);
        assert_eq!(
            trusting.client_ip(Some(ip("10.1.2.3")), &headers),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            trusting.client_ip(Some(ip("198.51.100.1")), &headers),
            Some(ip("198.51.100.1")),
            "a client cannot claim another address by sending the header itself"
        );
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let trusting = edge(&["10.0.0.0/8", "::1"]);
        // The client forged a first entry; our proxies appended the real one, then themselves.
        let headers = forwarded("1.2.3.4, 203.0.113.9, 10.0.0.7");
        assert_eq!(
            trusting.client_ip(Some(ip("10.0.0.2")), &headers),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            trusting.client_ip(Some(ip("::1")), &forwarded("10.0.0.5")),
            Some(ip("10.0.0.5")),
            "all hops trusted: the furthest one"
        );
        assert_eq!(
            trusting.client_ip(Some(ip("::ffff:10.0.0.2")), &forwarded("203.0.113.9")),
            Some(ip("203.0.113.9")),
            "IPv4-mapped peers match IPv4 networks"
        );
    }

    #[test]
    fn networks_parse_and_match() {
        let net: IpNet = "192.168.0.0/16".parse().unwrap();
        assert!(net.contains(ip("192.168.40.1")));
        assert!(!net.contains(ip("192.169.0.1")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let six: IpNet = "fd00::/8".parse().unwrap();
        assert!(six.contains(ip("fd12::1")));
        assert!(!six.contains(ip("10.0.0.1")));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nonsense".parse::<IpNet>().is_err());
    }

    #[test]
    fn routes_fall_into_groups_by_their_routed_path_and_operator_paths_are_free() {
        // (method, routed path, group)
        let cases = [
            (Method::GET, "/v1/products", Some(Group::Read)),
            (Method::HEAD, "/v1/products", Some(Group::Read)),
            (Method::POST, "/v1/orders", Some(Group::Write)),
            (Method::PUT, "/v1/orders", Some(Group::Write)),
            (Method::POST, "/v1/auth/login", Some(Group::Auth)),
            (Method::POST, "/v1/auth/logout", Some(Group::Write)),
            (Method::POST, "/v1/auth/login/", Some(Group::Auth)),
            (Method::POST, "/v1/auth%2Flogin", Some(Group::Write)),
            (Method::POST, "/V1/auth/login", Some(Group::Write)),
            (Method::GET, "/nowhere", Some(Group::Read)),
            (Method::GET, "/metrics", Some(Group::Read)),
            (Method::GET, "/health/ready", None),
            (Method::GET, "/health/live", None),
            (Method::GET, "/health", None),
            (Method::GET, "/health/", Some(Group::Read)),
            (Method::GET, "/openapi.json", None),
            (Method::GET, "/docs/", None),
            (Method::GET, "/problems/not-found", None),
            (Method::OPTIONS, "/v1/products", None),
        ];
        for (method, path, group) in cases {
            assert_eq!(route_group(&method, path), group, "{method} {path}");
        }
    }

    #[test]
    fn the_walk_stops_at_the_first_untrusted_or_unreadable_hop_from_the_right() {
        let trusting = edge(&["10.0.0.0/8", "fd00::/8"]);
        let peer = Some(ip("10.0.0.1"));
        // (X-Forwarded-For, client)
        let cases = [
            ("198.51.100.7, -, 203.0.113.9", "203.0.113.9"),
            ("198.51.100.7, -, 10.0.0.9", "10.0.0.9"),
            ("198.51.100.7, unknown, 10.0.0.9", "10.0.0.9"),
            ("198.51.100.7,,10.0.0.9", "10.0.0.9"),
            ("198.51.100.7, 203.0.113.9:4711", "203.0.113.9"),
            ("198.51.100.7, [2001:db8::1]:443", "2001:db8::1"),
            ("198.51.100.7, [2001:db8::1]", "2001:db8::1"),
            ("203.0.113.9, fd00::1, 10.0.0.3", "203.0.113.9"),
            ("", "10.0.0.1"),
            ("garbage", "10.0.0.1"),
            ("1.2.3.4 5.6.7.8", "10.0.0.1"),
        ];
        for (chain, client) in cases {
            assert_eq!(
                trusting.client_ip(peer, &forwarded(chain)),
                Some(ip(client)),
                "X-Forwarded-For: {chain}"
            );
        }
    }

    #[test]
    fn several_forwarded_headers_read_as_one_chain_and_a_padded_chain_is_cut() {
        let trusting = edge(&["10.0.0.0/8"]);
        let mut headers = HeaderMap::new();
        for value in ["198.51.100.7", "203.0.113.9, 10.0.0.5"] {
            headers.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        assert_eq!(
            trusting.client_ip(Some(ip("10.0.0.1")), &headers),
            Some(ip("203.0.113.9"))
        );
        let padded = format!("198.51.100.7, {}", vec!["10.0.0.9"; 100].join(", "));
        assert_eq!(
            trusting.client_ip(Some(ip("10.0.0.1")), &forwarded(&padded)),
            Some(ip("10.0.0.9")),
            "a chain longer than any deployment is not walked to its forged end"
        );
        let mut raw = HeaderMap::new();
        raw.insert(
            HeaderName::from_static("x-forwarded-for"),
            HeaderValue::from_bytes(b"198.51.100.7, \xff").unwrap(),
        );
        assert_eq!(
            trusting.client_ip(Some(ip("10.0.0.1")), &raw),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_network_of_the_configured_prefix() {
        let mut edge = edge(&[]);
        assert_eq!(
            edge.budget_key(ip("2001:db8:1:2:3:4:5:6")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            edge.budget_key(ip("2001:db8:1:2:ffff::1")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(edge.budget_key(ip("203.0.113.9")), "203.0.113.9");
        assert_eq!(edge.budget_key(ip("::ffff:203.0.113.9")), "203.0.113.9");
        edge.settings.ipv6_budget_prefix = 128;
        assert_eq!(edge.budget_key(ip("2001:db8::6")), "2001:db8::6/128");
        edge.settings.ipv6_budget_prefix = 48;
        assert_eq!(edge.budget_key(ip("2001:db8:1:2::6")), "2001:db8:1::/48");
    }
}
