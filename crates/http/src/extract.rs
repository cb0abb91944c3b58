//! Extractors that turn every malformed request into a precise problem response.

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderName};
use actix_web::web::BytesMut;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use strata_domain::{FieldError, ValidationErrors};
use strata_services::Principal;
use utoipa::IntoParams;

use crate::middleware::AuthenticatedUser;
use crate::problem::{ApiError, ProblemCode};
use crate::state::AppState;

/// Largest JSON body accepted (SPEC §3: 64 KiB).
pub const JSON_LIMIT: usize = 64 * 1024;

/// A JSON body: 415 unless `Content-Type` is JSON, 413 beyond [`JSON_LIMIT`] (checked before the
/// body is read when `Content-Length` says so), 400 when not well-formed, 422 naming the field when
/// a value has the wrong type.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

fn is_json(req: &HttpRequest) -> bool {
    req.mime_type().ok().flatten().is_some_and(|mime| {
        mime.type_() == "application"
            && (mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json"))
    })
}

fn too_large() -> ApiError {
    ApiError::new(
        ProblemCode::PayloadTooLarge,
        format!("the body exceeds {JSON_LIMIT} bytes"),
    )
}

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if !is_json(req) {
            return Box::pin(async {
                Err(ApiError::new(
                    ProblemCode::UnsupportedMediaType,
                    "send the body as application/json",
                ))
            });
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|length| length > JSON_LIMIT) {
            return Box::pin(async { Err(too_large()) });
        }
        let mut payload = payload.take();
        Box::pin(async move {
            let mut body = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    ApiError::new(
                        ProblemCode::MalformedJson,
                        format!("the body could not be read: {e}"),
                    )
                })?;
                if body.len() + chunk.len() > JSON_LIMIT {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            let mut deserializer = serde_json::Deserializer::from_slice(&body);
            let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
                let path = error.path().to_string();
                let inner = error.into_inner();
                let message = strip_position(&inner.to_string());
                match inner.classify() {
                    serde_json::error::Category::Data => {
                        let error = match unknown_field(&message) {
                            Some(name) => FieldError::new(name, "unknown_field", message),
                            None if path == "." => FieldError::new("body", "invalid_type", message),
                            None => FieldError::new(path, "invalid_type", message),
                        };
                        ApiError::validation(ValidationErrors::single(error))
                    }
                    _ => ApiError::new(
                        ProblemCode::MalformedJson,
                        format!("the body is not valid JSON: {inner}"),
                    ),
                }
            })?;
            deserializer.end().map_err(|e| {
                ApiError::new(
                    ProblemCode::MalformedJson,
                    format!("the body is not valid JSON: {e}"),
                )
            })?;
            Ok(ApiJson(value))
        })
    }
}

/// The field named by serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(name, _)| name.to_owned())
}

/// serde_json appends " at line L column C", which means nothing once the field is named.
fn strip_position(message: &str) -> String {
    message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_owned()
}

/// The caller, authenticated by `Authorization: Bearer <access token>`.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| t.trim().to_owned());
        let req = req.clone();
        Box::pin(async move {
            let state = state
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("AppState is not registered")))?;
            let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
                ApiError::new(
                    ProblemCode::Unauthenticated,
                    "send Authorization: Bearer <access token>",
                )
            })?;
            let principal = state.auth.authenticate(&token).await?;
            req.extensions_mut()
                .insert(AuthenticatedUser(principal.user_id));
            tracing::Span::current().record("user_id", tracing::field::display(principal.user_id));
            Ok(Authenticated(principal))
        })
    }
}

/// The request header naming one intended effect.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a response that replays the first answer to an Idempotency-Key.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The Idempotency-Key header, if sent; a key that is not text is invalid (422).
pub fn idempotency_key(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let mut values = req.headers().get_all(IDEMPOTENCY_KEY);
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let invalid = |message: &str| {
        ApiError::validation(ValidationErrors::single(FieldError::new(
            "Idempotency-Key",
            "invalid_idempotency_key",
            message,
        )))
    };
    if values.next().is_some() {
        return Err(invalid("must be sent once"));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| invalid("must be visible ASCII characters"))
}

/// The UUID of a path segment. A malformed id names nothing (404 `no such <what>`), except on a
/// route reserved for admins (`admin_route`), where a non-admin learns only that the route is
/// forbidden (403), whatever the id.
pub fn path_uuid(
    raw: &str,
    what: &str,
    admin_route: Option<&Principal>,
) -> Result<uuid::Uuid, ApiError> {
    match (uuid::Uuid::parse_str(raw), admin_route) {
        (Ok(id), _) => Ok(id),
        (Err(_), Some(principal)) if !principal.is_admin() => Err(ApiError::new(
            ProblemCode::Forbidden,
            "this requires the admin role",
        )),
        (Err(_), _) => Err(ApiError::new(
            ProblemCode::NotFound,
            format!("no such {what}"),
        )),
    }
}

/// `Idempotency-Key`, on the POSTs that create an effect once.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// The client's name for one intended effect: 1–255 visible ASCII characters (a UUID is
    /// typical). The same key with the same body within 24 h replays the first answer (with
    /// `Idempotent-Replayed: true`) and has no second effect; the same key with another body is
    /// 422 `IDEMPOTENCY_KEY_REUSED`.
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = "^[\\x21-\\x7E]{1,255}$",
        example = "8e0c3f5e-2b1a-4c1e-9d7a-3f0b2a1c9e11"
    )]
    pub idempotency_key: Option<String>,
}
