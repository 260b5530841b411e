//! Commands: what a user or a tool asks mesh-manager to do to one mesh.
//!
//! Input: the API, `meshctl` or any NATS client publishing on `<root>.cmd.<p>.<tenant>.<mesh>`.
//! Output: deliveries to the worker that owns the partition. Names are imperative
//! (`CreateMesh`). Every payload is validated when an envelope is built and again when one is
//! decoded, so a worker only ever sees commands it can act on; whether a command makes sense
//! for the mesh's current state (a conflicting flow, a stale generation) is the worker's call,
//! answered with a `CommandRejected` event.

use std::collections::HashSet;

use mesh_core::upgrade::CanaryOptions;
use mesh_core::{ClusterName, ClusterRole, IstioVersion, MeshMode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::{InvalidMessage, Validate, body_enum};

body_enum! {
    /// A command for one mesh. The variant name is the `kind` on the wire; each kind is at
    /// version 1.
    pub enum Command ("command") {
        /// Create a mesh and install it into its clusters.
        CreateMesh = 1,
        /// Replace the mesh-wide configuration.
        UpdateMeshConfig = 1,
        /// Set the trace sampling percentage of the whole mesh.
        SetTraceSampling = 1,
        /// Set the namespaces of one member whose pods get sidecars injected.
        SetAutoInjection = 1,
        /// Set what sidecars do with traffic to destinations outside the registry.
        SetOutboundTraffic = 1,
        /// Add a member cluster.
        AddCluster = 1,
        /// Remove a member cluster.
        RemoveCluster = 1,
        /// Upgrade the mesh to another Istio version.
        UpgradeMesh = 1,
        /// Confirm or roll back a canary upgrade.
        CanaryOperate = 1,
        /// Delete the mesh and uninstall it from its clusters.
        DeleteMesh = 1,
        /// Change the mesh's desired Istio resources and roll the change out, all or nothing.
        ApplyResources = 1,
        /// Bring a member's managed Istio resources back to the desired state.
        RepairDrift = 1,
    }
}

/// A member cluster as named in a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// The registered cluster's name.
    pub name: ClusterName,
    /// Whether it runs its own istiod (`master`) or uses a primary's (`remote`).
    pub role: ClusterRole,
    /// The Istio network the cluster is in (`topology.istio.io/network`).
    pub network: String,
}

impl ClusterSpec {
    fn check(&self, kind: &'static str) -> Result<(), InvalidMessage> {
        let n = &self.network;
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
        if n.is_empty() || n.len() > 63 || !n.chars().all(valid) {
            return Err(InvalidMessage::new(
                kind,
                format!(
                    "network of cluster {} must be 1 to 63 ASCII letters, digits, '-', '_' or '.'",
                    self.name
                ),
            ));
        }
        Ok(())
    }
}

fn check_version(kind: &'static str, version: &str) -> Result<(), InvalidMessage> {
    IstioVersion::parse(version)
        .map(|_| ())
        .map_err(|e| InvalidMessage::new(kind, e.to_string()))
}

fn check_config(kind: &'static str, config: &Value) -> Result<(), InvalidMessage> {
    if !config.is_object() {
        return Err(InvalidMessage::new(kind, "config must be a JSON object"));
    }
    Ok(())
}

fn check_text(
    kind: &'static str,
    what: &str,
    value: &str,
    max: usize,
) -> Result<(), InvalidMessage> {
    if value.trim().is_empty() || value.len() > max {
        return Err(InvalidMessage::new(
            kind,
            format!("{what} must be 1 to {max} bytes and not blank"),
        ));
    }
    Ok(())
}

/// Create a mesh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateMesh {
    /// A human-readable title.
    pub title: String,
    /// The region the mesh is managed in.
    pub region: String,
    /// The Istio version to install (`1.30.3`).
    pub version: String,
    /// How the clusters share control planes.
    pub mode: MeshMode,
    /// The member clusters.
    pub clusters: Vec<ClusterSpec>,
    /// The mesh-wide configuration (a JSON object).
    #[serde(default = "empty_object")]
    pub config: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

