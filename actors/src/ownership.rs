//! Partition ownership: which command partitions this worker serves, kept by leases.
//!
//! Every third of the lease TTL the loop announces the worker, renews its leases, claims free
//! partitions up to its fair share (partitions ÷ live workers, rounded up) and hands surplus ones
//! back. Each owned partition gets its own `PartitionOwner` actor and flow runner whose writes are
//! fenced by the lease's epoch. A lease that cannot be renewed is lost: the partition's actors stop
//! at once and the worker says so in its log; a newer owner's epoch already refuses their writes.
//! On shutdown the worker lets running flows finish their current task, then releases every lease
//! so the next owner starts without waiting for expiry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use mesh_bus::lease::{Lease, Leases};
use mesh_bus::{Bus, partition_of};
use mesh_core::{MeshName, TenantId, VersionCatalog};
use mesh_schema::models::FlowRecord;

use crate::error::ActorError;
use crate::flow::FlowRunner;
use crate::mesh::MeshComponent;
use crate::partition::{PartitionOwner, Resume, Shutdown};

/// How long a graceful hand-over waits for running tasks to finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

struct Owned {
    lease: Lease,
    renewed_at: std::time::Instant,
    owner: Addr<PartitionOwner>,
    runner: FlowRunner,
    /// Watches the partition's managed Istio resources; stopped when the partition goes.
    _drift: crate::drift::DriftHandle,
}

/// The ownership loop of one worker.
pub(crate) struct Ownership {
    pub worker_id: String,
    pub leases: Arc<dyn Leases>,
    pub bus: Arc<dyn Bus>,
    pub runner: FlowRunner,
    pub catalog: Arc<VersionCatalog>,
    owned: BTreeMap<u32, Owned>,
}

/// A stable per-worker starting point, so workers do not all race for partition 0 first.
fn start_offset(worker: &str, partitions: u32) -> u32 {
    let hash = worker.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    u32::try_from(hash % u64::from(partitions.max(1))).unwrap_or(0)
}

impl Ownership {
    pub fn new(
        worker_id: String,
        leases: Arc<dyn Leases>,
        bus: Arc<dyn Bus>,
        runner: FlowRunner,
        catalog: Arc<VersionCatalog>,
    ) -> Self {
        Self {
            worker_id,
            leases,
            bus,
            runner,
            catalog,
            owned: BTreeMap::new(),
        }
    }

    /// Runs until `shutdown` fires, then hands every partition over.
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let period = (self.leases.ttl() / 3).max(Duration::from_millis(100));
        loop {
            if let Err(error) = self.tick().await {
                tracing::warn!(%error, worker = %self.worker_id, "ownership round failed");
            }
            self.report();
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        self.hand_over_all().await;
        self.report();
    }

    /// Tells the observer which partitions this worker owns now.
    fn report(&self) {
        let owned: Vec<u32> = self.owned.keys().copied().collect();
        self.runner
            .events()
            .observer()
            .partitions(&owned, self.partitions());
    }

    fn partitions(&self) -> u32 {
        self.bus.subjects().partitions()
    }

    async fn tick(&mut self) -> Result<(), ActorError> {
        // A partition whose actors stopped on their own (their command stream ended) is given
        // back, so it is claimed again with a fresh subscription.
        let dead: Vec<u32> = self
            .owned
            .iter()
            .filter(|(_, owned)| !owned.owner.connected())
            .map(|(partition, _)| *partition)
            .collect();
        for partition in dead {
            tracing::warn!(worker = %self.worker_id, partition, "partition actors stopped; giving the partition back");
            self.hand_over(partition).await;
        }
        let owned: Vec<u32> = self.owned.keys().copied().collect();
        self.leases
            .announce(&self.worker_id, &owned, Some(self.runner.flow_load()))
            .await?;
        self.renew_all().await;
        let live = self.leases.workers().await?.len().max(1);
        let total = self.partitions();
        let share = total.div_ceil(u32::try_from(live).unwrap_or(u32::MAX)) as usize;
        if self.owned.len() > share {
            let surplus: Vec<u32> = self
                .owned
                .keys()
                .rev()
                .take(self.owned.len() - share)
                .copied()
                .collect();
            for partition in surplus {
                tracing::info!(worker = %self.worker_id, partition, share, "handing a partition over to rebalance");
                self.hand_over(partition).await;
            }
        }
        if self.owned.len() < share {
            // The unfinished flows, read once for every partition taken in this round.
            let mut unfinished: Option<Vec<FlowRecord>> = None;
            let offset = start_offset(&self.worker_id, total);
            for step in 0..total {
                if self.owned.len() >= share {
                    break;
                }
                let partition = (offset + step) % total;
                if self.owned.contains_key(&partition) {
                    continue;
                }
                if let Some(lease) = self.leases.claim(partition, &self.worker_id).await? {
                    self.take(lease, &mut unfinished).await?;
                }
                self.renew_older_than(self.leases.ttl() / 3).await;
            }
        }
        Ok(())
    }

    async fn renew_all(&mut self) {
        self.renew_older_than(Duration::ZERO).await;
    }

