//! AuthService against mockall mocks of every port.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use mockall::predicate::eq;
use strata_domain::{DisplayName, Email, RefreshTokenRecord, Role, User, UserId};
use strata_ports::{
    CreateUserError, HashError, MockClock, MockIdGenerator, MockPasswordHasher,
    MockRefreshTokenRepository, MockTokenBlacklist, MockUserRepository, PasswordVerdict, PortError,
    RotateOutcome, TokenRevocation, UserCredentials,
};
use uuid::Uuid;

use super::*;
use crate::test_support::{fixed_clock, jwt, now};
use crate::tokens::AccessClaims;

fn user(role: Role) -> User {
    User {
        id: UserId(Uuid::now_v7()),
        email: Email::parse("ada@example.com").expect("email"),
        display_name: DisplayName::parse("Ada").expect("name"),
        role,
        created_at: now(),
        updated_at: now(),
    }
}

/// The mocks, configured per test, then turned into a service.
struct Ports {
    users: MockUserRepository,
    refresh: MockRefreshTokenRepository,
    blacklist: MockTokenBlacklist,
    hasher: MockPasswordHasher,
    policy: RevocationCheckPolicy,
    clock: MockClock,
}

impl Ports {
    fn new() -> Self {
        Self {
            users: MockUserRepository::new(),
            refresh: MockRefreshTokenRepository::new(),
            blacklist: MockTokenBlacklist::new(),
            hasher: MockPasswordHasher::new(),
            policy: RevocationCheckPolicy::Deny,
            clock: fixed_clock(),
        }
    }

    fn service(self) -> AuthService {
        let clock = self.clock;
        let mut ids = MockIdGenerator::new();
        ids.expect_new_id().returning(Uuid::now_v7);
        AuthService::new(
            Arc::new(self.users),
            Arc::new(self.refresh),
            Arc::new(self.blacklist),
            Arc::new(self.hasher),
            Arc::new(clock),
            Arc::new(ids),
            jwt(),
            AuthSettings {
                refresh_ttl: Duration::from_secs(3600),
                revocation_check: self.policy,
            },
        )
    }
}

fn record(user_id: UserId) -> RefreshTokenRecord {
    RefreshTokenRecord {
        id: Uuid::now_v7(),
        family_id: Uuid::now_v7(),
        user_id,
        token_hash: vec![7; 32],
        created_at: now(),
        expires_at: now() + chrono::Duration::hours(1),
        rotated_at: None,
        revoked_at: None,
    }
}

#[tokio::test]
async fn registration_reports_every_invalid_field_and_touches_nothing() {
    let service = Ports::new().service();
    let error = service
        .register(RegisterInput {
            email: "not-an-email".into(),
            password: "short".into(),
            display_name: "   ".into(),
        })
        .await
        .expect_err("invalid");
    let AuthError::Validation(errors) = error else {
        panic!("expected validation, got {error:?}")
    };
    let fields: Vec<_> = errors
        .0
        .iter()
        .map(|e| (e.field.as_str(), e.code))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("email", "invalid_email"),
            ("display_name", "required"),
            ("password", "too_short")
        ]
    );
}

#[tokio::test]
async fn registration_creates_a_customer_and_starts_a_session() {
    let mut ports = Ports::new();
    ports
        .hasher
        .expect_hash()
        .times(1)
        .returning(|_| Ok("$argon2id$hash".into()));
    ports.users.expect_create().times(1).returning(|record| {
        assert_eq!(record.user.role, Role::Customer);
        assert_eq!(record.user.email.as_str(), "ada@example.com");
        assert_eq!(record.password_hash, "$argon2id$hash");
        Ok(record.user.clone())
    });
    ports.refresh.expect_insert().times(1).returning(|record| {
        assert_eq!(record.token_hash.len(), 32);
        assert!(record.rotated_at.is_none() && record.revoked_at.is_none());
        Ok(())
    });
    let service = ports.service();
    let (user, tokens) = service
        .register(RegisterInput {
            email: " Ada@Example.com ".into(),
            password: "correct horse battery".into(),
            display_name: "Ada".into(),
        })
        .await
        .expect("registered");
    let claims = jwt().verify(&tokens.access_token).expect("valid token");
    assert_eq!(claims.sub, user.id.0);
    assert_eq!(claims.role, Role::Customer);
    assert_eq!(tokens.expires_in, 900);
    assert_eq!(
        tokens.refresh_token.len(),
        43,
        "256 bits in unpadded base64url"
    );
}

