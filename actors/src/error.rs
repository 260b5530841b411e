//! The error type of the actors.

use mesh_bus::BusError;
use mesh_clusters::{CredentialsError, OpsError};
use mesh_core::pki::PkiError;
use mesh_core::plan::PlanError;
use mesh_schema::StoreError;

/// Why an actor operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    /// Reading or writing state failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A cluster operation failed.
    #[error(transparent)]
    Cluster(#[from] OpsError),
    /// Stored credentials of a cluster are unusable.
    #[error("credentials of cluster {cluster} are unusable: {source}")]
    Credentials {
        /// The cluster.
        cluster: String,
        /// Why.
        source: CredentialsError,
    },
    /// A client could not be built.
    #[error("cannot reach cluster {cluster}: {reason}")]
    Client {
        /// The cluster.
        cluster: String,
        /// Why.
        reason: String,
    },
    /// Planning the objects of a cluster failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Certificates could not be made.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Stored state is not what mesh-manager wrote (hand-edited or from a newer version).
    #[error("stored state of mesh {mesh} is unusable: {reason}")]
    CorruptState {
        /// The mesh.
        mesh: String,
        /// What is wrong.
        reason: String,
    },
    /// istiod of a cluster does not see its peers.
    #[error("istiod of cluster {cluster} is not synced with its peers: {detail}")]
    Sync {
        /// The cluster whose istiod was checked.
        cluster: String,
        /// What it reports.
        detail: String,
    },
    /// The worker is giving the partition up; the flow stops before its next task.
    #[error("interrupted: this worker is handing the mesh over")]
    Interrupted,
    /// A message could not be built.
    #[error("invalid message: {0}")]
    Message(String),
    /// An upgrade step or health gate found the new revision unfit; not retried, the upgrade is
    /// rolled back.
    #[error("upgrade stopped in cluster {cluster}: {reason}")]
    UpgradeStopped {
        /// The cluster.
        cluster: String,
        /// What the gate or step saw.
        reason: String,
    },
    /// Pre-checks found something in the way of an upgrade (the findings, listed).
    #[error("{0}")]
    Precheck(String),
}

impl ActorError {
    /// Whether retrying the same step later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store(e) => e.is_transient(),
            Self::Bus(_) | Self::Client { .. } | Self::Sync { .. } => true,
            Self::Cluster(e) => e.is_transient(),
            _ => false,
        }
    }
}
