//! mesh-api: the REST API of mesh-manager.
//!
//! # Layout
//! - [`envelope`]: the seed's response body `{"result","err","rev","data"}` and [`ApiError`], the one
//!   place errors become HTTP statuses (4xx for what the caller can fix, 5xx only for our faults,
//!   never with internal details).
//! - [`state`]: what handlers share — the version catalog, the store, the bus, the readiness
//!   probes of the backends and the authentication settings.
//! - [`auth`]: API tokens (Bearer header or `tke` cookie) to a [`auth::Caller`] with a tenant and
//!   a role; the trusted-proxy tenant header.
//! - [`routes`]: the handlers, one module per resource family, and [`routes::configure`] that
//!   mounts them under `/apis/v1/mesh` next to `/healthz`, `/readyz` and `/metrics`.
//! - [`openapi`]: the OpenAPI 3 document generated from the handlers (committed as
//!   `api/openapi.json`, served at `/apis/v1/mesh/openapi.json`).
//! - [`metrics`]: the Prometheus registry behind `/metrics`, the request middleware, and the
//!   methods the workers report commands, flows, actors and leases through.
//!
//! Reads come from the store, scoped to the caller's tenant (another tenant's objects answer 404
//! like missing ones). Long operations publish a command on the bus and answer 202 with its id;
//! the workers carry them out and report through events, which `GET /meshes/{m}/events` streams.
//!
//! Unknown routes, malformed JSON and oversized bodies answer in the same envelope, so clients
//! always get a message a person can act on.

pub mod auth;
pub mod envelope;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod state;

pub use auth::Caller;
pub use envelope::{ApiError, ApiResponse, ErrorResponse};
pub use metrics::Metrics;
pub use routes::configure;
pub use state::{ApiState, BusReadiness, ReadinessProbe};

/// Base path of every seed-compatible route.
pub const BASE_PATH: &str = "/apis/v1/mesh";
