//! Transactions of the store: one helper, [`atomically`], which every multi-statement write uses.
//!
//! On MariaDB/MySQL, diesel's own `Connection::transaction` sends `BEGIN` and `COMMIT` through
//! `batch_execute`, which switches the server's multi-statement option on and off around each
//! (`COM_SET_OPTION`), so one transaction costs six round trips before its own statements. Here
//! `BEGIN`, `COMMIT` and `ROLLBACK` are prepared statements that diesel caches per connection:
//! one round trip each. SQLite keeps diesel's transaction manager (it is in-process).
//!
//! The MySQL path bypasses diesel's transaction manager, so nothing inside `work` may open a
//! transaction of its own: on MySQL a nested `BEGIN` would commit the outer transaction at once.
//! No store function calls `Connection::transaction`; they all come through here and none nests.

use diesel::mysql::{Mysql, MysqlConnection};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::{Connection, QueryResult, RunQueryDsl};

use super::StoreError;
use crate::database::AnyConnection;

/// A transaction-control statement that diesel prepares once per connection and caches by its
/// text (it has no bind parameters and never changes).
#[derive(Debug, Clone, Copy)]
struct Control(&'static str);

const BEGIN: Control = Control("BEGIN");
const COMMIT: Control = Control("COMMIT");
const ROLLBACK: Control = Control("ROLLBACK");

impl QueryId for Control {
    type QueryId = ();
    // Cached by its SQL text, not by type: the three statements share one type.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Mysql> for Control {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        out.push_sql(self.0);
        Ok(())
    }
}

impl RunQueryDsl<MysqlConnection> for Control {}

/// Runs `work` in one transaction on `conn`: committed when it returns `Ok`, rolled back when it
/// returns `Err` (that error is returned). A failed `BEGIN`, `COMMIT` or `ROLLBACK` is returned as
/// [`StoreError::Transaction`], which is transient, so the pool drops the connection instead of
/// handing it out again with a transaction in an unknown state.
pub(crate) fn atomically<T>(
    conn: &mut AnyConnection,
    work: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if !matches!(conn, AnyConnection::Mysql(_)) {
        return conn.transaction(work);
    }
    control(conn, BEGIN)?;
    match work(conn) {
        Ok(value) => {
            control(conn, COMMIT)?;
            Ok(value)
        }
        Err(error) => match control(conn, ROLLBACK) {
            Ok(()) => Err(error),
            Err(rollback) => {
                tracing::warn!(%error, %rollback, "a failed transaction could not be rolled back; its connection is dropped");
                Err(rollback)
            }
        },
    }
}

/// Runs `statement` on a MySQL connection (`atomically` sends only those here).
fn control(conn: &mut AnyConnection, statement: Control) -> Result<(), StoreError> {
    match conn {
        AnyConnection::Mysql(mysql) => statement
            .execute(mysql)
            .map(drop)
            .map_err(StoreError::Transaction),
        AnyConnection::Sqlite(_) => Err(StoreError::Transaction(
            diesel::result::Error::QueryBuilderError(
                format!("{} is sent to MySQL connections only", statement.0).into(),
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::sql_types::{BigInt, Text};

    use super::*;
    use crate::database::DatabaseTarget;

    #[derive(diesel::QueryableByName)]
    struct Status {
        #[diesel(sql_type = Text, column_name = "Variable_name")]
        name: String,
        #[diesel(sql_type = Text, column_name = "Value")]
        value: String,
    }

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    /// This connection's own counters of the statements a transaction costs.
    fn session_counters(conn: &mut AnyConnection) -> std::collections::BTreeMap<String, u64> {
        diesel::sql_query(
            "SHOW SESSION STATUS WHERE Variable_name IN \
             ('Com_set_option', 'Com_begin', 'Com_commit', 'Com_rollback')",
        )
        .load::<Status>(conn)
        .expect("session status")
        .into_iter()
        .map(|s| (s.name, s.value.parse().expect("a number")))
        .collect()
    }

    fn rows(conn: &mut AnyConnection) -> i64 {
        diesel::sql_query("SELECT COUNT(*) AS n FROM atomic_probe")
            .get_result::<Count>(conn)
            .expect("count")
            .n
    }

    fn insert(conn: &mut AnyConnection) -> Result<(), StoreError> {
        diesel::sql_query("INSERT INTO atomic_probe (v) VALUES ('x')")
            .execute(conn)
            .map(drop)
            .map_err(|e| StoreError::query("insert", "probe", "", e))
    }

    #[test]
    fn mariadb_transactions_commit_or_roll_back_whole_in_one_round_trip_per_control_statement() {
        let database = mesh_testkit::mariadb::TestDatabase::create();
        let target = DatabaseTarget::parse(&database.url()).expect("url");
        target.create_database_if_missing().expect("database");
        let mut conn = target.connect().expect("connection");
        conn.batch_execute("CREATE TABLE atomic_probe (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(8)) ENGINE=InnoDB")
            .expect("table");

        let before = session_counters(&mut conn);
        for _ in 0..3 {
            atomically(&mut conn, |conn| {
                insert(conn)?;
                insert(conn)
            })
            .expect("committed");
        }
        let refused = atomically(&mut conn, |conn| -> Result<(), StoreError> {
            insert(conn)?;
            Err(StoreError::NotFound {
                what: "probe",
                key: "refused".into(),
            })
        });
        assert!(
            matches!(refused, Err(StoreError::NotFound { .. })),
            "the work's own error comes back: {refused:?}"
        );
        let after = session_counters(&mut conn);

        assert_eq!(
            rows(&mut conn),
            6,
            "three committed pairs, the refused row rolled back"
        );
        let delta = |name: &str| after[name] - before[name];
        assert_eq!(delta("Com_begin"), 4);
        assert_eq!(delta("Com_commit"), 3);
        assert_eq!(delta("Com_rollback"), 1);
        assert_eq!(
            delta("Com_set_option"),
            0,
            "no multi-statement switching around BEGIN, COMMIT or ROLLBACK"
        );
    }

    #[test]
    fn sqlite_transactions_commit_or_roll_back_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let target = DatabaseTarget::parse(&dir.path().join("atomic.db").display().to_string())
            .expect("path");
        let mut conn = target.connect().expect("connection");
        conn.batch_execute("CREATE TABLE atomic_probe (id INTEGER PRIMARY KEY, v TEXT)")
            .expect("table");
        atomically(&mut conn, insert).expect("committed");
        let refused = atomically(&mut conn, |conn| -> Result<(), StoreError> {
            insert(conn)?;
            Err(StoreError::NotFound {
                what: "probe",
                key: "refused".into(),
            })
        });
        assert!(matches!(refused, Err(StoreError::NotFound { .. })));
        assert_eq!(rows(&mut conn), 1);
    }
}
