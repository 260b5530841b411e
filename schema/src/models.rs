//! Rows as Rust structs: records read from the tables and the new rows written to them.
//!
//! Records mirror their tables column for column (so `Selectable` checks them against
//! [`crate::schema`] at compile time); no record of a table that holds secrets exposes them.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::schema::{
    api_token, cluster, command_log, flow, lb_resource, mesh, mesh_event_log, registered_cluster,
    task,
};

/// A mesh (table `mesh`).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = mesh)]
pub struct MeshRecord {
    /// Row id.
    pub id: i64,
    /// Owning tenant.
    pub tenant_id: String,
    /// Mesh name, unique among live meshes.
    pub name: String,
    /// Region label.
    pub region: String,
    /// Human title.
    pub title: String,
    /// Overall status (`Creating`, `Running`, ...).
    pub status: String,
    /// Installed Istio version.
    pub version: String,
    /// Version before the last upgrade, the rollback target.
    pub last_version: String,
    /// Mesh configuration (JSON).
    pub config: Option<String>,
    /// 0 while live; the row id once deleted.
    pub deleted_flag: i64,
    /// When it was deleted.
    pub deleted_at: Option<NaiveDateTime>,
    /// When it was created.
    pub created_at: Option<NaiveDateTime>,
    /// When it was last written.
    pub updated_at: Option<NaiveDateTime>,
    /// Observed state (JSON: gateway addresses, per-cluster details).
    pub state: Option<String>,
    /// Deployment mode (`single`, `primary-remote`, `multi-primary`).
    pub mode: String,
    /// Task summary of the running operation (JSON).
    pub tasks: Option<String>,
    /// Bumped by every change of the desired state.
    pub generation: i64,
    /// Lease epoch of the worker that last wrote it.
    pub owner_epoch: i64,
}

impl MeshRecord {
    /// The stored mesh configuration; the defaults when none is stored.
    pub fn mesh_config(&self) -> Result<mesh_core::MeshConfig, serde_json::Error> {
        match self.config.as_deref().filter(|c| !c.trim().is_empty()) {
            Some(text) => serde_json::from_str(text),
            None => Ok(mesh_core::MeshConfig::default()),
        }
    }
}

/// A mesh to create.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = mesh)]
pub struct NewMesh {
    /// Owning tenant.
    pub tenant_id: String,
    /// Mesh name.
    pub name: String,
    /// Region label.
    pub region: String,
    /// Human title.
    pub title: String,
    /// Initial status.
    pub status: String,
    /// Requested Istio version.
    pub version: String,
    /// Mesh configuration (JSON).
    pub config: Option<String>,
    /// Deployment mode.
    pub mode: String,
    /// Initial observed state (JSON), usually none.
    pub state: Option<String>,
}

/// A member cluster of a mesh (seed table `cluster`).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = cluster)]
pub struct MemberClusterRecord {
    /// Row id.
    pub id: i64,
    /// Cluster name.
    pub name: String,
    /// Region label.
    pub region: String,
    /// The mesh it belongs to.
    pub mesh_name: String,
    /// `master` or `remote`.
    pub role: String,
    /// 0 while a member; the row id once removed.
    pub deleted_flag: i64,
    /// When it was removed.
    pub deleted_at: Option<NaiveDateTime>,
    /// When it joined.
    pub created_at: Option<NaiveDateTime>,
    /// When it was last written.
    pub updated_at: Option<NaiveDateTime>,
    /// Where the cluster stands (`Installing`, `Linking`, `Running`, ...).
    pub phase: String,
    /// When linking finished.
    pub linked_at: Option<NaiveDateTime>,
    /// Last error, empty when none.
    pub error: String,
    /// Its network (`topology.istio.io/network`).
    pub network: String,
}

/// A member cluster to add.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = cluster)]
pub struct NewMemberCluster {
    /// Cluster name.
    pub name: String,
    /// Region label.
    pub region: String,
    /// The mesh it joins.
    pub mesh_name: String,
    /// `master` or `remote`.
    pub role: String,
    /// Initial phase.
    pub phase: String,
    /// Its network.
    pub network: String,
}

