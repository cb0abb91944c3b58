//! The error catalogue and its one mapping to RFC 9457 `application/problem+json`.
//!
//! Every error a client can see is an [`ApiError`] carrying a [`ProblemCode`]; each code fixes the
//! status, title and `type` URI, so a code means the same thing on every endpoint. Operational
//! errors (bad input, not found, conflicts, limits) are logged at info level; `INTERNAL` is a
//! programmer error, logged at error level with its cause chain and the request id, and its body
//! says nothing of the cause.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use strata_domain::{FieldError, ValidationErrors};
use strata_services::{
    AuthError, BillingError, CatalogError, DashboardError, ExportError, Failure, OrderError,
    ReportError, UserError,
};

use crate::request_id;

/// Declares the enum and its `ALL` array from one list of variants, so that no code can be added
/// without being listed (the document, the problem pages and the tests all walk `ALL`).
macro_rules! listed_enum {
    (
        $(#[$attribute:meta])*
        $visibility:vis enum $name:ident {
            $($(#[$variant_attribute:meta])* $variant:ident,)+
        }
    ) => {
        $(#[$attribute])*
        $visibility enum $name {
            $($(#[$variant_attribute])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order, for documentation and tests.
            pub const ALL: [$name; [$(stringify!($variant)),+].len()] = [$($name::$variant),+];
        }
    };
}

listed_enum! {
    /// The stable codes of SPEC §3, plus `METHOD_NOT_ALLOWED`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum ProblemCode {
        /// 422: one or more fields are invalid; `errors` lists each.
        ValidationFailed,
        /// 400: the body is not well-formed JSON.
        MalformedJson,
        /// 415: the body is not `application/json`.
        UnsupportedMediaType,
        /// 413: the body exceeds the limit (64 KiB).
        PayloadTooLarge,
        /// 401: no valid credentials.
        Unauthenticated,
        /// 401: the access or refresh token has expired.
        TokenExpired,
        /// 401: the token was revoked (logout, reuse of a rotated refresh token).
        TokenRevoked,
        /// 403: authenticated, but not allowed.
        Forbidden,
        /// 404: no such resource (or not yours).
        NotFound,
        /// 405: the resource exists but not with this method.
        MethodNotAllowed,
        /// 409: the email is registered already.
        EmailTaken,
        /// 409: the SKU is used already.
        SkuTaken,
        /// 409: the request conflicts with the resource's state.
        Conflict,
        /// 409: not enough stock for some order lines.
        InsufficientStock,
        /// 409: the status change is not allowed from the current status.
        InvalidTransition,
        /// 422: an Idempotency-Key was reused with another request body.
        IdempotencyKeyReused,
        /// 429: over the rate limit; see Retry-After.
        RateLimited,
        /// 503: a dependency is down or the server is overloaded; see Retry-After.
        ServiceUnavailable,
        /// 500: a bug; details are in the server log under the request id.
        Internal,
    }
}

impl ProblemCode {
    /// Status, stable code and title.
    pub fn describe(self) -> (StatusCode, &'static str, &'static str) {
        use ProblemCode as P;
        match self {
            P::ValidationFailed => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_FAILED",
                "Validation failed",
            ),
            P::MalformedJson => (StatusCode::BAD_REQUEST, "MALFORMED_JSON", "Malformed JSON"),
            P::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "Unsupported media type",
            ),
            P::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "Payload too large",
            ),
            P::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Authentication required",
            ),
            P::TokenExpired => (StatusCode::UNAUTHORIZED, "TOKEN_EXPIRED", "Token expired"),
            P::TokenRevoked => (StatusCode::UNAUTHORIZED, "TOKEN_REVOKED", "Token revoked"),
            P::Forbidden => (StatusCode::FORBIDDEN, "FORBIDDEN", "Forbidden"),
            P::NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND", "Not found"),
            P::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "Method not allowed",
            ),
            P::EmailTaken => (
                StatusCode::CONFLICT,
                "EMAIL_TAKEN",
                "Email already registered",
            ),
            P::SkuTaken => (StatusCode::CONFLICT, "SKU_TAKEN", "SKU already in use"),
            P::Conflict => (StatusCode::CONFLICT, "CONFLICT", "Conflict"),
            P::InsufficientStock => (
                StatusCode::CONFLICT,
                "INSUFFICIENT_STOCK",
                "Insufficient stock",
            ),
            P::InvalidTransition => (
                StatusCode::CONFLICT,
                "INVALID_TRANSITION",
                "Invalid status transition",
            ),
            P::IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                "Idempotency key reused",
            ),
            P::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "Too many requests",
            ),
            P::ServiceUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                "Service unavailable",
            ),
            P::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "Internal server error",
            ),
        }
    }

    /// What the code means and what a client should do about it: the text of its page at
    /// [`ProblemCode::type_uri`].
    pub fn explanation(self) -> &'static str {
        use ProblemCode as P;
        match self {
            P::ValidationFailed => {
                "One or more inputs are invalid. `errors` lists every offending field with a stable \
                 `code` (such as `required`, `too_long`, `invalid_email`, `out_of_range`) and a message. \
                 Fix them all and send the request again."
            }
            P::MalformedJson => {
                "The body is not well-formed JSON (a syntax error or a truncated body). Nothing was \
                 done. Fix the body and retry."
            }
            P::UnsupportedMediaType => {
                "The request has a body but its `Content-Type` is not `application/json`. Send JSON \
                 with `Content-Type: application/json`."
            }
            P::PayloadTooLarge => {
                "The body is larger than the API accepts (64 KiB for JSON). Nothing was done."
            }
            P::Unauthenticated => {
                "No valid credentials: the `Authorization: Bearer <token>` header is missing, \
                 malformed, or its token was not issued by this API; or, on login, the email or \
                 password is wrong. Log in to get a token."
            }
            P::TokenExpired => {
                "The access token (15 minutes) or refresh token (30 days) has expired. Refresh the \
                 access token with `POST /v1/auth/refresh`, or log in again."
            }
            P::TokenRevoked => {
                "The token was revoked: the session logged out, or a refresh token was presented \
                 after it had already been rotated (which revokes its whole session, in case it was \
                 stolen). Log in again."
            }
            P::Forbidden => {
                "The caller is authenticated but not allowed to do this (most often: the operation \
                 needs the admin role)."
            }
            P::NotFound => {
                "There is no such resource, or it belongs to someone else (another user's order is \
                 reported as not found, not as forbidden, so that ids leak nothing)."
            }
            P::MethodNotAllowed => "The resource exists but does not support this HTTP method.",
            P::EmailTaken => {
                "An account with this email exists already (emails compare case-insensitively). Log \
                 in instead."
            }
            P::SkuTaken => "Another product uses this SKU already; SKUs are unique.",
            P::Conflict => {
                "The request conflicts with the resource's current state, for example subscribing \
                 while a subscription is live, or changing to the plan already in use. `detail` says \
                 which. Read the resource again before retrying."
            }
            P::InsufficientStock => {
                "Not enough stock for some order lines (or a stock adjustment would go below zero). \
                 `errors` names each short line (`items[i].quantity`) with what is available. Nothing \
                 was ordered or changed."
            }
            P::InvalidTransition => {
                "The status change is not allowed from the current status: only a placed order can \
                 be cancelled or fulfilled, and a cancelled subscription cannot be cancelled again."
            }
            P::IdempotencyKeyReused => {
                "This `Idempotency-Key` was used within the last 24 hours for a different request. \
                 A retry must repeat the original request exactly; use a new key for a new request."
            }
            P::RateLimited => {
                "The caller's request budget for this kind of request is spent (sliding window). \
                 Wait the number of seconds in `Retry-After`; `RateLimit-Limit`, \
                 `RateLimit-Remaining` and `RateLimit-Reset` describe the budget, and so do \
                 `RateLimit-Policy` and `RateLimit` in the structured form of the current IETF \
                 draft."
            }
            P::ServiceUnavailable => {
                "A dependency (the database, Redis) is unavailable, the server is at capacity, or \
                 the request took too long and was abandoned. Nothing is half-done. Retry after \
                 `Retry-After` seconds."
            }
            P::Internal => {
                "An unexpected error on the server's side; it has been logged. Quote the \
                 `request_id` when reporting it. Retrying may or may not help."
            }
        }
    }

    /// The code whose `type` URI ends in `slug` (`validation-failed`).
    pub fn from_slug(slug: &str) -> Option<ProblemCode> {
        Self::ALL.into_iter().find(|code| code.slug() == slug)
    }

    /// The last segment of [`ProblemCode::type_uri`].
    pub fn slug(self) -> String {
        self.as_str().to_ascii_lowercase().replace('_', "-")
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        self.describe().0
    }

    /// The stable machine-readable code.
    pub fn as_str(self) -> &'static str {
        self.describe().1
    }

    /// The `type` URI (relative to the API's origin), where the code is explained.
    pub fn type_uri(self) -> String {
        format!("/problems/{}", self.slug())
    }
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    code: ProblemCode,
    detail: String,
    errors: Vec<FieldError>,
    retry_after_secs: Option<u64>,
    cause: Option<anyhow::Error>,
    request_id: Option<String>,
    rate_limit: Option<Box<[(HeaderName, HeaderValue); 5]>>,
}

