//! What each task does. Every task is idempotent: running it again after a crash, a retry or a
//! redelivered command has no further effect once it succeeded.

use std::collections::BTreeMap;
use std::time::SystemTime;

use mesh_core::pki::{CaBundle, RootCa, issue_intermediate};
use mesh_core::plan::{
    self, ClusterInputs, PlannedChange, Stage, install_plan, managed_kinds, managed_selector,
    reader_access, remote_secret, render_remote_kubeconfig,
};
use mesh_core::spec::MeshSpec;
use mesh_core::{ClusterName, ClusterRole, MeshMode};
use mesh_schema::Store;
use mesh_schema::store::mesh::MeshStatusChange;
use serde::{Deserialize, Serialize};

use super::TaskKind;
use super::runner::RunnerConfig;
use crate::connections::ClusterConnections;
use crate::error::ActorError;

/// Name of the root CA among the mesh's secrets.
const ROOT_CA_SECRET: &str = "root-ca";

fn cacerts_secret(cluster: &ClusterName) -> String {
    format!("cacerts:{cluster}")
}

fn reader_secret(cluster: &ClusterName) -> String {
    format!("reader:{cluster}")
}

/// What a reader's token secret holds.
#[derive(Serialize, Deserialize)]
struct ReaderToken {
    token: String,
    ca: Option<String>,
}

/// Observed facts recorded in `mesh.state`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct MeshState {
    /// East-west gateway address per cluster.
    #[serde(default)]
    pub gateways: BTreeMap<String, String>,
    /// The upgrade under way (moving, waiting in canary, confirming or rolling back), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<super::upgrade::UpgradeState>,
    /// Whether the control plane runs revision-based (after a confirmed canary upgrade), so
    /// plans name the revision and label namespaces `istio.io/rev`.
    #[serde(default)]
    pub revision_based: bool,
}

impl MeshState {
    /// Reads `mesh.state`; absent or unreadable state starts empty.
    pub fn parse(text: Option<&str>) -> Self {
        text.and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default()
    }
}

/// What a task needs.
pub(crate) struct TaskContext<'a> {
    pub flow_id: i64,
    pub spec: &'a MeshSpec,
    pub store: &'a Store,
    pub connections: &'a ClusterConnections,
    pub epoch: i64,
    pub config: &'a RunnerConfig,
    /// `mesh.state` as this flow last read or wrote it, or `None` when it must be read. A
    /// running flow holds its mesh (no other flow runs on it, and an older owner's writes are
    /// refused), so what it wrote is what the row holds until it writes again.
    pub known_state: &'a std::sync::Mutex<Option<MeshState>>,
}

pub(super) fn corrupt(spec: &MeshSpec, reason: impl Into<String>) -> ActorError {
    ActorError::CorruptState {
        mesh: spec.name.to_string(),
        reason: reason.into(),
    }
}

/// The merge patch that takes a namespace out of a mesh's injection: its injection, revision and
/// mesh labels removed.
fn injection_release_patch() -> serde_json::Value {
    serde_json::json!({"metadata": {"labels": {
        plan::INJECTION_LABEL: null,
        plan::REVISION_LABEL: null,
        plan::INJECTION_MESH_LABEL: null,
    }}})
}

