//! `meshd workers`: who owns what — live workers, their partitions, lease epochs and last
//! heartbeats, read from the lease bucket in NATS.

use std::collections::BTreeMap;

use anyhow::Context;
use mesh_bus::lease::Leases;
use mesh_bus::{BusConfig, NatsBus};

use crate::config::MeshdConfig;

/// Prints the workers and partition owners as a table (or JSON with `json`).
pub async fn print_workers(config: &MeshdConfig, json: bool) -> anyhow::Result<()> {
    let url = config
        .nats()
        .context("workers share partitions through NATS: set --nats-url / MESHD_NATS_URL")?;
    let bus_config =
        BusConfig::with_root(config.bus.root.clone()).partitions(config.bus.partitions);
    let nats = NatsBus::connect(url, bus_config)
        .await
        .context("check --nats-url / MESHD_NATS_URL")?;
    let leases = nats.leases(mesh_bus::lease::DEFAULT_LEASE_TTL).await?;
    let workers = leases.workers().await?;
    let owners = leases.owners().await?;
    if json {
        let value = serde_json::json!({ "workers": workers, "partitions": owners });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let mut by_worker: BTreeMap<String, Vec<(u32, u64)>> = BTreeMap::new();
    for lease in &owners {
        by_worker
            .entry(lease.worker.clone())
            .or_default()
            .push((lease.partition, lease.epoch));
    }
    let now = chrono::Utc::now();
    println!(
        "{:<32} {:>10} {:>14}  PARTITIONS (partition@epoch)",
        "WORKER", "OWNED", "HEARTBEAT"
    );
    for worker in &workers {
        let owned = by_worker.remove(&worker.worker).unwrap_or_default();
        let age = (now - worker.heartbeat_at).num_milliseconds() as f64 / 1000.0;
        let list: Vec<String> = owned.iter().map(|(p, e)| format!("{p}@{e}")).collect();
        println!(
            "{:<32} {:>10} {:>12.1}s  {}",
            worker.worker,
            owned.len(),
            age,
            list.join(" ")
        );
    }
    for (worker, owned) in by_worker {
        let list: Vec<String> = owned.iter().map(|(p, e)| format!("{p}@{e}")).collect();
        println!(
            "{worker:<32} {:>10} {:>13}  {}",
            owned.len(),
            "gone",
            list.join(" ")
        );
    }
    let free = config.bus.partitions as usize - owners.len().min(config.bus.partitions as usize);
    println!(
        "{} of {} partitions owned, {free} free",
        owners.len(),
        config.bus.partitions
    );
    Ok(())
}
