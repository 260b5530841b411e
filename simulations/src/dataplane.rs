//! The simulated data plane of one cluster: a sample application (Istio's bookinfo), the Istio
//! standard metrics its sidecars would emit, and the traces they would report.
//!
//! Traffic is computed lazily from elapsed time: each scrape or query advances counters by
//! `rate × elapsed` along the call graph (ingress → productpage → details, reviews v1/v2/v3;
//! reviews v2/v3 → ratings; ratings → mongodb over TCP), so no background task runs and
//! counters stay monotonic when rates or error ratios change.
//!
//! Served on a per-cluster plain-HTTP listener (no auth, like a Prometheus scrape target):
//! - `GET /metrics`: Prometheus text format — `istio_requests_total`,
//!   `istio_request_duration_milliseconds` (histogram), `istio_request_bytes`,
//!   `istio_response_bytes`, `istio_tcp_sent_bytes_total`, `istio_tcp_received_bytes_total`,
//!   each with the standard labels, reported by both source and destination proxies.
//! - Jaeger query API: `GET /api/services`, `/api/services/{service}/operations`,
//!   `/api/traces?service=&limit=&start=&end=&lookback=&tags=`, `/api/traces/{id}`. Service
//!   names are `<app>.<namespace>`. The share of requests traced follows the
//!   `telemetry.istio.io` `Telemetry` resources in the cluster (`tracing[].randomSamplingPercentage`,
//!   namespace-level overriding the root namespace `istio-system`; default 1%).

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use http::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use rand::Rng as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::store::{Store, WriteOptions};

const DURATION_BUCKETS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];
const BYTES_BUCKETS: &[f64] = &[
    1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0, 1000000.0, 10000000.0,
];
const MAX_TRACES: usize = 2000;

/// One caller → callee pair of the sample app.
#[derive(Debug, Clone)]
struct Edge {
    src_app: &'static str,
    src_version: &'static str,
    src_ns: String,
    dst_app: &'static str,
    dst_version: &'static str,
    /// Calls per request to productpage.
    share: f64,
    latency_ms: f64,
    req_bytes: f64,
    resp_bytes: f64,
    tcp: bool,
}

/// Accumulated values of one edge and response code.
#[derive(Debug, Clone, Default)]
struct Acc {
    count: f64,
    duration_buckets: Vec<f64>,
    duration_sum: f64,
    req_buckets: Vec<f64>,
    req_sum: f64,
    resp_buckets: Vec<f64>,
    resp_sum: f64,
}

#[derive(Debug)]
struct App {
    namespace: String,
    rps: f64,
    error_ratio: BTreeMap<String, f64>,
    edges: Vec<Edge>,
    /// (edge index, response code) → accumulators.
    acc: BTreeMap<(usize, u16), Acc>,
    tcp: BTreeMap<usize, (f64, f64)>,
    last: Instant,
    trace_carry: f64,
}

#[derive(Debug, Default)]
struct State {
    apps: Vec<App>,
    traces: VecDeque<Value>,
    seq: u64,
}

/// The data plane of one cluster.
pub struct DataPlane {
    cluster: String,
    state: Mutex<State>,
    addr: SocketAddr,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane")
            .field("cluster", &self.cluster)
            .field("addr", &self.addr)
            .finish()
    }
}

fn bookinfo_edges(ns: &str) -> Vec<Edge> {
    let e = |src_app,
             src_version,
             src_ns: &str,
             dst_app,
             dst_version,
             share,
             latency_ms,
             resp_bytes,
             tcp| Edge {
        src_app,
        src_version,
        src_ns: src_ns.to_string(),
        dst_app,
        dst_version,
        share,
        latency_ms,
        req_bytes: 600.0,
        resp_bytes,
        tcp,
    };
    vec![
        e(
            "istio-ingressgateway",
            "unknown",
            "istio-system",
            "productpage",
            "v1",
            1.0,
            60.0,
            5000.0,
            false,
        ),
        e(
            "productpage",
            "v1",
            ns,
            "details",
            "v1",
            1.0,
            4.0,
            180.0,
            false,
        ),
        e(
            "productpage",
            "v1",
            ns,
            "reviews",
            "v1",
            1.0 / 3.0,
            12.0,
            350.0,
            false,
        ),
        e(
            "productpage",
            "v1",
            ns,
            "reviews",
            "v2",
            1.0 / 3.0,
            25.0,
            450.0,
            false,
        ),
        e(
            "productpage",
            "v1",
            ns,
            "reviews",
            "v3",
            1.0 / 3.0,
            30.0,
            450.0,
            false,
        ),
        e(
            "reviews",
            "v2",
            ns,
            "ratings",
            "v1",
            1.0 / 3.0,
            3.0,
            50.0,
            false,
        ),
        e(
            "reviews",
            "v3",
            ns,
            "ratings",
            "v1",
            1.0 / 3.0,
            3.0,
            50.0,
            false,
        ),
        e(
            "ratings",
            "v1",
            ns,
            "mongodb",
            "v1",
            2.0 / 3.0,
            1.0,
            120.0,
            true,
        ),
    ]
}

