//! Istio resources a tenant manages through mesh-manager (service governance).
//!
//! Inputs: Kubernetes objects as JSON (parsed from JSON or multi-document YAML). Outputs: a
//! normalised [`IstioResource`] (only the fields mesh-manager owns: `apiVersion`, `kind`,
//! `metadata.{name,namespace,labels,annotations}`, `spec`), validation [`Finding`]s naming the
//! field path, field-level [`FieldChange`]s between two versions, and the clusters of a mesh that
//! must hold mesh-wide resources ([`targets`]).
//!
//! # Layout
//! - this module: the vocabulary (kinds, keys, resources, findings, changes) and targets by mode.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::names::{ClusterName, NamespaceName};
use crate::plan;
use crate::spec::MeshSpec;

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

/// The label selector of a mesh's managed Istio resources in a cluster.
pub fn managed_resource_selector(mesh: &crate::MeshName) -> String {
    plan::managed_selector(mesh)
}
