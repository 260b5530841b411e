//! Drift of managed Istio resources: watching what mesh-manager wrote into member clusters and
//! answering edits made behind its back.
//!
//! One [`DriftSupervisor`] runs per owned partition. It keeps one watcher per (mesh, cluster)
//! that holds desired Istio resources, and looks for meshes that gained or lost some whenever a
//! flow of the partition that can change them ends; a watcher follows the mesh's managed objects
//! of every Istio kind through Kubernetes watches (label selector of the mesh) and, after any
//! event — and every `drift_resync` as a safety net — compares the cluster with the desired
//! state. Drift (an object edited, deleted, or a managed object nobody wants) raises
//! `DriftDetected` once per distinct finding; with the mesh's policy `repair` a `RepairDrift`
//! command follows, which the mesh's actor turns into a `repair-drift` flow like any other
//! command (audit trail, fencing, one flow at a time). Nothing is compared while a flow of the
//! mesh runs: a rollout in progress is not drift.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::StreamExt;
use mesh_bus::command::RepairDrift;
use mesh_bus::event::{DriftDetected, ResourceName};
use mesh_bus::{CommandEnvelope, EventEnvelope, partition_of};
use mesh_core::resources::{IstioKind, drift, managed_resource_selector};
use mesh_core::spec::{DriftPolicy, MeshSpec};
use mesh_core::{ClusterName, FlowStatus, MeshName, TenantId};
use mesh_schema::TenantScope;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::connections::ClusterConnections;
use crate::error::ActorError;
use crate::flow::resources::{desired_in, live_in};
use crate::flow::{FlowRunner, load_spec};

/// How soon the supervisor tries again after it could not read the desired state.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Quiet time after a watch event before comparing (edits often come in bursts).
const DEBOUNCE: Duration = Duration::from_millis(200);

/// A task aborted when its handle is dropped.
struct Aborting(JoinHandle<()>);

