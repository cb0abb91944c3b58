//! Strong ETags over JSON representations, and conditional GET.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use utoipa::IntoParams;

use crate::problem::ApiError;

/// The ETag of a representation: 128 bits of XXH3. An ETag only tells versions of one resource
/// apart, so it needs no cryptographic strength, and a list page is hashed on every request
/// (SHA-256 was 3 % of the server's time serving the product list).
pub fn of(body: &[u8]) -> String {
    let digest = xxhash_rust::xxh3::xxh3_128(body).to_le_bytes();
    // Quoted (a strong ETag); built directly, as it is on every read of a body from Redis.
    let mut etag = String::with_capacity(24);
    etag.push('"');
    URL_SAFE_NO_PAD.encode_string(digest, &mut etag);
    etag.push('"');
    etag
}

/// True when `If-None-Match` names `etag` (or is `*`); weak comparison, as RFC 9110 asks for GET.
pub fn matches(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
}

/// 200 with the body, its ETag and `Cache-Control`, or 304 when the client has it already.
pub fn respond<T: Serialize>(
    req: &HttpRequest,
    value: &T,
    cache_control: &'static str,
) -> Result<HttpResponse, ApiError> {
    Prepared::json(value).map(|prepared| prepared.respond(req, cache_control))
}

/// A JSON representation serialised once, with its ETag: what a cached resource keeps so that a
/// hit costs neither serialisation nor hashing.
#[derive(Debug, Clone)]
pub struct Prepared {
    body: actix_web::web::Bytes,
    etag: header::HeaderValue,
}

impl Prepared {
    /// `value` serialised, and its ETag.
    pub fn json<T: Serialize>(value: &T) -> Result<Self, ApiError> {
        let body = serde_json::to_vec(value).map_err(|e| ApiError::internal(e.into()))?;
        Self::from_json(body.into())
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("an ETag that is no header value")))
    }

    /// A body serialised already, with its ETag; `None` if the ETag cannot be a header value.
    pub fn from_json(body: actix_web::web::Bytes) -> Option<Self> {
        let etag = header::HeaderValue::from_str(&of(&body)).ok()?;
        Some(Self { body, etag })
    }

    /// 200 with the body, or 304 when `If-None-Match` names the ETag; `Cache-Control` either way.
    /// `cache_control` is one of the routes' literal directives, taken as a header value without a
    /// copy (a literal with a byte no header value allows would panic on its first use).
    pub fn respond(&self, req: &HttpRequest, cache_control: &'static str) -> HttpResponse {
        let fresh = self.etag.to_str().is_ok_and(|etag| matches(req, etag));
        let mut response = if fresh {
            HttpResponse::NotModified()
        } else {
            HttpResponse::Ok()
        };
        response
            .insert_header((header::ETAG, self.etag.clone()))
            .insert_header((
                header::CACHE_CONTROL,
                header::HeaderValue::from_static(cache_control),
            ));
        if fresh {
            response.finish()
        } else {
            // A constant header value: `content_type("…")` would parse the media type every time.
            response
                .insert_header((
                    header::CONTENT_TYPE,
                    const { header::HeaderValue::from_static("application/json") },
                ))
                .body(self.body.clone())
        }
    }
}

/// `If-None-Match`, on every GET that sends an ETag.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfNoneMatch {
    /// ETags of the representation the client holds (or `*`); the answer is 304 without a body
    /// when one is current.
    #[param(
        rename = "If-None-Match",
        nullable = false,
        example = "\"x7LvYpS0k9QhT1mWc3aB2g\""
    )]
    pub if_none_match: Option<String>,
}
