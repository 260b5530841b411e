//! Shared set-up of the actor benchmarks: an embedded-default world (SQLite file, in-process bus)
//! with simulated clusters registered for tenant `bench` and one worker (its cluster clients'
//! rate limit raised, [`BENCH_CLUSTER_LIMIT`]), and a multi-primary mesh over all of them.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mesh_actors::flow::RunnerConfig;
use mesh_actors::{Worker, WorkerConfig};
use mesh_bus::command::{ClusterSpec, CreateMesh};
use mesh_bus::event::FlowFinished;
use mesh_bus::{Bus, BusConfig, CommandEnvelope, Event, EventFilter, LocalBus, StartAt};
use mesh_clusters::RateLimit;
use mesh_core::{ClusterName, ClusterRole, MeshMode, MeshName, TenantId, VersionCatalog};
use mesh_schema::store::cluster::RegisterCluster;
use mesh_schema::{DatabaseTarget, SecretBox, SecretKey, Store};
use mesh_sim::World;

/// The request rate limit of each cluster client in the benchmarks: far above the default (20
/// requests/s per cluster), so that what they time is mesh-manager's own work, not the pacing a
/// real cluster's API server is protected by.
pub const BENCH_CLUSTER_LIMIT: RateLimit = RateLimit {
    qps: 100_000.0,
    burst: 100_000,
};

/// A running benchmark world.
pub struct BenchWorld {
    pub store: Store,
    pub bus: Arc<dyn Bus>,
    pub world: World,
    pub _worker: Worker,
    pub _dir: tempfile::TempDir,
}

/// Starts `clusters` simulated clusters (names prefixed `prefix`), a store, a bus and a worker.
pub async fn start(clusters: usize, prefix: &str) -> anyhow::Result<BenchWorld> {
    let dir = tempfile::tempdir()?;
    let target = DatabaseTarget::parse(&format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ))?;
    let store = Store::open(target, SecretBox::new(&SecretKey::generate()), 4, true).await?;
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new(BusConfig::default())?);
    let world = World::builder()
        .clusters(clusters)
        .name_prefix(prefix)
        .deploy_ready_delay(Duration::ZERO)
        .remote_sync_interval(Duration::from_millis(50))
        .start()
        .await?;
    for cluster in world.clusters() {
        store
            .register_cluster(RegisterCluster {
                tenant_id: "bench".into(),
                name: cluster.name().into(),
                region: "sim".into(),
                server: cluster.url(),
                auth_kind: "token".into(),
                kubeconfig: cluster.kubeconfig_yaml(),
                status: "Reachable".into(),
                status_message: String::new(),
            })
            .await?;
    }
    let worker = Worker::start(
        WorkerConfig {
            runner: RunnerConfig {
                backoff: Duration::from_millis(50),
                ..RunnerConfig::default()
            },
            cluster_rate_limit: BENCH_CLUSTER_LIMIT,
            ..WorkerConfig::default()
        },
        store.clone(),
        Arc::clone(&bus),
        Arc::new(VersionCatalog::builtin()),
    )
    .await?;
    Ok(BenchWorld {
        store,
        bus,
        world,
        _worker: worker,
        _dir: dir,
    })
}

/// The command creating mesh `bench` over every cluster of `world` as primaries.
pub fn create_mesh(world: &World) -> anyhow::Result<CommandEnvelope> {
    Ok(CommandEnvelope::command(
        TenantId::new("bench")?,
        MeshName::new("bench")?,
        "bench",
        CreateMesh {
            title: "bench".into(),
            region: "sim".into(),
            version: "1.30.3".into(),
            mode: MeshMode::MultiPrimary,
            clusters: world
                .clusters()
                .iter()
                .map(|c| {
                    Ok(ClusterSpec {
                        name: ClusterName::new(c.name())?,
                        role: ClusterRole::Master,
                        network: format!("net-{}", c.name()),
                    })
                })
                .collect::<anyhow::Result<_>>()?,
            config: serde_json::json!({}),
        },
    )?)
}

/// Publishes `command` and waits for the end of its flow (an error if it was rejected).
pub async fn run(bus: &Arc<dyn Bus>, command: &CommandEnvelope) -> anyhow::Result<FlowFinished> {
    let mut events = bus
        .subscribe_events(
            EventFilter::Mesh(command.tenant.clone(), command.mesh.clone()),
            StartAt::New,
        )
        .await?;
    bus.publish_command(command).await?;
    while let Some(record) = events.next().await {
        let record = record?;
        if record.envelope.correlation_id != command.correlation_id {
            continue;
        }
        match record.envelope.body {
            Event::FlowFinished(finished) => return Ok(finished),
            Event::CommandRejected(rejected) => anyhow::bail!("rejected: {}", rejected.reason),
            _ => {}
        }
    }
    anyhow::bail!("the event stream ended")
}
