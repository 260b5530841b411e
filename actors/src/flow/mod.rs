//! Flows: one operation on a mesh, as an ordered list of idempotent tasks.
//!
//! A flow is planned whole when its command is accepted (rows in `flow` and `task`), then run by
//! the [`FlowRunner`]: each task not yet succeeded is run, with retries and backoff for transient
//! failures; every transition is persisted and announced as an event. Because tasks are
//! idempotent, a flow interrupted anywhere — a killed worker, a lost lease — is resumed by running
//! it again.
//!
//! Task names say what they do and where: `control-plane:east`, `link:east:west` (east holds
//! west's remote secret), `verify`. [`TaskKind`] parses them back.

pub(crate) mod resources;
pub mod runner;
mod tasks;
pub mod upgrade;

use std::collections::BTreeSet;
use std::fmt;

use mesh_core::ClusterName;
use mesh_core::plan::Stage;
use mesh_core::spec::MeshSpec;

pub use runner::{
    DEFAULT_MAX_CONCURRENT_FLOWS, FlowInput, FlowRunner, RunnerConfig, load_spec, spec_of,
};

/// Flow definition names (`flow.def_name`).
pub mod defs {
    /// Install a new mesh into its clusters and link them.
    pub const INSTALL: &str = "install";
    /// Re-apply the mesh configuration to every member.
    pub const RECONFIGURE: &str = "reconfigure";
    /// Install a new member and link it with the others.
    pub const ADD_CLUSTER: &str = "add-cluster";
    /// Unlink a member from the others and uninstall it.
    pub const REMOVE_CLUSTER: &str = "remove-cluster";
    /// Uninstall the mesh from every member and forget it.
    pub const DELETE: &str = "delete";
    /// Roll a batch of Istio resource changes out to every target cluster, all or nothing.
    pub const APPLY_RESOURCES: &str = "apply-resources";
    /// Bring a cluster's managed Istio resources back to the desired state after drift.
    pub const REPAIR_DRIFT: &str = "repair-drift";
    /// Start a canary upgrade: new revision everywhere, namespaces moved in gated batches.
    pub const UPGRADE_CANARY: &str = "upgrade-canary";
    /// Keep the canary's new revision and remove the old one.
    pub const CANARY_CONFIRM: &str = "canary-confirm";
    /// Go back from a canary to the old revision and remove the new one.
    pub const CANARY_ROLLBACK: &str = "canary-rollback";
    /// Upgrade the control plane in place, cluster by cluster.
    pub const UPGRADE_IN_PLACE: &str = "upgrade-in-place";

    /// Whether a flow of definition `def_name` can change what drift supervision watches: a
    /// mesh's members or its desired Istio resources. Configuration changes, repairs and
    /// upgrades cannot; an unknown name counts as one that can.
    pub fn changes_watched_state(def_name: &str) -> bool {
        !matches!(
            def_name,
            RECONFIGURE
                | REPAIR_DRIFT
                | UPGRADE_CANARY
                | CANARY_CONFIRM
                | CANARY_ROLLBACK
                | UPGRADE_IN_PLACE
        )
    }
}

