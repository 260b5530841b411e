//! One round trip per transaction on MariaDB: a transaction's statements sent together as one
//! compound statement (`BEGIN NOT ATOMIC … END`), prepared once per connection like any kept
//! statement.
//!
//! Every statement of a transaction otherwise costs a round trip of its own (with `BEGIN` and
//! `COMMIT`, seven for a flow's last step), and each round trip costs both sides a wake-up and a
//! context switch, and the caller a blocking thread that waits. MariaDB takes a compound statement
//! with bind parameters, so the statements inside are the very diesel statements the transaction
//! would run one by one ([`kept`](super::kept) updates and inserts, the event batch), written into
//! one text that the connection caches.
//!
//! The compound statement commits only when each statement changed the rows it was expected to
//! (`IF ROW_COUNT() <> 1 THEN SIGNAL …`; diesel's connections count the rows an update matched);
//! any error or unexpected count rolls it back whole (an exit handler), and the caller then runs
//! its ordinary transaction, which says precisely why a write is refused (a newer owner, a row
//! gone, a step run again). So a compound statement is only ever a faster way to the same rows,
//! never a second set of rules.
//!
//! MySQL has no anonymous compound statements; the store uses these only where the server runs one
//! when it opens ([`supports_compound`]).

use std::sync::atomic::{AtomicU64, Ordering};

use diesel::mysql::{Mysql, MysqlConnection};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::{QueryResult, RunQueryDsl};

/// What a statement of a compound transaction must have changed for the transaction to commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Whatever it changed (an insert fails by itself when it cannot write).
    Anything,
    /// Exactly one row (an update of a row that must exist and match its conditions).
    OneRow,
}

/// The text a compound statement signals when a statement changed other than what it expected.
const DECLINED: &str = "mesh-manager: compound transaction declined";

/// A transaction to send as one compound statement: statements in order, each with what it must
/// have changed, and SQL of its own where a statement needs it (a variable set from the last
/// insert).
#[derive(Default)]
pub(crate) struct Compound<'a> {
    parts: Vec<Part<'a>>,
}

enum Part<'a> {
    Statement(Box<dyn QueryFragment<Mysql> + Send + 'a>, Expect),
    Sql(&'static str),
}

/// How a compound transaction ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Committed whole.
    Committed,
    /// Rolled back whole: a statement failed or changed other than expected; run the ordinary
    /// transaction instead, which says why.
    Declined(String),
}

impl<'a> Compound<'a> {
    /// Adds `statement`, which must change what `expect` says.
    pub(crate) fn push(
        &mut self,
        statement: impl QueryFragment<Mysql> + Send + 'a,
        expect: Expect,
    ) -> &mut Self {
        self.parts
            .push(Part::Statement(Box::new(statement), expect));
        self
    }

    /// Adds a statement of fixed text (no bind parameters), such as `SET @v = LAST_INSERT_ID()`.
    pub(crate) fn push_sql(&mut self, sql: &'static str) -> &mut Self {
        self.parts.push(Part::Sql(sql));
        self
    }

    /// Runs the transaction in one round trip. An error of the statement itself (it failed, or
    /// a count differed and it rolled back) is [`Outcome::Declined`]; the connection is then out
    /// of any transaction and usable. Only an error no statement caused (the connection is gone)
    /// is returned as an error.
    fn run(self, conn: &mut MysqlConnection) -> QueryResult<Outcome> {
        match self.execute(conn) {
            Ok(_) => Ok(Outcome::Committed),
            Err(diesel::result::Error::DatabaseError(kind, info))
                if !super::connection_lost(info.message()) =>
            {
                Ok(Outcome::Declined(format!("{kind:?}: {}", info.message())))
            }
            Err(error) => Err(error),
        }
    }
}

impl QueryId for Compound<'_> {
    type QueryId = ();
    // Kept by its SQL text: the shape (which statements, how many rows each) varies.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Mysql> for Compound<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        out.push_sql(
            "BEGIN NOT ATOMIC DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END; \
             START TRANSACTION; ",
        );
        for part in &self.parts {
            match part {
                Part::Statement(statement, expect) => {
                    statement.walk_ast(out.reborrow())?;
                    out.push_sql("; ");
                    if *expect == Expect::OneRow {
                        out.push_sql(
                            "IF ROW_COUNT() <> 1 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '",
                        );
                        out.push_sql(DECLINED);
                        out.push_sql("'; END IF; ");
                    }
                }
                Part::Sql(sql) => {
                    out.push_sql(sql);
                    out.push_sql("; ");
                }
            }
        }
        out.push_sql("COMMIT; END");
        Ok(())
    }
}

impl RunQueryDsl<MysqlConnection> for Compound<'_> {}

/// How many compound transactions committed and how many were declined (and then run statement
/// by statement), since the store opened.
#[derive(Debug, Default)]
pub(crate) struct CompoundCounts {
    committed: AtomicU64,
    declined: AtomicU64,
}

impl CompoundCounts {
    /// Runs `compound` (recording `what`) on `conn`, counts how it ended and returns whether it
    /// committed; a declined one is logged (at debug) with why, and the caller runs the ordinary
    /// transaction.
    pub(crate) fn run(
        &self,
        what: &'static str,
        compound: Compound<'_>,
        conn: &mut MysqlConnection,
    ) -> QueryResult<bool> {
        match compound.run(conn)? {
            Outcome::Committed => {
                self.committed.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Outcome::Declined(reason) => {
                self.declined.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(what, %reason, "declined as one statement; recorded statement by statement");
                Ok(false)
            }
        }
    }

    /// (committed, declined) so far.
    pub(crate) fn get(&self) -> (u64, u64) {
        (
            self.committed.load(Ordering::Relaxed),
            self.declined.load(Ordering::Relaxed),
        )
    }
}

/// Whether the server behind `conn` prepares and runs compound statements outside stored programs
/// (MariaDB does; MySQL does not): asked by preparing and running an empty one, so a server that
/// refuses them is never sent one again.
pub(crate) fn supports_compound(conn: &mut MysqlConnection) -> bool {
    diesel::sql_query("BEGIN NOT ATOMIC DO 0; END")
        .execute(conn)
        .is_ok()
}
