//! Registration, login, refresh-token rotation, logout, and authentication of access tokens.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use strata_domain::{
    DisplayName, Email, FieldError, Password, RefreshTokenRecord, RefreshTokenState, Role, User,
    UserId, ValidationErrors,
};
use strata_ports::{
    Clock, CreateUserError, IdGenerator, NewUserRecord, PasswordHasher, RefreshTokenRepository,
    RotateOutcome, TokenBlacklist, UserRepository, UserUpdate,
};
use uuid::Uuid;

use crate::failure::Failure;
use crate::tokens::{AccessClaims, JwtCodec, JwtError};

/// What a caller of [`AuthService`] must handle.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Some fields are invalid; every one is listed.
    #[error("invalid input")]
    Validation(#[from] ValidationErrors),
    /// Registration with an email that already exists (in any letter case).
    #[error("email already registered")]
    EmailTaken,
    /// Wrong email or password (which one is not said).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// No token, or a token that is not valid.
    #[error("not authenticated")]
    Unauthenticated,
    /// A token past its expiry.
    #[error("token expired")]
    TokenExpired,
    /// A revoked token, or a reused refresh token (whose family is now revoked).
    #[error("token revoked")]
    TokenRevoked,
    /// Infrastructure failure.
    #[error(transparent)]
    Failure(#[from] Failure),
}

impl From<strata_ports::PortError> for AuthError {
    fn from(error: strata_ports::PortError) -> Self {
        AuthError::Failure(error.into())
    }
}

impl From<strata_ports::HashError> for AuthError {
    fn from(error: strata_ports::HashError) -> Self {
        AuthError::Failure(error.into())
    }
}

/// What to do when the revocation list cannot be read (Redis down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RevocationCheckPolicy {
    /// Refuse the request with 503: a revoked token is never accepted.
    #[default]
    Deny,
    /// Accept the token (logged): availability over the revocation guarantee.
    Allow,
}

/// Tunables of the auth flow.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Lifetime of a refresh token.
    pub refresh_ttl: Duration,
    /// Behaviour when the blacklist cannot be read.
    pub revocation_check: RevocationCheckPolicy,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            revocation_check: RevocationCheckPolicy::Deny,
        }
    }
}

/// A fresh access and refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPair {
    /// The JWT to send as `Authorization: Bearer`.
    pub access_token: String,
    /// The opaque token to exchange at `/v1/auth/refresh`.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Who.
    pub user_id: UserId,
    /// With which permissions (as of token issue).
    pub role: Role,
    /// The access token's id.
    pub jti: Uuid,
    /// The login session.
    pub session_id: Uuid,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
}

impl Principal {
    /// True for admins.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Raw registration input, validated by [`AuthService::register`].
#[derive(Debug, Clone)]
pub struct RegisterInput {
    /// Email as typed.
    pub email: String,
    /// Chosen password.
    pub password: String,
    /// Public name.
    pub display_name: String,
}

/// Ends access tokens before they expire, on every instance at once: the revocation side of
/// [`AuthService::authenticate`], shared with the use cases that change what a token vouches for
/// (a password, a role).
#[derive(Clone)]
pub struct AccessRevocation {
    blacklist: Arc<dyn TokenBlacklist>,
    jwt: Arc<JwtCodec>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for AccessRevocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessRevocation").finish_non_exhaustive()
    }
}