impl Validate for CreateMesh {
    fn validate(&self) -> Result<(), InvalidMessage> {
        const KIND: &str = "CreateMesh";
        check_text(KIND, "title", &self.title, 255)?;
        check_text(KIND, "region", &self.region, 64)?;
        check_version(KIND, &self.version)?;
        check_config(KIND, &self.config)?;
        if self.clusters.is_empty() {
            return Err(InvalidMessage::new(
                KIND,
                "a mesh needs at least one cluster",
            ));
        }
        let mut seen = HashSet::new();
        for cluster in &self.clusters {
            cluster.check(KIND)?;
            if !seen.insert(&cluster.name) {
                return Err(InvalidMessage::new(
                    KIND,
                    format!("cluster {} is listed twice", cluster.name),
                ));
            }
        }
        let primaries = self
            .clusters
            .iter()
            .filter(|c| c.role == ClusterRole::Master)
            .count();
        let remotes = self.clusters.len() - primaries;
        match self.mode {
            MeshMode::Single if self.clusters.len() != 1 || primaries != 1 => Err(
                InvalidMessage::new(KIND, "a single mesh has exactly one master cluster"),
            ),
            MeshMode::PrimaryRemote if primaries != 1 => Err(InvalidMessage::new(
                KIND,
                "a primary-remote mesh has exactly one master cluster",
            )),
            MeshMode::MultiPrimary if remotes != 0 => Err(InvalidMessage::new(
                KIND,
                "every cluster of a multi-primary mesh is a master",
            )),
            _ => Ok(()),
        }
    }
}

/// Replace the mesh-wide configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateMeshConfig {
    /// The new configuration (a JSON object).
    pub config: Value,
}

impl Validate for UpdateMeshConfig {
    fn validate(&self) -> Result<(), InvalidMessage> {
        check_config("UpdateMeshConfig", &self.config)
    }
}

/// A trace sampling percentage: a finite number from 0 to 100.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct SamplingPercent(f64);

impl SamplingPercent {
    /// Validates `percent`.
    pub fn new(percent: f64) -> Result<Self, InvalidMessage> {
        if !(0.0..=100.0).contains(&percent) {
            return Err(InvalidMessage::new(
                "SetTraceSampling",
                format!("percent must be between 0 and 100, got {percent}"),
            ));
        }
        Ok(Self(percent))
    }

    /// The percentage.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for SamplingPercent {
    type Error = InvalidMessage;
    fn try_from(value: f64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<SamplingPercent> for f64 {
    fn from(value: SamplingPercent) -> f64 {
        value.0
    }
}

/// Set the mesh-wide trace sampling percentage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetTraceSampling {
    /// Percentage of requests traced.
    pub percent: SamplingPercent,
}

impl Validate for SetTraceSampling {}

/// Most namespaces one member may list for injection.
pub const MAX_INJECTION_NAMESPACES: usize = 1000;

/// Set the namespaces of one member cluster whose pods get sidecars injected (replacing its
/// list; an empty list turns injection off there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetAutoInjection {
    /// The member cluster.
    pub cluster: ClusterName,
    /// Its injected namespaces.
    pub namespaces: Vec<mesh_core::NamespaceName>,
}

impl Validate for SetAutoInjection {
    fn validate(&self) -> Result<(), InvalidMessage> {
        if self.namespaces.len() > MAX_INJECTION_NAMESPACES {
            return Err(InvalidMessage::new(
                "SetAutoInjection",
                format!(
                    "at most {MAX_INJECTION_NAMESPACES} namespaces per cluster, got {}",
                    self.namespaces.len()
                ),
            ));
        }
        let mut seen = HashSet::new();
        for namespace in &self.namespaces {
            if !seen.insert(namespace.as_str()) {
                return Err(InvalidMessage::new(
                    "SetAutoInjection",
                    format!("namespace {namespace} is listed twice"),
                ));
            }
        }
        Ok(())
    }
}

/// Set the mesh's outbound traffic policy (Istio's `meshConfig.outboundTrafficPolicy.mode`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetOutboundTraffic {
    /// `ALLOW_ANY` or `REGISTRY_ONLY`.
    pub policy: mesh_core::spec::OutboundTrafficPolicy,
}