/// A registered cluster without its credentials (table `registered_cluster`).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = registered_cluster)]
pub struct RegisteredClusterRecord {
    /// Row id.
    pub id: i64,
    /// Owning tenant.
    pub tenant_id: String,
    /// Cluster name.
    pub name: String,
    /// Region label.
    pub region: String,
    /// API server URL.
    pub server: String,
    /// `token` or `client-certificate`.
    pub auth_kind: String,
    /// Id of the key that sealed the credentials.
    pub key_id: String,
    /// Last probe result (`Reachable`, `Unreachable`, `Forbidden`, ...).
    pub status: String,
    /// What the last probe said.
    pub status_message: String,
    /// 0 while registered; the row id once removed.
    pub deleted_flag: i64,
    /// When it was removed.
    pub deleted_at: Option<NaiveDateTime>,
    /// When it was registered.
    pub created_at: NaiveDateTime,
    /// When it was last written.
    pub updated_at: NaiveDateTime,
}

/// A registered cluster row as written (credentials already sealed).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = registered_cluster)]
pub(crate) struct NewRegisteredClusterRow {
    pub tenant_id: String,
    pub name: String,
    pub region: String,
    pub server: String,
    pub auth_kind: String,
    pub credentials_sealed: String,
    pub key_id: String,
    pub status: String,
    pub status_message: String,
}

/// A flow: one operation on a mesh (seed table `flow`).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = flow)]
pub struct FlowRecord {
    /// Row id, the flow id.
    pub id: i64,
    /// Tenant of the mesh.
    pub tenant_id: String,
    /// The mesh.
    pub mesh_name: String,
    /// Instance name (e.g. `install-demo-1`).
    pub name: String,
    /// Definition name (`install`, `upgrade`, ...).
    pub def_name: String,
    /// A [`mesh_core::FlowStatus`] string.
    pub status: String,
    /// Input (JSON: the command that started it).
    pub input: String,
    /// Human-readable log lines.
    pub log: Option<String>,
    /// When it started running.
    pub started_at: Option<NaiveDateTime>,
    /// When it ended.
    pub finished_at: Option<NaiveDateTime>,
    /// Worker running it.
    pub processor: String,
    /// Last heartbeat of that worker; NULL counts as dead.
    pub heartbeat: Option<NaiveDateTime>,
    /// When it was recorded.
    pub created_at: Option<NaiveDateTime>,
    /// When it was last written.
    pub updated_at: Option<NaiveDateTime>,
}

impl FlowRecord {
    /// The row `new` became when it was recorded with `id`, without reading it back: not started,
    /// no log, no heartbeat, and `at` (the recording's time as this process saw it) for its
    /// creation and last write.
    pub fn recorded(id: i64, new: NewFlow, at: NaiveDateTime) -> Self {
        Self {
            id,
            tenant_id: new.tenant_id,
            mesh_name: new.mesh_name,
            name: new.name,
            def_name: new.def_name,
            status: new.status,
            input: new.input,
            log: None,
            started_at: None,
            finished_at: None,
            processor: new.processor,
            heartbeat: None,
            created_at: Some(at),
            updated_at: Some(at),
        }
    }
}

/// A flow to record.
/// Also a changeset: MariaDB/MySQL inserts it as `INSERT … SET` (see `store::kept`).
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = flow, treat_none_as_null = true)]
pub struct NewFlow {
    /// Tenant of the mesh.
    pub tenant_id: String,
    /// The mesh.
    pub mesh_name: String,
    /// Instance name.
    pub name: String,
    /// Definition name.
    pub def_name: String,
    /// Initial status.
    pub status: String,
    /// Input (JSON).
    pub input: String,
    /// Worker that will run it, empty if none yet.
    pub processor: String,
}

/// A task of a flow (seed table `task`).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = task)]
pub struct TaskRecord {
    /// Row id.
    pub id: i64,
    /// Its flow.
    pub flow_id: i64,
    /// Task name (e.g. `install-istio:cluster-a`).
    pub name: String,
    /// A [`mesh_core::TaskStatus`] string.
    pub status: String,
    /// Output (JSON), when done.
    pub output: Option<String>,
    /// Error, when failed.
    pub error: Option<String>,
    /// Step summary.
    pub steps: String,
    /// Log lines.
    pub log: Option<String>,
    /// When it started.
    pub started_at: Option<NaiveDateTime>,
    /// When it ended.
    pub finished_at: Option<NaiveDateTime>,
    /// When it was recorded.
    pub created_at: Option<NaiveDateTime>,
    /// When it was last written.
    pub updated_at: Option<NaiveDateTime>,
}

