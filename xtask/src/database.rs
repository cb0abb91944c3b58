//! Database housekeeping on the chosen server: creating the application database, migrating it,
//! and clearing the per-test databases that killed test runs leave behind.

use anyhow::Context;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::stack::Stack;
use crate::urls;

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

async fn maintenance(stack: &Stack) -> anyhow::Result<AsyncPgConnection> {
    let url = stack.maintenance_url();
    AsyncPgConnection::establish(&url)
        .await
        .with_context(|| format!("cannot connect to {}", urls::redacted(&url)))
}

/// `name` as a quoted SQL identifier.
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> anyhow::Result<bool> {
    let found = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
        .bind::<Text, _>(name)
        .get_result::<Count>(conn)
        .await?;
    Ok(found.n > 0)
}

/// Creates the application database unless it exists; says whether it created it.
pub async fn ensure_database(stack: &Stack) -> anyhow::Result<bool> {
    let name = stack.database_name();
    let mut conn = maintenance(stack).await?;
    if database_exists(&mut conn, name).await? {
        return Ok(false);
    }
    let created = diesel::sql_query(format!("CREATE DATABASE {}", identifier(name)))
        .execute(&mut conn)
        .await;
    match created {
        Ok(_) => Ok(true),
        // Another process may have created it in the meantime; that is just as good.
        Err(_) if database_exists(&mut conn, name).await? => Ok(false),
        Err(error) => Err(error).with_context(|| format!("creating the database {name}")),
    }
}

/// Drops the application database, disconnecting whoever uses it (for `reset`).
pub async fn drop_database(stack: &Stack) -> anyhow::Result<()> {
    let name = stack.database_name();
    let mut conn = maintenance(stack).await?;
    diesel::sql_query(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        identifier(name)
    ))
    .execute(&mut conn)
    .await
    .with_context(|| format!("dropping the database {name}"))?;
    println!("database {name}: dropped");
    Ok(())
}

/// Creates the application database if needed and applies pending migrations, saying what it did.
pub async fn migrate(stack: &Stack) -> anyhow::Result<()> {
    if ensure_database(stack).await? {
        println!("database {}: created", stack.database_name());
    }
    let applied = strata_postgres::run_migrations(stack.database_url())
        .await
        .with_context(|| format!("migrating {}", urls::redacted(stack.database_url())))?;
    if applied.is_empty() {
        println!("database {}: migrations up to date", stack.database_name());
    } else {
        println!(
            "database {}: applied {} migration(s):",
            stack.database_name(),
            applied.len()
        );
        for version in applied {
            println!("  {version}");
        }
    }
    Ok(())
}

/// A fresh, migrated database `name` on the stack's server (dropped first if it exists); its URL.
pub async fn recreate(stack: &Stack, name: &str) -> anyhow::Result<String> {
    drop_named(stack, name).await?;
    let mut conn = maintenance(stack).await?;
    diesel::sql_query(format!("CREATE DATABASE {}", identifier(name)))
        .execute(&mut conn)
        .await
        .with_context(|| format!("creating the database {name}"))?;
    let url = urls::with_database(stack.database_url(), name);
    strata_postgres::run_migrations(&url)
        .await
        .with_context(|| format!("migrating {name}"))?;
    Ok(url)
}

/// Drops database `name` if it exists, disconnecting whoever uses it.
pub async fn drop_named(stack: &Stack, name: &str) -> anyhow::Result<()> {
    let mut conn = maintenance(stack).await?;
    diesel::sql_query(format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        identifier(name)
    ))
    .execute(&mut conn)
    .await
    .with_context(|| format!("dropping the database {name}"))?;
    Ok(())
}

/// Drops the `strata_test_*` databases left by killed test runs. Databases in use (by a test run
/// going on right now against the same server) are left alone.
pub async fn drop_leftover_test_databases(stack: &Stack) -> anyhow::Result<()> {
    let mut conn = maintenance(stack).await?;
    let leftovers = diesel::sql_query(
        "SELECT datname FROM pg_database WHERE datname LIKE 'strata\\_test\\_%' ORDER BY datname",
    )
    .load::<Name>(&mut conn)
    .await
    .context("listing leftover test databases")?;
    if leftovers.is_empty() {
        return Ok(());
    }
    let mut dropped = 0;
    let mut in_use = 0;
    for database in &leftovers {
        let drop = format!("DROP DATABASE IF EXISTS {}", identifier(&database.datname));
        match diesel::sql_query(drop).execute(&mut conn).await {
            Ok(_) => dropped += 1,
            Err(_) => in_use += 1,
        }
    }
    if in_use == 0 {
        eprintln!("xtask: dropped {dropped} leftover test database(s)");
    } else {
        eprintln!(
            "xtask: dropped {dropped} leftover test database(s); {in_use} in use by another run were kept"
        );
    }
    Ok(())
}
