//! Memory of an idle worker's per-mesh and per-cluster state, measured from the process's resident
//! set: 1,000 idle mesh actors, then 3,000 member-cluster connections (the kube client, its
//! credentials and TLS configuration, which a worker keeps per member cluster once it has used it).
//!
//! The mesh actors are real `MeshActor`s with the worker's shared component, idle in their
//! mailboxes; the cluster connections are built by `ClusterConnections` from 3,000 registered
//! clusters (sealed kubeconfigs naming one simulated cluster, so no cluster has to run per entry).
//! The store is an embedded SQLite file and the bus the in-process one: neither holds anything per
//! actor. Run: `cargo run --release -p mesh-actors --example actor_memory [meshes] [clusters]`.

use std::sync::Arc;

use actix::Actor;
use mesh_actors::connections::ClusterConnections;
use mesh_actors::events::EventSink;
use mesh_actors::flow::{FlowRunner, RunnerConfig};
use mesh_actors::mesh::{MeshActor, MeshComponent};
use mesh_bus::{Bus, BusConfig, LocalBus};
use mesh_core::VersionCatalog;
use mesh_schema::store::cluster::RegisterCluster;
use mesh_schema::{DatabaseTarget, SecretBox, SecretKey, Store};

/// Resident set size of this process, in bytes (Linux `/proc/self/statm`).
fn resident_bytes() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/self/statm: {statm}"))?
        .parse()?;
    Ok(pages * 4096)
}

fn per_item(before: u64, after: u64, count: usize) -> String {
    let bytes = after.saturating_sub(before) as f64 / count.max(1) as f64;
    format!("{:.1} KiB", bytes / 1024.0)
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let meshes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let clusters: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(3 * meshes);

    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("memory.db").display());
    let store = Store::open(
        DatabaseTarget::parse(&url)?,
        SecretBox::new(&SecretKey::generate()),
        1,
        true,
    )
    .await?;
    let world = mesh_sim::World::builder().clusters(1).start().await?;
    let sim = &world.clusters()[0];
    for i in 0..clusters {
        store
            .register_cluster(RegisterCluster {
                tenant_id: "bench".into(),
                name: format!("member-{i}"),
                region: "sim".into(),
                server: sim.url(),
                auth_kind: "token".into(),
                kubeconfig: sim.kubeconfig_yaml(),
                status: "Reachable".into(),
                status_message: String::new(),
            })
            .await?;
    }
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new(BusConfig::default())?);
    let connections = ClusterConnections::new(store.clone());
    let runner = FlowRunner::new(
        store.clone(),
        EventSink::new(store.clone(), bus),
        connections.clone(),
        RunnerConfig::default(),
    );
    let component = MeshComponent::new(runner, Arc::new(VersionCatalog::builtin()));

    let before_actors = resident_bytes()?;
    let actors: Vec<_> = (0..meshes)
        .map(|_| MeshActor::new(component.clone()).start())
        .collect();
    // Let every actor start (its `started` runs on the arbiter).
    actix_rt::time::sleep(std::time::Duration::from_millis(500)).await;
    let after_actors = resident_bytes()?;

    for i in 0..clusters {
        connections.get(&format!("member-{i}")).await?;
    }
    let after_clusters = resident_bytes()?;

    println!("idle worker state, measured as growth of the resident set");
    println!(
        "  {meshes} idle mesh actors: {:.1} MiB, {} per mesh actor",
        after_actors.saturating_sub(before_actors) as f64 / (1024.0 * 1024.0),
        per_item(before_actors, after_actors, meshes)
    );
    println!(
        "  {clusters} member-cluster connections (kube client, credentials, TLS config): {:.1} MiB, {} per cluster",
        after_clusters.saturating_sub(after_actors) as f64 / (1024.0 * 1024.0),
        per_item(after_actors, after_clusters, clusters)
    );
    println!(
        "  whole process: {:.1} MiB",
        after_clusters as f64 / (1024.0 * 1024.0)
    );
    drop(actors);
    world.stop();
    Ok(())
}
