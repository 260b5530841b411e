//! The vocabulary of a plan: objects to apply, namespace label patches, and the stage each
//! belongs to.
//!
//! Inputs: names and JSON bodies built by the sibling modules. Outputs: [`DesiredObject`] (a full
//! Kubernetes object owned by mesh-manager, for server-side apply) and [`NamespaceLabels`] (a
//! label patch on a namespace mesh-manager does not own), wrapped in [`PlannedChange`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::names::{MeshName, NamespaceName};

/// Label every object mesh-manager writes carries (`app.kubernetes.io/managed-by`).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "mesh-manager";
/// Label naming the mesh an object belongs to.
pub const MESH_LABEL: &str = "mesh-manager.io/mesh";
/// Label mesh-manager sets on namespaces it enabled injection for, naming the mesh, so cleanup
/// finds them without owning (and so without deleting) the namespaces.
pub const INJECTION_MESH_LABEL: &str = "mesh-manager.io/injection-mesh";
/// Field manager for server-side apply.
pub const FIELD_MANAGER: &str = "mesh-manager";

/// The labels every managed object carries, as a label selector (`k=v,k=v`) for cleanup sweeps.
pub fn managed_selector(mesh: &MeshName) -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{MESH_LABEL}={mesh}")
}

/// A Kubernetes object a cluster must hold, owned by mesh-manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredObject {
    /// `apiVersion` (`v1`, `apps/v1`, `sailoperator.io/v1`, ...).
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// The namespace, `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// The full object, including `apiVersion`, `kind` and `metadata`, ready for server-side apply.
    pub body: Value,
}

impl DesiredObject {
    /// A new object with the managed-by and mesh labels and nothing else.
    pub(crate) fn new(
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        mesh: &MeshName,
    ) -> Self {
        let mut metadata = json!({
            "name": name,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, MESH_LABEL: mesh.as_str()},
        });
        if let Some(namespace) = namespace {
            metadata["namespace"] = json!(namespace);
        }
        Self {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
            body: json!({"apiVersion": api_version, "kind": kind, "metadata": metadata}),
        }
    }

    /// Sets a top-level field (`spec`, `data`, `type`, `rules`, ...).
    pub(crate) fn with(mut self, field: &str, value: Value) -> Self {
        self.body[field] = value;
        self
    }

    /// Adds a label.
    pub(crate) fn with_label(mut self, key: &str, value: &str) -> Self {
        self.body["metadata"]["labels"][key] = json!(value);
        self
    }

    /// Adds labels.
    pub(crate) fn with_labels(self, labels: &[(&str, &str)]) -> Self {
        labels
            .iter()
            .fold(self, |object, (key, value)| object.with_label(key, value))
    }

    /// Adds an annotation.
    pub(crate) fn with_annotation(mut self, key: &str, value: &str) -> Self {
        self.body["metadata"]["annotations"][key] = json!(value);
        self
    }

    /// The value of a label, if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.body["metadata"]["labels"][key].as_str()
    }

    /// The value of an annotation, if set.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.body["metadata"]["annotations"][key].as_str()
    }

    /// `namespace/name` or `name`, with the kind: for logs and events.
    pub fn display_name(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{} {namespace}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// A label change on a namespace mesh-manager does not own (an application namespace): applied as
/// a JSON merge patch so no other field and no other label is touched. A `None` value removes the
/// label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceLabels {
    /// The namespace to patch.
    pub namespace: NamespaceName,
    /// Label values to set (`Some`) or remove (`None`).
    pub labels: BTreeMap<String, Option<String>>,
}

impl NamespaceLabels {
    /// The JSON merge patch (`{"metadata":{"labels":{...}}}`, `null` removes).
    pub fn merge_patch(&self) -> Value {
        let labels: Map<String, Value> = self
            .labels
            .iter()
            .map(|(key, value)| {
                (
                    key.clone(),
                    value.as_deref().map_or(Value::Null, Value::from),
                )
            })
            .collect();
        json!({"metadata": {"labels": labels}})
    }
}

/// When in an install a change is applied, and what the applier waits for before the next stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// `istio-system` and the plug-in CA `cacerts`: must exist before istiod first starts, or
    /// istiod generates a self-signed CA of its own.
    Trust,
    /// The Sail `Istio` resource. Wait for its `Ready` condition before going on: the east-west
    /// gateway's pods need the injection webhook, and Istio objects need the Istio CRDs.
    ControlPlane,
    /// The east-west gateway (service account, deployment, load-balancer service). Wait for the
    /// service's load-balancer address when other clusters need it.
    EastWestGateway,
    /// Istio configuration: the cross-network and istiod gateways, istiod's virtual service, the
    /// mesh-wide `Telemetry`.
    MeshConfig,
    /// Sidecar injection labels on application namespaces.
    Injection,
}

/// One step of an install plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PlannedChange {
    /// An object mesh-manager owns: server-side apply it with [`FIELD_MANAGER`]; delete it on
    /// uninstall (it carries [`MANAGED_BY_LABEL`] and [`MESH_LABEL`]).
    Object(DesiredObject),
    /// Labels on a namespace mesh-manager does not own: merge-patch them; on uninstall remove them
    /// (see [`super::injection_removal`]), never delete the namespace.
    NamespaceLabels(NamespaceLabels),
}

