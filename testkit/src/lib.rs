//! mesh-testkit: the real services mesh-manager's tests run against.
//!
//! # Layout
//! - [`nats`]: a NATS server with JetStream for a test — the one named by `MESH_TEST_NATS_URL`, or a
//!   private `nats-server` process started for the test and stopped when it is dropped.
//! - [`mariadb`]: a throwaway MariaDB/MySQL database per test on the server named by
//!   `MESH_TEST_MYSQL_URL`, dropped when the handle is dropped.
//! - [`mariadb_server`]: a private MariaDB server of one test, which the test may crash and start
//!   again (database-restart tests); never the shared server.
//! - [`prometheus`]: a Prometheus server scraping given targets, stopped when dropped.
//!
//! With `CI=true` a missing service is a test failure, never a silent skip.

pub mod mariadb;
pub mod mariadb_server;
pub mod nats;
mod process;
pub mod prometheus;