/// What one task does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskKind {
    /// Make sure the mesh's root CA and every member's intermediate CA exist.
    Certificates,
    /// Apply a member's trust and control-plane objects (namespace, `cacerts`, Sail `Istio`).
    ControlPlane(ClusterName),
    /// Wait until a member's control plane is ready.
    WaitControlPlane(ClusterName),
    /// Apply a member's east-west gateway and wait for its load-balancer address.
    Gateway(ClusterName),
    /// Apply a member's mesh-wide configuration (Gateways, Telemetry) and injection labels.
    MeshConfig(ClusterName),
    /// Create the least-privilege reader in a member and capture its token.
    Reader(ClusterName),
    /// Give `holder` a remote secret for `source`.
    Link {
        /// The cluster whose istiod reads the other.
        holder: ClusterName,
        /// The cluster being read.
        source: ClusterName,
    },
    /// Take `holder`'s remote secret for `source` away.
    Unlink {
        /// The cluster that held the secret.
        holder: ClusterName,
        /// The cluster it gave access to.
        source: ClusterName,
    },
    /// Wait until every istiod reports every peer it should read as synced; then the mesh runs.
    Verify,
    /// Remove a member's records (membership, gateway address, its CA and reader token).
    DropMember(ClusterName),
    /// Delete everything mesh-manager wrote into a member.
    Uninstall(ClusterName),
    /// Forget the mesh: its secrets, load-balancer records, its row.
    Forget,
    /// Write the flow's Istio resource changes into a cluster (only objects that differ).
    ApplyResources(ClusterName),
    /// Make a cluster's managed Istio resources equal the desired state (drift repair).
    SyncResources(ClusterName),
    /// Compensation: put the flow's Istio resources in a cluster back to their previous version.
    RestoreResources(ClusterName),
    /// Compensation: put the mesh's desired Istio resources back to their previous version.
    RestoreDesired,
    /// A step of an upgrade or its rollback.
    Upgrade(upgrade::UpgradeTask),
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificates => f.write_str("certificates"),
            Self::ControlPlane(c) => write!(f, "control-plane:{c}"),
            Self::WaitControlPlane(c) => write!(f, "wait-control-plane:{c}"),
            Self::Gateway(c) => write!(f, "gateway:{c}"),
            Self::MeshConfig(c) => write!(f, "mesh-config:{c}"),
            Self::Reader(c) => write!(f, "reader:{c}"),
            Self::Link { holder, source } => write!(f, "link:{holder}:{source}"),
            Self::Unlink { holder, source } => write!(f, "unlink:{holder}:{source}"),
            Self::Verify => f.write_str("verify"),
            Self::DropMember(c) => write!(f, "drop-member:{c}"),
            Self::Uninstall(c) => write!(f, "uninstall:{c}"),
            Self::Forget => f.write_str("forget"),
            Self::ApplyResources(c) => write!(f, "resources:{c}"),
            Self::SyncResources(c) => write!(f, "sync-resources:{c}"),
            Self::RestoreResources(c) => write!(f, "restore-resources:{c}"),
            Self::RestoreDesired => f.write_str("restore-desired"),
            Self::Upgrade(step) => step.fmt(f),
        }
    }
}

impl TaskKind {
    /// Parses a task name written by [`fmt::Display`].
    pub fn parse(name: &str) -> Option<Self> {
        let mut parts = name.split(':');
        let head = parts.next()?;
        let mut cluster = || parts.next().and_then(|c| ClusterName::new(c).ok());
        let kind = match head {
            "certificates" => Self::Certificates,
            "control-plane" => Self::ControlPlane(cluster()?),
            "wait-control-plane" => Self::WaitControlPlane(cluster()?),
            "gateway" => Self::Gateway(cluster()?),
            "mesh-config" => Self::MeshConfig(cluster()?),
            "reader" => Self::Reader(cluster()?),
            "link" => {
                let holder = cluster()?;
                let source = cluster()?;
                Self::Link { holder, source }
            }
            "unlink" => {
                let holder = cluster()?;
                let source = cluster()?;
                Self::Unlink { holder, source }
            }
            "verify" => Self::Verify,
            "drop-member" => Self::DropMember(cluster()?),
            "uninstall" => Self::Uninstall(cluster()?),
            "forget" => Self::Forget,
            "resources" => Self::ApplyResources(cluster()?),
            "sync-resources" => Self::SyncResources(cluster()?),
            "restore-resources" => Self::RestoreResources(cluster()?),
            "restore-desired" => Self::RestoreDesired,
            _ => return upgrade::UpgradeTask::parse(name).map(Self::Upgrade),
        };
        Some(kind)
    }

