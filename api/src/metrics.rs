//! Prometheus metrics of meshd, served at `GET /metrics` (public, text format 0.0.4).
//!
//! Input: every HTTP request (through [`track`], which [`crate::configure`] installs on every
//! route) and whatever the rest of meshd reports through the methods of [`Metrics`]. Output: the
//! text exposition of one registry.
//!
//! The API records on its own:
//! - `meshd_http_requests_total{route,method,status}`: requests by route pattern
//!   (`/apis/v1/mesh/meshes/{mesh}`, `unmatched` for unknown paths), method and status;
//! - `meshd_http_request_duration_seconds{route,method}`: time to the response head (a
//!   server-sent event stream counts until its headers are sent).
//!
//! meshd's worker feeds the rest through a clone of [`crate::ApiState::metrics`] (clones share
//! one registry; see meshd's `metrics_observer`):
//! - `meshd_commands_total{kind,outcome}`: [`Metrics::command_handled`], once per command a
//!   worker takes off the bus;
//! - `meshd_flows_started_total` and `meshd_flows_finished_total{outcome}`:
//!   [`Metrics::flow_started`] and [`Metrics::flow_finished`];
//! - `meshd_actors{kind}`: [`Metrics::set_actors`], the live actors of each kind (`partition`,
//!   `mesh`);
//! - `meshd_partition_lease_owned{partition}`: [`Metrics::set_lease_owned`], 1 while this process
//!   holds the partition's lease.
//!
//! Label values come from code (route patterns, command kinds, outcomes), never from what a
//! caller sends, so a client cannot grow the number of series.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use mesh_bus::event::FlowOutcome;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::state::ApiState;

/// Route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Buckets of the request latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// What became of a command a worker took off the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandOutcome {
    /// It was accepted and started (or joined) a flow.
    Accepted,
    /// It was refused (`CommandRejected`): invalid for the mesh's current state.
    Rejected,
    /// Handling it failed (store or bus error); it will be redelivered.
    Failed,
}

impl CommandOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
        }
    }
}

fn flow_outcome_label(outcome: FlowOutcome) -> &'static str {
    match outcome {
        FlowOutcome::Succeeded => "succeeded",
        FlowOutcome::Failed => "failed",
        FlowOutcome::RolledBack => "rolled_back",
        FlowOutcome::Cancelled => "cancelled",
    }
}

struct Families {
    registry: Registry,
    http_requests: IntCounterVec,
    http_latency: HistogramVec,
    commands: IntCounterVec,
    flows_started: IntCounter,
    flows_finished: IntCounterVec,
    actors: IntGaugeVec,
    leases: IntGaugeVec,
    fenced_writes: IntCounter,
    compound_transactions: IntCounterVec,
}

/// The metrics of one meshd process. Cheap to clone; clones share the registry, so the API and
/// the workers write to the same series.
#[derive(Clone)]
pub struct Metrics {
    families: Arc<Families>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `collector` and returns it; names and labels are constants, so this cannot fail.
fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: prometheus::Result<C>,
) -> C {
    let collector = collector.expect("invariant: metric names and labels are valid constants");
    registry
        .register(Box::new(collector.clone()))
        .expect("invariant: each metric is registered once in a fresh registry");
    collector
}

