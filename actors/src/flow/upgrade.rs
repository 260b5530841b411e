//! Upgrades and their rollback, as flows of idempotent tasks.
//!
//! Inputs: the mesh spec, the [`UpgradeState`] recorded in `mesh.state` when the command was
//! accepted (versions, strategy, canary options), the clusters. Outputs: objects written to the
//! clusters, `mesh.version` / `mesh.last_version` / `mesh.state` updates.
//!
//! - **Canary** ([`defs::UPGRADE_CANARY`]): pre-checks; per cluster (primaries first) the Sail
//!   `Istio` turns `RevisionBased` at the target version, so a new `IstioRevision` runs beside the
//!   old one (the old one kept by a long `inactiveRevisionDeletionGracePeriodSeconds` until
//!   confirm or rollback); then per cluster the injection namespaces move in batches
//!   (`istio.io/rev=<new>`, `istio-injection` removed, workloads restarted through a pod-template
//!   annotation), each batch followed by a health gate (the new revision ready, the moved
//!   workloads available, the moved services' error ratio within the threshold) and the pause;
//!   the east-west gateway moves last. The mesh then waits in status `Canary`.
//! - **Confirm** ([`defs::CANARY_CONFIRM`]): `mesh.version` becomes the target and
//!   `mesh.last_version` the old version first (from then on the new revision is the mesh's),
//!   then each cluster gets the full plan of the new version and loses the old revision.
//! - **Rollback** ([`defs::CANARY_ROLLBACK`], and the compensation of a failed canary or in-place
//!   flow): remotes first (a remote never ahead of its primary), each cluster gets the full plan
//!   of the old version back (namespaces, gateway, `Istio`), workloads restart onto the old
//!   revision, the new revision is deleted.
//! - **In place** ([`defs::UPGRADE_IN_PLACE`]): pre-checks; cluster by cluster, primaries before
//!   remotes, the `Istio` moves to the target version and workloads restart; then the version is
//!   committed.
//!
//! Every task reads the upgrade from `mesh.state`, so a worker that takes a flow over resumes at
//! its current task with the same inputs; writes are server-side applies, label merges, deletes
//! of named objects and annotation values naming the revision, so re-running a task changes
//! nothing more.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use mesh_clusters::ObjectRef;
use mesh_core::plan::{self, PlannedChange, Stage, UpdateStrategy};
use mesh_core::spec::MeshSpec;
use mesh_core::upgrade::{
    self as rules, CanaryOptions, ClusterObservation, GateReading, GateVerdict,
    RESTARTED_FOR_ANNOTATION, UpgradeKind,
};
use mesh_core::{ClusterName, IstioVersion, TaskStatus};
use mesh_schema::store::mesh::MeshStatusChange;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::tasks::{MeshState, TaskContext, corrupt};
use super::{TaskKind, defs, install_order};
use crate::error::ActorError;

/// How long Sail keeps an unused old revision while a canary waits for confirm or rollback
/// (mesh-manager deletes it itself when the canary ends).
const CANARY_GRACE_SECONDS: u64 = 30 * 24 * 3600;

/// Where an upgrade stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradePhase {
    /// Pre-checks, new revisions, namespaces moving (or the in-place replacement).
    Moving,
    /// Every namespace on the new revision, the old one kept: waiting for confirm or rollback.
    Canary,
    /// Removing the old revision.
    Confirming,
    /// Going back to the old revision.
    RollingBack,
}

/// The upgrade under way, recorded in `mesh.state` when the command is accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeState {
    /// Canary or in place.
    pub kind: UpgradeKind,
    /// The version running before.
    pub from: String,
    /// The target version.
    pub to: String,
    /// Whether the control plane ran revision-based before.
    pub from_revision_based: bool,
    /// Batches, pause, thresholds.
    #[serde(default)]
    pub options: CanaryOptions,
    /// Where it stands.
    pub phase: UpgradePhase,
}

impl UpgradeState {
    fn version(&self, text: &str) -> Result<IstioVersion, ActorError> {
        IstioVersion::parse(text).map_err(|e| ActorError::Message(e.to_string()))
    }

    /// The strategy the control plane ran with before.
    pub fn from_strategy(&self) -> UpdateStrategy {
        if self.from_revision_based {
            UpdateStrategy::RevisionBased
        } else {
            UpdateStrategy::InPlace
        }
    }

    /// The strategy of the target control plane.
    pub fn to_strategy(&self) -> UpdateStrategy {
        match self.kind {
            UpgradeKind::Canary => UpdateStrategy::RevisionBased,
            UpgradeKind::InPlace => self.from_strategy(),
        }
    }

    /// The Sail revision running before.
    pub fn from_revision(&self) -> Result<String, ActorError> {
        Ok(self
            .from_strategy()
            .revision_name(&self.version(&self.from)?))
    }

    /// The Sail revision of the target.
    pub fn to_revision(&self) -> Result<String, ActorError> {
        Ok(self.to_strategy().revision_name(&self.version(&self.to)?))
    }
}

/// What `mesh.state` says about upgrades: the upgrade under way, if any, and whether the control
/// plane runs revision-based.
pub fn recorded_upgrade(state: Option<&str>) -> (Option<UpgradeState>, bool) {
    let state = MeshState::parse(state);
    (state.upgrade, state.revision_based)
}

/// `mesh.state` with `upgrade` recorded (everything else kept).
pub fn with_upgrade(
    state: Option<&str>,
    upgrade: Option<UpgradeState>,
) -> Result<String, ActorError> {
    let mut state = MeshState::parse(state);
    state.upgrade = upgrade;
    serde_json::to_string(&state).map_err(|e| ActorError::Message(e.to_string()))
}