fn exp_cdf(bound: f64, mean: f64) -> f64 {
    1.0 - (-bound / mean.max(0.001)).exp()
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Sampling percentage for `ns` from the cluster's Telemetry resources.
fn sampling_percent(store: &Store, ns: &str) -> f64 {
    let Some(rt) = store.resource("telemetry.istio.io", "Telemetry") else {
        return 1.0;
    };
    let pct = |namespace: &str| -> Option<f64> {
        store
            .list_values(&rt, Some(namespace))
            .iter()
            .filter(|t| t["spec"]["selector"].is_null())
            .find_map(|t| {
                t["spec"]["tracing"]
                    .as_array()?
                    .iter()
                    .find_map(|tr| tr["randomSamplingPercentage"].as_f64())
            })
    };
    pct(ns).or_else(|| pct("istio-system")).unwrap_or(1.0)
}

impl App {
    fn new(namespace: &str) -> App {
        App {
            namespace: namespace.to_string(),
            rps: 10.0,
            error_ratio: BTreeMap::new(),
            edges: bookinfo_edges(namespace),
            acc: BTreeMap::new(),
            tcp: BTreeMap::new(),
            last: Instant::now(),
            trace_carry: 0.0,
        }
    }

    fn advance(
        &mut self,
        sampling: f64,
        cluster: &str,
        traces: &mut VecDeque<Value>,
        seq: &mut u64,
    ) {
        let dt = self.last.elapsed().as_secs_f64();
        self.last = Instant::now();
        if dt <= 0.0 || self.rps <= 0.0 {
            return;
        }
        let requests = self.rps * dt;
        for (i, e) in self.edges.iter().enumerate() {
            let n = requests * e.share;
            if e.tcp {
                let t = self.tcp.entry(i).or_default();
                t.0 += n * e.req_bytes;
                t.1 += n * e.resp_bytes;
                continue;
            }
            let err = self
                .error_ratio
                .get(e.dst_app)
                .copied()
                .unwrap_or(0.0)
                .clamp(0.0, 1.0);
            for (code, part) in [(200u16, 1.0 - err), (503u16, err)] {
                if part <= 0.0 {
                    continue;
                }
                let k = n * part;
                let a = self.acc.entry((i, code)).or_insert_with(|| Acc {
                    duration_buckets: vec![0.0; DURATION_BUCKETS.len()],
                    req_buckets: vec![0.0; BYTES_BUCKETS.len()],
                    resp_buckets: vec![0.0; BYTES_BUCKETS.len()],
                    ..Acc::default()
                });
                a.count += k;
                for (b, v) in DURATION_BUCKETS.iter().zip(a.duration_buckets.iter_mut()) {
                    *v += k * exp_cdf(*b, e.latency_ms);
                }
                a.duration_sum += k * e.latency_ms;
                for (b, v) in BYTES_BUCKETS.iter().zip(a.req_buckets.iter_mut()) {
                    *v += k * exp_cdf(*b, e.req_bytes);
                }
                a.req_sum += k * e.req_bytes;
                let rb = if code == 200 { e.resp_bytes } else { 95.0 };
                for (b, v) in BYTES_BUCKETS.iter().zip(a.resp_buckets.iter_mut()) {
                    *v += k * exp_cdf(*b, rb);
                }
                a.resp_sum += k * rb;
            }
        }
        // Traces: one per sampled request to productpage, spread over the elapsed window.
        self.trace_carry += requests * sampling / 100.0;
        let count = self.trace_carry.floor() as u64;
        self.trace_carry -= count as f64;
        let end = now_us();
        let window = (dt * 1_000_000.0) as u64;
        let mut rng = rand::thread_rng();
        for _ in 0..count.min(MAX_TRACES as u64) {
            *seq += 1;
            let start = end.saturating_sub(rng.gen_range(0..=window.max(1)));
            traces.push_back(self.trace(cluster, *seq, start, &mut rng));
            while traces.len() > MAX_TRACES {
                traces.pop_front();
            }
        }
    }

    fn trace(&self, cluster: &str, seq: u64, start: u64, rng: &mut impl rand::Rng) -> Value {
        let trace_id = format!("{:016x}{:016x}", rng.r#gen::<u64>(), seq);
        let ns = &self.namespace;
        let version = ["v1", "v2", "v3"][rng.gen_range(0..3)];
        let fails = |app: &str, rng: &mut dyn rand::RngCore| {
            rng.gen_range(0.0..1.0) < self.error_ratio.get(app).copied().unwrap_or(0.0)
        };
        let mut spans = Vec::new();
        let mut processes = serde_json::Map::new();
        let mut span = |id: u64,
                        parent: Option<u64>,
                        app: &str,
                        ver: &str,
                        offset: u64,
                        dur: u64,
                        error: bool| {
            let pid = format!("p{}", processes.len() + 1);
            let service = format!("{app}.{ns}");
            processes.insert(pid.clone(), json!({"serviceName": service, "tags": [{"key": "istio.cluster_id", "type": "string", "value": cluster}]}));
            let mut tags = vec![
                json!({"key": "http.method", "type": "string", "value": "GET"}),
                json!({"key": "http.status_code", "type": "string", "value": if error { "503" } else { "200" }}),
                json!({"key": "istio.canonical_revision", "type": "string", "value": ver}),
                json!({"key": "istio.canonical_service", "type": "string", "value": app}),
                json!({"key": "istio.namespace", "type": "string", "value": ns}),
                json!({"key": "node_id", "type": "string", "value": format!("sidecar~10.0.0.1~{app}-{ver}.{ns}~{ns}.svc.cluster.local")}),
                json!({"key": "span.kind", "type": "string", "value": "server"}),
                json!({"key": "component", "type": "string", "value": "proxy"}),
            ];
            if error {
                tags.push(json!({"key": "error", "type": "bool", "value": true}));
            }
            spans.push(json!({
                "traceID": trace_id,
                "spanID": format!("{id:016x}"),
                "flags": 1,
                "operationName": format!("{app}.{ns}.svc.cluster.local:9080/*"),
                "references": parent.map(|p| vec![json!({"refType": "CHILD_OF", "traceID": trace_id, "spanID": format!("{p:016x}")})]).unwrap_or_default(),
                "startTime": start + offset,
                "duration": dur,
                "tags": tags,
                "logs": [],
                "processID": pid,
                "warnings": null,
            }));
        };
        let base = seq << 8;
        let details_err = fails("details", rng);
        let reviews_err = fails("reviews", rng);
        let ratings_err = version != "v1" && fails("ratings", rng);
        let pp_err = fails("productpage", rng);
        span(base + 1, None, "productpage", "v1", 0, 60_000, pp_err);
        span(
            base + 2,
            Some(base + 1),
            "details",
            "v1",
            2_000,
            4_000,
            details_err,
        );
        span(
            base + 3,
            Some(base + 1),
            "reviews",
            version,
            8_000,
            25_000,
            reviews_err,
        );
        if version != "v1" {
            span(
                base + 4,
                Some(base + 3),
                "ratings",
                "v1",
                12_000,
                3_000,
                ratings_err,
            );
        }
        json!({"traceID": trace_id, "spans": spans, "processes": processes, "warnings": null})
    }
}

impl DataPlane {
    fn advance(&self, store: &Store) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let State { apps, traces, seq } = &mut *st;
        for app in apps.iter_mut() {
            let sampling = sampling_percent(store, &app.namespace);
            app.advance(sampling, &self.cluster, traces, seq);
        }
    }

    fn with_app<T>(&self, store: &Store, ns: &str, f: impl FnOnce(&mut App) -> T) -> Option<T> {
        self.advance(store);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.apps.iter_mut().find(|a| a.namespace == ns).map(f)
    }
}

/// Handle on a cluster's data plane (from [`crate::SimCluster::dataplane`]).
#[derive(Clone)]
pub struct DataPlaneHandle {
    pub(crate) dp: Arc<DataPlane>,
    pub(crate) shared: Arc<crate::cluster::Shared>,
}

impl std::fmt::Debug for DataPlaneHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.dp.fmt(f)
    }
}