    /// The member cluster the task works on, if one.
    pub fn cluster(&self) -> Option<&ClusterName> {
        match self {
            Self::ControlPlane(c)
            | Self::WaitControlPlane(c)
            | Self::Gateway(c)
            | Self::MeshConfig(c)
            | Self::Reader(c)
            | Self::Uninstall(c)
            | Self::DropMember(c)
            | Self::ApplyResources(c)
            | Self::SyncResources(c)
            | Self::RestoreResources(c) => Some(c),
            Self::Link { holder, .. } | Self::Unlink { holder, .. } => Some(holder),
            Self::Certificates | Self::Verify | Self::Forget | Self::RestoreDesired => None,
            Self::Upgrade(step) => step.cluster(),
        }
    }

    /// Whether the task undoes what a failed flow did (it runs only after a failure).
    pub fn is_compensation(&self) -> bool {
        match self {
            Self::Upgrade(step) => step.is_compensation(),
            other => matches!(other, Self::RestoreResources(_) | Self::RestoreDesired),
        }
    }
}

/// The compensating tasks of a flow whose task `failed` failed, or `None` when the flow has no
/// way back (it then ends `Failed`). `tasks` are the flow's tasks as recorded (name, status).
///
/// A resource rollout restores every cluster whose write task started (succeeded, failed or was
/// running), then the desired state, so the flow ends `RolledBack` with everything as before.
pub fn rollback_tasks(
    def_name: &str,
    tasks: &[(String, mesh_core::TaskStatus)],
    failed: &TaskKind,
) -> Option<Vec<TaskKind>> {
    use mesh_core::TaskStatus;
    match def_name {
        defs::APPLY_RESOURCES => {
            let mut restore: Vec<TaskKind> = tasks
                .iter()
                .filter(|(_, status)| {
                    matches!(
                        status,
                        TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Running
                    )
                })
                .filter_map(|(name, _)| match TaskKind::parse(name) {
                    Some(TaskKind::ApplyResources(cluster)) => {
                        Some(TaskKind::RestoreResources(cluster))
                    }
                    _ => None,
                })
                .collect();
            if let TaskKind::ApplyResources(cluster) = failed {
                let restore_failed = TaskKind::RestoreResources(cluster.clone());
                if !restore.contains(&restore_failed) {
                    restore.push(restore_failed);
                }
            }
            restore.push(TaskKind::RestoreDesired);
            Some(restore)
        }
        defs::UPGRADE_CANARY | defs::UPGRADE_IN_PLACE => {
            upgrade::rollback_tasks(def_name, tasks, failed)
        }
        _ => None,
    }
}

/// The tasks that roll a batch of Istio resource changes out to `clusters`.
pub fn apply_resources_tasks(clusters: &[ClusterName]) -> Vec<TaskKind> {
    clusters
        .iter()
        .cloned()
        .map(TaskKind::ApplyResources)
        .collect()
}

/// Members in install order: primaries first (remotes need their primary's gateway address).
fn install_order(spec: &MeshSpec) -> Vec<ClusterName> {
    spec.primaries()
        .into_iter()
        .chain(spec.remotes())
        .map(|m| m.name.clone())
        .collect()
}

/// The tasks that install a mesh.
pub fn install_tasks(spec: &MeshSpec) -> Vec<TaskKind> {
    let mut tasks = vec![TaskKind::Certificates];
    for cluster in install_order(spec) {
        tasks.push(TaskKind::ControlPlane(cluster.clone()));
        tasks.push(TaskKind::WaitControlPlane(cluster.clone()));
        if spec.needs_east_west_gateway(&cluster) {
            tasks.push(TaskKind::Gateway(cluster.clone()));
        }
        tasks.push(TaskKind::MeshConfig(cluster));
    }
    tasks.extend(link_tasks(spec));
    tasks.push(TaskKind::Verify);
    tasks
}

/// The reader and link tasks of every remote-secret pair.
fn link_tasks(spec: &MeshSpec) -> Vec<TaskKind> {
    let targets = mesh_core::plan::remote_secret_targets(spec);
    let mut sources: Vec<ClusterName> = targets.iter().map(|(_, source)| source.clone()).collect();
    sources.sort();
    sources.dedup();
    let mut tasks: Vec<TaskKind> = sources.into_iter().map(TaskKind::Reader).collect();
    tasks.extend(
        targets
            .into_iter()
            .map(|(holder, source)| TaskKind::Link { holder, source }),
    );
    tasks
}

