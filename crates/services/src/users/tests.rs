//! UserService against mockall mocks of every port.

use std::sync::Arc;
use std::time::Duration;

use mockall::predicate::eq;
use strata_domain::{DisplayName, Email, Role, User, UserId};
use strata_ports::{
    MockCache, MockPasswordHasher, MockRefreshTokenRepository, MockUserRepository, PasswordVerdict,
    PortError, UserCredentials,
};
use uuid::Uuid;

use super::*;
use crate::test_support::{fixed_clock, now};

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
}

impl Ports {
    fn new() -> Self {
        Self {
            users: MockUserRepository::new(),
            refresh: MockRefreshTokenRepository::new(),
            cache: MockCache::new(),
            hasher: MockPasswordHasher::new(),
        }
    }

    fn service(self) -> UserService {
        let clock = fixed_clock();
        UserService::new(
            Arc::new(self.users),
            Arc::new(self.refresh),
            Arc::new(self.cache),
            Arc::new(self.hasher),
            Arc::new(clock),
            CursorCodec::new(b"test cursor key"),
            Duration::from_secs(300),
        )
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
async fn a_password_change_invalidates_the_profile_and_ends_other_sessions() {
    let caller = principal(Role::Customer);
    let stored = user(caller.user_id);
    let updated = stored.clone();
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
            matches: true,
            needs_rehash: false,
        })
    });
    ports
        .hasher
        .expect_hash()
        .returning(|_| Ok("new-hash".into()));
    ports
        .users
        .expect_update()
        .withf(|_, update, _| update.password_hash.as_deref() == Some("new-hash"))
        .returning(move |_, _, _| Ok(Some(updated.clone())));
    ports
        .cache
        .expect_delete_many()
        .times(1)
        .returning(|_| Ok(()));
    ports
        .refresh
        .expect_revoke_all_for_user()
        .with(eq(caller.user_id), eq(Some(caller.session_id)), eq(now()))
        .times(1)
        .returning(|_, _, _| Ok(()));
    let changes = ProfileChanges {
        password: Some("a brand new password".into()),
        current_password: Some("the old password".into()),
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
