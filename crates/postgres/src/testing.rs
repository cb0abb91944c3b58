//! Test support: a fresh, migrated database per test, cloned from a template and dropped afterwards.
//!
//! The template is built once per migration set (its name carries a hash of `migrations/`), under a
//! PostgreSQL advisory lock so that parallel test processes agree on who builds it. Cloning a
//! template is a file copy, far cheaper than migrating every test database.
//!
//! With [`POOLER_VARIABLE`] set, each test's application connections go through a connection
//! pooler (PgBouncer in transaction pooling mode) while the housekeeping above (the template, its
//! lock, creating and dropping databases) keeps talking to PostgreSQL itself: the lock is a session
//! lock, and database DDL must not wait behind connections the pooler keeps open.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use anyhow::Context;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::database::{Database, PoolSettings, with_database};
use crate::migrations::run_migrations;

/// The server tests use: `DATABASE_URL` (any database on it; the maintenance work happens in the
/// `postgres` database), or the local default.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `host:port` of a pooler in front of the [`server_url`] server: when set, [`TestDatabase::url`]
/// and the pools it hands out connect through it.
pub const POOLER_VARIABLE: &str = "TEST_DATABASE_POOLER";

/// The URL the code under test uses for database `name`: through the pooler when one is set.
fn application_url(name: &str) -> String {
    let direct = with_database(&server_url(), name);
    match std::env::var(POOLER_VARIABLE) {
        Ok(pooler) if !pooler.trim().is_empty() => with_authority(&direct, pooler.trim()),
        _ => direct,
    }
}

/// `url` with its host and port replaced by `host_port`, the credentials, database and query kept.
fn with_authority(url: &str, host_port: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let credentials = url[start..end]
        .rsplit_once('@')
        .map(|(credentials, _)| format!("{credentials}@"))
        .unwrap_or_default();
    format!("{}{credentials}{host_port}{}", &url[..start], &url[end..])
}

fn migrations_fingerprint() -> anyhow::Result<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut entries: Vec<_> = walk(&dir)?;
    entries.sort();
    let mut hasher = DefaultHasher::new();
    for path in entries {
        path.strip_prefix(&dir).unwrap_or(&path).hash(&mut hasher);
        std::fs::read(&path)?.hash(&mut hasher);
    }
    Ok(format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff))
}

fn walk(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(walk(&path)?);
        } else {
            files.push(path);
        }
    }
    Ok(files)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    datname: String,
}

async fn maintenance() -> anyhow::Result<AsyncPgConnection> {
    AsyncPgConnection::establish(&with_database(&server_url(), "postgres"))
        .await
        .context("cannot reach PostgreSQL for tests (set DATABASE_URL, or run `cargo xtask test`)")
}

async fn ensure_template() -> anyhow::Result<String> {
    let template = format!("strata_template_{}", migrations_fingerprint()?);
    let mut conn = maintenance().await?;
    diesel::sql_query("SELECT pg_advisory_lock(7306247)")
        .execute(&mut conn)
        .await?;
    let result = async {
        let exists = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
            .bind::<Text, _>(&template)
            .get_result::<Count>(&mut conn)
            .await?
            .n
            > 0;
        if !exists {
            let stale = diesel::sql_query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'strata_template_%'",
            )
            .load::<Name>(&mut conn)
            .await?;
            for old in stale {
                diesel::sql_query(format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    old.datname
                ))
                .execute(&mut conn)
                .await?;
            }
            let building = format!("{template}_building");
            diesel::sql_query(format!("CREATE DATABASE \"{building}\""))
                .execute(&mut conn)
                .await?;
            run_migrations(&with_database(&server_url(), &building)).await?;
            diesel::sql_query(format!(
                "ALTER DATABASE \"{building}\" RENAME TO \"{template}\""
            ))
            .execute(&mut conn)
            .await?;
        }
        anyhow::Ok(())
    }
    .await;
    diesel::sql_query("SELECT pg_advisory_unlock(7306247)")
        .execute(&mut conn)
        .await?;
    result.map(|()| template)
}

/// A migrated database of one's own, dropped when this value is dropped.
pub struct TestDatabase {
    name: String,
    url: String,
    db: Database,
}

