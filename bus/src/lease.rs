//! Partition leases: which worker owns which command partition, and with which epoch.
//!
//! A worker claims a partition by creating its key (`partition.<p>`) in a JetStream key-value
//! bucket whose entries expire after the lease TTL; it renews by updating the key at the revision
//! it last wrote (compare-and-set), so a worker whose lease expired and was claimed by another can
//! never renew it. The revision of the claim is the lease's **epoch**: revisions only grow, so a
//! later owner always holds a larger epoch, and writes fenced by epoch refuse the older owner.
//! Workers also announce themselves (`worker.<id>`) so each can compute its fair share.
//!
//! [`NatsLeases`] keeps them in NATS (needs nats-server ≥ 2.10); [`LocalLeases`] keeps them in
//! memory for the single-process default.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::BusError;

/// The default lease TTL.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// A lease held by this worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The partition.
    pub partition: u32,
    /// The holder.
    pub worker: String,
    /// The claim's epoch (fencing token).
    pub epoch: u64,
    /// The revision last written (renewals compare-and-set against it).
    revision: u64,
}

/// Who owns a partition, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The partition.
    pub partition: u32,
    /// The owning worker.
    pub worker: String,
    /// The claim's epoch.
    pub epoch: u64,
    /// When the owner last renewed it.
    pub renewed_at: DateTime<Utc>,
}

/// A live worker, as it announced itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRecord {
    /// The worker's id.
    pub worker: String,
    /// The partitions it owns.
    pub partitions: Vec<u32>,
    /// When it last announced itself.
    pub heartbeat_at: DateTime<Utc>,
    /// How busy its flow slots were then (absent from workers that do not report it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows: Option<FlowLoad>,
}

impl WorkerRecord {
    /// The announcement of `worker` now; fails when the id cannot be a key.
    fn announced(
        worker: &str,
        partitions: &[u32],
        flows: Option<FlowLoad>,
    ) -> Result<Self, BusError> {
        check_worker_id(worker)?;
        Ok(Self {
            worker: worker.to_owned(),
            partitions: partitions.to_vec(),
            heartbeat_at: Utc::now(),
            flows,
        })
    }
}

/// How a worker's flow slots are used: flows beyond its slots wait (accepted, `Pending`) until
/// one ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowLoad {
    /// Flows running now (each holds a slot).
    pub running: u32,
    /// Flows waiting for a slot.
    pub waiting: u32,
    /// The most flows the worker runs at once.
    pub slots: u32,
}

/// Leases over command partitions.
#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// How long a lease lasts without renewal.
    fn ttl(&self) -> Duration;
    /// Claims a free partition; `None` when another worker holds it.
    async fn claim(&self, partition: u32, worker: &str) -> Result<Option<Lease>, BusError>;
    /// Renews a lease; `None` when it was lost (expired and claimed by another, or released).
    async fn renew(&self, lease: &Lease) -> Result<Option<Lease>, BusError>;
    /// Gives a lease up (only if still held).
    async fn release(&self, lease: &Lease) -> Result<(), BusError>;
    /// Announces a live worker, what it owns and how busy its flow slots are.
    async fn announce(
        &self,
        worker: &str,
        partitions: &[u32],
        flows: Option<FlowLoad>,
    ) -> Result<(), BusError>;
    /// Removes a worker's announcement (clean exit).
    async fn withdraw(&self, worker: &str) -> Result<(), BusError>;
    /// Live workers.
    async fn workers(&self) -> Result<Vec<WorkerRecord>, BusError>;
    /// Current partition owners.
    async fn owners(&self) -> Result<Vec<LeaseRecord>, BusError>;
}

fn check_worker_id(worker: &str) -> Result<(), BusError> {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if worker.is_empty() || worker.len() > 128 || !worker.chars().all(valid) {
        return Err(BusError::Config {
            reason: format!("invalid worker id {worker:?}: use letters, digits, '-' and '_'"),
        });
    }
    Ok(())
}

