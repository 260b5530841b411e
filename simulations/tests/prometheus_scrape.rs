//! A real Prometheus scrapes the sample metrics of simulated clusters.
//!
//! Two simulated clusters run bookinfo; a `prometheus` process (Debian's package,
//! `apt-get install prometheus`) scrapes both clusters' `/metrics` every second. The test asks
//! Prometheus's HTTP API — not the simulation — that the Istio standard metrics arrive with
//! their standard labels, that request rates follow `set_rate` and that the share of 503s
//! follows `set_error_ratio` in one cluster and not the other.
//!
//! The binary is `MESH_PROMETHEUS_BIN`, else `prometheus` on `PATH`. Without one the test fails
//! under `CI=true` and otherwise prints a note and passes.

#![allow(clippy::unwrap_used, missing_docs)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mesh_sim::World;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Environment variable naming the `prometheus` binary to run.
const BIN_ENV: &str = "MESH_PROMETHEUS_BIN";
const NAMESPACE: &str = "bookinfo";
/// Requests per second to productpage in every cluster.
const RATE: f64 = 50.0;
/// Share of requests to reviews answered with 503 in the first cluster. Rates and ratios are
/// checked within 10% and 0.03: right after a change the 5s rate window still mixes old and
/// new samples, so the test polls until the window has caught up.
const ERROR_RATIO: f64 = 0.3;
/// Long enough for Prometheus to start, scrape a few times and let a 5s rate window fill.
const PATIENCE: Duration = Duration::from_secs(60);

/// The Istio standard labels every `istio_requests_total` series carries.
const STANDARD_LABELS: &[&str] = &[
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_canonical_service",
    "source_canonical_revision",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "response_flags",
    "connection_security_policy",
];

