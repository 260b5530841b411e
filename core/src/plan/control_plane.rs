//! The control-plane part of a cluster's plan: `istio-system`, the plug-in CA, the Sail `Istio`
//! resource, the mesh-wide `Telemetry` and the injection labels of application namespaces.
//!
//! Inputs: the validated [`MeshSpec`], the member being planned, its [`ClusterInputs`] (CA bundle,
//! primary address, update strategy). Outputs: [`DesiredObject`]s and [`NamespaceLabels`].
//!
//! Istio facts encoded here (Sail Operator `sailoperator.io/v1` schema, Istio multi-cluster
//! guides):
//! - every cluster: `spec.values.global.{meshID, multiCluster.clusterName, network}`;
//! - the primary of a primary-remote mesh: `spec.values.global.externalIstiod: true`, so its istiod
//!   also serves the remotes;
//! - a remote: `spec.profile: remote`, `spec.values.global.remotePilotAddress` (the primary's
//!   east-west gateway) and `spec.values.istiodRemote.injectionPath`
//!   (`/inject/cluster/<cluster>/net/<network>`), no istiod of its own;
//! - istiod replicas are pinned with `pilot.autoscaleEnabled: false` and `pilot.replicaCount`
//!   (with autoscaling on, the chart leaves the count to the autoscaler).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::object::{DesiredObject, INJECTION_MESH_LABEL, NamespaceLabels};
use super::{ClusterInputs, UpdateStrategy};
use crate::catalog::IstioVersion;
use crate::names::{MeshName, NamespaceName};
use crate::pki::CaBundle;
use crate::spec::{ISTIO_NAMESPACE, MemberSpec, MeshSpec};

/// Label naming a cluster's network, on `istio-system` and on the east-west gateway.
pub const NETWORK_LABEL: &str = "topology.istio.io/network";
/// Annotation on a remote's `istio-system` naming the cluster running its control plane.
pub const CONTROL_PLANE_CLUSTERS_ANNOTATION: &str = "topology.istio.io/controlPlaneClusters";
/// Name of the plug-in CA Secret istiod reads.
pub const CACERTS_SECRET: &str = "cacerts";
/// Name of the Sail `Istio` resource (cluster-scoped).
pub const ISTIO_RESOURCE: &str = "default";
/// Name of the mesh-wide `Telemetry`.
pub const TELEMETRY_NAME: &str = "mesh-default";
/// Namespace label enabling injection by the default revision.
pub const INJECTION_LABEL: &str = "istio-injection";
/// Namespace or pod label selecting a revision.
pub const REVISION_LABEL: &str = "istio.io/rev";

/// What the control plane of a remote points at.
pub(crate) struct RemoteControlPlane<'a> {
    /// The primary running the remote's istiod.
    pub primary: &'a MemberSpec,
    /// The primary's east-west gateway address (IP or host name).
    pub address: &'a str,
}

/// `istio-system`, labelled with the member's network; a remote's also names its primary.
pub(crate) fn istio_namespace(
    mesh: &MeshName,
    member: &MemberSpec,
    remote: Option<&RemoteControlPlane<'_>>,
) -> DesiredObject {
    let namespace = DesiredObject::new("v1", "Namespace", None, ISTIO_NAMESPACE, mesh)
        .with_label(NETWORK_LABEL, member.network_name());
    match remote {
        Some(remote) => namespace.with_annotation(
            CONTROL_PLANE_CLUSTERS_ANNOTATION,
            remote.primary.name.as_str(),
        ),
        None => namespace,
    }
}

/// Secret `cacerts`: the cluster's intermediate CA for istiod's plug-in CA.
pub(crate) fn cacerts_secret(mesh: &MeshName, bundle: &CaBundle) -> DesiredObject {
    let data = json!({
        "ca-cert.pem": STANDARD.encode(&bundle.ca_cert),
        "ca-key.pem": STANDARD.encode(&bundle.ca_key),
        "root-cert.pem": STANDARD.encode(&bundle.root_cert),
        "cert-chain.pem": STANDARD.encode(&bundle.cert_chain),
    });
    DesiredObject::new("v1", "Secret", Some(ISTIO_NAMESPACE), CACERTS_SECRET, mesh)
        .with("type", json!("Opaque"))
        .with("data", data)
}

