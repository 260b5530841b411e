//! The [`Store`]: every read and write of mesh-manager's state.
//!
//! Each operation checks a connection out of the pool on a blocking thread (diesel is synchronous)
//! and returns a [`StoreError`] that names the operation and the key it was about. The operations
//! are grouped by table family:
//! - [`mesh`]: meshes — create, get, list by tenant, compare-and-set updates fenced by owner epoch,
//!   soft delete;
//! - [`cluster`]: member clusters of meshes, the cluster registry with sealed credentials, and the
//!   load-balancer resources of meshes;
//! - [`flow`]: flows and their tasks;
//! - [`event`]: the append-only event history;
//! - [`snapshot`]: the seed's `mesh_events` snapshot, rebuilt from the history;
//! - [`command`]: the command log that keeps every command's effect single;
//! - [`secret`]: per-mesh secrets (CA keys, reader tokens), sealed;
//! - [`token`]: API tokens, stored as SHA-256 hashes, and their authentication.

mod atomic;
pub mod cluster;
pub mod command;
mod compound;
mod computed;
pub mod event;
pub mod flow;
pub(crate) mod kept;
pub mod mesh;
pub mod resource;
pub mod secret;
pub mod snapshot;
pub mod token;

use std::sync::Arc;

use chrono::{NaiveDateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use mesh_core::TenantId;

use crate::crypto::{CryptoError, SecretBox};
use crate::database::{AnyConnection, DatabaseError, DatabaseTarget, Pool};

/// Which meshes a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    /// Every tenant (administrators, workers).
    All,
    /// One tenant only.
    Tenant(TenantId),
}

impl TenantScope {
    fn tenant(&self) -> Option<&str> {
        match self {
            Self::All => None,
            Self::Tenant(tenant) => Some(tenant.as_str()),
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// No connection became free in time.
    #[error("no database connection available for {op}: {reason}")]
    Pool {
        /// The operation.
        op: &'static str,
        /// The pool's message.
        reason: String,
    },
    /// A query failed.
    #[error("failed to {op} {key}")]
    Query {
        /// The operation.
        op: &'static str,
        /// The key it was about.
        key: String,
        /// The database error.
        source: DieselError,
    },
    /// The row does not exist (or is deleted, or belongs to another tenant).
    #[error("{what} {key} not found")]
    NotFound {
        /// What was looked up.
        what: &'static str,
        /// Its key.
        key: String,
    },
    /// A live row with that unique key exists.
    #[error("{what} {key} already exists")]
    AlreadyExists {
        /// What was created.
        what: &'static str,
        /// Its key.
        key: String,
    },
    /// A compare-and-set found another generation.
    #[error("mesh {mesh} is at generation {actual}, not {expected}: reload it and retry")]
    GenerationConflict {
        /// The mesh.
        mesh: String,
        /// What the caller expected.
        expected: i64,
        /// What the row holds.
        actual: i64,
    },
    /// The writer's lease epoch is older than the mesh's owner epoch: it lost ownership.
    #[error("write to mesh {mesh} refused: epoch {epoch} is older than owner epoch {owner_epoch}")]
    Fenced {
        /// The mesh.
        mesh: String,
        /// The writer's epoch.
        epoch: i64,
        /// The epoch recorded on the mesh.
        owner_epoch: i64,
    },
    /// Beginning or committing a transaction failed.
    #[error("database transaction failed")]
    Transaction(#[from] DieselError),
    /// Sealing or opening a secret failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A value could not be encoded for storage.
    #[error("failed to encode {what}: {reason}")]
    Encode {
        /// What was encoded.
        what: &'static str,
        /// The encoder's message.
        reason: String,
    },
    /// The blocking task running the operation panicked or was cancelled.
    #[error("database operation {op} did not complete")]
    Aborted {
        /// The operation.
        op: &'static str,
    },
}

impl StoreError {
    /// Wraps a diesel error, telling unique-key violations apart.
    pub(crate) fn query(
        op: &'static str,
        what: &'static str,
        key: impl Into<String>,
        source: DieselError,
    ) -> Self {
        let key = key.into();
        match source {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                Self::AlreadyExists { what, key }
            }
            source => Self::Query { op, key, source },
        }
    }

    /// Whether the failure is transient (connection lost, pool exhausted, deadlock) and the
    /// operation may be retried as is.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(DatabaseError::Connect { .. }) | Self::Pool { .. } => true,
            Self::Query { source, .. } => match source {
                DieselError::DatabaseError(
                    DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::ClosedConnection,
                    _,
                )
                | DieselError::BrokenTransactionManager => true,
                DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
                    connection_lost(info.message())
                }
                _ => false,
            },
            Self::Transaction(_) => true,
            _ => false,
        }
    }
}

/// Whether a database error message says the connection itself is gone (the MySQL/MariaDB client
/// reports a server restart or a dropped socket as a generic error, with one of these texts).
pub(crate) fn connection_lost(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "gone away",
        "lost connection",
        "can't connect",
        "broken pipe",
        "connection reset",
        "connection refused",
    ]
    .iter()
    .any(|text| message.contains(text))
}

