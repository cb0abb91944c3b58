//! [`RefreshTokenRepository`] on the `refresh_tokens` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use strata_domain::{RefreshTokenRecord, UserId};
use strata_ports::{PortError, RefreshTokenRepository, RotateOutcome};
use uuid::Uuid;

use crate::database::Database;
use crate::prepared::PrepareOnce as _;
use crate::schema::refresh_tokens;

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens, check_for_backend(diesel::pg::Pg))]
struct RefreshTokenRow {
    id: Uuid,
    family_id: Uuid,
    user_id: Uuid,
    token_hash: Vec<u8>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    rotated_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<&RefreshTokenRecord> for RefreshTokenRow {
    fn from(record: &RefreshTokenRecord) -> Self {
        Self {
            id: record.id,
            family_id: record.family_id,
            user_id: record.user_id.0,
            token_hash: record.token_hash.clone(),
            created_at: record.created_at,
            expires_at: record.expires_at,
            rotated_at: record.rotated_at,
            revoked_at: record.revoked_at,
        }
    }
}

impl From<RefreshTokenRow> for RefreshTokenRecord {
    fn from(row: RefreshTokenRow) -> Self {
        Self {
            id: row.id,
            family_id: row.family_id,
            user_id: UserId(row.user_id),
            token_hash: row.token_hash,
            created_at: row.created_at,
            expires_at: row.expires_at,
            rotated_at: row.rotated_at,
            revoked_at: row.revoked_at,
        }
    }
}

/// Refresh tokens in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgRefreshTokenRepository {
    db: Database,
}

impl PgRefreshTokenRepository {
    /// A repository on `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl RefreshTokenRepository for PgRefreshTokenRepository {
    async fn insert(&self, record: &RefreshTokenRecord) -> Result<(), PortError> {
        let row = RefreshTokenRow::from(record);
        let mut conn = self.db.connection().await?;
        self.db
            .timed(
                diesel::insert_into(refresh_tokens::table)
                    .values(&row)
                    .prepared()
                    .execute(&mut conn),
            )
            .await
            .map(|_| ())
    }

    async fn find_by_hash(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<RefreshTokenRecord>, PortError> {
        let mut conn = self.db.connection().await?;
        let row = self
            .db
            .timed(async {
                refresh_tokens::table
                    .filter(refresh_tokens::token_hash.eq(token_hash))
                    .select(RefreshTokenRow::as_select())
                    .first(&mut conn)
                    .await
                    .optional()
            })
            .await?;
        Ok(row.map(Into::into))
    }

    async fn rotate(
        &self,
        old_id: Uuid,
        new: &RefreshTokenRecord,
        now: DateTime<Utc>,
    ) -> Result<RotateOutcome, PortError> {
        let row = RefreshTokenRow::from(new);
        let mut conn = self.db.connection().await?;
        self.db
            .timed(
                conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                    // The row lock taken by this UPDATE serialises concurrent rotations of one token:
                    // the loser re-checks the predicate after the winner commits and matches nothing.
                    let marked = diesel::update(
                        refresh_tokens::table
                            .find(old_id)
                            .filter(refresh_tokens::rotated_at.is_null())
                            .filter(refresh_tokens::revoked_at.is_null()),
                    )
                    .set(refresh_tokens::rotated_at.eq(now))
                    .prepared()
                    .execute(conn)
                    .await?;
                    if marked == 0 {
                        return Ok(RotateOutcome::AlreadyUsed);
                    }
                    diesel::insert_into(refresh_tokens::table)
                        .values(&row)
                        .prepared()
                        .execute(conn)
                        .await?;
                    Ok(RotateOutcome::Rotated)
                }),
            )
            .await
    }

    async fn revoke_family(&self, family_id: Uuid, now: DateTime<Utc>) -> Result<(), PortError> {
        let mut conn = self.db.connection().await?;
        self.db
            .timed(
                diesel::update(
                    refresh_tokens::table
                        .filter(refresh_tokens::family_id.eq(family_id))
                        .filter(refresh_tokens::revoked_at.is_null()),
                )
                .set(refresh_tokens::revoked_at.eq(now))
                .prepared()
                .execute(&mut conn),
            )
            .await
            .map(|_| ())
    }

    async fn revoke_all_for_user(
        &self,
        user_id: UserId,
        except_family: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let mut query = diesel::update(refresh_tokens::table)
            .filter(refresh_tokens::user_id.eq(user_id.0))
            .filter(refresh_tokens::revoked_at.is_null())
            .into_boxed();
        if let Some(family) = except_family {
            query = query.filter(refresh_tokens::family_id.ne(family));
        }
        let mut conn = self.db.connection().await?;
        self.db
            .timed(
                query
                    .set(refresh_tokens::revoked_at.eq(now))
                    .execute(&mut conn),
            )
            .await
            .map(|_| ())
    }
}
