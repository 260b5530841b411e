//! Cross-cluster discovery: who holds whose remote secret, the least-privilege reader those
//! secrets authenticate as, and the kubeconfig inside them.
//!
//! Inputs: the mesh spec; for a secret, the source cluster's API server address, CA and the
//! reader's token (read by the caller from the token Secret). Outputs: [`DesiredObject`]s and the
//! kubeconfig text.
//!
//! istiod on a primary watches every Secret in `istio-system` labelled `istio/multiCluster=true`;
//! each data key is a cluster name and its value a kubeconfig for that cluster. The reader's
//! ClusterRole mirrors Istio's own `istio-reader-clusterrole` (what istiod reads for endpoint
//! discovery), with two deliberate differences: MCS `serviceexports` are read-only (istiod only
//! writes them when MCS auto-export is on, which mesh-manager does not use), and the write rules
//! Istio adds when a cluster's control plane is external (`configmaps`, webhook configurations)
//! are granted only for a remote of a primary-remote mesh, whose istiod lives elsewhere.

use serde::Serialize;
use serde_json::{Value, json};

use super::PlanError;
use super::object::DesiredObject;
use crate::mode::{ClusterRole, MeshMode};
use crate::names::{ClusterName, MeshName};
use crate::spec::{ISTIO_NAMESPACE, MeshSpec};

/// Label istiod selects remote secrets by.
pub const MULTI_CLUSTER_LABEL: &str = "istio/multiCluster";
/// Annotation naming the cluster a remote secret gives access to.
pub const CLUSTER_ANNOTATION: &str = "networking.istio.io/cluster";
/// Name of the reader service account, its ClusterRole and ClusterRoleBinding.
pub const READER_NAME: &str = "istio-reader-mesh-manager";
/// Name of the reader's long-lived token Secret.
pub const READER_TOKEN_SECRET: &str = "istio-reader-mesh-manager-token";

/// Name of the remote secret giving access to `source`.
pub fn remote_secret_name(source: &ClusterName) -> String {
    format!("istio-remote-secret-{source}")
}

/// Secret `istio-remote-secret-<source>` in `istio-system`: the kubeconfig istiod uses to watch
/// `source`. Put it in the cluster holding it (see [`remote_secret_targets`]).
pub fn remote_secret(
    mesh: &MeshName,
    source: &ClusterName,
    kubeconfig_yaml: &str,
) -> DesiredObject {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(kubeconfig_yaml);
    DesiredObject::new(
        "v1",
        "Secret",
        Some(ISTIO_NAMESPACE),
        &remote_secret_name(source),
        mesh,
    )
    .with_label(MULTI_CLUSTER_LABEL, "true")
    .with_annotation(CLUSTER_ANNOTATION, source.as_str())
    .with("type", json!("Opaque"))
    .with("data", json!({ source.as_str(): encoded }))
}

