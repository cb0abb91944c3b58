//! Strata's domain: entities, value objects and the pure rules between them.
//!
//! Nothing here performs I/O, awaits, or knows about HTTP or SQL, so another team can use this crate
//! as is in a worker or a batch job. Every value object is built through a validating constructor
//! (`Email::parse`, `DisplayName::parse`, `Password::parse`), which makes an invalid user
//! unrepresentable once it has been constructed.

pub mod auth;
pub mod pagination;
pub mod user;
pub mod validation;

pub use auth::{RefreshTokenRecord, RefreshTokenState};
pub use pagination::PageLimit;
pub use user::{DisplayName, Email, Password, Role, User, UserId};
pub use validation::{FieldError, ValidationErrors};
