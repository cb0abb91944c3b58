//! The PostgreSQL adapters against a real server, each test in a fresh database cloned from the
//! migrated template.
//!
//! The adapter's only integration-test binary (ADR 0026): the users and refresh tokens adapters,
//! the health check, migrations and the schema are tested here, the other adapters in the modules
//! under `tests/postgres/`, and `helpers` holds the fixtures more than one of them uses.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers fail loudly by design

#[path = "postgres/admin.rs"]
mod admin;
#[path = "postgres/billing.rs"]
mod billing;
#[path = "postgres/catalog.rs"]
mod catalog;
#[path = "postgres/exports.rs"]
mod exports;
#[path = "postgres/helpers.rs"]
mod helpers;
#[path = "postgres/jobs.rs"]
mod jobs;
#[path = "postgres/timeouts.rs"]
mod timeouts;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use helpers::new_user;
use strata_domain::{DisplayName, Email, RefreshTokenRecord, Role, UserId};
use strata_ports::{
    CreateUserError, HealthCheck, PortError, RefreshTokenRepository, RotateOutcome, UserPageKey,
    UserRepository, UserUpdate,
};
use strata_postgres::testing::{TestDatabase, now};
use strata_postgres::{
    Database, PgRefreshTokenRepository, PgUserRepository, PoolSettings, run_migrations,
};
use uuid::Uuid;

#[tokio::test]
async fn a_created_user_is_found_by_id_and_by_email_in_any_case() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let users = PgUserRepository::new(test_db.database());
    let record = new_user("ada@example.com", now());
    let created = users.create(&record).await?;
    assert_eq!(created, record.user);
    assert_eq!(users.find_by_id(created.id).await?, Some(created.clone()));
    let credentials = users
        .find_credentials(&Email::parse("ADA@Example.COM")?)
        .await?
        .expect("found");
    assert_eq!(credentials.user, created);
    assert_eq!(credentials.password_hash, record.password_hash);
    assert!(users.find_by_id(UserId(Uuid::now_v7())).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_duplicate_email_in_another_case_is_email_taken_even_past_the_domain()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let users = PgUserRepository::new(test_db.database());
    users.create(&new_user("ada@example.com", now())).await?;
    let duplicate = users.create(&new_user("Ada@Example.com", now())).await;
    assert!(matches!(duplicate, Err(CreateUserError::EmailTaken)));

    // The database enforces it too, for writers that bypass the domain's normalisation.
    let database = test_db.database();
    let mut conn = database.connection().await?;
    let raw = diesel::sql_query(
        "INSERT INTO users (id, email, display_name, password_hash) VALUES (gen_random_uuid(), 'ADA@EXAMPLE.COM', 'x', 'h')",
    )
    .execute(&mut conn)
    .await;
    assert!(raw.is_err(), "the lower(email) unique index must refuse it");
    Ok(())
}

#[tokio::test]
async fn updates_change_only_what_they_name_and_roles_can_be_granted() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let users = PgUserRepository::new(test_db.database());
    let created = users.create(&new_user("ada@example.com", now())).await?;
    let later = now() + chrono::Duration::seconds(5);
    let update = UserUpdate {
        display_name: Some(DisplayName::parse("Countess")?),
        password_hash: None,
    };
    let updated = users
        .update(created.id, &update, later)
        .await?
        .expect("exists");
    assert_eq!(updated.display_name.as_str(), "Countess");
    assert_eq!(updated.updated_at, later);
    let credentials = users
        .find_credentials_by_id(created.id)
        .await?
        .expect("exists");
    assert_eq!(
        credentials.password_hash,
        new_user("x@example.com", now()).password_hash
    );

    let admin = users
        .set_role(&Email::parse("ADA@example.com")?, Role::Admin, later)
        .await?
        .expect("exists");
    assert_eq!(admin.role, Role::Admin);
    assert!(
        users
            .set_role(&Email::parse("ghost@example.com")?, Role::Admin, later)
            .await?
            .is_none()
    );
    assert!(
        users
            .update(UserId(Uuid::now_v7()), &update, later)
            .await?
            .is_none()
    );
    Ok(())
}

