//! Statements that PostgreSQL prepares and plans once per connection instead of on every use.
//!
//! Two costs hide in statements that look cached:
//!
//! - diesel marks a statement "unsafe to cache" whenever its text *could* vary without bound —
//!   every `sql_query`, every insert of a struct (a column could be `DEFAULT`), every batch insert,
//!   every `UPDATE`, every SQL fragment — and diesel-async then prepares it afresh on each
//!   execution: a Parse/Describe round trip before the Bind/Execute one, and a Close after. The
//!   statement cache is keyed by the SQL text and the bind types, so caching such a statement is
//!   correct whenever its text comes from a small set, which [`PrepareOnce::prepared`] asserts for
//!   the statement it wraps.
//! - With `LIMIT $n` PostgreSQL plans a prepared statement afresh on every execution: the generic
//!   plan assumes a tenth of the table and so never looks cheaper than the custom ones, and for a
//!   page of a few rows the planning costs more than the execution (the product list's first page:
//!   17.7k → 26.4k queries/s under pgbench once the limit was written into the text).
//!   [`LimitLiteral::limit_literal`] writes it there, rounded up to one of a few sizes so that the
//!   number of distinct statements stays small; the caller keeps the rows it asked for.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;

/// A statement cached (prepared once per connection) although diesel would not cache it.
#[derive(Debug, Clone)]
pub(crate) struct Prepared<Q>(Q);

/// Marks a statement whose SQL text comes from a small, fixed set as safe to prepare once.
pub(crate) trait PrepareOnce: Sized {
    /// This statement, prepared once per connection and reused.
    fn prepared(self) -> Prepared<Self> {
        Prepared(self)
    }
}

impl<Q> PrepareOnce for Q {}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

// Not a static id: the cache is keyed by the SQL text, which is what varies between uses.
impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

/// The page sizes a `LIMIT` is rounded up to: the API's default page (20 + 1 to see whether
/// another follows), its common sizes, and its maximum (100 + 1).
const LIMIT_SIZES: [usize; 4] = [11, 21, 51, 101];

/// The `LIMIT` written for a request of `rows` rows: the first size that holds them.
pub(crate) fn rounded_limit(rows: usize) -> usize {
    LIMIT_SIZES
        .into_iter()
        .find(|size| *size >= rows)
        .unwrap_or(rows)
}

/// A select with its `LIMIT` written into the statement's text.
#[derive(Debug, Clone)]
pub(crate) struct LiteralLimit<Q> {
    query: Q,
    limit: usize,
}

/// Appends a literal `LIMIT` (rounded up by [`rounded_limit`]) to a select without one.
pub(crate) trait LimitLiteral: Sized {
    /// This select limited to at least `rows` rows (see [`rounded_limit`]): truncate the result.
    fn limit_literal(self, rows: usize) -> LiteralLimit<Self> {
        LiteralLimit {
            query: self,
            limit: rounded_limit(rows),
        }
    }
}

impl<Q> LimitLiteral for Q {}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for LiteralLimit<Q> {
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.query.walk_ast(pass.reborrow())?;
        pass.push_sql(" LIMIT ");
        pass.push_sql(&self.limit.to_string());
        Ok(())
    }
}

impl<Q> QueryId for LiteralLimit<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for LiteralLimit<Q> {
    type SqlType = Q::SqlType;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_round_up_to_a_few_sizes_and_never_down() {
        assert_eq!(rounded_limit(1), 11);
        assert_eq!(rounded_limit(11), 11);
        assert_eq!(rounded_limit(12), 21);
        assert_eq!(rounded_limit(21), 21);
        assert_eq!(rounded_limit(22), 51);
        assert_eq!(rounded_limit(101), 101);
        assert_eq!(rounded_limit(2001), 2001);
        let sizes: std::collections::BTreeSet<_> = (1..=101).map(rounded_limit).collect();
        assert_eq!(sizes.len(), LIMIT_SIZES.len());
    }
}