/// One step of an upgrade flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeTask {
    /// Every cluster reachable, the running revision healthy, nothing foreign in the way.
    Precheck,
    /// Run the target revision beside the old one in a cluster and wait until it is ready.
    NewRevision(ClusterName),
    /// Move one batch (numbered from 1) of a cluster's namespaces to the new revision.
    MoveBatch {
        /// The cluster.
        cluster: ClusterName,
        /// The batch, from 1.
        batch: usize,
    },
    /// Judge the new revision after a batch (batch 0: the control plane alone).
    HealthGate {
        /// The cluster.
        cluster: ClusterName,
        /// The batch just moved.
        batch: usize,
    },
    /// Move a cluster's east-west gateway to the new revision.
    MoveGateway(ClusterName),
    /// Every namespace moved: the mesh waits for confirm or rollback.
    CanaryReady,
    /// Record the target as the mesh's version and the old one as its rollback target.
    CommitVersion,
    /// Give a cluster the full plan of the target and remove the old revision.
    Confirm(ClusterName),
    /// Replace a cluster's control plane in place with the target version.
    InPlace(ClusterName),
    /// Take a cluster back to the old version (an operator's rollback).
    Revert(ClusterName),
    /// Take a cluster back to the old version after a failure (compensation).
    Undo(ClusterName),
    /// The upgrade is over (confirmed, rolled back or committed).
    EndUpgrade,
    /// The upgrade is over because it was undone (compensation).
    EndUndone,
}

impl fmt::Display for UpgradeTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Precheck => f.write_str("precheck"),
            Self::NewRevision(c) => write!(f, "new-revision:{c}"),
            Self::MoveBatch { cluster, batch } => write!(f, "move-batch:{cluster}:{batch}"),
            Self::HealthGate { cluster, batch } => write!(f, "health-gate:{cluster}:{batch}"),
            Self::MoveGateway(c) => write!(f, "move-gateway:{c}"),
            Self::CanaryReady => f.write_str("canary-ready"),
            Self::CommitVersion => f.write_str("commit-version"),
            Self::Confirm(c) => write!(f, "confirm:{c}"),
            Self::InPlace(c) => write!(f, "in-place:{c}"),
            Self::Revert(c) => write!(f, "revert:{c}"),
            Self::Undo(c) => write!(f, "undo:{c}"),
            Self::EndUpgrade => f.write_str("end-upgrade"),
            Self::EndUndone => f.write_str("end-undone-upgrade"),
        }
    }
}

impl UpgradeTask {
    /// Parses a name written by [`fmt::Display`].
    pub fn parse(name: &str) -> Option<Self> {
        let mut parts = name.split(':');
        let head = parts.next()?;
        let cluster = parts.next().and_then(|c| ClusterName::new(c).ok());
        let number = parts.next().and_then(|n| n.parse::<usize>().ok());
        if parts.next().is_some() {
            return None;
        }
        let task = match (head, cluster, number) {
            ("precheck", None, None) => Self::Precheck,
            ("new-revision", Some(c), None) => Self::NewRevision(c),
            ("move-batch", Some(cluster), Some(batch)) => Self::MoveBatch { cluster, batch },
            ("health-gate", Some(cluster), Some(batch)) => Self::HealthGate { cluster, batch },
            ("move-gateway", Some(c), None) => Self::MoveGateway(c),
            ("canary-ready", None, None) => Self::CanaryReady,
            ("commit-version", None, None) => Self::CommitVersion,
            ("confirm", Some(c), None) => Self::Confirm(c),
            ("in-place", Some(c), None) => Self::InPlace(c),
            ("revert", Some(c), None) => Self::Revert(c),
            ("undo", Some(c), None) => Self::Undo(c),
            ("end-upgrade", None, None) => Self::EndUpgrade,
            ("end-undone-upgrade", None, None) => Self::EndUndone,
            _ => return None,
        };
        Some(task)
    }

    /// The cluster the step works on, if one.
    pub fn cluster(&self) -> Option<&ClusterName> {
        match self {
            Self::NewRevision(c)
            | Self::MoveGateway(c)
            | Self::Confirm(c)
            | Self::InPlace(c)
            | Self::Revert(c)
            | Self::Undo(c) => Some(c),
            Self::MoveBatch { cluster, .. } | Self::HealthGate { cluster, .. } => Some(cluster),
            Self::Precheck | Self::CanaryReady | Self::CommitVersion | Self::EndUpgrade => None,
            Self::EndUndone => None,
        }
    }

    /// Whether the step undoes a failed flow (it runs only after a failure).
    pub fn is_compensation(&self) -> bool {
        matches!(self, Self::Undo(_) | Self::EndUndone)
    }
}

fn step(task: UpgradeTask) -> TaskKind {
    TaskKind::Upgrade(task)
}

/// The tasks of a canary upgrade with `options`.
pub fn canary_tasks(spec: &MeshSpec, options: &CanaryOptions) -> Vec<TaskKind> {
    let order = install_order(spec);
    let mut tasks = vec![step(UpgradeTask::Precheck)];
    tasks.extend(
        order
            .iter()
            .map(|c| step(UpgradeTask::NewRevision(c.clone()))),
    );
    for cluster in &order {
        let namespaces = spec.injection_namespaces(cluster);
        let batches = rules::batches(&namespaces, options.batch_size).len();
        if batches == 0 {
            tasks.push(step(UpgradeTask::HealthGate {
                cluster: cluster.clone(),
                batch: 0,
            }));
        }
        for batch in 1..=batches {
            tasks.push(step(UpgradeTask::MoveBatch {
                cluster: cluster.clone(),
                batch,
            }));
            tasks.push(step(UpgradeTask::HealthGate {
                cluster: cluster.clone(),
                batch,
            }));
        }
        if spec.needs_east_west_gateway(cluster) {
            tasks.push(step(UpgradeTask::MoveGateway(cluster.clone())));
        }
    }
    tasks.push(step(UpgradeTask::CanaryReady));
    tasks
}

