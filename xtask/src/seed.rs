//! Demo and bulk data. Accounts are created through the service layer so that passwords are
//! hashed and every rule applies exactly as for a real sign-up; the demo catalog, bulk products
//! and orders are written straight to the database (see [`bulk`]). Seeding is idempotent: an
//! account, product or order that exists already is left as it is, so `seed` and `up` can run any
//! number of times.

use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use strata_server::{Components, Environment, Settings};
use strata_services::{AuthError, AuthService, RegisterInput};
use tokio::task::JoinSet;

use crate::bulk::{self, rng::splitmix64};
use crate::stack::Stack;

/// The password of every seeded account; it is public, hence never in production.
pub const DEMO_PASSWORD: &str = "strata-demo-password";
/// The demo administrator.
pub const ADMIN_EMAIL: &str = "admin@strata.test";
/// The demo customer.
pub const CUSTOMER_EMAIL: &str = "customer@strata.test";

/// What `cargo xtask seed` creates beyond the demo accounts and products.
#[derive(Debug, Clone, Copy)]
pub struct SeedOptions {
    /// How many `user-{i}@seed.strata.test` customers.
    pub users: u64,
    /// How many generated products (`SKU-000001-…` and on).
    pub products: u64,
    /// How many generated past orders, by the users and of the products in the database.
    pub orders: u64,
    /// Makes the generated data reproducible.
    pub seed: u64,
}

/// Fails when STRATA_ENV says production: demo accounts with a published password must never
/// exist there.
pub fn refuse_production() -> anyhow::Result<()> {
    check_environment(std::env::var("STRATA_ENV").ok().as_deref())
}

fn check_environment(strata_env: Option<&str>) -> anyhow::Result<()> {
    if strata_env.is_some_and(|env| env.trim().eq_ignore_ascii_case("production")) {
        bail!(
            "refusing to seed: STRATA_ENV=production (demo accounts with a published password \
             must never reach production)"
        );
    }
    Ok(())
}

/// The services wired to the chosen servers. STRATA_ENV defaults to development when unset.
fn components(stack: &Stack) -> anyhow::Result<Components> {
    let mut settings = Settings::from_env().context("reading the STRATA_* settings")?;
    if settings.env == Environment::Production {
        bail!("refusing to seed: STRATA_ENV=production");
    }
    settings.database.url = stack.database_url().into();
    settings.redis.url = stack.redis_url().into();
    Components::build(&settings)
}

/// Deletes the application's Redis keys (its `STRATA_REDIS_PREFIX` namespace), so that nothing
/// cached outlives a reset database.
pub async fn clear_cache(stack: &Stack) -> anyhow::Result<()> {
    let components = components(stack)?;
    let deleted = components
        .redis
        .clear_namespace()
        .await
        .map_err(|error| anyhow!("clearing the Redis namespace: {error}"))?;
    println!("redis: deleted {deleted} key(s)");
    Ok(())
}

/// Creates the demo admin and customer, and the demo products, unless they exist.
pub async fn demo_accounts(stack: &Stack) -> anyhow::Result<()> {
    let components = components(stack)?;
    create_demo_accounts(&components).await?;
    bulk::demo_products(stack.database_url()).await
}

/// The demo accounts and products, then `options.users` deterministic customers,
/// `options.products` products and `options.orders` orders.
pub async fn seed(stack: &Stack, options: SeedOptions) -> anyhow::Result<()> {
    let components = components(stack)?;
    create_demo_accounts(&components).await?;
    let url = stack.database_url();
    bulk::demo_products(url).await?;
    if options.users > 0 {
        bulk_users(&components.auth, options).await?;
    }
    if options.products > 0 {
        bulk::products(url, options.seed, options.products).await?;
    }
    if options.orders > 0 {
        bulk::orders(url, options.seed, options.orders).await?;
    }
    if options.products > 0 || options.orders > 0 {
        bulk::vacuum_analyze(url).await?;
    }
    Ok(())
}

async fn create_demo_accounts(components: &Components) -> anyhow::Result<()> {
    let admin = register(&components.auth, ADMIN_EMAIL, "Strata Admin").await?;
    // Granting is idempotent; doing it for an existing admin account also repairs a run that
    // was stopped between registering and granting.
    components
        .users
        .grant_admin(ADMIN_EMAIL)
        .await
        .map_err(|error| anyhow!("making {ADMIN_EMAIL} an admin: {error:?}"))?;
    println!("demo: {ADMIN_EMAIL} (admin): {admin}");
    let customer = register(&components.auth, CUSTOMER_EMAIL, "Demo Customer").await?;
    println!("demo: {CUSTOMER_EMAIL} (customer): {customer}");
    Ok(())
}

