//! Database targets, connections, pool and migrations.
//!
//! A [`DatabaseTarget`] is parsed from a URL (`mysql://user:pass@host:3306/tke_mesh`,
//! `sqlite://meshd.db`, or a bare file path ending in `.db`/`.sqlite`). Connections are the
//! multi-backend [`AnyConnection`]; the pool opens the backend the URL names — never guessing, so
//! an unreachable MySQL server cannot turn into a SQLite file named after its URL. Migrations are
//! embedded in the binary, one set per backend.

use std::fmt;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::mysql::MysqlConnection;
use diesel::r2d2::{self, ManageConnection};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// MySQL/MariaDB migrations, in order.
pub const MYSQL_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/mysql");
/// SQLite migrations, in order.
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

/// The database used when a MySQL URL names none (the seed's database).
pub const DEFAULT_MYSQL_DATABASE: &str = "tke_mesh";

pub use any::AnyConnection;
pub(crate) use any::MultiBackend;

/// The multi-backend connection; its own module because the derive generates undocumented items.
#[allow(missing_docs)]
mod any {
    use diesel::mysql::MysqlConnection;
    use diesel::sqlite::SqliteConnection;

    /// One connection to either backend.
    #[derive(diesel::MultiConnection)]
    pub enum AnyConnection {
        /// MariaDB or MySQL.
        Mysql(MysqlConnection),
        /// SQLite (the embedded default).
        Sqlite(SqliteConnection),
    }
}

/// A pool of connections.
pub type Pool = r2d2::Pool<ConnectionManager>;
/// A connection checked out of the pool.
pub type PooledConnection = r2d2::PooledConnection<ConnectionManager>;

/// Why a database could not be reached or prepared.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The URL is not one mesh-manager understands.
    #[error("invalid database URL {url}: {reason}")]
    BadUrl {
        /// The URL with any password hidden.
        url: String,
        /// What is wrong and what to write instead.
        reason: String,
    },
    /// The server could not be reached or refused the login.
    #[error("cannot connect to the database at {url}: {reason}")]
    Connect {
        /// The URL with any password hidden.
        url: String,
        /// The driver's message.
        reason: String,
    },
    /// A migration failed.
    #[error("failed to migrate the database at {url}: {reason}")]
    Migrate {
        /// The URL with any password hidden.
        url: String,
        /// What failed.
        reason: String,
    },
}

/// Which database to use.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// A MariaDB/MySQL server; the URL always names a database.
    Mysql {
        /// Full `mysql://` URL.
        url: String,
    },
    /// A SQLite file.
    Sqlite {
        /// Path of the database file.
        path: String,
    },
}

impl fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseTarget({self})")
    }
}

impl fmt::Display for DatabaseTarget {
    /// The URL with any password replaced by `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mysql { url } => f.write_str(&redact_url(url)),
            Self::Sqlite { path } => write!(f, "sqlite://{path}"),
        }
    }
}

/// Hides the password of a URL for messages and logs.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password only fails for URLs that cannot carry one, which this one did.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => raw.split('@').next_back().unwrap_or_default().to_owned(),
    }
}

