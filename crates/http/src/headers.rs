//! The security headers every response carries, and the docs pages' own Content-Security-Policy.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

/// The security headers of SPEC §3, set on every response. Constants, so that setting them is a
/// copy of ready values: `from_static` outside a const context checks its bytes every call.
pub const SECURITY_HEADERS: [(HeaderName, HeaderValue); 5] = [
    (
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    ),
    (
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    ),
    (
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    ),
    (
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    ),
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    ),
];

/// Sets [`SECURITY_HEADERS`] on `headers`.
pub fn apply_security_headers(headers: &mut HeaderMap) {
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, value);
    }
}

/// The Content-Security-Policy of the docs pages: their own scripts, styles (Swagger UI sets inline
/// styles) and images, requests to this origin only.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Whether `path` is one of the docs pages, which get [`DOCS_CSP`] in place of the API's
/// `default-src 'none'` policy (which would stop Swagger UI's scripts).
pub fn is_docs(path: &str) -> bool {
    path == "/docs" || path.starts_with("/docs/")
}
