//! A worker: the actors of one meshd process.
//!
//! [`Worker::start`] joins the workers sharing the command partitions: it claims its share through
//! leases (see [`crate::ownership`]), serves each owned partition with its own actors, and resumes
//! the unfinished flows of every partition it takes. [`Worker::shutdown`] hands everything over
//! cleanly.

use std::sync::Arc;
use std::time::Duration;

use mesh_bus::Bus;
use mesh_bus::lease::Leases;
use mesh_core::VersionCatalog;
use mesh_schema::Store;

use crate::connections::ClusterConnections;
use crate::error::ActorError;
use crate::events::EventSink;
use crate::flow::{FlowRunner, RunnerConfig};
use crate::observe::Observer;
use crate::ownership::Ownership;

/// Settings of a worker.
#[derive(Debug, Clone, Default)]
pub struct WorkerConfig {
    /// Flow timing and identity (`processor` is also the worker's id in leases).
    pub runner: RunnerConfig,
    /// Who hears about the worker's events, partitions and actors.
    pub observer: Observer,
    /// How many requests the worker sends to each member cluster.
    pub cluster_rate_limit: mesh_clusters::RateLimit,
}

/// A running worker.
pub struct Worker {
    id: String,
    shutdown: tokio::sync::watch::Sender<bool>,
    done: tokio::sync::oneshot::Receiver<()>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts the worker with in-process leases (the single-process default). Must run inside an
    /// actix System.
    pub async fn start(
        config: WorkerConfig,
        store: Store,
        bus: Arc<dyn Bus>,
        catalog: Arc<VersionCatalog>,
    ) -> Result<Self, ActorError> {
        let leases = Arc::new(mesh_bus::lease::LocalLeases::new(
            mesh_bus::lease::DEFAULT_LEASE_TTL,
        ));
        Self::start_with_leases(config, store, bus, leases, catalog).await
    }

    /// Starts the worker, sharing partitions with other workers through `leases`. Must run inside
    /// an actix System.
    pub async fn start_with_leases(
        config: WorkerConfig,
        store: Store,
        bus: Arc<dyn Bus>,
        leases: Arc<dyn Leases>,
        catalog: Arc<VersionCatalog>,
    ) -> Result<Self, ActorError> {
        let id = config.runner.processor.clone();
        let runner = FlowRunner::new(
            store.clone(),
            EventSink::observed(store.clone(), Arc::clone(&bus), config.observer.clone()),
            ClusterConnections::with_rate_limit(store, config.cluster_rate_limit),
            config.runner,
        );
        let ownership = Ownership::new(id.clone(), leases, bus, runner, catalog);
        let (shutdown, receiver) = tokio::sync::watch::channel(false);
        let (finished, done) = tokio::sync::oneshot::channel();
        actix::spawn(async move {
            ownership.run(receiver).await;
            let _ = finished.send(());
        });
        Ok(Self { id, shutdown, done })
    }

    /// The worker's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Lets running flows finish their current task, releases every partition and stops.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(
            crate::ownership::DRAIN_TIMEOUT + Duration::from_secs(5),
            self.done,
        )
        .await;
    }
}
