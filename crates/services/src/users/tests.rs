//! UserService against mockall mocks of every port.

use std::sync::Arc;
use std::time::Duration;

use mockall::Sequence;
use mockall::predicate::eq;
use strata_domain::{DisplayName, Email, Role, Session, User, UserId};
use strata_ports::{
    MockCache, MockPasswordHasher, MockRefreshTokenRepository, MockTokenBlacklist,
    MockUserRepository, PasswordVerdict, PortError, UserCredentials,
};
use uuid::Uuid;

use super::*;
use crate::test_support::{fixed_clock, jwt, now, unavailable};

/// How long a revocation of every earlier token is kept: a token's lifetime (900 s) plus the
/// leeway (5 s), the second `exp` is compared in, and the clock skew allowed (5 s).
const EARLIER_TOKENS_TTL: Duration = Duration::from_secs(900 + 5 + 1 + 5);

fn user(id: UserId) -> User {
    User {
        id,
        email: Email::parse("ada@example.com").expect("email"),
        display_name: DisplayName::parse("Ada").expect("name"),
        role: Role::Customer,
        created_at: now(),
        updated_at: now(),
    }
}

fn principal(role: Role) -> Principal {
    Principal {
        user_id: UserId(Uuid::now_v7()),
        role,
        jti: Uuid::now_v7(),
        session_id: Uuid::now_v7(),
        expires_at: now(),
    }
}

struct Ports {
    users: MockUserRepository,
    refresh: MockRefreshTokenRepository,
    cache: MockCache,
    hasher: MockPasswordHasher,
    blacklist: MockTokenBlacklist,
}

impl Ports {
    fn new() -> Self {
        Self {
            users: MockUserRepository::new(),
            refresh: MockRefreshTokenRepository::new(),
            cache: MockCache::new(),
            hasher: MockPasswordHasher::new(),
            blacklist: MockTokenBlacklist::new(),
        }
    }

    fn service(self) -> UserService {
        let clock: Arc<dyn Clock> = Arc::new(fixed_clock());
        UserService::new(
            Arc::new(self.users),
            Arc::new(self.refresh),
            Arc::new(self.cache),
            Arc::new(self.hasher),
            clock.clone(),
            CursorCodec::new(b"test cursor key"),
            Duration::from_secs(300),
            AccessRevocation::new(Arc::new(self.blacklist), jwt(), clock),
        )
    }

    /// A caller's password change that passes every check; the test says what happens to the
    /// update.
    fn changing_the_password(caller: &Principal) -> Self {
        let stored = user(caller.user_id);
        let mut ports = Self::new();
        ports
            .users
            .expect_find_credentials_by_id()
            .returning(move |_| {
                Ok(Some(UserCredentials {
                    user: stored.clone(),
                    password_hash: "h".into(),
                }))
            });
        ports.hasher.expect_verify().returning(|_, _| {
            Ok(PasswordVerdict {
                matches: true,
                needs_rehash: false,
            })
        });
        ports
            .hasher
            .expect_hash()
            .returning(|_| Ok("new-hash".into()));
        ports.cache.expect_delete_many().returning(|_| Ok(()));
        ports
    }

    /// The update storing `new-hash` happens once, in `order`, and succeeds.
    fn storing_the_new_hash(&mut self, caller: &Principal, order: &mut Sequence) {
        let updated = user(caller.user_id);
        self.users
            .expect_update()
            .withf(|_, update, _| update.password_hash.as_deref() == Some("new-hash"))
            .times(1)
            .in_sequence(order)
            .returning(move |_, _, _| Ok(Some(updated.clone())));
    }
}

fn new_password() -> ProfileChanges {
    ProfileChanges {
        password: Some("a brand new password".into()),
        current_password: Some("the old password".into()),
        ..ProfileChanges::default()
    }
}

#[tokio::test]
async fn a_cached_profile_is_served_without_the_database() {
    let caller = principal(Role::Customer);
    let cached = user(caller.user_id);
    let json = serde_json::to_string(&cached).expect("json");
    let mut ports = Ports::new();
    ports
        .cache
        .expect_get()
        .with(eq(format!("user:profile:{}", caller.user_id)))
        .returning(move |_| Ok(Some(json.clone())));
    assert_eq!(ports.service().me(&caller).await.expect("profile"), cached);
}

