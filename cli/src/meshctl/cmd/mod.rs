//! The commands of `meshctl`, one module per family.
//!
//! - [`cluster`]: `cluster add|list|get|remove`.
//! - [`mesh`]: `mesh create|list|get|describe|delete|sampling`, with `--wait`.
//! - [`events`]: `events MESH [-f]` and `flows MESH [ID]`.
//! - [`apply`]: `apply -f FILE --mesh MESH [--dry-run|--diff] [--wait]` for Istio resources.

pub mod apply;
pub mod cluster;
pub mod events;
pub mod mesh;
