//! The resource types a simulated cluster serves, and their discovery documents.
//!
//! Inputs: the built-in kinds the product uses and `CustomResourceDefinition` objects (the Istio
//! and Sail CRDs shipped in `core/data/istio/crds/`, installed at start, plus any created through
//! the API). Outputs: lookups by (group, version, plural) for the HTTP layer and the JSON bodies
//! of `/api`, `/api/v1`, `/apis`, `/apis/{g}/{v}` and the aggregated (`apidiscovery.k8s.io/v2`)
//! form.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};

/// One served resource: a group/version/plural with its kind and scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, "" for the core group.
    pub group: String,
    /// Version served (one entry per served version).
    pub version: String,
    /// Plural resource name used in paths.
    pub plural: String,
    /// Singular name (lowercase kind).
    pub singular: String,
    /// Kind of the objects.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether a `/status` subresource exists (status is then ignored on the main endpoint).
    pub status_subresource: bool,
    /// Short names (`vs` for VirtualService).
    pub short_names: Vec<String>,
    /// Categories (`istio-io`, `all`, ...).
    pub categories: Vec<String>,
    /// Whether this version is the storage (preferred) version.
    pub preferred: bool,
}

impl ResourceType {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The identity of the stored objects, shared by all versions of a resource.
    pub fn group_resource(&self) -> GroupResource {
        GroupResource {
            group: self.group.clone(),
            plural: self.plural.clone(),
        }
    }

    fn verbs() -> Value {
        json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ])
    }

    fn discovery_entry(&self) -> Value {
        let mut v = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": Self::verbs(),
        });
        if !self.short_names.is_empty() {
            v["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            v["categories"] = json!(self.categories);
        }
        v
    }
}

/// Identity of stored objects across versions: (group, plural).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupResource {
    /// API group.
    pub group: String,
    /// Plural resource name.
    pub plural: String,
}

/// The resource types of one cluster. Cheap to clone (shares the built-in list).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: Vec<Arc<ResourceType>>,
}

/// A built-in kind: (group, version, plural, kind, namespaced, status subresource, short names).
type Builtin = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    bool,
    &'static [&'static str],
);

/// Built-in kinds.
const BUILTINS: &[Builtin] = &[
    ("", "v1", "namespaces", "Namespace", false, true, &["ns"]),
    ("", "v1", "secrets", "Secret", true, false, &[]),
    ("", "v1", "configmaps", "ConfigMap", true, false, &["cm"]),
    ("", "v1", "services", "Service", true, true, &["svc"]),
    (
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        true,
        false,
        &["sa"],
    ),
    ("", "v1", "pods", "Pod", true, true, &["po"]),
    ("", "v1", "endpoints", "Endpoints", true, false, &["ep"]),
    ("", "v1", "events", "Event", true, false, &["ev"]),
    ("", "v1", "nodes", "Node", false, true, &["no"]),
    (
        "apps",
        "v1",
        "deployments",
        "Deployment",
        true,
        true,
        &["deploy"],
    ),
    ("apps", "v1", "daemonsets", "DaemonSet", true, true, &["ds"]),
    (
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        true,
        true,
        &["rs"],
    ),
    (
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
        true,
        &["hpa"],
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        false,
        false,
        &[],
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        false,
        false,
        &[],
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        true,
        &["crd", "crds"],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        false,
        &[],
    ),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        false,
        &[],
    ),
    (
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
        false,
        &[],
    ),
    (
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
        true,
        &["pdb"],
    ),
];

/// The Istio and Sail CRDs shipped with the project, installed in every cluster at start.
const CRD_FILES: &[&str] = &[
    include_str!("../../core/data/istio/crds/istio-api-crds.gen.yaml"),
    include_str!("../../core/data/istio/crds/sailoperator.io_istios.yaml"),
    include_str!("../../core/data/istio/crds/sailoperator.io_istiorevisions.yaml"),
    include_str!("../../core/data/istio/crds/sailoperator.io_istiorevisiontags.yaml"),
    include_str!("../../core/data/istio/crds/sailoperator.io_istiocnis.yaml"),
];

