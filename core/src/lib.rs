//! mesh-core: the domain of mesh-manager, free of I/O.
//!
//! # Layout
//! - [`names`]: validated identifiers (tenant, mesh, cluster, namespace) used at every boundary.
//! - [`mode`]: deployment modes of a mesh and the roles of its member clusters.
//! - [`flow`]: life-cycle states of flows, tasks and commands.
//! - [`catalog`]: the catalog of installable Istio versions, built into the binary from the Sail
//!   Operator's version list and overridable by configuration.
//!
//! Nothing here touches the network, a database or a clock; the other crates bring the I/O.

pub mod catalog;
pub mod flow;
pub mod mode;
pub mod names;

pub use catalog::{CatalogError, IstioVersion, VersionCatalog};
pub use flow::{CommandStatus, FlowStatus, TaskStatus};
pub use mode::{ClusterRole, MeshMode};
pub use names::{ClusterName, MeshName, NameError, NamespaceName, TenantId};