/// A task to record.
/// Also a changeset: MariaDB/MySQL inserts it as `INSERT … SET` (see `store::kept`).
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = task, treat_none_as_null = true)]
pub struct NewTask {
    /// Its flow.
    pub flow_id: i64,
    /// Task name.
    pub name: String,
    /// Initial status.
    pub status: String,
    /// Step summary.
    pub steps: String,
}

/// A command in the command log.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = command_log)]
pub struct CommandRecord {
    /// Envelope id.
    pub command_id: String,
    /// Tenant of the mesh.
    pub tenant_id: String,
    /// The mesh.
    pub mesh_name: String,
    /// Command kind (`CreateMesh`, ...).
    pub kind: String,
    /// A [`mesh_core::CommandStatus`] string.
    pub status: String,
    /// Outcome (JSON or message).
    pub result: Option<String>,
    /// The flow it started, if any.
    pub flow_id: Option<i64>,
    /// When it was accepted.
    pub created_at: NaiveDateTime,
    /// When it was last written.
    pub updated_at: NaiveDateTime,
}

/// A command to record.
/// Also a changeset: MariaDB/MySQL inserts it as `INSERT … SET` (see `store::kept`).
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = command_log, treat_none_as_null = true)]
pub struct NewCommand {
    /// Envelope id.
    pub command_id: String,
    /// Tenant of the mesh.
    pub tenant_id: String,
    /// The mesh.
    pub mesh_name: String,
    /// Command kind.
    pub kind: String,
    /// Initial status, normally `Accepted`.
    pub status: String,
    /// Its outcome, when recorded already decided (a refusal's reason).
    pub result: Option<String>,
    /// The flow carrying it out, when recorded with it.
    pub flow_id: Option<i64>,
}

/// One event in a mesh's append-only history.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = mesh_event_log)]
pub struct EventRecord {
    /// Position in the history (increasing).
    pub id: i64,
    /// Envelope id of the event.
    pub event_id: String,
    /// Tenant of the mesh.
    pub tenant_id: String,
    /// The mesh.
    pub mesh_name: String,
    /// Event kind (`MeshCreated`, ...).
    pub kind: String,
    /// Correlation id (the command that led to it).
    pub correlation_id: Option<String>,
    /// The flow it belongs to.
    pub flow_id: Option<i64>,
    /// The event envelope (JSON).
    pub payload: String,
    /// When it happened.
    pub occurred_at: NaiveDateTime,
}

/// An event to append.
/// Also a changeset: MariaDB/MySQL inserts it as `INSERT … SET` (see `store::kept`).
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = mesh_event_log, treat_none_as_null = true)]
pub struct NewEvent {
    /// Envelope id.
    pub event_id: String,
    /// Tenant of the mesh.
    pub tenant_id: String,
    /// The mesh.
    pub mesh_name: String,
    /// Event kind.
    pub kind: String,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// The flow it belongs to.
    pub flow_id: Option<i64>,
    /// The event envelope (JSON).
    pub payload: String,
    /// When it happened.
    pub occurred_at: NaiveDateTime,
}

/// A load-balancer resource of a mesh (seed table `lb_resource`).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = lb_resource)]
pub struct LbResourceRecord {
    /// Row id.
    pub id: i64,
    /// Resource name (e.g. `<cluster>/istio-eastwestgateway`).
    pub name: String,
    /// The mesh.
    pub mesh_name: String,
    /// Its address or state.
    pub status: String,
}

/// An API token without its hash (table `api_token`).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = api_token)]
pub struct ApiTokenRecord {
    /// Row id, the token id users revoke by.
    pub id: i64,
    /// Who uses the token (`user:alice`, `ci`, ...).
    pub principal: String,
    /// The tenant the token acts for.
    pub tenant_id: String,
    /// `admin`, `editor` or `viewer`.
    pub role: String,
    /// When it was issued.
    pub created_at: NaiveDateTime,
    /// When it was revoked; `None` while valid.
    pub revoked_at: Option<NaiveDateTime>,
}

/// An API token row as written (the token already hashed).
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = api_token)]
pub(crate) struct NewApiTokenRow {
    pub token_hash: String,
    pub principal: String,
    pub tenant_id: String,
    pub role: String,
}