#[tokio::test]
async fn a_cache_miss_loads_from_the_database_and_fills_the_cache() {
    let caller = principal(Role::Customer);
    let stored = user(caller.user_id);
    let expected = stored.clone();
    let mut ports = Ports::new();
    ports.cache.expect_get().returning(|_| Ok(None));
    ports
        .users
        .expect_find_by_id()
        .times(1)
        .returning(move |_| Ok(Some(stored.clone())));
    ports
        .cache
        .expect_set()
        .withf(|_, _, ttl| *ttl == Duration::from_secs(300))
        .times(1)
        .returning(|_, _, _| Ok(()));
    assert_eq!(
        ports.service().me(&caller).await.expect("profile"),
        expected
    );
}

#[tokio::test]
async fn an_unreachable_cache_is_bypassed() {
    let caller = principal(Role::Customer);
    let stored = user(caller.user_id);
    let mut ports = Ports::new();
    ports
        .cache
        .expect_get()
        .returning(|_| Err(PortError::unavailable(anyhow::anyhow!("down"))));
    ports
        .cache
        .expect_set()
        .returning(|_, _, _| Err(PortError::unavailable(anyhow::anyhow!("down"))));
    ports
        .users
        .expect_find_by_id()
        .returning(move |_| Ok(Some(stored.clone())));
    assert!(ports.service().me(&caller).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_one_profile_make_one_database_query() {
    let caller = principal(Role::Customer);
    let stored = user(caller.user_id);
    let mut ports = Ports::new();
    ports.cache.expect_get().returning(|_| Ok(None));
    ports.cache.expect_set().returning(|_, _, _| Ok(()));
    // The slow load holds one worker thread while the other requests arrive on the other.
    ports
        .users
        .expect_find_by_id()
        .times(1)
        .returning(move |_| {
            std::thread::sleep(Duration::from_millis(500));
            Ok(Some(stored.clone()))
        });
    let service = Arc::new(ports.service());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (service, caller) = (service.clone(), caller.clone());
            tokio::spawn(async move { service.me(&caller).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.expect("task").is_ok());
    }
}

#[tokio::test]
async fn a_profile_update_needs_something_to_change() {
    let error = Ports::new()
        .service()
        .update_me(&principal(Role::Customer), ProfileChanges::default())
        .await
        .expect_err("empty");
    assert!(matches!(error, UserError::Validation(_)), "{error:?}");
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_lists_every_bad_field() {
    let changes = ProfileChanges {
        display_name: Some(String::new()),
        password: Some("short".into()),
        current_password: None,
    };
    let error = Ports::new()
        .service()
        .update_me(&principal(Role::Customer), changes)
        .await
        .expect_err("invalid");
    let UserError::Validation(errors) = error else {
        panic!("{error:?}")
    };
    let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, vec!["display_name", "password", "current_password"]);
}

#[tokio::test]
async fn a_wrong_current_password_is_refused() {
    let caller = principal(Role::Customer);
    let stored = user(caller.user_id);
    let mut ports = Ports::new();
    ports
        .users
        .expect_find_credentials_by_id()
        .returning(move |_| {
            Ok(Some(UserCredentials {
                user: stored.clone(),
                password_hash: "h".into(),
            }))
        });
    ports.hasher.expect_verify().returning(|_, _| {
        Ok(PasswordVerdict {
            matches: false,
            needs_rehash: false,
        })
    });
    let changes = ProfileChanges {
        password: Some("a brand new password".into()),
        current_password: Some("not it".into()),
        ..ProfileChanges::default()
    };
    let error = ports
        .service()
        .update_me(&caller, changes)
        .await
        .expect_err("mismatch");
    let UserError::Validation(errors) = error else {
        panic!("{error:?}")
    };
    assert_eq!(
        (errors.0[0].field.as_str(), errors.0[0].code),
        ("current_password", "mismatch")
    );
}

#[tokio::test]
async fn a_password_change_ends_other_sessions_and_every_earlier_access_token() {
    let caller = principal(Role::Customer);
    let mut ports = Ports::changing_the_password(&caller);
    let mut order = Sequence::new();
    ports
        .blacklist
        .expect_revoke_issued_before()
        .with(eq(caller.user_id), eq(now()), eq(EARLIER_TOKENS_TTL))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _, _| Ok(()));
    ports.storing_the_new_hash(&caller, &mut order);
    ports
        .refresh
        .expect_revoke_all_for_user()
        .with(eq(caller.user_id), eq(Some(caller.session_id)), eq(now()))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _, _| Ok(()));
    // Again once the other sessions can no longer refresh.
    ports
        .blacklist
        .expect_revoke_issued_before()
        .with(eq(caller.user_id), eq(now()), eq(EARLIER_TOKENS_TTL))
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _, _| Ok(()));
    ports
        .service()
        .update_me(&caller, new_password())
        .await
        .expect("updated");
}

