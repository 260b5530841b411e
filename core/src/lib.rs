//! mesh-core: the domain of mesh-manager, free of I/O.
//!
//! # Layout
//! - [`names`]: validated identifiers (tenant, mesh, cluster, namespace) used at every boundary.
//! - [`mode`]: deployment modes of a mesh and the roles of its member clusters.
//! - [`flow`]: life-cycle states of flows, tasks and commands.
//! - [`catalog`]: the catalog of installable Istio versions, built into the binary from the Sail
//!   Operator's version list and overridable by configuration.
//! - [`spec`]: the desired state of a mesh (members, roles, networks, config) and its validation.
//! - [`plan`]: the Kubernetes objects each member cluster must hold, derived from a spec; the
//!   "plan" stage of observe → validate → plan → apply → record.
//! - [`resources`]: the Istio resources tenants manage (VirtualService, DestinationRule, …):
//!   kinds, normalisation, validation against the CRD schemas, diffs, target clusters.
//! - [`pki`]: the mesh's root CA and the per-cluster intermediate CAs istiod plugs in.
//! - [`upgrade`]: upgrade and rollback rules (version steps, batches, health gates, pre-checks).
//!
//! Nothing here touches the network, a database or a clock (callers pass the time in); the other
//! crates bring the I/O. Key generation draws on the operating system's randomness.

pub mod catalog;
pub mod flow;
pub mod mode;
pub mod names;
pub mod pki;
pub mod plan;
pub mod resources;
pub mod spec;
pub mod upgrade;

pub use catalog::{CatalogError, IstioVersion, VersionCatalog};
pub use flow::{CommandStatus, FlowStatus, TaskStatus};
pub use mode::{ClusterRole, MeshMode};
pub use names::{ClusterName, MeshName, NameError, NamespaceName, TenantId};
pub use pki::{CaBundle, PkiError, RootCa, issue_intermediate};
pub use plan::{
    ClusterInputs, DesiredObject, ManagedKind, NamespaceLabels, PlanError, PlannedChange,
    UpdateStrategy, install_plan, managed_kinds, reader_access, remote_secret,
    remote_secret_targets, render_remote_kubeconfig,
};
pub use spec::{
    DriftPolicy, MemberSpec, MeshConfig, MeshSpec, OutboundTrafficPolicy, Replicas, SpecError,
    SpecErrorKind,
};
