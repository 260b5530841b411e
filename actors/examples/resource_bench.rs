//! Benchmark of an Istio resource rollout: a batch of 100 VirtualServices and DestinationRules
//! rolled out to a 3-cluster multi-primary mesh on simulated clusters with no artificial delays.
//!
//! Prints, for three rounds — the batch created, the same batch again (nothing changed), the
//! batch with 10 objects changed — the time from the `ApplyResources` command to the end of its
//! flow and the Kubernetes writes it took (goal: one write per changed object per cluster, none
//! for unchanged objects), next to a raw limit measured in the same run: the same writes made
//! directly with server-side apply, one after the other, without mesh-manager.
//! Run: `cargo run --release -p mesh-actors --example resource_bench`.

#[path = "support/mod.rs"]
mod support;

use std::time::Instant;

use mesh_bus::CommandEnvelope;
use mesh_bus::command::{ApplyResources, ResourceChange, ResourceOp};
use mesh_bus::event::FlowOutcome;
use mesh_core::{MeshName, TenantId};
use mesh_sim::World;
use serde_json::{Value, json};

const OBJECTS: usize = 100;

/// Object `i` of the batch: a DestinationRule (even) or a VirtualService (odd) for service `i`.
fn object(i: usize, version: &str) -> Value {
    let host = format!("svc-{i}");
    if i.is_multiple_of(2) {
        json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
               "metadata": {"name": host, "namespace": "default"},
               "spec": {"host": host, "subsets": [{"name": "v1", "labels": {"version": version}}]}})
    } else {
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": host, "namespace": "default"},
               "spec": {"hosts": [host], "http": [{"timeout": "5s", "route": [{"destination": {"host": host}}]}],
                        "exportTo": ["."], "gateways": ["mesh"]}})
    }
}

fn batch(changed: usize) -> anyhow::Result<CommandEnvelope> {
    let changes = (0..OBJECTS)
        .map(|i| {
            let version = if i < changed * 2 && i.is_multiple_of(2) {
                "v2"
            } else {
                "v1"
            };
            let body = object(i, version);
            ResourceChange {
                op: ResourceOp::Apply,
                kind: body["kind"].as_str().unwrap_or_default().to_owned(),
                namespace: "default".into(),
                name: body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                body: Some(body),
                expected_generation: None,
            }
        })
        .collect();
    Ok(CommandEnvelope::command(
        TenantId::new("bench")?,
        MeshName::new("bench")?,
        "bench",
        ApplyResources {
            cluster: None,
            changes,
        },
    )?)
}

fn writes(world: &World) -> u64 {
    world
        .clusters()
        .iter()
        .map(|c| {
            let verbs = c.requests_by_verb();
            ["create", "update", "patch", "delete"]
                .iter()
                .map(|v| verbs.get(v).copied().unwrap_or(0))
                .sum::<u64>()
        })
        .sum()
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    let bench = support::start(3, "res-").await?;
    let finished = support::run(&bench.bus, &support::create_mesh(&bench.world)?).await?;
    anyhow::ensure!(finished.outcome == FlowOutcome::Succeeded, "install failed");
    println!("rollout of a batch of {OBJECTS} Istio resources to a 3-cluster multi-primary mesh");
    for (round, changed) in [("create", 0), ("unchanged", 0), ("10 changed", 10)] {
        let command = batch(changed)?;
        let before = writes(&bench.world);
        let started = Instant::now();
        let finished = support::run(&bench.bus, &command).await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            finished.outcome == FlowOutcome::Succeeded,
            "rollout failed: {:?}",
            finished.detail
        );
        println!(
            "  {round:<10} {:>6.0} ms, {:>4} Kubernetes writes",
            elapsed.as_secs_f64() * 1e3,
            writes(&bench.world) - before
        );
    }
    // The raw limit: the same 300 server-side applies straight to the clusters, one at a time.
    let mut clients = Vec::new();
    for cluster in bench.world.clusters() {
        clients.push(mesh_clusters::ClusterOps::new(
            cluster.name(),
            cluster.client().await?,
        ));
    }
    let started = Instant::now();
    for ops in &clients {
        for i in 0..OBJECTS {
            let mut body = object(i, "v3");
            body["metadata"]["name"] = json!(format!("raw-{i}"));
            ops.apply(&body).await?;
        }
    }
    let raw = started.elapsed();
    println!(
        "  raw limit: {} server-side applies made directly, one at a time: {:.0} ms",
        OBJECTS * clients.len(),
        raw.as_secs_f64() * 1e3
    );
    let stored = bench
        .store
        .list_resources("bench", None, None, None)
        .await?;
    println!("  desired resources stored: {}", stored.len());
    bench.world.stop();
    Ok(())
}