fn bookinfo_objects(ns: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for (app, versions) in [
        ("productpage", &["v1"][..]),
        ("details", &["v1"]),
        ("reviews", &["v1", "v2", "v3"]),
        ("ratings", &["v1"]),
        ("mongodb", &["v1"]),
    ] {
        let port = if app == "mongodb" { 27017 } else { 9080 };
        out.push(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": app, "namespace": ns, "labels": {"app": app, "service": app}},
            "spec": {"selector": {"app": app}, "ports": [{"name": if app == "mongodb" { "tcp" } else { "http" }, "port": port}]},
        }));
        out.push(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": format!("bookinfo-{app}"), "namespace": ns, "labels": {"account": app}},
        }));
        for v in versions {
            let labels = json!({"app": app, "version": v});
            out.push(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": format!("{app}-{v}"), "namespace": ns, "labels": labels},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": {
                        "serviceAccountName": format!("bookinfo-{app}"),
                        "containers": [{"name": app, "image": format!("docker.io/istio/examples-bookinfo-{app}-{v}:1.20.2"), "ports": [{"containerPort": port}]}],
                    }},
                },
            }));
        }
    }
    out
}

impl DataPlaneHandle {
    /// Where the telemetry listener serves `/metrics` and the Jaeger API.
    pub fn addr(&self) -> SocketAddr {
        self.dp.addr
    }