/// The tasks that re-apply a changed configuration: per cluster, only the stages the change
/// touched (see [`mesh_core::plan::changed_stages`]) — a new sampling rate rewrites the mesh-wide
/// `Telemetry` and leaves the control plane alone. No touched stage, no task.
pub fn reconfigure_tasks(spec: &MeshSpec, stages: &BTreeSet<Stage>) -> Vec<TaskKind> {
    let control_plane = stages.contains(&Stage::Trust) || stages.contains(&Stage::ControlPlane);
    let gateway = stages.contains(&Stage::EastWestGateway);
    let mesh_config = stages.contains(&Stage::MeshConfig) || stages.contains(&Stage::Injection);
    let mut tasks = Vec::new();
    for cluster in install_order(spec) {
        if control_plane {
            tasks.push(TaskKind::ControlPlane(cluster.clone()));
            tasks.push(TaskKind::WaitControlPlane(cluster.clone()));
        }
        if gateway && spec.needs_east_west_gateway(&cluster) {
            tasks.push(TaskKind::Gateway(cluster.clone()));
        }
        if mesh_config {
            tasks.push(TaskKind::MeshConfig(cluster));
        }
    }
    tasks
}

/// The tasks that add `added` to a mesh whose spec already lists it: install it, give existing
/// members what the larger mesh needs of them (a gateway when a second network appears), link
/// every pair it is part of, verify.
pub fn add_cluster_tasks(spec: &MeshSpec, added: &ClusterName) -> Vec<TaskKind> {
    let mut tasks = vec![
        TaskKind::Certificates,
        TaskKind::ControlPlane(added.clone()),
        TaskKind::WaitControlPlane(added.clone()),
    ];
    for cluster in install_order(spec) {
        if spec.needs_east_west_gateway(&cluster) {
            tasks.push(TaskKind::Gateway(cluster.clone()));
        }
        if &cluster == added || spec.needs_east_west_gateway(&cluster) {
            tasks.push(TaskKind::MeshConfig(cluster));
        }
    }
    let involved = |holder: &ClusterName, source: &ClusterName| holder == added || source == added;
    let targets: Vec<(ClusterName, ClusterName)> = mesh_core::plan::remote_secret_targets(spec)
        .into_iter()
        .filter(|(h, s)| involved(h, s))
        .collect();
    let mut sources: Vec<ClusterName> = targets.iter().map(|(_, s)| s.clone()).collect();
    sources.sort();
    sources.dedup();
    tasks.extend(sources.into_iter().map(TaskKind::Reader));
    tasks.extend(
        targets
            .into_iter()
            .map(|(holder, source)| TaskKind::Link { holder, source }),
    );
    tasks.push(TaskKind::Verify);
    tasks
}

/// The tasks that take `removed` out of a mesh (whose spec still lists it): other members drop
/// their remote secrets for it, it is uninstalled, its records go, the rest is verified.
pub fn remove_cluster_tasks(spec: &MeshSpec, removed: &ClusterName) -> Vec<TaskKind> {
    let mut tasks: Vec<TaskKind> = mesh_core::plan::remote_secret_targets(spec)
        .into_iter()
        .filter(|(holder, source)| source == removed && holder != removed)
        .map(|(holder, source)| TaskKind::Unlink { holder, source })
        .collect();
    tasks.push(TaskKind::Uninstall(removed.clone()));
    tasks.push(TaskKind::DropMember(removed.clone()));
    tasks.push(TaskKind::Verify);
    tasks
}

