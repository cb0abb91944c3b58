//! Idempotency keys: the client's name for one intended effect, so that a retry cannot repeat it.

use serde::{Deserialize, Serialize};

use crate::validation::FieldError;

/// An `Idempotency-Key` header value: 1–255 visible ASCII characters (a UUID is typical).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The longest key accepted.
    pub const MAX_LEN: usize = 255;

    /// Validates a key.
    ///
    /// ```
    /// use strata_domain::IdempotencyKey;
    ///
    /// assert!(IdempotencyKey::parse("8e0c3f5e-2b1a-4c1e-9d7a-3f0b2a1c9e11").is_ok());
    /// assert_eq!(IdempotencyKey::parse("").unwrap_err().code, "invalid_idempotency_key");
    /// assert_eq!(IdempotencyKey::parse("has space").unwrap_err().code, "invalid_idempotency_key");
    /// ```
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let valid =
            (1..=Self::MAX_LEN).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic());
        if !valid {
            return Err(FieldError::new(
                "Idempotency-Key",
                "invalid_idempotency_key",
                format!(
                    "must be 1 to {} visible ASCII characters, such as a UUID",
                    Self::MAX_LEN
                ),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<IdempotencyKey> for String {
    fn from(value: IdempotencyKey) -> Self {
        value.0
    }
}