    /// `http://<addr>/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.dp.addr)
    }

    /// `http://<addr>` (Jaeger query API base).
    pub fn jaeger_url(&self) -> String {
        format!("http://{}", self.dp.addr)
    }

    /// Deploy the bookinfo sample into `namespace` (created if missing): Deployments, Services
    /// and ServiceAccounts in the API, and traffic at 10 requests/s to productpage.
    pub fn deploy_bookinfo(&self, namespace: &str) -> anyhow::Result<()> {
        let store = &self.shared.store;
        let ns_rt = store
            .resource("", "Namespace")
            .ok_or_else(|| anyhow::anyhow!("namespaces not served"))?;
        if store.get(&ns_rt, "", namespace).is_err() {
            store.create(
                &ns_rt,
                "",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
                &WriteOptions::default(),
            )?;
        }
        let opts = WriteOptions {
            field_manager: Some("bookinfo".into()),
            force: true,
            dry_run: false,
        };
        for obj in bookinfo_objects(namespace) {
            let group = obj["apiVersion"]
                .as_str()
                .and_then(|a| a.rsplit_once('/'))
                .map(|(g, _)| g)
                .unwrap_or("");
            let rt = store
                .resource(group, obj["kind"].as_str().unwrap_or(""))
                .ok_or_else(|| anyhow::anyhow!("kind not served"))?;
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            store.patch(
                &rt,
                namespace,
                &name,
                crate::patch::PatchKind::Apply,
                obj.to_string().as_bytes(),
                false,
                &opts,
            )?;
        }
        let mut st = self.dp.state.lock().unwrap_or_else(|p| p.into_inner());
        if !st.apps.iter().any(|a| a.namespace == namespace) {
            st.apps.push(App::new(namespace));
        }
        Ok(())
    }

    /// Set the request rate to productpage (requests per second) of the app in `namespace`.
    pub fn set_rate(&self, namespace: &str, rps: f64) -> bool {
        self.dp
            .with_app(&self.shared.store, namespace, |a| a.rps = rps.max(0.0))
            .is_some()
    }

    /// Set the share (0–1) of requests to `service` (`productpage`, `details`, `reviews`,
    /// `ratings`) answered with 503.
    pub fn set_error_ratio(&self, namespace: &str, service: &str, ratio: f64) -> bool {
        self.dp
            .with_app(&self.shared.store, namespace, |a| {
                a.error_ratio
                    .insert(service.to_string(), ratio.clamp(0.0, 1.0));
            })
            .is_some()
    }

    /// The current `/metrics` text.
    pub fn render_metrics(&self) -> String {
        self.dp.advance(&self.shared.store);
        render(&self.dp)
    }
}

