//! Idempotency-Key claims on the `idempotency_keys` table, shared by the keyed writes (orders,
//! subscriptions).
//!
//! A key is claimed inside the transaction of its effect and its response is stored there too,
//! so a committed record exists exactly when the effect does: a rollback (a refusal, a crash)
//! frees the key for a retry.

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::Error as DieselError;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use strata_domain::UserId;
use strata_ports::{IdempotencyClaim, PortError};
use uuid::Uuid;

use crate::database::Abort;
use crate::prepared::PrepareOnce as _;
use crate::schema::idempotency_keys;

/// What claiming (or peeking at) a key found.
pub(crate) enum KeyClaim<T> {
    /// Claimed: the key is this transaction's now; go ahead, then [`store_response`]. Peeked: no
    /// committed, unexpired use of it.
    Fresh,
    /// The key was used before for this same request: its stored response, to replay.
    Replay(T),
    /// The key was used before for another request (or another operation).
    Reused,
}

#[derive(Insertable)]
#[diesel(table_name = idempotency_keys)]
struct NewIdempotencyRow<'a> {
    user_id: Uuid,
    key: &'a str,
    operation: &'a str,
    fingerprint: &'a str,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = idempotency_keys, check_for_backend(diesel::pg::Pg))]
struct IdempotencyRecord {
    operation: String,
    fingerprint: String,
    response: Option<serde_json::Value>,
}

/// Claims `claim` for `user_id` inside the caller's transaction; `decode` reads a stored response
/// back (`serde_json::from_value::<Order>`). A response that is missing or unreadable is a broken
/// invariant: [`PortError::Unexpected`].
pub(crate) async fn claim_key<T, E: From<PortError>>(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    claim: &IdempotencyClaim,
    now: DateTime<Utc>,
    decode: fn(serde_json::Value) -> serde_json::Result<T>,
) -> Result<KeyClaim<T>, Abort<E>> {
    let key = claim.key.as_str();
    let this_key = idempotency_keys::user_id
        .eq(user_id.0)
        .and(idempotency_keys::key.eq(key));
    // An expired key may be used afresh.
    diesel::delete(idempotency_keys::table.filter(this_key))
        .filter(idempotency_keys::expires_at.le(now))
        .execute(conn)
        .await?;
    // A concurrent holder of the same key makes this insert wait on the primary key until it
    // commits (then we replay it) or rolls back (then we go ahead).
    let claimed = diesel::insert_into(idempotency_keys::table)
        .values(NewIdempotencyRow {
            user_id: user_id.0,
            key,
            operation: claim.operation,
            fingerprint: &claim.fingerprint,
            created_at: now,
            expires_at: claim.expires_at,
        })
        .on_conflict((idempotency_keys::user_id, idempotency_keys::key))
        .do_nothing()
        .prepared()
        .execute(conn)
        .await?;
    if claimed == 1 {
        return Ok(KeyClaim::Fresh);
    }
    let record = idempotency_keys::table
        .filter(this_key)
        .select(IdempotencyRecord::as_select())
        .first(conn)
        .await?;
    judge(record, user_id, claim, decode).map_err(Abort::port)
}

/// The committed, unexpired use of `claim`'s key, read without claiming it (a retry answered
/// before the use case validates against state the first attempt changed). Expiry is judged by
/// the database's clock, as the port passes no time.
pub(crate) async fn peek_key<T>(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    claim: &IdempotencyClaim,
    decode: fn(serde_json::Value) -> serde_json::Result<T>,
) -> Result<Result<KeyClaim<T>, PortError>, DieselError> {
    let record = idempotency_keys::table
        .filter(idempotency_keys::user_id.eq(user_id.0))
        .filter(idempotency_keys::key.eq(claim.key.as_str()))
        .filter(idempotency_keys::expires_at.gt(diesel::dsl::now))
        .select(IdempotencyRecord::as_select())
        .first(conn)
        .await
        .optional()?;
    Ok(match record {
        None => Ok(KeyClaim::Fresh),
        Some(record) => judge(record, user_id, claim, decode),
    })
}

/// What an earlier use of the key means for `claim`: its response to replay, or a reuse.
fn judge<T>(
    record: IdempotencyRecord,
    user_id: UserId,
    claim: &IdempotencyClaim,
    decode: fn(serde_json::Value) -> serde_json::Result<T>,
) -> Result<KeyClaim<T>, PortError> {
    if record.operation != claim.operation || record.fingerprint != claim.fingerprint {
        return Ok(KeyClaim::Reused);
    }
    let response = record.response.ok_or_else(|| {
        PortError::unexpected(anyhow!(
            "idempotency key of user {user_id} was committed without a response"
        ))
    })?;
    Ok(KeyClaim::Replay(
        decode(response).map_err(PortError::unexpected)?,
    ))
}

/// Records the outcome of the effect (`serde_json::to_value(&order)`) under the key claimed by
/// [`claim_key`], in the same transaction, for later replays.
pub(crate) async fn store_response<E: From<PortError>>(
    conn: &mut AsyncPgConnection,
    user_id: UserId,
    claim: &IdempotencyClaim,
    resource_id: Uuid,
    response: serde_json::Result<serde_json::Value>,
) -> Result<(), Abort<E>> {
    let response = response.map_err(Abort::unexpected)?;
    diesel::update(
        idempotency_keys::table
            .filter(idempotency_keys::user_id.eq(user_id.0))
            .filter(idempotency_keys::key.eq(claim.key.as_str())),
    )
    .set((
        idempotency_keys::resource_id.eq(resource_id),
        idempotency_keys::response.eq(response),
    ))
    .prepared()
    .execute(conn)
    .await?;
    Ok(())
}
