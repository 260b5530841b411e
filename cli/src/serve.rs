//! The all-in-one role: storage, bus and the HTTP API in one process.
//!
//! Start order: the store (migrated), the local admin token on a first start of the embedded
//! default ([`crate::local_token`]), the simulated clusters when `sim_clusters` is set
//! ([`crate::sim`]), the bus, the worker, then HTTP. On stdout, a first start of the embedded
//! default prints `admin token: …` once; then comes `meshd listening on …`. Nothing else secret is
//! ever printed, and the token is never logged.

use std::sync::Arc;

use actix_web::{App, HttpServer, middleware};
use anyhow::Context;
use mesh_api::{ApiState, BusReadiness, Metrics, ReadinessProbe, configure};

use mesh_actors::flow::RunnerConfig;
use mesh_actors::{Observer, Worker, WorkerConfig};
use mesh_bus::Bus;
use mesh_core::VersionCatalog;
use mesh_schema::Store;

use crate::config::MeshdConfig;
use crate::local_token::ensure_local_admin_token;
use crate::metrics_observer::MetricsObserver;
use crate::setup::{connect_bus, open_store};
use crate::sim::SimWorld;

/// Seconds HTTP requests in flight get to finish after SIGINT/SIGTERM.
const HTTP_SHUTDOWN_SECONDS: u64 = 3;

/// Starts the actors that carry out commands, named after this host and process.
async fn start_worker(
    store: &Store,
    bus: &Arc<dyn Bus>,
    catalog: &VersionCatalog,
    metrics: &Metrics,
    meshd: &MeshdConfig,
) -> anyhow::Result<Worker> {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "meshd".to_owned());
    let config = WorkerConfig {
        runner: RunnerConfig {
            processor: format!("{host}-{}", std::process::id()),
            max_concurrent_flows: meshd.max_concurrent_flows,
            ..RunnerConfig::default()
        },
        observer: Observer::new(Arc::new(MetricsObserver::new(metrics.clone()))),
        cluster_rate_limit: meshd.clusters,
    };
    Worker::start(
        config,
        store.clone(),
        Arc::clone(bus),
        Arc::new(catalog.clone()),
    )
    .await
    .context("cannot start the worker")
}

/// Runs until SIGINT/SIGTERM.
pub async fn run_all_in_one(config: MeshdConfig) -> anyhow::Result<()> {
    let catalog = config.catalog()?;
    let store = open_store(&config).await?;
    ensure_local_admin_token(&store, &config, &mut std::io::stdout()).await?;
    let sim = match config.sim_clusters {
        0 => None,
        count => {
            let world = SimWorld::start(count).await?;
            world.register(&store, &config).await?;
            Some(world)
        }
    };
    let bus = connect_bus(&config).await?;
    let metrics = Metrics::new();
    let worker = start_worker(&store, &bus, &catalog, &metrics, &config).await?;
    let state = ApiState {
        body_limit: config.body_limit_bytes,
        metrics,
        ..ApiState::new(catalog)
    }
    .with_store(store.clone())
    .with_bus(Arc::clone(&bus))
    .with_probe(Arc::new(store.clone()) as Arc<dyn ReadinessProbe>)
    .with_probe(Arc::new(BusReadiness(Arc::clone(&bus))));

    let server = HttpServer::new(move || {
        App::new()
            .wrap(middleware::Logger::new("%r %s %Dms").log_target("meshd::http"))
            .configure(configure(state.clone()))
    })
    // Requests in flight get this long after SIGTERM; open event streams (which never end on
    // their own) are then cut, so meshd stops in seconds, not after actix's default 30 s.
    .shutdown_timeout(HTTP_SHUTDOWN_SECONDS)
    .bind(&config.listen)
    .with_context(|| {
        format!(
            "cannot listen on {}: set --listen / MESHD_LISTEN to a free address",
            config.listen
        )
    })?;
    let addresses: Vec<String> = server.addrs().iter().map(ToString::to_string).collect();
    tracing::info!(
        listen = %addresses.join(","),
        database = %store.target(),
        bus = %if config.nats().is_some() { "nats" } else { "in-process" },
        "meshd is serving"
    );
    println!("meshd listening on http://{}", addresses.join(", http://"));
    server.run().await.context("HTTP server failed")?;
    drop((worker, bus));
    drop(sim);
    tracing::info!("meshd stopped");
    Ok(())
}
