//! Idempotency-Key claims: the key, the operation, and a fingerprint of the validated request.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use strata_domain::{FieldError, IdempotencyKey};
use strata_ports::IdempotencyClaim;

use crate::failure::Failure;

/// Validates the raw header value, if any.
pub(crate) fn parse_key(raw: Option<&str>) -> Result<Option<IdempotencyKey>, FieldError> {
    raw.map(IdempotencyKey::parse).transpose()
}

/// A claim of `key` for `operation`, replayable for `window` from `now`. `parts` are the
/// validated request's fields in a fixed order: the same request always gives the same
/// fingerprint, whatever its JSON spelling.
pub(crate) fn claim(
    key: IdempotencyKey,
    operation: &'static str,
    parts: &[&[u8]],
    now: DateTime<Utc>,
    window: Duration,
) -> Result<IdempotencyClaim, Failure> {
    let window = chrono::Duration::from_std(window).map_err(|e| Failure::Unexpected(e.into()))?;
    Ok(IdempotencyClaim {
        key,
        operation,
        fingerprint: fingerprint(operation, parts),
        expires_at: now + window,
    })
}

/// SHA-256 over the operation and each part, length-prefixed so that parts cannot run together.
pub(crate) fn fingerprint(operation: &str, parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(operation.as_bytes());
    hasher.update(b"\0");
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    URL_SAFE_NO_PAD.encode(hasher.finalize())
}