/// The tasks that confirm a canary.
pub fn confirm_tasks(spec: &MeshSpec) -> Vec<TaskKind> {
    let mut tasks = vec![step(UpgradeTask::CommitVersion)];
    tasks.extend(
        install_order(spec)
            .into_iter()
            .map(|c| step(UpgradeTask::Confirm(c))),
    );
    tasks.push(step(UpgradeTask::EndUpgrade));
    tasks
}

/// The tasks that roll a canary back on an operator's request: remotes first.
pub fn revert_tasks(spec: &MeshSpec) -> Vec<TaskKind> {
    let mut order = install_order(spec);
    order.reverse();
    let mut tasks: Vec<TaskKind> = order
        .into_iter()
        .map(|c| step(UpgradeTask::Revert(c)))
        .collect();
    tasks.push(step(UpgradeTask::EndUpgrade));
    tasks
}

/// The tasks of an in-place upgrade: primaries before remotes.
pub fn in_place_tasks(spec: &MeshSpec) -> Vec<TaskKind> {
    let mut tasks = vec![step(UpgradeTask::Precheck)];
    tasks.extend(
        install_order(spec)
            .into_iter()
            .map(|c| step(UpgradeTask::InPlace(c))),
    );
    tasks.push(step(UpgradeTask::CommitVersion));
    tasks.push(step(UpgradeTask::EndUpgrade));
    tasks
}

/// The compensation of an upgrade flow whose task `failed` failed: every cluster the flow works
/// on goes back to the old version (remotes first, the reverse of the flow's order), then the
/// upgrade is closed. `None` when nothing needs undoing (failed pre-checks clear the upgrade
/// themselves; a failed confirm or rollback is left for the operator to retry).
pub fn rollback_tasks(
    def_name: &str,
    tasks: &[(String, TaskStatus)],
    failed: &TaskKind,
) -> Option<Vec<TaskKind>> {
    if !matches!(def_name, defs::UPGRADE_CANARY | defs::UPGRADE_IN_PLACE)
        || matches!(failed, TaskKind::Upgrade(UpgradeTask::Precheck))
    {
        return None;
    }
    let mut clusters: Vec<ClusterName> = Vec::new();
    for (name, _) in tasks {
        if let Some(TaskKind::Upgrade(UpgradeTask::NewRevision(c) | UpgradeTask::InPlace(c))) =
            TaskKind::parse(name)
            && !clusters.contains(&c)
        {
            clusters.push(c);
        }
    }
    clusters.reverse();
    let mut undo: Vec<TaskKind> = clusters
        .into_iter()
        .map(|c| step(UpgradeTask::Undo(c)))
        .collect();
    undo.push(step(UpgradeTask::EndUndone));
    Some(undo)
}

/// Why an upgrade step stopped (not retried: the flow rolls back).
fn stopped(cluster: &ClusterName, reason: impl Into<String>) -> ActorError {
    ActorError::UpgradeStopped {
        cluster: cluster.to_string(),
        reason: reason.into(),
    }
}

fn istio_ref() -> ObjectRef {
    ObjectRef {
        api_version: "sailoperator.io/v1".into(),
        kind: "Istio".into(),
        namespace: None,
        name: plan::ISTIO_RESOURCE.into(),
    }
}

fn revision_ref(revision: &str) -> ObjectRef {
    ObjectRef {
        api_version: "sailoperator.io/v1".into(),
        kind: "IstioRevision".into(),
        namespace: None,
        name: revision.into(),
    }
}

