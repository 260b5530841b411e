//! Istio resources a tenant manages through mesh-manager (service governance).
//!
//! Inputs: Kubernetes objects as JSON (parsed from JSON or multi-document YAML). Outputs: a
//! normalised [`IstioResource`] (only the fields mesh-manager owns: `apiVersion`, `kind`,
//! `metadata.{name,namespace,labels,annotations}`, `spec`), validation [`Finding`]s naming the
//! field path, field-level [`FieldChange`]s between two versions, and the clusters of a mesh that
//! must hold mesh-wide resources ([`targets`]).
//!
//! # Layout
//! - this module: the vocabulary (kinds, keys, resources, findings, changes), targets by mode and
//!   [`validate`], the whole validation of a set of objects.
//! - [`parse`]: JSON/YAML documents in, normalised [`IstioResource`]s out.
//! - [`schema`]: structural-schema and CEL validation against Istio's CRDs.
//! - [`semantics`]: what Istio's own admission validation checks beyond the schema.
//! - [`cross`]: checks across objects (undefined subsets, unknown hosts, conflicting hosts) and
//!   against facts observed in the clusters.
//! - [`diff`]: field-level changes, content hashes and drift between desired and live objects.
//! - [`services`]: the microservices view (services by `app` label across clusters, with the
//!   rules that apply to them).
//!
//! Field paths everywhere read `spec.http[0].route[1].weight`; a map key that is not a plain
//! identifier is written in brackets (`metadata.labels[app.kubernetes.io/name]`).

pub mod cross;
pub mod diff;
pub mod parse;
pub mod schema;
pub mod semantics;
pub mod services;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::names::{ClusterName, NamespaceName};
use crate::plan;
use crate::spec::MeshSpec;

pub use cross::{ClusterFacts, ServiceFact, WorkloadFact, validate_set};
pub use diff::{content_hash, diff, drift};
pub use parse::{MAX_INPUT_BYTES, ParseError, normalize, parse_documents};
pub use schema::{SchemaError, SchemaSet, validate_schema};
pub use semantics::validate_semantics;

/// The largest object (serialised JSON) accepted, well below etcd's 1.5 MiB request limit.
pub const MAX_RESOURCE_BYTES: usize = 512 * 1024;

/// The Istio kinds mesh-manager carries to clusters (the seed API's list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum IstioKind {
    /// `networking.istio.io` Gateway.
    Gateway,
    /// `networking.istio.io` VirtualService.
    VirtualService,
    /// `networking.istio.io` DestinationRule.
    DestinationRule,
    /// `networking.istio.io` ServiceEntry.
    ServiceEntry,
    /// `networking.istio.io` Sidecar.
    Sidecar,
    /// `networking.istio.io` EnvoyFilter (served as `v1alpha3` only).
    EnvoyFilter,
    /// `networking.istio.io` WorkloadEntry.
    WorkloadEntry,
}

impl IstioKind {
    /// Every kind, in the order a rollout applies them (hosts and subsets before the routes that
    /// use them).
    pub const ALL: [IstioKind; 7] = [
        IstioKind::ServiceEntry,
        IstioKind::WorkloadEntry,
        IstioKind::DestinationRule,
        IstioKind::Gateway,
        IstioKind::VirtualService,
        IstioKind::Sidecar,
        IstioKind::EnvoyFilter,
    ];

