//! Strata's use cases: the only place where business flow lives.
//!
//! A service receives its ports as `Arc<dyn Port>`, validates input into domain types, decides, and
//! calls the ports. It knows nothing of HTTP, SQL or Redis; the composition root wires adapters in.
//! Each area has its own error enum whose variants are the outcomes a caller must handle; the
//! HTTP edge maps each of them, exhaustively, to a problem+json response.
//!
//! The pure-compute implementations of ports that need no I/O driver — the argon2id hasher, the
//! system clock, UUIDv7 ids — live here too (see `docs/decisions/0003-compute-adapters-in-services.md`).

pub mod auth;
pub mod cursor;
pub mod password;
pub mod single_flight;
pub mod system;
pub mod tokens;
pub mod users;

mod failure;

pub use auth::{
    AuthError, AuthService, AuthSettings, Principal, RegisterInput, RevocationCheckPolicy,
    TokenPair,
};
pub use cursor::{CursorCodec, InvalidCursor, derive_key};
pub use failure::Failure;
pub use password::{Argon2Hasher, Argon2Settings};
pub use system::{SystemClock, UuidV7Ids};
pub use tokens::{AccessClaims, JwtCodec, JwtError, JwtSettings};
pub use users::{Page, ProfileChanges, UserError, UserService};
