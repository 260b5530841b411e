//! A real Prometheus server for a test: its own configuration and storage in a temporary
//! directory, scraping the given targets every second, killed when dropped.
//!
//! The binary is `MESH_PROMETHEUS_BIN`, else `prometheus` on `PATH` (Debian's package:
//! `apt-get install prometheus`). [`prometheus_binary`] says why there is none, so a test can
//! fail under `CI=true` and explain itself otherwise.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Long enough for Prometheus to start, scrape a few times and let a short rate window fill.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Environment variable naming the `prometheus` binary to run.
pub const BIN_ENV: &str = "MESH_PROMETHEUS_BIN";
/// The prometheus binary; the reason when there is none.
pub fn prometheus_binary() -> Result<PathBuf, String> {
    let binary = std::env::var_os(BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("prometheus"));
    match Command::new(&binary).arg("--version").output() {
        Ok(output) if output.status.success() => Ok(binary),
        Ok(output) => Err(format!(
            "`{} --version` failed: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(error) => Err(format!(
            "{} cannot be run ({error}); install it with `apt-get install prometheus` \
             or set {BIN_ENV}",
            binary.display()
        )),
    }
}

/// A Prometheus process with its own configuration and storage, killed on drop.
pub struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Prometheus's base URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts Prometheus scraping each `(cluster, host:port)` target every second.
    pub fn start(binary: &Path, targets: &[(String, String)]) -> Self {
        let dir = tempfile::tempdir().expect("prometheus test helper");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: mesh-sim\n    metrics_path: /metrics\n    static_configs:\n",
        );
        for (cluster, target) in targets {
            config.push_str(&format!(
                "      - targets: ['{target}']\n        labels:\n          sim_cluster: '{cluster}'\n"
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("prometheus test helper");
        let log = std::fs::File::create(dir.path().join("prometheus.log"))
            .expect("prometheus test helper");
        let port = crate::process::free_port().expect("prometheus test helper");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("prometheus test helper"))
            .stderr(log)
            .spawn()
            .expect("prometheus test helper");
        Self { child, port, dir }
    }

    /// The last lines of Prometheus's log, for failure messages.
    pub fn log(&self) -> String {
        crate::process::last_lines(&self.dir.path().join("prometheus.log"), 20).join("\n")
    }

    /// `GET <path>` on Prometheus's HTTP API: the status code and the body.
    pub async fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        // HTTP/1.0: the body comes unchunked and ends with the connection.
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.port
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let response = String::from_utf8_lossy(&response);
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        Ok((status, body.to_owned()))
    }

    /// Waits until Prometheus says it is ready to serve queries.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("prometheus test helper") {
                panic!("prometheus exited with {status}:\n{}", self.log());
            }
            if let Ok((200, _)) = self.get("/-/ready").await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus was not ready in time:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The `data.result` of an instant query.
    pub async fn query(&self, promql: &str) -> Vec<Value> {
        let encoded: String = form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let (status, body) = self
            .get(&format!("/api/v1/query?query={encoded}"))
            .await
            .expect("prometheus test helper");
        assert_eq!(status, 200, "{promql}: {body}");
        let response: Value = serde_json::from_str(&body).expect("prometheus test helper");
        assert_eq!(response["status"], "success", "{promql}: {body}");
        response["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of a query that yields one sample, if it does.
    pub async fn scalar(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql).await;
        let sample = result.first()?;
        sample["value"][1].as_str()?.parse().ok()
    }

    /// Polls `promql` until `accept` holds for its value; the last value seen on timeout.
    pub async fn eventually(
        &self,
        what: &str,
        promql: &str,
        accept: impl Fn(Option<f64>) -> bool,
    ) -> Option<f64> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.scalar(promql).await;
            if accept(value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: `{promql}` is still {value:?}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
