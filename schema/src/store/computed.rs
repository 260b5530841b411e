//! Values MariaDB/MySQL computes inside an `UPDATE` (a log with lines appended, a start time kept
//! once set, the room left in a log), written as diesel expressions whose statements the
//! connection prepares once and reuses.
//!
//! `diesel::dsl::sql` would say the same SQL, but it marks every statement holding it as unsafe to
//! cache, so each execution costs a prepare, an execute and a close: two round trips more than a
//! cached statement. These expressions put only placeholders in the SQL text, so the statement's
//! text, which is its cache key, is the same on every execution.

use chrono::NaiveDateTime;
use diesel::expression::{
    AppearsOnTable, Expression, SelectableExpression, ValidGrouping, is_aggregate,
};
use diesel::mysql::Mysql;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamp};

/// The traits that let a row-level expression of SQL type `$sql_type` stand in an update's
/// assignment or condition on any table.
macro_rules! row_expression {
    ($name:ident, $sql_type:ty) => {
        impl Expression for $name {
            type SqlType = $sql_type;
        }

        impl QueryId for $name {
            type QueryId = ();
            // Not static: the statement is cached by its SQL text instead.
            const HAS_STATIC_QUERY_ID: bool = false;
        }

        impl<QS> AppearsOnTable<QS> for $name {}

        impl<QS> SelectableExpression<QS> for $name {}

        impl<GB> ValidGrouping<GB> for $name {
            type IsAggregate = is_aggregate::Never;
        }
    };
}

/// The `log` column with `lines` appended after a line break, or `lines` alone when the log is
/// empty: `CASE WHEN log IS NULL OR log = '' THEN ? ELSE CONCAT(log, ?) END`.
#[derive(Debug, Clone)]
pub(crate) struct AppendedLog {
    alone: String,
    after_break: String,
}

impl AppendedLog {
    pub(crate) fn new(lines: &str) -> Self {
        Self {
            alone: lines.to_owned(),
            after_break: format!("\n{lines}"),
        }
    }
}

row_expression!(AppendedLog, Nullable<Text>);

impl QueryFragment<Mysql> for AppendedLog {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> diesel::QueryResult<()> {
        out.push_sql("CASE WHEN log IS NULL OR log = '' THEN ");
        out.push_bind_param::<Text, _>(&self.alone)?;
        out.push_sql(" ELSE CONCAT(log, ");
        out.push_bind_param::<Text, _>(&self.after_break)?;
        out.push_sql(") END");
        Ok(())
    }
}

/// `COALESCE(started_at, ?)`: a start time kept once set.
#[derive(Debug, Clone)]
pub(crate) struct StartedOnce {
    at: NaiveDateTime,
}

impl StartedOnce {
    pub(crate) fn at(at: NaiveDateTime) -> Self {
        Self { at }
    }
}

row_expression!(StartedOnce, Nullable<Timestamp>);

impl QueryFragment<Mysql> for StartedOnce {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> diesel::QueryResult<()> {
        out.push_sql("COALESCE(started_at, ");
        out.push_bind_param::<Timestamp, _>(&self.at)?;
        out.push_sql(")");
        Ok(())
    }
}

/// `(log IS NULL OR LENGTH(log) <= ?)`: the row's log is at most `bytes` long.
#[derive(Debug, Clone)]
pub(crate) struct LogAtMost {
    bytes: i64,
}

impl LogAtMost {
    pub(crate) fn bytes(bytes: usize) -> Self {
        Self {
            bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
        }
    }
}

row_expression!(LogAtMost, Bool);

impl QueryFragment<Mysql> for LogAtMost {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> diesel::QueryResult<()> {
        out.push_sql("(log IS NULL OR LENGTH(log) <= ");
        out.push_bind_param::<BigInt, _>(&self.bytes)?;
        out.push_sql(")");
        Ok(())
    }
}

/// The user variable holding the id of the flow a compound transaction inserted (see
/// `store::compound`), which its later statements link to.
pub(crate) const REMEMBER_NEW_FLOW: &str = "SET @mesh_manager_new_flow = LAST_INSERT_ID()";

/// `CAST(@mesh_manager_new_flow AS SIGNED)`: the id of the flow the last compound transaction on
/// this connection inserted ([`REMEMBER_NEW_FLOW`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewFlowId;

row_expression!(NewFlowId, BigInt);

impl QueryFragment<Mysql> for NewFlowId {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> diesel::QueryResult<()> {
        out.push_sql("CAST(@mesh_manager_new_flow AS SIGNED)");
        Ok(())
    }
}