#[tokio::test]
async fn with_the_revocation_list_unreachable_a_password_change_changes_nothing() {
    let caller = principal(Role::Customer);
    let mut ports = Ports::changing_the_password(&caller);
    ports.users.expect_update().never();
    ports.refresh.expect_revoke_all_for_user().never();
    ports
        .blacklist
        .expect_revoke_issued_before()
        .returning(|_, _, _| Err(unavailable()));
    let error = ports
        .service()
        .update_me(&caller, new_password())
        .await
        .expect_err("unavailable");
    assert!(
        matches!(error, UserError::Failure(Failure::Unavailable(_))),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_password_change_made_is_reported_made_when_only_the_second_revocation_fails() {
    let caller = principal(Role::Customer);
    let mut ports = Ports::changing_the_password(&caller);
    ports
        .refresh
        .expect_revoke_all_for_user()
        .times(1)
        .returning(|_, _, _| Ok(()));
    let mut order = Sequence::new();
    ports
        .blacklist
        .expect_revoke_issued_before()
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _, _| Ok(()));
    ports.storing_the_new_hash(&caller, &mut order);
    ports
        .blacklist
        .expect_revoke_issued_before()
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _, _| Err(unavailable()));
    ports
        .service()
        .update_me(&caller, new_password())
        .await
        .expect("the password did change");
}

#[tokio::test]
async fn a_display_name_change_revokes_nothing() {
    let caller = principal(Role::Customer);
    let updated = user(caller.user_id);
    let mut ports = Ports::new();
    ports
        .users
        .expect_update()
        .returning(move |_, _, _| Ok(Some(updated.clone())));
    ports.cache.expect_delete_many().returning(|_| Ok(()));
    ports.blacklist.expect_revoke_issued_before().never();
    ports.refresh.expect_revoke_all_for_user().never();
    let changes = ProfileChanges {
        display_name: Some("Countess".into()),
        ..ProfileChanges::default()
    };
    ports
        .service()
        .update_me(&caller, changes)
        .await
        .expect("updated");
}

#[tokio::test]
async fn only_admins_list_or_read_other_users() {
    let service = Ports::new().service();
    let customer = principal(Role::Customer);
    assert!(matches!(
        service.list(&customer, None, None).await,
        Err(UserError::Forbidden)
    ));
    assert!(matches!(
        service.get(&customer, UserId(Uuid::now_v7())).await,
        Err(UserError::Forbidden)
    ));
}

#[tokio::test]
async fn a_bad_cursor_and_a_bad_limit_are_both_reported() {
    let error = Ports::new()
        .service()
        .list(&principal(Role::Admin), Some("forged"), Some("500"))
        .await
        .expect_err("invalid");
    let UserError::Validation(errors) = error else {
        panic!("{error:?}")
    };
    let fields: Vec<_> = errors
        .0
        .iter()
        .map(|e| (e.field.as_str(), e.code))
        .collect();
    assert_eq!(
        fields,
        vec![("limit", "out_of_range"), ("cursor", "invalid_cursor")]
    );
}

