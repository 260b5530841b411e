//! Desired Istio resources of meshes and the changes of resource flows.
//!
//! Inputs: normalised objects as canonical JSON text (sorted keys, as `serde_json` writes a
//! `Value`), already validated by the caller. Outputs: [`ResourceRecord`] rows (the desired
//! state, with generation, content hash, who changed it and when) and [`ResourceChangeRecord`]
//! rows (what one flow changes, with the version before, so a failed rollout can be undone).
//!
//! Accepting a change is one transaction: the owner's fence, the generation checks, the desired
//! rows, the change rows, the flow with its tasks and the link from the command log — all of it
//! or none. Compensation (undoing a failed rollout) is fenced the same way.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mesh_core::TaskStatus;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::atomic::atomically;
use super::{Store, StoreError, check_fence, last_insert_id, now};
use crate::models::{FlowRecord, NewFlow, NewTask};
use crate::schema::{command_log, flow, istio_resource, resource_change, task};

/// A desired Istio resource (table `istio_resource`).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = istio_resource)]
pub struct ResourceRecord {
    /// Row id.
    pub id: i64,
    /// The mesh's tenant.
    pub tenant_id: String,
    /// The mesh.
    pub mesh_name: String,
    /// `""` for a mesh-wide resource; the member cluster for a per-cluster one.
    pub cluster_name: String,
    /// The kind (`VirtualService`).
    pub kind: String,
    /// The namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// The normalised object (canonical JSON).
    pub body: String,
    /// Accepted changes of this object so far (1 when created).
    pub generation: i64,
    /// SHA-256 (hex) of `body`.
    pub content_hash: String,
    /// The principal of the last change.
    pub updated_by: String,
    /// When the row was created.
    pub created_at: NaiveDateTime,
    /// When it last changed.
    pub updated_at: NaiveDateTime,
}

impl ResourceRecord {
    /// The stored object as a resource; `None` for a row no current mesh-manager can read (an
    /// unknown kind, a bad namespace, a body that is not JSON).
    pub fn resource(&self) -> Option<mesh_core::resources::IstioResource> {
        use mesh_core::resources::{IstioKind, IstioResource, ResourceKey};
        Some(IstioResource {
            key: ResourceKey {
                kind: IstioKind::from_kind(&self.kind)?,
                namespace: mesh_core::NamespaceName::new(self.namespace.clone()).ok()?,
                name: self.name.clone(),
            },
            body: serde_json::from_str(&self.body).ok()?,
        })
    }

    /// Whether the row is `key`.
    pub fn is(&self, key: &mesh_core::resources::ResourceKey) -> bool {
        self.kind == key.kind.kind()
            && self.namespace == key.namespace.as_str()
            && self.name == key.name
    }
}

/// Why `key` cannot change in `scope` (`""` mesh-wide, else a member cluster's name) given the
/// mesh's desired `rows`: an object is either mesh-wide or one member's own, never both, or that
/// member would hold two versions of it.
pub fn scope_conflict(
    rows: &[ResourceRecord],
    scope: &str,
    key: &mesh_core::resources::ResourceKey,
) -> Option<String> {
    let other = rows.iter().find(|r| r.cluster_name != scope && r.is(key))?;
    Some(if other.cluster_name.is_empty() {
        format!(
            "{key} is managed mesh-wide in mesh {}: change it there, or delete it there first",
            other.mesh_name
        )
    } else {
        format!(
            "{key} is managed as an object of cluster {} in mesh {}: change it there, or delete it there first",
            other.cluster_name, other.mesh_name
        )
    })
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = istio_resource)]
struct NewResource {
    tenant_id: String,
    mesh_name: String,
    cluster_name: String,
    kind: String,
    namespace: String,
    name: String,
    body: String,
    generation: i64,
    content_hash: String,
    updated_by: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

/// One change a resource flow carries out (table `resource_change`).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = resource_change)]
pub struct ResourceChangeRecord {
    /// Row id.
    pub id: i64,
    /// The flow carrying it out.
    pub flow_id: i64,
    /// The mesh.
    pub mesh_name: String,
    /// `""` for mesh-wide; the cluster for a per-cluster resource.
    pub cluster_name: String,
    /// The kind.
    pub kind: String,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// The desired body before; `None` when the object did not exist.
    pub before_body: Option<String>,
    /// Its generation before.
    pub before_generation: Option<i64>,
    /// Who had changed it before.
    pub before_updated_by: Option<String>,
    /// The desired body after; `None` when the change deletes it.
    pub after_body: Option<String>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = resource_change)]
