//! The desired state of a mesh.
//!
//! Input: a [`MeshSpec`] as the user (REST API or bus command) states it, stored as JSON in the
//! `mesh.config` column. Output: [`MeshSpec::validate`] lists *every* problem with a field path, so
//! one answer tells the user all that is wrong; the helpers ([`MeshSpec::primaries`],
//! [`MeshSpec::primary_of`], [`MeshSpec::needs_east_west_gateway`], ...) answer the topology
//! questions the planner asks. This is the "validate" stage of observe → validate → plan → apply →
//! record; nothing here performs I/O.
//!
//! Topology rules (Istio multi-cluster deployment models):
//! - `single`: exactly one cluster, a primary (`master`).
//! - `primary-remote`: exactly one primary and at least one remote; the remotes use the primary's
//!   istiod, reached through the primary's east-west gateway.
//! - `multi-primary`: at least two clusters, all primaries.
//!
//! Networks: every member names the network it is on (default: its own cluster name, i.e. every
//! cluster on a network of its own). Clusters may share a network, and a multi-cluster mesh on one
//! single network is valid too; east-west gateways are only planned where they are needed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogError, IstioVersion, VersionCatalog};
use crate::mode::{ClusterRole, MeshMode};
use crate::names::{ClusterName, MeshName, NamespaceName, TenantId, check_dns_label};

/// The namespace the control plane lives in; never an auto-injection target.
pub const ISTIO_NAMESPACE: &str = "istio-system";

/// Namespaces that must never be labelled for sidecar injection.
pub const RESERVED_NAMESPACES: [&str; 4] = [
    ISTIO_NAMESPACE,
    "kube-system",
    "kube-public",
    "kube-node-lease",
];

/// Longest mesh title (the seed column is `varchar(255)`).
pub const MAX_TITLE_CHARS: usize = 255;
/// Longest region (the seed column is `varchar(64)`).
pub const MAX_REGION_CHARS: usize = 64;

/// Bounds of the replica counts a user may ask for.
pub const REPLICAS_RANGE: std::ops::RangeInclusive<u32> = 1..=20;

/// The most characters a mesh's configuration may take as JSON: what the seed's `mesh.config`
/// column (`varchar(10000)`) holds.
pub const MAX_CONFIG_CHARS: usize = 10_000;

/// The desired state of one mesh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshSpec {
    /// The tenant owning the mesh.
    pub tenant: TenantId,
    /// The mesh name; also Istio's `meshID`.
    pub name: MeshName,
    /// A human-readable title.
    #[serde(default)]
    pub title: String,
    /// The region the mesh belongs to (free text, as in the seed).
    #[serde(default)]
    pub region: String,
    /// How the member clusters share control planes.
    pub mode: MeshMode,
    /// The Istio version to run (`1.30.3`; a leading `v` is accepted).
    pub version: String,
    /// The member clusters, in the order the user gave them.
    pub clusters: Vec<MemberSpec>,
    /// Tunable mesh settings.
    #[serde(default)]
    pub config: MeshConfig,
}

/// One member cluster of a mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberSpec {
    /// The registered cluster's name; also Istio's `clusterName`.
    pub name: ClusterName,
    /// Primary (`master`) or remote.
    pub role: ClusterRole,
    /// The network the cluster's pods are on; empty means "a network of its own", named after the
    /// cluster. Use [`MemberSpec::network_name`] to read it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
}

impl MemberSpec {
    /// A member on a network of its own.
    pub fn new(name: ClusterName, role: ClusterRole) -> Self {
        Self {
            name,
            role,
            network: String::new(),
        }
    }

    /// The same member on the named network.
    pub fn with_network(mut self, network: impl Into<String>) -> Self {
        self.network = network.into();
        self
    }

    /// The effective network name: the configured one, or the cluster name when none is set.
    pub fn network_name(&self) -> &str {
        if self.network.is_empty() {
            self.name.as_str()
        } else {
            &self.network
        }
    }

