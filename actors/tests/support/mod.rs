//! Test support: workers in their own actix runtime, sharing partitions through NATS leases.

#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;
use std::time::Duration;

use mesh_actors::flow::RunnerConfig;
use mesh_actors::{Worker, WorkerConfig};
use mesh_bus::{Bus, BusConfig, NatsBus};
use mesh_core::VersionCatalog;
use mesh_schema::Store;

/// Starts a worker named `name` on its own thread and actix System (lease TTL 2 s); dropping the
/// returned sender stops it abruptly, as a killed process would.
pub fn spawn_worker(
    name: &str,
    store: Store,
    nats_url: String,
    root: String,
) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, is_ready) = std::sync::mpsc::channel();
    let name = name.to_owned();
    std::thread::spawn(move || {
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
    stop
}