fn labels(e: &Edge, ns: &str, cluster: &str, reporter: &str, code: Option<u16>) -> String {
    let principal =
        |app: &str, sns: &str| format!("spiffe://cluster.local/ns/{sns}/sa/bookinfo-{app}");
    let src_wl = if e.src_app == "istio-ingressgateway" {
        e.src_app.to_string()
    } else {
        format!("{}-{}", e.src_app, e.src_version)
    };
    let src_principal = if e.src_app == "istio-ingressgateway" {
        "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account".to_string()
    } else {
        principal(e.src_app, &e.src_ns)
    };
    let mut l = format!(
        "reporter=\"{reporter}\",source_workload=\"{src_wl}\",source_workload_namespace=\"{}\",source_principal=\"{src_principal}\",source_app=\"{}\",source_version=\"{}\",source_canonical_service=\"{}\",source_canonical_revision=\"{}\",source_cluster=\"{cluster}\",destination_workload=\"{}-{}\",destination_workload_namespace=\"{ns}\",destination_principal=\"{}\",destination_app=\"{}\",destination_version=\"{}\",destination_service=\"{}.{ns}.svc.cluster.local\",destination_service_name=\"{}\",destination_service_namespace=\"{ns}\",destination_canonical_service=\"{}\",destination_canonical_revision=\"{}\",destination_cluster=\"{cluster}\",connection_security_policy=\"{}\"",
        e.src_ns,
        e.src_app,
        e.src_version,
        e.src_app,
        if e.src_version == "unknown" {
            "latest"
        } else {
            e.src_version
        },
        e.dst_app,
        e.dst_version,
        principal(e.dst_app, ns),
        e.dst_app,
        e.dst_version,
        e.dst_app,
        e.dst_app,
        e.dst_app,
        e.dst_version,
        if reporter == "destination" {
            "mutual_tls"
        } else {
            "unknown"
        },
    );
    match code {
        Some(c) => {
            let flags = if c == 200 { "-" } else { "URX" };
            let _ = write!(
                l,
                ",request_protocol=\"http\",response_code=\"{c}\",grpc_response_status=\"\",response_flags=\"{flags}\""
            );
        }
        None => l.push_str(",request_protocol=\"tcp\",response_flags=\"-\""),
    }
    l
}

fn render(dp: &DataPlane) -> String {
    let st = dp.state.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = String::new();
    let header = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    header(
        &mut out,
        "istio_requests_total",
        "counter",
        "Total requests.",
    );
    for app in &st.apps {
        for ((i, code), a) in &app.acc {
            for reporter in ["source", "destination"] {
                let l = labels(
                    &app.edges[*i],
                    &app.namespace,
                    &dp.cluster,
                    reporter,
                    Some(*code),
                );
                let _ = writeln!(out, "istio_requests_total{{{l}}} {}", a.count.floor());
            }
        }
    }
    let hist = |out: &mut String,
                name: &str,
                help: &str,
                bounds: &[f64],
                pick: &dyn Fn(&Acc) -> (&Vec<f64>, f64)| {
        header(out, name, "histogram", help);
        for app in &st.apps {
            for ((i, code), a) in &app.acc {
                let (buckets, sum) = pick(a);
                for reporter in ["source", "destination"] {
                    let l = labels(
                        &app.edges[*i],
                        &app.namespace,
                        &dp.cluster,
                        reporter,
                        Some(*code),
                    );
                    for (b, v) in bounds.iter().zip(buckets) {
                        let _ = writeln!(out, "{name}_bucket{{{l},le=\"{b}\"}} {}", v.floor());
                    }
                    let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {}", a.count.floor());
                    let _ = writeln!(out, "{name}_sum{{{l}}} {sum:.3}");
                    let _ = writeln!(out, "{name}_count{{{l}}} {}", a.count.floor());
                }
            }
        }
    };
    hist(
        &mut out,
        "istio_request_duration_milliseconds",
        "Request duration in milliseconds.",
        DURATION_BUCKETS,
        &|a| (&a.duration_buckets, a.duration_sum),
    );
    hist(
        &mut out,
        "istio_request_bytes",
        "Request sizes in bytes.",
        BYTES_BUCKETS,
        &|a| (&a.req_buckets, a.req_sum),
    );
    hist(
        &mut out,
        "istio_response_bytes",
        "Response sizes in bytes.",
        BYTES_BUCKETS,
        &|a| (&a.resp_buckets, a.resp_sum),
    );
    for (name, help, pick) in [
        (
            "istio_tcp_sent_bytes_total",
            "Bytes sent during a TCP connection.",
            1usize,
        ),
        (
            "istio_tcp_received_bytes_total",
            "Bytes received during a TCP connection.",
            0usize,
        ),
    ] {
        header(&mut out, name, "counter", help);
        for app in &st.apps {
            for (i, t) in &app.tcp {
                let v = if pick == 1 { t.1 } else { t.0 };
                for reporter in ["source", "destination"] {
                    let l = labels(&app.edges[*i], &app.namespace, &dp.cluster, reporter, None);
                    let _ = writeln!(out, "{name}{{{l}}} {}", v.floor());
                }
            }
        }
    }
    out
}