#[tokio::test]
async fn a_full_page_carries_a_cursor_that_resumes_after_its_last_item() {
    let first: Vec<User> = (0..3).map(|_| user(UserId(Uuid::now_v7()))).collect();
    let last_of_page = first[1].clone();
    let mut ports = Ports::new();
    let page = first.clone();
    ports
        .users
        .expect_list()
        .with(eq(None), eq(3))
        .times(1)
        .returning(move |_, _| Ok(page.clone()));
    ports
        .users
        .expect_list()
        .withf(move |after, limit| {
            *limit == 3
                && after.is_some_and(|key| {
                    key.id == last_of_page.id && key.created_at == last_of_page.created_at
                })
        })
        .times(1)
        .returning(|_, _| Ok(Vec::new()));
    let service = ports.service();
    let admin = principal(Role::Admin);
    let page = service.list(&admin, None, Some("2")).await.expect("page");
    assert_eq!(page.items.len(), 2);
    let cursor = page.next_cursor.expect("more pages");
    let next = service
        .list(&admin, Some(&cursor), Some("2"))
        .await
        .expect("page 2");
    assert!(next.items.is_empty() && next.next_cursor.is_none());
}

#[tokio::test]
async fn granting_admin_to_an_unknown_email_is_not_found() {
    let mut ports = Ports::new();
    ports.users.expect_set_role().returning(|_, _, _| Ok(None));
    ports.blacklist.expect_revoke_issued_before().never();
    assert!(matches!(
        ports.service().grant_admin("ghost@example.com").await,
        Err(UserError::NotFound)
    ));
    let service = Ports::new().service();
    assert!(matches!(
        service.grant_admin("bad").await,
        Err(UserError::Validation(_))
    ));
}

#[tokio::test]
async fn a_role_change_ends_every_earlier_access_token_after_it_is_stored() {
    for role in [Role::Admin, Role::Customer] {
        let changed = User {
            role,
            ..user(UserId(Uuid::now_v7()))
        };
        let id = changed.id;
        let mut ports = Ports::new();
        let mut order = Sequence::new();
        ports
            .users
            .expect_set_role()
            .withf(move |email, set, at| {
                email.as_str() == "ada@example.com" && *set == role && *at == now()
            })
            .times(1)
            .in_sequence(&mut order)
            .returning(move |_, _, _| Ok(Some(changed.clone())));
        ports.cache.expect_delete_many().returning(|_| Ok(()));
        ports
            .blacklist
            .expect_revoke_issued_before()
            .with(eq(id), eq(now()), eq(EARLIER_TOKENS_TTL))
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _, _| Ok(()));
        let service = ports.service();
        let user = match role {
            Role::Admin => service.grant_admin("Ada@example.com").await,
            Role::Customer => service.revoke_admin("Ada@example.com").await,
        }
        .expect("changed");
        assert_eq!(user.role, role);
    }
}

#[tokio::test]
async fn a_role_change_whose_tokens_could_not_be_ended_is_an_error() {
    let mut ports = Ports::new();
    let changed = user(UserId(Uuid::now_v7()));
    ports
        .users
        .expect_set_role()
        .returning(move |_, _, _| Ok(Some(changed.clone())));
    ports.cache.expect_delete_many().returning(|_| Ok(()));
    ports
        .blacklist
        .expect_revoke_issued_before()
        .returning(|_, _, _| Err(unavailable()));
    let error = ports
        .service()
        .revoke_admin("ada@example.com")
        .await
        .expect_err("tokens not ended");
    assert!(
        matches!(error, UserError::Failure(Failure::Unavailable(_))),
        "{error:?}"
    );
}

fn session(id: Uuid, last_active: chrono::Duration) -> Session {
    Session {
        id,
        started_at: now() - chrono::Duration::days(3),
        last_active_at: now() - last_active,
        expires_at: now() - last_active + chrono::Duration::days(30),
        current: false,
    }
}

