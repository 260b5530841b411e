//! mesh-clusters: mesh-manager's side of every Kubernetes cluster.
//!
//! # Layout
//! - [`credentials`]: kubeconfigs users hand in, validated down to what mesh-manager accepts
//!   (one cluster, an http(s) server, bearer-token or client-certificate auth, everything inline)
//!   and refused with a reason otherwise.
//! - [`client`]: a `kube::Client` built from validated credentials, its requests held to a
//!   [`rate_limit::RateLimit`].
//! - [`rate_limit`]: the token bucket every cluster client's requests pass.
//! - [`ops`]: [`ops::ClusterOps`], the operations on one cluster: server-side apply, delete,
//!   label sweeps and watch-based waits.
//! - [`probe`]: the reachability and permission probe run when a cluster is registered.
//!
//! Nothing here decides what a cluster should hold; that is planned in `mesh-core` and ordered by
//! the actors.

pub mod client;
pub mod credentials;
pub mod ops;
pub mod probe;
pub mod rate_limit;

pub use credentials::{AuthKind, ClusterCredentials, CredentialsError};
pub use ops::{ClusterOps, ObjectRef, OpsError};
pub use rate_limit::RateLimit;