/// The shipped CRD objects, parsed once per process and shared by every cluster.
pub fn shipped_crds() -> &'static [Arc<Value>] {
    static CRDS: OnceLock<Vec<Arc<Value>>> = OnceLock::new();
    CRDS.get_or_init(|| {
        let mut out = Vec::new();
        for file in CRD_FILES {
            for doc in serde_yaml::Deserializer::from_str(file) {
                let value: Value = match serde::Deserialize::deserialize(doc) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                if value.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition") {
                    out.push(Arc::new(value));
                }
            }
        }
        out
    })
}

fn builtin_types() -> &'static [Arc<ResourceType>] {
    static TYPES: OnceLock<Vec<Arc<ResourceType>>> = OnceLock::new();
    TYPES.get_or_init(|| {
        let mut out: Vec<Arc<ResourceType>> = BUILTINS
            .iter()
            .map(|(g, v, p, k, ns, st, short)| {
                Arc::new(ResourceType {
                    group: g.to_string(),
                    version: v.to_string(),
                    plural: p.to_string(),
                    singular: k.to_lowercase(),
                    kind: k.to_string(),
                    namespaced: *ns,
                    status_subresource: *st,
                    short_names: short.iter().map(|s| s.to_string()).collect(),
                    categories: Vec::new(),
                    preferred: true,
                })
            })
            .collect();
        for crd in shipped_crds() {
            out.extend(types_of_crd(crd).into_iter().map(Arc::new));
        }
        out
    })
}