impl ApiError {
    /// An error with a code and a human detail.
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after_secs: None,
            cause: None,
            request_id: None,
            rate_limit: None,
        }
    }

    /// 429: the caller's budget is spent; retry after `seconds`.
    pub fn rate_limited(seconds: u64) -> Self {
        Self::new(
            ProblemCode::RateLimited,
            format!("too many requests; retry in {seconds} s"),
        )
        .with_retry_after(seconds)
    }

    /// 503: this instance is handling as many requests as it may; retry shortly.
    pub fn overloaded() -> Self {
        Self::new(
            ProblemCode::ServiceUnavailable,
            "the server is at capacity; retry shortly",
        )
        .with_retry_after(1)
    }

    /// Sets `Retry-After`.
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_secs = Some(seconds);
        self
    }

    /// Adds the `RateLimit-*`, `RateLimit-Policy` and `RateLimit` headers of the budget that
    /// refused the request.
    #[must_use]
    pub fn with_rate_limit(mut self, headers: [(HeaderName, HeaderValue); 5]) -> Self {
        self.rate_limit = Some(Box::new(headers));
        self
    }

    /// Pins the request id, for errors rendered outside the request's scope.
    #[must_use]
    pub fn with_request_id(mut self, id: String) -> Self {
        self.request_id = Some(id);
        self
    }

    /// 422 listing every invalid field.
    pub fn validation(errors: ValidationErrors) -> Self {
        let count = errors.0.len();
        let mut error = Self::new(
            ProblemCode::ValidationFailed,
            if count == 1 {
                "1 field is invalid".to_owned()
            } else {
                format!("{count} fields are invalid")
            },
        );
        error.errors = errors.0;
        error
    }

    /// Adds field-level details (`errors`) to a non-validation problem, such as the short lines
    /// of INSUFFICIENT_STOCK.
    #[must_use]
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// 500 for a bug; the cause goes to the log only.
    pub fn internal(cause: anyhow::Error) -> Self {
        Self {
            cause: Some(cause),
            ..Self::new(
                ProblemCode::Internal,
                "an unexpected error occurred; quote the request_id when reporting it",
            )
        }
    }

    /// 503 for a dependency that is down or overloaded; the cause goes to the log only.
    pub fn unavailable(cause: anyhow::Error) -> Self {
        Self {
            cause: Some(cause),
            retry_after_secs: Some(2),
            ..Self::new(
                ProblemCode::ServiceUnavailable,
                "a dependency is unavailable; retry shortly",
            )
        }
    }

    /// The code.
    pub fn code(&self) -> ProblemCode {
        self.code
    }

    /// The logged cause, if any.
    pub fn cause(&self) -> Option<&anyhow::Error> {
        self.cause.as_ref()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    type_uri: String,
    title: &'static str,
    status: u16,
    detail: &'a str,
    code: &'static str,
    request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<String>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [FieldError],
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code, title) = self.code.describe();
        let body = ProblemBody {
            type_uri: self.code.type_uri(),
            title,
            status: status.as_u16(),
            detail: &self.detail,
            code,
            request_id: self.request_id.clone().or_else(request_id::current),
            trace_id: crate::trace::current_trace_id(),
            errors: &self.errors,
        };
        let mut response = HttpResponse::build(status);
        response.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        if let Some(seconds) = self.retry_after_secs {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        for (name, value) in self.rate_limit.iter().flat_map(|headers| headers.iter()) {
            response.insert_header((name.clone(), value.clone()));
        }
        if let Some(id) = &self.request_id {
            response.insert_header((request_id::HEADER, id.as_str()));
            // Rendered outside the middleware (after a panic), so it sets these headers itself.
            for header in crate::headers::SECURITY_HEADERS {
                response.insert_header(header);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.body(serde_json::to_string(&body).unwrap_or_default())
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        Self::validation(errors)
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Unavailable(cause) => Self::unavailable(cause),
            Failure::Unexpected(cause) => Self::internal(cause),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Validation(errors) => Self::validation(errors),
            AuthError::EmailTaken => Self::new(
                ProblemCode::EmailTaken,
                "an account with this email already exists",
            ),
            AuthError::InvalidCredentials => {
                Self::new(ProblemCode::Unauthenticated, "invalid email or password")
            }
            AuthError::Unauthenticated => Self::new(
                ProblemCode::Unauthenticated,
                "a valid bearer token is required",
            ),
            AuthError::TokenExpired => {
                Self::new(ProblemCode::TokenExpired, "the token has expired")
            }
            AuthError::TokenRevoked => {
                Self::new(ProblemCode::TokenRevoked, "the token has been revoked")
            }
            AuthError::Failure(failure) => failure.into(),
        }
    }
}