impl Metrics {
    /// A fresh registry with every meshd metric registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "meshd_http_requests_total",
                    "HTTP requests by route pattern, method and status",
                ),
                &["route", "method", "status"],
            ),
        );
        let http_latency = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "meshd_http_request_duration_seconds",
                    "Time from request to response head, by route pattern and method",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["route", "method"],
            ),
        );
        let commands = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "meshd_commands_total",
                    "Commands taken off the bus by kind and outcome",
                ),
                &["kind", "outcome"],
            ),
        );
        let flows_started = register(
            &registry,
            IntCounter::new("meshd_flows_started_total", "Flows started"),
        );
        let flows_finished = register(
            &registry,
            IntCounterVec::new(
                Opts::new("meshd_flows_finished_total", "Flows finished by outcome"),
                &["outcome"],
            ),
        );
        let actors = register(
            &registry,
            IntGaugeVec::new(Opts::new("meshd_actors", "Live actors by kind"), &["kind"]),
        );
        let leases = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "meshd_partition_lease_owned",
                    "1 while this process holds the partition's lease, else 0",
                ),
                &["partition"],
            ),
        );
        let fenced_writes = register(
            &registry,
            IntCounter::new(
                "meshd_store_fenced_writes_total",
                "Writes the database refused because a newer owner held the mesh",
            ),
        );
        let compound_transactions = register(
            &registry,
            IntCounterVec::new(
                Opts::new(
                    "meshd_store_compound_transactions_total",
                    "Transactions sent as one compound statement (MariaDB), by outcome: committed, \
                     or declined and run statement by statement",
                ),
                &["outcome"],
            ),
        );
        for outcome in ["committed", "declined"] {
            compound_transactions.with_label_values(&[outcome]);
        }
        // Every flow outcome shows from the start, so rates and alerts work before the first.
        for outcome in [
            FlowOutcome::Succeeded,
            FlowOutcome::Failed,
            FlowOutcome::RolledBack,
            FlowOutcome::Cancelled,
        ] {
            flows_finished.with_label_values(&[flow_outcome_label(outcome)]);
        }
        Self {
            families: Arc::new(Families {
                registry,
                http_requests,
                http_latency,
                commands,
                flows_started,
                flows_finished,
                actors,
                leases,
                fenced_writes,
                compound_transactions,
            }),
        }
    }

    /// Brings the store's counters up to `fenced_writes` refused stale writes and `compound`
    /// (committed, declined) compound transactions, as the store counted them since it opened.
    pub fn observe_store(&self, fenced_writes: u64, (committed, declined): (u64, u64)) {
        let raise = |counter: &IntCounter, to: u64| {
            let now = counter.get();
            if to > now {
                counter.inc_by(to - now);
            }
        };
        raise(&self.families.fenced_writes, fenced_writes);
        let outcomes = &self.families.compound_transactions;
        raise(&outcomes.with_label_values(&["committed"]), committed);
        raise(&outcomes.with_label_values(&["declined"]), declined);
    }

    /// Records one answered HTTP request.
    pub fn http_request(&self, route: &str, method: &Method, status: u16, seconds: f64) {
        let method = method_label(method);
        self.families
            .http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.families
            .http_latency
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    /// A worker took a command of `kind` (`CreateMesh`, ...) off the bus and this became of it.
    pub fn command_handled(&self, kind: &str, outcome: CommandOutcome) {
        self.families
            .commands
            .with_label_values(&[kind, outcome.as_str()])
            .inc();
    }

    /// A worker started a flow.
    pub fn flow_started(&self) {
        self.families.flows_started.inc();
    }

    /// A flow ended with `outcome`.
    pub fn flow_finished(&self, outcome: FlowOutcome) {
        self.families
            .flows_finished
            .with_label_values(&[flow_outcome_label(outcome)])
            .inc();
    }

    /// `count` actors of `kind` (`mesh`, `partition`) are alive in this process.
    pub fn set_actors(&self, kind: &str, count: i64) {
        self.families.actors.with_label_values(&[kind]).set(count);
    }

    /// This process acquired (`true`) or lost (`false`) the lease of `partition`.
    pub fn set_lease_owned(&self, partition: u32, owned: bool) {
        self.families
            .leases
            .with_label_values(&[&partition.to_string()])
            .set(i64::from(owned));
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.families.registry.gather(), &mut out) {
            tracing::warn!(%error, "cannot encode metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Standard methods by name, anything else as `other` (methods are chosen by the caller).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: counts and times every request by the pattern of the route it matched.
pub async fn track(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = request
        .app_data::<web::Data<ApiState>>()
        .map(|state| state.metrics.clone());
    let method = request.method().clone();
    let route = request
        .match_pattern()
        .filter(|pattern| !pattern.is_empty())
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    // One span per request, named by its route pattern (never by what the caller sent), so a
    // configured trace exporter shows each request with the command and flow spans under it.
    let span = tracing::info_span!(
        "http.request",
        http.method = %method,
        http.route = %route,
        http.status_code = tracing::field::Empty,
    );
    let result = tracing::Instrument::instrument(next.call(request), span.clone()).await;
    let status = match &result {
        Ok(response) => response.status().as_u16(),
        Err(error) => error.as_response_error().status_code().as_u16(),
    };
    span.record("http.status_code", status);
    if let Some(metrics) = metrics {
        metrics.http_request(&route, &method, status, started.elapsed().as_secs_f64());
    }
    result
}

/// `GET /metrics`: every metric in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    operation_id = "metrics",
    responses(
        (status = 200, description = "Every meshd metric in the Prometheus text format 0.0.4", content_type = "text/plain; version=0.0.4", body = String),
        (status = 405, response = crate::openapi::MethodNotAllowed),
    )
)]
pub async fn scrape(state: web::Data<ApiState>) -> HttpResponse {
    if let Some(store) = &state.store {
        state
            .metrics
            .observe_store(store.fenced_write_count(), store.compound_outcomes());
    }
    HttpResponse::Ok()
        .content_type(TextEncoder::new().format_type())
        .body(state.metrics.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_write_to_the_same_series() {
        let metrics = Metrics::new();
        let worker = metrics.clone();
        worker.command_handled("CreateMesh", CommandOutcome::Accepted);
        worker.flow_finished(FlowOutcome::RolledBack);
        worker.set_actors("mesh", 3);
        worker.set_lease_owned(2, true);
        let text = metrics.render();
        assert!(
            text.contains(r#"meshd_commands_total{kind="CreateMesh",outcome="accepted"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"meshd_flows_finished_total{outcome="rolled_back"} 1"#));
        assert!(text.contains(r#"meshd_flows_finished_total{outcome="succeeded"} 0"#));
        assert!(text.contains(r#"meshd_actors{kind="mesh"} 3"#));
        assert!(text.contains(r#"meshd_partition_lease_owned{partition="2"} 1"#));
    }

    #[test]
    fn the_stores_counters_are_followed_never_lowered() {
        let metrics = Metrics::new();
        let text = metrics.render();
        assert!(text.contains("meshd_store_fenced_writes_total 0"), "{text}");
        assert!(text.contains(r#"meshd_store_compound_transactions_total{outcome="declined"} 0"#));
        metrics.observe_store(3, (40, 2));
        metrics.observe_store(5, (41, 2));
        // A store that reports less (another one, say) does not turn a counter back.
        metrics.observe_store(1, (0, 0));
        let text = metrics.render();
        assert!(text.contains("meshd_store_fenced_writes_total 5"), "{text}");
        assert!(
            text.contains(r#"meshd_store_compound_transactions_total{outcome="committed"} 41"#)
        );
        assert!(text.contains(r#"meshd_store_compound_transactions_total{outcome="declined"} 2"#));
    }

    #[test]
    fn unusual_methods_share_one_label() {
        let custom = Method::from_bytes(b"BREW").expect("a valid extension method");
        assert_eq!(method_label(&custom), "other");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
    }
}
