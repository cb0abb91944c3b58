//! Users: who they are (email, display name, role) and the rules for each field.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::validation::FieldError;

/// A user's identifier (UUIDv7, so ids sort by creation time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An email address, trimmed and lower-cased so that uniqueness is case-insensitive.
///
/// Accepted: one `@`, a local part of 1–64 characters from the RFC 5322 atom set with single inner
/// dots, a domain of at least two dot-separated labels (letters, digits, inner hyphens, ≤ 63 each)
/// ending in an alphabetic top-level label, 254 characters in all. Internationalised addresses are
/// not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// The longest address accepted (RFC 5321 path limit less the angle brackets).
    pub const MAX_LEN: usize = 254;

    /// Validates and normalises an address.
    ///
    /// ```
    /// use strata_domain::Email;
    ///
    /// let email = Email::parse("  Ada@Example.COM ").unwrap();
    /// assert_eq!(email.as_str(), "ada@example.com");
    ///
    /// let error = Email::parse("ada@localhost").unwrap_err();
    /// assert_eq!(error.code, "invalid_email");
    /// ```
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let candidate = raw.trim().to_ascii_lowercase();
        let invalid = || FieldError::new("email", "invalid_email", "must be a valid email address");
        if candidate.is_empty() {
            return Err(FieldError::new("email", "required", "must not be empty"));
        }
        if candidate.len() > Self::MAX_LEN {
            return Err(FieldError::new(
                "email",
                "too_long",
                format!("must be at most {} characters", Self::MAX_LEN),
            ));
        }
        let (local, domain) = candidate.split_once('@').ok_or_else(invalid)?;
        if !valid_local_part(local) || !valid_domain(domain) {
            return Err(invalid());
        }
        Ok(Self(candidate))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn valid_local_part(local: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+/=?^_`{|}~-";
    (1..=64).contains(&local.len())
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || SPECIALS.contains(c))
        })
}

fn valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    labels.len() >= 2
        && labels.iter().all(label_ok)
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
}

impl TryFrom<String> for Email {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name a user shows to others: 1–80 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

impl DisplayName {
    /// The longest display name, in characters.
    pub const MAX_CHARS: usize = 80;

    /// Validates a display name.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let trimmed = raw.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            return Err(FieldError::new(
                "display_name",
                "required",
                "must not be empty",
            ));
        }
        if chars > Self::MAX_CHARS {
            return Err(FieldError::new(
                "display_name",
                "too_long",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(FieldError::new(
                "display_name",
                "invalid_characters",
                "must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DisplayName {
    type Error = FieldError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<DisplayName> for String {
    fn from(value: DisplayName) -> Self {
        value.0
    }
}

/// A plaintext password that met the length policy (8–128 characters).
///
/// It cannot be serialised and its `Debug` output is redacted, so it never reaches a log line or a
/// response by accident. Only a password hasher reads it, through [`Password::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The shortest accepted password, in characters.
    pub const MIN_CHARS: usize = 8;
    /// The longest accepted password, in characters.
    pub const MAX_CHARS: usize = 128;

    /// Validates a new password against the length policy. Passwords are not trimmed.
    ///
    /// ```
    /// use strata_domain::Password;
    ///
    /// assert_eq!(Password::parse("hunter2").unwrap_err().code, "too_short");
    /// let password = Password::parse("correct horse battery").unwrap();
    /// assert_eq!(format!("{password:?}"), "Password(<redacted>)");
    /// ```
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let chars = raw.chars().count();
        if chars == 0 {
            return Err(FieldError::new("password", "required", "must not be empty"));
        }
        if chars < Self::MIN_CHARS {
            return Err(FieldError::new(
                "password",
                "too_short",
                format!("must be at least {} characters", Self::MIN_CHARS),
            ));
        }
        if chars > Self::MAX_CHARS {
            return Err(FieldError::new(
                "password",
                "too_long",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Wraps a password offered at login without applying the policy (the policy may have changed
    /// since the user chose it). The caller bounds its length.
    pub fn unchecked(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    /// The plaintext, for a password hasher only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// What a user may do: customers act on their own data, admins on everyone's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A buyer or subscriber.
    Customer,
    /// An operator of the shop.
    Admin,
}

impl Role {
    /// The stored and serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }

    /// Reads a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "customer" => Some(Role::Customer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// A registered user, without credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Identifier.
    pub id: UserId,
    /// Normalised, unique email.
    pub email: Email,
    /// Public name.
    pub display_name: DisplayName,
    /// Permissions.
    pub role: Role,
    /// When the user registered.
    pub created_at: DateTime<Utc>,
    /// When the profile last changed.
    pub updated_at: DateTime<Utc>,
}

impl User {
    /// True for admins.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        let email = Email::parse("  Ada.Lovelace@Example.COM ").map(|e| e.as_str().to_owned());
        assert_eq!(email.as_deref(), Ok("ada.lovelace@example.com"));
    }

    #[test]
    fn malformed_emails_are_rejected_with_a_stable_code() {
        for bad in [
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a@@b.com",
            "a b@example.com",
            ".a@example.com",
            "a..b@example.com",
            "a@-example.com",
            "a@example.c0m",
            "a@exa_mple.com",
            "ü@example.com",
        ] {
            let error = Email::parse(bad).expect_err(bad);
            assert_eq!(error.code, "invalid_email", "{bad}");
        }
        assert_eq!(Email::parse("   ").map_err(|e| e.code), Err("required"));
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long).map_err(|e| e.code), Err("too_long"));
    }

    #[test]
    fn plus_addressing_and_subdomains_are_accepted() {
        assert!(Email::parse("first+tag@mail.eu.example.org").is_ok());
    }

    #[test]
    fn password_length_is_counted_in_characters() {
        assert_eq!(
            Password::parse("short").map_err(|e| e.code),
            Err("too_short")
        );
        assert!(Password::parse("ééééééé").is_err(), "7 characters");
        assert!(
            Password::parse("éééééééé").is_ok(),
            "8 characters, 16 bytes"
        );
        assert!(Password::parse(&"x".repeat(128)).is_ok());
        assert_eq!(
            Password::parse(&"x".repeat(129)).map_err(|e| e.code),
            Err("too_long")
        );
    }

    #[test]
    fn password_debug_output_is_redacted() {
        let password = Password::parse("correct horse battery").expect("valid");
        assert!(!format!("{password:?}").contains("horse"));
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(
            DisplayName::parse("  Ada  ")
                .map(|d| d.as_str().to_owned())
                .as_deref(),
            Ok("Ada")
        );
        assert_eq!(DisplayName::parse(" ").map_err(|e| e.code), Err("required"));
        assert!(DisplayName::parse(&"é".repeat(80)).is_ok());
        assert_eq!(
            DisplayName::parse(&"é".repeat(81)).map_err(|e| e.code),
            Err("too_long")
        );
        assert_eq!(
            DisplayName::parse("a\u{0007}b").map_err(|e| e.code),
            Err("invalid_characters")
        );
    }

    #[test]
    fn roles_round_trip_through_their_stored_names() {
        for role in [Role::Customer, Role::Admin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