fn jaeger_list(data: Value) -> Value {
    let total = data.as_array().map(|a| a.len()).unwrap_or(0);
    json!({"data": data, "total": total, "limit": 0, "offset": 0, "errors": null})
}

fn trace_services(t: &Value) -> Vec<String> {
    t["processes"]
        .as_object()
        .map(|p| {
            p.values()
                .filter_map(|v| v["serviceName"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn serve_request(
    dp: &DataPlane,
    store: &Store,
    req: &Request<hyper::body::Incoming>,
) -> (StatusCode, &'static str, String) {
    dp.advance(store);
    let path = req.uri().path();
    let q: BTreeMap<String, String> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    if path == "/metrics" {
        return (StatusCode::OK, "text/plain; version=0.0.4", render(dp));
    }
    let st = dp.state.lock().unwrap_or_else(|p| p.into_inner());
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let body = match segs.as_slice() {
        ["api", "services"] => {
            let mut names: Vec<String> = st.apps.iter().flat_map(|a| ["productpage", "details", "reviews", "ratings"].map(|s| format!("{s}.{}", a.namespace))).collect();
            names.sort();
            jaeger_list(json!(names))
        }
        ["api", "services", svc, "operations"] => {
            let app = svc.split('.').next().unwrap_or("");
            let ns = svc.split_once('.').map(|(_, n)| n).unwrap_or("");
            jaeger_list(json!([format!("{app}.{ns}.svc.cluster.local:9080/*")]))
        }
        ["api", "traces", id] => match st.traces.iter().find(|t| t["traceID"] == *id) {
            Some(t) => jaeger_list(json!([t])),
            None => return (StatusCode::NOT_FOUND, "application/json", json!({"data": null, "total": 0, "limit": 0, "offset": 0, "errors": [{"code": 404, "msg": "trace not found"}]}).to_string()),
        },
        ["api", "traces"] => {
            let Some(service) = q.get("service") else {
                return (StatusCode::BAD_REQUEST, "application/json", json!({"data": null, "errors": [{"code": 400, "msg": "parameter 'service' is required"}]}).to_string());
            };
            let end = q.get("end").and_then(|e| e.parse::<u64>().ok()).unwrap_or_else(now_us);
            let lookback_us = q.get("lookback").and_then(|l| parse_lookback(l)).unwrap_or(3_600_000_000);
            let start = q.get("start").and_then(|s| s.parse::<u64>().ok()).unwrap_or(end.saturating_sub(lookback_us));
            let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(20);
            let want_error = q.get("tags").and_then(|t| serde_json::from_str::<Value>(t).ok()).is_some_and(|t| t["error"] == "true");
            let found: Vec<Value> = st
                .traces
                .iter()
                .rev()
                .filter(|t| trace_services(t).iter().any(|s| s == service))
                .filter(|t| {
                    let ts = t["spans"][0]["startTime"].as_u64().unwrap_or(0);
                    ts >= start && ts <= end
                })
                .filter(|t| !want_error || t["spans"].as_array().is_some_and(|s| s.iter().any(|sp| sp["tags"].as_array().is_some_and(|tg| tg.iter().any(|x| x["key"] == "error")))))
                .take(limit)
                .cloned()
                .collect();
            jaeger_list(json!(found))
        }
        _ => return (StatusCode::NOT_FOUND, "text/plain", "404 page not found\n".into()),
    };
    (StatusCode::OK, "application/json", body.to_string())
}

fn parse_lookback(l: &str) -> Option<u64> {
    let (num, unit) = l.split_at(l.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return None,
    };
    Some(secs * 1_000_000)
}

/// Start the telemetry listener of a cluster.
pub(crate) async fn start(shared: Arc<crate::cluster::Shared>) -> anyhow::Result<DataPlaneHandle> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let dp = Arc::new(DataPlane {
        cluster: shared.name.clone(),
        state: Mutex::new(State::default()),
        addr,
    });
    let handle = DataPlaneHandle {
        dp: dp.clone(),
        shared: shared.clone(),
    };
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shared.shutdown.cancelled() => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            let (dp, shared) = (dp.clone(), shared.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (code, ct, body) = serve_request(&dp, &shared.store, &req);
                    let mut resp = Response::new(Body::from(body));
                    *resp.status_mut() = code;
                    resp.headers_mut()
                        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ct));
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(handle)
}