/// Whether the pool's server runs compound statements (MariaDB), asked once when the store opens;
/// `MESH_DB_COMPOUND=off` turns them off (to compare, or to rule them out).
fn compound_transactions(pool: &Pool) -> Result<bool, StoreError> {
    if std::env::var("MESH_DB_COMPOUND").is_ok_and(|v| v == "off") {
        return Ok(false);
    }
    let mut conn = pool.get().map_err(|e| StoreError::Pool {
        op: "open store",
        reason: e.to_string(),
    })?;
    Ok(match &mut **conn {
        AnyConnection::Mysql(mysql) => compound::supports_compound(mysql),
        AnyConnection::Sqlite(_) => false,
    })
}

/// The store over one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    fenced_writes: std::sync::atomic::AtomicU64,
    target: DatabaseTarget,
    secrets: SecretBox,
    snapshots: snapshot::StaleSnapshots,
    /// Present when transactions on every command's path go as one compound statement each
    /// (MariaDB; see [`compound`]): how many committed so and how many were declined.
    compound: Option<Arc<compound::CompoundCounts>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("target", &self.inner.target)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens a store: applies pending migrations when `migrate` is set, then builds the pool.
    pub async fn open(
        target: DatabaseTarget,
        secrets: SecretBox,
        pool_size: u32,
        migrate: bool,
    ) -> Result<Self, StoreError> {
        tokio::task::spawn_blocking(move || -> Result<Self, StoreError> {
            if migrate {
                target.migrate()?;
            }
            let pool = target.pool(pool_size)?;
            let compound = compound_transactions(&pool)?
                .then(|| Arc::new(compound::CompoundCounts::default()));
            Ok(Self {
                inner: Arc::new(Inner {
                    pool,
                    fenced_writes: std::sync::atomic::AtomicU64::new(0),
                    target,
                    secrets,
                    snapshots: snapshot::StaleSnapshots::default(),
                    compound,
                }),
            })
        })
        .await
        .map_err(|_| StoreError::Aborted { op: "open store" })?
    }

    /// Whether this store sends the transactions on every command's path as one compound
    /// statement each (MariaDB; see [`compound`]).
    pub fn compound_transactions(&self) -> bool {
        self.inner.compound.is_some()
    }

    /// How many of this store's compound transactions committed and how many were declined
    /// (rolled back whole, then run statement by statement), since it opened; zeros where they
    /// are not used.
    pub fn compound_outcomes(&self) -> (u64, u64) {
        self.inner
            .compound
            .as_ref()
            .map_or((0, 0), |counts| counts.get())
    }

    /// The counters of compound transactions, when this store uses them.
    pub(crate) fn compound_counts(&self) -> Option<Arc<compound::CompoundCounts>> {
        self.inner.compound.clone()
    }

    /// The database this store writes to.
    pub fn target(&self) -> &DatabaseTarget {
        &self.inner.target
    }

    pub(crate) fn secrets(&self) -> &SecretBox {
        &self.inner.secrets
    }

    /// Runs `work` with a pooled connection on a blocking thread.
    pub(crate) async fn run<T, F>(&self, op: &'static str, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = inner.pool.get().map_err(|e| StoreError::Pool {
                op,
                reason: e.to_string(),
            })?;
            let result = work(&mut conn);
            conn.record(!result.as_ref().is_err_and(StoreError::is_transient));
            result
        })
        .await
        .map_err(|_| StoreError::Aborted { op })?;
        if let Err(StoreError::Fenced {
            mesh,
            epoch,
            owner_epoch,
        }) = &result
        {
            self.inner
                .fenced_writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(%mesh, epoch, owner_epoch, op, "stale write refused");
        }
        result
    }

    /// How many writes this process had refused because a newer owner held the mesh.
    pub fn fenced_write_count(&self) -> u64 {
        self.inner
            .fenced_writes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Checks that the database answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        use diesel::RunQueryDsl;
        self.run("ping the database", |conn| {
            diesel::sql_query("SELECT 1")
                .execute(conn)
                .map(drop)
                .map_err(|source| StoreError::query("ping", "database", "", source))
        })
        .await
    }
}

/// Refuses a write for `mesh` by the holder of `epoch` when a newer owner wrote the mesh.
/// A mesh that no longer exists (deleted) fences nothing.
pub(crate) fn check_fence(
    conn: &mut AnyConnection,
    mesh: &str,
    epoch: i64,
) -> Result<(), StoreError> {
    use crate::schema::mesh as m;
    use diesel::prelude::*;
    let owner: Option<i64> = m::table
        .filter(m::name.eq(mesh))
        .filter(m::deleted_flag.eq(0))
        .select(m::owner_epoch)
        .first(conn)
        .optional()
        .map_err(|e| StoreError::query("check owner epoch", "mesh", mesh, e))?;
    refuse_if_newer_owner(
        owner.map(|owner_epoch| (mesh.to_owned(), owner_epoch)),
        epoch,
    )
}

