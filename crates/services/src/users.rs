//! Profiles (own, cached) and the admin's view of users.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_domain::{
    DisplayName, Email, FieldError, PageLimit, Password, Role, Session, User, UserId,
    ValidationErrors,
};
use strata_ports::{
    Cache, Clock, PasswordHasher, PortError, RefreshTokenRepository, UserPageKey, UserRepository,
    UserUpdate,
};
use uuid::Uuid;

use crate::auth::{AccessRevocation, Principal};
use crate::cache_aside::CacheAside;
use crate::cursor::CursorCodec;
use crate::failure::Failure;

/// What a caller of [`UserService`] must handle.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Some fields are invalid; every one is listed.
    #[error("invalid input")]
    Validation(#[from] ValidationErrors),
    /// The caller may not do this.
    #[error("forbidden")]
    Forbidden,
    /// No such user.
    #[error("user not found")]
    NotFound,
    /// No live session of the caller's has this id (unknown, ended, expired, or another user's:
    /// the answer does not tell them apart).
    #[error("no such session")]
    SessionNotFound,
    /// Infrastructure failure.
    #[error(transparent)]
    Failure(#[from] Failure),
}

impl From<PortError> for UserError {
    fn from(error: PortError) -> Self {
        UserError::Failure(error.into())
    }
}

impl From<strata_ports::HashError> for UserError {
    fn from(error: strata_ports::HashError) -> Self {
        UserError::Failure(error.into())
    }
}

/// One page of a keyset-paginated list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, in list order.
    pub items: Vec<T>,
    /// Opaque position after the last item, `None` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The page of `items` fetched with one more than `limit`: that extra item, when it came,
    /// says a next page exists, and is dropped; the cursor is `cursor_of` the last item kept.
    pub fn cut(mut items: Vec<T>, limit: PageLimit, cursor_of: impl FnOnce(&T) -> String) -> Self {
        let next_cursor = if items.len() > limit.get() {
            items.truncate(limit.get());
            items.last().map(cursor_of)
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

/// Raw profile changes, validated by [`UserService::update_me`].
#[derive(Debug, Clone, Default)]
pub struct ProfileChanges {
    /// New display name.
    pub display_name: Option<String>,
    /// New password; requires `current_password`.
    pub password: Option<String>,
    /// The password in use, proving the caller knows it.
    pub current_password: Option<String>,
}

const USERS_CURSOR_SCOPE: &str = "users";
const SESSIONS_CURSOR_SCOPE: &str = "sessions";

/// The position of a session in the caller's list (most recently active first).
#[derive(Serialize, Deserialize)]
struct SessionsCursor {
    last_active_at: DateTime<Utc>,
    id: Uuid,
}

#[derive(Serialize, Deserialize)]
struct UsersCursor {
    created_at: DateTime<Utc>,
    id: Uuid,
}

fn profile_key(id: UserId) -> String {
    format!("user:profile:{id}")
}

/// The user use cases.
pub struct UserService {
    users: Arc<dyn UserRepository>,
    refresh_tokens: Arc<dyn RefreshTokenRepository>,
    hasher: Arc<dyn PasswordHasher>,
    clock: Arc<dyn Clock>,
    cursors: CursorCodec,
    profiles: CacheAside<User>,
    revocation: AccessRevocation,
}

impl UserService {
    /// Wires the service to its ports; profiles are cached for `profile_ttl`; password and role
    /// changes end earlier access tokens through `revocation`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        users: Arc<dyn UserRepository>,
        refresh_tokens: Arc<dyn RefreshTokenRepository>,
        cache: Arc<dyn Cache>,
        hasher: Arc<dyn PasswordHasher>,
        clock: Arc<dyn Clock>,
        cursors: CursorCodec,
        profile_ttl: Duration,
        revocation: AccessRevocation,
    ) -> Self {
        Self {
            users,
            refresh_tokens,
            hasher,
            clock,
            cursors,
            profiles: CacheAside::new("profile", cache, profile_ttl),
            revocation,
        }
    }

    /// The caller's own profile, cache-aside. A cache that cannot be reached is bypassed.
    pub async fn me(&self, principal: &Principal) -> Result<User, UserError> {
        let id = principal.user_id;
        self.profiles
            .get_or_load(&profile_key(id), || self.users.find_by_id(id))
            .await?
            .ok_or(UserError::NotFound)
    }

    /// Changes the caller's display name and/or password. A password change needs the current
    /// password, ends the caller's other sessions, and ends every access token issued before it,
    /// the caller's too (its session goes on by a refresh).
    pub async fn update_me(
        &self,
        principal: &Principal,
        changes: ProfileChanges,
    ) -> Result<User, UserError> {
        let mut errors = ValidationErrors::new();
        let display_name = changes
            .display_name
            .as_deref()
            .and_then(|raw| errors.check("display_name", DisplayName::parse(raw)));
        let password = changes
            .password
            .as_deref()
            .and_then(|raw| errors.check("password", Password::parse(raw)));
        if changes.password.is_some()
            && changes
                .current_password
                .as_deref()
                .is_none_or(str::is_empty)
        {
            errors.push(FieldError::new(
                "current_password",
                "required",
                "is required to change the password",
            ));
        } else if changes.current_password.as_deref() == Some("") {
            // Not needed without `password`, but an empty one sent is a mistake, never a password.
            errors.push(FieldError::new(
                "current_password",
                "required",
                "must not be empty",
            ));
        }
        if changes.display_name.is_none() && changes.password.is_none() {
            errors.push(FieldError::new(
                "display_name",
                "required",
                "give display_name, password, or both",
            ));
        }
        errors.into_result()?;

        let mut update = UserUpdate {
            display_name,
            password_hash: None,
        };
        if let (Some(password), Some(current)) = (&password, &changes.current_password) {
            let credentials = self
                .users
                .find_credentials_by_id(principal.user_id)
                .await?
                .ok_or(UserError::NotFound)?;
            let verdict = self
                .hasher
                .verify(&Password::unchecked(current), &credentials.password_hash)
                .await?;
            if !verdict.matches {
                return Err(ValidationErrors::single(FieldError::new(
                    "current_password",
                    "mismatch",
                    "is not the current password",
                ))
                .into());
            }
            update.password_hash = Some(self.hasher.hash(password).await?);
            // First before anything changes, so that with the revocation list unreachable the
            // change fails whole (503) rather than leave the earlier tokens valid.
            self.revocation
                .revoke_earlier_tokens(principal.user_id)
                .await?;
        }
        let now = self.clock.now();
        let user = self
            .users
            .update(principal.user_id, &update, now)
            .await?
            .ok_or(UserError::NotFound)?;
        self.invalidate_profile(user.id).await;
        if update.password_hash.is_some() {
            self.refresh_tokens
                .revoke_all_for_user(user.id, Some(principal.session_id), now)
                .await?;
            // Again now that no other session can refresh: a refresh that rotated one of them
            // just before its revocation issued an access token after the first instant, but
            // before this one. Failing here leaves only such a token valid, so the change, made,
            // is reported made.
            if let Err(error) = self.revocation.revoke_earlier_tokens(user.id).await {
                tracing::warn!(user_id = %user.id, error = %error, "tokens refreshed while the password changed stay valid until they expire");
            }
        }
        Ok(user)
    }

    async fn invalidate_profile(&self, id: UserId) {
        self.profiles.invalidate(&[profile_key(id)]).await;
    }

    /// Users oldest first, one page at a time (admin only).
    pub async fn list(
        &self,
        principal: &Principal,
        cursor: Option<&str>,
        limit: Option<&str>,
    ) -> Result<Page<User>, UserError> {
        require_admin(principal)?;
        let mut errors = ValidationErrors::new();
        let limit = errors.check("limit", PageLimit::parse(limit));
        let after = match cursor {
            Some(raw) => errors.check(
                "cursor",
                self.cursors
                    .decode::<UsersCursor>(USERS_CURSOR_SCOPE, raw)
                    .map(|c| {
                        Some(UserPageKey {
                            created_at: c.created_at,
                            id: UserId(c.id),
                        })
                    })
                    .map_err(|_| {
                        FieldError::new("cursor", "invalid_cursor", "is not a cursor of this list")
                    }),
            ),
            None => Some(None),
        };
        let (Some(limit), Some(after)) = (limit, after) else {
            return Err(errors.into());
        };
        let items = self.users.list(after, limit.get() + 1).await?;
        Ok(Page::cut(items, limit, |last| {
            self.cursors.encode(
                USERS_CURSOR_SCOPE,
                &UsersCursor {
                    created_at: last.created_at,
                    id: last.id.0,
                },
            )
        }))
    }

    /// A page of the caller's live sessions, most recently active first (then by id), among the
    /// [`MAX_LISTED_SESSIONS`](strata_ports::MAX_LISTED_SESSIONS) most recently active; the one
    /// the caller's token belongs to is marked current.
    pub async fn sessions(
        &self,
        principal: &Principal,
        cursor: Option<&str>,
        limit: Option<&str>,
    ) -> Result<Page<Session>, UserError> {
        let mut errors = ValidationErrors::new();
        let limit = errors.check("limit", PageLimit::parse(limit));
        let after = match cursor {
            Some(raw) => errors.check(
                "cursor",
                self.cursors
                    .decode::<SessionsCursor>(SESSIONS_CURSOR_SCOPE, raw)
                    .map(|c| Some((c.last_active_at, c.id)))
                    .map_err(|_| {
                        FieldError::new("cursor", "invalid_cursor", "is not a cursor of this list")
                    }),
            ),
            None => Some(None),
        };
        let (Some(limit), Some(after)) = (limit, after) else {
            return Err(errors.into());
        };
        let mut sessions = self
            .refresh_tokens
            .sessions(principal.user_id, self.clock.now())
            .await?;
        // The repository's order, made total: sessions refreshed in the same microsecond are
        // told apart by id, so a page never repeats or skips one.
        sessions.sort_by_key(|session| std::cmp::Reverse((session.last_active_at, session.id)));
        let mut page: Vec<Session> = sessions
            .into_iter()
            .filter(|session| {
                after.is_none_or(|after| (session.last_active_at, session.id) < after)
            })
            .take(limit.get() + 1)
            .collect();
        for session in &mut page {
            session.current = session.id == principal.session_id;
        }
        Ok(Page::cut(page, limit, |last| {
            self.cursors.encode(
                SESSIONS_CURSOR_SCOPE,
                &SessionsCursor {
                    last_active_at: last.last_active_at,
                    id: last.id,
                },
            )
        }))
    }

    /// Ends one of the caller's live sessions, the current one included: its refresh tokens are
    /// revoked, then every access token it was given is refused on every instance (ADR 0027).
    /// [`UserError::SessionNotFound`] for an id that is not a live session of the caller's,
    /// whoever else it may belong to.
    pub async fn end_session(
        &self,
        principal: &Principal,
        session_id: Uuid,
    ) -> Result<(), UserError> {
        let now = self.clock.now();
        // Refresh tokens first: once the family is revoked the session gets no new access token,
        // so the revocation below, timed from after this, outlives every token it will ever have.
        if !self
            .refresh_tokens
            .revoke_user_family(principal.user_id, session_id, now)
            .await?
        {
            return Err(UserError::SessionNotFound);
        }
        self.revocation
            .revoke_session(principal.user_id, session_id)
            .await?;
        tracing::info!(user_id = %principal.user_id, %session_id, "session ended");
        Ok(())
    }

    /// One user by id (admin only).
    pub async fn get(&self, principal: &Principal, id: UserId) -> Result<User, UserError> {
        require_admin(principal)?;
        self.users.find_by_id(id).await?.ok_or(UserError::NotFound)
    }

    /// Makes the user with this email an admin (operator command). Access tokens issued before
    /// end at once: the user refreshes to carry the new role.
    pub async fn grant_admin(&self, email: &str) -> Result<User, UserError> {
        self.change_role(email, Role::Admin).await
    }

    /// Makes the user with this email a customer (operator command). Access tokens issued before,
    /// which carry the admin role, end at once.
    pub async fn revoke_admin(&self, email: &str) -> Result<User, UserError> {
        self.change_role(email, Role::Customer).await
    }

    /// Sets the role, then ends every access token issued before: those carry the old role, and
    /// so does one issued by a refresh that read the user just before the change. Fails when the
    /// tokens could not be ended; running it again is safe.
    async fn change_role(&self, email: &str, role: Role) -> Result<User, UserError> {
        let email =
            Email::parse(email).map_err(|e| ValidationErrors::single(e.for_field("email")))?;
        let user = self
            .users
            .set_role(&email, role, self.clock.now())
            .await?
            .ok_or(UserError::NotFound)?;
        self.invalidate_profile(user.id).await;
        self.revocation.revoke_earlier_tokens(user.id).await?;
        Ok(user)
    }
}

fn require_admin(principal: &Principal) -> Result<(), UserError> {
    if principal.is_admin() {
        Ok(())
    } else {
        Err(UserError::Forbidden)
    }
}

#[cfg(test)]
mod tests;