    /// The API group.
    pub fn group(self) -> &'static str {
        "networking.istio.io"
    }

    /// The version mesh-manager writes.
    pub fn version(self) -> &'static str {
        match self {
            IstioKind::EnvoyFilter => "v1alpha3",
            _ => "v1",
        }
    }

    /// `apiVersion` mesh-manager writes (`networking.istio.io/v1`).
    pub fn api_version(self) -> String {
        format!("{}/{}", self.group(), self.version())
    }

    /// The `kind` field.
    pub fn kind(self) -> &'static str {
        match self {
            IstioKind::Gateway => "Gateway",
            IstioKind::VirtualService => "VirtualService",
            IstioKind::DestinationRule => "DestinationRule",
            IstioKind::ServiceEntry => "ServiceEntry",
            IstioKind::Sidecar => "Sidecar",
            IstioKind::EnvoyFilter => "EnvoyFilter",
            IstioKind::WorkloadEntry => "WorkloadEntry",
        }
    }

    /// The lower-case plural used in URLs (`virtualservices`).
    pub fn plural(self) -> &'static str {
        match self {
            IstioKind::Gateway => "gateways",
            IstioKind::VirtualService => "virtualservices",
            IstioKind::DestinationRule => "destinationrules",
            IstioKind::ServiceEntry => "serviceentries",
            IstioKind::Sidecar => "sidecars",
            IstioKind::EnvoyFilter => "envoyfilters",
            IstioKind::WorkloadEntry => "workloadentries",
        }
    }

    /// The kind named by a URL plural (`virtualservices`), case-insensitive.
    pub fn from_plural(plural: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.plural().eq_ignore_ascii_case(plural))
    }

    /// The kind named by a `kind` field (`VirtualService`).
    pub fn from_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.kind() == kind)
    }

    /// Whether `api_version` is one Istio serves for this kind (`v1`, `v1beta1`, `v1alpha3`).
    pub fn accepts_api_version(self, api_version: &str) -> bool {
        let Some((group, version)) = api_version.split_once('/') else {
            return false;
        };
        group == self.group()
            && match self {
                IstioKind::EnvoyFilter => version == "v1alpha3",
                _ => matches!(version, "v1" | "v1beta1" | "v1alpha3"),
            }
    }

    /// Every plural, for error messages.
    pub fn plurals() -> String {
        Self::ALL.map(|k| k.plural()).join(", ")
    }
}

impl fmt::Display for IstioKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// Which object: kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceKey {
    /// The kind.
    pub kind: IstioKind,
    /// The namespace.
    pub namespace: NamespaceName,
    /// `metadata.name` (a DNS-1123 subdomain).
    pub name: String,
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A normalised Istio object: what mesh-manager stores as desired state and applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IstioResource {
    /// Which object.
    pub key: ResourceKey,
    /// The object: `apiVersion`, `kind`, `metadata` (`name`, `namespace`, `labels`,
    /// `annotations` only) and `spec`.
    pub body: Value,
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Blocks the change.
    Error,
    /// Reported; does not block.
    Warning,
}