impl PlannedChange {
    /// The stage this change belongs to.
    pub fn stage(&self) -> Stage {
        match self {
            Self::NamespaceLabels(_) => Stage::Injection,
            Self::Object(object) => match object.kind.as_str() {
                "Namespace" | "Secret" => Stage::Trust,
                "Istio" => Stage::ControlPlane,
                "ServiceAccount" | "Deployment" | "Service" => Stage::EastWestGateway,
                _ => Stage::MeshConfig,
            },
        }
    }

    /// The object, when this change is one.
    pub fn as_object(&self) -> Option<&DesiredObject> {
        match self {
            Self::Object(object) => Some(object),
            Self::NamespaceLabels(_) => None,
        }
    }
}

/// Something the plan may create, for cleanup sweeps: list it by [`managed_selector`] and delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ManagedKind {
    /// `apiVersion`.
    pub api_version: &'static str,
    /// `kind`.
    pub kind: &'static str,
    /// The resource's plural name in URLs.
    pub plural: &'static str,
    /// Whether objects of this kind live in a namespace.
    pub namespaced: bool,
}

/// Every kind the plans can create, in a safe deletion order: Istio configuration first, then the
/// gateway, the control plane, access and secrets, and `istio-system` last.
pub fn managed_kinds() -> Vec<ManagedKind> {
    let kind = |api_version, kind, plural, namespaced| ManagedKind {
        api_version,
        kind,
        plural,
        namespaced,
    };
    vec![
        kind("telemetry.istio.io/v1", "Telemetry", "telemetries", true),
        kind(
            "networking.istio.io/v1",
            "VirtualService",
            "virtualservices",
            true,
        ),
        kind("networking.istio.io/v1", "Gateway", "gateways", true),
        // Tenants' Istio resources mesh-manager carries (service governance).
        kind(
            "networking.istio.io/v1",
            "DestinationRule",
            "destinationrules",
            true,
        ),
        kind(
            "networking.istio.io/v1",
            "ServiceEntry",
            "serviceentries",
            true,
        ),
        kind("networking.istio.io/v1", "Sidecar", "sidecars", true),
        kind(
            "networking.istio.io/v1alpha3",
            "EnvoyFilter",
            "envoyfilters",
            true,
        ),
        kind(
            "networking.istio.io/v1",
            "WorkloadEntry",
            "workloadentries",
            true,
        ),
        kind("v1", "Service", "services", true),
        kind("apps/v1", "Deployment", "deployments", true),
        kind("v1", "ServiceAccount", "serviceaccounts", true),
        kind("sailoperator.io/v1", "Istio", "istios", false),
        kind(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
        ),
        kind(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            "clusterroles",
            false,
        ),
        kind("v1", "Secret", "secrets", true),
        kind("v1", "Namespace", "namespaces", false),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh() -> MeshName {
        MeshName::new("demo").expect("valid")
    }

    #[test]
    fn new_objects_carry_the_managed_labels_in_their_body() {
        let object = DesiredObject::new("v1", "ConfigMap", Some("ns"), "cm", &mesh())
            .with_label("extra", "1")
            .with_annotation("note", "x")
            .with("data", json!({"k": "v"}));
        assert_eq!(object.label(MANAGED_BY_LABEL), Some(MANAGED_BY_VALUE));
        assert_eq!(object.label(MESH_LABEL), Some("demo"));
        assert_eq!(object.label("extra"), Some("1"));
        assert_eq!(object.annotation("note"), Some("x"));
        assert_eq!(object.body["apiVersion"], "v1");
        assert_eq!(object.body["kind"], "ConfigMap");
        assert_eq!(object.body["metadata"]["namespace"], "ns");
        assert_eq!(object.body["metadata"]["name"], "cm");
        assert_eq!(object.display_name(), "ConfigMap ns/cm");
    }

    #[test]
    fn cluster_scoped_objects_have_no_namespace_anywhere() {
        let object = DesiredObject::new("v1", "Namespace", None, "istio-system", &mesh());
        assert_eq!(object.namespace, None);
        assert!(object.body["metadata"].get("namespace").is_none());
        assert_eq!(object.display_name(), "Namespace istio-system");
    }

    #[test]
    fn namespace_label_patches_remove_with_null() {
        let patch = NamespaceLabels {
            namespace: NamespaceName::new("shop").expect("valid"),
            labels: BTreeMap::from([
                ("istio-injection".to_owned(), Some("enabled".to_owned())),
                ("istio.io/rev".to_owned(), None),
            ]),
        };
        assert_eq!(
            patch.merge_patch(),
            json!({"metadata": {"labels": {"istio-injection": "enabled", "istio.io/rev": null}}})
        );
    }

    #[test]
    fn selector_names_both_managed_labels() {
        assert_eq!(
            managed_selector(&mesh()),
            "app.kubernetes.io/managed-by=mesh-manager,mesh-manager.io/mesh=demo"
        );
    }

    #[test]
    fn managed_kinds_end_with_the_namespace() {
        let kinds = managed_kinds();
        assert_eq!(kinds.last().map(|k| k.kind), Some("Namespace"));
        assert_eq!(kinds.first().map(|k| k.kind), Some("Telemetry"));
        let istio = kinds.iter().find(|k| k.kind == "Istio").expect("listed");
        assert!(!istio.namespaced);
    }
}