#[tokio::test]
async fn keyset_pages_walk_every_user_once_in_order_even_with_equal_timestamps()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let users = PgUserRepository::new(test_db.database());
    let base = now();
    let mut expected = Vec::new();
    for i in 0..23 {
        // Groups of three share a timestamp, so the id must break ties.
        let created_at = base + chrono::Duration::seconds(i / 3);
        expected.push(
            users
                .create(&new_user(&format!("user{i}@example.com"), created_at))
                .await?,
        );
    }
    expected.sort_by_key(|u| (u.created_at, u.id));
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = users.list(after, 5).await?;
        if page.is_empty() {
            break;
        }
        after = page.last().map(|u| UserPageKey {
            created_at: u.created_at,
            id: u.id,
        });
        seen.extend(page);
    }
    assert_eq!(seen, expected);
    Ok(())
}

fn token(user_id: UserId, family_id: Uuid) -> RefreshTokenRecord {
    let mut hash = Uuid::new_v4().as_bytes().to_vec();
    hash.extend_from_slice(Uuid::new_v4().as_bytes());
    RefreshTokenRecord {
        id: Uuid::now_v7(),
        family_id,
        user_id,
        token_hash: hash,
        created_at: now(),
        expires_at: now() + chrono::Duration::days(30),
        rotated_at: None,
        revoked_at: None,
    }
}

