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

use std::time::{Duration, Instant};

use mesh_sim::World;
use mesh_testkit::prometheus::{PATIENCE, Prometheus, prometheus_binary};

const NAMESPACE: &str = "bookinfo";
/// Requests per second to productpage in every cluster.
const RATE: f64 = 50.0;
/// Share of requests to reviews answered with 503 in the first cluster. Rates and ratios are
/// checked within 10% and 0.03: right after a change the 5s rate window still mixes old and
/// new samples, so the test polls until the window has caught up.
const ERROR_RATIO: f64 = 0.3;

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
