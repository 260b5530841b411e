//! The database the migrations build is the one the seed specified and the one `schema.rs` says.
//!
//! - `seed_schema_is_reproduced_exactly_on_mariadb` reads the live MariaDB `information_schema`
//!   after all migrations and checks every seed column (type, nullability, default, extra), unique
//!   key, engine and character set, the later `ALTER`s included.
//! - `schema_rs_matches_the_migrated_database_*` parses the committed `schema.rs` and compares it
//!   column by column with what the migrations built on both backends, so a migration without a
//!   matching `schema.rs` change (or the reverse) fails.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use mesh_schema::DatabaseTarget;
use mesh_schema::database::AnyConnection;
use mesh_testkit::mariadb::TestDatabase;

/// The seed DDL's columns as MariaDB reports them:
/// table, column, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT (`-` for none), EXTRA (`.` for none,
/// `on-update-now` for `on update current_timestamp()`).
const SEED_COLUMNS: &str = "
flow id bigint(11) NO - auto_increment
flow tenant_id varchar(255) NO - .
flow mesh_name varchar(255) NO - .
flow name varchar(255) NO - .
flow def_name varchar(255) NO - .
flow status varchar(255) NO '' .
flow input text NO - .
flow log text YES NULL .
flow started_at timestamp YES NULL .
flow finished_at timestamp YES NULL .
flow processor varchar(255) NO '' .
flow heartbeat timestamp YES NULL .
flow created_at timestamp YES current_timestamp() .
flow updated_at timestamp YES current_timestamp() on-update-now
task id bigint(11) NO - auto_increment
task flow_id bigint(20) NO - .
task name varchar(255) NO - .
task status varchar(255) NO '' .
task output text YES NULL .
task error text YES NULL .
task steps varchar(2048) NO '' .
task log text YES NULL .
task started_at timestamp YES NULL .
task finished_at timestamp YES NULL .
task created_at timestamp YES current_timestamp() .
task updated_at timestamp YES current_timestamp() on-update-now
mesh id bigint(11) NO - auto_increment
mesh tenant_id varchar(255) NO - .
mesh name varchar(64) NO - .
mesh region varchar(64) NO - .
mesh title varchar(255) NO - .
mesh status varchar(255) NO - .
mesh version varchar(64) NO - .
mesh last_version varchar(64) NO '' .
mesh config text YES NULL .
mesh deleted_flag bigint(20) NO 0 .
mesh deleted_at timestamp YES NULL .
mesh created_at timestamp YES current_timestamp() .
mesh updated_at timestamp YES current_timestamp() on-update-now
mesh state text YES NULL .
mesh mode varchar(32) NO '' .
mesh tasks text YES NULL .
cluster id bigint(11) NO - auto_increment
cluster name varchar(64) NO - .
cluster region varchar(64) NO - .
cluster mesh_name varchar(64) NO - .
cluster role varchar(64) NO 'master' .
cluster deleted_flag bigint(20) NO 0 .
cluster deleted_at timestamp YES NULL .
cluster created_at timestamp YES current_timestamp() .
cluster updated_at timestamp YES current_timestamp() on-update-now
cluster phase varchar(32) NO '' .
cluster linked_at timestamp YES NULL .
cluster error varchar(2048) NO '' .
lb_resource id bigint(11) NO - auto_increment
lb_resource name varchar(64) NO - .
lb_resource mesh_name varchar(32) NO - .
lb_resource status varchar(32) NO '' .
mesh_events id bigint(11) NO - auto_increment
mesh_events name varchar(64) NO - .
mesh_events events text YES NULL .
";

/// The seed's keys: table, key name, columns.
const SEED_UNIQUE_KEYS: &[(&str, &str, &str)] = &[
    ("flow", "PRIMARY", "id"),
    ("task", "PRIMARY", "id"),
    ("mesh", "PRIMARY", "id"),
    ("mesh", "idx_name_deleted_flag", "name,deleted_flag"),
    ("cluster", "PRIMARY", "id"),
    ("cluster", "idx_name_deleted_flag", "name,deleted_flag"),
    ("lb_resource", "PRIMARY", "id"),
    ("lb_resource", "uni_idx_key", "name"),
    ("mesh_events", "PRIMARY", "id"),
    ("mesh_events", "idx_name", "name"),
];

#[derive(QueryableByName, Debug)]
struct ColumnInfo {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    column_type: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
    #[diesel(sql_type = Nullable<Text>)]
    column_default: Option<String>,
    #[diesel(sql_type = Text)]
    extra: String,
}