/// Every remote secret the mesh needs, as `(holder, source)`: the holder's istiod watches the
/// source. Multi-primary: every primary holds one for every other member. Primary-remote: the
/// primary holds one for each remote. Single: none.
pub fn remote_secret_targets(spec: &MeshSpec) -> Vec<(ClusterName, ClusterName)> {
    match spec.mode {
        MeshMode::Single => Vec::new(),
        MeshMode::MultiPrimary => spec
            .primaries()
            .into_iter()
            .flat_map(|holder| {
                spec.clusters
                    .iter()
                    .filter(move |source| source.name != holder.name)
                    .map(move |source| (holder.name.clone(), source.name.clone()))
            })
            .collect(),
        MeshMode::PrimaryRemote => spec
            .remotes()
            .into_iter()
            .filter_map(|remote| {
                let primary = spec.primary_of(&remote.name)?;
                Some((primary.name.clone(), remote.name.clone()))
            })
            .collect(),
    }
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

const READ: [&str; 3] = ["get", "list", "watch"];

/// The reader's ClusterRole rules (see the module docs for how they relate to Istio's).
fn reader_rules(source_role: ClusterRole) -> Vec<Value> {
    let istio_groups = [
        "config.istio.io",
        "security.istio.io",
        "networking.istio.io",
        "authentication.istio.io",
        "rbac.istio.io",
        "telemetry.istio.io",
        "extensions.istio.io",
    ];
    let core = [
        "endpoints",
        "pods",
        "services",
        "nodes",
        "replicationcontrollers",
        "namespaces",
        "secrets",
        "configmaps",
    ];
    let mut rules = vec![
        rule(&istio_groups, &["*"], &READ),
        rule(&[""], &core, &READ),
        rule(
            &["networking.x-k8s.io", "gateway.networking.k8s.io"],
            &["gateways"],
            &READ,
        ),
        rule(
            &["apiextensions.k8s.io"],
            &["customresourcedefinitions"],
            &READ,
        ),
        rule(&["discovery.k8s.io"], &["endpointslices"], &READ),
        rule(
            &["multicluster.x-k8s.io"],
            &["serviceexports", "serviceimports"],
            &READ,
        ),
        rule(&["apps"], &["replicasets"], &READ),
        rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
        rule(
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
            &["create"],
        ),
    ];
    if source_role == ClusterRole::Remote {
        // The primary's istiod writes the root-cert ConfigMaps and patches the webhooks here.
        let webhooks = "admissionregistration.k8s.io";
        rules.extend([
            rule(
                &[""],
                &["configmaps"],
                &["create", "get", "list", "watch", "update"],
            ),
            rule(
                &[webhooks],
                &["mutatingwebhookconfigurations"],
                &["get", "list", "watch", "update", "patch"],
            ),
            rule(
                &[webhooks],
                &["validatingwebhookconfigurations"],
                &["get", "list", "watch", "update"],
            ),
        ]);
    }
    rules
}

/// The least-privilege reader in a source cluster, in apply order: ServiceAccount, ClusterRole,
/// ClusterRoleBinding and a `kubernetes.io/service-account-token` Secret whose `data.token` the
/// control plane fills in (read it back, then call [`render_remote_kubeconfig`]). `source_role`
/// is the role of the cluster the reader lives in.
pub fn reader_access(mesh: &MeshName, source_role: ClusterRole) -> Vec<DesiredObject> {
    let rbac = "rbac.authorization.k8s.io/v1";
    vec![
        DesiredObject::new(
            "v1",
            "ServiceAccount",
            Some(ISTIO_NAMESPACE),
            READER_NAME,
            mesh,
        ),
        DesiredObject::new(rbac, "ClusterRole", None, READER_NAME, mesh)
            .with("rules", json!(reader_rules(source_role))),
        DesiredObject::new(rbac, "ClusterRoleBinding", None, READER_NAME, mesh)
            .with(
                "roleRef",
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": READER_NAME}),
            )
            .with(
                "subjects",
                json!([{"kind": "ServiceAccount", "name": READER_NAME, "namespace": ISTIO_NAMESPACE}]),
            ),
        DesiredObject::new(
            "v1",
            "Secret",
            Some(ISTIO_NAMESPACE),
            READER_TOKEN_SECRET,
            mesh,
        )
        .with_annotation("kubernetes.io/service-account.name", READER_NAME)
        .with("type", json!("kubernetes.io/service-account-token")),
    ]
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    clusters: [Named<'a, ClusterEntry<'a>>; 1],
    contexts: [Named<'a, ContextEntry<'a>>; 1],
    current_context: &'a str,
    users: [Named<'a, UserEntry<'a>>; 1],
}

#[derive(Serialize)]
struct Named<'a, T> {
    name: &'a str,
    #[serde(flatten)]
    entry: T,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterEntry<'a> {
    cluster: ClusterFields<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterFields<'a> {
    server: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_authority_data: Option<&'a str>,
}

#[derive(Serialize)]
struct ContextEntry<'a> {
    context: ContextFields<'a>,
}

#[derive(Serialize)]
struct ContextFields<'a> {
    cluster: &'a str,
    user: &'a str,
}

#[derive(Serialize)]
struct UserEntry<'a> {
    user: UserFields<'a>,
}

#[derive(Serialize)]
struct UserFields<'a> {
    token: &'a str,
}

/// A kubeconfig reaching `server` as the reader with a bearer token: one cluster, one user and one
/// context, all named after the cluster. It never contains exec, auth-provider or file-path
/// credentials; without `ca_data_base64` the server is verified against the system roots.
pub fn render_remote_kubeconfig(
    cluster_name: &ClusterName,
    server: &str,
    ca_data_base64: Option<&str>,
    token: &str,
) -> Result<String, PlanError> {
    let refuse = |reason: &str| PlanError::Kubeconfig {
        cluster: cluster_name.clone(),
        reason: reason.to_owned(),
    };
    if !(server.starts_with("https://") || server.starts_with("http://")) {
        return Err(refuse("the server address must be an http(s) URL"));
    }
    if server.chars().any(char::is_whitespace) {
        return Err(refuse("the server address must not contain whitespace"));
    }
    let token = token.trim();
    if token.is_empty() || token.chars().any(char::is_whitespace) {
        return Err(refuse("the token must be non-empty and free of whitespace"));
    }
    let ca = ca_data_base64.map(str::trim).filter(|ca| !ca.is_empty());
    if ca.is_some_and(|ca| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(ca)
            .is_err()
    }) {
        return Err(refuse("the certificate authority data is not base64"));
    }
    let name = cluster_name.as_str();
    let config = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: [Named {
            name,
            entry: ClusterEntry {
                cluster: ClusterFields {
                    server,
                    certificate_authority_data: ca,
                },
            },
        }],
        contexts: [Named {
            name,
            entry: ContextEntry {
                context: ContextFields {
                    cluster: name,
                    user: name,
                },
            },
        }],
        current_context: name,
        users: [Named {
            name,
            entry: UserEntry {
                user: UserFields { token },
            },
        }],
    };
    serde_yaml::to_string(&config).map_err(|e| refuse(&e.to_string()))
}
