//! Test support: registering simulated clusters, and workers in their own actix runtime sharing
//! partitions through NATS leases.

#![allow(clippy::unwrap_used, dead_code)]

pub mod harness;

use std::sync::Arc;
use std::time::Duration;

use mesh_actors::flow::RunnerConfig;
use mesh_actors::{Worker, WorkerConfig};
use mesh_bus::{Bus, BusConfig, NatsBus};
use mesh_core::VersionCatalog;
use mesh_schema::store::cluster::RegisterCluster;
use mesh_schema::{DatabaseTarget, SecretBox, SecretKey, Store};

/// A migrated store on the database at `url` (`sqlite://…` or `mysql://…`), with a fresh key.
pub async fn open_store(url: &str, pool_size: u32) -> Store {
    Store::open(
        DatabaseTarget::parse(url).unwrap(),
        SecretBox::new(&SecretKey::generate()),
        pool_size,
        true,
    )
    .await
    .unwrap()
}

/// Registers every cluster of `world` for `tenant`, with its admin kubeconfig.
pub async fn register_world(store: &Store, world: &mesh_sim::World, tenant: &str) {
    for cluster in world.clusters() {
        store
            .register_cluster(RegisterCluster {
                tenant_id: tenant.into(),
                name: cluster.name().into(),
                region: "sim".into(),
                server: cluster.url(),
                auth_kind: "token".into(),
                kubeconfig: cluster.kubeconfig_yaml(),
                status: "Reachable".into(),
                status_message: String::new(),
            })
            .await
            .unwrap();
    }
}

/// A worker on its own thread and actix System (lease TTL 2 s). Killing it — or dropping the
/// handle — drops its runtime and every task on it at once, as when the process dies.
pub struct WorkerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WorkerThread {
    /// Kills the worker and waits until its runtime is gone.
    pub fn kill(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WorkerThread {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Starts a worker named `name` sharing partitions through the NATS at `nats_url` under `root`.
pub fn spawn_worker(name: &str, store: Store, nats_url: String, root: String) -> WorkerThread {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, is_ready) = std::sync::mpsc::channel();
    let name = name.to_owned();
    let thread = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let nats = NatsBus::connect(&nats_url, BusConfig::with_root(root))
                .await
                .unwrap();
            let leases = Arc::new(nats.leases(Duration::from_secs(2)).await.unwrap());
            let bus: Arc<dyn Bus> = Arc::new(nats);
            let config = WorkerConfig {
                runner: RunnerConfig {
                    processor: name,
                    wait_timeout: Duration::from_secs(20),
                    backoff: Duration::from_millis(100),
                    heartbeat: Duration::from_millis(200),
                    attempts: 40,
                    ..RunnerConfig::default()
                },
                ..WorkerConfig::default()
            };
            let _worker = Worker::start_with_leases(
                config,
                store,
                bus,
                leases,
                Arc::new(VersionCatalog::builtin()),
            )
            .await
            .unwrap();
            ready.send(()).unwrap();
            let _ = stopped.await;
        });
    });
    is_ready.recv().unwrap();
    WorkerThread {
        stop: Some(stop),
        thread: Some(thread),
    }
}