#[derive(QueryableByName, Debug)]
struct KeyInfo {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    index_name: String,
    #[diesel(sql_type = Text)]
    columns: String,
}

/// The unique (or the other) indexes of `database`, with their columns in order.
fn indexes_of(conn: &mut AnyConnection, database: &str, unique: bool) -> Vec<KeyInfo> {
    diesel::sql_query(
        "SELECT TABLE_NAME AS table_name, INDEX_NAME AS index_name, \
         GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) AS columns \
         FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND NON_UNIQUE = ? \
         GROUP BY TABLE_NAME, INDEX_NAME",
    )
    .bind::<Text, _>(database)
    .bind::<diesel::sql_types::Integer, _>(if unique { 0 } else { 1 })
    .load(conn)
    .unwrap()
}

#[derive(QueryableByName, Debug)]
struct TableInfo {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    engine: String,
    #[diesel(sql_type = Text)]
    collation: String,
}

fn migrated_mariadb() -> (TestDatabase, AnyConnection) {
    let database = TestDatabase::create();
    let target = DatabaseTarget::parse(&database.url()).unwrap();
    target.migrate().unwrap();
    let conn = target.connect().unwrap();
    (database, conn)
}

fn mariadb_columns(conn: &mut AnyConnection, schema: &str) -> Vec<ColumnInfo> {
    diesel::sql_query(
        "SELECT TABLE_NAME AS table_name, COLUMN_NAME AS column_name, COLUMN_TYPE AS column_type, \
         IS_NULLABLE AS is_nullable, COLUMN_DEFAULT AS column_default, EXTRA AS extra \
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, ORDINAL_POSITION",
    )
    .bind::<Text, _>(schema)
    .load(conn)
    .unwrap()
}

#[test]
fn seed_schema_is_reproduced_exactly_on_mariadb() {
    let (database, mut conn) = migrated_mariadb();
    let live: BTreeMap<(String, String), ColumnInfo> = mariadb_columns(&mut conn, database.name())
        .into_iter()
        .map(|c| ((c.table_name.clone(), c.column_name.clone()), c))
        .collect();

    let mut checked = 0;
    for line in SEED_COLUMNS.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [table, column, column_type, nullable, default, extra] = fields[..] else {
            panic!("malformed expectation {line:?}");
        };
        let found = live
            .get(&(table.to_owned(), column.to_owned()))
            .unwrap_or_else(|| panic!("seed column {table}.{column} is missing"));
        assert_eq!(found.column_type, column_type, "{table}.{column} type");
        assert_eq!(found.is_nullable, nullable, "{table}.{column} nullability");
        let expected_default = (default != "-").then(|| default.to_owned());
        assert_eq!(
            found.column_default, expected_default,
            "{table}.{column} default"
        );
        let expected_extra = match extra {
            "." => "",
            "on-update-now" => "on update current_timestamp()",
            other => other,
        };
        assert_eq!(found.extra, expected_extra, "{table}.{column} extra");
        checked += 1;
    }
    assert_eq!(checked, 61, "every seed column is checked");

    let keys = indexes_of(&mut conn, database.name(), true);
    for (table, index, columns) in SEED_UNIQUE_KEYS {
        assert!(
            keys.iter()
                .any(|k| k.table_name == *table && k.index_name == *index && k.columns == *columns),
            "unique key {table}.{index}({columns}) is missing: {keys:?}"
        );
    }

    // Indexes the hot reads of every command rely on (see the migrations that add them).
    let indexes = indexes_of(&mut conn, database.name(), false);
    for (table, index, columns) in [
        ("flow", "idx_flow_mesh", "mesh_name,id"),
        ("flow", "idx_flow_unfinished", "mesh_name,status,id"),
        ("task", "idx_task_flow", "flow_id,id"),
        ("cluster", "idx_cluster_mesh", "mesh_name,deleted_flag"),
    ] {
        assert!(
            indexes
                .iter()
                .any(|k| k.table_name == table && k.index_name == index && k.columns == columns),
            "index {table}.{index}({columns}) is missing: {indexes:?}"
        );
    }

    let tables: Vec<TableInfo> = diesel::sql_query(
        "SELECT TABLE_NAME AS table_name, ENGINE AS engine, TABLE_COLLATION AS collation \
         FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?",
    )
    .bind::<Text, _>(database.name())
    .load(&mut conn)
    .unwrap();
    for table in [
        "flow",
        "task",
        "mesh",
        "cluster",
        "lb_resource",
        "mesh_events",
    ] {
        let info = tables
            .iter()
            .find(|t| t.table_name == table)
            .unwrap_or_else(|| panic!("table {table} is missing"));
        assert_eq!(info.engine, "InnoDB", "{table} engine");
        assert!(
            info.collation.starts_with("utf8mb4"),
            "{table} charset: {}",
            info.collation
        );
    }
}