#[tokio::test]
async fn a_refresh_token_rotates_once_and_a_second_rotation_is_already_used() -> anyhow::Result<()>
{
    let test_db = TestDatabase::create().await?;
    let users = PgUserRepository::new(test_db.database());
    let tokens = PgRefreshTokenRepository::new(test_db.database());
    let user = users.create(&new_user("ada@example.com", now())).await?;
    let family = Uuid::now_v7();
    let first = token(user.id, family);
    tokens.insert(&first).await?;
    assert_eq!(
        tokens.find_by_hash(&first.token_hash).await?,
        Some(first.clone())
    );

    let second = token(user.id, family);
    assert_eq!(
        tokens.rotate(first.id, &second, now()).await?,
        RotateOutcome::Rotated
    );
    let third = token(user.id, family);
    assert_eq!(
        tokens.rotate(first.id, &third, now()).await?,
        RotateOutcome::AlreadyUsed
    );
    assert!(
        tokens.find_by_hash(&third.token_hash).await?.is_none(),
        "nothing stored for the loser"
    );
    assert!(
        tokens
            .find_by_hash(&first.token_hash)
            .await?
            .expect("kept")
            .rotated_at
            .is_some()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotations_of_one_token_have_exactly_one_winner() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let users = PgUserRepository::new(test_db.database());
    let tokens = PgRefreshTokenRepository::new(test_db.database());
    let user = users.create(&new_user("ada@example.com", now())).await?;
    let family = Uuid::now_v7();
    let first = token(user.id, family);
    tokens.insert(&first).await?;
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let (tokens, successor) = (tokens.clone(), token(user.id, family));
            tokio::spawn(async move { tokens.rotate(first.id, &successor, now()).await })
        })
        .collect();
    let mut winners = 0;
    for attempt in attempts {
        if attempt.await?? == RotateOutcome::Rotated {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    Ok(())
}

async fn is_revoked(
    tokens: &PgRefreshTokenRepository,
    record: &RefreshTokenRecord,
) -> anyhow::Result<bool> {
    let stored = tokens.find_by_hash(&record.token_hash).await?;
    Ok(stored.expect("the token is stored").revoked_at.is_some())
}

#[tokio::test]
async fn revoking_a_family_or_all_other_sessions_marks_exactly_those_tokens() -> anyhow::Result<()>
{
    let test_db = TestDatabase::create().await?;
    let users = PgUserRepository::new(test_db.database());
    let tokens = PgRefreshTokenRepository::new(test_db.database());
    let user = users.create(&new_user("ada@example.com", now())).await?;
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (in_a, in_b, in_c) = (token(user.id, a), token(user.id, b), token(user.id, c));
    for t in [&in_a, &in_b, &in_c] {
        tokens.insert(t).await?;
    }
    tokens.revoke_family(a, now()).await?;
    assert!(is_revoked(&tokens, &in_a).await?);
    assert!(!is_revoked(&tokens, &in_b).await?);

    tokens.revoke_all_for_user(user.id, Some(c), now()).await?;
    assert!(is_revoked(&tokens, &in_b).await?);
    assert!(
        !is_revoked(&tokens, &in_c).await?,
        "the caller's session stays"
    );
    Ok(())
}

/// How a session is ended while one of its tokens is being rotated.
#[derive(Debug, Clone, Copy)]
enum Revocation {
    /// Logout: the rotating family.
    Family,
    /// A password change: every session of the user but another one.
    AllOfTheUser,
}

/// Runs a rotation of a family's token and `revocation` of that family so that they overlap in
/// the worst order: the rotation has marked the old token and is about to store its successor when
/// the revocation starts. The successor's insert is held back by a transaction of the test that
/// stores a row with the same digest and keeps it uncommitted, and released once both the rotation
/// and the revocation are waiting on a lock. Returns the rotation's outcome and the successor as
/// stored, if it was.
async fn rotate_while_revoking(
    revocation: Revocation,
) -> anyhow::Result<(RotateOutcome, Option<RefreshTokenRecord>)> {
    let test_db = TestDatabase::create().await?;
    let db = test_db.database();
    let users = PgUserRepository::new(db.clone());
    let tokens = PgRefreshTokenRepository::new(db.clone());
    let user = users.create(&new_user("ada@example.com", now())).await?;
    let family = Uuid::now_v7();
    let current = token(user.id, family);
    tokens.insert(&current).await?;
    let successor = token(user.id, family);

    let direct = test_db.direct();
    let mut hold = direct.connection().await?;
    diesel::sql_query("BEGIN").execute(&mut hold).await?;
    diesel::sql_query(
        "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, now(), now() + interval '1 day')",
    )
    .bind::<diesel::sql_types::Uuid, _>(Uuid::now_v7())
    .bind::<diesel::sql_types::Uuid, _>(Uuid::now_v7())
    .bind::<diesel::sql_types::Uuid, _>(user.id.0)
    .bind::<diesel::sql_types::Bytea, _>(successor.token_hash.clone())
    .execute(&mut hold)
    .await?;

    let rotation = tokio::spawn({
        let (tokens, successor) = (tokens.clone(), successor.clone());
        async move { tokens.rotate(current.id, &successor, now()).await }
    });
    wait_for_lock_waiters(&direct, 1).await?;
    let revoking = tokio::spawn({
        let tokens = tokens.clone();
        async move {
            match revocation {
                Revocation::Family => tokens.revoke_family(family, now()).await,
                Revocation::AllOfTheUser => {
                    tokens
                        .revoke_all_for_user(user.id, Some(Uuid::now_v7()), now())
                        .await
                }
            }
        }
    });
    wait_for_lock_waiters(&direct, 2).await?;
    diesel::sql_query("ROLLBACK").execute(&mut hold).await?;
    drop(hold);

    let outcome = rotation.await??;
    revoking.await??;
    Ok((outcome, tokens.find_by_hash(&successor.token_hash).await?))
}

/// Waits until `n` sessions of the test's database wait on a lock.
async fn wait_for_lock_waiters(db: &Database, n: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting = strata_postgres::testing::count(
            db,
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .await?;
        if waiting >= n {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{waiting} of {n} sessions wait on a lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_racing_a_revocation_of_its_family_leaves_no_live_token() -> anyhow::Result<()> {
    for revocation in [Revocation::Family, Revocation::AllOfTheUser] {
        let (outcome, successor) = rotate_while_revoking(revocation).await?;
        if let Some(successor) = successor {
            assert_eq!(outcome, RotateOutcome::Rotated, "{revocation:?}");
            assert!(
                successor.revoked_at.is_some(),
                "{revocation:?}: the successor stored by a rotation that overlapped the \
                 revocation is revoked too"
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_health_check_pings_and_an_unreachable_server_is_unavailable_quickly()
-> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    test_db.database().ping().await?;

    let dead = Database::connect_lazy(
        "postgres://postgres@127.0.0.1:1/nothing",
        &PoolSettings {
            acquire_timeout: Duration::from_millis(500),
            ..PoolSettings::default()
        },
    );
    let started = Instant::now();
    let error = dead.ping().await.expect_err("nothing listens on port 1");
    assert!(matches!(error, PortError::Unavailable(_)), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn migrating_an_up_to_date_database_applies_nothing() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    assert!(run_migrations(test_db.url()).await?.is_empty());
    Ok(())
}

#[derive(QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    udt_name: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

fn diesel_type(udt: &str) -> String {
    let base = match udt {
        "uuid" => "Uuid",
        "text" => "Text",
        "varchar" => "Varchar",
        "bytea" => "Bytea",
        "timestamptz" => "Timestamptz",
        "timestamp" => "Timestamp",
        "date" => "Date",
        "bool" => "Bool",
        "int2" => "Int2",
        "int4" => "Int4",
        "int8" => "Int8",
        "numeric" => "Numeric",
        "jsonb" => "Jsonb",
        "json" => "Json",
        "_text" => "Array<Text>",
        "_uuid" => "Array<Uuid>",
        other => return format!("<unmapped {other}>"),
    };
    base.to_owned()
}

/// `table -> [(column, type)]` as diesel's `table!` declares them, read from `src/schema.rs`.
fn declared_schema() -> anyhow::Result<BTreeMap<String, Vec<(String, String)>>> {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/schema.rs"))?;
    let mut tables = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in source.lines().map(str::trim) {
        if let Some(name) = line
            .strip_suffix('{')
            .and_then(|l| l.split_once(" ("))
            .map(|(name, _)| name.trim())
        {
            if !name.contains('!') {
                current = Some(name.to_owned());
                tables.insert(name.to_owned(), Vec::new());
            }
        } else if let (Some(table), Some((column, ty))) = (&current, line.split_once(" -> ")) {
            let ty = ty.trim_end_matches(',').trim().to_owned();
            if let Some(columns) = tables.get_mut(table) {
                columns.push((column.trim().to_owned(), ty));
            }
        } else if line == "}" {
            current = None;
        }
    }
    Ok(tables)
}

#[tokio::test]
async fn schema_matches_the_migrations() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let database = test_db.database();
    let mut conn = database.connection().await?;
    let columns = diesel::sql_query(
        "SELECT table_name::text, column_name::text, udt_name::text, is_nullable::text
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'
         ORDER BY table_name, ordinal_position",
    )
    .load::<Column>(&mut conn)
    .await?;
    let mut actual: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for column in columns {
        let ty = diesel_type(&column.udt_name);
        let ty = if column.is_nullable == "YES" {
            format!("Nullable<{ty}>")
        } else {
            ty
        };
        actual
            .entry(column.table_name)
            .or_default()
            .push((column.column_name, ty));
    }
    let declared = declared_schema()?;
    assert!(!declared.is_empty(), "schema.rs was not understood");
    assert_eq!(
        declared, actual,
        "crates/postgres/src/schema.rs has drifted from migrations/: update it to match (left: schema.rs, right: database)"
    );
    Ok(())
}

/// The instant the session tests call now: fixed, so that nothing depends on the date.
fn session_now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 250_000_000).expect("in range")
}

/// A token of `family` issued `age` before [`session_now`] for 30 days.
fn token_issued(user_id: UserId, family_id: Uuid, age: chrono::Duration) -> RefreshTokenRecord {
    let created_at = session_now() - age;
    RefreshTokenRecord {
        created_at,
        expires_at: created_at + chrono::Duration::days(30),
        ..token(user_id, family_id)
    }
}

#[tokio::test]
async fn sessions_are_the_users_live_families_by_their_last_refresh() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let users = PgUserRepository::new(test_db.database());
    let tokens = PgRefreshTokenRepository::new(test_db.database());
    let ada = users.create(&new_user("ada@example.com", now())).await?.id;
    let bob = users.create(&new_user("bob@example.com", now())).await?.id;
    let (hours, days) = (chrono::Duration::hours, chrono::Duration::days);
    let at = session_now();

    // Logged in three days ago, refreshed twice since: the activity is the last refresh.
    let refreshed = Uuid::now_v7();
    let login = token_issued(ada, refreshed, days(3));
    tokens.insert(&login).await?;
    let first_refresh = token_issued(ada, refreshed, days(1));
    tokens
        .rotate(login.id, &first_refresh, at - days(1))
        .await?;
    let last_refresh = token_issued(ada, refreshed, hours(2));
    tokens
        .rotate(first_refresh.id, &last_refresh, at - hours(2))
        .await?;
    // Logged in an hour ago, never refreshed.
    let recent = Uuid::now_v7();
    tokens.insert(&token_issued(ada, recent, hours(1))).await?;
    // Logged out.
    let ended = Uuid::now_v7();
    tokens.insert(&token_issued(ada, ended, days(5))).await?;
    tokens.revoke_family(ended, at - days(4)).await?;
    // Left alone past its expiry, and one expiring this very instant.
    let expired = Uuid::now_v7();
    tokens.insert(&token_issued(ada, expired, days(40))).await?;
    let expiring_now = Uuid::now_v7();
    tokens
        .insert(&token_issued(ada, expiring_now, days(30)))
        .await?;
    // Another user's.
    let bobs = Uuid::now_v7();
    tokens.insert(&token_issued(bob, bobs, hours(3))).await?;

    let listed = tokens.sessions(ada, at).await?;
    assert_eq!(
        listed,
        vec![
            strata_domain::Session {
                id: recent,
                started_at: at - hours(1),
                last_active_at: at - hours(1),
                expires_at: at - hours(1) + days(30),
                current: false,
            },
            strata_domain::Session {
                id: refreshed,
                started_at: at - days(3),
                last_active_at: at - hours(2),
                expires_at: at - hours(2) + days(30),
                current: false,
            },
        ],
        "live families only, newest activity first"
    );
    let bobs_sessions: Vec<Uuid> = tokens
        .sessions(bob, at)
        .await?
        .into_iter()
        .map(|session| session.id)
        .collect();
    assert_eq!(bobs_sessions, vec![bobs], "each user sees only their own");
    assert!(
        tokens
            .sessions(UserId(Uuid::now_v7()), at)
            .await?
            .is_empty(),
        "an unknown user has none"
    );
    Ok(())
}

#[tokio::test]
async fn a_user_ends_only_their_own_live_sessions() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let users = PgUserRepository::new(test_db.database());
    let tokens = PgRefreshTokenRepository::new(test_db.database());
    let ada = users.create(&new_user("ada@example.com", now())).await?.id;
    let bob = users.create(&new_user("bob@example.com", now())).await?.id;
    let (hours, days) = (chrono::Duration::hours, chrono::Duration::days);
    let at = session_now();

    let (ended, kept) = (Uuid::now_v7(), Uuid::now_v7());
    let login = token_issued(ada, ended, days(2));
    tokens.insert(&login).await?;
    let refresh = token_issued(ada, ended, hours(5));
    tokens.rotate(login.id, &refresh, at - hours(5)).await?;
    let in_kept = token_issued(ada, kept, hours(1));
    tokens.insert(&in_kept).await?;
    let expired = Uuid::now_v7();
    tokens.insert(&token_issued(ada, expired, days(31))).await?;

    assert!(
        !tokens.revoke_user_family(bob, ended, at).await?,
        "another user's session is not theirs to end"
    );
    assert!(!tokens.revoke_user_family(ada, Uuid::now_v7(), at).await?);
    assert!(
        !tokens.revoke_user_family(ada, expired, at).await?,
        "an expired session is no longer one"
    );
    assert_eq!(
        tokens.sessions(ada, at).await?.len(),
        2,
        "nothing ended yet"
    );

    assert!(tokens.revoke_user_family(ada, ended, at).await?);
    let left: Vec<Uuid> = tokens
        .sessions(ada, at)
        .await?
        .into_iter()
        .map(|session| session.id)
        .collect();
    assert_eq!(left, vec![kept]);
    for token in [&login, &refresh] {
        let stored = tokens.find_by_hash(&token.token_hash).await?.expect("kept");
        assert_eq!(stored.revoked_at, Some(at), "every token of the family");
    }
    assert!(!is_revoked(&tokens, &in_kept).await?);
    assert_eq!(
        tokens
            .rotate(refresh.id, &token_issued(ada, ended, hours(0)), at)
            .await?,
        RotateOutcome::AlreadyUsed,
        "an ended session cannot be refreshed"
    );
    assert!(
        !tokens.revoke_user_family(ada, ended, at).await?,
        "an ended session is not found again"
    );
    Ok(())
}

#[tokio::test]
async fn at_most_the_hundred_most_recently_active_sessions_are_listed() -> anyhow::Result<()> {
    let test_db = TestDatabase::create().await?;
    let users = PgUserRepository::new(test_db.database());
    let tokens = PgRefreshTokenRepository::new(test_db.database());
    let ada = users.create(&new_user("ada@example.com", now())).await?.id;
    let mut families = Vec::new();
    for minutes in 0..=i64::try_from(strata_ports::MAX_LISTED_SESSIONS)? {
        let family = Uuid::now_v7();
        tokens
            .insert(&token_issued(
                ada,
                family,
                chrono::Duration::minutes(minutes),
            ))
            .await?;
        families.push(family);
    }
    let listed: Vec<Uuid> = tokens
        .sessions(ada, session_now())
        .await?
        .into_iter()
        .map(|session| session.id)
        .collect();
    assert_eq!(
        listed,
        families[..strata_ports::MAX_LISTED_SESSIONS],
        "the oldest is left out"
    );
    Ok(())
}