/// The sidecar injector path istiod serves for a remote cluster's webhook.
pub fn injection_path(member: &MemberSpec) -> String {
    format!(
        "/inject/cluster/{}/net/{}",
        member.name,
        member.network_name()
    )
}

/// The Sail `Istio` resource of a member.
pub(crate) fn istio_resource(
    spec: &MeshSpec,
    member: &MemberSpec,
    version: &IstioVersion,
    inputs: &ClusterInputs,
    remote: Option<&RemoteControlPlane<'_>>,
) -> DesiredObject {
    let config = &spec.config;
    let mut values = json!({
        "global": {
            "meshID": spec.name.as_str(),
            "multiCluster": {"clusterName": member.name.as_str()},
            "network": member.network_name(),
        },
        // Trace sampling is not set here: the mesh-wide `Telemetry` carries it, so a change of
        // sampling reaches the proxies at once and touches the mesh configuration only, never the
        // control plane.
        "meshConfig": {
            "outboundTrafficPolicy": {"mode": config.outbound_traffic_policy.as_str()},
        },
    });
    let mut istio_spec = json!({
        "version": format!("v{version}"),
        "namespace": ISTIO_NAMESPACE,
        "updateStrategy": {"type": inputs.update_strategy.as_str()},
    });
    match remote {
        Some(remote) => {
            istio_spec["profile"] = json!("remote");
            values["global"]["remotePilotAddress"] = json!(remote.address);
            values["istiodRemote"] = json!({"injectionPath": injection_path(member)});
        }
        None => {
            values["pilot"] = json!({
                "autoscaleEnabled": false,
                "replicaCount": config.replicas.istiod,
            });
            if spec.mode == crate::mode::MeshMode::PrimaryRemote {
                values["global"]["externalIstiod"] = json!(true);
            }
        }
    }
    istio_spec["values"] = values;
    DesiredObject::new(
        "sailoperator.io/v1",
        "Istio",
        None,
        ISTIO_RESOURCE,
        &spec.name,
    )
    .with("spec", istio_spec)
}

/// The mesh-wide `Telemetry` in the root namespace, carrying the trace sampling percentage.
pub(crate) fn telemetry(spec: &MeshSpec) -> DesiredObject {
    DesiredObject::new(
        "telemetry.istio.io/v1",
        "Telemetry",
        Some(ISTIO_NAMESPACE),
        TELEMETRY_NAME,
        &spec.name,
    )
    .with(
        "spec",
        json!({"tracing": [{"randomSamplingPercentage": spec.config.trace_sampling}]}),
    )
}

/// The labels that turn injection on for `namespace`: `istio-injection=enabled` for the default
/// revision (in-place upgrades), `istio.io/rev=<revision>` for a revision-based install (the two
/// labels must not be combined, so the other one is removed).
pub fn injection_labels(
    mesh: &MeshName,
    namespace: NamespaceName,
    strategy: UpdateStrategy,
    revision: &str,
) -> NamespaceLabels {
    let enabled = |v: &str| Some(v.to_owned());
    let (injection, rev) = match strategy {
        UpdateStrategy::InPlace => (enabled("enabled"), None),
        UpdateStrategy::RevisionBased => (None, enabled(revision)),
    };
    NamespaceLabels {
        namespace,
        labels: BTreeMap::from([
            (INJECTION_LABEL.to_owned(), injection),
            (REVISION_LABEL.to_owned(), rev),
            (INJECTION_MESH_LABEL.to_owned(), enabled(mesh.as_str())),
        ]),
    }
}

/// The patch that turns injection off again and forgets the mesh (a namespace removed from the
/// auto-injection list, or the mesh deleted).
pub fn injection_removal(namespace: NamespaceName) -> NamespaceLabels {
    let labels = [INJECTION_LABEL, REVISION_LABEL, INJECTION_MESH_LABEL]
        .into_iter()
        .map(|key| (key.to_owned(), None))
        .collect();
    NamespaceLabels { namespace, labels }
}