/// Whether a registration created the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Registered {
    Created,
    AlreadyPresent,
}

impl std::fmt::Display for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Created => "created",
            Self::AlreadyPresent => "already present",
        })
    }
}

async fn register(
    auth: &AuthService,
    email: &str,
    display_name: &str,
) -> anyhow::Result<Registered> {
    let input = RegisterInput {
        email: email.to_owned(),
        password: DEMO_PASSWORD.to_owned(),
        display_name: display_name.to_owned(),
    };
    match auth.register(input).await {
        Ok(_) => Ok(Registered::Created),
        Err(AuthError::EmailTaken) => Ok(Registered::AlreadyPresent),
        Err(error) => Err(anyhow!("registering {email}: {error:?}")),
    }
}

/// Registers `user-1` … `user-N` concurrently, one registration per core at a time (password
/// hashing is the bottleneck and is CPU-bound).
async fn bulk_users(auth: &Arc<AuthService>, options: SeedOptions) -> anyhow::Result<()> {
    let concurrency = std::thread::available_parallelism().map_or(2, |n| n.get());
    let bar = ProgressBar::new(options.users);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} users ({per_sec}, eta {eta})")?
            .progress_chars("=> "),
    );
    let mut tasks = JoinSet::new();
    let mut next = 1;
    let mut created = 0u64;
    let mut present = 0u64;
    loop {
        while tasks.len() < concurrency && next <= options.users {
            let auth = auth.clone();
            let email = bulk_email(next);
            let name = display_name(options.seed, next);
            tasks.spawn(async move { register(&auth, &email, &name).await });
            next += 1;
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        match joined.context("a registration task panicked")?? {
            Registered::Created => created += 1,
            Registered::AlreadyPresent => present += 1,
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("users: {created} created, {present} already present");
    Ok(())
}

/// The email of the `i`-th generated customer.
fn bulk_email(i: u64) -> String {
    format!("user-{i}@seed.strata.test")
}

const FIRST_NAMES: [&str; 24] = [
    "Ada", "Alan", "Barbara", "Kathleen", "Dennis", "Donald", "Edsger", "Frances", "Grace",
    "Guido", "Hedy", "Ivan", "John", "Joan", "Ken", "Leslie", "Linus", "Margaret", "Niklaus",
    "Radia", "Robin", "Sophie", "Tim", "Yukihiro",
];

const LAST_NAMES: [&str; 24] = [
    "Allen",
    "Backus",
    "Berners-Lee",
    "Cerf",
    "Dijkstra",
    "Engelbart",
    "Goldberg",
    "Hamilton",
    "Hopper",
    "Kay",
    "Knuth",
    "Lamarr",
    "Lamport",
    "Liskov",
    "Lovelace",
    "Matsumoto",
    "McCarthy",
    "Milner",
    "Perlman",
    "Ritchie",
    "Rossum",
    "Thompson",
    "Turing",
    "Wirth",
];

/// A display name that depends only on `seed` and `i`, whatever order the tasks finish in.
fn display_name(seed: u64, i: u64) -> String {
    let bits = splitmix64(seed ^ splitmix64(i));
    let first = FIRST_NAMES[(bits % FIRST_NAMES.len() as u64) as usize];
    let last = LAST_NAMES[((bits >> 32) % LAST_NAMES.len() as u64) as usize];
    format!("{first} {last}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_depend_only_on_the_seed_and_the_index() {
        let first: Vec<_> = (1..=50).map(|i| display_name(42, i)).collect();
        let again: Vec<_> = (1..=50).map(|i| display_name(42, i)).collect();
        let other: Vec<_> = (1..=50).map(|i| display_name(7, i)).collect();
        assert_eq!(first, again);
        assert_ne!(first, other);
    }

    #[test]
    fn generated_accounts_are_numbered_from_one() {
        assert_eq!(bulk_email(1), "user-1@seed.strata.test");
    }

    #[test]
    fn production_is_refused_and_anything_else_allowed() {
        assert!(check_environment(Some("production")).is_err());
        assert!(check_environment(Some("Production")).is_err());
        assert!(check_environment(Some("development")).is_ok());
        assert!(check_environment(None).is_ok());
    }
}