/// The tasks that delete a mesh: remotes first, then primaries, then the records.
pub fn delete_tasks(spec: &MeshSpec) -> Vec<TaskKind> {
    let mut order = install_order(spec);
    order.reverse();
    let mut tasks: Vec<TaskKind> = order.into_iter().map(TaskKind::Uninstall).collect();
    tasks.push(TaskKind::Forget);
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::spec::{MemberSpec, MeshConfig};
    use mesh_core::{ClusterRole, MeshMode, MeshName, TenantId};

    fn spec(mode: MeshMode, members: &[(&str, ClusterRole)]) -> MeshSpec {
        MeshSpec {
            tenant: TenantId::new("t").expect("valid"),
            name: MeshName::new("demo").expect("valid"),
            title: "demo".into(),
            region: "r".into(),
            mode,
            version: "1.30.3".into(),
            clusters: members
                .iter()
                .map(|(n, r)| MemberSpec::new(ClusterName::new(*n).expect("valid"), *r))
                .collect(),
            config: MeshConfig::default(),
        }
    }

    #[test]
    fn only_flows_that_change_members_or_resources_wake_drift_supervision() {
        for def_name in [
            defs::INSTALL,
            defs::ADD_CLUSTER,
            defs::REMOVE_CLUSTER,
            defs::DELETE,
            defs::APPLY_RESOURCES,
            "a-definition-added-later",
        ] {
            assert!(defs::changes_watched_state(def_name), "{def_name}");
        }
        for def_name in [
            defs::RECONFIGURE,
            defs::REPAIR_DRIFT,
            defs::UPGRADE_CANARY,
            defs::CANARY_CONFIRM,
            defs::CANARY_ROLLBACK,
            defs::UPGRADE_IN_PLACE,
        ] {
            assert!(!defs::changes_watched_state(def_name), "{def_name}");
        }
    }

    #[test]
    fn task_names_round_trip() {
        let c = ClusterName::new("east").expect("valid");
        let w = ClusterName::new("west").expect("valid");
        for kind in [
            TaskKind::Certificates,
            TaskKind::ControlPlane(c.clone()),
            TaskKind::WaitControlPlane(c.clone()),
            TaskKind::Gateway(c.clone()),
            TaskKind::MeshConfig(c.clone()),
            TaskKind::Reader(c.clone()),
            TaskKind::Link {
                holder: c.clone(),
                source: w,
            },
            TaskKind::Verify,
            TaskKind::Uninstall(c),
            TaskKind::Forget,
        ] {
            assert_eq!(TaskKind::parse(&kind.to_string()), Some(kind));
        }
        assert_eq!(TaskKind::parse("link:east"), None);
        assert_eq!(TaskKind::parse("nonsense"), None);
    }

    #[test]
    fn multi_primary_links_every_pair_both_ways() {
        let spec = spec(
            MeshMode::MultiPrimary,
            &[
                ("a", ClusterRole::Master),
                ("b", ClusterRole::Master),
                ("c", ClusterRole::Master),
            ],
        );
        let names: Vec<String> = install_tasks(&spec)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(names.iter().filter(|n| n.starts_with("link:")).count(), 6);
        assert_eq!(names.iter().filter(|n| n.starts_with("reader:")).count(), 3);
        assert_eq!(names.first().map(String::as_str), Some("certificates"));
        assert_eq!(names.last().map(String::as_str), Some("verify"));
    }

    #[test]
    fn primary_remote_installs_the_primary_first_and_deletes_it_last() {
        let spec = spec(
            MeshMode::PrimaryRemote,
            &[
                ("r1", ClusterRole::Remote),
                ("p", ClusterRole::Master),
                ("r2", ClusterRole::Remote),
            ],
        );
        let install: Vec<String> = install_tasks(&spec)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(install[1], "control-plane:p");
        assert!(
            install.contains(&"link:p:r1".to_owned()) && install.contains(&"link:p:r2".to_owned())
        );
        assert!(!install.iter().any(|n| n.starts_with("link:r1")));
        let delete: Vec<String> = delete_tasks(&spec)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(delete[delete.len() - 2], "uninstall:p");
        assert_eq!(delete.last().map(String::as_str), Some("forget"));
    }

    #[test]
    fn a_single_cluster_mesh_has_no_links() {
        let spec = spec(MeshMode::Single, &[("only", ClusterRole::Master)]);
        let names: Vec<String> = install_tasks(&spec)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names,
            [
                "certificates",
                "control-plane:only",
                "wait-control-plane:only",
                "mesh-config:only",
                "verify"
            ]
        );
    }
}
