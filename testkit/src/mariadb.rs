//! Throwaway MariaDB/MySQL databases for tests.
//!
//! [`TestDatabase::create`] makes a database with a unique name on the server named by
//! `MESH_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306`, the service the test command
//! starts) and drops it when the handle is dropped, so tests never share state and leave nothing
//! behind. An unreachable server fails the test with a message saying how to start one.

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::mysql::MysqlConnection;

/// The server used when `MESH_TEST_MYSQL_URL` is not set.
pub const DEFAULT_SERVER_URL: &str = "mysql://root@127.0.0.1:3306";

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    server_url: String,
    name: String,
}

/// The server URL tests use.
pub fn server_url() -> String {
    std::env::var("MESH_TEST_MYSQL_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| DEFAULT_SERVER_URL.to_owned())
}

fn connect(url: &str) -> MysqlConnection {
    MysqlConnection::establish(url).unwrap_or_else(|e| {
        panic!(
            "MariaDB is required for this test but {url} cannot be reached ({e}); run scripts/test \
             (it installs and starts MariaDB) or set MESH_TEST_MYSQL_URL"
        )
    })
}

impl TestDatabase {
    /// Creates a fresh, empty database.
    pub fn create() -> Self {
        let server_url = server_url();
        let name = format!("mesh_test_{}", uuid::Uuid::new_v4().simple());
        connect(&server_url)
            .batch_execute(&format!(
                "CREATE DATABASE `{name}` DEFAULT CHARACTER SET utf8mb4"
            ))
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        Self { server_url, name }
    }

    /// The database's URL (`mysql://…/<name>`).
    pub fn url(&self) -> String {
        format!("{}/{}", self.server_url, self.name)
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut conn) = MysqlConnection::establish(&self.server_url) {
            let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS `{}`", self.name));
        }
    }
}
