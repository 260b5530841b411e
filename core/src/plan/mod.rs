//! Install plans: the Kubernetes objects each member cluster of a mesh must hold.
//!
//! This is the "plan" stage of observe → validate → plan → apply → record: pure functions from a
//! validated [`MeshSpec`] (plus what only the cluster or the CA can tell: [`ClusterInputs`]) to
//! the objects to apply. The `clusters` crate applies them (server-side apply, field manager
//! [`FIELD_MANAGER`]) and the actors sequence them.
//!
//! # Outputs
//! - [`install_plan`]: a member's changes in apply order, each a [`PlannedChange`]: either an
//!   [`DesiredObject`] mesh-manager owns, or [`NamespaceLabels`] for application namespaces it
//!   does not own (a merge patch, never a delete). [`PlannedChange::stage`] groups them and says
//!   what to wait for between groups (see [`Stage`]).
//! - [`remote_secret_targets`], [`remote_secret`], [`reader_access`], [`render_remote_kubeconfig`]:
//!   cross-cluster discovery (who holds whose kubeconfig, and the reader it authenticates as).
//! - [`changed_stages`]: which stages a configuration change touches, so a reconfiguration
//!   re-applies those and nothing else.
//! - [`managed_kinds`] and [`managed_selector`]: what a cleanup sweep lists and deletes. Every
//!   object carries [`MANAGED_BY_LABEL`]` = `[`MANAGED_BY_VALUE`] and [`MESH_LABEL`]` = <mesh>`.
//!
//! # What a member gets
//! | object | who |
//! | --- | --- |
//! | Namespace `istio-system` (network label; controlPlaneClusters annotation on remotes) | all |
//! | Secret `cacerts` (intermediate CA) | all |
//! | Sail `Istio` `default` | all (`profile: remote` on remotes) |
//! | east-west gateway: ServiceAccount, Deployment, Service | [`MeshSpec::needs_east_west_gateway`] |
//! | Gateway `cross-network-gateway` | with a gateway, in a multi-network mesh |
//! | Gateway `istiod-gateway`, VirtualService `istiod-vs` | the primary of a primary-remote mesh |
//! | Telemetry `mesh-default` | primaries (the clusters holding mesh config) |
//! | injection labels on configured namespaces | all |

mod control_plane;
mod gateway;
mod object;
mod remote;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

pub use control_plane::{
    CACERTS_SECRET, CONTROL_PLANE_CLUSTERS_ANNOTATION, INJECTION_LABEL, ISTIO_RESOURCE,
    NETWORK_LABEL, REVISION_LABEL, TELEMETRY_NAME, injection_labels, injection_path,
    injection_removal,
};
pub use gateway::{
    CROSS_NETWORK_GATEWAY, EAST_WEST_GATEWAY, EAST_WEST_SERVICE_ACCOUNT, ISTIOD_GATEWAY,
    ISTIOD_VIRTUAL_SERVICE,
};
pub use object::{
    DesiredObject, FIELD_MANAGER, INJECTION_MESH_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
    MESH_LABEL, ManagedKind, NamespaceLabels, PlannedChange, Stage, managed_kinds,
    managed_selector,
};
pub use remote::{
    CLUSTER_ANNOTATION, MULTI_CLUSTER_LABEL, READER_NAME, READER_TOKEN_SECRET, reader_access,
    remote_secret, remote_secret_name, remote_secret_targets, render_remote_kubeconfig,
};

use crate::catalog::{CatalogError, IstioVersion};
use crate::mode::MeshMode;
use crate::names::{ClusterName, MeshName};
use crate::pki::CaBundle;
use crate::spec::{MemberSpec, MeshConfig, MeshSpec, Replicas};
use control_plane::RemoteControlPlane;

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The cluster is not a member of the mesh.
    #[error("cannot plan cluster {cluster}: it is not a member of mesh {mesh}")]
    NotAMember {
        /// The mesh.
        mesh: MeshName,
        /// The cluster asked about.
        cluster: ClusterName,
    },
    /// A remote cluster whose mesh has no single primary to serve it (an invalid spec).
    #[error("cannot plan remote cluster {cluster}: mesh {mesh} has no primary to serve it")]
    NoPrimary {
        /// The mesh.
        mesh: MeshName,
        /// The remote cluster.
        cluster: ClusterName,
    },
    /// A remote cluster planned before its primary's east-west gateway has an address.
    #[error(
        "cannot plan remote cluster {cluster} of mesh {mesh}: the primary's east-west gateway \
         address is not known yet"
    )]
    MissingPrimaryAddress {
        /// The mesh.
        mesh: MeshName,
        /// The remote cluster.
        cluster: ClusterName,
    },
    /// The primary's east-west gateway address is not a bare host name or IP address.
    #[error(
        "cannot plan remote cluster {cluster} of mesh {mesh}: invalid east-west gateway address \
         {address:?} (expected a host name or IP address without scheme, port or path)"
    )]
    InvalidPrimaryAddress {
        /// The mesh.
        mesh: MeshName,
        /// The remote cluster.
        cluster: ClusterName,
        /// The address given.
        address: String,
    },
    /// The spec's version does not parse.
    #[error("cannot plan mesh {mesh}: invalid Istio version")]
    Version {
        /// The mesh.
        mesh: MeshName,
        /// What the parser said.
        source: CatalogError,
    },
    /// A kubeconfig could not be rendered.
    #[error("failed to render the kubeconfig for cluster {cluster}: {reason}")]
    Kubeconfig {
        /// The cluster the kubeconfig reaches.
        cluster: ClusterName,
        /// What is wrong.
        reason: String,
    },
}

