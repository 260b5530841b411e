//! mesh-actors: where commands become work in clusters.
//!
//! # Layout
//! - [`worker`]: [`Worker`], which starts the actors of one worker process and resumes the flows a
//!   dead worker left behind.
//! - [`ownership`]: partition leases — claiming a fair share, renewing, losing (and stopping at
//!   once), handing over on shutdown.
//! - [`partition`]: the `PartitionOwner` actor: consumes the command partitions it owns and routes
//!   each command to the actor of its mesh.
//! - [`mesh`]: the `MeshActor` (a thin actix shell) and [`mesh::MeshComponent`], the plain logic
//!   that accepts or rejects a command and turns it into a persistent flow.
//! - [`flow`]: flows as task lists ([`flow::TaskKind`]), the [`flow::FlowRunner`] that executes them
//!   with retries and records every transition, and the tasks themselves.
//! - [`connections`]: kube clients for member clusters, built from their sealed credentials.
//! - [`events`]: the [`events::EventSink`] that appends every event to the mesh's history and
//!   publishes it on the bus.
//! - `drift`: per owned partition, watches on the managed Istio resources of its meshes; drift is
//!   reported (`DriftDetected`) and, per the mesh's policy, repaired through a `RepairDrift`
//!   command.
//!
//! Per mesh, commands are handled one at a time, in order; a command that arrives while a flow of
//! the mesh runs is rejected with a `CommandRejected` event naming the flow — except Istio
//! resource changes, which wait for the running flow and then run one after the other. Every task is
//! idempotent (server-side apply, "ensure" semantics), so a flow interrupted anywhere is resumed by
//! re-running its current task.

pub mod connections;
mod drift;
pub mod error;
pub mod events;
pub mod flow;
pub mod mesh;
pub mod observe;
pub mod ownership;
pub mod partition;
pub mod worker;

pub use error::ActorError;
pub use observe::{Observer, WorkerObserver};
pub use worker::{Worker, WorkerConfig};
