//! mesh-sim: simulated Kubernetes clusters for mesh-manager's tests, demos and benchmarks.
//!
//! # Layout
//! - [`world`]: a world of N clusters ([`World`], [`WorldBuilder`]) for tests and the CLI.
//! - [`standalone`]: `run_standalone`, the entry point of `meshd sim`.
//! - [`cluster`]: one simulated cluster ([`SimCluster`]): listener, kubeconfig, client helper.
//! - [`server`]: the HTTP API server: routing, auth, faults, discovery, CRUD, watch, tables.
//! - [`store`]: the in-memory object store with resourceVersions, watch history and object
//!   lifecycle (finalizers, namespaces, garbage collection).
//! - [`patch`]: merge patch, JSON patch and server-side apply semantics.
//! - [`resources`]: served resource types, the shipped Istio/Sail CRDs, discovery documents.
//! - [`selector`]: label and field selectors.
//! - [`openapi`]: the OpenAPI v3 documents kubectl consults before `apply`.
//! - [`table`]: server-side printing (`Table`) for kubectl.
//! - [`tls`]: the self-signed CA and server certificate of the API servers.
//! - [`auth`]: bearer tokens per cluster.
//! - [`faults`]: run-time faults per cluster.
//! - [`dataplane`]: sample app, Istio standard metrics and a Jaeger-compatible trace API.
//! - [`error`]: Kubernetes `Status` errors (reason + code).
//! - `controllers`: Deployments, LoadBalancers, service-account tokens, the Sail operator and
//!   istiod's remote-cluster discovery, running inside each cluster.

pub mod auth;
pub mod cluster;
mod controllers;
pub mod dataplane;
pub mod error;
pub mod faults;
pub mod openapi;
pub mod patch;
pub mod resources;
pub mod selector;
pub(crate) mod server;
pub mod standalone;
pub mod store;
pub mod table;
pub mod tls;
pub mod world;

pub use cluster::{ClusterOptions, SimCluster};
pub use faults::Faults;
pub use standalone::{StandaloneOptions, run_standalone};
pub use world::{World, WorldBuilder};
