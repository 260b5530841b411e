//! `/metrics`: public, Prometheus text format, requests counted by route pattern, and the series
//! the workers feed.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use actix_web::test::TestRequest;
use common::{Harness, app, call, with_token};
use mesh_api::metrics::CommandOutcome;
use mesh_bus::event::FlowOutcome;

/// One sample of the text format: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format strictly enough to catch a broken exposition: every family
/// has `# HELP` and `# TYPE` before its samples, every sample is `name{k="v",...} value`.
fn parse(text: &str) -> Vec<Sample> {
    let mut typed = std::collections::HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap();
                let labels = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once("=\"").unwrap();
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(&name);
        assert!(typed.contains(family), "sample before its # TYPE: {line}");
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

#[actix_web::test]
async fn metrics_count_requests_by_route_pattern_and_show_what_workers_report() {
    let h = Harness::sqlite().await;
    h.seed_mesh("acme", "prod", &["c1"]).await;
    let state = h.state();
    let worker_metrics = state.metrics.clone();
    let app = app(state).await;

    for _ in 0..2 {
        let (status, _) = call(&app, TestRequest::get().uri("/healthz")).await;
        assert_eq!(status, 200);
    }
    let get_mesh = |name: &str| {
        with_token(
            TestRequest::get().uri(&format!("/apis/v1/mesh/meshes/{name}")),
            &h.acme_editor,
        )
    };
    assert_eq!(call(&app, get_mesh("prod")).await.0, 200);
    assert_eq!(call(&app, get_mesh("nope")).await.0, 404);
    assert_eq!(call(&app, get_mesh("Bad_Name")).await.0, 400);
    let (status, _) = call(&app, TestRequest::get().uri("/apis/v1/mesh/meshes")).await;
    assert_eq!(status, 401);
    let (status, _) = call(&app, TestRequest::get().uri("/no/such/path")).await;
    assert_eq!(status, 404);

    worker_metrics.command_handled("CreateMesh", CommandOutcome::Accepted);
    worker_metrics.command_handled("CreateMesh", CommandOutcome::Rejected);
    worker_metrics.flow_started();
    worker_metrics.flow_finished(FlowOutcome::Succeeded);
    worker_metrics.set_actors("mesh", 4);
    worker_metrics.set_lease_owned(0, true);
    worker_metrics.set_lease_owned(1, false);

    // Public: no token.
    let response =
        actix_web::test::call_service(&app, TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = String::from_utf8(actix_web::test::read_body(response).await.to_vec()).unwrap();
    let samples = parse(&text);

    let requests = "meshd_http_requests_total";
    let route = "/apis/v1/mesh/meshes/{mesh}";
    assert_eq!(
        value(
            &samples,
            requests,
            &[("route", "/healthz"), ("method", "GET"), ("status", "200")]
        ),
        Some(2.0),
        "{text}"
    );
    for (status, count) in [("200", 1.0), ("404", 1.0), ("400", 1.0)] {
        assert_eq!(
            value(
                &samples,
                requests,
                &[("route", route), ("method", "GET"), ("status", status)]
            ),
            Some(count),
            "{status}: {text}"
        );
    }
    assert_eq!(
        value(
            &samples,
            requests,
            &[("route", "/apis/v1/mesh/meshes"), ("status", "401")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            requests,
            &[("route", "unmatched"), ("status", "404")]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        !samples.iter().any(|s| s
            .labels
            .get("route")
            .is_some_and(|r| r.contains("prod") || r.contains("/no/"))),
        "routes are patterns, never concrete paths: {text}"
    );
    assert_eq!(
        value(
            &samples,
            "meshd_http_request_duration_seconds_count",
            &[("route", route), ("method", "GET")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &samples,
            "meshd_http_request_duration_seconds_bucket",
            &[("route", route), ("le", "+Inf")]
        ),
        Some(3.0)
    );

    assert_eq!(
        value(
            &samples,
            "meshd_commands_total",
            &[("kind", "CreateMesh"), ("outcome", "rejected")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&samples, "meshd_flows_started_total", &[]), Some(1.0));
    assert_eq!(
        value(
            &samples,
            "meshd_flows_finished_total",
            &[("outcome", "succeeded")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "meshd_flows_finished_total",
            &[("outcome", "failed")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&samples, "meshd_actors", &[("kind", "mesh")]),
        Some(4.0)
    );
    assert_eq!(
        value(
            &samples,
            "meshd_partition_lease_owned",
            &[("partition", "0")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "meshd_partition_lease_owned",
            &[("partition", "1")]
        ),
        Some(0.0)
    );
}