/// How Sail moves a cluster to a new version (`spec.updateStrategy.type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UpdateStrategy {
    /// Upgrade the one control plane in place (one minor version at a time).
    #[default]
    InPlace,
    /// Run a new revision beside the old one (canary); namespaces move by `istio.io/rev`.
    RevisionBased,
}

impl UpdateStrategy {
    /// The Sail wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InPlace => "InPlace",
            Self::RevisionBased => "RevisionBased",
        }
    }

    /// The name of the `IstioRevision` Sail makes active for `version`, as the Sail operator
    /// derives it: the `Istio` resource's name (`default`) in place, or that name plus the version
    /// with dots as dashes (`default-v1-30-3`) revision-based.
    pub fn revision_name(self, version: &IstioVersion) -> String {
        match self {
            Self::InPlace => ISTIO_RESOURCE.to_owned(),
            Self::RevisionBased => format!("{ISTIO_RESOURCE}-v{}", version.revision_name()),
        }
    }
}

/// The istiod Service of a revision: `istiod` for `default`, else `istiod-<revision>`.
pub fn istiod_service(revision: &str) -> String {
    if revision == ISTIO_RESOURCE {
        "istiod".to_owned()
    } else {
        format!("istiod-{revision}")
    }
}

/// What a member's plan needs beyond the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInputs {
    /// The member's plug-in CA (issued by [`crate::pki::issue_intermediate`]); `None` leaves
    /// the `cacerts` Secret (the only object of [`Stage::Trust`] that needs it) out of the plan,
    /// for applying later stages without reading the CA.
    pub cacerts: Option<CaBundle>,
    /// The load-balancer address (IP or host name) of the primary's east-west gateway; required
    /// for a remote of a primary-remote mesh, ignored otherwise.
    pub primary_east_west_address: Option<String>,
    /// In-place (default) or revision-based (canary) control plane.
    pub update_strategy: UpdateStrategy,
}

impl ClusterInputs {
    /// Inputs for an in-place install with no primary address.
    pub fn new(cacerts: CaBundle) -> Self {
        Self {
            cacerts: Some(cacerts),
            ..Self::without_trust()
        }
    }

    /// Inputs for a plan without the `cacerts` Secret: for applying stages after
    /// [`Stage::Trust`] (a configuration change), which then need not read the CA.
    pub fn without_trust() -> Self {
        Self {
            cacerts: None,
            primary_east_west_address: None,
            update_strategy: UpdateStrategy::InPlace,
        }
    }

    /// The same inputs with the primary's east-west gateway address.
    pub fn with_primary_east_west_address(mut self, address: impl Into<String>) -> Self {
        self.primary_east_west_address = Some(address.into());
        self
    }

    /// The same inputs with another update strategy.
    pub fn with_update_strategy(mut self, strategy: UpdateStrategy) -> Self {
        self.update_strategy = strategy;
        self
    }
}

/// Whether `address` is a bare host name or IP address (what `remotePilotAddress` takes).
fn is_bare_address(address: &str) -> bool {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':');
    !address.is_empty()
        && address.len() <= 253
        && address.chars().all(valid)
        // A port would need a colon after a name or IPv4 address; IPv6 has several colons.
        && (address.matches(':').count() != 1)
}