#[tokio::test]
async fn registering_a_taken_email_is_email_taken() {
    let mut ports = Ports::new();
    ports.hasher.expect_hash().returning(|_| Ok("h".into()));
    ports
        .users
        .expect_create()
        .returning(|_| Err(CreateUserError::EmailTaken));
    let error = ports
        .service()
        .register(RegisterInput {
            email: "ada@example.com".into(),
            password: "correct horse battery".into(),
            display_name: "Ada".into(),
        })
        .await
        .expect_err("taken");
    assert!(matches!(error, AuthError::EmailTaken), "{error:?}");
}

#[tokio::test]
async fn an_unknown_email_costs_a_dummy_verification_and_says_invalid_credentials() {
    let mut ports = Ports::new();
    ports
        .users
        .expect_find_credentials()
        .times(1)
        .returning(|_| Ok(None));
    ports
        .hasher
        .expect_verify_dummy()
        .times(1)
        .returning(|_| Ok(()));
    let error = ports
        .service()
        .login("nobody@example.com", "whatever-password")
        .await
        .expect_err("unknown");
    assert!(matches!(error, AuthError::InvalidCredentials), "{error:?}");
}

#[tokio::test]
async fn a_malformed_email_at_login_also_costs_a_dummy_verification() {
    let mut ports = Ports::new();
    ports
        .hasher
        .expect_verify_dummy()
        .times(1)
        .returning(|_| Ok(()));
    let error = ports
        .service()
        .login("not an email", "whatever-password")
        .await
        .expect_err("malformed");
    assert!(matches!(error, AuthError::InvalidCredentials), "{error:?}");
}

#[tokio::test]
async fn a_wrong_password_is_invalid_credentials_and_starts_no_session() {
    let mut ports = Ports::new();
    let known = user(Role::Customer);
    ports.users.expect_find_credentials().returning(move |_| {
        Ok(Some(UserCredentials {
            user: known.clone(),
            password_hash: "h".into(),
        }))
    });
    ports.hasher.expect_verify().returning(|_, _| {
        Ok(PasswordVerdict {
            matches: false,
            needs_rehash: false,
        })
    });
    let error = ports
        .service()
        .login("ada@example.com", "wrong-password")
        .await
        .expect_err("wrong");
    assert!(matches!(error, AuthError::InvalidCredentials), "{error:?}");
}

#[tokio::test]
async fn empty_login_fields_are_validation_errors() {
    let error = Ports::new()
        .service()
        .login(" ", "")
        .await
        .expect_err("empty");
    let AuthError::Validation(errors) = error else {
        panic!("{error:?}")
    };
    assert_eq!(errors.0.len(), 2);
}

#[tokio::test]
async fn a_login_with_an_outdated_hash_upgrades_it() {
    let mut ports = Ports::new();
    let known = user(Role::Customer);
    let id = known.id;
    ports.users.expect_find_credentials().returning(move |_| {
        Ok(Some(UserCredentials {
            user: known.clone(),
            password_hash: "old".into(),
        }))
    });
    ports.hasher.expect_verify().returning(|_, _| {
        Ok(PasswordVerdict {
            matches: true,
            needs_rehash: true,
        })
    });
    ports
        .hasher
        .expect_hash()
        .times(1)
        .returning(|_| Ok("new".into()));
    ports
        .users
        .expect_update()
        .withf(move |user_id, update, _| {
            *user_id == id && update.password_hash.as_deref() == Some("new")
        })
        .times(1)
        .returning(|_, _, _| Ok(None));
    ports.refresh.expect_insert().times(1).returning(|_| Ok(()));
    ports
        .service()
        .login("ada@example.com", "correct horse battery")
        .await
        .expect("logged in");
}

#[tokio::test]
async fn an_overloaded_hasher_is_a_transient_failure() {
    let mut ports = Ports::new();
    ports
        .hasher
        .expect_hash()
        .returning(|_| Err(HashError::Overloaded));
    let error = ports
        .service()
        .register(RegisterInput {
            email: "ada@example.com".into(),
            password: "correct horse battery".into(),
            display_name: "Ada".into(),
        })
        .await
        .expect_err("overloaded");
    assert!(
        matches!(error, AuthError::Failure(Failure::Unavailable(_))),
        "{error:?}"
    );
}

