//! The outer request middleware: request id, tracing span, one access-log line, panic containment.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError};
use futures_util::FutureExt;
use strata_domain::UserId;
use tracing::Instrument;

use crate::problem::{ApiError, ProblemCode};
use crate::request_id;

/// Marks the request's authenticated user, for the access log.
#[derive(Debug, Clone, Copy)]
pub struct AuthenticatedUser(pub UserId);

/// Wraps every request: see the module docs. A panicking handler becomes a 500 problem response
/// and an error-level log line, and the worker goes on serving.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id::from_headers(req.headers());
    let method = req.method().to_string();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!("request", request_id = %id, %method, %route, user_id = tracing::field::Empty);

    let outcome = request_id::scope(
        id.clone(),
        AssertUnwindSafe(next.call(req))
            .catch_unwind()
            .instrument(span.clone()),
    )
    .await;
    let mut response = match outcome {
        Ok(Ok(response)) => response.map_into_boxed_body(),
        Ok(Err(error)) => {
            log_failure(&span, started, &format!("{error}"));
            return Err(error);
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
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
    if response.status().as_u16() >= 400 && !response.headers().contains_key(header::CONTENT_TYPE) {
        response = request_id::scope(id.clone(), async { as_problem(response) }).await;
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(request_id::HEADER), value);
    }
    apply_security_headers(response.headers_mut());
    log_access(&span, &response, started);
    Ok(response)
}

/// The security headers of SPEC §3, set on every response.
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("cross-origin-resource-policy", "same-origin"),
];

/// Sets [`SECURITY_HEADERS`] on `headers`.
pub fn apply_security_headers(headers: &mut HeaderMap) {
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
}

fn log_failure(span: &tracing::Span, started: Instant, cause: &str) {
    let _entered = span.enter();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::error!(status = 500u16, latency_ms, %cause, "request failed: internal error");
}

/// Gives a body to the bare error responses actix produces itself (405 from a resource with no
/// route for the method, and the like), so that every error is problem+json.
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
    let (request, _) = response.into_parts();
    ServiceResponse::new(request, ApiError::new(code, detail).error_response())
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