impl AccessRevocation {
    /// Revocations through `blacklist` of the tokens `jwt` issues, timed by `clock`.
    pub fn new(
        blacklist: Arc<dyn TokenBlacklist>,
        jwt: Arc<JwtCodec>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            blacklist,
            jwt,
            clock,
        }
    }

    /// Refuses one token for as long as any instance would accept it otherwise, leeway and clock
    /// skew included (a token past `exp` but inside the leeway is still refused).
    pub async fn revoke_token(
        &self,
        user: UserId,
        jti: Uuid,
        expires_at: DateTime<Utc>,
    ) -> Result<(), strata_ports::PortError> {
        let ttl = self.jwt.revocation_ttl(expires_at, self.clock.now());
        self.blacklist.revoke(user, jti, ttl).await
    }

    /// Refuses every token of one session of `user`, issued until now, for as long as any
    /// instance would accept one. The session must get no token afterwards (its refresh tokens
    /// are revoked first).
    pub async fn revoke_session(
        &self,
        user: UserId,
        session_id: Uuid,
    ) -> Result<(), strata_ports::PortError> {
        let ttl = self.jwt.revocation_ttl_of_earlier_tokens(self.clock.now());
        self.blacklist.revoke_session(user, session_id, ttl).await
    }

    /// Whether the token of `claims` was revoked, itself, with its session, or with every earlier
    /// token of its user, in one lookup.
    pub async fn is_revoked(&self, claims: &AccessClaims) -> Result<bool, strata_ports::PortError> {
        let revocation = self
            .blacklist
            .lookup(UserId(claims.sub), claims.sid, claims.jti)
            .await?;
        let issued_before_a_change = revocation
            .not_before
            .is_some_and(|not_before| claims.issued_at() < not_before);
        Ok(revocation.revoked || revocation.session_revoked || issued_before_a_change)
    }

    /// Refuses every token of `user` issued before now, and returns that instant. A token issued
    /// at or after it, even within the same second, is still accepted: tokens carry their issue
    /// instant to the µs.
    pub async fn revoke_earlier_tokens(
        &self,
        user: UserId,
    ) -> Result<DateTime<Utc>, strata_ports::PortError> {
        let now = self.clock.now();
        let ttl = self.jwt.revocation_ttl_of_earlier_tokens(now);
        self.blacklist.revoke_issued_before(user, now, ttl).await?;
        Ok(now)
    }
}

/// Passwords offered at login longer than this are refused before hashing (cost bound).
pub const MAX_LOGIN_PASSWORD_CHARS: usize = 1024;

/// The authentication use cases.
pub struct AuthService {
    users: Arc<dyn UserRepository>,
    refresh_tokens: Arc<dyn RefreshTokenRepository>,
    revocation: AccessRevocation,
    hasher: Arc<dyn PasswordHasher>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    jwt: Arc<JwtCodec>,
    settings: AuthSettings,
}