/// The resource types a `CustomResourceDefinition` object declares (one per served version).
pub fn types_of_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Vec::new();
    }
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    spec["versions"]
        .as_array()
        .map(|versions| {
            versions
                .iter()
                .filter(|v| v["served"].as_bool().unwrap_or(true))
                .filter_map(|v| {
                    Some(ResourceType {
                        group: group.clone(),
                        version: v["name"].as_str()?.to_string(),
                        plural: plural.clone(),
                        singular: singular.clone(),
                        kind: kind.clone(),
                        namespaced,
                        status_subresource: v["subresources"].get("status").is_some(),
                        short_names: strs(&names["shortNames"]),
                        categories: strs(&names["categories"]),
                        preferred: v["storage"].as_bool().unwrap_or(false),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Registry {
    /// Built-in kinds plus the shipped Istio and Sail CRDs.
    pub fn with_builtins() -> Self {
        Registry {
            types: builtin_types().to_vec(),
        }
    }

    /// Add (or replace) the types a CRD declares.
    pub fn install_crd(&mut self, crd: &Value) {
        let new = types_of_crd(crd);
        if let Some(first) = new.first() {
            let (g, p) = (first.group.clone(), first.plural.clone());
            self.types.retain(|t| !(t.group == g && t.plural == p));
        }
        self.types.extend(new.into_iter().map(Arc::new));
    }

    /// Remove the types of a deleted CRD.
    pub fn remove_crd(&mut self, crd: &Value) {
        if let Some(first) = types_of_crd(crd).first() {
            let (g, p) = (first.group.clone(), first.plural.clone());
            self.types.retain(|t| !(t.group == g && t.plural == p));
        }
    }

    /// Look a resource up by group, version and plural.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// The preferred version of a (group, kind).
    pub fn find_kind(&self, group: &str, kind: &str) -> Option<Arc<ResourceType>> {
        let mut found = self
            .types
            .iter()
            .filter(|t| t.group == group && t.kind == kind);
        let first = found.next()?.clone();
        if first.preferred {
            return Some(first);
        }
        Some(found.find(|t| t.preferred).cloned().unwrap_or(first))
    }

    /// Every served type.
    pub fn all(&self) -> &[Arc<ResourceType>] {
        &self.types
    }

    /// Groups in a stable order (first-seen), each with its versions (preferred first).
    fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut order: Vec<String> = Vec::new();
        let mut versions: BTreeMap<String, Vec<(bool, String)>> = BTreeMap::new();
        for t in &self.types {
            if t.group.is_empty() {
                continue;
            }
            if !versions.contains_key(&t.group) {
                order.push(t.group.clone());
            }
            let vs = versions.entry(t.group.clone()).or_default();
            if !vs.iter().any(|(_, v)| v == &t.version) {
                vs.push((t.preferred, t.version.clone()));
            }
        }
        order
            .into_iter()
            .map(|g| {
                let mut vs = versions.remove(&g).unwrap_or_default();
                vs.sort_by_key(|(preferred, _)| !preferred);
                (g, vs.into_iter().map(|(_, v)| v).collect())
            })
            .collect()
    }

    /// Body of `GET /api`.
    pub fn core_versions() -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]
        })
    }

    /// Body of `GET /apis`.
    pub fn group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .into_iter()
            .map(|(g, vs)| {
                let versions: Vec<Value> = vs
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                    .collect();
                json!({
                    "name": g,
                    "versions": versions,
                    "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
                })
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// Body of `GET /apis/{group}`, if the group exists.
    pub fn group(&self, group: &str) -> Option<Value> {
        let list = self.group_list();
        list["groups"]
            .as_array()?
            .iter()
            .find(|g| g["name"] == group)
            .map(|g| {
                let mut g = g.clone();
                g["kind"] = json!("APIGroup");
                g["apiVersion"] = json!("v1");
                g
            })
    }

    /// Body of `GET /api/v1` or `GET /apis/{group}/{version}`, if served.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let mut resources = Vec::new();
        for t in self
            .types
            .iter()
            .filter(|t| t.group == group && t.version == version)
        {
            resources.push(t.discovery_entry());
            if t.status_subresource {
                resources.push(json!({
                    "name": format!("{}/status", t.plural),
                    "singularName": "",
                    "namespaced": t.namespaced,
                    "kind": t.kind,
                    "verbs": ["get", "patch", "update"],
                }));
            }
        }
        if resources.is_empty() {
            return None;
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": resources,
        }))
    }

    /// The aggregated discovery document (`apidiscovery.k8s.io/v2` `APIGroupDiscoveryList`) for
    /// the core group (`core = true`, path `/api`) or the named groups (`/apis`).
    pub fn aggregated(&self, core: bool) -> Value {
        let mut groups = Vec::new();
        let list: Vec<(String, Vec<String>)> = if core {
            vec![(String::new(), vec!["v1".to_string()])]
        } else {
            self.groups()
        };
        for (g, vs) in list {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = self
                        .types
                        .iter()
                        .filter(|t| t.group == g && &t.version == v)
                        .map(|t| {
                            let mut r = json!({
                                "resource": t.plural,
                                "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
                                "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": t.singular,
                                "verbs": ResourceType::verbs(),
                            });
                            if !t.short_names.is_empty() {
                                r["shortNames"] = json!(t.short_names);
                            }
                            if !t.categories.is_empty() {
                                r["categories"] = json!(t.categories);
                            }
                            if t.status_subresource {
                                r["subresources"] = json!([{
                                    "subresource": "status",
                                    "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
                                    "verbs": ["get", "patch", "update"],
                                }]);
                            }
                            r
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut group = json!({"metadata": {"creationTimestamp": null}, "versions": versions});
            if !g.is_empty() {
                group["metadata"]["name"] = json!(g);
            }
            groups.push(group);
        }
        json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_crds_register_istio_and_sail_kinds() {
        let reg = Registry::with_builtins();
        let vs = reg
            .find("networking.istio.io", "v1", "virtualservices")
            .expect("vs");
        assert_eq!(vs.kind, "VirtualService");
        assert!(vs.namespaced);
        let istio = reg.find("sailoperator.io", "v1", "istios").expect("istio");
        assert!(!istio.namespaced);
        assert!(istio.status_subresource);
        assert!(
            reg.find("networking.istio.io", "v1alpha3", "virtualservices")
                .is_some()
        );
        assert_eq!(
            reg.find_kind("networking.istio.io", "VirtualService")
                .expect("kind")
                .version,
            "v1"
        );
    }

    #[test]
    fn discovery_lists_core_and_group_resources() {
        let reg = Registry::with_builtins();
        let core = reg.resource_list("", "v1").expect("core");
        assert!(
            core["resources"]
                .as_array()
                .expect("array")
                .iter()
                .any(|r| r["name"] == "namespaces")
        );
        let groups = reg.group_list();
        assert!(
            groups["groups"]
                .as_array()
                .expect("array")
                .iter()
                .any(|g| g["name"] == "apps")
        );
        assert!(reg.resource_list("apps", "v2").is_none());
    }
}