fn encode<T: Serialize>(value: &T) -> Result<Bytes, BusError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| BusError::Lease {
            reason: format!("cannot encode a lease record: {e}"),
        })
}

/// Leases in a JetStream key-value bucket.
#[derive(Clone)]
pub struct NatsLeases {
    kv: async_nats::jetstream::kv::Store,
    ttl: Duration,
}

impl std::fmt::Debug for NatsLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsLeases")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl NatsLeases {
    /// Opens (creating if needed) the lease bucket `<bucket>` with entries living `ttl`.
    pub async fn open(
        jetstream: &async_nats::jetstream::Context,
        bucket: &str,
        ttl: Duration,
    ) -> Result<Self, BusError> {
        let setup = |reason: String| BusError::SetUpStream {
            stream: bucket.to_owned(),
            reason,
        };
        let kv = match jetstream.get_key_value(bucket).await {
            Ok(kv) => kv,
            Err(_) => jetstream
                .create_key_value(async_nats::jetstream::kv::Config {
                    bucket: bucket.to_owned(),
                    description: "mesh-manager partition leases".into(),
                    history: 1,
                    max_age: ttl,
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    setup(format!(
                        "{e}; partition leases need nats-server 2.10 or newer"
                    ))
                })?,
        };
        Ok(Self { kv, ttl })
    }

    fn partition_key(partition: u32) -> String {
        format!("partition.{partition}")
    }
}

#[async_trait]
impl Leases for NatsLeases {
    fn ttl(&self) -> Duration {
        self.ttl
    }

    async fn claim(&self, partition: u32, worker: &str) -> Result<Option<Lease>, BusError> {
        check_worker_id(worker)?;
        let key = Self::partition_key(partition);
        let record = |epoch| LeaseRecord {
            partition,
            worker: worker.to_owned(),
            epoch,
            renewed_at: Utc::now(),
        };
        let epoch = match self.kv.create(&key, encode(&record(0))?).await {
            Ok(revision) => revision,
            Err(e) if e.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists => {
                return Ok(None);
            }
            Err(e) => {
                return Err(BusError::Lease {
                    reason: e.to_string(),
                });
            }
        };
        // Record the epoch in the value, for `owners()`; the key is ours at revision `epoch`.
        match self.kv.update(&key, encode(&record(epoch))?, epoch).await {
            Ok(revision) => Ok(Some(Lease {
                partition,
                worker: worker.to_owned(),
                epoch,
                revision,
            })),
            Err(_) => Ok(None),
        }
    }