/// The `Ready` condition of a Sail object's status: (ready, message).
fn ready_condition(object: &Value) -> (bool, String) {
    object["status"]["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == "Ready"))
        .map_or((false, "no Ready condition reported".into()), |c| {
            (
                c["status"] == "True",
                c["message"].as_str().unwrap_or("").to_owned(),
            )
        })
}

impl TaskContext<'_> {
    /// Runs one upgrade step; returns a short description of what it did.
    pub(super) async fn run_upgrade(&self, task: &UpgradeTask) -> Result<String, ActorError> {
        if matches!(task, UpgradeTask::EndUpgrade | UpgradeTask::EndUndone) {
            // The only step that may find no upgrade recorded: its own earlier run closed it.
            return self.end_upgrade().await;
        }
        let upgrade = self.upgrade_state().await?;
        match task {
            UpgradeTask::Precheck => self.precheck(&upgrade).await,
            UpgradeTask::NewRevision(c) => self.new_revision(&upgrade, c).await,
            UpgradeTask::MoveBatch { cluster, batch } => {
                self.move_batch(&upgrade, cluster, *batch).await
            }
            UpgradeTask::HealthGate { cluster, batch } => {
                self.health_gate(&upgrade, cluster, *batch).await
            }
            UpgradeTask::MoveGateway(c) => self.move_gateway(&upgrade, c).await,
            UpgradeTask::CanaryReady => {
                self.set_phase(&upgrade, UpgradePhase::Canary).await?;
                Ok(format!(
                    "every namespace runs on Istio {}; confirm or roll back",
                    upgrade.to
                ))
            }
            UpgradeTask::CommitVersion => self.commit_version(&upgrade).await,
            UpgradeTask::Confirm(c) => self.confirm(&upgrade, c).await,
            UpgradeTask::InPlace(c) => self.in_place(&upgrade, c).await,
            UpgradeTask::Revert(c) | UpgradeTask::Undo(c) => self.revert(&upgrade, c).await,
            UpgradeTask::EndUpgrade | UpgradeTask::EndUndone => self.end_upgrade().await,
        }
    }

    async fn upgrade_state(&self) -> Result<UpgradeState, ActorError> {
        self.mesh_state()
            .await?
            .upgrade
            .ok_or_else(|| corrupt(self.spec, "no upgrade is recorded for the mesh"))
    }

    async fn set_phase(
        &self,
        upgrade: &UpgradeState,
        phase: UpgradePhase,
    ) -> Result<(), ActorError> {
        let mut state = self.mesh_state().await?;
        state.upgrade = Some(UpgradeState {
            phase,
            ..upgrade.clone()
        });
        self.save_state(&state, MeshStatusChange::default()).await
    }

    /// The spec at `version`.
    fn spec_at(&self, version: &str) -> MeshSpec {
        MeshSpec {
            version: version.to_owned(),
            ..self.spec.clone()
        }
    }

    /// Applies the parts of `cluster`'s plan at `version` with `strategy` that belong to
    /// `stages`; `patch` may adjust an object before it is applied.
    async fn apply_plan(
        &self,
        cluster: &ClusterName,
        version: &str,
        strategy: UpdateStrategy,
        stages: &[Stage],
        patch: impl Fn(&mut Value),
    ) -> Result<usize, ActorError> {
        let spec = self.spec_at(version);
        let changes = self.plan_with(cluster, &spec, strategy, stages).await?;
        let connection = self.connections.get(cluster.as_str()).await?;
        let mut applied = 0;
        for change in changes.iter().filter(|c| stages.contains(&c.stage())) {
            match change {
                PlannedChange::Object(object) => {
                    let mut body = object.body.clone();
                    patch(&mut body);
                    connection.ops.apply(&body).await?;
                }
                PlannedChange::NamespaceLabels(labels) => {
                    let patch = labels.merge_patch();
                    connection
                        .ops
                        .patch_namespace_metadata(
                            labels.namespace.as_str(),
                            &patch["metadata"]["labels"],
                            &serde_json::json!({}),
                        )
                        .await?;
                }
            }
            applied += 1;
        }
        Ok(applied)
    }

    fn is_primary(&self, cluster: &ClusterName) -> bool {
        self.spec.member(cluster).is_some_and(|m| m.is_primary())
    }

    /// Waits until `revision` is ready in `cluster` (and its istiod available on a primary);
    /// a time-out stops the upgrade instead of being retried.
    async fn wait_revision(&self, cluster: &ClusterName, revision: &str) -> Result<(), ActorError> {
        let connection = self.connections.get(cluster.as_str()).await?;
        let timeout = self.config.wait_timeout;
        let waited = async {
            connection
                .ops
                .wait_custom_ready("sailoperator.io/v1", "IstioRevision", revision, timeout)
                .await?;
            if self.is_primary(cluster) {
                connection
                    .ops
                    .wait_deployment_available(
                        "istio-system",
                        &plan::istiod_service(revision),
                        timeout,
                    )
                    .await?;
            }
            Ok::<(), mesh_clusters::OpsError>(())
        };
        match waited.await {
            Ok(()) => Ok(()),
            Err(mesh_clusters::OpsError::Timeout { what, seconds, .. }) => Err(stopped(
                cluster,
                format!(
                    "revision {revision} did not become ready within {seconds}s (waiting for {what})"
                ),
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn observe(&self, cluster: &ClusterName) -> Result<ClusterObservation, ActorError> {
        let connection = self.connections.get(cluster.as_str()).await?;
        let ops = &connection.ops;
        let mut seen = ClusterObservation {
            cluster: cluster.to_string(),
            ..ClusterObservation::default()
        };
        let istio = ops.get(&istio_ref()).await?;
        let (ready, detail) = match &istio {
            Some(istio) => ready_condition(&serde_json::to_value(istio).unwrap_or_default()),
            None => (false, "the Sail Istio resource is missing".into()),
        };
        seen.current_ready = ready;
        seen.current_detail = detail;
        seen.revisions = ops
            .list_labelled("sailoperator.io/v1", "IstioRevision", "")
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        for webhook in ops
            .list_labelled(
                "admissionregistration.k8s.io/v1",
                "MutatingWebhookConfiguration",
                "",
            )
            .await?
        {
            let Some(object) = ops.get(&webhook).await? else {
                continue;
            };
            let body = serde_json::to_value(&object).unwrap_or_default();
            let injects = body["webhooks"].as_array().is_some_and(|hooks| {
                hooks.iter().any(|h| {
                    h["name"]
                        .as_str()
                        .is_some_and(|n| n.ends_with("sidecar-injector.istio.io"))
                })
            });
            if injects {
                let revision = body["metadata"]["labels"][plan::REVISION_LABEL]
                    .as_str()
                    .map(str::to_owned);
                seen.injector_webhooks.push((webhook.name, revision));
            }
        }
        Ok(seen)
    }

    async fn precheck(&self, upgrade: &UpgradeState) -> Result<String, ActorError> {
        let current = upgrade.from_revision()?;
        let target = upgrade.to_revision()?;
        let mut observations = Vec::new();
        for cluster in install_order(self.spec) {
            match self.observe(&cluster).await {
                Ok(seen) => observations.push(seen),
                Err(error) => observations.push(ClusterObservation {
                    cluster: cluster.to_string(),
                    unreachable: Some(error.to_string()),
                    ..ClusterObservation::default()
                }),
            }
        }
        let findings = rules::precheck(&observations, &current, &target);
        if findings.is_empty() {
            return Ok(format!(
                "pre-checks passed in {} clusters",
                observations.len()
            ));
        }
        // Nothing moved: close the upgrade so the mesh is free again, then fail with the list.
        let mut state = self.mesh_state().await?;
        state.upgrade = None;
        self.save_state(&state, MeshStatusChange::default()).await?;
        Err(ActorError::Precheck(rules::describe_findings(&findings)))
    }

    async fn new_revision(
        &self,
        upgrade: &UpgradeState,
        cluster: &ClusterName,
    ) -> Result<String, ActorError> {
        let revision = upgrade.to_revision()?;
        self.apply_plan(
            cluster,
            &upgrade.to,
            UpdateStrategy::RevisionBased,
            &[Stage::ControlPlane],
            |body| {
                if body["kind"] == "Istio" {
                    body["spec"]["updateStrategy"]["inactiveRevisionDeletionGracePeriodSeconds"] =
                        serde_json::json!(CANARY_GRACE_SECONDS);
                }
            },
        )
        .await?;
        self.store
            .update_member_phase(cluster.as_str(), "Upgrading", "", None)
            .await?;
        self.wait_revision(cluster, &revision).await?;
        Ok(format!(
            "revision {revision} runs in {cluster} beside {}",
            upgrade.from_revision()?
        ))
    }

    fn batch_namespaces(
        &self,
        upgrade: &UpgradeState,
        cluster: &ClusterName,
        batch: usize,
    ) -> Vec<String> {
        let namespaces = self.spec.injection_namespaces(cluster);
        rules::batches(&namespaces, upgrade.options.batch_size)
            .into_iter()
            .nth(batch.saturating_sub(1))
            .filter(|_| batch > 0)
            .unwrap_or_default()
            .into_iter()
            .map(String::from)
            .collect()
    }

    /// Points `namespaces` of `cluster` at `revision` (with `strategy`'s labels) and restarts
    /// their workloads onto it, waiting until they are available again.
    async fn move_namespaces(
        &self,
        cluster: &ClusterName,
        namespaces: &[String],
        strategy: UpdateStrategy,
        revision: &str,
    ) -> Result<(), ActorError> {
        let connection = self.connections.get(cluster.as_str()).await?;
        for namespace in namespaces {
            let name = mesh_core::NamespaceName::new(namespace.as_str())
                .map_err(|e| corrupt(self.spec, e.to_string()))?;
            let labels = plan::injection_labels(&self.spec.name, name, strategy, revision);
            let patch = labels.merge_patch();
            connection
                .ops
                .patch_namespace_metadata(
                    namespace,
                    &patch["metadata"]["labels"],
                    &serde_json::json!({}),
                )
                .await?;
            let restarted = connection
                .ops
                .restart_deployments(namespace, RESTARTED_FOR_ANNOTATION, revision)
                .await?;
            for deployment in restarted {
                match connection
                    .ops
                    .wait_deployment_available(namespace, &deployment, self.config.wait_timeout)
                    .await
                {
                    Ok(()) => {}
                    Err(mesh_clusters::OpsError::Timeout { seconds, .. }) => {
                        let target = ObjectRef {
                            api_version: "apps/v1".into(),
                            kind: "Deployment".into(),
                            namespace: Some(namespace.clone()),
                            name: deployment.clone(),
                        };
                        let seen = connection
                            .ops
                            .get(&target)
                            .await
                            .ok()
                            .flatten()
                            .and_then(|d| serde_json::to_value(d).ok())
                            .map(|d| {
                                format!(
                                    "generation {}, status {}",
                                    d["metadata"]["generation"], d["status"]
                                )
                            })
                            .unwrap_or_default();
                        return Err(stopped(
                            cluster,
                            format!(
                                "workload {namespace}/{deployment} did not come back on revision {revision} within {seconds}s ({seen})"
                            ),
                        ));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    async fn move_batch(
        &self,
        upgrade: &UpgradeState,
        cluster: &ClusterName,
        batch: usize,
    ) -> Result<String, ActorError> {
        let namespaces = self.batch_namespaces(upgrade, cluster, batch);
        let revision = upgrade.to_revision()?;
        self.move_namespaces(
            cluster,
            &namespaces,
            UpdateStrategy::RevisionBased,
            &revision,
        )
        .await?;
        Ok(format!(
            "batch {batch} of {cluster} ({}) moved to {revision}",
            namespaces.join(", ")
        ))
    }

    async fn fetch_metrics(&self, url: &str) -> Result<String, String> {
        let response = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        response
            .error_for_status()
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())
    }

    /// The moved services' error ratios in `cluster` over the last `window_seconds`, from a
    /// Prometheus server's query API.
    async fn query_error_ratios(
        &self,
        prometheus: &str,
        cluster: &ClusterName,
        namespaces: &BTreeSet<String>,
        window_seconds: u64,
    ) -> Result<std::collections::BTreeMap<String, f64>, String> {
        let query = rules::error_ratio_query(cluster.as_str(), namespaces, window_seconds);
        let url = format!("{}/api/v1/query", prometheus.trim_end_matches('/'));
        let answer: Value = reqwest::Client::new()
            .get(&url)
            .query(&[("query", query.as_str())])
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| format!("the answer is not Prometheus JSON: {e}"))?;
        rules::error_ratios_from_prometheus(&answer)
    }

    async fn health_gate(
        &self,
        upgrade: &UpgradeState,
        cluster: &ClusterName,
        batch: usize,
    ) -> Result<String, ActorError> {
        let options = &upgrade.options;
        let revision = upgrade.to_revision()?;
        let namespaces = self.batch_namespaces(upgrade, cluster, batch);
        let watched: BTreeSet<String> = namespaces.iter().cloned().collect();
        let metrics_url = options.metrics_urls.get(cluster.as_str());
        let window = Duration::from_secs(options.gate_window_seconds);
        let mut reading = GateReading {
            cluster: cluster.to_string(),
            revision: revision.clone(),
            ..GateReading::default()
        };
        let prometheus = options
            .prometheus_url
            .as_deref()
            .filter(|_| !watched.is_empty());
        match (prometheus, metrics_url.filter(|_| !watched.is_empty())) {
            (Some(prometheus), _) => {
                // Let the moved workloads' traffic fill the window, then ask for its 5xx share.
                tokio::time::sleep(window).await;
                reading.error_ratios = self
                    .query_error_ratios(prometheus, cluster, &watched, options.gate_window_seconds)
                    .await
                    .map_err(|e| stopped(cluster, format!("Prometheus at {prometheus}: {e}")))?;
            }
            (None, Some(url)) => {
                let before = self
                    .fetch_metrics(url)
                    .await
                    .map_err(|e| stopped(cluster, format!("metrics at {url} unreadable: {e}")))?;
                tokio::time::sleep(window).await;
                let after = self
                    .fetch_metrics(url)
                    .await
                    .map_err(|e| stopped(cluster, format!("metrics at {url} unreadable: {e}")))?;
                reading.error_ratios = rules::error_ratios(
                    &rules::request_counts(&before, &watched),
                    &rules::request_counts(&after, &watched),
                );
            }
            (None, None) => tokio::time::sleep(window.min(Duration::from_secs(2))).await,
        }
        let connection = self.connections.get(cluster.as_str()).await?;
        match connection.ops.get(&revision_ref(&revision)).await? {
            Some(object) => {
                let (ready, detail) =
                    ready_condition(&serde_json::to_value(&object).unwrap_or_default());
                reading.control_plane_ready = ready;
                reading.control_plane_detail = detail;
            }
            None => reading.control_plane_detail = "the revision is gone".into(),
        }
        for namespace in &namespaces {
            for deployment in connection.ops.unavailable_deployments(namespace).await? {
                // The batch has just restarted these workloads: their rollout gets the wait
                // timeout to finish (a watch, not a poll) before the gate counts them as down.
                let rolled_out = connection
                    .ops
                    .wait_deployment_available(namespace, &deployment, self.config.wait_timeout)
                    .await;
                if rolled_out.is_err() {
                    reading
                        .unavailable_workloads
                        .push(format!("{namespace}/{deployment}"));
                }
            }
        }
        match rules::evaluate_gate(&reading, options.max_error_ratio) {
            GateVerdict::Fail(reasons) => Err(stopped(
                cluster,
                format!(
                    "health gate after batch {batch} failed: {}",
                    reasons.join("; ")
                ),
            )),
            GateVerdict::Pass => {
                if options.pause_seconds > 0 {
                    tokio::time::sleep(Duration::from_secs(options.pause_seconds)).await;
                }
                let ratios: Vec<String> = reading
                    .error_ratios
                    .iter()
                    .map(|(s, r)| format!("{s} {:.1}%", r * 100.0))
                    .collect();
                Ok(format!(
                    "health gate after batch {batch} of {cluster} passed (revision {revision} ready{})",
                    if ratios.is_empty() {
                        String::new()
                    } else {
                        format!("; errors: {}", ratios.join(", "))
                    }
                ))
            }
        }
    }

    async fn move_gateway(
        &self,
        upgrade: &UpgradeState,
        cluster: &ClusterName,
    ) -> Result<String, ActorError> {
        self.apply_plan(
            cluster,
            &upgrade.to,
            UpdateStrategy::RevisionBased,
            &[Stage::EastWestGateway],
            |_| {},
        )
        .await?;
        let connection = self.connections.get(cluster.as_str()).await?;
        connection
            .ops
            .wait_deployment_available(
                "istio-system",
                plan::EAST_WEST_GATEWAY,
                self.config.wait_timeout,
            )
            .await?;
        Ok(format!(
            "east-west gateway of {cluster} runs on {}",
            upgrade.to_revision()?
        ))
    }

    async fn commit_version(&self, upgrade: &UpgradeState) -> Result<String, ActorError> {
        let mut state = self.mesh_state().await?;
        state.revision_based = upgrade.to_strategy() == UpdateStrategy::RevisionBased;
        state.upgrade = Some(UpgradeState {
            phase: UpgradePhase::Confirming,
            ..upgrade.clone()
        });
        self.save_state(
            &state,
            MeshStatusChange {
                version: Some(upgrade.to.clone()),
                last_version: Some(upgrade.from.clone()),
                ..MeshStatusChange::default()
            },
        )
        .await?;
        Ok(format!(
            "the mesh runs Istio {} (rollback target {})",
            upgrade.to, upgrade.from
        ))
    }

    async fn confirm(
        &self,
        upgrade: &UpgradeState,
        cluster: &ClusterName,
    ) -> Result<String, ActorError> {
        let revision = upgrade.to_revision()?;
        let old = upgrade.from_revision()?;
        let stages = [
            Stage::Trust,
            Stage::ControlPlane,
            Stage::EastWestGateway,
            Stage::MeshConfig,
            Stage::Injection,
        ];
        self.apply_plan(cluster, &upgrade.to, upgrade.to_strategy(), &stages, |_| {})
            .await?;
        self.wait_revision(cluster, &revision).await?;
        let namespaces: Vec<String> = self
            .spec
            .injection_namespaces(cluster)
            .into_iter()
            .map(String::from)
            .collect();
        self.move_namespaces(cluster, &namespaces, upgrade.to_strategy(), &revision)
            .await?;
        let removed = old != revision && self.remove_revision(cluster, &old).await?;
        self.store
            .update_member_phase(cluster.as_str(), "Running", "", None)
            .await?;
        Ok(if removed {
            format!("{cluster} runs {revision} only; revision {old} removed")
        } else {
            format!("{cluster} runs {revision} only")
        })
    }

    async fn in_place(
        &self,
        upgrade: &UpgradeState,
        cluster: &ClusterName,
    ) -> Result<String, ActorError> {
        let revision = upgrade.to_revision()?;
        self.store
            .update_member_phase(cluster.as_str(), "Upgrading", "", None)
            .await?;
        self.apply_plan(
            cluster,
            &upgrade.to,
            upgrade.to_strategy(),
            &[Stage::Trust, Stage::ControlPlane],
            |_| {},
        )
        .await?;
        self.wait_revision(cluster, &revision).await?;
        let namespaces: Vec<String> = self
            .spec
            .injection_namespaces(cluster)
            .into_iter()
            .map(String::from)
            .collect();
        // Same revision name, new proxies: the restart marker names the version.
        let marker = format!("{revision}-{}", upgrade.to.replace('.', "-"));
        let connection = self.connections.get(cluster.as_str()).await?;
        for namespace in &namespaces {
            for deployment in connection
                .ops
                .restart_deployments(namespace, RESTARTED_FOR_ANNOTATION, &marker)
                .await?
            {
                connection
                    .ops
                    .wait_deployment_available(namespace, &deployment, self.config.wait_timeout)
                    .await?;
            }
        }
        self.store
            .update_member_phase(cluster.as_str(), "Running", "", None)
            .await?;
        Ok(format!("{cluster} runs Istio {} in place", upgrade.to))
    }

    /// Deletes `revision` from `cluster` and waits until its istiod is really gone, not just the
    /// revision object. Returns whether the revision existed.
    async fn remove_revision(
        &self,
        cluster: &ClusterName,
        revision: &str,
    ) -> Result<bool, ActorError> {
        let connection = self.connections.get(cluster.as_str()).await?;
        let existed = connection.ops.delete(&revision_ref(revision)).await?;
        connection
            .ops
            .wait_deployment_gone(
                "istio-system",
                &mesh_core::plan::istiod_service(revision),
                self.config.wait_timeout,
            )
            .await?;
        Ok(existed)
    }

    async fn revert(
        &self,
        upgrade: &UpgradeState,
        cluster: &ClusterName,
    ) -> Result<String, ActorError> {
        if upgrade.phase != UpgradePhase::RollingBack {
            self.set_phase(upgrade, UpgradePhase::RollingBack).await?;
        }
        let old = upgrade.from_revision()?;
        let new = upgrade.to_revision()?;
        let strategy = upgrade.from_strategy();
        let stages = [
            Stage::Trust,
            Stage::ControlPlane,
            Stage::EastWestGateway,
            Stage::MeshConfig,
            Stage::Injection,
        ];
        self.apply_plan(cluster, &upgrade.from, strategy, &stages, |_| {})
            .await?;
        let connection = self.connections.get(cluster.as_str()).await?;
        let timeout = self.config.wait_timeout;
        connection
            .ops
            .wait_custom_ready("sailoperator.io/v1", "IstioRevision", &old, timeout)
            .await?;
        if self.is_primary(cluster) {
            connection
                .ops
                .wait_deployment_available("istio-system", &plan::istiod_service(&old), timeout)
                .await?;
        }
        let marker = if upgrade.kind == UpgradeKind::InPlace {
            format!("{old}-{}", upgrade.from.replace('.', "-"))
        } else {
            old.clone()
        };
        for namespace in self.spec.injection_namespaces(cluster) {
            for deployment in connection
                .ops
                .restart_deployments(namespace.as_str(), RESTARTED_FOR_ANNOTATION, &marker)
                .await?
            {
                connection
                    .ops
                    .wait_deployment_available(namespace.as_str(), &deployment, timeout)
                    .await?;
            }
        }
        let removed = old != new && self.remove_revision(cluster, &new).await?;
        self.store
            .update_member_phase(cluster.as_str(), "Running", "", None)
            .await?;
        Ok(if removed {
            format!("{cluster} is back on {old}; revision {new} removed")
        } else {
            format!("{cluster} is back on Istio {}", upgrade.from)
        })
    }

    /// Closes the upgrade recorded in `mesh.state`. A run cut off after the write but before the
    /// task was recorded as done (a lost lease, a killed worker) is run again by the next owner:
    /// it then finds the upgrade already closed, which is the outcome it was after. No other
    /// upgrade can have been recorded meanwhile, since commands wait while a flow of the mesh
    /// runs.
    async fn end_upgrade(&self) -> Result<String, ActorError> {
        let mut state = self.mesh_state().await?;
        let Some(upgrade) = state.upgrade.take() else {
            return Ok("the upgrade was already closed".to_owned());
        };
        self.save_state(&state, MeshStatusChange::default()).await?;
        Ok(match upgrade.phase {
            UpgradePhase::Confirming => format!("upgrade to Istio {} complete", upgrade.to),
            UpgradePhase::RollingBack => format!("the mesh is back on Istio {}", upgrade.from),
            _ => format!("upgrade to Istio {} complete", upgrade.to),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::spec::{MemberSpec, MeshConfig};
    use mesh_core::{ClusterRole, MeshMode, MeshName, TenantId};

    fn spec(mode: MeshMode, members: &[(&str, ClusterRole)], namespaces: &[&str]) -> MeshSpec {
        let mut config = MeshConfig::default();
        for (name, _) in members {
            config.auto_injection_namespaces.insert(
                (*name).to_owned(),
                namespaces.iter().map(|n| (*n).to_owned()).collect(),
            );
        }
        MeshSpec {
            tenant: TenantId::new("t").expect("valid"),
            name: MeshName::new("demo").expect("valid"),
            title: "demo".into(),
            region: "r".into(),
            mode,
            version: "1.29.6".into(),
            clusters: members
                .iter()
                .map(|(n, r)| MemberSpec::new(ClusterName::new(*n).expect("valid"), *r))
                .collect(),
            config,
        }
    }

    fn names(tasks: &[TaskKind]) -> Vec<String> {
        tasks.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn upgrade_task_names_round_trip() {
        let c = ClusterName::new("east").expect("valid");
        for task in [
            UpgradeTask::Precheck,
            UpgradeTask::NewRevision(c.clone()),
            UpgradeTask::MoveBatch {
                cluster: c.clone(),
                batch: 2,
            },
            UpgradeTask::HealthGate {
                cluster: c.clone(),
                batch: 0,
            },
            UpgradeTask::MoveGateway(c.clone()),
            UpgradeTask::CanaryReady,
            UpgradeTask::CommitVersion,
            UpgradeTask::Confirm(c.clone()),
            UpgradeTask::InPlace(c.clone()),
            UpgradeTask::Revert(c.clone()),
            UpgradeTask::Undo(c),
            UpgradeTask::EndUpgrade,
            UpgradeTask::EndUndone,
        ] {
            let kind = TaskKind::Upgrade(task);
            assert_eq!(TaskKind::parse(&kind.to_string()), Some(kind));
        }
        assert_eq!(TaskKind::parse("move-batch:east"), None);
        assert_eq!(TaskKind::parse("precheck:east"), None);
    }

    #[test]
    fn a_canary_moves_namespaces_in_gated_batches_primaries_first() {
        let spec = spec(
            MeshMode::PrimaryRemote,
            &[("r", ClusterRole::Remote), ("p", ClusterRole::Master)],
            &["a", "b", "c"],
        );
        let options = CanaryOptions {
            batch_size: 2,
            ..CanaryOptions::default()
        };
        let tasks = names(&canary_tasks(&spec, &options));
        assert_eq!(
            tasks,
            [
                "precheck",
                "new-revision:p",
                "new-revision:r",
                "move-batch:p:1",
                "health-gate:p:1",
                "move-batch:p:2",
                "health-gate:p:2",
                "move-gateway:p",
                "move-batch:r:1",
                "health-gate:r:1",
                "move-batch:r:2",
                "health-gate:r:2",
                "move-gateway:r",
                "canary-ready",
            ]
        );
        assert_eq!(
            names(&revert_tasks(&spec)),
            ["revert:r", "revert:p", "end-upgrade"]
        );
        assert_eq!(
            names(&confirm_tasks(&spec)),
            ["commit-version", "confirm:p", "confirm:r", "end-upgrade"]
        );
    }

    #[test]
    fn a_failed_step_undoes_every_cluster_remotes_first_but_failed_prechecks_undo_nothing() {
        let spec = spec(
            MeshMode::PrimaryRemote,
            &[("p", ClusterRole::Master), ("r", ClusterRole::Remote)],
            &["a"],
        );
        let recorded: Vec<(String, TaskStatus)> = canary_tasks(&spec, &CanaryOptions::default())
            .iter()
            .map(|t| (t.to_string(), TaskStatus::Pending))
            .collect();
        let failed = TaskKind::parse("health-gate:p:1").expect("valid");
        let undo = rollback_tasks(defs::UPGRADE_CANARY, &recorded, &failed).expect("undo");
        assert_eq!(names(&undo), ["undo:r", "undo:p", "end-undone-upgrade"]);
        assert!(
            undo.iter()
                .all(|t| matches!(t, TaskKind::Upgrade(s) if s.is_compensation()))
        );
        let precheck = TaskKind::Upgrade(UpgradeTask::Precheck);
        assert!(rollback_tasks(defs::UPGRADE_CANARY, &recorded, &precheck).is_none());
        assert!(rollback_tasks(defs::CANARY_CONFIRM, &recorded, &failed).is_none());
        assert_eq!(
            names(&in_place_tasks(&spec)),
            [
                "precheck",
                "in-place:p",
                "in-place:r",
                "commit-version",
                "end-upgrade"
            ]
        );
    }

    #[test]
    fn revisions_follow_the_strategies() {
        let state = UpgradeState {
            kind: UpgradeKind::Canary,
            from: "1.29.6".into(),
            to: "1.30.3".into(),
            from_revision_based: false,
            options: CanaryOptions::default(),
            phase: UpgradePhase::Moving,
        };
        assert_eq!(state.from_revision().expect("valid"), "default");
        assert_eq!(state.to_revision().expect("valid"), "default-v1-30-3");
        let again = UpgradeState {
            from: "1.30.3".into(),
            to: "1.31.0-beta.1".into(),
            from_revision_based: true,
            ..state
        };
        assert_eq!(again.from_revision().expect("valid"), "default-v1-30-3");
    }
}