#[tokio::test]
async fn refreshing_rotates_within_the_same_family() {
    let mut ports = Ports::new();
    let known = user(Role::Admin);
    let current = record(known.id);
    let (old_id, family) = (current.id, current.family_id);
    ports
        .refresh
        .expect_find_by_hash()
        .withf(|hash| hash == digest("presented").as_slice())
        .returning(move |_| Ok(Some(current.clone())));
    ports
        .users
        .expect_find_by_id()
        .returning(move |_| Ok(Some(known.clone())));
    ports
        .refresh
        .expect_rotate()
        .withf(move |old, new, _| *old == old_id && new.family_id == family && new.id != old_id)
        .times(1)
        .returning(|_, _, _| Ok(RotateOutcome::Rotated));
    let tokens = ports.service().refresh("presented").await.expect("rotated");
    let claims = jwt().verify(&tokens.access_token).expect("valid");
    assert_eq!(claims.sid, family);
    assert_eq!(claims.role, Role::Admin);
}

#[tokio::test]
async fn presenting_a_rotated_refresh_token_revokes_its_family() {
    let mut ports = Ports::new();
    let reused = RefreshTokenRecord {
        rotated_at: Some(now()),
        ..record(UserId(Uuid::now_v7()))
    };
    let family = reused.family_id;
    ports
        .refresh
        .expect_find_by_hash()
        .returning(move |_| Ok(Some(reused.clone())));
    ports
        .refresh
        .expect_revoke_family()
        .with(eq(family), eq(now()))
        .times(1)
        .returning(|_, _| Ok(()));
    let error = ports.service().refresh("stolen").await.expect_err("reuse");
    assert!(matches!(error, AuthError::TokenRevoked), "{error:?}");
}

#[tokio::test]
async fn losing_a_concurrent_rotation_is_treated_as_reuse() {
    let mut ports = Ports::new();
    let known = user(Role::Customer);
    let current = record(known.id);
    let family = current.family_id;
    ports
        .refresh
        .expect_find_by_hash()
        .returning(move |_| Ok(Some(current.clone())));
    ports
        .users
        .expect_find_by_id()
        .returning(move |_| Ok(Some(known.clone())));
    ports
        .refresh
        .expect_rotate()
        .returning(|_, _, _| Ok(RotateOutcome::AlreadyUsed));
    ports
        .refresh
        .expect_revoke_family()
        .with(eq(family), eq(now()))
        .times(1)
        .returning(|_, _| Ok(()));
    let error = ports
        .service()
        .refresh("raced")
        .await
        .expect_err("lost race");
    assert!(matches!(error, AuthError::TokenRevoked), "{error:?}");
}

#[tokio::test]
async fn expired_revoked_and_unknown_refresh_tokens_are_refused_distinctly() {
    let mut ports = Ports::new();
    let expired = RefreshTokenRecord {
        expires_at: now(),
        ..record(UserId(Uuid::now_v7()))
    };
    let revoked = RefreshTokenRecord {
        revoked_at: Some(now()),
        ..record(UserId(Uuid::now_v7()))
    };
    ports.refresh.expect_find_by_hash().returning(move |hash| {
        Ok(if hash == digest("expired").as_slice() {
            Some(expired.clone())
        } else if hash == digest("revoked").as_slice() {
            Some(revoked.clone())
        } else {
            None
        })
    });
    let service = ports.service();
    assert!(matches!(
        service.refresh("expired").await,
        Err(AuthError::TokenExpired)
    ));
    assert!(matches!(
        service.refresh("revoked").await,
        Err(AuthError::TokenRevoked)
    ));
    assert!(matches!(
        service.refresh("unknown").await,
        Err(AuthError::Unauthenticated)
    ));
    match service.refresh("").await {
        Err(AuthError::Validation(errors)) => {
            assert_eq!(errors.0.len(), 1);
            assert_eq!(errors.0[0].field, "refresh_token");
            assert_eq!(errors.0[0].code, "required");
        }
        other => panic!("a missing refresh token is a validation error, got {other:?}"),
    }
}

/// A clock at [`now`] that the test moves on, to tell when a use case read it.
fn movable_clock() -> (MockClock, Arc<Mutex<DateTime<Utc>>>) {
    let instant = Arc::new(Mutex::new(now()));
    let mut clock = MockClock::new();
    let read = instant.clone();
    clock
        .expect_now()
        .returning(move || *read.lock().expect("clock"));
    (clock, instant)
}

#[tokio::test]
async fn a_login_stamps_its_tokens_with_an_instant_from_before_the_password_was_read() {
    let mut ports = Ports::new();
    let (clock, instant) = movable_clock();
    ports.clock = clock;
    let known = user(Role::Customer);
    ports.users.expect_find_credentials().returning(move |_| {
        // A password change may land between this read and the token: the token must still
        // look older than the change.
        *instant.lock().expect("clock") = now() + chrono::Duration::milliseconds(300);
        Ok(Some(UserCredentials {
            user: known.clone(),
            password_hash: "h".into(),
        }))
    });
    ports.hasher.expect_verify().returning(|_, _| {
        Ok(PasswordVerdict {
            matches: true,
            needs_rehash: false,
        })
    });
    ports.refresh.expect_insert().returning(|_| Ok(()));
    let tokens = ports
        .service()
        .login("ada@example.com", "correct horse battery")
        .await
        .expect("logged in");
    let claims = jwt().verify(&tokens.access_token).expect("valid");
    assert_eq!(claims.issued_at(), now());
}