/// The prometheus binary; the reason when there is none.
fn prometheus_binary() -> Result<PathBuf, String> {
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus process with its own configuration and storage, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping each `(cluster, host:port)` target every second.
    fn start(binary: &Path, targets: &[(String, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
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
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { child, port, dir }
    }

    fn log(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// `GET <path>` on Prometheus's HTTP API: the status code and the body.
    async fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
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
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
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
    async fn query(&self, promql: &str) -> Vec<Value> {
        let encoded: String = form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let (status, body) = self
            .get(&format!("/api/v1/query?query={encoded}"))
            .await
            .unwrap();
        assert_eq!(status, 200, "{promql}: {body}");
        let response: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(response["status"], "success", "{promql}: {body}");
        response["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of a query that yields one sample, if it does.
    async fn scalar(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql).await;
        let sample = result.first()?;
        sample["value"][1].as_str()?.parse().ok()
    }

    /// Polls `promql` until `accept` holds for its value; the last value seen on timeout.
    async fn eventually(
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

/// `rate(istio_requests_total{…}[5s])` summed, as seen by the destination's proxy.
fn requests_rate(selector: &str) -> String {
    format!("sum(rate(istio_requests_total{{reporter=\"destination\",{selector}}}[5s]))")
}

#[tokio::test]
async fn prometheus_scrapes_the_istio_standard_metrics_of_the_sample_app() {
    let binary = match prometheus_binary() {
        Ok(binary) => binary,
        Err(reason) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and no prometheus: {reason}")
        }
        Err(reason) => {
            eprintln!("note: skipping the Prometheus scrape test: {reason}");
            return;
        }
    };
    let world = World::builder().clusters(2).start().await.unwrap();
    let mut targets = Vec::new();
    for cluster in world.clusters() {
        let dataplane = cluster.dataplane();
        dataplane.deploy_bookinfo(NAMESPACE).unwrap();
        assert!(dataplane.set_rate(NAMESPACE, RATE));
        targets.push((cluster.name().to_owned(), dataplane.addr().to_string()));
    }
    let (first, second) = (world.cluster(0).name(), world.cluster(1).name());
    let mut prometheus = Prometheus::start(&binary, &targets);
    prometheus.wait_ready().await;

    // Both targets are scraped and up.
    prometheus
        .eventually("both clusters scraped", "sum(up{job=\"mesh-sim\"})", |v| {
            v == Some(2.0)
        })
        .await;

    // istio_requests_total arrives with the standard labels, from both reporters and clusters.
    let deadline = Instant::now() + PATIENCE;
    let series = loop {
        let series = prometheus.query("istio_requests_total").await;
        let clusters: std::collections::BTreeSet<&str> = series
            .iter()
            .filter_map(|s| s["metric"]["source_cluster"].as_str())
            .collect();
        if clusters.len() == 2 {
            break series;
        }
        assert!(
            Instant::now() < deadline,
            "istio_requests_total of both clusters: {series:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for sample in &series {
        let metric = &sample["metric"];
        for label in STANDARD_LABELS {
            assert!(
                metric[*label].is_string(),
                "no {label} on a series: {metric}"
            );
        }
    }
    let values = |label: &str| -> std::collections::BTreeSet<String> {
        series
            .iter()
            .filter_map(|s| s["metric"][label].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(
        values("reporter"),
        ["destination", "source"].map(String::from).into()
    );
    let services = values("destination_service");
    for service in ["productpage", "details", "reviews", "ratings"] {
        let name = format!("{service}.{NAMESPACE}.svc.cluster.local");
        assert!(services.contains(&name), "no {name} in {services:?}");
    }
    assert!(values("source_workload").contains("productpage-v1"));
    assert!(values("response_code").contains("200"));
    assert!(values("destination_cluster").contains(first));

    // The request rate follows set_rate: every request reaches productpage once.
    let productpage = |cluster: &str| {
        requests_rate(&format!(
            "destination_service_name=\"productpage\",destination_cluster=\"{cluster}\""
        ))
    };
    let rate = prometheus
        .eventually("productpage's request rate", &productpage(first), |v| {
            v.is_some_and(|v| (RATE * 0.9..=RATE * 1.1).contains(&v))
        })
        .await;
    println!("productpage on {first}: {rate:?} requests/s (set {RATE})");

    // The other standard metrics are there too, with plausible values.
    let median = prometheus
        .eventually(
            "median request duration",
            &format!(
                "histogram_quantile(0.5, sum by (le) (rate(istio_request_duration_milliseconds_bucket{{reporter=\"destination\",destination_cluster=\"{first}\"}}[5s])))"
            ),
            |v| v.is_some_and(|v| v.is_finite() && v > 0.0),
        )
        .await;
    println!("median request duration on {first}: {median:?} ms");
    for metric in [
        "istio_request_bytes_count",
        "istio_response_bytes_count",
        "istio_tcp_sent_bytes_total",
        "istio_tcp_received_bytes_total",
    ] {
        prometheus
            .eventually(metric, &format!("sum(rate({metric}[5s]))"), |v| {
                v.is_some_and(|v| v > 0.0)
            })
            .await;
    }

    // No errors yet; then the first cluster's reviews answer a share of requests with 503.
    let errors = |cluster: &str| {
        format!(
            "{} / {}",
            requests_rate(&format!(
                "destination_service_name=\"reviews\",destination_cluster=\"{cluster}\",response_code=\"503\""
            )),
            requests_rate(&format!(
                "destination_service_name=\"reviews\",destination_cluster=\"{cluster}\""
            ))
        )
    };
    assert_eq!(prometheus.scalar(&errors(first)).await, None);
    assert!(
        world
            .cluster(0)
            .dataplane()
            .set_error_ratio(NAMESPACE, "reviews", ERROR_RATIO)
    );
    let roughly =
        |v: Option<f64>| v.is_some_and(|v| (ERROR_RATIO - 0.03..=ERROR_RATIO + 0.03).contains(&v));
    prometheus
        .eventually("reviews' error ratio", &errors(first), roughly)
        .await;
    // Once the rate window holds only samples taken after the change, the ratio stays there.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let ratio = prometheus.scalar(&errors(first)).await;
    assert!(roughly(ratio), "reviews' error ratio settled at {ratio:?}");
    println!("error ratio of reviews on {first}: {ratio:?} (set {ERROR_RATIO})");
    assert_eq!(
        prometheus.scalar(&errors(second)).await,
        None,
        "{second} has no errors"
    );
    let failing = prometheus
        .query(&format!(
            "istio_requests_total{{response_code=\"503\",destination_cluster=\"{first}\"}}"
        ))
        .await;
    assert!(
        failing
            .iter()
            .all(|s| s["metric"]["destination_service_name"] == "reviews"
                && s["metric"]["response_flags"] == "URX"),
        "{failing:?}"
    );
    drop(prometheus);
    world.stop();
}