impl Drop for Aborting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The drift supervisor of one owned partition; dropping it stops the supervisor and every
/// watcher it started.
pub(crate) struct DriftHandle(#[allow(dead_code)] Aborting);

/// Starts the drift supervisor of one owned partition.
pub(crate) fn supervise(runner: FlowRunner, partition: u32, partitions: u32) -> DriftHandle {
    let supervisor = DriftSupervisor {
        connections: runner.connections().clone(),
        runner,
        partition,
        partitions,
        watchers: HashMap::new(),
    };
    DriftHandle(Aborting(tokio::spawn(supervisor.run())))
}

struct DriftSupervisor {
    runner: FlowRunner,
    connections: ClusterConnections,
    partition: u32,
    partitions: u32,
    watchers: HashMap<(String, String), Aborting>,
}

/// The mesh and cluster a watcher compares.
#[derive(Clone)]
struct Scope {
    tenant: TenantId,
    mesh: MeshName,
    cluster: ClusterName,
}

impl DriftSupervisor {
    /// Looks for meshes that gained or lost resources (or members) when the partition is taken,
    /// whenever one of its flows that can change them ends (only flows change them, and the
    /// partition's flows run here), and every `drift_resync` as a safety net; not on a fixed
    /// short tick, nor after every configuration change, which would read every mesh's resources
    /// over and over.
    async fn run(mut self) {
        let control = std::sync::Arc::clone(self.runner.control());
        let resync = self.runner.config().drift_resync;
        loop {
            let wait = match self.supervise().await {
                Ok(()) => resync,
                Err(error) => {
                    tracing::warn!(%error, partition = self.partition, "drift supervision failed; retrying");
                    RETRY_AFTER
                }
            };
            tokio::select! {
                () = control.flow_ended() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Starts watchers for (mesh, cluster) pairs that hold desired resources, stops the others.
    async fn supervise(&mut self) -> Result<(), ActorError> {
        let store = self.runner.store();
        let mut wanted: BTreeMap<(String, String), Scope> = BTreeMap::new();
        for (tenant, mesh) in store.meshes_with_resources().await? {
            let (Ok(tenant), Ok(mesh_name)) = (TenantId::new(tenant), MeshName::new(mesh.clone()))
            else {
                continue;
            };
            if partition_of(&tenant, &mesh_name, self.partitions) != self.partition {
                continue;
            }
            let Some(record) = store.get_mesh(&TenantScope::All, &mesh).await? else {
                continue;
            };
            let spec = load_spec(store, &record).await?;
            let rows = store.list_resources(&mesh, None, None, None).await?;
            let mut clusters: Vec<ClusterName> = Vec::new();
            if rows.iter().any(|r| r.cluster_name.is_empty()) {
                clusters.extend(mesh_core::resources::targets(&spec));
            }
            for row in rows.iter().filter(|r| !r.cluster_name.is_empty()) {
                if let Ok(cluster) = ClusterName::new(row.cluster_name.clone())
                    && spec.member(&cluster).is_some()
                    && !clusters.contains(&cluster)
                {
                    clusters.push(cluster);
                }
            }
            for cluster in clusters {
                wanted.insert(
                    (mesh.clone(), cluster.to_string()),
                    Scope {
                        tenant: tenant.clone(),
                        mesh: mesh_name.clone(),
                        cluster,
                    },
                );
            }
        }
        self.watchers.retain(|key, _| wanted.contains_key(key));
        for (key, scope) in wanted {
            if self.watchers.contains_key(&key) {
                continue;
            }
            tracing::info!(mesh = %scope.mesh, cluster = %scope.cluster, "watching managed Istio resources for drift");
            let watcher = Watcher {
                runner: self.runner.clone(),
                connections: self.connections.clone(),
                scope,
                reported: BTreeMap::new(),
            };
            self.watchers
                .insert(key, Aborting(tokio::spawn(watcher.run())));
        }
        Ok(())
    }
}

/// Watches one (mesh, cluster).
struct Watcher {
    runner: FlowRunner,
    connections: ClusterConnections,
    scope: Scope,
    /// Drift already reported, by object, so a finding is announced once.
    reported: BTreeMap<String, String>,
}

impl Watcher {
    async fn run(mut self) {
        let (nudge, mut nudged) = mpsc::channel::<()>(1);
        let _streams = match self.start_streams(nudge).await {
            Ok(streams) => streams,
            Err(error) => {
                tracing::warn!(%error, mesh = %self.scope.mesh, cluster = %self.scope.cluster, "cannot watch for drift; comparing periodically only");
                Vec::new()
            }
        };
        let resync = self.runner.config().drift_resync;
        loop {
            tokio::select! {
                _ = nudged.recv() => tokio::time::sleep(DEBOUNCE).await,
                _ = tokio::time::sleep(resync) => {}
            }
            // Drain nudges that arrived during the debounce.
            while nudged.try_recv().is_ok() {}
            if let Err(error) = self.check().await {
                tracing::warn!(%error, mesh = %self.scope.mesh, cluster = %self.scope.cluster, "drift check failed");
            }
        }
    }

    /// One watch per Istio kind on the mesh's managed objects; any event nudges a comparison.
    async fn start_streams(&self, nudge: mpsc::Sender<()>) -> Result<Vec<Aborting>, ActorError> {
        let connection = self.connections.get(self.scope.cluster.as_str()).await?;
        let selector = managed_resource_selector(&self.scope.mesh);
        let mut streams = Vec::new();
        for kind in IstioKind::ALL {
            let mut changes = connection
                .ops
                .watch_changes(&kind.api_version(), kind.kind(), &selector)
                .await?;
            let nudge = nudge.clone();
            streams.push(Aborting(tokio::spawn(async move {
                while changes.next().await.is_some() {
                    let _ = nudge.try_send(());
                }
            })));
        }
        Ok(streams)
    }

    async fn busy(&self) -> Result<bool, ActorError> {
        Ok(self
            .runner
            .store()
            .list_flows(self.scope.mesh.as_str(), 5)
            .await?
            .iter()
            .any(|f| {
                f.status
                    .parse::<FlowStatus>()
                    .is_ok_and(|s| !s.is_terminal())
            }))
    }

    /// The mesh's spec while it is `Running`; `None` otherwise (gone, installing, upgrading).
    async fn running_spec(&self) -> Result<Option<MeshSpec>, ActorError> {
        let store = self.runner.store();
        match store
            .get_mesh(&TenantScope::All, self.scope.mesh.as_str())
            .await?
        {
            Some(record) if record.status == "Running" => {
                Ok(Some(load_spec(store, &record).await?))
            }
            _ => Ok(None),
        }
    }

    /// Compares the cluster with the desired state; reports and (per policy) repairs drift.
    async fn check(&mut self) -> Result<(), ActorError> {
        if self.busy().await? {
            return Ok(());
        }
        let Some(spec) = self.running_spec().await? else {
            return Ok(());
        };
        let cluster = self.scope.cluster.as_str();
        let desired = desired_in(self.runner.store(), &spec.name, &self.scope.cluster).await?;
        let connection = self.connections.get(cluster).await?;
        let live = live_in(&connection.ops, &spec.name).await?;
        let mut findings: Vec<(ResourceName, &'static str, Vec<String>)> = Vec::new();
        for (key, body) in &desired {
            let name = ResourceName {
                kind: key.0.kind().to_owned(),
                namespace: key.1.clone(),
                name: key.2.clone(),
            };
            match live.get(key) {
                None => findings.push((name, "deleted", Vec::new())),
                Some(object) => {
                    let fields: Vec<String> =
                        drift(body, object).into_iter().map(|c| c.path).collect();
                    if !fields.is_empty() {
                        findings.push((name, "changed", fields));
                    }
                }
            }
        }
        for key in live.keys().filter(|k| !desired.contains_key(*k)) {
            let name = ResourceName {
                kind: key.0.kind().to_owned(),
                namespace: key.1.clone(),
                name: key.2.clone(),
            };
            findings.push((name, "unexpected", Vec::new()));
        }
        let current: BTreeMap<String, String> = findings
            .iter()
            .map(|(name, drift, fields)| {
                (
                    format!("{}/{}/{}", name.kind, name.namespace, name.name),
                    format!("{drift}:{}", fields.join(",")),
                )
            })
            .collect();
        if findings.is_empty() {
            self.reported.clear();
            return Ok(());
        }
        let policy = spec.config.drift_policy;
        let mut fresh = false;
        for (name, what, fields) in findings {
            let key = format!("{}/{}/{}", name.kind, name.namespace, name.name);
            if self.reported.get(&key) == current.get(&key) {
                continue;
            }
            fresh = true;
            tracing::info!(mesh = %spec.name, cluster, resource = %key, drift = what, "drift detected");
            let event = EventEnvelope::event(
                self.scope.tenant.clone(),
                self.scope.mesh.clone(),
                "system:drift-watch",
                DriftDetected {
                    cluster: self.scope.cluster.clone(),
                    resource: name,
                    drift: what.to_owned(),
                    fields,
                    policy: policy.as_str().to_owned(),
                },
            )
            .map_err(|e| ActorError::Message(e.to_string()))?;
            self.runner.events().emit(event, None).await?;
        }
        self.reported = current;
        if fresh && policy == DriftPolicy::Repair {
            let command = CommandEnvelope::command(
                self.scope.tenant.clone(),
                self.scope.mesh.clone(),
                "system:drift-watch",
                RepairDrift {
                    cluster: self.scope.cluster.clone(),
                },
            )
            .map_err(|e| ActorError::Message(e.to_string()))?;
            self.runner.events().bus().publish_command(&command).await?;
            // Once repaired the cluster matches again and the record clears; if the repair
            // fails, the same drift is not announced again until it changes.
        }
        Ok(())
    }
}