#[tokio::test]
async fn a_refresh_stamps_its_token_with_an_instant_from_before_the_role_was_read() {
    let mut ports = Ports::new();
    let (clock, instant) = movable_clock();
    ports.clock = clock;
    let known = user(Role::Admin);
    let current = record(known.id);
    ports
        .refresh
        .expect_find_by_hash()
        .returning(move |_| Ok(Some(current.clone())));
    ports.users.expect_find_by_id().returning(move |_| {
        *instant.lock().expect("clock") = now() + chrono::Duration::milliseconds(300);
        Ok(Some(known.clone()))
    });
    ports
        .refresh
        .expect_rotate()
        .returning(|_, _, _| Ok(RotateOutcome::Rotated));
    let tokens = ports.service().refresh("presented").await.expect("rotated");
    let claims = jwt().verify(&tokens.access_token).expect("valid");
    assert_eq!(claims.issued_at(), now());
}

fn principal(expires_in: chrono::Duration) -> Principal {
    Principal {
        user_id: UserId(Uuid::now_v7()),
        role: Role::Customer,
        jti: Uuid::now_v7(),
        session_id: Uuid::now_v7(),
        expires_at: now() + expires_in,
    }
}

#[tokio::test]
async fn logout_revokes_the_family_then_every_access_token_of_the_session() {
    // Whatever the presented token's remaining life: the session's other tokens (earlier
    // refreshes, a refresh racing this logout) may live a whole lifetime from now.
    for (expires_in, ttl) in [
        (chrono::Duration::minutes(15), Duration::from_secs(900 + 11)),
        (chrono::Duration::seconds(-3), Duration::from_secs(8)),
    ] {
        let mut ports = Ports::new();
        let caller = principal(expires_in);
        let mut order = mockall::Sequence::new();
        ports
            .refresh
            .expect_revoke_family()
            .with(eq(caller.session_id), eq(now()))
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _| Ok(()));
        // A lifetime (900 s) plus the leeway (5 s), the second the verifier compares in and the
        // skew between instances (5 s).
        ports
            .blacklist
            .expect_revoke_session()
            .with(
                eq(caller.user_id),
                eq(caller.session_id),
                eq(Duration::from_secs(900 + 11)),
            )
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _, _| Ok(()));
        // And the token's own entry, kept until its expiry plus the margins, which instances of
        // an earlier version read during a rolling deploy.
        ports
            .blacklist
            .expect_revoke()
            .with(eq(caller.user_id), eq(caller.jti), eq(ttl))
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _, _| Ok(()));
        ports.service().logout(&caller).await.expect("logged out");
    }
}

#[tokio::test]
async fn ending_earlier_tokens_keeps_the_instant_for_a_lifetime_plus_leeway_and_skew() {
    let mut ports = Ports::new();
    let user_id = UserId(Uuid::now_v7());
    ports
        .blacklist
        .expect_revoke_issued_before()
        .with(eq(user_id), eq(now()), eq(Duration::from_secs(900 + 11)))
        .times(1)
        .returning(|_, _, _| Ok(()));
    let instant = ports
        .service()
        .access_revocation()
        .revoke_earlier_tokens(user_id)
        .await
        .expect("revoked");
    assert_eq!(instant, now());
}

/// A token for a fresh user issued at `at`, with its claims.
fn issued_at(at: DateTime<Utc>) -> (String, AccessClaims) {
    jwt()
        .issue(
            Uuid::now_v7(),
            Role::Customer,
            Uuid::now_v7(),
            Uuid::now_v7(),
            at,
        )
        .expect("token")
}

/// `claims` signed as a version that did not write `iat_us`.
fn without_iat_us(mut claims: AccessClaims) -> String {
    claims.iat_us = None;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
    )
    .expect("signed")
}