/// The fence's verdict: refused when the mesh (if it still exists) was written by a newer owner
/// than the holder of `epoch`.
fn refuse_if_newer_owner(owner: Option<(String, i64)>, epoch: i64) -> Result<(), StoreError> {
    match owner {
        Some((mesh, owner_epoch)) if owner_epoch > epoch => Err(StoreError::Fenced {
            mesh,
            epoch,
            owner_epoch,
        }),
        _ => Ok(()),
    }
}

/// Refuses a write for flow `flow_id`'s mesh by the holder of `epoch` when a newer owner wrote the
/// mesh; one query, the mesh found through the flow. A mesh that no longer exists fences nothing.
pub(crate) fn check_flow_fence(
    conn: &mut AnyConnection,
    flow_id: i64,
    epoch: i64,
) -> Result<(), StoreError> {
    use crate::schema::{flow as f, mesh as m};
    use diesel::prelude::*;
    let owner: Option<(String, i64)> = m::table
        .filter(m::name.eq_any(f::table.filter(f::id.eq(flow_id)).select(f::mesh_name)))
        .filter(m::deleted_flag.eq(0))
        .select((m::name, m::owner_epoch))
        .first(conn)
        .optional()
        .map_err(|e| StoreError::query("check owner epoch", "flow", flow_id.to_string(), e))?;
    refuse_if_newer_owner(owner, epoch)
}

/// The most bytes a seed `TEXT` column takes on MariaDB/MySQL, which refuse a longer value.
pub(crate) const TEXT_COLUMN_BYTES: usize = 65_535;

/// `text` cut (at a character boundary, marked) to fit a `TEXT` column: an error message or
/// result longer than the column must not make the write that records it fail.
pub(crate) fn fit_text_column(mut text: String) -> String {
    const MARK: &str = " …[cut]";
    if text.len() <= TEXT_COLUMN_BYTES {
        return text;
    }
    let mut end = TEXT_COLUMN_BYTES - MARK.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(MARK);
    text
}

/// The current time as stored: UTC without a zone, the form both backends keep.
pub(crate) fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

diesel::define_sql_function! {
    /// MariaDB/MySQL: the id the last insert on this connection generated.
    #[sql_name = "LAST_INSERT_ID"]
    fn mysql_last_insert_id() -> diesel::sql_types::Unsigned<diesel::sql_types::BigInt>;
}

diesel::define_sql_function! {
    /// SQLite: the row id the last insert on this connection generated.
    #[sql_name = "last_insert_rowid"]
    fn sqlite_last_insert_rowid() -> diesel::sql_types::BigInt;
}

/// The id the last insert on this connection generated (each backend names it differently). A
/// typed query, so each connection prepares it once and reuses it.
pub(crate) fn last_insert_id(conn: &mut AnyConnection) -> diesel::QueryResult<i64> {
    use diesel::RunQueryDsl;
    match conn {
        AnyConnection::Mysql(conn) => {
            let id: u64 = diesel::select(mysql_last_insert_id()).get_result(conn)?;
            i64::try_from(id).map_err(|e| DieselError::DeserializationError(Box::new(e)))
        }
        AnyConnection::Sqlite(conn) => diesel::select(sqlite_last_insert_rowid()).get_result(conn),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_longer_than_its_column_is_cut_at_a_character_boundary() {
        assert_eq!(fit_text_column("short".into()), "short");
        let exact = "x".repeat(TEXT_COLUMN_BYTES);
        assert_eq!(fit_text_column(exact.clone()), exact);
        let cut = fit_text_column("é".repeat(TEXT_COLUMN_BYTES));
        assert!(cut.len() <= TEXT_COLUMN_BYTES, "{} bytes", cut.len());
        assert!(cut.ends_with(" …[cut]"));
        assert!(cut.starts_with("éé"));
    }

    fn query_error(kind: DatabaseErrorKind, message: &str) -> StoreError {
        StoreError::Query {
            op: "test",
            key: String::new(),
            source: DieselError::DatabaseError(kind, Box::new(message.to_owned())),
        }
    }

    #[test]
    fn a_lost_connection_is_transient_and_a_refusal_is_not() {
        for message in [
            "MySQL server has gone away",
            "Server has gone away",
            "Lost connection to server during query",
            "Can't connect to server on '127.0.0.1' (111)",
        ] {
            assert!(
                query_error(DatabaseErrorKind::Unknown, message).is_transient(),
                "{message}"
            );
        }
        assert!(
            query_error(DatabaseErrorKind::SerializationFailure, "Deadlock found").is_transient()
        );
        assert!(
            !query_error(
                DatabaseErrorKind::Unknown,
                "Data too long for column 'name'"
            )
            .is_transient()
        );
        assert!(!query_error(DatabaseErrorKind::UniqueViolation, "Duplicate entry").is_transient());
    }
}