    /// Renews the leases last renewed at least `age` ago. Taking partitions one after another can
    /// outlast a lease (each take opens a consumer and reads the unfinished flows), so the claim
    /// loop renews what is due between takes instead of letting early leases lapse.
    async fn renew_older_than(&mut self, age: Duration) {
        let partitions: Vec<u32> = self
            .owned
            .iter()
            .filter(|(_, owned)| owned.renewed_at.elapsed() >= age)
            .map(|(partition, _)| *partition)
            .collect();
        for partition in partitions {
            let Some(current) = self.owned.get(&partition).map(|o| o.lease.clone()) else {
                continue;
            };
            match self.leases.renew(&current).await {
                Ok(Some(renewed)) => {
                    if let Some(owned) = self.owned.get_mut(&partition) {
                        owned.lease = renewed;
                        owned.renewed_at = std::time::Instant::now();
                    }
                }
                Ok(None) => {
                    tracing::error!(
                        worker = %self.worker_id,
                        partition,
                        epoch = current.epoch,
                        "lost the lease of partition: another worker owns it now; stopping its actors"
                    );
                    self.drop_partition(partition);
                }
                Err(error) => {
                    // Cannot tell (bus unreachable): keep serving until the lease would have
                    // expired, then stop, since another worker may have taken it.
                    tracing::warn!(%error, partition, "lease not renewed");
                    let ttl = self.leases.ttl();
                    if self
                        .owned
                        .get(&partition)
                        .is_some_and(|o| o.renewed_at.elapsed() >= ttl)
                    {
                        tracing::error!(
                            worker = %self.worker_id,
                            partition,
                            "lease expired while the bus was unreachable; stopping its actors"
                        );
                        self.drop_partition(partition);
                    }
                }
            }
        }
    }

    /// Serves `partition` of `lease` with fresh actors and resumes its unfinished flows, read
    /// from the database on the first take of a round (`unfinished` keeps them for the rest).
    async fn take(
        &mut self,
        lease: Lease,
        unfinished: &mut Option<Vec<FlowRecord>>,
    ) -> Result<(), ActorError> {
        let partition = lease.partition;
        let epoch = i64::try_from(lease.epoch).unwrap_or(i64::MAX);
        let runner = self.runner.for_partition(epoch);
        let component = MeshComponent::new(runner.clone(), Arc::clone(&self.catalog));
        let commands = match self.bus.consume_commands(&[partition]).await {
            Ok(commands) => commands,
            Err(error) => {
                let _ = self.leases.release(&lease).await;
                return Err(error.into());
            }
        };
        let owner = PartitionOwner::create(|ctx| {
            ctx.add_stream(commands);
            PartitionOwner::new(component)
        });
        tracing::info!(worker = %self.worker_id, partition, epoch, "took partition");
        // Every unfinished flow of this partition belonged to a previous owner: resume it now.
        let flows = match unfinished {
            Some(flows) => flows,
            None => {
                let far_future = chrono::Utc::now().naive_utc() + chrono::Duration::days(1);
                unfinished.insert(runner.store().list_orphaned_flows(far_future).await?)
            }
        };
        for flow in flows.iter().cloned() {
            let (Ok(tenant), Ok(mesh)) = (
                TenantId::new(flow.tenant_id.clone()),
                MeshName::new(flow.mesh_name.clone()),
            ) else {
                continue;
            };
            if partition_of(&tenant, &mesh, self.partitions()) == partition {
                tracing::info!(flow = flow.id, mesh = %flow.mesh_name, partition, "resuming an unfinished flow");
                owner.do_send(Resume {
                    tenant: flow.tenant_id,
                    mesh: flow.mesh_name,
                    flow_id: flow.id,
                });
            }
        }
        self.owned.insert(
            partition,
            Owned {
                lease,
                renewed_at: std::time::Instant::now(),
                owner,
                _drift: crate::drift::supervise(runner.clone(), partition, self.partitions()),
                runner,
            },
        );
        Ok(())
    }

    fn drop_partition(&mut self, partition: u32) {
        if let Some(owned) = self.owned.remove(&partition) {
            owned.runner.control().request_stop();
            owned.owner.do_send(Shutdown);
        }
    }

    async fn hand_over(&mut self, partition: u32) {
        let Some(owned) = self.owned.remove(&partition) else {
            return;
        };
        owned.runner.control().request_stop();
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while owned.runner.control().active() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        owned.owner.do_send(Shutdown);
        if let Err(error) = self.leases.release(&owned.lease).await {
            tracing::warn!(%error, partition, "lease not released; it expires on its own");
        }
        tracing::info!(worker = %self.worker_id, partition, "handed partition over");
    }

    async fn hand_over_all(&mut self) {
        for owned in self.owned.values() {
            owned.runner.control().request_stop();
        }
        let partitions: Vec<u32> = self.owned.keys().copied().collect();
        for partition in partitions {
            self.hand_over(partition).await;
        }
        if let Err(error) = self.leases.withdraw(&self.worker_id).await {
            tracing::warn!(%error, "worker announcement not withdrawn; it expires on its own");
        }
    }
}