impl TaskContext<'_> {
    /// Runs one task; returns a short description of what it did.
    pub async fn run(&self, task: &TaskKind) -> Result<String, ActorError> {
        match task {
            TaskKind::Certificates => self.certificates().await,
            TaskKind::ControlPlane(c) => {
                self.apply_stages(c, &[Stage::Trust, Stage::ControlPlane])
                    .await
            }
            TaskKind::WaitControlPlane(c) => self.wait_control_plane(c).await,
            TaskKind::Gateway(c) => self.gateway(c).await,
            TaskKind::MeshConfig(c) => {
                self.apply_stages(c, &[Stage::MeshConfig, Stage::Injection])
                    .await
            }
            TaskKind::Reader(c) => self.reader(c).await,
            TaskKind::Link { holder, source } => self.link(holder, source).await,
            TaskKind::Unlink { holder, source } => self.unlink(holder, source).await,
            TaskKind::Verify => self.verify().await,
            TaskKind::DropMember(c) => self.drop_member(c).await,
            TaskKind::Uninstall(c) => self.uninstall(c).await,
            TaskKind::Forget => self.forget().await,
            TaskKind::ApplyResources(c) => self.apply_resources(c).await,
            TaskKind::SyncResources(c) => self.sync_resources(c).await,
            TaskKind::RestoreResources(c) => self.restore_resources(c).await,
            TaskKind::RestoreDesired => self.restore_desired().await,
            TaskKind::Upgrade(step) => self.run_upgrade(step).await,
        }
    }

    async fn root_ca(&self) -> Result<RootCa, ActorError> {
        let mesh = self.spec.name.as_str();
        if let Some(bytes) = self.store.mesh_secret(mesh, ROOT_CA_SECRET).await? {
            return serde_json::from_slice(&bytes)
                .map_err(|e| corrupt(self.spec, format!("root CA: {e}")));
        }
        let root = RootCa::generate(&self.spec.name, SystemTime::now())?;
        let bytes = serde_json::to_vec(&root).map_err(|e| corrupt(self.spec, e.to_string()))?;
        self.store
            .put_mesh_secret(mesh, ROOT_CA_SECRET, &bytes)
            .await?;
        Ok(root)
    }

    async fn cacerts(&self, cluster: &ClusterName) -> Result<CaBundle, ActorError> {
        let bytes = self
            .store
            .mesh_secret(self.spec.name.as_str(), &cacerts_secret(cluster))
            .await?
            .ok_or_else(|| corrupt(self.spec, format!("no CA issued for cluster {cluster}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(self.spec, format!("CA of {cluster}: {e}")))
    }

    async fn certificates(&self) -> Result<String, ActorError> {
        let root = self.root_ca().await?;
        let mut issued = Vec::new();
        for member in &self.spec.clusters {
            let name = cacerts_secret(&member.name);
            if self
                .store
                .mesh_secret(self.spec.name.as_str(), &name)
                .await?
                .is_some()
            {
                continue;
            }
            let bundle = issue_intermediate(&root, &member.name, SystemTime::now())?;
            let bytes =
                serde_json::to_vec(&bundle).map_err(|e| corrupt(self.spec, e.to_string()))?;
            self.store
                .put_mesh_secret(self.spec.name.as_str(), &name, &bytes)
                .await?;
            issued.push(member.name.to_string());
        }
        Ok(if issued.is_empty() {
            "root and intermediate CAs present".into()
        } else {
            format!("issued intermediate CAs for {}", issued.join(", "))
        })
    }

    /// The mesh's recorded state: as this flow last saw it, or read from its row.
    pub(super) async fn mesh_state(&self) -> Result<MeshState, ActorError> {
        if let Some(state) = self.remembered_state() {
            return Ok(state);
        }
        let row = self
            .store
            .get_mesh(&mesh_schema::TenantScope::All, self.spec.name.as_str())
            .await?
            .ok_or_else(|| corrupt(self.spec, "the mesh row is gone"))?;
        let state = MeshState::parse(row.state.as_deref());
        self.remember_state(Some(state.clone()));
        Ok(state)
    }

    /// What `known_state` holds (a poisoned lock counts as not known).
    fn remembered_state(&self) -> Option<MeshState> {
        self.known_state.lock().ok().and_then(|known| known.clone())
    }

    fn remember_state(&self, state: Option<MeshState>) {
        if let Ok(mut known) = self.known_state.lock() {
            *known = state;
        }
    }

    /// Records `state` (with the rest of `change`) in the mesh's row, fenced by the flow's epoch.
    pub(super) async fn save_state(
        &self,
        state: &MeshState,
        change: MeshStatusChange,
    ) -> Result<(), ActorError> {
        let text = serde_json::to_string(state).map_err(|e| corrupt(self.spec, e.to_string()))?;
        // Unknown until the write's outcome is: a failed write may or may not have landed.
        self.remember_state(None);
        self.store
            .update_mesh_status(
                self.spec.name.as_str(),
                self.epoch,
                MeshStatusChange {
                    state: Some(text),
                    ..change
                },
            )
            .await?;
        self.remember_state(Some(state.clone()));
        Ok(())
    }

    /// The plan of `cluster` for the mesh as it runs, complete for `stages`.
    async fn plan_for(
        &self,
        cluster: &ClusterName,
        stages: &[Stage],
    ) -> Result<Vec<PlannedChange>, ActorError> {
        let strategy = if self.mesh_state().await?.revision_based {
            plan::UpdateStrategy::RevisionBased
        } else {
            plan::UpdateStrategy::InPlace
        };
        self.plan_with(cluster, self.spec, strategy, stages).await
    }

    /// The plan of `cluster` for `spec` (whose version may differ from the running one, during
    /// an upgrade) with `strategy`, complete for `stages`: the cluster's CA is read only when
    /// they include [`Stage::Trust`], whose `cacerts` Secret carries it.
    pub(super) async fn plan_with(
        &self,
        cluster: &ClusterName,
        spec: &MeshSpec,
        strategy: plan::UpdateStrategy,
        stages: &[Stage],
    ) -> Result<Vec<PlannedChange>, ActorError> {
        let inputs = if stages.contains(&Stage::Trust) {
            ClusterInputs::new(self.cacerts(cluster).await?)
        } else {
            ClusterInputs::without_trust()
        };
        let mut inputs = inputs.with_update_strategy(strategy);
        let remote_of_primary = self.spec.mode == MeshMode::PrimaryRemote
            && self
                .spec
                .member(cluster)
                .is_some_and(|m| m.role == ClusterRole::Remote);
        if remote_of_primary {
            let primary = self
                .spec
                .primary_of(cluster)
                .ok_or_else(|| corrupt(self.spec, format!("remote {cluster} has no primary")))?;
            let state = self.mesh_state().await?;
            let address = state.gateways.get(primary.name.as_str()).ok_or_else(|| {
                corrupt(
                    self.spec,
                    format!(
                        "the east-west address of primary {} is not known yet",
                        primary.name
                    ),
                )
            })?;
            inputs = inputs.with_primary_east_west_address(address.clone());
        }
        Ok(install_plan(spec, cluster, &inputs)?)
    }

    async fn apply_stages(
        &self,
        cluster: &ClusterName,
        stages: &[Stage],
    ) -> Result<String, ActorError> {
        let connection = self.connections.get(cluster.as_str()).await?;
        let plan = self.plan_for(cluster, stages).await?;
        let mut applied = 0;
        for change in plan.iter().filter(|c| stages.contains(&c.stage())) {
            match change {
                PlannedChange::Object(object) => {
                    connection.ops.apply(&object.body).await?;
                }
                PlannedChange::NamespaceLabels(labels) => {
                    let mut patch = labels.merge_patch();
                    patch["metadata"]["labels"][plan::INJECTION_MESH_LABEL] =
                        serde_json::Value::from(self.spec.name.as_str());
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
        let mut released = 0;
        if stages.contains(&Stage::Injection) {
            // Namespaces this mesh labelled before but no longer lists lose its labels.
            let listed: Vec<&str> = plan
                .iter()
                .filter_map(|c| match c {
                    PlannedChange::NamespaceLabels(labels) => Some(labels.namespace.as_str()),
                    PlannedChange::Object(_) => None,
                })
                .collect();
            let selector = format!("{}={}", plan::INJECTION_MESH_LABEL, self.spec.name);
            for namespace in connection.ops.namespaces_labelled(&selector).await? {
                if !listed.contains(&namespace.as_str()) {
                    connection
                        .ops
                        .merge_patch_namespace(&namespace, &injection_release_patch())
                        .await?;
                    released += 1;
                }
            }
        }
        if stages.contains(&Stage::ControlPlane) {
            self.store
                .update_member_phase(cluster.as_str(), "Installing", "", None)
                .await?;
        }
        Ok(if released == 0 {
            format!("applied {applied} objects to {cluster}")
        } else {
            format!(
                "applied {applied} objects to {cluster}, released {released} namespace(s) from injection"
            )
        })
    }

    async fn wait_control_plane(&self, cluster: &ClusterName) -> Result<String, ActorError> {
        let connection = self.connections.get(cluster.as_str()).await?;
        let timeout = self.config.wait_timeout;
        connection
            .ops
            .wait_custom_ready("sailoperator.io/v1", "Istio", plan::ISTIO_RESOURCE, timeout)
            .await?;
        let primary = self
            .spec
            .member(cluster)
            .is_some_and(|m| m.role == ClusterRole::Master);
        if primary {
            let istiod = plan::istiod_service(plan::ISTIO_RESOURCE);
            connection
                .ops
                .wait_deployment_available("istio-system", &istiod, timeout)
                .await?;
        }
        self.store
            .update_member_phase(cluster.as_str(), "Installed", "", None)
            .await?;
        Ok(format!("control plane of {cluster} is ready"))
    }

    async fn gateway(&self, cluster: &ClusterName) -> Result<String, ActorError> {
        self.apply_stages(cluster, &[Stage::EastWestGateway])
            .await?;
        let connection = self.connections.get(cluster.as_str()).await?;
        let timeout = self.config.wait_timeout;
        connection
            .ops
            .wait_deployment_available("istio-system", plan::EAST_WEST_GATEWAY, timeout)
            .await?;
        let address = connection
            .ops
            .wait_load_balancer_address("istio-system", plan::EAST_WEST_GATEWAY, timeout)
            .await?;
        self.store
            .upsert_lb_resource(cluster.as_str(), self.spec.name.as_str(), &address)
            .await?;
        let mut state = self.mesh_state().await?;
        state.gateways.insert(cluster.to_string(), address.clone());
        self.save_state(&state, MeshStatusChange::default()).await?;
        Ok(format!("east-west gateway of {cluster} is at {address}"))
    }

    async fn reader(&self, cluster: &ClusterName) -> Result<String, ActorError> {
        let connection = self.connections.get(cluster.as_str()).await?;
        let role = self
            .spec
            .member(cluster)
            .map_or(ClusterRole::Master, |m| m.role);
        for object in reader_access(&self.spec.name, role) {
            connection.ops.apply(&object.body).await?;
        }
        let (token, ca) = connection
            .ops
            .wait_service_account_token(
                "istio-system",
                plan::READER_TOKEN_SECRET,
                self.config.wait_timeout,
            )
            .await?;
        let bytes = serde_json::to_vec(&ReaderToken { token, ca })
            .map_err(|e| corrupt(self.spec, e.to_string()))?;
        self.store
            .put_mesh_secret(self.spec.name.as_str(), &reader_secret(cluster), &bytes)
            .await?;
        Ok(format!("reader of {cluster} has a token"))
    }

    async fn link(&self, holder: &ClusterName, source: &ClusterName) -> Result<String, ActorError> {
        let reader: ReaderToken = self
            .store
            .mesh_secret(self.spec.name.as_str(), &reader_secret(source))
            .await?
            .map(|bytes| serde_json::from_slice(&bytes))
            .transpose()
            .map_err(|e| corrupt(self.spec, format!("reader token of {source}: {e}")))?
            .ok_or_else(|| corrupt(self.spec, format!("no reader token for {source}")))?;
        let source_connection = self.connections.get(source.as_str()).await?;
        let credentials = &source_connection.credentials;
        // The CA that verifies the registered server address, else the one the token came with.
        let ca = credentials
            .certificate_authority_data()
            .or(reader.ca.as_deref());
        let kubeconfig = render_remote_kubeconfig(source, credentials.server(), ca, &reader.token)?;
        let secret = remote_secret(&self.spec.name, source, &kubeconfig);
        let holder_connection = self.connections.get(holder.as_str()).await?;
        holder_connection.ops.apply(&secret.body).await?;
        self.store
            .update_member_phase(holder.as_str(), "Linking", "", None)
            .await?;
        Ok(format!("{holder} holds a remote secret for {source}"))
    }

    async fn unlink(
        &self,
        holder: &ClusterName,
        source: &ClusterName,
    ) -> Result<String, ActorError> {
        let connection = self.connections.get(holder.as_str()).await?;
        let target = mesh_clusters::ObjectRef {
            api_version: "v1".into(),
            kind: "Secret".into(),
            namespace: Some("istio-system".into()),
            name: plan::remote_secret_name(source),
        };
        let existed = connection.ops.delete(&target).await?;
        Ok(if existed {
            format!("{holder} no longer holds a remote secret for {source}")
        } else {
            format!("{holder} held no remote secret for {source}")
        })
    }

    async fn drop_member(&self, cluster: &ClusterName) -> Result<String, ActorError> {
        let mesh = self.spec.name.as_str();
        match self.store.remove_member_cluster(cluster.as_str()).await {
            Ok(()) | Err(mesh_schema::StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.store.delete_lb_resource(cluster.as_str()).await?;
        let mut state = self.mesh_state().await?;
        if state.gateways.remove(cluster.as_str()).is_some() {
            self.save_state(&state, MeshStatusChange::default()).await?;
        }
        for name in [cacerts_secret(cluster), reader_secret(cluster)] {
            self.store.delete_mesh_secret(mesh, &name).await?;
        }
        self.connections.forget(cluster.as_str()).await;
        Ok(format!("{cluster} is no longer a member of {mesh}"))
    }

    async fn verify(&self) -> Result<String, ActorError> {
        // Membership may have changed during the flow (a cluster removed): verify what is now.
        let row = self
            .store
            .get_mesh(&mesh_schema::TenantScope::All, self.spec.name.as_str())
            .await?
            .ok_or_else(|| corrupt(self.spec, "the mesh row is gone"))?;
        let current = crate::flow::load_spec(self.store, &row).await?;
        let mut peers_of: BTreeMap<ClusterName, Vec<String>> = BTreeMap::new();
        for (holder, source) in plan::remote_secret_targets(&current) {
            peers_of.entry(holder).or_default().push(source.to_string());
        }
        for (holder, peers) in &peers_of {
            let connection = self.connections.get(holder.as_str()).await?;
            if let Err(error) = connection
                .ops
                .wait_remote_clusters_synced(peers, self.config.wait_timeout)
                .await
            {
                // Say what istiod last reported, so the reason is visible in the flow.
                let mut reports = Vec::new();
                for peer in peers {
                    let report = match connection.ops.remote_cluster_status(peer).await {
                        Ok(Some(status)) => format!(
                            "{peer}: {} {}",
                            status["syncStatus"].as_str().unwrap_or("unknown"),
                            status["error"].as_str().unwrap_or("")
                        ),
                        Ok(None) => format!("{peer}: not reported"),
                        Err(e) => format!("{peer}: status unreadable ({e})"),
                    };
                    reports.push(report.trim_end().to_owned());
                }
                let short: String = reports.join("; ").chars().take(2000).collect();
                self.store
                    .update_member_phase(holder.as_str(), "Linking", &short, None)
                    .await?;
                return Err(ActorError::Sync {
                    cluster: holder.to_string(),
                    detail: format!("{error}; istiod reports: {}", reports.join("; ")),
                });
            }
        }
        let now = chrono::Utc::now().naive_utc();
        for member in &current.clusters {
            let linked = (!peers_of.is_empty()).then_some(Some(now));
            self.store
                .update_member_phase(member.name.as_str(), "Running", "", linked)
                .await?;
        }
        Ok(if peers_of.is_empty() {
            "every control plane is ready".into()
        } else {
            format!(
                "every istiod reports its peers synced ({})",
                peers_of
                    .keys()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    async fn uninstall(&self, cluster: &ClusterName) -> Result<String, ActorError> {
        let connection = self.connections.get(cluster.as_str()).await?;
        let selector = managed_selector(&self.spec.name);
        let mut deleted = 0;
        for kind in managed_kinds() {
            for target in connection
                .ops
                .list_labelled(kind.api_version, kind.kind, &selector)
                .await?
            {
                if connection.ops.delete(&target).await? {
                    deleted += 1;
                }
            }
        }
        let injection_selector = format!("{}={}", plan::INJECTION_MESH_LABEL, self.spec.name);
        for namespace in connection
            .ops
            .namespaces_labelled(&injection_selector)
            .await?
        {
            connection
                .ops
                .merge_patch_namespace(&namespace, &injection_release_patch())
                .await?;
        }
        self.store
            .update_member_phase(cluster.as_str(), "Uninstalled", "", Some(None))
            .await?;
        Ok(format!("deleted {deleted} objects from {cluster}"))
    }

    async fn forget(&self) -> Result<String, ActorError> {
        let mesh = self.spec.name.as_str();
        for lb in self.store.list_lb_resources(mesh).await? {
            self.store.delete_lb_resource(&lb.name).await?;
        }
        self.store.delete_mesh_secrets(mesh).await?;
        self.store.forget_resources(mesh).await?;
        for member in &self.spec.clusters {
            self.connections.forget(member.name.as_str()).await;
        }
        match self.store.soft_delete_mesh(mesh, self.epoch).await {
            Ok(_) | Err(mesh_schema::StoreError::NotFound { .. }) => {
                Ok(format!("mesh {mesh} forgotten"))
            }
            Err(e) => Err(e.into()),
        }
    }
}