/// One validation result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// The object it is about, when one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceKey>,
    /// The field path (`spec.http[0].route[1].weight`), empty for the whole object.
    pub path: String,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{severity}: ")?;
        if let Some(resource) = &self.resource {
            write!(f, "{resource}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Whether any finding blocks.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

/// One changed field between two versions of an object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The field path (`spec.http[0].route[0].weight`).
    pub path: String,
    /// The value before; absent when the field is new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// The value after; absent when the field was removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// The members that hold a mesh's mesh-wide Istio resources: every primary in multi-primary,
/// the primary (config cluster) in primary-remote, the one cluster in single.
pub fn targets(spec: &MeshSpec) -> Vec<ClusterName> {
    // Remotes have no istiod of their own: their primary reads config from its own cluster.
    spec.primaries()
        .into_iter()
        .map(|m| m.name.clone())
        .collect()
}

/// Label marking the Istio resources tenants manage through mesh-manager, so they are told apart
/// from the Istio objects an install itself writes (the east-west Gateway, `istiod-vs`), which
/// carry the same managed-by and mesh labels.
pub const ORIGIN_LABEL: &str = "mesh-manager.io/origin";
/// Value of [`ORIGIN_LABEL`] on tenants' resources.
pub const ORIGIN_TENANT: &str = "tenant";

/// The body mesh-manager writes into a cluster: the desired object with the managed-by, mesh and
/// origin labels, so drift watches and cleanup find it.
pub fn with_managed_labels(body: &Value, mesh: &crate::MeshName) -> Value {
    let mut body = body.clone();
    if !body["metadata"]["labels"].is_object() {
        body["metadata"]["labels"] = Value::Object(serde_json::Map::new());
    }
    body["metadata"]["labels"][plan::MANAGED_BY_LABEL] = Value::from(plan::MANAGED_BY_VALUE);
    body["metadata"]["labels"][plan::MESH_LABEL] = Value::from(mesh.as_str());
    body["metadata"]["labels"][ORIGIN_LABEL] = Value::from(ORIGIN_TENANT);
    body
}

/// The label selector of a mesh's managed Istio resources in a cluster.
pub fn managed_resource_selector(mesh: &crate::MeshName) -> String {
    format!(
        "{},{ORIGIN_LABEL}={ORIGIN_TENANT}",
        plan::managed_selector(mesh)
    )
}

/// Validates a set of objects: each against its CRD schema and Istio's own rules, then the set as
/// a whole (and against `facts` from the clusters, when given). Errors come first, then
/// warnings, each group in the order of the objects.
pub fn validate(resources: &[IstioResource], facts: Option<&ClusterFacts>) -> Vec<Finding> {
    let mut findings = Vec::new();
    for resource in resources {
        let schema = validate_schema(resource);
        // Istio's rules assume a structurally valid object; on a broken one they would only
        // repeat the schema's verdicts in other words.
        let structurally_valid = !has_errors(&schema);
        findings.extend(schema);
        if structurally_valid {
            findings.extend(validate_semantics(resource));
        }
    }
    findings.extend(validate_set(resources, facts));
    // A stable sort keeps the object order within each severity.
    findings.sort_by_key(|f| f.severity);
    cap_per_resource(findings)
}

/// One object a change proposes: its new version, or `None` to delete it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposedChange {
    /// Which object.
    pub key: ResourceKey,
    /// The new version; `None` deletes the object.
    pub resource: Option<IstioResource>,
}

/// Validates a change against the objects it joins: every finding about a changed object, and
/// the errors the change brings to the others (what was wrong before stays a known state and does
/// not block an unrelated change). Used both where a change is previewed (warnings included) and
/// where it is accepted (errors block).
pub fn validate_change(
    current: &[IstioResource],
    changes: &[ProposedChange],
    facts: Option<&ClusterFacts>,
) -> Vec<Finding> {
    let changed = |key: &ResourceKey| changes.iter().any(|c| &c.key == key);
    let mut after: Vec<IstioResource> = current
        .iter()
        .filter(|r| !changed(&r.key))
        .cloned()
        .collect();
    after.extend(changes.iter().filter_map(|c| c.resource.clone()));
    let before: std::collections::BTreeSet<String> = validate(current, None)
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    validate(&after, facts)
        .into_iter()
        .filter(|f| {
            f.resource.as_ref().is_some_and(changed)
                || (f.severity == Severity::Error && !before.contains(&f.to_string()))
        })
        .collect()
}

/// At most this many findings are returned per object by [`validate`]; the rest are counted.
pub const MAX_FINDINGS_PER_RESOURCE: usize = 100;

/// Keeps the first [`MAX_FINDINGS_PER_RESOURCE`] findings of each object (errors first, as
/// sorted) and says how many more there were.
fn cap_per_resource(findings: Vec<Finding>) -> Vec<Finding> {
    let mut kept = Vec::with_capacity(findings.len().min(1000));
    let mut counts: std::collections::HashMap<Option<ResourceKey>, usize> = Default::default();
    for finding in findings {
        let count = counts.entry(finding.resource.clone()).or_default();
        *count += 1;
        if *count <= MAX_FINDINGS_PER_RESOURCE {
            kept.push(finding);
        }
    }
    let mut dropped: Vec<_> = counts
        .into_iter()
        .filter(|(_, n)| *n > MAX_FINDINGS_PER_RESOURCE)
        .collect();
    dropped.sort();
    for (resource, n) in dropped {
        kept.push(Finding {
            severity: Severity::Warning,
            resource,
            path: String::new(),
            message: format!("{} more findings not shown", n - MAX_FINDINGS_PER_RESOURCE),
        });
    }
    kept
}

/// `parent.key`, or `parent[key]` when the key is not a plain identifier (letters, digits, `_`,
/// `-`), so that dots inside keys stay unambiguous.
pub fn child_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{key}]"),
    }
}

