//! [`RefreshTokenRepository`] on the `refresh_tokens` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use strata_domain::{RefreshTokenRecord, Session, UserId};
use strata_ports::{MAX_LISTED_SESSIONS, PortError, RefreshTokenRepository, RotateOutcome};
use uuid::Uuid;

use crate::database::{Database, Transaction};
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
        self.db
            .in_transaction(Transaction::Write, async |conn| {
                lock_family(conn, row.family_id).await?;
                // The family's lock makes this UPDATE see any revocation committed before it;
                // its row lock still gives concurrent rotations of one token one winner.
                let marked = diesel::update(
                    refresh_tokens::table
                        .find(old_id)
                        .filter(refresh_tokens::family_id.eq(row.family_id))
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
            })
            .await
    }

    async fn revoke_family(&self, family_id: Uuid, now: DateTime<Utc>) -> Result<(), PortError> {
        self.db
            .in_transaction(Transaction::Write, async |conn| {
                lock_family(conn, family_id).await?;
                Ok(revoke_families(conn, &[family_id], now).await?)
            })
            .await
    }

    async fn revoke_all_for_user(
        &self,
        user_id: UserId,
        except_family: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.db
            .in_transaction(Transaction::Write, async |conn| {
                // In id order, so that two of these for one user cannot deadlock.
                let families: Vec<Uuid> = diesel::sql_query(
                    "SELECT family_id, pg_advisory_xact_lock(hashtextextended(family_id::text, \
                     $3)) AS locked FROM (SELECT DISTINCT family_id FROM refresh_tokens \
                     WHERE user_id = $1 AND revoked_at IS NULL \
                     AND family_id IS DISTINCT FROM $2 ORDER BY family_id) AS live",
                )
                .bind::<diesel::sql_types::Uuid, _>(user_id.0)
                .bind::<diesel::sql_types::Nullable<diesel::sql_types::Uuid>, _>(except_family)
                .bind::<diesel::sql_types::BigInt, _>(FAMILY_LOCK_SEED)
                .prepared()
                .load::<Family>(conn)
                .await?
                .into_iter()
                .map(|family| family.family_id)
                .collect();
                // A session started after the SELECT is left alone: it began after the
                // revocation did, like one started after it ended.
                Ok(revoke_families(conn, &families, now).await?)
            })
            .await
    }

    async fn sessions(
        &self,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Session>, PortError> {
        let mut conn = self.db.connection().await?;
        let rows = self
            .db
            .timed(
                diesel::sql_query(SESSIONS)
                    .bind::<diesel::sql_types::Uuid, _>(user_id.0)
                    .bind::<diesel::sql_types::Timestamptz, _>(now)
                    .prepared()
                    .load::<SessionRow>(&mut conn),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| Session {
                id: row.family_id,
                started_at: row.started_at,
                last_active_at: row.last_active_at,
                expires_at: row.expires_at,
                current: false,
            })
            .collect())
    }

    async fn revoke_user_family(
        &self,
        user_id: UserId,
        family_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        self.db
            .in_transaction(Transaction::Write, async |conn| {
                // Under the family's lock a rotation in progress has committed, so its successor
                // is the live token this checks, and it is revoked with the rest.
                lock_family(conn, family_id).await?;
                let revoked = diesel::sql_query(REVOKE_USER_FAMILY)
                    .bind::<diesel::sql_types::Uuid, _>(family_id)
                    .bind::<diesel::sql_types::Uuid, _>(user_id.0)
                    .bind::<diesel::sql_types::Timestamptz, _>(now)
                    .prepared()
                    .execute(conn)
                    .await?;
                Ok(revoked > 0)
            })
            .await
    }
}

/// The user's live families, by their live token (the one neither rotated nor revoked: rotation
/// stores a successor in the same transaction that marks its predecessor, so a family has one at
/// most), each with the issue of its first token. `$1`: the user, `$2`: now.
const SESSIONS: &str = "SELECT live.family_id, \
     (SELECT min(t.created_at) FROM refresh_tokens t WHERE t.family_id = live.family_id) \
     AS started_at, live.created_at AS last_active_at, live.expires_at \
     FROM refresh_tokens live \
     WHERE live.user_id = $1 AND live.rotated_at IS NULL AND live.revoked_at IS NULL \
     AND live.expires_at > $2 \
     ORDER BY live.created_at DESC, live.family_id DESC \
     LIMIT 100";

// The limit is written into the text so that the plan is made once (ADR 0016).
const _: () = assert!(MAX_LISTED_SESSIONS == 100);

/// Revokes the family `$1` if it belongs to the user `$2` and has a live token at `$3`.
const REVOKE_USER_FAMILY: &str = "UPDATE refresh_tokens SET revoked_at = $3 \
     WHERE family_id = $1 AND user_id = $2 AND revoked_at IS NULL \
     AND EXISTS (SELECT 1 FROM refresh_tokens live WHERE live.family_id = $1 \
     AND live.user_id = $2 AND live.rotated_at IS NULL AND live.revoked_at IS NULL \
     AND live.expires_at > $3)";

#[derive(QueryableByName)]
struct SessionRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    family_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    started_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    last_active_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    expires_at: DateTime<Utc>,
}

/// Distinguishes this adapter's advisory locks from any other use of `pg_advisory_xact_lock`
/// (a shared key would only serialise unrelated work, never break it).
const FAMILY_LOCK_SEED: i64 = 0x7265_6672_6573_6800;

#[derive(QueryableByName)]
struct Family {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    family_id: Uuid,
}

/// Takes the family's lock until the transaction ends. Rotation and revocation both take it, so a
/// revocation's UPDATE runs after any rotation in progress has committed and sees its successor,
/// which a row lock cannot give: the successor is a new row, outside the UPDATE's snapshot.
async fn lock_family(
    conn: &mut diesel_async::AsyncPgConnection,
    family_id: Uuid,
) -> Result<(), diesel::result::Error> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, $2))")
        .bind::<diesel::sql_types::Uuid, _>(family_id)
        .bind::<diesel::sql_types::BigInt, _>(FAMILY_LOCK_SEED)
        .prepared()
        .execute(conn)
        .await
        .map(|_| ())
}

/// Marks every token of `families` revoked at `now`; the caller holds their locks.
async fn revoke_families(
    conn: &mut diesel_async::AsyncPgConnection,
    families: &[Uuid],
    now: DateTime<Utc>,
) -> Result<(), diesel::result::Error> {
    if families.is_empty() {
        return Ok(());
    }
    diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::family_id.eq_any(families))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(now))
    .prepared()
    .execute(conn)
    .await
    .map(|_| ())
}
