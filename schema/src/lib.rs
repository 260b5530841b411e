//! mesh-schema: where mesh-manager keeps its state.
//!
//! # Layout
//! - [`schema`]: the diesel table definitions (in the form `diesel print-schema` writes).
//! - [`database`]: database URLs, the multi-backend connection (MariaDB/MySQL or SQLite), the
//!   connection pool and the embedded migrations (`migrations/mysql`, `migrations/sqlite`).
//! - [`crypto`]: the AEAD that seals secrets (cluster credentials, CA keys) before they are stored,
//!   and the key file it reads.
//! - [`models`]: rows as Rust structs.
//! - [`store`]: the [`Store`], the only way the rest of mesh-manager reads or writes state. Every
//!   operation runs on a blocking thread, off the async executors.
//!
//! Writes made on behalf of a mesh are fenced by the owner's lease epoch and, for changes of the
//! desired state, compared-and-set by generation; see [`store::mesh`].

pub mod crypto;
pub mod database;
pub mod models;
#[allow(missing_docs)]
pub mod schema;
pub mod store;

pub use crypto::{CryptoError, SecretBox, SecretKey};
pub use database::{DatabaseError, DatabaseTarget};
pub use store::{Store, StoreError, TenantScope};