/// One column as `schema.rs` declares it.
#[derive(Debug, PartialEq)]
struct DeclaredColumn {
    sql_type: String,
    nullable: bool,
    max_length: Option<u32>,
}

/// Parses the committed `schema.rs` into table → column → declaration.
fn declared_schema() -> BTreeMap<String, BTreeMap<String, DeclaredColumn>> {
    let text = include_str!("../src/schema.rs");
    let mut tables = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut max_length = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_suffix('{').map(str::trim) {
            if let Some((name, _pk)) = rest.split_once(' ').filter(|_| rest.contains('(')) {
                current = Some(name.to_owned());
                tables.insert(name.to_owned(), BTreeMap::new());
            }
        } else if let Some(n) = line
            .strip_prefix("#[max_length = ")
            .and_then(|r| r.strip_suffix(']'))
        {
            max_length = Some(n.parse().unwrap());
        } else if let (Some(table), Some((column, ty))) = (&current, line.split_once(" -> ")) {
            let ty = ty.trim_end_matches(',');
            let (nullable, sql_type) = match ty
                .strip_prefix("Nullable<")
                .and_then(|t| t.strip_suffix('>'))
            {
                Some(inner) => (true, inner),
                None => (false, ty),
            };
            tables
                .get_mut(table)
                .map(|cols: &mut BTreeMap<String, DeclaredColumn>| {
                    cols.insert(
                        column.to_owned(),
                        DeclaredColumn {
                            sql_type: sql_type.to_owned(),
                            nullable,
                            max_length: max_length.take(),
                        },
                    )
                });
        } else if line == "}" {
            current = None;
        }
    }
    tables
}

fn check_declared_against(live: Vec<(String, String, String, bool)>, backend: &str) {
    let declared = declared_schema();
    assert_eq!(declared.len(), 13, "schema.rs declares every table");
    let mut seen = 0;
    for (table, column, live_type, live_nullable) in live {
        if table.starts_with("__diesel") || table.starts_with("sqlite_") {
            continue;
        }
        let decl = declared
            .get(&table)
            .and_then(|t| t.get(&column))
            .unwrap_or_else(|| {
                panic!("{backend}: {table}.{column} exists in the database but not in schema.rs")
            });
        let live_type = live_type.to_ascii_lowercase();
        let type_matches = match decl.sql_type.as_str() {
            "BigInt" => live_type.starts_with("bigint") || live_type == "integer",
            "Varchar" => live_type == format!("varchar({})", decl.max_length.unwrap_or_default()),
            "Text" => live_type.ends_with("text"),
            "Timestamp" => live_type.starts_with("timestamp"),
            other => panic!("unexpected type {other} in schema.rs"),
        };
        assert!(
            type_matches,
            "{backend}: {table}.{column} is {live_type}, schema.rs says {decl:?}"
        );
        assert_eq!(
            decl.nullable, live_nullable,
            "{backend}: {table}.{column} nullability"
        );
        seen += 1;
    }
    let declared_count: usize = declared.values().map(BTreeMap::len).sum();
    assert_eq!(
        seen, declared_count,
        "{backend}: schema.rs declares columns the database lacks"
    );
}

#[test]
fn schema_rs_matches_the_migrated_database_on_mariadb() {
    let (database, mut conn) = migrated_mariadb();
    let live = mariadb_columns(&mut conn, database.name())
        .into_iter()
        .map(|c| {
            (
                c.table_name,
                c.column_name,
                c.column_type,
                c.is_nullable == "YES",
            )
        })
        .collect();
    check_declared_against(live, "mariadb");
}

#[derive(QueryableByName)]
struct SqliteColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    column_type: String,
    #[diesel(sql_type = BigInt)]
    not_null: i64,
}

#[test]
fn schema_rs_matches_the_migrated_database_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let target =
        DatabaseTarget::parse(&format!("sqlite://{}", dir.path().join("s.db").display())).unwrap();
    target.migrate().unwrap();
    let mut conn = target.connect().unwrap();
    let columns: Vec<SqliteColumn> = diesel::sql_query(
        "SELECT m.name AS table_name, p.name AS name, p.type AS column_type, p.\"notnull\" AS not_null \
         FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table'",
    )
    .load(&mut conn)
    .unwrap();
    let live = columns
        .into_iter()
        .map(|c| (c.table_name, c.name, c.column_type, c.not_null == 0))
        .collect();
    check_declared_against(live, "sqlite");
}