    /// Whether the member runs its own istiod.
    pub fn is_primary(&self) -> bool {
        self.role == ClusterRole::Master
    }
}

/// What sidecars do with traffic to destinations outside the service registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundTrafficPolicy {
    /// Let it through (Istio's default).
    #[default]
    AllowAny,
    /// Block it; only registered services are reachable.
    RegistryOnly,
}

impl OutboundTrafficPolicy {
    /// The value of Istio's `meshConfig.outboundTrafficPolicy.mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AllowAny => "ALLOW_ANY",
            Self::RegistryOnly => "REGISTRY_ONLY",
        }
    }
}

impl fmt::Display for OutboundTrafficPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Replica counts of the components mesh-manager runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Replicas {
    /// istiod replicas on every primary (1..=20).
    pub istiod: u32,
    /// East-west gateway replicas on every cluster that has one (1..=20).
    pub eastwest_gateway: u32,
}

impl Default for Replicas {
    fn default() -> Self {
        Self {
            istiod: 1,
            eastwest_gateway: 1,
        }
    }
}

/// Tunable mesh settings (JSON, camelCase); every field has a default and unknown fields are
/// refused so a typo is an error rather than a silently ignored setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct MeshConfig {
    /// `ALLOW_ANY` (default) or `REGISTRY_ONLY`.
    pub outbound_traffic_policy: OutboundTrafficPolicy,
    /// Percentage of requests traced, 0 to 100 (default 1).
    pub trace_sampling: f64,
    /// Per member cluster, the namespaces whose pods get sidecars injected. Kept as plain strings
    /// so [`MeshSpec::validate`] can report every bad entry; read them through
    /// [`MeshSpec::injection_namespaces`].
    pub auto_injection_namespaces: BTreeMap<String, Vec<String>>,
    /// Component replica counts.
    pub replicas: Replicas,
    /// What happens when a managed Istio resource is changed directly in a cluster.
    pub drift_policy: DriftPolicy,
}

/// What mesh-manager does about drift: a managed Istio resource edited or deleted directly in a
/// member cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftPolicy {
    /// Report it (`DriftDetected`) and put the desired version back.
    #[default]
    Repair,
    /// Report it and leave the cluster as it is.
    Report,
}

impl DriftPolicy {
    /// The policy's name (`repair`, `report`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Repair => "repair",
            Self::Report => "report",
        }
    }
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            outbound_traffic_policy: OutboundTrafficPolicy::default(),
            trace_sampling: 1.0,
            auto_injection_namespaces: BTreeMap::new(),
            replicas: Replicas::default(),
            drift_policy: DriftPolicy::default(),
        }
    }
}

/// Which rule a [`SpecError`] broke, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecErrorKind {
    /// Title or region too long or not printable.
    Text,
    /// The Istio version is not installable.
    Version,
    /// The member list does not fit the mode.
    Topology,
    /// A cluster appears twice.
    DuplicateCluster,
    /// A network name is not a DNS label.
    Network,
    /// Trace sampling out of range.
    Sampling,
    /// A replica count out of range.
    Replicas,
    /// An auto-injection entry names a non-member cluster or a bad or reserved namespace.
    AutoInjection,
    /// The configuration is larger than a mesh can store.
    ConfigSize,
}

/// One problem found by [`MeshSpec::validate`], with the path of the offending field
/// (`clusters[1].network`, `config.replicas.istiod`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SpecError {
    /// Path of the offending field in the spec's JSON form.
    pub path: String,
    /// Which rule was broken.
    pub kind: SpecErrorKind,
    /// What is wrong, for people.
    pub message: String,
}

impl SpecError {
    fn new(path: impl Into<String>, kind: SpecErrorKind, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            kind,
            message: message.into(),
        }
    }
}