#[tokio::test]
async fn a_token_issued_before_its_users_not_before_is_revoked_even_within_the_same_second() {
    let not_before = now() + chrono::Duration::milliseconds(500);
    let us = chrono::Duration::microseconds;
    // (issued at, refused): strictly earlier is refused; the instant itself and later are not.
    let cases = [
        (not_before - chrono::Duration::seconds(1), true),
        (not_before - us(1), true),
        (now(), true),
        (not_before, false),
        (not_before + us(1), false),
        (not_before + chrono::Duration::milliseconds(499), false),
    ];
    for (at, refused) in cases {
        let (token, claims) = issued_at(at);
        let mut ports = Ports::new();
        ports
            .blacklist
            .expect_lookup()
            .with(eq(UserId(claims.sub)), eq(claims.sid), eq(claims.jti))
            .times(1)
            .returning(move |_, _, _| {
                Ok(TokenRevocation {
                    not_before: Some(not_before),
                    ..TokenRevocation::default()
                })
            });
        let outcome = ports.service().authenticate(&token).await;
        assert_eq!(
            matches!(outcome, Err(AuthError::TokenRevoked)),
            refused,
            "issued {} µs from the not-before: {outcome:?}",
            (at - not_before).num_microseconds().unwrap_or_default()
        );
        if !refused {
            assert!(outcome.is_ok(), "{outcome:?}");
        }
    }

    // A token of an older version knows only its second, so it counts from the start of it.
    let (_, claims) = issued_at(not_before + us(1));
    let mut ports = Ports::new();
    ports.blacklist.expect_lookup().returning(move |_, _, _| {
        Ok(TokenRevocation {
            not_before: Some(not_before),
            ..TokenRevocation::default()
        })
    });
    assert!(matches!(
        ports.service().authenticate(&without_iat_us(claims)).await,
        Err(AuthError::TokenRevoked)
    ));
}

#[tokio::test]
async fn a_blacklisted_token_is_refused_as_revoked_and_an_unlisted_one_accepted() {
    let (token, claims) = issued_at(Utc::now());
    let mut ports = Ports::new();
    ports
        .blacklist
        .expect_lookup()
        .with(eq(UserId(claims.sub)), eq(claims.sid), eq(claims.jti))
        .returning(|_, _, _| {
            Ok(TokenRevocation {
                revoked: true,
                ..TokenRevocation::default()
            })
        });
    assert!(matches!(
        ports.service().authenticate(&token).await,
        Err(AuthError::TokenRevoked)
    ));

    let mut ports = Ports::new();
    ports
        .blacklist
        .expect_lookup()
        .returning(|_, _, _| Ok(TokenRevocation::default()));
    let principal = ports.service().authenticate(&token).await.expect("valid");
    assert_eq!(
        (principal.user_id, principal.jti),
        (UserId(claims.sub), claims.jti)
    );
}

#[tokio::test]
async fn an_unreachable_blacklist_denies_by_default_and_allows_when_configured() {
    let (token, claims) = issued_at(Utc::now());

    let mut deny = Ports::new();
    deny.blacklist
        .expect_lookup()
        .returning(|_, _, _| Err(PortError::unavailable(anyhow::anyhow!("redis down"))));
    let error = deny
        .service()
        .authenticate(&token)
        .await
        .expect_err("denied");
    assert!(
        matches!(error, AuthError::Failure(Failure::Unavailable(_))),
        "{error:?}"
    );

    let mut allow = Ports::new();
    allow.policy = RevocationCheckPolicy::Allow;
    allow
        .blacklist
        .expect_lookup()
        .returning(|_, _, _| Err(PortError::unavailable(anyhow::anyhow!("redis down"))));
    let principal = allow.service().authenticate(&token).await.expect("allowed");
    assert_eq!(principal.jti, claims.jti);
}

#[tokio::test]
async fn garbage_and_expired_access_tokens_are_distinguished() {
    let service = Ports::new().service();
    assert!(matches!(
        service.authenticate("garbage").await,
        Err(AuthError::Unauthenticated)
    ));
    let (expired, _) = issued_at(Utc::now() - chrono::Duration::hours(2));
    assert!(matches!(
        service.authenticate(&expired).await,
        Err(AuthError::TokenExpired)
    ));
}

#[tokio::test]
async fn a_token_of_an_ended_session_is_refused_as_revoked() {
    let (token, claims) = issued_at(now());
    let mut ports = Ports::new();
    ports
        .blacklist
        .expect_lookup()
        .with(eq(UserId(claims.sub)), eq(claims.sid), eq(claims.jti))
        .times(1)
        .returning(|_, _, _| {
            Ok(TokenRevocation {
                session_revoked: true,
                ..TokenRevocation::default()
            })
        });
    let outcome = ports.service().authenticate(&token).await;
    assert!(
        matches!(outcome, Err(AuthError::TokenRevoked)),
        "{outcome:?}"
    );
}
