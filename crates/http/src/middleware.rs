//! The outer request middleware: request id, tracing span, one access-log line, panic containment,
//! the request metrics, and the response headers every answer carries (security headers, HSTS
//! when configured, the docs pages' own CSP).
//!
//! Metric labels are bounded: `route` is the matched route template (`/v1/products/{id}`), never
//! the raw path, with every unmatched path under [`UNMATCHED_ROUTE`]; `method` is a standard
//! method or `OTHER`, since actix accepts any token as a method.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ResourceMap, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError};
use futures_util::FutureExt;
use strata_domain::UserId;
use tracing::Instrument;

use crate::headers::apply_security_headers;
use crate::problem::{ApiError, ProblemCode};
use crate::request_id;
use crate::trace;

/// Requests answered, by `method`, `route` and `status`.
pub const REQUESTS_TOTAL: &str = "http_requests_total";
/// Request latency in seconds, by `method` and `route`.
pub const REQUEST_DURATION_SECONDS: &str = "http_request_duration_seconds";
/// The `route` of a request that matched no route (logs and metrics).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Marks the request's authenticated user, for the access log.
#[derive(Debug, Clone, Copy)]
pub struct AuthenticatedUser(pub UserId);

/// Wraps every request: see the module docs. A panicking handler becomes a 500 problem response
/// and an error-level log line, and the worker goes on serving. `hsts` is the
/// `Strict-Transport-Security` value every response carries, when configured.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    hsts: Option<HeaderValue>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let docs = crate::headers::is_docs(req.path());
    // CORS response headers are read by browsers only, and a browser always sends Origin.
    let cross_origin = req.headers().contains_key(header::ORIGIN);
    let id = request_id::from_headers(req.headers());
    let method_label = method_label(req.method());
    // The route is named once the request has been routed (actix then knows the resource without
    // matching the path again: a second match was a fifth of a cached read's instructions). A
    // request that never comes back (timed out, panicked) is named from the path.
    remember_routes(req.request().resource_map());
    let uri = req.uri().clone();
    let empty = tracing::field::Empty;
    // OpenTelemetry's HTTP server conventions; `otel.name` is the name until the route is known
    // (then `{method} {route}`), and `method`/`route` are the log's own names for the same facts.
    let span = tracing::info_span!(
        "request",
        otel.name = semconv_name(method_label),
        otel.kind = "server",
        otel.status_code = empty,
        http.request.method = semconv_method(method_label),
        http.route = empty,
        http.response.status_code = empty,
        url.path = req.path(),
        url.scheme = if req.app_config().secure() { "https" } else { "http" },
        client.address = empty,
        error.type = empty,
        request_id = %id,
        method = req.method().as_str(),
        route = empty,
        user_id = empty,
    );
    if let Some(state) = req.app_data::<actix_web::web::Data<crate::AppState>>()
        && let Some(client) = state
            .edge
            .client_ip(req.peer_addr().map(|peer| peer.ip()), req.headers())
    {
        span.record("client.address", tracing::field::display(client));
    }
    let request_trace = trace::continue_trace(&span, trace::from_headers(req.headers()));
    let outcome = request_id::scope(
        id.clone(),
        trace::scope(
            request_trace,
            AssertUnwindSafe(next.call(req))
                .catch_unwind()
                .instrument(span.clone()),
        ),
    )
    .await;
    let mut response = match outcome {
        Ok(Ok(response)) => response.map_into_boxed_body(),
        Ok(Err(error)) => {
            // A layer that had to give up the request (the request timeout) returns its answer
            // as an error; only a 5xx other than 503 is a failure worth an error line.
            let route = route_of_path(uri.path());
            let status = error.as_response_error().status_code();
            record_outcome(&span, method_label, &route, status);
            record_request(method_label, &route, status.as_u16(), started.elapsed());
            if status == StatusCode::SERVICE_UNAVAILABLE || !status.is_server_error() {
                let _entered = span.enter();
                let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
                tracing::warn!(status = status.as_u16(), latency_ms, cause = %error, "request abandoned");
            } else {
                log_failure(&span, started, &format!("{error}"));
            }
            return Err(error);
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            let route = route_of_path(uri.path());
            record_outcome(
                &span,
                method_label,
                &route,
                StatusCode::INTERNAL_SERVER_ERROR,
            );
            record_request(method_label, &route, 500, started.elapsed());
            log_failure(&span, started, &format!("handler panicked: {message}"));
            // The request went down with the handler, so no response can be built around it here;
            // actix renders this error, with the request id it carries.
            return Err(
                ApiError::internal(anyhow::anyhow!("handler panicked: {message}"))
                    .with_request_id(id)
                    .into(),
            );
        }
    };
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    if response.status().as_u16() >= 400 && !response.headers().contains_key(header::CONTENT_TYPE) {
        response = request_id::scope(id.clone(), async { as_problem(response) }).await;
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(request_id::HEADER_NAME, value);
    }
    let docs_page = docs && response.status().is_success();
    let headers = response.headers_mut();
    apply_security_headers(headers);
    if docs_page {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            const { HeaderValue::from_static(crate::headers::DOCS_CSP) },
        );
    }
    if let Some(hsts) = hsts {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts);
    }
    if !cross_origin {
        headers.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
    }
    crate::edge::unmark_identity(headers);
    // After the problem rewrite above, so that the span has the status the client sees.
    record_outcome(&span, method_label, &route, response.status());
    record_request(
        method_label,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    log_access(&span, &response, started);
    Ok(response)
}