#[tokio::test]
async fn ending_a_session_revokes_its_family_then_all_its_access_tokens() {
    // Another session of the caller's, and the caller's own (which amounts to a logout).
    for own in [false, true] {
        let mut ports = Ports::new();
        let caller = principal(Role::Customer);
        let ended = if own {
            caller.session_id
        } else {
            Uuid::now_v7()
        };
        let mut order = mockall::Sequence::new();
        ports
            .refresh
            .expect_revoke_user_family()
            .with(eq(caller.user_id), eq(ended), eq(now()))
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _, _| Ok(true));
        // Kept for as long as a token issued now could be accepted: a lifetime plus the leeway
        // and the skew, like a not-before.
        ports
            .blacklist
            .expect_revoke_session()
            .with(
                eq(caller.user_id),
                eq(ended),
                eq(Duration::from_secs(900 + 11)),
            )
            .times(1)
            .in_sequence(&mut order)
            .returning(|_, _, _| Ok(()));
        ports
            .service()
            .end_session(&caller, ended)
            .await
            .expect("ended");
    }
}

#[tokio::test]
async fn a_session_that_is_not_a_live_one_of_the_callers_is_not_found_and_nothing_is_revoked() {
    let mut ports = Ports::new();
    let caller = principal(Role::Customer);
    // The repository answers alike for an unknown, ended, expired or another user's family.
    ports
        .refresh
        .expect_revoke_user_family()
        .times(1)
        .returning(|_, _, _| Ok(false));
    // No expectation on the blacklist: any write to it fails the test.
    let error = ports
        .service()
        .end_session(&caller, Uuid::now_v7())
        .await
        .expect_err("not found");
    assert!(matches!(error, UserError::SessionNotFound), "{error:?}");
}

#[tokio::test]
async fn ending_a_session_fails_when_its_access_tokens_cannot_be_revoked() {
    let mut ports = Ports::new();
    let caller = principal(Role::Customer);
    ports
        .refresh
        .expect_revoke_user_family()
        .returning(|_, _, _| Ok(true));
    ports
        .blacklist
        .expect_revoke_session()
        .returning(|_, _, _| Err(PortError::unavailable(anyhow::anyhow!("redis down"))));
    let error = ports
        .service()
        .end_session(&caller, Uuid::now_v7())
        .await
        .expect_err("unavailable");
    assert!(
        matches!(error, UserError::Failure(Failure::Unavailable(_))),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_callers_sessions_are_paged_most_recent_first_with_its_own_marked_current() {
    let caller = principal(Role::Customer);
    let other = Uuid::now_v7();
    let idle = Uuid::now_v7();
    // As stored, in no useful order: the service orders them.
    let stored = vec![
        session(idle, chrono::Duration::days(2)),
        session(other, chrono::Duration::minutes(2)),
        session(caller.session_id, chrono::Duration::hours(1)),
    ];
    let mut ports = Ports::new();
    let listed = stored.clone();
    ports
        .refresh
        .expect_sessions()
        .with(eq(caller.user_id), eq(now()))
        .times(2)
        .returning(move |_, _| Ok(listed.clone()));
    let service = ports.service();
    let first = service
        .sessions(&caller, None, Some("2"))
        .await
        .expect("listed");
    assert_eq!(
        first.items,
        vec![
            stored[1].clone(),
            Session {
                current: true,
                ..stored[2].clone()
            }
        ],
        "most recently active first, only the caller's own session current"
    );
    let cursor = first.next_cursor.expect("a third session follows");
    let second = service
        .sessions(&caller, Some(&cursor), Some("2"))
        .await
        .expect("listed");
    assert_eq!(second.items, vec![stored[0].clone()]);
    assert_eq!(second.next_cursor, None);
}

#[tokio::test]
async fn a_sessions_cursor_of_another_list_and_a_bad_limit_are_both_reported() {
    let caller = principal(Role::Customer);
    let foreign = CursorCodec::new(b"test cursor key").encode(
        "users",
        &serde_json::json!({"created_at": now(), "id": Uuid::nil()}),
    );
    // No expectation on the repository: nothing is read for a refused request.
    let error = Ports::new()
        .service()
        .sessions(&caller, Some(&foreign), Some("0"))
        .await
        .expect_err("refused");
    let UserError::Validation(errors) = error else {
        panic!("{error:?}");
    };
    let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["limit", "cursor"]);
}
