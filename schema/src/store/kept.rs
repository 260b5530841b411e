//! Writes each connection prepares once and keeps.
//!
//! Diesel keeps no `UPDATE` and no MariaDB/MySQL `INSERT` prepared: some have shapes without bound
//! (a changeset of optional fields, a batch of any length), so every one of them is prepared, run
//! and closed, three round trips where a kept statement needs one. The writes on every command's
//! path (flows, tasks, events, the command log, the mesh's status and desired state) have a
//! bounded set of shapes, so they are written with the statements here, which diesel keeps per
//! connection by their SQL text:
//! - [`update`]: `UPDATE table SET … WHERE …`, from the same target and changeset as
//!   `diesel::update(target).set(changeset)`;
//! - [`insert_row!`]: one row; on MariaDB/MySQL written `INSERT INTO table
//!   SET …`, which carries the row as a changeset, on SQLite (no round trips to save) diesel's own
//!   insert.
//!
//! Only a statement with a bounded set of shapes may be written this way: never a batch, never an
//! `IN` over a list.

use diesel::backend::Backend;
use diesel::query_builder::{
    AsChangeset, AstPass, IntoUpdateTarget, QueryFragment, QueryId, UpdateTarget,
};
use diesel::query_source::QuerySource;
use diesel::{QueryResult, RunQueryDsl};

use crate::database::{AnyConnection, MultiBackend};

/// A kept statement of either backend: run alone on an [`AnyConnection`], or written into a
/// compound transaction on MariaDB (see `store::compound`).
pub(crate) trait Kept:
    QueryFragment<diesel::mysql::Mysql>
    + QueryFragment<MultiBackend>
    + QueryId
    + RunQueryDsl<AnyConnection>
    + Send
{
}

impl<T> Kept for T where
    T: QueryFragment<diesel::mysql::Mysql>
        + QueryFragment<MultiBackend>
        + QueryId
        + RunQueryDsl<AnyConnection>
        + Send
{
}

/// A kept MariaDB/MySQL-only statement (one computing the new row in the database, see
/// `store::computed`): run alone, or written into a compound transaction.
pub(crate) trait KeptMysql:
    QueryFragment<diesel::mysql::Mysql> + QueryId + RunQueryDsl<diesel::mysql::MysqlConnection> + Send
{
}

impl<T> KeptMysql for T where
    T: QueryFragment<diesel::mysql::Mysql>
        + QueryId
        + RunQueryDsl<diesel::mysql::MysqlConnection>
        + Send
{
}

/// `UPDATE table SET changeset WHERE filter`, kept prepared (see the module docs).
pub(crate) struct KeptUpdate<F, W, V> {
    from: F,
    where_clause: W,
    changeset: V,
}

/// The kept form of `diesel::update(target).set(changeset)`.
pub(crate) fn update<T, V>(
    target: T,
    changeset: V,
) -> KeptUpdate<<T::Table as QuerySource>::FromClause, T::WhereClause, V::Changeset>
where
    T: IntoUpdateTarget,
    V: AsChangeset<Target = T::Table>,
{
    let UpdateTarget {
        table,
        where_clause,
    } = target.into_update_target();
    KeptUpdate {
        from: table.from_clause(),
        where_clause,
        changeset: changeset.as_changeset(),
    }
}

impl<F, W, V> QueryId for KeptUpdate<F, W, V> {
    type QueryId = ();
    // Kept by its SQL text: the type does not fix which optional fields the changeset sets.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB, F, W, V> QueryFragment<DB> for KeptUpdate<F, W, V>
where
    DB: Backend,
    F: QueryFragment<DB>,
    W: QueryFragment<DB>,
    V: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("UPDATE ");
        self.from.walk_ast(out.reborrow())?;
        out.push_sql(" SET ");
        self.changeset.walk_ast(out.reborrow())?;
        self.where_clause.walk_ast(out.reborrow())
    }
}

impl<F, W, V, Conn> RunQueryDsl<Conn> for KeptUpdate<F, W, V> {}

/// `INSERT INTO table SET changeset` (MariaDB/MySQL), kept prepared (see the module docs).
pub(crate) struct KeptInsert<F, V> {
    into: F,
    row: V,
}

/// The kept MariaDB/MySQL form of inserting `row` (any `AsChangeset` of `table`).
pub(crate) fn insert_set<T, V>(table: T, row: V) -> KeptInsert<T::FromClause, V::Changeset>
where
    T: diesel::Table,
    V: AsChangeset<Target = T>,
{
    KeptInsert {
        into: table.from_clause(),
        row: row.as_changeset(),
    }
}

impl<F, V> QueryId for KeptInsert<F, V> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<F, V> QueryFragment<diesel::mysql::Mysql> for KeptInsert<F, V>
where
    F: QueryFragment<diesel::mysql::Mysql>,
    V: QueryFragment<diesel::mysql::Mysql>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, diesel::mysql::Mysql>) -> QueryResult<()> {
        out.push_sql("INSERT INTO ");
        self.into.walk_ast(out.reborrow())?;
        out.push_sql(" SET ");
        self.row.walk_ast(out.reborrow())
    }
}

impl<F, V, Conn> RunQueryDsl<Conn> for KeptInsert<F, V> {}

/// Inserts one row (`$row`: an `Insertable` that is also an `AsChangeset` of `$table`, such as a
/// tuple of `column.eq(value)`) on an `AnyConnection`, kept prepared on MariaDB/MySQL; evaluates
/// to diesel's `QueryResult<usize>`.
macro_rules! insert_row {
    ($conn:expr, $table:expr, $row:expr) => {
        match $conn {
            $crate::database::AnyConnection::Mysql(conn) => {
                diesel::RunQueryDsl::execute($crate::store::kept::insert_set($table, $row), conn)
            }
            $crate::database::AnyConnection::Sqlite(conn) => {
                diesel::RunQueryDsl::execute(diesel::insert_into($table).values($row), conn)
            }
        }
    };
}

pub(crate) use insert_row;