impl AuthService {
    /// Wires the service to its ports.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        users: Arc<dyn UserRepository>,
        refresh_tokens: Arc<dyn RefreshTokenRepository>,
        blacklist: Arc<dyn TokenBlacklist>,
        hasher: Arc<dyn PasswordHasher>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        jwt: Arc<JwtCodec>,
        settings: AuthSettings,
    ) -> Self {
        Self {
            users,
            refresh_tokens,
            revocation: AccessRevocation::new(blacklist, jwt.clone(), clock.clone()),
            hasher,
            clock,
            ids,
            jwt,
            settings,
        }
    }

    /// The revocations this service checks, for the use cases that must end tokens.
    pub fn access_revocation(&self) -> AccessRevocation {
        self.revocation.clone()
    }

    /// Creates a customer account and signs it in.
    pub async fn register(&self, input: RegisterInput) -> Result<(User, TokenPair), AuthError> {
        let mut errors = ValidationErrors::new();
        let email = errors.check("email", Email::parse(&input.email));
        let display_name = errors.check("display_name", DisplayName::parse(&input.display_name));
        let password = errors.check("password", Password::parse(&input.password));
        let (Some(email), Some(display_name), Some(password)) = (email, display_name, password)
        else {
            return Err(errors.into());
        };
        let password_hash = self.hasher.hash(&password).await?;
        let now = self.clock.now();
        let record = NewUserRecord {
            user: User {
                id: UserId(self.ids.new_id()),
                email,
                display_name,
                role: Role::Customer,
                created_at: now,
                updated_at: now,
            },
            password_hash,
        };
        let user = self
            .users
            .create(&record)
            .await
            .map_err(|error| match error {
                CreateUserError::EmailTaken => AuthError::EmailTaken,
                CreateUserError::Port(port) => port.into(),
            })?;
        let tokens = self.start_session(&user, now).await?;
        tracing::info!(user_id = %user.id, "user registered");
        Ok((user, tokens))
    }

    /// Exchanges credentials for tokens. An unknown email and a wrong password take the same time
    /// and give the same answer.
    pub async fn login(&self, email: &str, password: &str) -> Result<TokenPair, AuthError> {
        let mut errors = ValidationErrors::new();
        if email.trim().is_empty() {
            errors.push(FieldError::new("email", "required", "must not be empty"));
        }
        if password.is_empty() {
            errors.push(FieldError::new("password", "required", "must not be empty"));
        } else if password.chars().count() > MAX_LOGIN_PASSWORD_CHARS {
            errors.push(FieldError::new(
                "password",
                "too_long",
                format!("must be at most {MAX_LOGIN_PASSWORD_CHARS} characters"),
            ));
        }
        errors.into_result()?;
        let password = Password::unchecked(password);
        // Taken before the credentials are read: tokens issued from a password that a concurrent
        // change replaces then look issued before the change, which refuses them.
        let now = self.clock.now();
        let credentials = match Email::parse(email) {
            Ok(email) => self.users.find_credentials(&email).await?,
            Err(_) => None,
        };
        let Some(credentials) = credentials else {
            self.hasher.verify_dummy(&password).await?;
            return Err(AuthError::InvalidCredentials);
        };
        let verdict = self
            .hasher
            .verify(&password, &credentials.password_hash)
            .await?;
        if !verdict.matches {
            return Err(AuthError::InvalidCredentials);
        }
        if verdict.needs_rehash {
            self.upgrade_hash(credentials.user.id, &password, now).await;
        }
        self.start_session(&credentials.user, now).await
    }

    /// Replaces a hash made with outdated parameters; failure only delays the upgrade.
    async fn upgrade_hash(&self, user_id: UserId, password: &Password, now: DateTime<Utc>) {
        let result = async {
            let password_hash = self.hasher.hash(password).await?;
            let update = UserUpdate {
                password_hash: Some(password_hash),
                ..UserUpdate::default()
            };
            self.users.update(user_id, &update, now).await?;
            Ok::<_, AuthError>(())
        }
        .await;
        match result {
            Ok(()) => tracing::info!(%user_id, "password hash upgraded to current parameters"),
            Err(error) => {
                tracing::warn!(%user_id, error = %error, "password hash upgrade deferred")
            }
        }
    }

    /// Rotates a refresh token. Presenting a token that was already rotated revokes its whole family.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, AuthError> {
        // A missing token is a malformed request, named like any missing field; a token that
        // is there but not one of ours is a credential refused.
        if refresh_token.is_empty() {
            return Err(ValidationErrors::single(FieldError::new(
                "refresh_token",
                "required",
                "must not be empty",
            ))
            .into());
        }
        if refresh_token.len() > 256 {
            return Err(AuthError::Unauthenticated);
        }
        // Taken before the user is read, as in `login`: a token carrying a role that a concurrent
        // change replaces then looks issued before the change.
        let now = self.clock.now();
        let Some(current) = self
            .refresh_tokens
            .find_by_hash(&digest(refresh_token))
            .await?
        else {
            return Err(AuthError::Unauthenticated);
        };
        match current.state_at(now) {
            RefreshTokenState::Usable => {}
            RefreshTokenState::Revoked => return Err(AuthError::TokenRevoked),
            RefreshTokenState::Expired => return Err(AuthError::TokenExpired),
            RefreshTokenState::Reused => return Err(self.revoke_after_reuse(&current, now).await),
        }
        let Some(user) = self.users.find_by_id(current.user_id).await? else {
            self.refresh_tokens
                .revoke_family(current.family_id, now)
                .await?;
            return Err(AuthError::Unauthenticated);
        };
        let (token, record) = self.new_refresh_token(user.id, current.family_id, now);
        match self.refresh_tokens.rotate(current.id, &record, now).await? {
            RotateOutcome::Rotated => {}
            RotateOutcome::AlreadyUsed => return Err(self.revoke_after_reuse(&current, now).await),
        }
        self.token_pair(&user, current.family_id, token, now)
    }

    async fn revoke_after_reuse(
        &self,
        token: &RefreshTokenRecord,
        now: DateTime<Utc>,
    ) -> AuthError {
        tracing::warn!(user_id = %token.user_id, family_id = %token.family_id, "refresh token reused; revoking its family");
        match self
            .refresh_tokens
            .revoke_family(token.family_id, now)
            .await
        {
            Ok(()) => AuthError::TokenRevoked,
            Err(error) => error.into(),
        }
    }

    /// Ends the caller's session: its refresh tokens are revoked, then every access token of the
    /// session (the one presented, those of earlier refreshes, and one a racing refresh may have
    /// just issued) is refused for as long as any instance would otherwise accept it.
    pub async fn logout(&self, principal: &Principal) -> Result<(), AuthError> {
        let now = self.clock.now();
        // Refresh tokens first: the session gets no access token after this, so the session
        // entry, timed from after it, outlives every token the session ever had.
        self.refresh_tokens
            .revoke_family(principal.session_id, now)
            .await?;
        self.revocation
            .revoke_session(principal.user_id, principal.session_id)
            .await?;
        // The presented token's own entry too: an instance of an earlier version, still serving
        // during a rolling deploy, reads that one and not the session's.
        self.revocation
            .revoke_token(principal.user_id, principal.jti, principal.expires_at)
            .await?;
        tracing::info!(user_id = %principal.user_id, "logged out");
        Ok(())
    }

    /// The user an access token was issued to, if its signature and expiry hold; no revocation
    /// check (no I/O). For keying per-user budgets, never for authorisation.
    pub fn token_subject(&self, access_token: &str) -> Option<UserId> {
        self.jwt
            .verify(access_token)
            .ok()
            .map(|claims| UserId(claims.sub))
    }

    /// Verifies an access token and checks, in one lookup, that neither it, nor its session, nor
    /// every token of its user issued before some instant (a password or role change) was revoked.
    pub async fn authenticate(&self, access_token: &str) -> Result<Principal, AuthError> {
        let claims = self.jwt.verify(access_token).map_err(|error| match error {
            JwtError::Expired => AuthError::TokenExpired,
            JwtError::Invalid(reason) => {
                tracing::debug!(%reason, "access token refused");
                AuthError::Unauthenticated
            }
        })?;
        let user_id = UserId(claims.sub);
        match self.revocation.is_revoked(&claims).await {
            Ok(false) => {}
            Ok(true) => return Err(AuthError::TokenRevoked),
            Err(error) => match self.settings.revocation_check {
                RevocationCheckPolicy::Deny => return Err(error.into()),
                RevocationCheckPolicy::Allow => {
                    tracing::warn!(error = %error, "revocation list unreachable; accepting token by configuration");
                }
            },
        }
        Ok(Principal {
            user_id,
            role: claims.role,
            jti: claims.jti,
            session_id: claims.sid,
            expires_at: claims.expires_at(),
        })
    }

    async fn start_session(&self, user: &User, now: DateTime<Utc>) -> Result<TokenPair, AuthError> {
        let family_id = self.ids.new_id();
        let (token, record) = self.new_refresh_token(user.id, family_id, now);
        self.refresh_tokens.insert(&record).await?;
        self.token_pair(user, family_id, token, now)
    }

    fn new_refresh_token(
        &self,
        user_id: UserId,
        family_id: Uuid,
        now: DateTime<Utc>,
    ) -> (String, RefreshTokenRecord) {
        let token = random_token();
        let ttl = chrono::Duration::from_std(self.settings.refresh_ttl)
            .unwrap_or(chrono::Duration::days(30));
        let record = RefreshTokenRecord {
            id: self.ids.new_id(),
            family_id,
            user_id,
            token_hash: digest(&token),
            created_at: now,
            expires_at: now + ttl,
            rotated_at: None,
            revoked_at: None,
        };
        (token, record)
    }

    fn token_pair(
        &self,
        user: &User,
        session_id: Uuid,
        refresh_token: String,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, AuthError> {
        let (access_token, _) = self
            .jwt
            .issue(user.id.0, user.role, session_id, self.ids.new_id(), now)
            .map_err(|error| AuthError::Failure(Failure::Unexpected(error)))?;
        Ok(TokenPair {
            access_token,
            refresh_token,
            expires_in: self.jwt.access_ttl().as_secs(),
        })
    }
}

/// 256 random bits, base64url.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The OS random source failing is unrecoverable for a server that issues credentials.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a refresh token.
pub(crate) fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests;