impl Validate for SetOutboundTraffic {}

/// Add a member cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddCluster {
    /// The cluster to add.
    pub cluster: ClusterSpec,
}

impl Validate for AddCluster {
    fn validate(&self) -> Result<(), InvalidMessage> {
        self.cluster.check("AddCluster")
    }
}

/// Remove a member cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoveCluster {
    /// The cluster to remove.
    pub cluster: ClusterName,
}

impl Validate for RemoveCluster {}

/// How an upgrade replaces the control plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeStrategy {
    /// A new revision beside the old one; workloads move over and the operator confirms or
    /// rolls back.
    #[default]
    Canary,
    /// Replace the control plane in place, one minor version at a time.
    InPlace,
}

/// Upgrade the mesh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpgradeMesh {
    /// The target Istio version.
    pub version: String,
    /// How to get there (canary when absent).
    #[serde(default)]
    pub strategy: UpgradeStrategy,
    /// Batches, pause and health thresholds of a canary upgrade; defaults when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryOptions>,
}

impl Validate for UpgradeMesh {
    fn validate(&self) -> Result<(), InvalidMessage> {
        check_version("UpgradeMesh", &self.version)?;
        if let Some(options) = &self.canary {
            let problems = options.problems();
            if !problems.is_empty() {
                return Err(InvalidMessage::new("UpgradeMesh", problems.join("; ")));
            }
        }
        Ok(())
    }
}

/// What to do with a running canary upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CanaryAction {
    /// Keep the new revision and remove the old one.
    Confirm,
    /// Go back to the old revision and remove the new one.
    Rollback,
}

/// Confirm or roll back a canary upgrade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryOperate {
    /// The decision.
    pub action: CanaryAction,
}

impl Validate for CanaryOperate {}

/// Delete the mesh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteMesh {}

impl Validate for DeleteMesh {}

/// What to do with one Istio resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceOp {
    /// Create or replace the object with `body`.
    Apply,
    /// Delete the object named by `kind`, `namespace`, `name`.
    Delete,
}

/// One change of a desired Istio resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceChange {
    /// Apply or delete.
    pub op: ResourceOp,
    /// The kind (`VirtualService`).
    pub kind: String,
    /// The namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// The object as Kubernetes JSON (for `apply`); validated by the worker against the Istio
    /// schemas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Apply only if the object is at this generation (0 = it must not exist yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_generation: Option<i64>,
}

/// Most changes one command may carry.
pub const MAX_RESOURCE_CHANGES: usize = 500;

/// Change the mesh's desired Istio resources (mesh-wide, or of one member when `cluster` is set)
/// and roll the change out to every target cluster as one flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyResources {
    /// The member the resources belong to; absent for mesh-wide resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterName>,
    /// The changes, applied in order of kind (hosts and subsets before routes).
    pub changes: Vec<ResourceChange>,
}

