//! A worker: the actors of one meshd process.
//!
//! [`Worker::start`] consumes every command partition (leases that share partitions among
//! several workers build on this), and resumes the unfinished flows whose runner stopped sending
//! heartbeats — those of a crashed worker, or of this one before a restart.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use mesh_bus::Bus;
use mesh_core::VersionCatalog;
use mesh_schema::Store;

use crate::connections::ClusterConnections;
use crate::error::ActorError;
use crate::events::EventSink;
use crate::flow::{FlowRunner, RunnerConfig};
use crate::mesh::MeshComponent;
use crate::partition::{PartitionOwner, Resume};

/// Settings of a worker.
#[derive(Debug, Clone, Default)]
pub struct WorkerConfig {
    /// Flow timing and identity.
    pub runner: RunnerConfig,
}

/// A running worker.
pub struct Worker {
    owner: Addr<PartitionOwner>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl Worker {
    /// Starts consuming commands and resumes orphaned flows. Must run inside an actix System.
    pub async fn start(
        config: WorkerConfig,
        store: Store,
        bus: Arc<dyn Bus>,
        catalog: Arc<VersionCatalog>,
    ) -> Result<Self, ActorError> {
        let stale_after = config.runner.heartbeat * 3;
        let runner = FlowRunner::new(
            store.clone(),
            EventSink::new(store.clone(), Arc::clone(&bus)),
            ClusterConnections::new(store.clone()),
            config.runner,
        );
        let component = MeshComponent::new(runner, catalog);
        let partitions: Vec<u32> = (0..bus.subjects().partitions()).collect();
        let commands = bus.consume_commands(&partitions).await?;
        let owner = PartitionOwner::create(|ctx| {
            ctx.add_stream(commands);
            PartitionOwner::new(component)
        });
        let stale_before = chrono::Utc::now().naive_utc()
            - chrono::Duration::from_std(stale_after)
                .unwrap_or_else(|_| chrono::Duration::seconds(15));
        for flow in store.list_orphaned_flows(stale_before).await? {
            tracing::info!(flow = flow.id, mesh = %flow.mesh_name, "resuming an unfinished flow");
            owner.do_send(Resume {
                tenant: flow.tenant_id,
                mesh: flow.mesh_name,
                flow_id: flow.id,
            });
        }
        Ok(Self { owner })
    }

    /// Whether the worker's actors still run.
    pub fn is_running(&self) -> bool {
        self.owner.connected()
    }

    /// How long a wait in a flow may take by default.
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
}
