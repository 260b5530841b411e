//! `meshd workers`: who owns what — live workers, their partitions, lease epochs, last
//! heartbeats and flow slots in use (a flow beyond its worker's slots waits `Pending`), read from
//! the lease bucket in NATS.

use std::collections::BTreeMap;

use anyhow::Context;
use mesh_bus::lease::{FlowLoad, Leases};
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
        "{:<32} {:>10} {:>14} {:>20}  PARTITIONS (partition@epoch)",
        "WORKER", "OWNED", "HEARTBEAT", "FLOWS (RUN/SLOTS)"
    );
    for worker in &workers {
        let owned = by_worker.remove(&worker.worker).unwrap_or_default();
        let age = (now - worker.heartbeat_at).num_milliseconds() as f64 / 1000.0;
        let list: Vec<String> = owned.iter().map(|(p, e)| format!("{p}@{e}")).collect();
        println!(
            "{:<32} {:>10} {:>13.1}s {:>20}  {}",
            worker.worker,
            owned.len(),
            age,
            flows_column(worker.flows),
            list.join(" ")
        );
    }
    for (worker, owned) in by_worker {
        let list: Vec<String> = owned.iter().map(|(p, e)| format!("{p}@{e}")).collect();
        println!(
            "{worker:<32} {:>10} {:>14} {:>20}  {}",
            owned.len(),
            "gone",
            "-",
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

/// "running/slots", with the flows waiting for a slot when there are any ("64/64 +3 waiting");
/// "-" for a worker that does not report its slots.
fn flows_column(flows: Option<FlowLoad>) -> String {
    match flows {
        Some(FlowLoad {
            running,
            waiting: 0,
            slots,
        }) => format!("{running}/{slots}"),
        Some(FlowLoad {
            running,
            waiting,
            slots,
        }) => format!("{running}/{slots} +{waiting} waiting"),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flows_column_shows_running_slots_and_waiting_flows() {
        let load = |running, waiting, slots| {
            Some(FlowLoad {
                running,
                waiting,
                slots,
            })
        };
        assert_eq!(flows_column(load(2, 0, 64)), "2/64");
        assert_eq!(flows_column(load(4, 3, 4)), "4/4 +3 waiting");
        assert_eq!(flows_column(None), "-");
    }
}