/// `parent[index]`.
pub fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: [(&str, &str); 6] = [
        (
            "bookinfo-gateway",
            include_str!("../../data/istio/samples/bookinfo-gateway.yaml"),
        ),
        (
            "destination-rule-all",
            include_str!("../../data/istio/samples/destination-rule-all.yaml"),
        ),
        (
            "virtual-service-all-v1",
            include_str!("../../data/istio/samples/virtual-service-all-v1.yaml"),
        ),
        (
            "virtual-service-reviews-80-20",
            include_str!("../../data/istio/samples/virtual-service-reviews-80-20.yaml"),
        ),
        (
            "virtual-service-reviews-jason-v2-v3",
            include_str!("../../data/istio/samples/virtual-service-reviews-jason-v2-v3.yaml"),
        ),
        (
            "egress-rule-google-apis",
            include_str!("../../data/istio/samples/egress-rule-google-apis.yaml"),
        ),
    ];

    fn default_ns() -> NamespaceName {
        NamespaceName::new("default").expect("valid namespace")
    }

    fn load(name: &str) -> Vec<IstioResource> {
        let text = SAMPLES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| *text)
            .expect("known sample");
        parse_documents(text)
            .expect("sample parses")
            .iter()
            .map(|doc| normalize(doc, Some(&default_ns())).expect("sample normalises"))
            .collect()
    }

    fn errors(findings: &[Finding]) -> Vec<String> {
        findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(ToString::to_string)
            .collect()
    }

    /// Objects applied one after another: a later object replaces an earlier one of the same key.
    fn applied(names: &[&str]) -> Vec<IstioResource> {
        let mut set: Vec<IstioResource> = Vec::new();
        for name in names {
            for resource in load(name) {
                match set.iter_mut().find(|r| r.key == resource.key) {
                    Some(existing) => *existing = resource,
                    None => set.push(resource),
                }
            }
        }
        set
    }

    #[test]
    fn every_bookinfo_sample_validates_alone_without_errors() {
        for (name, _) in SAMPLES {
            let resources = load(name);
            assert!(!resources.is_empty(), "{name}");
            for resource in &resources {
                assert_eq!(resource.key.namespace.as_str(), "default");
                assert!(
                    resource
                        .key
                        .kind
                        .accepts_api_version(resource.body["apiVersion"].as_str().expect("set"))
                );
            }
            let findings = validate(&resources, None);
            assert!(errors(&findings).is_empty(), "{name}: {findings:#?}");
        }
    }

    #[test]
    fn bookinfo_samples_validate_as_a_set_without_errors() {
        for split in [
            "virtual-service-reviews-80-20",
            "virtual-service-reviews-jason-v2-v3",
        ] {
            let set = applied(&[
                "destination-rule-all",
                "virtual-service-all-v1",
                split,
                "bookinfo-gateway",
                "egress-rule-google-apis",
            ]);
            assert_eq!(set.len(), 11, "{split}");
            let findings = validate(&set, None);
            assert!(errors(&findings).is_empty(), "{split}: {findings:#?}");
        }
    }

    #[test]
    fn a_change_is_blocked_only_by_errors_it_brings() {
        let current = applied(&["destination-rule-all", "virtual-service-all-v1"]);
        let split = load("virtual-service-reviews-80-20").remove(0);
        let proposed = |resource: IstioResource| ProposedChange {
            key: resource.key.clone(),
            resource: Some(resource),
        };
        assert!(errors(&validate_change(&current, &[proposed(split.clone())], None)).is_empty());
        // Dropping subset v2 from the DestinationRule breaks the 80-20 route to v2: that blocks.
        let current = applied(&["destination-rule-all", "virtual-service-reviews-80-20"]);
        let mut rule = load("destination-rule-all").remove(1);
        assert_eq!(rule.key.name, "reviews");
        rule.body["spec"]["subsets"]
            .as_array_mut()
            .expect("subsets")
            .truncate(1);
        let blocked = errors(&validate_change(&current, &[proposed(rule)], None));
        assert!(blocked.iter().any(|e| e.contains("v2")), "{blocked:#?}");
        // A set that was already broken does not block an unrelated change.
        let broken = split_with_v1_only();
        let unrelated = load("bookinfo-gateway").remove(0);
        assert!(errors(&validate(&broken, None)).len() == 1);
        assert!(errors(&validate_change(&broken, &[proposed(unrelated)], None)).is_empty());
    }

    /// The reviews 80-20 split with a DestinationRule that defines only `v1`.
    fn split_with_v1_only() -> Vec<IstioResource> {
        let mut set = load("virtual-service-reviews-80-20");
        let mut rule = load("destination-rule-all").remove(1);
        assert_eq!(rule.key.name, "reviews");
        rule.body["spec"]["subsets"]
            .as_array_mut()
            .expect("subsets")
            .truncate(1);
        set.push(rule);
        set
    }

    #[test]
    fn a_route_to_an_undefined_subset_is_refused_with_the_subset_path() {
        let findings = validate(&split_with_v1_only(), None);
        let errors: Vec<_> = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .collect();
        assert_eq!(errors.len(), 1, "{findings:#?}");
        assert_eq!(errors[0].path, "spec.http[0].route[1].destination.subset");
        assert!(
            errors[0].message.contains("\"v2\""),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn conflicting_hosts_across_samples_are_refused() {
        // The 80-20 split renamed, next to the all-v1 routes: two VirtualServices for reviews.
        let mut set = applied(&["destination-rule-all", "virtual-service-all-v1"]);
        let mut split = load("virtual-service-reviews-80-20").remove(0);
        split.key.name = "reviews-split".into();
        split.body["metadata"]["name"] = "reviews-split".into();
        set.push(split);
        let findings = validate(&set, None);
        let errors: Vec<_> = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| {
                (
                    f.resource.as_ref().map(|k| k.name.as_str()),
                    f.path.as_str(),
                )
            })
            .collect();
        assert_eq!(
            errors,
            vec![
                (Some("reviews"), "spec.hosts[0]"),
                (Some("reviews-split"), "spec.hosts[0]")
            ]
        );
    }

    #[test]
    fn weights_that_break_istios_rule_are_refused_at_the_weight() {
        let mut set = applied(&["destination-rule-all", "virtual-service-reviews-80-20"]);
        let vs = set
            .iter_mut()
            .find(|r| r.key.kind == IstioKind::VirtualService)
            .expect("vs");
        vs.body["spec"]["http"][0]["route"][1]["weight"] = (-20).into();
        let findings = validate(&set, None);
        let errors: Vec<_> = findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| f.path.as_str())
            .collect();
        assert_eq!(errors, vec!["spec.http[0].route[1].weight"]);
    }

    #[test]
    fn validate_puts_errors_before_warnings() {
        let mut set = split_with_v1_only();
        // A catch-all route before another is a warning; the missing subset is an error.
        set[0].body["spec"]["http"]
            .as_array_mut()
            .expect("http")
            .push(serde_json::json!({"match": [{"uri": {"prefix": "/x"}}],
                "route": [{"destination": {"host": "reviews"}}]}));
        let findings = validate(&set, None);
        let severities: Vec<_> = findings.iter().map(|f| f.severity).collect();
        let mut sorted = severities.clone();
        sorted.sort();
        assert_eq!(severities, sorted);
        assert!(severities.contains(&Severity::Warning) && severities.contains(&Severity::Error));
    }

    #[test]
    fn a_broken_object_reports_schema_errors_without_semantic_echoes() {
        let mut vs = load("virtual-service-reviews-80-20").remove(0);
        vs.body["spec"]["hosts"] = serde_json::json!("x");
        let findings = validate(std::slice::from_ref(&vs), None);
        let schema_paths: Vec<_> = findings.iter().filter(|f| f.path == "spec.hosts").collect();
        assert_eq!(schema_paths.len(), 1, "{findings:#?}");
    }

    #[test]
    fn diff_of_the_two_reviews_splits_lists_field_paths() {
        let before = load("virtual-service-reviews-80-20").remove(0);
        let after = load("virtual-service-reviews-jason-v2-v3").remove(0);
        let changes = diff(&before.body, &after.body);
        let paths: Vec<_> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "spec.http[0].match",
                "spec.http[0].route[0].destination.subset",
                "spec.http[0].route[0].weight",
                "spec.http[0].route[1]",
                "spec.http[1]",
            ]
        );
        let subset = &changes[1];
        assert_eq!(subset.before, Some(serde_json::json!("v1")));
        assert_eq!(subset.after, Some(serde_json::json!("v2")));
        assert!(changes[3].after.is_none() && changes[4].before.is_none());
        assert_ne!(content_hash(&before.body), content_hash(&after.body));
    }

    /// Objects using much of each kind's API, as Istio's documentation shows them.
    const RICH_OBJECTS: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-policy, namespace: shop}