    async fn renew(&self, lease: &Lease) -> Result<Option<Lease>, BusError> {
        let record = LeaseRecord {
            partition: lease.partition,
            worker: lease.worker.clone(),
            epoch: lease.epoch,
            renewed_at: Utc::now(),
        };
        match self
            .kv
            .update(
                Self::partition_key(lease.partition),
                encode(&record)?,
                lease.revision,
            )
            .await
        {
            Ok(revision) => Ok(Some(Lease {
                revision,
                ..lease.clone()
            })),
            Err(e) if e.kind() == async_nats::jetstream::kv::UpdateErrorKind::WrongLastRevision => {
                Ok(None)
            }
            Err(e) => Err(BusError::Lease {
                reason: e.to_string(),
            }),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), BusError> {
        self.kv
            .delete_expect_revision(Self::partition_key(lease.partition), Some(lease.revision))
            .await
            .map_err(|e| BusError::Lease {
                reason: e.to_string(),
            })
    }

    async fn announce(
        &self,
        worker: &str,
        partitions: &[u32],
        flows: Option<FlowLoad>,
    ) -> Result<(), BusError> {
        let record = WorkerRecord::announced(worker, partitions, flows)?;
        self.kv
            .put(format!("worker.{worker}"), encode(&record)?)
            .await
            .map(drop)
            .map_err(|e| BusError::Lease {
                reason: e.to_string(),
            })
    }

    async fn withdraw(&self, worker: &str) -> Result<(), BusError> {
        self.kv
            .delete(format!("worker.{worker}"))
            .await
            .map_err(|e| BusError::Lease {
                reason: e.to_string(),
            })
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>, BusError> {
        let mut found = Vec::new();
        for (_, value) in self.entries("worker.").await? {
            if let Ok(record) = serde_json::from_slice::<WorkerRecord>(&value) {
                found.push(record);
            }
        }
        Ok(found)
    }

    async fn owners(&self) -> Result<Vec<LeaseRecord>, BusError> {
        let mut found: Vec<LeaseRecord> = self
            .entries("partition.")
            .await?
            .into_iter()
            .filter_map(|(_, value)| serde_json::from_slice(&value).ok())
            .collect();
        found.sort_by_key(|r| r.partition);
        Ok(found)
    }
}

impl NatsLeases {
    async fn entries(&self, prefix: &str) -> Result<Vec<(String, Bytes)>, BusError> {
        use futures::StreamExt;
        let error = |e: String| BusError::Lease { reason: e };
        let mut keys = self.kv.keys().await.map_err(|e| error(e.to_string()))?;
        let mut found = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| error(e.to_string()))?;
            if !key.starts_with(prefix) {
                continue;
            }
            if let Some(value) = self.kv.get(&key).await.map_err(|e| error(e.to_string()))? {
                found.push((key, value));
            }
        }
        Ok(found)
    }
}

/// Leases in memory, for one process (the all-in-one default and tests).
#[derive(Debug)]
pub struct LocalLeases {
    ttl: Duration,
    state: Mutex<LocalState>,
}

#[derive(Debug, Default)]
struct LocalState {
    revision: u64,
    partitions: BTreeMap<u32, (LeaseRecord, u64, Instant)>,
    workers: BTreeMap<String, (WorkerRecord, Instant)>,
}

impl LocalLeases {
    /// In-memory leases living `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            state: Mutex::new(LocalState::default()),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, LocalState>, BusError> {
        self.state.lock().map_err(|_| BusError::Lease {
            reason: "lease table poisoned".into(),
        })
    }
}

impl LocalState {
    fn expire(&mut self, ttl: Duration) {
        let now = Instant::now();
        self.partitions
            .retain(|_, (_, _, at)| now.duration_since(*at) < ttl);
        self.workers
            .retain(|_, (_, at)| now.duration_since(*at) < ttl);
    }
}

#[async_trait]
impl Leases for LocalLeases {
    fn ttl(&self) -> Duration {
        self.ttl
    }

    async fn claim(&self, partition: u32, worker: &str) -> Result<Option<Lease>, BusError> {
        check_worker_id(worker)?;
        let mut state = self.lock()?;
        state.expire(self.ttl);
        if state.partitions.contains_key(&partition) {
            return Ok(None);
        }
        state.revision += 1;
        let epoch = state.revision;
        let record = LeaseRecord {
            partition,
            worker: worker.to_owned(),
            epoch,
            renewed_at: Utc::now(),
        };
        state
            .partitions
            .insert(partition, (record, epoch, Instant::now()));
        Ok(Some(Lease {
            partition,
            worker: worker.to_owned(),
            epoch,
            revision: epoch,
        }))
    }

