//! Fixtures shared by the services' unit tests.

use chrono::{DateTime, TimeZone, Utc};
use strata_domain::{Role, UserId, ValidationErrors};
use strata_ports::PortError;
use uuid::Uuid;

use crate::auth::Principal;
use crate::{BillingError, CatalogError, OrderError, UserError};

/// A mocked clock that always says [`now`].
pub(crate) fn fixed_clock() -> strata_ports::MockClock {
    let mut clock = strata_ports::MockClock::new();
    clock.expect_now().returning(now);
    clock
}

/// The instant every mocked clock returns: fixed for the whole test run, taken from the wall
/// clock (to the second) when first asked, because the JWTs the services issue at this instant are
/// verified by `jsonwebtoken` against the real clock.
pub(crate) fn now() -> DateTime<Utc> {
    static NOW: std::sync::LazyLock<DateTime<Utc>> = std::sync::LazyLock::new(|| {
        let wall = Utc::now();
        Utc.timestamp_opt(wall.timestamp(), 0)
            .single()
            .unwrap_or(wall)
    });
    *NOW
}

/// The codec every service test signs and checks tokens with: HS256, a 15-minute access token.
pub(crate) fn jwt() -> std::sync::Arc<crate::tokens::JwtCodec> {
    std::sync::Arc::new(
        crate::tokens::JwtCodec::new(crate::tokens::JwtSettings {
            issuer: "strata".into(),
            audience: "strata-api".into(),
            access_ttl: std::time::Duration::from_secs(900),
            algorithm: jsonwebtoken::Algorithm::HS256,
            kid: None,
            key: crate::tokens::JwtKey::Hmac(b"0123456789abcdef0123456789abcdef".to_vec()),
            previous_keys: Vec::new(),
        })
        .expect("codec"),
    )
}

/// A fresh caller with `role`.
pub(crate) fn principal(role: Role) -> Principal {
    Principal {
        user_id: UserId(Uuid::now_v7()),
        role,
        jti: Uuid::now_v7(),
        session_id: Uuid::now_v7(),
        expires_at: now(),
    }
}

/// A dependency that is down.
pub(crate) fn unavailable() -> PortError {
    PortError::unavailable(anyhow::anyhow!("down"))
}

/// An error enum with a validation variant.
pub(crate) trait Validation: std::fmt::Debug {
    /// The field errors, if this is a validation failure.
    fn validation(self) -> Result<ValidationErrors, Self>
    where
        Self: Sized;
}

macro_rules! validation_variant {
    ($($error:ty),*) => {$(
        impl Validation for $error {
            fn validation(self) -> Result<ValidationErrors, Self> {
                match self {
                    Self::Validation(errors) => Ok(errors),
                    other => Err(other),
                }
            }
        }
    )*};
}

validation_variant!(BillingError, CatalogError, OrderError, UserError);

/// The `(field, code)` pairs of a validation failure; panics on any other outcome.
pub(crate) fn invalid_fields<T: std::fmt::Debug, E: Validation>(
    result: Result<T, E>,
) -> Vec<(String, &'static str)> {
    match result.map_err(Validation::validation) {
        Err(Ok(errors)) => errors
            .0
            .into_iter()
            .map(|error| (error.field, error.code))
            .collect(),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

/// `(field, code)` pairs as [`invalid_fields`] returns them.
pub(crate) fn pairs(expected: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
    expected
        .iter()
        .map(|(field, code)| ((*field).to_owned(), *code))
        .collect()
}