impl Validate for ApplyResources {
    fn validate(&self) -> Result<(), InvalidMessage> {
        const KIND: &str = "ApplyResources";
        if self.changes.is_empty() {
            return Err(InvalidMessage::new(KIND, "changes must not be empty"));
        }
        if self.changes.len() > MAX_RESOURCE_CHANGES {
            return Err(InvalidMessage::new(
                KIND,
                format!("at most {MAX_RESOURCE_CHANGES} changes per command"),
            ));
        }
        let mut seen = HashSet::new();
        for change in &self.changes {
            check_text(KIND, "kind", &change.kind, 32)?;
            check_text(KIND, "namespace", &change.namespace, 63)?;
            check_text(KIND, "name", &change.name, 253)?;
            if change.op == ResourceOp::Apply && change.body.as_ref().is_none_or(|b| !b.is_object())
            {
                return Err(InvalidMessage::new(
                    KIND,
                    format!(
                        "apply of {} {}/{} needs a body object",
                        change.kind, change.namespace, change.name
                    ),
                ));
            }
            if !seen.insert((&change.kind, &change.namespace, &change.name)) {
                return Err(InvalidMessage::new(
                    KIND,
                    format!(
                        "{} {}/{} is changed twice in one command",
                        change.kind, change.namespace, change.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Bring a member's managed Istio resources back to the desired state (sent by the worker that
/// detected drift, or by a user).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepairDrift {
    /// The member to repair.
    pub cluster: ClusterName,
}

impl Validate for RepairDrift {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::envelope::{Body, DecodeError};

    fn cluster(name: &str, role: ClusterRole) -> ClusterSpec {
        ClusterSpec {
            name: ClusterName::new(name).expect("cluster"),
            role,
            network: format!("net-{name}"),
        }
    }

    fn create(mode: MeshMode, clusters: Vec<ClusterSpec>) -> CreateMesh {
        CreateMesh {
            title: "Demo".into(),
            region: "eu-west".into(),
            version: "1.30.3".into(),
            mode,
            clusters,
            config: json!({"outboundTrafficPolicy": "ALLOW_ANY"}),
        }
    }

    #[test]
    fn create_mesh_checks_roles_against_the_mode() {
        let m = ClusterRole::Master;
        let r = ClusterRole::Remote;
        assert!(
            create(MeshMode::Single, vec![cluster("a", m)])
                .validate()
                .is_ok()
        );
        assert!(
            create(MeshMode::Single, vec![cluster("a", r)])
                .validate()
                .is_err()
        );
        assert!(
            create(MeshMode::Single, vec![cluster("a", m), cluster("b", m)])
                .validate()
                .is_err()
        );
        assert!(
            create(
                MeshMode::PrimaryRemote,
                vec![cluster("a", m), cluster("b", r)]
            )
            .validate()
            .is_ok()
        );
        assert!(
            create(
                MeshMode::PrimaryRemote,
                vec![cluster("a", m), cluster("b", m)]
            )
            .validate()
            .is_err()
        );
        assert!(
            create(
                MeshMode::MultiPrimary,
                vec![cluster("a", m), cluster("b", m)]
            )
            .validate()
            .is_ok()
        );
        assert!(
            create(
                MeshMode::MultiPrimary,
                vec![cluster("a", m), cluster("b", r)]
            )
            .validate()
            .is_err()
        );
    }

    #[test]
    fn create_mesh_refuses_bad_input_with_clear_reasons() {
        let m = ClusterRole::Master;
        let mut twice = create(
            MeshMode::MultiPrimary,
            vec![cluster("a", m), cluster("a", m)],
        );
        let err = twice.validate().expect_err("duplicate");
        assert_eq!(
            err.to_string(),
            "invalid CreateMesh: cluster a is listed twice"
        );
        twice.clusters.clear();
        assert!(twice.validate().is_err());

        let mut bad = create(MeshMode::Single, vec![cluster("a", m)]);
        bad.version = "latest".into();
        assert!(
            bad.validate()
                .expect_err("version")
                .to_string()
                .contains("latest")
        );

        let mut bad = create(MeshMode::Single, vec![cluster("a", m)]);
        bad.config = json!([1, 2]);
        assert!(bad.validate().is_err());

        let mut bad = create(MeshMode::Single, vec![cluster("a", m)]);
        bad.clusters[0].network = "has space".into();
        assert!(bad.validate().is_err());

        let mut bad = create(MeshMode::Single, vec![cluster("a", m)]);
        bad.title = "  ".into();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn sampling_percent_is_bounded() {
        for ok in [0.0, 0.01, 50.0, 100.0] {
            assert!(SamplingPercent::new(ok).is_ok(), "{ok}");
        }
        for bad in [-0.1, 100.01, f64::NAN, f64::INFINITY] {
            assert!(SamplingPercent::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upgrade_payloads_without_options_still_decode_with_defaults() {
        let old = Command::decode(
            "UpgradeMesh",
            1,
            json!({"version": "1.30.3", "strategy": "canary"}),
        )
        .expect("decode");
        let Command::UpgradeMesh(old) = old else {
            panic!("kind")
        };
        assert_eq!(old.canary, None);
        let bare = Command::decode("UpgradeMesh", 1, json!({"version": "1.30.3"})).expect("decode");
        let Command::UpgradeMesh(bare) = bare else {
            panic!("kind")
        };
        assert_eq!(bare.strategy, UpgradeStrategy::Canary);
        let with = Command::decode(
            "UpgradeMesh",
            1,
            json!({"version": "1.30.3", "canary": {"batchSize": 3, "maxErrorRatio": 0.1}}),
        )
        .expect("decode");
        let Command::UpgradeMesh(with) = with else {
            panic!("kind")
        };
        let options = with.canary.expect("options");
        assert_eq!((options.batch_size, options.max_error_ratio), (3, 0.1));
        assert_eq!(options.pause_seconds, 0);
        assert!(
            Command::decode(
                "UpgradeMesh",
                1,
                json!({"version": "1.30.3", "canary": {"batchSize": 0}})
            )
            .is_err()
        );
    }

    #[test]
    fn wire_names_of_enums_are_kebab_case() {
        let upgrade = UpgradeMesh {
            version: "1.31.0".into(),
            strategy: UpgradeStrategy::InPlace,
            canary: None,
        };
        let value = Command::from(upgrade).encode_payload().expect("encode");
        assert_eq!(value, json!({"version": "1.31.0", "strategy": "in-place"}));
        let canary =
            Command::decode("CanaryOperate", 1, json!({"action": "rollback"})).expect("decode");
        assert_eq!(
            canary,
            Command::CanaryOperate(CanaryOperate {
                action: CanaryAction::Rollback
            })
        );
    }

    #[test]
    fn every_kind_round_trips_through_its_payload() {
        let m = ClusterRole::Master;
        let commands: Vec<Command> = vec![
            create(MeshMode::Single, vec![cluster("a", m)]).into(),
            UpdateMeshConfig { config: json!({}) }.into(),
            SetTraceSampling {
                percent: SamplingPercent::new(10.0).expect("percent"),
            }
            .into(),
            SetAutoInjection {
                cluster: ClusterName::new("a").expect("cluster"),
                namespaces: vec![mesh_core::NamespaceName::new("shop").expect("namespace")],
            }
            .into(),
            SetOutboundTraffic {
                policy: mesh_core::spec::OutboundTrafficPolicy::RegistryOnly,
            }
            .into(),
            AddCluster {
                cluster: cluster("b", ClusterRole::Remote),
            }
            .into(),
            RemoveCluster {
                cluster: ClusterName::new("b").expect("cluster"),
            }
            .into(),
            UpgradeMesh {
                version: "1.31.0".into(),
                strategy: UpgradeStrategy::Canary,
                canary: Some(CanaryOptions {
                    batch_size: 2,
                    ..CanaryOptions::default()
                }),
            }
            .into(),
            CanaryOperate {
                action: CanaryAction::Confirm,
            }
            .into(),
            DeleteMesh {}.into(),
            ApplyResources {
                cluster: None,
                changes: vec![ResourceChange {
                    op: ResourceOp::Delete,
                    kind: "VirtualService".into(),
                    namespace: "default".into(),
                    name: "reviews".into(),
                    body: None,
                    expected_generation: Some(3),
                }],
            }
            .into(),
            RepairDrift {
                cluster: ClusterName::new("east").expect("valid"),
            }
            .into(),
        ];
        assert_eq!(commands.len(), Command::KINDS.len());
        for command in commands {
            let payload = command.encode_payload().expect("encode");
            let back = Command::decode(command.kind(), command.version(), payload).expect("decode");
            assert_eq!(back, command);
        }
    }

    #[test]
    fn decoding_validates_payloads() {
        let err = Command::decode("UpdateMeshConfig", 1, json!({"config": "x"}))
            .expect_err("not an object");
        assert!(matches!(err, DecodeError::Invalid(_)), "{err}");
        let err = Command::decode("RemoveCluster", 1, json!({"cluster": "Bad_Name"}))
            .expect_err("bad name");
        assert!(matches!(err, DecodeError::Payload { .. }), "{err}");
    }
}