impl From<UserError> for ApiError {
    fn from(error: UserError) -> Self {
        match error {
            UserError::Validation(errors) => Self::validation(errors),
            UserError::Forbidden => {
                Self::new(ProblemCode::Forbidden, "this requires the admin role")
            }
            UserError::NotFound => Self::new(ProblemCode::NotFound, "no such user"),
            UserError::SessionNotFound => Self::new(ProblemCode::NotFound, "no such session"),
            UserError::Failure(failure) => failure.into(),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Validation(errors) => Self::validation(errors),
            CatalogError::Forbidden => {
                Self::new(ProblemCode::Forbidden, "this requires the admin role")
            }
            CatalogError::NotFound => Self::new(ProblemCode::NotFound, "no such product"),
            CatalogError::SkuTaken => Self::new(
                ProblemCode::SkuTaken,
                "another product already uses this sku",
            ),
            CatalogError::InsufficientStock {
                requested,
                available,
            } => Self::new(
                ProblemCode::InsufficientStock,
                "the adjustment would take the stock below zero; nothing changed",
            )
            .with_errors(vec![FieldError::new(
                "delta",
                "insufficient_stock",
                format!("removes {requested} units but {available} are in stock"),
            )]),
            CatalogError::StockTooLarge => Self::new(
                ProblemCode::Conflict,
                format!(
                    "the adjustment would take the stock above {}; nothing changed",
                    strata_domain::Stock::MAX
                ),
            ),
            CatalogError::Failure(failure) => failure.into(),
        }
    }
}

impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> Self {
        match error {
            OrderError::Validation(errors) => Self::validation(errors),
            OrderError::Forbidden => {
                Self::new(ProblemCode::Forbidden, "this requires the admin role")
            }
            OrderError::NotFound => Self::new(ProblemCode::NotFound, "no such order"),
            OrderError::InsufficientStock(short) => {
                let count = short.len();
                Self::new(
                    ProblemCode::InsufficientStock,
                    format!(
                        "{count} line(s) exceed the stock on hand; nothing was ordered \
                         (see errors)"
                    ),
                )
                .with_errors(
                    short
                        .into_iter()
                        .map(|line| {
                            FieldError::new(
                                format!("items[{}].quantity", line.index),
                                "insufficient_stock",
                                format!(
                                    "{} requested of product {}, {} in stock",
                                    line.requested, line.product_id, line.available
                                ),
                            )
                        })
                        .collect(),
                )
            }
            OrderError::InvalidTransition(invalid) => Self::new(
                ProblemCode::InvalidTransition,
                format!(
                    "the order is {}; it cannot become {}",
                    invalid.from, invalid.to
                ),
            ),
            OrderError::KeyReused => Self::new(
                ProblemCode::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request; use a new key for a \
                 new request",
            ),
            OrderError::Failure(failure) => failure.into(),
        }
    }
}

