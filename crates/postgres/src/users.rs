//! [`UserRepository`] on the `users` table.

use anyhow::anyhow;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamptz};
use diesel_async::RunQueryDsl;
use strata_domain::{DisplayName, Email, Role, User, UserId};
use strata_ports::{
    CreateUserError, NewUserRecord, PortError, UserCredentials, UserPageKey, UserRepository,
    UserUpdate,
};
use uuid::Uuid;

use crate::database::{Database, keyset, violates};
use crate::prepared::{LimitLiteral as _, PrepareOnce as _};
use crate::schema::users;

diesel::define_sql_function! {
    /// SQL `lower(text)`, so that lookups use the `lower(email)` unique index.
    fn lower(x: Text) -> Text;
}

const EMAIL_UNIQUE: &str = "users_email_lower_key";

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
struct UserRow {
    id: Uuid,
    email: String,
    display_name: String,
    role: String,
    password_hash: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl UserRow {
    fn into_user(self) -> Result<User, PortError> {
        let corrupt = |what: &str| {
            PortError::unexpected(anyhow!("users row {} holds an invalid {what}", self.id))
        };
        Ok(User {
            id: UserId(self.id),
            email: Email::parse(&self.email).map_err(|_| corrupt("email"))?,
            display_name: DisplayName::parse(&self.display_name)
                .map_err(|_| corrupt("display_name"))?,
            role: Role::parse(&self.role).ok_or_else(|| corrupt("role"))?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }

    fn into_credentials(mut self) -> Result<UserCredentials, PortError> {
        let password_hash = std::mem::take(&mut self.password_hash);
        Ok(UserCredentials {
            user: self.into_user()?,
            password_hash,
        })
    }
}

#[derive(AsChangeset)]
#[diesel(table_name = users)]
struct UserChanges<'a> {
    display_name: Option<&'a str>,
    password_hash: Option<&'a str>,
    role: Option<&'a str>,
    updated_at: DateTime<Utc>,
}

/// Users in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgUserRepository {
    db: Database,
}

impl PgUserRepository {
    /// A repository on `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    async fn first_credentials(
        &self,
        query: users::BoxedQuery<'static, Pg>,
    ) -> Result<Option<UserCredentials>, PortError> {
        let mut conn = self.db.connection().await?;
        let row = self
            .db
            .timed(async {
                query
                    .select(UserRow::as_select())
                    .first(&mut conn)
                    .await
                    .optional()
            })
            .await?;
        row.map(UserRow::into_credentials).transpose()
    }
}

#[async_trait]
impl UserRepository for PgUserRepository {
    async fn create(&self, record: &NewUserRecord) -> Result<User, CreateUserError> {
        let user = &record.user;
        let row = UserRow {
            id: user.id.0,
            email: user.email.as_str().to_owned(),
            display_name: user.display_name.as_str().to_owned(),
            role: user.role.as_str().to_owned(),
            password_hash: record.password_hash.clone(),
            created_at: user.created_at,
            updated_at: user.updated_at,
        };
        let mut conn = self.db.connection().await?;
        let inserted = self
            .db
            .timed(async {
                match diesel::insert_into(users::table)
                    .values(&row)
                    .returning(UserRow::as_returning())
                    .prepared()
                    .get_result(&mut conn)
                    .await
                {
                    Ok(row) => Ok(Some(row)),
                    Err(error) if violates(&error, EMAIL_UNIQUE) => Ok(None),
                    Err(error) => Err(error),
                }
            })
            .await?;
        inserted
            .ok_or(CreateUserError::EmailTaken)?
            .into_user()
            .map_err(Into::into)
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, PortError> {
        let mut conn = self.db.connection().await?;
        let row = self
            .db
            .timed(async {
                users::table
                    .find(id.0)
                    .select(UserRow::as_select())
                    .first(&mut conn)
                    .await
                    .optional()
            })
            .await?;
        row.map(UserRow::into_user).transpose()
    }

    async fn find_credentials(&self, email: &Email) -> Result<Option<UserCredentials>, PortError> {
        let query = users::table
            .filter(lower(users::email).eq(email.as_str().to_owned()))
            .into_boxed();
        self.first_credentials(query).await
    }

    async fn find_credentials_by_id(
        &self,
        id: UserId,
    ) -> Result<Option<UserCredentials>, PortError> {
        self.first_credentials(users::table.filter(users::id.eq(id.0)).into_boxed())
            .await
    }

    async fn update(
        &self,
        id: UserId,
        update: &UserUpdate,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, PortError> {
        let changes = UserChanges {
            display_name: update.display_name.as_ref().map(DisplayName::as_str),
            password_hash: update.password_hash.as_deref(),
            role: None,
            updated_at: now,
        };
        let mut conn = self.db.connection().await?;
        let row = self
            .db
            .timed(async {
                diesel::update(users::table.find(id.0))
                    .set(&changes)
                    .returning(UserRow::as_returning())
                    .prepared()
                    .get_result(&mut conn)
                    .await
                    .optional()
            })
            .await?;
        row.map(UserRow::into_user).transpose()
    }

    async fn set_role(
        &self,
        email: &Email,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, PortError> {
        let changes = UserChanges {
            display_name: None,
            password_hash: None,
            role: Some(role.as_str()),
            updated_at: now,
        };
        let mut conn = self.db.connection().await?;
        let row = self
            .db
            .timed(async {
                diesel::update(
                    users::table.filter(lower(users::email).eq(email.as_str().to_owned())),
                )
                .set(&changes)
                .returning(UserRow::as_returning())
                .prepared()
                .get_result(&mut conn)
                .await
                .optional()
            })
            .await?;
        row.map(UserRow::into_user).transpose()
    }

    async fn list(&self, after: Option<UserPageKey>, limit: usize) -> Result<Vec<User>, PortError> {
        let mut query = users::table
            .select(UserRow::as_select())
            .order((users::created_at.asc(), users::id.asc()))
            .into_boxed();
        if let Some(key) = after {
            query = query.filter(keyset!(
                "created_at",
                after,
                Timestamptz,
                key.created_at,
                key.id.0
            ));
        }
        let query = query.limit_literal(limit).prepared();
        let mut conn = self.db.connection().await?;
        let rows: Vec<UserRow> = self.db.timed(query.load(&mut conn)).await?;
        rows.into_iter()
            .take(limit)
            .map(UserRow::into_user)
            .collect()
    }
}