/// Resolves what a remote of a primary-remote mesh points at; `None` for primaries.
fn remote_control_plane<'a>(
    spec: &'a MeshSpec,
    member: &MemberSpec,
    inputs: &'a ClusterInputs,
) -> Result<Option<RemoteControlPlane<'a>>, PlanError> {
    if member.is_primary() {
        return Ok(None);
    }
    let err_ids = || (spec.name.clone(), member.name.clone());
    let primary = spec.primary_of(&member.name).ok_or_else(|| {
        let (mesh, cluster) = err_ids();
        PlanError::NoPrimary { mesh, cluster }
    })?;
    let address = inputs
        .primary_east_west_address
        .as_deref()
        .map(str::trim)
        .ok_or_else(|| {
            let (mesh, cluster) = err_ids();
            PlanError::MissingPrimaryAddress { mesh, cluster }
        })?;
    if !is_bare_address(address) {
        let (mesh, cluster) = err_ids();
        return Err(PlanError::InvalidPrimaryAddress {
            mesh,
            cluster,
            address: address.chars().take(256).collect(),
        });
    }
    Ok(Some(RemoteControlPlane { primary, address }))
}

/// The stages whose objects differ between two configurations of a mesh: what a reconfiguration
/// re-applies, and nothing more. Trace sampling lives in the mesh-wide `Telemetry` (mesh
/// configuration); the outbound traffic policy and istiod's replicas in the Sail `Istio` (control
/// plane); the east-west gateway's replicas in its Deployment; injection namespaces in namespace
/// labels; the drift policy in mesh-manager alone. Every field is named here, so a new one does not
/// compile until it is placed.
pub fn changed_stages(old: &MeshConfig, new: &MeshConfig) -> BTreeSet<Stage> {
    let MeshConfig {
        outbound_traffic_policy,
        trace_sampling,
        auto_injection_namespaces,
        replicas: Replicas {
            istiod,
            eastwest_gateway,
        },
        drift_policy: _,
    } = new;
    let mut stages = BTreeSet::new();
    if old.trace_sampling.to_bits() != trace_sampling.to_bits() {
        stages.insert(Stage::MeshConfig);
    }
    if old.outbound_traffic_policy != *outbound_traffic_policy || old.replicas.istiod != *istiod {
        stages.insert(Stage::ControlPlane);
    }
    if old.replicas.eastwest_gateway != *eastwest_gateway {
        stages.insert(Stage::EastWestGateway);
    }
    if old.auto_injection_namespaces != *auto_injection_namespaces {
        stages.insert(Stage::Injection);
    }
    stages
}

/// The changes `cluster` needs to be a working member of the mesh, in apply order (ordered by
/// [`Stage`]). The spec should have passed [`MeshSpec::validate`]; the plan itself only refuses
/// what it cannot build.
pub fn install_plan(
    spec: &MeshSpec,
    cluster: &ClusterName,
    inputs: &ClusterInputs,
) -> Result<Vec<PlannedChange>, PlanError> {
    let member = spec.member(cluster).ok_or_else(|| PlanError::NotAMember {
        mesh: spec.name.clone(),
        cluster: cluster.clone(),
    })?;
    let version = spec.istio_version().map_err(|source| PlanError::Version {
        mesh: spec.name.clone(),
        source,
    })?;
    let remote = remote_control_plane(spec, member, inputs)?;
    let strategy = inputs.update_strategy;
    let revision = strategy.revision_name(&version);

    let mut objects = vec![control_plane::istio_namespace(
        &spec.name,
        member,
        remote.as_ref(),
    )];
    if let Some(cacerts) = &inputs.cacerts {
        objects.push(control_plane::cacerts_secret(&spec.name, cacerts));
    }
    objects.push(control_plane::istio_resource(
        spec,
        member,
        &version,
        inputs,
        remote.as_ref(),
    ));
    if spec.needs_east_west_gateway(cluster) {
        objects.extend(gateway::east_west_gateway(
            spec, member, strategy, &revision,
        ));
        if spec.is_multi_network() {
            objects.push(gateway::cross_network_gateway(spec));
        }
    }
    if spec.mode == MeshMode::PrimaryRemote && member.is_primary() {
        objects.extend(gateway::istiod_exposure(spec, &revision));
    }
    if member.is_primary() {
        objects.push(control_plane::telemetry(spec));
    }

    let labels = spec
        .injection_namespaces(cluster)
        .into_iter()
        .map(|namespace| injection_labels(&spec.name, namespace, strategy, &revision))
        .map(PlannedChange::NamespaceLabels);
    let mut changes: Vec<PlannedChange> = objects
        .into_iter()
        .map(PlannedChange::Object)
        .chain(labels)
        .collect();
    // Stable: keeps the order within a stage.
    changes.sort_by_key(PlannedChange::stage);
    Ok(changes)
}
