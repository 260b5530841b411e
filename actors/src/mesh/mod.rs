//! The mesh actor: one per mesh, handling its commands one at a time and running its flows.
//!
//! - [`component`]: [`MeshComponent`], the plain logic: record the command (idempotency), decide
//!   (accept or reject with a reason), plan and persist the flow, announce it.
//! - [`actor`]: `MeshActor`, the actix shell: a mailbox that handles one command at a time, in
//!   order, and runs the accepted flow in the background.

pub mod actor;
pub mod component;

pub use actor::{HandleCommand, MeshActor, ResumeFlow, StopMesh};
pub use component::{Acceptance, Accepted, MeshComponent};
