//! The commands of `meshctl`, one module per family.
//!
//! - [`login`]: `login`: check a token and keep it in the config file.
//! - [`cluster`]: `cluster add|list|get|remove`.
//! - [`mesh`]: `mesh create|list|get|describe|delete|sampling`, with `--wait`.
//! - [`events`]: `events MESH [-f]` and `flows MESH [ID]`.
//! - [`apply`]: `apply|delete -f FILE --mesh MESH [--cluster C] [--dry-run|--diff] [--wait]` and
//!   `resources MESH` for Istio resources.
//! - [`services`]: `services MESH -n NS [NAME]`, the microservices view.

pub mod apply;
pub mod cluster;
pub mod events;
pub mod login;
pub mod mesh;
pub mod services;