    async fn renew(&self, lease: &Lease) -> Result<Option<Lease>, BusError> {
        let mut state = self.lock()?;
        state.expire(self.ttl);
        state.revision += 1;
        let revision = state.revision;
        match state.partitions.get_mut(&lease.partition) {
            Some((record, current, at)) if *current == lease.revision => {
                record.renewed_at = Utc::now();
                *current = revision;
                *at = Instant::now();
                Ok(Some(Lease {
                    revision,
                    ..lease.clone()
                }))
            }
            _ => Ok(None),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), BusError> {
        let mut state = self.lock()?;
        if state
            .partitions
            .get(&lease.partition)
            .is_some_and(|(_, rev, _)| *rev == lease.revision)
        {
            state.partitions.remove(&lease.partition);
        }
        Ok(())
    }

    async fn announce(
        &self,
        worker: &str,
        partitions: &[u32],
        flows: Option<FlowLoad>,
    ) -> Result<(), BusError> {
        let record = WorkerRecord::announced(worker, partitions, flows)?;
        self.lock()?
            .workers
            .insert(worker.to_owned(), (record, Instant::now()));
        Ok(())
    }

    async fn withdraw(&self, worker: &str) -> Result<(), BusError> {
        self.lock()?.workers.remove(worker);
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>, BusError> {
        let mut state = self.lock()?;
        state.expire(self.ttl);
        Ok(state.workers.values().map(|(r, _)| r.clone()).collect())
    }

    async fn owners(&self) -> Result<Vec<LeaseRecord>, BusError> {
        let mut state = self.lock()?;
        state.expire(self.ttl);
        Ok(state
            .partitions
            .values()
            .map(|(r, _, _)| r.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_claimed_partition_cannot_be_claimed_again_until_released() {
        let leases = LocalLeases::new(Duration::from_secs(10));
        let lease = leases.claim(3, "w1").await.expect("claim").expect("free");
        assert!(leases.claim(3, "w2").await.expect("claim").is_none());
        let renewed = leases
            .renew(&lease)
            .await
            .expect("renew")
            .expect("still ours");
        assert_eq!(renewed.epoch, lease.epoch, "renewal keeps the epoch");
        assert!(
            leases.renew(&lease).await.expect("renew").is_none(),
            "a stale revision cannot renew"
        );
        leases.release(&renewed).await.expect("release");
        let next = leases
            .claim(3, "w2")
            .await
            .expect("claim")
            .expect("free again");
        assert!(next.epoch > lease.epoch, "epochs grow");
    }

    #[tokio::test]
    async fn expired_leases_are_lost_and_claimable() {
        let leases = LocalLeases::new(Duration::from_millis(50));
        let lease = leases.claim(0, "w1").await.expect("claim").expect("free");
        tokio::time::sleep(Duration::from_millis(80)).await;
        let taken = leases
            .claim(0, "w2")
            .await
            .expect("claim")
            .expect("expired");
        assert!(taken.epoch > lease.epoch);
        assert!(leases.renew(&lease).await.expect("renew").is_none());
        assert_eq!(leases.owners().await.expect("owners")[0].worker, "w2");
    }

    #[tokio::test]
    async fn worker_ids_are_checked() {
        let leases = LocalLeases::new(DEFAULT_LEASE_TTL);
        assert!(leases.claim(0, "a.b").await.is_err());
        assert!(leases.announce("", &[], None).await.is_err());
    }

    #[tokio::test]
    async fn announcements_carry_partitions_and_flow_load() {
        let leases = LocalLeases::new(DEFAULT_LEASE_TTL);
        let load = FlowLoad {
            running: 3,
            waiting: 1,
            slots: 3,
        };
        leases
            .announce("w1", &[0, 5], Some(load))
            .await
            .expect("announce");
        leases.announce("w2", &[1], None).await.expect("announce");
        let mut workers = leases.workers().await.expect("workers");
        workers.sort_by(|a, b| a.worker.cmp(&b.worker));
        assert_eq!(workers[0].partitions, [0, 5]);
        assert_eq!(workers[0].flows, Some(load));
        assert_eq!(workers[1].flows, None);
    }

    #[test]
    fn worker_records_without_flow_load_still_decode() {
        let record: WorkerRecord = serde_json::from_str(
            r#"{"worker":"w1","partitions":[2],"heartbeat_at":"2026-12-01T10:00:00Z"}"#,
        )
        .expect("an announcement of a worker that does not report its slots");
        assert_eq!(record.flows, None);
    }
}