spec:
  host: reviews.shop.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie: {name: user, ttl: 60s}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms, tcpKeepalive: {time: 7200s, interval: 75s}}
      http: {http2MaxRequests: 1000, maxRequestsPerConnection: 10}
    outlierDetection: {consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m}
    tls: {mode: ISTIO_MUTUAL}
    portLevelSettings:
    - port: {number: 80}
      loadBalancer: {simple: LEAST_REQUEST}
  subsets:
  - name: testversion
    labels: {version: v3}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
  exportTo: [".", "istio-system"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-route, namespace: shop, labels: {app.kubernetes.io/name: reviews}}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  http:
  - name: v2-routes
    match:
    - uri: {prefix: /wpcatalog}
      headers: {end-user: {exact: jason}}
      queryParams: {debug: {regex: "^(true|1)$"}}
    rewrite: {uri: /newcatalog}
    route:
    - destination: {host: reviews.shop.svc.cluster.local, subset: testversion}
      headers:
        request:
          set: {x-version: v2}
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "gateway-error,connect-failure"}
    timeout: 10s
    fault:
      delay: {percentage: {value: 0.1}, fixedDelay: 5s}
    corsPolicy:
      allowOrigins: [{exact: "https://example.com"}, {regex: 'https://.*\.example\.com'}]
      allowMethods: [POST, GET]
      maxAge: 24h
    mirror: {host: reviews.shop.svc.cluster.local, subset: testversion}
    mirrorPercentage: {value: 50.0}
  - route:
    - destination: {host: reviews.shop.svc.cluster.local, port: {number: 9080}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: https-gateway, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["shop/*.example.com"]
    tls: {mode: SIMPLE, credentialName: example-cert}
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*.example.com"]
    tls: {httpsRedirect: true}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-db, namespace: shop}
