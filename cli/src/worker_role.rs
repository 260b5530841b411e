//! The worker role: `meshd worker` carries out commands for its share of the partitions, next to
//! any number of other workers, and hands its partitions over on SIGTERM.
//!
//! It needs NATS (leases live in JetStream key-value) and a shared database (MariaDB/MySQL); the
//! embedded SQLite file and in-process bus cannot be shared between processes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mesh_actors::flow::RunnerConfig;
use mesh_actors::{Worker, WorkerConfig};
use mesh_bus::{Bus, BusConfig, NatsBus};

use crate::config::MeshdConfig;
use crate::setup::open_store;

/// This process's worker id: `<host>-<pid>`, or the given one.
pub fn worker_id(configured: Option<&str>) -> String {
    configured.map_or_else(
        || {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "meshd".to_owned());
            let host: String = host
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            format!("{host}-{}", std::process::id())
        },
        str::to_owned,
    )
}

/// Runs a worker until SIGTERM or SIGINT, then hands its partitions over and returns.
pub async fn run_worker(
    config: MeshdConfig,
    id: Option<String>,
    lease_ttl: Duration,
    ack_wait: Duration,
) -> anyhow::Result<()> {
    let url = config
        .nats()
        .context("the worker role needs NATS with JetStream: set --nats-url / MESHD_NATS_URL")?
        .to_owned();
    anyhow::ensure!(
        !config.database()?.is_sqlite(),
        "the worker role needs a database shared by all workers: set --database-url mysql://…"
    );
    let catalog = Arc::new(config.catalog()?);
    let store = open_store(&config).await?;
    let bus_config = BusConfig::with_root(config.bus.root.clone())
        .partitions(config.bus.partitions)
        .ack_wait(ack_wait);
    let nats = NatsBus::connect(&url, bus_config)
        .await
        .context("check --nats-url / MESHD_NATS_URL; NATS must run with JetStream (-js)")?;
    let leases = Arc::new(nats.leases(lease_ttl).await?);
    let bus: Arc<dyn Bus> = Arc::new(nats);
    let id = worker_id(id.as_deref());
    let worker_config = WorkerConfig {
        runner: RunnerConfig {
            processor: id.clone(),
            max_concurrent_flows: config.max_concurrent_flows,
            ..RunnerConfig::default()
        },
        cluster_rate_limit: config.clusters,
        ..WorkerConfig::default()
    };
    let worker = Worker::start_with_leases(worker_config, store, bus, leases, catalog)
        .await
        .context("cannot start the worker")?;
    tracing::info!(worker = %id, lease_ttl_secs = lease_ttl.as_secs_f64(), "worker started");
    println!("meshd worker {id} started");
    wait_for_signal().await?;
    tracing::info!(worker = %id, "stopping: finishing current steps and handing partitions over");
    worker.shutdown().await;
    tracing::info!(worker = %id, "worker stopped cleanly");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        _ = terminate.recv() => {}
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
    }
    Ok(())
}
