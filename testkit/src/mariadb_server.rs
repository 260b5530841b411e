//! A private MariaDB server for tests that stop and restart the database.
//!
//! [`MariaDbServer::start`] initialises a data directory in a temporary folder
//! (`mariadb-install-db`) and runs `mariadbd` on a free port of 127.0.0.1 with its socket, pid file
//! and log in that folder; [`MariaDbServer::restart`] kills the server as a crash would and starts
//! it again on the same port and data, so clients see a database that went away and came back.
//! The server is killed and its folder removed when the handle is dropped. It accepts `root`
//! without a password (grant tables are skipped: nothing but the test can reach it).
//!
//! The binaries are `MESH_MARIADBD_BIN` (else `mariadbd` on `PATH` or in `/usr/sbin`) and
//! `mariadb-install-db` on `PATH`. Without them [`MariaDbServer::start_or_skip`] says so and
//! returns `None`; with `CI=true` their absence fails the test, never a silent skip.

use std::fmt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Environment variable naming the `mariadbd` binary.
pub const BIN_ENV: &str = "MESH_MARIADBD_BIN";

/// How long a started server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A MariaDB server process of one test.
pub struct MariaDbServer {
    port: u16,
    binary: PathBuf,
    child: Option<Child>,
    // Removed on drop, after the process is gone.
    folder: tempfile::TempDir,
}

impl fmt::Debug for MariaDbServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MariaDbServer")
            .field("port", &self.port)
            .field("folder", &self.folder.path())
            .finish_non_exhaustive()
    }
}

fn find_on_path(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

impl MariaDbServer {
    /// A fresh server, or `None` (with a note on stderr) when the binaries are missing. With
    /// `CI=true` a missing or failing server panics instead.
    pub fn start_or_skip() -> Option<Self> {
        match Self::try_start() {
            Ok(server) => Some(server),
            Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI=true and no private MariaDB server: {error}")
            }
            Err(error) => {
                eprintln!("skipped: no private MariaDB server: {error}");
                None
            }
        }
    }

    /// A fresh server, or why there is none.
    pub fn try_start() -> Result<Self, String> {
        let binary = match std::env::var(BIN_ENV) {
            Ok(path) => PathBuf::from(path),
            Err(_) => find_on_path("mariadbd", &["/usr/sbin", "/usr/libexec"])
                .ok_or("mariadbd is not installed (apt-get install mariadb-server)")?,
        };
        let install = find_on_path("mariadb-install-db", &["/usr/bin"])
            .ok_or("mariadb-install-db is not installed (apt-get install mariadb-server)")?;
        let folder = tempfile::Builder::new()
            .prefix("mesh-mariadb-")
            .tempdir()
            .map_err(|e| format!("cannot create a data folder: {e}"))?;
        let data = folder.path().join("data");
        let output = Command::new(&install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--user=root",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", install.display()))?;
        if !output.status.success() {
            return Err(format!(
                "{} failed: {}",
                install.display(),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let mut server = Self {
            port: 0,
            binary,
            child: None,
            folder,
        };
        // A free port can be taken by someone else between probing and binding; try again.
        let mut last_error = String::new();
        for _ in 0..3 {
            server.port = crate::process::free_port()?;
            match server.run() {
                Ok(()) => return Ok(server),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// The server's URL without a database (`mysql://root@127.0.0.1:<port>`).
    pub fn server_url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        use diesel::Connection;
        use diesel::connection::SimpleConnection;
        let mut conn = diesel::mysql::MysqlConnection::establish(&self.server_url())
            .unwrap_or_else(|e| panic!("cannot reach the private MariaDB server: {e}"));
        conn.batch_execute(&format!(
            "CREATE DATABASE IF NOT EXISTS `{name}` DEFAULT CHARACTER SET utf8mb4"
        ))
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        format!("{}/{name}", self.server_url())
    }

    /// Kills the server (SIGKILL, as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed server again on the same port and data; returns once it accepts
    /// connections (after crash recovery).
    pub fn start_again(&mut self) {
        self.run()
            .unwrap_or_else(|e| panic!("the private MariaDB server did not start again: {e}"));
    }

    fn run(&mut self) -> Result<(), String> {
        let dir = self.folder.path();
        let log = dir.join("mariadbd.log");
        let mut child = Command::new(&self.binary)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", dir.join("mariadbd.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--skip-grant-tables",
                "--innodb-buffer-pool-size=32M",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        let ready = crate::process::wait_until_listening(
            &mut child,
            "mariadbd",
            self.port,
            &log,
            READY_TIMEOUT,
        );
        if ready.is_ok() {
            self.child = Some(child);
        }
        ready
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        self.kill();
    }
}