thread_local! {
    /// This worker's routes (the address of the app's map, and a handle on it), to name the route
    /// of a request whose response never came back and so cannot name it itself.
    static ROUTES: std::cell::RefCell<Option<(usize, ResourceMap)>> =
        const { std::cell::RefCell::new(None) };
}

/// Keeps a handle on `map` for [`route_of_path`]; a pointer comparison once it is known.
fn remember_routes(map: &ResourceMap) {
    let address = std::ptr::from_ref(map) as usize;
    ROUTES.with_borrow_mut(|routes| {
        if routes.as_ref().is_none_or(|(known, _)| *known != address) {
            // A clone shares the map's nodes, so the patterns it finds are the app's own.
            *routes = Some((address, map.clone()));
        }
    });
}

/// The route template matching `path`, by matching it against this worker's routes.
fn route_of_path(path: &str) -> String {
    ROUTES
        .with_borrow(|routes| routes.as_ref().and_then(|(_, map)| map.match_pattern(path)))
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned())
}

/// The `method` label: the standard methods by name, anything else as `OTHER`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// `http.request.method`: a standard method by name, anything else as `_OTHER`.
fn semconv_method(label: &'static str) -> &'static str {
    if label == "OTHER" { "_OTHER" } else { label }
}

/// The span's name before (or without) a matched route: the method, or `HTTP` for one that is
/// not standard.
fn semconv_name(label: &'static str) -> &'static str {
    if label == "OTHER" { "HTTP" } else { label }
}

/// Records the request's outcome on its span, by the HTTP server conventions: the route template
/// (and the span's name, `GET /v1/products/{id}`, when a route matched), the status, and an error
/// status for a 5xx, the only answers that are the server's failure.
fn record_outcome(span: &tracing::Span, method: &'static str, route: &str, status: StatusCode) {
    span.record("route", route);
    // As i64: the OpenTelemetry layer records an unsigned field as text.
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if route != UNMATCHED_ROUTE {
        span.record("http.route", route);
        trace::rename(span, || format!("{} {route}", semconv_name(method)));
    }
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", status.as_str());
    }
}

/// The request metrics of one method and status on one route.
struct RouteMetrics {
    method: &'static str,
    status: u16,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

thread_local! {
    /// Handles registered once per worker thread and series: a request then records without the
    /// registry's lookup (label allocation and hashing). Bounded like the labels themselves.
    static ROUTE_METRICS: std::cell::RefCell<
        std::collections::HashMap<Box<str>, Vec<RouteMetrics>, foldhash::fast::RandomState>,
    > = std::cell::RefCell::default();
}

/// Counts one answered request and records its latency.
fn record_request(method: &'static str, route: &str, status: u16, elapsed: Duration) {
    ROUTE_METRICS.with_borrow_mut(|routes| {
        if !routes.contains_key(route) {
            routes.insert(route.into(), Vec::new());
        }
        let Some(series) = routes.get_mut(route) else {
            return;
        };
        let index = match series
            .iter()
            .position(|m| m.method == method && m.status == status)
        {
            Some(index) => index,
            None => {
                series.push(RouteMetrics {
                    method,
                    status,
                    requests: metrics::counter!(
                        REQUESTS_TOTAL,
                        "method" => method,
                        "route" => route.to_owned(),
                        "status" => status.to_string(),
                    ),
                    duration: metrics::histogram!(
                        REQUEST_DURATION_SECONDS,
                        "method" => method,
                        "route" => route.to_owned(),
                    ),
                });
                series.len() - 1
            }
        };
        let metrics = &series[index];
        metrics.requests.increment(1);
        metrics.duration.record(elapsed.as_secs_f64());
    });
}

fn log_failure(span: &tracing::Span, started: Instant, cause: &str) {
    let _entered = span.enter();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::error!(status = 500u16, latency_ms, %cause, "request failed: internal error");
}

/// Gives a body to the bare error responses actix produces itself (405 from a resource with no
/// route for the method, and the like), so that every error is problem+json. The bare response's
/// own headers stay: actix's 405 carries `Allow`, listing the methods the resource's routes were
/// registered with, and the layers inside this one (CORS, rate limits) have added theirs.
fn as_problem(response: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let code = match response.status() {
        StatusCode::NOT_FOUND => ProblemCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ProblemCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ProblemCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ProblemCode::UnsupportedMediaType,
        StatusCode::BAD_REQUEST => ProblemCode::MalformedJson,
        StatusCode::SERVICE_UNAVAILABLE => ProblemCode::ServiceUnavailable,
        status if status.is_server_error() => ProblemCode::Internal,
        _ => return response,
    };
    let detail = match code {
        ProblemCode::MethodNotAllowed => format!(
            "{} is not allowed on this resource",
            response.request().method()
        ),
        _ => code.describe().2.to_owned(),
    };
    let (request, bare) = response.into_parts();
    let mut problem = ApiError::new(code, detail).error_response();
    let own: Vec<HeaderName> = problem.headers().keys().cloned().collect();
    for (name, value) in bare.headers() {
        // The body is replaced, so what described the old one goes with it.
        let describes_body = [
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
            header::TRANSFER_ENCODING,
        ]
        .contains(name);
        if !describes_body && !own.contains(name) {
            problem.headers_mut().append(name.clone(), value.clone());
        }
    }
    ServiceResponse::new(request, problem)
}

fn log_access(span: &tracing::Span, response: &ServiceResponse<BoxBody>, started: Instant) {
    let _entered = span.enter();
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let user_id = response
        .request()
        .extensions()
        .get::<AuthenticatedUser>()
        .map(|user| user.0.to_string());
    let user_id = user_id.as_deref();
    let api_error = response
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>());
    match api_error {
        Some(error) if error.code() == ProblemCode::Internal => {
            let cause = error.cause().map(|c| format!("{c:#}")).unwrap_or_default();
            tracing::error!(status, latency_ms, user_id, %cause, "request failed: internal error");
        }
        Some(error) if error.code() == ProblemCode::ServiceUnavailable => {
            let cause = error.cause().map(|c| format!("{c:#}")).unwrap_or_default();
            tracing::warn!(status, latency_ms, user_id, %cause, "request failed: dependency unavailable");
        }
        Some(error) => {
            tracing::info!(
                status,
                latency_ms,
                user_id,
                code = error.code().as_str(),
                "request completed"
            );
        }
        None => tracing::info!(status, latency_ms, user_id, "request completed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_keep_their_name_and_invented_ones_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        for invented in ["FOO", "BREW", "X-ANYTHING-1234"] {
            let method = Method::from_bytes(invented.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "OTHER");
        }
    }
}