/// Joins validation problems into one line (`path: message; path: message`).
pub fn describe_errors(errors: &[SpecError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl MeshSpec {
    /// Checks the spec against the topology rules of its mode and the installable versions;
    /// returns every problem found, each with its field path.
    pub fn validate(&self, catalog: &VersionCatalog) -> Result<(), Vec<SpecError>> {
        let mut errors = Vec::new();
        self.check_text(&mut errors);
        if let Err(e) = catalog.resolve(&self.version) {
            errors.push(SpecError::new(
                "version",
                SpecErrorKind::Version,
                e.to_string(),
            ));
        }
        self.check_members(&mut errors);
        self.check_topology(&mut errors);
        self.check_config(&mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn check_text(&self, errors: &mut Vec<SpecError>) {
        let fields = [
            ("title", &self.title, MAX_TITLE_CHARS),
            ("region", &self.region, MAX_REGION_CHARS),
        ];
        for (path, value, max) in fields {
            if value.chars().count() > max {
                errors.push(SpecError::new(
                    path,
                    SpecErrorKind::Text,
                    format!("must be at most {max} characters"),
                ));
            } else if value.chars().any(char::is_control) {
                errors.push(SpecError::new(
                    path,
                    SpecErrorKind::Text,
                    "must not contain control characters",
                ));
            }
        }
    }

    fn check_members(&self, errors: &mut Vec<SpecError>) {
        let mut seen = BTreeSet::new();
        for (i, member) in self.clusters.iter().enumerate() {
            if !seen.insert(&member.name) {
                errors.push(SpecError::new(
                    format!("clusters[{i}].name"),
                    SpecErrorKind::DuplicateCluster,
                    format!("cluster {} is listed more than once", member.name),
                ));
            }
            if !member.network.is_empty()
                && let Err(e) = check_dns_label("network", &member.network, 63)
            {
                errors.push(SpecError::new(
                    format!("clusters[{i}].network"),
                    SpecErrorKind::Network,
                    e.to_string(),
                ));
            }
        }
    }

    fn check_topology(&self, errors: &mut Vec<SpecError>) {
        let primaries = self.primaries().len();
        let remotes = self.remotes().len();
        let problem = match self.mode {
            MeshMode::Single if self.clusters.len() != 1 || primaries != 1 => Some(format!(
                "mode single takes exactly one cluster with role master; got {primaries} master \
                 and {remotes} remote"
            )),
            MeshMode::PrimaryRemote if primaries != 1 || remotes == 0 => Some(format!(
                "mode primary-remote takes exactly one master and at least one remote; got \
                 {primaries} master and {remotes} remote"
            )),
            MeshMode::MultiPrimary if self.clusters.len() < 2 || remotes != 0 => Some(format!(
                "mode multi-primary takes at least two clusters, all with role master; got \
                 {primaries} master and {remotes} remote"
            )),
            _ => None,
        };
        if let Some(message) = problem {
            errors.push(SpecError::new("clusters", SpecErrorKind::Topology, message));
        }
    }

    fn check_config(&self, errors: &mut Vec<SpecError>) {
        let sampling = self.config.trace_sampling;
        if !(sampling.is_finite() && (0.0..=100.0).contains(&sampling)) {
            errors.push(SpecError::new(
                "config.traceSampling",
                SpecErrorKind::Sampling,
                format!("must be a percentage from 0 to 100; got {sampling}"),
            ));
        }
        let replicas = [
            ("config.replicas.istiod", self.config.replicas.istiod),
            (
                "config.replicas.eastwestGateway",
                self.config.replicas.eastwest_gateway,
            ),
        ];
        for (path, count) in replicas {
            if !REPLICAS_RANGE.contains(&count) {
                errors.push(SpecError::new(
                    path,
                    SpecErrorKind::Replicas,
                    format!(
                        "must be from {} to {}; got {count}",
                        REPLICAS_RANGE.start(),
                        REPLICAS_RANGE.end()
                    ),
                ));
            }
        }
        self.check_auto_injection(errors);
        if let Ok(text) = serde_json::to_string(&self.config) {
            let chars = text.chars().count();
            if chars > MAX_CONFIG_CHARS {
                errors.push(SpecError::new(
                    "config",
                    SpecErrorKind::ConfigSize,
                    format!(
                        "takes {chars} characters as JSON; a mesh stores at most \
                         {MAX_CONFIG_CHARS} (list fewer auto-injection namespaces)"
                    ),
                ));
            }
        }
    }

    fn check_auto_injection(&self, errors: &mut Vec<SpecError>) {
        for (cluster, namespaces) in &self.config.auto_injection_namespaces {
            let base = format!("config.autoInjectionNamespaces.{cluster}");
            if !self.clusters.iter().any(|m| m.name.as_str() == cluster) {
                errors.push(SpecError::new(
                    base.clone(),
                    SpecErrorKind::AutoInjection,
                    format!("{cluster:?} is not a member cluster of this mesh"),
                ));
            }
            for (i, namespace) in namespaces.iter().enumerate() {
                let path = format!("{base}[{i}]");
                if let Err(e) = NamespaceName::new(namespace.as_str()) {
                    errors.push(SpecError::new(
                        path,
                        SpecErrorKind::AutoInjection,
                        e.to_string(),
                    ));
                } else if RESERVED_NAMESPACES.contains(&namespace.as_str()) {
                    errors.push(SpecError::new(
                        path,
                        SpecErrorKind::AutoInjection,
                        format!("namespace {namespace} is reserved and cannot get sidecars"),
                    ));
                }
            }
        }
    }

    /// The parsed Istio version (without checking the catalog).
    pub fn istio_version(&self) -> Result<IstioVersion, CatalogError> {
        IstioVersion::parse(&self.version)
    }

    /// The member named `cluster`, if any.
    pub fn member(&self, cluster: &ClusterName) -> Option<&MemberSpec> {
        self.clusters.iter().find(|m| &m.name == cluster)
    }

    /// The members running their own istiod, in spec order.
    pub fn primaries(&self) -> Vec<&MemberSpec> {
        self.clusters.iter().filter(|m| m.is_primary()).collect()
    }

    /// The members using another cluster's istiod, in spec order.
    pub fn remotes(&self) -> Vec<&MemberSpec> {
        self.clusters.iter().filter(|m| !m.is_primary()).collect()
    }

    /// The primary whose istiod serves `remote`: in `primary-remote` the one primary, for a member
    /// with role `remote`; `None` otherwise.
    pub fn primary_of(&self, remote: &ClusterName) -> Option<&MemberSpec> {
        if self.mode != MeshMode::PrimaryRemote {
            return None;
        }
        self.member(remote).filter(|m| !m.is_primary())?;
        match self.primaries().as_slice() {
            [primary] => Some(primary),
            _ => None,
        }
    }

    /// The distinct network names of the members, sorted.
    pub fn networks(&self) -> BTreeSet<&str> {
        self.clusters.iter().map(MemberSpec::network_name).collect()
    }

    /// Whether the members span more than one network.
    pub fn is_multi_network(&self) -> bool {
        self.networks().len() > 1
    }

    /// Whether `cluster` needs an east-west gateway: on every member when the mesh spans more
    /// than one network (cross-network traffic passes through it), and always on the primary of
    /// a `primary-remote` mesh, whose istiod the remotes reach through it.
    pub fn needs_east_west_gateway(&self, cluster: &ClusterName) -> bool {
        let Some(member) = self.member(cluster) else {
            return false;
        };
        self.is_multi_network() || (self.mode == MeshMode::PrimaryRemote && member.is_primary())
    }

    /// The members that hold mesh-wide Istio configuration: every primary (config is not shared
    /// between primaries; in `primary-remote` the primary is the config cluster).
    pub fn config_clusters(&self) -> Vec<&MemberSpec> {
        self.primaries()
    }

    /// The valid auto-injection namespaces configured for `cluster`, sorted and without
    /// duplicates (invalid entries are reported by [`MeshSpec::validate`] and skipped here).
    pub fn injection_namespaces(&self, cluster: &ClusterName) -> Vec<NamespaceName> {
        let names: BTreeSet<NamespaceName> = self
            .config
            .auto_injection_namespaces
            .get(cluster.as_str())
            .into_iter()
            .flatten()
            .filter(|ns| !RESERVED_NAMESPACES.contains(&ns.as_str()))
            .filter_map(|ns| NamespaceName::new(ns.as_str()).ok())
            .collect();
        names.into_iter().collect()
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Spec builders shared by the tests of this crate.

    use super::*;

    pub(crate) fn cluster(name: &str) -> ClusterName {
        ClusterName::new(name).expect("valid cluster name")
    }

    pub(crate) fn master(name: &str) -> MemberSpec {
        MemberSpec::new(cluster(name), ClusterRole::Master)
    }

    pub(crate) fn remote(name: &str) -> MemberSpec {
        MemberSpec::new(cluster(name), ClusterRole::Remote)
    }

    pub(crate) fn spec(mode: MeshMode, clusters: Vec<MemberSpec>) -> MeshSpec {
        MeshSpec {
            tenant: TenantId::new("tenant-a").expect("valid tenant"),
            name: MeshName::new("demo").expect("valid mesh"),
            title: "Demo mesh".into(),
            region: "eu-west".into(),
            mode,
            version: "1.30.3".into(),
            clusters,
            config: MeshConfig::default(),
        }
    }

    pub(crate) fn single() -> MeshSpec {
        spec(MeshMode::Single, vec![master("c1")])
    }

    pub(crate) fn primary_remote() -> MeshSpec {
        spec(
            MeshMode::PrimaryRemote,
            vec![master("p1"), remote("r1"), remote("r2")],
        )
    }

    pub(crate) fn multi_primary() -> MeshSpec {
        spec(
            MeshMode::MultiPrimary,
            vec![master("a"), master("b"), master("c")],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    fn errors_of(spec: &MeshSpec) -> Vec<SpecError> {
        spec.validate(&VersionCatalog::builtin())
            .expect_err("spec should be invalid")
    }

    fn paths(errors: &[SpecError]) -> Vec<&str> {
        errors.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn the_three_reference_topologies_are_valid() {
        let catalog = VersionCatalog::builtin();
        for spec in [single(), primary_remote(), multi_primary()] {
            assert_eq!(spec.validate(&catalog), Ok(()), "{}", spec.mode);
        }
    }

    #[test]
    fn a_configuration_larger_than_a_mesh_stores_is_refused() {
        let mut spec = single();
        let cluster = spec.clusters[0].name.to_string();
        let namespaces: Vec<String> = (0..800).map(|i| format!("team-{i:04}-apps")).collect();
        spec.config
            .auto_injection_namespaces
            .insert(cluster.clone(), namespaces[..100].to_vec());
        assert_eq!(spec.validate(&VersionCatalog::builtin()), Ok(()));
        spec.config
            .auto_injection_namespaces
            .insert(cluster, namespaces);
        let errors = errors_of(&spec);
        assert_eq!(paths(&errors), ["config"]);
        assert_eq!(errors[0].kind, SpecErrorKind::ConfigSize);
        assert!(errors[0].message.contains("at most 10000"), "{errors:?}");
    }

    #[test]
    fn single_mode_takes_exactly_one_master() {
        for clusters in [
            vec![],
            vec![remote("c1")],
            vec![master("c1"), master("c2")],
            vec![master("c1"), remote("c2")],
        ] {
            let errors = errors_of(&spec(MeshMode::Single, clusters));
            assert_eq!(paths(&errors), ["clusters"]);
            assert_eq!(errors[0].kind, SpecErrorKind::Topology);
        }
    }

    #[test]
    fn primary_remote_takes_one_master_and_at_least_one_remote() {
        for clusters in [
            vec![master("p")],
            vec![remote("r")],
            vec![master("p1"), master("p2"), remote("r")],
        ] {
            let errors = errors_of(&spec(MeshMode::PrimaryRemote, clusters));
            assert_eq!(paths(&errors), ["clusters"]);
            assert!(errors[0].message.contains("primary-remote"), "{errors:?}");
        }
    }

    #[test]
    fn multi_primary_takes_two_or_more_masters_only() {
        for clusters in [vec![master("a")], vec![master("a"), remote("b")]] {
            let errors = errors_of(&spec(MeshMode::MultiPrimary, clusters));
            assert_eq!(paths(&errors), ["clusters"]);
        }
    }

    #[test]
    fn duplicate_clusters_are_reported_at_their_position() {
        let errors = errors_of(&spec(
            MeshMode::MultiPrimary,
            vec![master("a"), master("b"), master("a")],
        ));
        assert_eq!(paths(&errors), ["clusters[2].name"]);
        assert_eq!(errors[0].kind, SpecErrorKind::DuplicateCluster);
    }

    #[test]
    fn versions_must_be_installable() {
        let mut spec = single();
        for bad in ["1.2.3", "v1.30-latest", "latest", ""] {
            spec.version = bad.into();
            let errors = errors_of(&spec);
            assert_eq!(paths(&errors), ["version"], "{bad}");
            assert!(errors[0].message.contains("1.30.3"), "{}", errors[0]);
        }
        spec.version = "v1.30.3".into();
        assert!(spec.validate(&VersionCatalog::builtin()).is_ok());
    }

    #[test]
    fn networks_must_be_dns_labels() {
        let mut spec = multi_primary();
        spec.clusters[1].network = "Net_2".into();
        let errors = errors_of(&spec);
        assert_eq!(paths(&errors), ["clusters[1].network"]);
        assert_eq!(errors[0].kind, SpecErrorKind::Network);
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let mut spec = spec(MeshMode::PrimaryRemote, vec![master("p"), master("p")]);
        spec.version = "0.1.0".into();
        spec.title = "t".repeat(300);
        spec.config.trace_sampling = 100.5;
        spec.config.replicas = Replicas {
            istiod: 0,
            eastwest_gateway: 21,
        };
        spec.config
            .auto_injection_namespaces
            .insert("ghost".into(), vec!["Bad_NS".into(), "istio-system".into()]);
        let errors = errors_of(&spec);
        assert_eq!(
            paths(&errors),
            [
                "title",
                "version",
                "clusters[1].name",
                "clusters",
                "config.traceSampling",
                "config.replicas.istiod",
                "config.replicas.eastwestGateway",
                "config.autoInjectionNamespaces.ghost",
                "config.autoInjectionNamespaces.ghost[0]",
                "config.autoInjectionNamespaces.ghost[1]",
            ]
        );
        let line = describe_errors(&errors);
        assert!(
            line.contains("config.traceSampling: must be a percentage"),
            "{line}"
        );
    }

    #[test]
    fn sampling_bounds_are_inclusive() {
        let mut spec = single();
        for ok in [0.0, 0.01, 100.0] {
            spec.config.trace_sampling = ok;
            assert!(spec.validate(&VersionCatalog::builtin()).is_ok(), "{ok}");
        }
        for bad in [-0.1, f64::NAN, f64::INFINITY] {
            spec.config.trace_sampling = bad;
            assert_eq!(paths(&errors_of(&spec)), ["config.traceSampling"], "{bad}");
        }
    }

    #[test]
    fn auto_injection_refuses_reserved_namespaces() {
        let mut spec = single();
        spec.config.auto_injection_namespaces.insert(
            "c1".into(),
            vec!["shop".into(), "kube-system".into(), "istio-system".into()],
        );
        let errors = errors_of(&spec);
        assert_eq!(
            paths(&errors),
            [
                "config.autoInjectionNamespaces.c1[1]",
                "config.autoInjectionNamespaces.c1[2]"
            ]
        );
        assert!(
            errors
                .iter()
                .all(|e| e.kind == SpecErrorKind::AutoInjection)
        );
    }

    #[test]
    fn injection_namespaces_are_valid_sorted_and_distinct() {
        let mut spec = single();
        spec.config.auto_injection_namespaces.insert(
            "c1".into(),
            vec!["shop".into(), "bad ns".into(), "cart".into(), "shop".into()],
        );
        let names: Vec<String> = spec
            .injection_namespaces(&cluster("c1"))
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(names, ["cart", "shop"]);
        assert!(spec.injection_namespaces(&cluster("other")).is_empty());
    }

    #[test]
    fn network_defaults_to_the_cluster_name() {
        let member = master("east");
        assert_eq!(member.network_name(), "east");
        assert_eq!(member.with_network("shared").network_name(), "shared");
    }

    #[test]
    fn primary_of_answers_only_for_remotes_in_primary_remote() {
        let spec = primary_remote();
        let primary = spec
            .primary_of(&cluster("r1"))
            .expect("remote has a primary");
        assert_eq!(primary.name.as_str(), "p1");
        assert!(spec.primary_of(&cluster("p1")).is_none());
        assert!(spec.primary_of(&cluster("nope")).is_none());
        assert!(multi_primary().primary_of(&cluster("a")).is_none());
        assert_eq!(spec.primaries().len(), 1);
        assert_eq!(spec.remotes().len(), 2);
        assert_eq!(spec.config_clusters().len(), 1);
    }

    #[test]
    fn east_west_gateways_go_where_traffic_crosses_networks() {
        // Separate networks (the default): every member needs one.
        let spec = multi_primary();
        assert_eq!(spec.networks().len(), 3);
        assert!(
            spec.clusters
                .iter()
                .all(|m| spec.needs_east_west_gateway(&m.name))
        );

        // One shared network: no member needs one.
        let mut flat = multi_primary();
        for m in &mut flat.clusters {
            m.network = "flat".into();
        }
        assert!(!flat.is_multi_network());
        assert!(
            !flat
                .clusters
                .iter()
                .any(|m| flat.needs_east_west_gateway(&m.name))
        );

        // Primary-remote on one network: only the primary, which exposes istiod.
        let mut pr = primary_remote();
        for m in &mut pr.clusters {
            m.network = "flat".into();
        }
        assert!(pr.needs_east_west_gateway(&cluster("p1")));
        assert!(!pr.needs_east_west_gateway(&cluster("r1")));

        // A single cluster never does; a stranger never does.
        assert!(!single().needs_east_west_gateway(&cluster("c1")));
        assert!(!single().needs_east_west_gateway(&cluster("zz")));
    }

    #[test]
    fn specs_round_trip_through_json_with_defaults() {
        let json = r#"{
            "tenant": "tenant-a", "name": "demo", "mode": "primary-remote", "version": "1.30.3",
            "clusters": [
                {"name": "p1", "role": "master", "network": "net1"},
                {"name": "r1", "role": "remote"}
            ],
            "config": {"outboundTrafficPolicy": "REGISTRY_ONLY", "replicas": {"istiod": 2}}
        }"#;
        let spec: MeshSpec = serde_json::from_str(json).expect("valid spec");
        assert_eq!(spec.title, "");
        assert_eq!(
            spec.config.outbound_traffic_policy,
            OutboundTrafficPolicy::RegistryOnly
        );
        assert_eq!(spec.config.trace_sampling, 1.0);
        assert_eq!(spec.config.replicas.istiod, 2);
        assert_eq!(spec.config.replicas.eastwest_gateway, 1);
        assert_eq!(spec.clusters[1].network_name(), "r1");
        let again: MeshSpec =
            serde_json::from_str(&serde_json::to_string(&spec).expect("serialize"))
                .expect("round trip");
        assert_eq!(again, spec);
    }

    #[test]
    fn unknown_config_fields_are_refused() {
        for config in [
            r#"{"traceSamplig": 5}"#,
            r#"{"replicas": {"istiod": 1, "ingress": 2}}"#,
            r#"{"outboundTrafficPolicy": "DENY"}"#,
        ] {
            assert!(
                serde_json::from_str::<MeshConfig>(config).is_err(),
                "{config} should be refused"
            );
        }
        let empty: MeshConfig = serde_json::from_str("{}").expect("all defaulted");
        assert_eq!(empty, MeshConfig::default());
    }
}
