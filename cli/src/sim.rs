//! Simulated clusters inside meshd (`meshd --sim-clusters N`), for demos and end-to-end tests.
//!
//! Input: the number of clusters and the tenant from [`MeshdConfig`]. Output: a running
//! [`mesh_sim::World`] of clusters `sim-1` … `sim-N`, each running Istio's bookinfo sample in
//! the `default` namespace (so routing rules have services to act on), and one registered
//! cluster per simulated cluster in the store, so a mesh can be created on them right away.
//!
//! The world runs on a runtime of its own, on its own thread: the simulated API servers and their
//! controllers then never compete with meshd's actors and HTTP workers for one event loop, and
//! they stop when [`SimWorld`] is dropped.

use std::thread::JoinHandle;

use anyhow::Context;
use mesh_clusters::ClusterCredentials;
use mesh_clusters::probe::probe;
use mesh_schema::store::cluster::RegisterCluster;
use mesh_schema::{Store, StoreError, TenantScope};
use tokio::sync::oneshot;

use crate::config::MeshdConfig;

/// Name prefix of the simulated clusters (`sim-1`, `sim-2`, …).
pub const SIM_PREFIX: &str = "sim-";
/// Region label of the simulated clusters.
pub const SIM_REGION: &str = "sim";
/// Namespace of the sample application (Istio's bookinfo) in every simulated cluster.
pub const SAMPLE_NAMESPACE: &str = "default";

/// One simulated cluster as meshd needs it: its name and kubeconfig.
pub struct SimClusterAccess {
    /// Cluster name.
    pub name: String,
    /// Its admin kubeconfig (secret: never logged).
    kubeconfig: String,
}

impl std::fmt::Debug for SimClusterAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimClusterAccess")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A world of simulated clusters running on its own thread; dropping it stops them.
#[derive(Debug)]
pub struct SimWorld {
    clusters: Vec<SimClusterAccess>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SimWorld {
    /// Starts `count` clusters named `sim-1` … and waits until every one listens.
    pub async fn start(count: usize) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = oneshot::channel::<anyhow::Result<Vec<SimClusterAccess>>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("meshd-sim".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("meshd-sim")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::Error::new(e)
                            .context("cannot start the runtime of the simulated clusters")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let world = match mesh_sim::World::builder()
                        .clusters(count)
                        .name_prefix(SIM_PREFIX)
                        .start()
                        .await
                    {
                        Ok(world) => world,
                        Err(e) => {
                            let _ =
                                ready_tx.send(Err(e.context("cannot start simulated clusters")));
                            return;
                        }
                    };
                    for cluster in world.clusters() {
                        if let Err(e) = cluster.dataplane().deploy_bookinfo(SAMPLE_NAMESPACE) {
                            let _ = ready_tx.send(Err(e.context(format!(
                                "cannot deploy the sample application into {}",
                                cluster.name()
                            ))));
                            return;
                        }
                    }
                    let access = world
                        .clusters()
                        .iter()
                        .map(|c| SimClusterAccess {
                            name: c.name().to_owned(),
                            kubeconfig: c.kubeconfig_yaml(),
                        })
                        .collect();
                    if ready_tx.send(Ok(access)).is_ok() {
                        // Runs until the SimWorld is dropped (or meshd exits).
                        let _ = stop_rx.await;
                    }
                    world.stop();
                });
            })
            .context("cannot start the thread of the simulated clusters")?;
        let clusters = ready_rx
            .await
            .context("the simulated clusters stopped while starting")??;
        Ok(Self {
            clusters,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The clusters, in order.
    pub fn clusters(&self) -> &[SimClusterAccess] {
        &self.clusters
    }

    /// Registers every cluster for the configured tenant. A cluster of the same name left from
    /// an earlier run (the simulated clusters are new on every start) is replaced; one still in
    /// a mesh cannot be and is reported.
    pub async fn register(&self, store: &Store, config: &MeshdConfig) -> anyhow::Result<()> {
        let tenant = config.tenant()?;
        for cluster in &self.clusters {
            register_one(store, tenant.as_str(), cluster).await?;
        }
        tracing::info!(
            clusters = self.clusters.len(),
            tenant = %tenant,
            "simulated clusters registered"
        );
        Ok(())
    }
}

impl Drop for SimWorld {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[tracing::instrument(skip_all, fields(cluster = %cluster.name, tenant = %tenant))]
async fn register_one(
    store: &Store,
    tenant: &str,
    cluster: &SimClusterAccess,
) -> anyhow::Result<()> {
    let credentials =
        ClusterCredentials::from_kubeconfig_yaml(&cluster.kubeconfig).with_context(|| {
            format!(
                "the kubeconfig of simulated cluster {} is invalid",
                cluster.name
            )
        })?;
    if store
        .get_registered_cluster(&TenantScope::All, &cluster.name)
        .await?
        .is_some()
    {
        match store
            .remove_registered_cluster(&TenantScope::All, &cluster.name)
            .await
        {
            Ok(()) => tracing::info!("replacing the registration left by an earlier run"),
            Err(StoreError::AlreadyExists { key, .. }) => {
                tracing::warn!(
                    membership = %key,
                    "a cluster of this name from an earlier run is still in a mesh and keeps its old \
                     address; delete that mesh or start with a fresh database"
                );
                return Ok(());
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot replace registered cluster {}",
                    cluster.name
                )));
            }
        }
    }
    let report = probe(&credentials).await;
    let kubeconfig = credentials
        .to_yaml()
        .with_context(|| format!("cannot encode the kubeconfig of {}", cluster.name))?;
    store
        .register_cluster(RegisterCluster {
            tenant_id: tenant.to_owned(),
            name: cluster.name.clone(),
            region: SIM_REGION.to_owned(),
            server: credentials.server().to_owned(),
            auth_kind: credentials.auth_kind().as_str().to_owned(),
            kubeconfig,
            status: report.status.as_str().to_owned(),
            status_message: report.message,
        })
        .await
        .with_context(|| format!("cannot register simulated cluster {}", cluster.name))?;
    tracing::info!(server = %credentials.server(), status = report.status.as_str(), "simulated cluster registered");
    Ok(())
}