impl DatabaseTarget {
    /// Parses a database URL.
    pub fn parse(raw: &str) -> Result<Self, DatabaseError> {
        let raw = raw.trim();
        let bad = |reason: &str| DatabaseError::BadUrl {
            url: redact_url(raw),
            reason: reason.to_owned(),
        };
        if raw.is_empty() {
            return Err(bad(
                "it is empty; use mysql://user:password@host:3306/tke_mesh or sqlite://meshd.db",
            ));
        }
        if let Some(path) = raw
            .strip_prefix("sqlite://")
            .or_else(|| raw.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(bad("no file path after sqlite://"));
            }
            return Ok(Self::Sqlite {
                path: path.to_owned(),
            });
        }
        if raw.starts_with("mysql://") || raw.starts_with("mariadb://") {
            let mut parsed = url::Url::parse(raw)
                .map_err(|e| bad(&format!("{e}; expected mysql://user:password@host:3306/db")))?;
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(bad("no host; expected mysql://user:password@host:3306/db"));
            }
            if parsed.scheme() == "mariadb" {
                // The driver only knows the mysql scheme; both are the same protocol.
                let rest = raw.trim_start_matches("mariadb://");
                parsed =
                    url::Url::parse(&format!("mysql://{rest}")).map_err(|e| bad(&e.to_string()))?;
            }
            let database = parsed.path().trim_start_matches('/').to_owned();
            if database.is_empty() {
                parsed.set_path(DEFAULT_MYSQL_DATABASE);
            } else if !database
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(bad(
                    "the database name may contain only letters, digits, '_' and '-'",
                ));
            }
            return Ok(Self::Mysql {
                url: parsed.to_string(),
            });
        }
        if let Some((scheme, _)) = raw.split_once("://") {
            return Err(bad(&format!(
                "unsupported scheme {scheme:?}; use mysql:// (MariaDB/MySQL) or sqlite://"
            )));
        }
        if raw.ends_with(".db") || raw.ends_with(".sqlite") || raw.ends_with(".sqlite3") {
            return Ok(Self::Sqlite {
                path: raw.to_owned(),
            });
        }
        Err(bad(
            "not a URL; use mysql://user:password@host:3306/tke_mesh, sqlite://path or a path ending in .db",
        ))
    }

    /// Whether this is the SQLite backend.
    pub fn is_sqlite(&self) -> bool {
        matches!(self, Self::Sqlite { .. })
    }

    /// The MySQL database name, if this is MySQL.
    pub fn mysql_database(&self) -> Option<String> {
        match self {
            Self::Mysql { url } => url::Url::parse(url)
                .ok()
                .map(|u| u.path().trim_start_matches('/').to_owned()),
            Self::Sqlite { .. } => None,
        }
    }

    fn connect_error(&self, reason: impl fmt::Display) -> DatabaseError {
        DatabaseError::Connect {
            url: self.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Opens one connection, set up for mesh-manager (UTC session time; SQLite in WAL mode with a
    /// busy timeout so concurrent writers wait instead of failing).
    pub fn connect(&self) -> Result<AnyConnection, DatabaseError> {
        match self {
            Self::Mysql { url } => {
                let mut conn =
                    MysqlConnection::establish(url).map_err(|e| self.connect_error(e))?;
                conn.batch_execute("SET time_zone = '+00:00'")
                    .map_err(|e| self.connect_error(e))?;
                Ok(AnyConnection::Mysql(conn))
            }
            Self::Sqlite { path } => {
                let mut conn =
                    SqliteConnection::establish(path).map_err(|e| self.connect_error(e))?;
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )
                .map_err(|e| self.connect_error(e))?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }

    /// Creates the MySQL database when the server has none of that name (SQLite files are created
    /// on first connect).
    pub fn create_database_if_missing(&self) -> Result<(), DatabaseError> {
        let Self::Mysql { url } = self else {
            return Ok(());
        };
        let database = self.mysql_database().unwrap_or_default();
        let mut server_url = url::Url::parse(url).map_err(|e| self.connect_error(e))?;
        server_url.set_path("");
        let mut conn =
            MysqlConnection::establish(server_url.as_str()).map_err(|e| self.connect_error(e))?;
        conn.batch_execute(&format!(
            "CREATE DATABASE IF NOT EXISTS `{database}` DEFAULT CHARACTER SET utf8mb4"
        ))
        .map_err(|e| self.connect_error(e))
    }

    /// Creates the database if needed and applies every pending migration; returns the versions
    /// applied now.
    pub fn migrate(&self) -> Result<Vec<String>, DatabaseError> {
        self.create_database_if_missing()?;
        let migrate_error = |reason: String| DatabaseError::Migrate {
            url: self.to_string(),
            reason,
        };
        let applied = match self.connect()? {
            AnyConnection::Mysql(mut conn) => conn
                .run_pending_migrations(MYSQL_MIGRATIONS)
                .map_err(|e| migrate_error(e.to_string()))?
                .iter()
                .map(ToString::to_string)
                .collect(),
            AnyConnection::Sqlite(mut conn) => conn
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map_err(|e| migrate_error(e.to_string()))?
                .iter()
                .map(ToString::to_string)
                .collect(),
        };
        Ok(applied)
    }

    /// Whether migrations are pending (readiness reports it).
    pub fn has_pending_migrations(&self) -> Result<bool, DatabaseError> {
        let pending = |e: Box<dyn std::error::Error + Send + Sync>| DatabaseError::Migrate {
            url: self.to_string(),
            reason: e.to_string(),
        };
        match self.connect()? {
            AnyConnection::Mysql(mut conn) => conn
                .has_pending_migration(MYSQL_MIGRATIONS)
                .map_err(pending),
            AnyConnection::Sqlite(mut conn) => conn
                .has_pending_migration(SQLITE_MIGRATIONS)
                .map_err(pending),
        }
    }

    /// A pool of at most `max_size` connections; fails fast when the database is unreachable.
    pub fn pool(&self, max_size: u32) -> Result<Pool, DatabaseError> {
        // SQLite allows one writer at a time, and a transaction that reads before it writes fails
        // at once (not after the busy timeout) when another connection wrote in between. One
        // connection serialises the process's own operations, which is what SQLite would do
        // anyway.
        let size = if self.is_sqlite() { 1 } else { max_size };
        r2d2::Pool::builder()
            .max_size(size.max(1))
            .connection_timeout(Duration::from_secs(10))
            .build(ConnectionManager {
                target: self.clone(),
            })
            .map_err(|e| self.connect_error(e))
    }
}

/// How recently a connection must have answered to be handed out without a ping first.
const TRUSTED_FOR: Duration = Duration::from_secs(1);

/// A pooled connection and what is known of its health: when it last answered, and whether an
/// operation on it failed in a way that may have left it unusable. A connection in steady use is
/// handed out without the `SELECT 1` ping an idle one gets, which would otherwise double the round
/// trips of short operations; a failed one is dropped rather than handed out again.
pub struct LiveConnection {
    connection: AnyConnection,
    answered_at: Instant,
    suspect: bool,
}

impl LiveConnection {
    fn new(connection: AnyConnection) -> Self {
        Self {
            connection,
            answered_at: Instant::now(),
            suspect: false,
        }
    }

    /// Records how an operation on this connection ended: `answered` when the database answered
    /// (success or a plain refusal), not when the connection may be lost or its transaction
    /// broken — then the pool drops it when it comes back.
    pub fn record(&mut self, answered: bool) {
        if answered {
            self.answered_at = Instant::now();
        } else {
            self.suspect = true;
        }
    }
}

impl std::ops::Deref for LiveConnection {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.connection
    }
}

impl std::ops::DerefMut for LiveConnection {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.connection
    }
}

/// Opens pooled connections for a [`DatabaseTarget`].
#[derive(Debug)]
pub struct ConnectionManager {
    target: DatabaseTarget,
}

impl ManageConnection for ConnectionManager {
    type Connection = LiveConnection;
    type Error = DatabaseError;

    fn connect(&self) -> Result<LiveConnection, DatabaseError> {
        self.target.connect().map(LiveConnection::new)
    }

    fn is_valid(&self, conn: &mut LiveConnection) -> Result<(), DatabaseError> {
        if conn.answered_at.elapsed() < TRUSTED_FOR {
            return Ok(());
        }
        diesel::sql_query("SELECT 1")
            .execute(&mut conn.connection)
            .map_err(|e| self.target.connect_error(e))?;
        conn.record(true);
        Ok(())
    }

    fn has_broken(&self, conn: &mut LiveConnection) -> bool {
        conn.suspect
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_urls_default_to_the_seed_database() {
        let target = DatabaseTarget::parse("mysql://root@127.0.0.1:3306").expect("valid");
        assert_eq!(target.mysql_database().as_deref(), Some("tke_mesh"));
        let target = DatabaseTarget::parse("mariadb://root@127.0.0.1/other").expect("valid");
        assert_eq!(target.mysql_database().as_deref(), Some("other"));
    }

    #[test]
    fn sqlite_urls_and_paths_are_accepted() {
        assert_eq!(
            DatabaseTarget::parse("sqlite://data/meshd.db").expect("valid"),
            DatabaseTarget::Sqlite {
                path: "data/meshd.db".into()
            }
        );
        assert!(
            DatabaseTarget::parse("meshd.db")
                .expect("valid")
                .is_sqlite()
        );
    }

    #[test]
    fn bad_urls_say_what_to_write_and_hide_passwords() {
        for bad in [
            "",
            "postgres://x@y/z",
            "hello",
            "mysql://",
            "sqlite://",
            "mysql://u:p@h/a;drop",
        ] {
            let err = DatabaseTarget::parse(bad).expect_err(bad);
            assert!(matches!(err, DatabaseError::BadUrl { .. }), "{bad}: {err}");
        }
        let err = DatabaseTarget::parse("ftp://user:hunter2@host/db").expect_err("scheme");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let target = DatabaseTarget::parse("mysql://user:hunter2@host/db").expect("valid");
        assert!(!target.to_string().contains("hunter2"));
        assert!(!format!("{target:?}").contains("hunter2"));
    }

    #[test]
    fn an_unreachable_server_is_a_connect_error_not_a_sqlite_file() {
        let target = DatabaseTarget::parse("mysql://root@127.0.0.1:1/tke_mesh").expect("valid");
        let err = target.connect().err().expect("nothing listens on port 1");
        assert!(matches!(err, DatabaseError::Connect { .. }), "{err}");
        assert!(!std::path::Path::new("mysql:").exists());
    }
}