impl From<ExportError> for ApiError {
    fn from(error: ExportError) -> Self {
        match error {
            ExportError::Validation(errors) => Self::validation(errors),
            ExportError::Forbidden => {
                Self::new(ProblemCode::Forbidden, "this requires the admin role")
            }
            ExportError::Failure(failure) => failure.into(),
        }
    }
}

impl From<DashboardError> for ApiError {
    fn from(error: DashboardError) -> Self {
        match error {
            DashboardError::Forbidden => {
                Self::new(ProblemCode::Forbidden, "this requires the admin role")
            }
            DashboardError::Failure(failure) => failure.into(),
        }
    }
}

impl From<ReportError> for ApiError {
    fn from(error: ReportError) -> Self {
        match error {
            ReportError::Validation(errors) => Self::validation(errors),
            ReportError::Forbidden => {
                Self::new(ProblemCode::Forbidden, "this requires the admin role")
            }
            ReportError::NotFound => Self::new(ProblemCode::NotFound, "no such report"),
            ReportError::Failure(failure) => failure.into(),
        }
    }
}

impl From<BillingError> for ApiError {
    fn from(error: BillingError) -> Self {
        match error {
            BillingError::Validation(errors) => Self::validation(errors),
            BillingError::NotFound => {
                Self::new(ProblemCode::NotFound, "you have no active subscription")
            }
            BillingError::AlreadySubscribed => Self::new(
                ProblemCode::Conflict,
                "you already have a subscription; change its plan or cancel it first",
            ),
            BillingError::SamePlan => Self::new(
                ProblemCode::Conflict,
                "the subscription is on this plan already",
            ),
            BillingError::Stale => Self::new(
                ProblemCode::Conflict,
                "the subscription changed while this request was handled; retry it",
            ),
            BillingError::NotActive => Self::new(
                ProblemCode::InvalidTransition,
                "the subscription is cancelled already",
            ),
            BillingError::KeyReused => Self::new(
                ProblemCode::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request; use a new key for a \
                 new request",
            ),
            BillingError::Failure(failure) => failure.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_code_is_unique_and_maps_to_an_error_status() {
        let codes: HashSet<_> = ProblemCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes.len(), ProblemCode::ALL.len());
        for code in ProblemCode::ALL {
            assert!(
                code.status().is_client_error() || code.status().is_server_error(),
                "{code:?}"
            );
            assert!(code.type_uri().starts_with("/problems/"));
        }
    }

    #[test]
    fn an_internal_error_never_shows_its_cause() {
        let error = ApiError::internal(anyhow::anyhow!(
            "SELECT secret FROM users: relation does not exist"
        ));
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = format!("{:?}", response.body());
        assert!(!body.contains("SELECT"), "{body}");
    }
}