spec:
  hosts: [db.example.internal]
  addresses: [10.1.2.0/24]
  ports:
  - {number: 5432, name: tcp-postgres, protocol: TCP}
  location: MESH_EXTERNAL
  resolution: STATIC
  endpoints:
  - {address: 10.1.2.3, labels: {role: primary}}
  - {address: 10.1.2.4, ports: {tcp-postgres: 5433}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - hosts: ["./*", "istio-system/*"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: shop}
spec:
  address: 10.0.0.7
  labels: {app: reviews, version: v3}
  serviceAccount: reviews
  network: vm-network
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: lua-filter, namespace: shop}
spec:
  workloadSelector:
    labels: {app: reviews}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {name: envoy.filters.http.router}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.lua
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          inlineCode: "function envoy_on_request(handle) end"
"#;

    #[test]
    fn objects_using_much_of_the_api_validate_without_errors() {
        let resources: Vec<IstioResource> = parse_documents(RICH_OBJECTS)
            .expect("parses")
            .iter()
            .map(|doc| normalize(doc, None).expect("normalises"))
            .collect();
        assert_eq!(resources.len(), 7);
        let kinds: std::collections::BTreeSet<_> = resources.iter().map(|r| r.key.kind).collect();
        assert_eq!(kinds.len(), IstioKind::ALL.len());
        let findings = validate(&resources, None);
        assert!(findings.is_empty(), "{findings:#?}");
    }

    #[test]
    fn a_large_object_with_many_findings_is_validated_quickly_and_capped() {
        let route = serde_json::json!({"match": [{"uri": {"prefix": "/a"}, "headers": {"x": {"exact": "y"}}}],
            "route": [{"destination": {"host": "reviews", "subset": "v1", "port": {"number": 9080}}, "weight": 50},
                      {"destination": {"host": "reviews", "subset": "v9"}, "weight": 50}],
            "timeout": "10s", "retries": {"attempts": 3, "perTryTimeout": "2s"}});
        let http: Vec<serde_json::Value> = (0..1500).map(|_| route.clone()).collect();
        let body = serde_json::json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "big", "namespace": "default"}, "spec": {"hosts": ["reviews"], "http": http}});
        let vs = normalize(&body, None).expect("under the size limit");
        let set = vec![vs, load("destination-rule-all").remove(1)];
        let started = std::time::Instant::now();
        let findings = validate(&set, None);
        assert!(
            started.elapsed().as_secs() < 10,
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(findings.len(), MAX_FINDINGS_PER_RESOURCE + 1);
        assert_eq!(findings[0].path, "spec.http[0].route[1].destination.subset");
        assert_eq!(
            findings[MAX_FINDINGS_PER_RESOURCE].message,
            "1400 more findings not shown"
        );
    }

    /// Every path of `value` (objects and arrays included), as JSON pointers.
    fn pointers(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let child = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(child.clone());
                    pointers(v, child, out);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let child = format!("{at}/{i}");
                    out.push(child.clone());
                    pointers(v, child, out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn any_field_of_any_type_gives_findings_never_a_panic() {
        let resources: Vec<IstioResource> = parse_documents(RICH_OBJECTS)
            .expect("parses")
            .iter()
            .map(|doc| normalize(doc, None).expect("normalises"))
            .collect();
        let replacements = [
            serde_json::Value::Null,
            serde_json::json!(-1),
            serde_json::json!(1.5),
            serde_json::json!("x"),
            serde_json::json!([{}]),
            serde_json::json!({"unknown": []}),
        ];
        let mut validated = 0;
        for resource in &resources {
            let mut paths = Vec::new();
            pointers(&resource.body["spec"], "/spec".into(), &mut paths);
            for path in paths {
                for replacement in &replacements {
                    let mut changed = resource.clone();
                    *changed.body.pointer_mut(&path).expect("path exists") = replacement.clone();
                    for finding in validate(std::slice::from_ref(&changed), None) {
                        assert!(!finding.message.is_empty());
                    }
                    validated += 1;
                }
            }
        }
        assert!(validated > 500, "{validated}");
    }

    #[test]
    fn child_paths_bracket_keys_that_are_not_identifiers() {
        assert_eq!(child_path("", "spec"), "spec");
        assert_eq!(child_path("spec", "end-user"), "spec.end-user");
        assert_eq!(
            child_path("metadata.labels", "app.kubernetes.io/name"),
            "metadata.labels[app.kubernetes.io/name]"
        );
        assert_eq!(index_path("spec.http", 2), "spec.http[2]");
    }
}
