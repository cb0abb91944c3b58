//! Fixtures more than one module of the PostgreSQL adapter tests uses.

use chrono::{DateTime, Utc};
use strata_domain::{
    Currency, Description, DisplayName, Email, Price, Product, ProductId, ProductName, Role, Sku,
    Stock, User, UserId,
};
use strata_ports::NewUserRecord;
use strata_postgres::Database;
use strata_postgres::testing::insert_user;
use uuid::Uuid;

/// A customer with this email, created at `created_at`, for the users adapter to store.
pub fn new_user(email: &str, created_at: DateTime<Utc>) -> NewUserRecord {
    NewUserRecord {
        user: User {
            id: UserId(Uuid::now_v7()),
            email: Email::parse(email).expect("email"),
            display_name: DisplayName::parse("Test User").expect("name"),
            role: Role::Customer,
            created_at,
            updated_at: created_at,
        },
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
    }
}

/// Stores a customer with this email (rows that reference users need one) and returns its id.
pub async fn user(db: &Database, email: &str) -> UserId {
    insert_user(db, email).await.unwrap()
}

/// An active product, not yet stored.
pub fn product_at(
    sku: &str,
    name: &str,
    price_minor: i64,
    currency: Currency,
    stock: i64,
    created_at: DateTime<Utc>,
) -> Product {
    Product {
        id: ProductId(Uuid::now_v7()),
        sku: Sku::parse(sku).unwrap(),
        name: ProductName::parse(name).unwrap(),
        description: Description::parse("A thing.").unwrap(),
        price: Price::new(price_minor, currency).unwrap(),
        stock: Stock::new(stock).unwrap(),
        active: true,
        created_at,
        updated_at: created_at,
    }
}
