//! Benchmark of a mesh install: a 3-cluster multi-primary mesh on simulated clusters with no
//! artificial delays, from the CreateMesh command to `Running`.
//!
//! Prints the time to `Running` (median and worst over the runs) and the Kubernetes API requests
//! each cluster served, by verb — waits are watches, so `watch` counts stay small and there are
//! no polling `get`s. Run: `cargo run --release -p mesh-actors --example install_bench [runs]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use mesh_actors::flow::RunnerConfig;
use mesh_actors::{Worker, WorkerConfig};
use mesh_bus::command::{ClusterSpec, CreateMesh};
use mesh_bus::{Bus, BusConfig, CommandEnvelope, Event, EventFilter, LocalBus, StartAt};
use mesh_core::{ClusterName, ClusterRole, MeshMode, MeshName, TenantId, VersionCatalog};
use mesh_schema::store::cluster::RegisterCluster;
use mesh_schema::{DatabaseTarget, SecretBox, SecretKey, Store};
use mesh_sim::World;

async fn one_install(
    run: usize,
) -> anyhow::Result<(
    Duration,
    Vec<(String, std::collections::BTreeMap<&'static str, u64>)>,
)> {
    let dir = tempfile::tempdir()?;
    let target = DatabaseTarget::parse(&format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ))?;
    let store = Store::open(target, SecretBox::new(&SecretKey::generate()), 4, true).await?;
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new(BusConfig::default())?);
    let world = World::builder()
        .clusters(3)
        .name_prefix(&format!("bench{run}-"))
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
    let _worker = Worker::start(
        WorkerConfig {
            runner: RunnerConfig {
                backoff: Duration::from_millis(50),
                ..RunnerConfig::default()
            },
        },
        store.clone(),
        Arc::clone(&bus),
        Arc::new(VersionCatalog::builtin()),
    )
    .await?;
    let before: Vec<_> = world
        .clusters()
        .iter()
        .map(|c| c.requests_by_verb())
        .collect();
    let command = CommandEnvelope::command(
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
    )?;
    let mut events = bus
        .subscribe_events(
            EventFilter::Mesh(command.tenant.clone(), command.mesh.clone()),
            StartAt::New,
        )
        .await?;
    let started = Instant::now();
    bus.publish_command(&command).await?;
    while let Some(record) = events.next().await {
        if let Event::FlowFinished(finished) = record?.envelope.body {
            anyhow::ensure!(
                finished.outcome == mesh_bus::event::FlowOutcome::Succeeded,
                "install failed: {:?}",
                finished.detail
            );
            break;
        }
    }
    let elapsed = started.elapsed();
    let by_verb = world
        .clusters()
        .iter()
        .zip(before)
        .map(|(cluster, before)| {
            let mut delta = cluster.requests_by_verb();
            for (verb, count) in before {
                if let Some(now) = delta.get_mut(verb) {
                    *now -= count;
                }
            }
            (cluster.name().to_owned(), delta)
        })
        .collect();
    world.stop();
    Ok((elapsed, by_verb))
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()
        .context("runs must be a number")?
        .unwrap_or(5);
    let mut times = Vec::new();
    let mut last = Vec::new();
    for run in 0..runs.max(1) {
        let (elapsed, by_verb) = one_install(run).await?;
        times.push(elapsed);
        last = by_verb;
    }
    times.sort();
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    println!(
        "3-cluster multi-primary install, {} runs, no artificial delays",
        times.len()
    );
    println!(
        "time to Running: median {:.0} ms, worst {:.0} ms",
        median.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );
    println!("Kubernetes API requests per cluster during the last install, by verb:");
    for (cluster, verbs) in last {
        let shown: Vec<String> = verbs
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(v, n)| format!("{v}={n}"))
            .collect();
        println!("  {cluster}: {}", shown.join(" "));
    }
    Ok(())
}
