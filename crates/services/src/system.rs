//! The real clock and id generator.

use chrono::{DateTime, SubsecRound, Utc};
use strata_ports::{Clock, IdGenerator};
use uuid::Uuid;

/// Wall-clock time, truncated to microseconds (PostgreSQL's precision), so that a value read back
/// from the database equals the value written.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// UUIDv7 identifiers (time-ordered, so btree inserts stay local).
#[derive(Debug, Clone, Copy, Default)]
pub struct UuidV7Ids;

impl IdGenerator for UuidV7Ids {
    fn new_id(&self) -> Uuid {
        Uuid::now_v7()
    }
}