struct NewResourceChange {
    flow_id: i64,
    mesh_name: String,
    cluster_name: String,
    kind: String,
    namespace: String,
    name: String,
    before_body: Option<String>,
    before_generation: Option<i64>,
    before_updated_by: Option<String>,
    after_body: Option<String>,
}

/// Which object, within a mesh.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceRef {
    /// `""` for mesh-wide; the member cluster for a per-cluster resource.
    pub cluster_name: String,
    /// The kind (`VirtualService`).
    pub kind: String,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

/// A change of the desired state, as accepted.
#[derive(Debug, Clone)]
pub struct DesiredChange {
    /// The object.
    pub target: ResourceRef,
    /// The new body (canonical JSON); `None` deletes the object.
    pub body: Option<String>,
    /// When set, the change applies only if the object is at this generation (0 = must not
    /// exist yet).
    pub expected_generation: Option<i64>,
}

/// What accepting a batch of changes recorded.
#[derive(Debug, Clone)]
pub struct AcceptedChanges {
    /// The flow that rolls them out.
    pub flow: FlowRecord,
    /// The changes that alter the desired state (unchanged objects are left out).
    pub changes: Vec<ResourceChangeRecord>,
}

/// SHA-256 (hex) of a body's text.
pub fn content_hash(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

type Conn = crate::database::AnyConnection;

fn find_row(conn: &mut Conn, mesh: &str, r: &ResourceRef) -> QueryResult<Option<ResourceRecord>> {
    istio_resource::table
        .filter(istio_resource::mesh_name.eq(mesh))
        .filter(istio_resource::cluster_name.eq(&r.cluster_name))
        .filter(istio_resource::kind.eq(&r.kind))
        .filter(istio_resource::namespace.eq(&r.namespace))
        .filter(istio_resource::name.eq(&r.name))
        .select(ResourceRecord::as_select())
        .first(conn)
        .optional()
}

/// Writes `body` (or removes the row when `None`) for `target`, with `generation` and author.
fn put_row(
    conn: &mut Conn,
    tenant: &str,
    mesh: &str,
    target: &ResourceRef,
    body: Option<&str>,
    generation: i64,
    updated_by: &str,
) -> QueryResult<()> {
    let at = now();
    match (find_row(conn, mesh, target)?, body) {
        (Some(row), Some(body)) => {
            diesel::update(istio_resource::table.find(row.id))
                .set((
                    istio_resource::body.eq(body),
                    istio_resource::content_hash.eq(content_hash(body)),
                    istio_resource::generation.eq(generation),
                    istio_resource::updated_by.eq(updated_by),
                    istio_resource::updated_at.eq(at),
                ))
                .execute(conn)?;
        }
        (None, Some(body)) => {
            diesel::insert_into(istio_resource::table)
                .values(NewResource {
                    tenant_id: tenant.to_owned(),
                    mesh_name: mesh.to_owned(),
                    cluster_name: target.cluster_name.clone(),
                    kind: target.kind.clone(),
                    namespace: target.namespace.clone(),
                    name: target.name.clone(),
                    body: body.to_owned(),
                    generation,
                    content_hash: content_hash(body),
                    updated_by: updated_by.to_owned(),
                    created_at: at,
                    updated_at: at,
                })
                .execute(conn)?;
        }
        (Some(row), None) => {
            diesel::delete(istio_resource::table.find(row.id)).execute(conn)?;
        }
        (None, None) => {}
    }
    Ok(())
}

impl Store {
    /// Accepts a batch of desired-state changes of `mesh` and records the flow that rolls them
    /// out, in one transaction fenced by `epoch`. A stale `expected_generation`, or deleting an
    /// object that does not exist, refuses the whole batch (`GenerationConflict` / `NotFound`).
    #[allow(clippy::too_many_arguments)]
    pub async fn accept_resource_changes(
        &self,
        command_id: &str,
        tenant: &str,
        mesh: &str,
        principal: &str,
        epoch: i64,
        new_flow: NewFlow,
        task_names: Vec<String>,
        changes: Vec<DesiredChange>,
    ) -> Result<AcceptedChanges, StoreError> {
        let (command_id, tenant, mesh, principal) = (
            command_id.to_owned(),
            tenant.to_owned(),
            mesh.to_owned(),
            principal.to_owned(),
        );
        self.run("accept resource changes", move |conn| {
            atomically(conn, |conn| {
                let err = |e| StoreError::query("accept resource changes", "mesh", &mesh, e);
                check_fence(conn, &mesh, epoch)?;
                diesel::insert_into(flow::table)
                    .values(&new_flow)
                    .execute(conn)
                    .map_err(err)?;
                let flow_id = last_insert_id(conn).map_err(err)?;
                for name in &task_names {
                    diesel::insert_into(task::table)
                        .values(NewTask {
                            flow_id,
                            name: name.clone(),
                            status: TaskStatus::Pending.as_str().to_owned(),
                            steps: String::new(),
                        })
                        .execute(conn)
                        .map_err(err)?;
                }
                for change in &changes {
                    let existing = find_row(conn, &mesh, &change.target).map_err(err)?;
                    let actual = existing.as_ref().map_or(0, |r| r.generation);
                    if let Some(expected) = change.expected_generation
                        && expected != actual
                    {
                        return Err(StoreError::GenerationConflict {
                            mesh: format!(
                                "{} {}/{}",
                                change.target.kind, change.target.namespace, change.target.name
                            ),
                            expected,
                            actual,
                        });
                    }
                    let unchanged = match (&existing, &change.body) {
                        (Some(row), Some(body)) => row.content_hash == content_hash(body),
                        (None, None) => {
                            return Err(StoreError::NotFound {
                                what: "istio resource",
                                key: format!(
                                    "{} {}/{}",
                                    change.target.kind, change.target.namespace, change.target.name
                                ),
                            });
                        }
                        _ => false,
                    };
                    if unchanged {
                        continue;
                    }
                    put_row(
                        conn,
                        &tenant,
                        &mesh,
                        &change.target,
                        change.body.as_deref(),
                        actual + 1,
                        &principal,
                    )
                    .map_err(err)?;
                    diesel::insert_into(resource_change::table)
                        .values(NewResourceChange {
                            flow_id,
                            mesh_name: mesh.clone(),
                            cluster_name: change.target.cluster_name.clone(),
                            kind: change.target.kind.clone(),
                            namespace: change.target.namespace.clone(),
                            name: change.target.name.clone(),
                            before_body: existing.as_ref().map(|r| r.body.clone()),
                            before_generation: existing.as_ref().map(|r| r.generation),
                            before_updated_by: existing.as_ref().map(|r| r.updated_by.clone()),
                            after_body: change.body.clone(),
                        })
                        .execute(conn)
                        .map_err(err)?;
                }
                diesel::update(command_log::table.find(&command_id))
                    .set((
                        command_log::flow_id.eq(Some(flow_id)),
                        command_log::updated_at.eq(now()),
                    ))
                    .execute(conn)
                    .map_err(err)?;
                let flow = flow::table
                    .find(flow_id)
                    .select(FlowRecord::as_select())
                    .first(conn)
                    .map_err(err)?;
                let changes = resource_change::table
                    .filter(resource_change::flow_id.eq(flow_id))
                    .order(resource_change::id.asc())
                    .select(ResourceChangeRecord::as_select())
                    .load(conn)
                    .map_err(err)?;
                Ok(AcceptedChanges { flow, changes })
            })
        })
        .await
    }

    /// The desired resources of a mesh, filtered by cluster scope (`Some("")` = mesh-wide only),
    /// kind and namespace, ordered by kind, namespace, name.
    pub async fn list_resources(
        &self,
        mesh: &str,
        cluster_name: Option<&str>,
        kind: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<Vec<ResourceRecord>, StoreError> {
        let mesh = mesh.to_owned();
        let cluster_name = cluster_name.map(str::to_owned);
        let kind = kind.map(str::to_owned);
        let namespace = namespace.map(str::to_owned);
        self.run("list istio resources", move |conn| {
            let mut query = istio_resource::table
                .filter(istio_resource::mesh_name.eq(&mesh))
                .into_boxed();
            if let Some(cluster_name) = &cluster_name {
                query = query.filter(istio_resource::cluster_name.eq(cluster_name.clone()));
            }
            if let Some(kind) = &kind {
                query = query.filter(istio_resource::kind.eq(kind.clone()));
            }
            if let Some(namespace) = &namespace {
                query = query.filter(istio_resource::namespace.eq(namespace.clone()));
            }
            query
                .order((
                    istio_resource::kind.asc(),
                    istio_resource::namespace.asc(),
                    istio_resource::name.asc(),
                    istio_resource::cluster_name.asc(),
                ))
                .select(ResourceRecord::as_select())
                .load(conn)
                .map_err(|e| StoreError::query("list istio resources", "mesh", &mesh, e))
        })
        .await
    }

    /// One desired resource.
    pub async fn get_resource(
        &self,
        mesh: &str,
        target: &ResourceRef,
    ) -> Result<Option<ResourceRecord>, StoreError> {
        let mesh = mesh.to_owned();
        let target = target.clone();
        self.run("get istio resource", move |conn| {
            find_row(conn, &mesh, &target)
                .map_err(|e| StoreError::query("get istio resource", "mesh", &mesh, e))
        })
        .await
    }

    /// The changes a flow carries out, in order.
    pub async fn resource_changes(
        &self,
        flow_id: i64,
    ) -> Result<Vec<ResourceChangeRecord>, StoreError> {
        self.run("list resource changes", move |conn| {
            resource_change::table
                .filter(resource_change::flow_id.eq(flow_id))
                .order(resource_change::id.asc())
                .select(ResourceChangeRecord::as_select())
                .load(conn)
                .map_err(|e| {
                    StoreError::query("list resource changes", "flow", flow_id.to_string(), e)
                })
        })
        .await
    }

    /// Puts the desired state a flow changed back to its version before the flow (fenced).
    pub async fn restore_desired_resources(
        &self,
        flow_id: i64,
        epoch: i64,
    ) -> Result<usize, StoreError> {
        self.run("restore desired resources", move |conn| {
            atomically(conn, |conn| {
                let err = |e| {
                    StoreError::query("restore desired resources", "flow", flow_id.to_string(), e)
                };
                let changes: Vec<ResourceChangeRecord> = resource_change::table
                    .filter(resource_change::flow_id.eq(flow_id))
                    .select(ResourceChangeRecord::as_select())
                    .load(conn)
                    .map_err(err)?;
                let Some(first) = changes.first() else {
                    return Ok(0);
                };
                check_fence(conn, &first.mesh_name, epoch)?;
                let tenant: String = flow::table
                    .find(flow_id)
                    .select(flow::tenant_id)
                    .first(conn)
                    .map_err(err)?;
                for change in &changes {
                    let target = ResourceRef {
                        cluster_name: change.cluster_name.clone(),
                        kind: change.kind.clone(),
                        namespace: change.namespace.clone(),
                        name: change.name.clone(),
                    };
                    put_row(
                        conn,
                        &tenant,
                        &change.mesh_name,
                        &target,
                        change.before_body.as_deref(),
                        change.before_generation.unwrap_or(0),
                        change.before_updated_by.as_deref().unwrap_or(""),
                    )
                    .map_err(err)?;
                }
                Ok(changes.len())
            })
        })
        .await
    }

    /// Starts compensating a failed flow (fenced): its tasks still pending are skipped and
    /// `compensation` tasks are appended, so a new owner resumes the compensation, not the flow.
    pub async fn begin_compensation(
        &self,
        flow_id: i64,
        compensation: Vec<String>,
        epoch: i64,
    ) -> Result<(), StoreError> {
        self.run("begin compensation", move |conn| {
            atomically(conn, |conn| {
                let err =
                    |e| StoreError::query("begin compensation", "flow", flow_id.to_string(), e);
                let mesh: String = flow::table
                    .find(flow_id)
                    .select(flow::mesh_name)
                    .first(conn)
                    .map_err(err)?;
                check_fence(conn, &mesh, epoch)?;
                let at = now();
                diesel::update(
                    task::table
                        .filter(task::flow_id.eq(flow_id))
                        .filter(task::status.eq(TaskStatus::Pending.as_str())),
                )
                .set((
                    task::status.eq(TaskStatus::Skipped.as_str()),
                    task::finished_at.eq(Some(at)),
                    task::updated_at.eq(Some(at)),
                ))
                .execute(conn)
                .map_err(err)?;
                for name in &compensation {
                    diesel::insert_into(task::table)
                        .values(NewTask {
                            flow_id,
                            name: name.clone(),
                            status: TaskStatus::Pending.as_str().to_owned(),
                            steps: String::new(),
                        })
                        .execute(conn)
                        .map_err(err)?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Meshes that have desired Istio resources, with their tenant.
    pub async fn meshes_with_resources(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.run("list meshes with resources", move |conn| {
            istio_resource::table
                .select((istio_resource::tenant_id, istio_resource::mesh_name))
                .distinct()
                .load(conn)
                .map_err(|e| StoreError::query("list meshes with resources", "mesh", "", e))
        })
        .await
    }

    /// Forgets every desired resource of a deleted mesh (its change history stays).
    pub async fn forget_resources(&self, mesh: &str) -> Result<usize, StoreError> {
        let mesh = mesh.to_owned();
        self.run("forget istio resources", move |conn| {
            diesel::delete(istio_resource::table.filter(istio_resource::mesh_name.eq(&mesh)))
                .execute(conn)
                .map_err(|e| StoreError::query("forget istio resources", "mesh", &mesh, e))
        })
        .await
    }
}