impl TestDatabase {
    /// Clones the migrated template into a new database.
    pub async fn create() -> anyhow::Result<Self> {
        let template = ensure_template().await?;
        let name = format!("strata_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = maintenance().await?;
        // A clone fails while another session is connected to the template (the template builder
        // of a parallel process, for an instant); retry briefly.
        let mut attempt = 0;
        loop {
            let created = diesel::sql_query(format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
            ))
            .execute(&mut conn)
            .await;
            match created {
                Ok(_) => break,
                Err(error) if attempt < 20 => {
                    attempt += 1;
                    tracing::debug!(%error, "template busy; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(error) => return Err(error).context("cloning the template database"),
            }
        }
        let url = application_url(&name);
        let settings = PoolSettings {
            max_size: 8,
            ..PoolSettings::default()
        };
        let db = Database::connect_lazy(&url, &settings);
        Ok(Self { name, url, db })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database's URL (through the pooler when [`POOLER_VARIABLE`] names one).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A pool on the database.
    pub fn database(&self) -> Database {
        self.db.clone()
    }

    /// A pool straight to PostgreSQL, past the pooler when one is set: for a test's own lock
    /// holders and observers, which must not take the few server connections the code under test
    /// takes turns on (behind PgBouncer they would leave it none).
    pub fn direct(&self) -> Database {
        Database::connect_lazy(
            &with_database(&server_url(), &self.name),
            &PoolSettings {
                max_size: 4,
                ..PoolSettings::default()
            },
        )
    }

    /// A separate pool big and patient enough that many concurrent transactions queue rather than
    /// fail with `Unavailable` on a small machine.
    pub fn roomy(&self) -> Database {
        Database::connect_lazy(
            &self.url,
            &PoolSettings {
                max_size: 20,
                acquire_timeout: std::time::Duration::from_secs(60),
                query_timeout: std::time::Duration::from_secs(60),
                lanes: 1,
            },
        )
    }

    /// A separate pool of exactly one connection: every statement of a test runs on it (to
    /// observe one connection's statements, or reuse its prepared ones).
    pub fn single_connection(&self) -> Database {
        Database::connect_lazy(
            &self.url,
            &PoolSettings {
                max_size: 1,
                ..PoolSettings::default()
            },
        )
    }
}

/// The single `bigint` that `sql` selects as `n` (a test's count of rows).
pub async fn count(db: &Database, sql: &str) -> anyhow::Result<i64> {
    let mut conn = db.connection().await?;
    Ok(diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await?
        .n)
}

/// Now, at PostgreSQL's precision (microseconds), so stored and returned times compare equal.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// Stores a customer with this email (rows that reference users need one) and returns its id.
pub async fn insert_user(db: &Database, email: &str) -> anyhow::Result<strata_domain::UserId> {
    use strata_domain::{DisplayName, Email, Role, User, UserId};
    use strata_ports::{NewUserRecord, UserRepository};
    let created_at = now();
    let record = NewUserRecord {
        user: User {
            id: UserId(uuid::Uuid::now_v7()),
            email: Email::parse(email)?,
            display_name: DisplayName::parse("Test User")?,
            role: Role::Customer,
            created_at,
            updated_at: created_at,
        },
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
    };
    Ok(crate::PgUserRepository::new(db.clone())
        .create(&record)
        .await?
        .id)
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        // Drop runs inside the test's runtime, which cannot be blocked on; a separate thread with
        // its own runtime drops the database (FORCE closes the pool's connections).
        let handle = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut conn) = maintenance().await {
                    let _ = diesel::sql_query(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    ))
                    .execute(&mut conn)
                    .await;
                }
            });
        });
        let _ = handle.join();
    }
}

#[cfg(test)]
mod tests {
    use super::with_authority;

    #[test]
    fn only_the_host_and_port_change() {
        assert_eq!(
            with_authority(
                "postgres://u:p@ss@db:5432/app?sslmode=disable",
                "127.0.0.1:6432"
            ),
            "postgres://u:p@ss@127.0.0.1:6432/app?sslmode=disable"
        );
        assert_eq!(
            with_authority("postgres://db/app", "127.0.0.1:6432"),
            "postgres://127.0.0.1:6432/app"
        );
    }
}
