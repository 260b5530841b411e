//! Meshes: create, read, list by tenant, update (fenced, compare-and-set), soft delete.
//!
//! Fencing: a worker writes with the epoch of the lease it holds for the mesh's partition. A write
//! lands only when `owner_epoch <= epoch`, and it records `epoch` as the new `owner_epoch`, so once
//! a newer owner has written, an older one's writes are refused with [`StoreError::Fenced`].
//! Changes of the desired state are also compared-and-set on `generation`, which they bump.

use diesel::prelude::*;

use super::atomic::atomically;
use super::kept::{self, Kept};
use super::{Store, StoreError, TenantScope, now};
use crate::database::AnyConnection;
use crate::models::{MeshRecord, NewMesh};
use crate::schema::{cluster, mesh};

/// Fields of the desired state to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = mesh)]
pub struct MeshSpecChange {
    /// New title.
    pub title: Option<String>,
    /// New Istio version.
    pub version: Option<String>,
    /// New rollback target.
    pub last_version: Option<String>,
    /// New configuration (JSON).
    pub config: Option<String>,
    /// New mode.
    pub mode: Option<String>,
}

/// Observed-state fields a worker records; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = mesh)]
pub struct MeshStatusChange {
    /// New overall status.
    pub status: Option<String>,
    /// New observed state (JSON).
    pub state: Option<String>,
    /// New task summary (JSON).
    pub tasks: Option<String>,
    /// New installed version (an upgrade or rollback moved it).
    pub version: Option<String>,
    /// New rollback target.
    pub last_version: Option<String>,
}

pub(crate) fn load_live(
    conn: &mut AnyConnection,
    name: &str,
) -> Result<Option<MeshRecord>, StoreError> {
    mesh::table
        .filter(mesh::name.eq(name))
        .filter(mesh::deleted_flag.eq(0))
        .select(MeshRecord::as_select())
        .first(conn)
        .optional()
        .map_err(|e| StoreError::query("load mesh", "mesh", name, e))
}

/// Records a mesh's observed status, fenced by `epoch`, inside the caller's transaction, and
/// returns the mesh as it is now.
fn update_mesh_status_in(
    conn: &mut AnyConnection,
    name: &str,
    epoch: i64,
    change: &MeshStatusChange,
) -> Result<MeshRecord, StoreError> {
    record_mesh_status_in(conn, name, epoch, change)?;
    load_live(conn, name)?.ok_or_else(|| StoreError::NotFound {
        what: "mesh",
        key: name.to_owned(),
    })
}

/// The statement recording a mesh's observed status, fenced by `epoch`: it changes no row when a
/// newer owner wrote the mesh or the mesh is gone.
pub(crate) fn mesh_status_update<'a>(
    name: &'a str,
    epoch: i64,
    change: &'a MeshStatusChange,
) -> impl Kept + 'a {
    kept::update(
        mesh::table
            .filter(mesh::name.eq(name))
            .filter(mesh::deleted_flag.eq(0))
            .filter(mesh::owner_epoch.le(epoch)),
        (
            change,
            mesh::owner_epoch.eq(epoch),
            mesh::updated_at.eq(now()),
        ),
    )
}

/// Records a mesh's observed status, fenced by `epoch`, inside the caller's transaction.
pub(crate) fn record_mesh_status_in(
    conn: &mut AnyConnection,
    name: &str,
    epoch: i64,
    change: &MeshStatusChange,
) -> Result<(), StoreError> {
    let changed = mesh_status_update(name, epoch, change)
        .execute(conn)
        .map_err(|e| StoreError::query("update mesh status", "mesh", name, e))?;
    if changed == 0 {
        return Err(explain_refusal(conn, name, epoch, None));
    }
    Ok(())
}

/// A compare-and-set change of a mesh's desired state, fenced by the writer's epoch.
#[derive(Debug, Clone)]
pub struct MeshSpecUpdate {
    /// The mesh.
    pub mesh: String,
    /// The generation the change was decided against; the write is refused at any other.
    pub expected_generation: i64,
    /// The writer's lease epoch.
    pub epoch: i64,
    /// The fields to change.
    pub change: MeshSpecChange,
}

impl MeshSpecUpdate {
    /// `mesh` as the row reads once this update has landed on it: the changed fields, the next
    /// generation and the writer's epoch as its owner.
    pub fn apply_to(&self, mesh: &mut MeshRecord) {
        let MeshSpecChange {
            title,
            version,
            last_version,
            config,
            mode,
        } = &self.change;
        if let Some(title) = title {
            mesh.title.clone_from(title);
        }
        if let Some(version) = version {
            mesh.version.clone_from(version);
        }
        if let Some(last_version) = last_version {
            mesh.last_version.clone_from(last_version);
        }
        if let Some(config) = config {
            mesh.config = Some(config.clone());
        }
        if let Some(mode) = mode {
            mesh.mode.clone_from(mode);
        }
        mesh.generation = self.expected_generation + 1;
        mesh.owner_epoch = self.epoch;
        mesh.updated_at = Some(now());
    }
}

/// The statement applying `update` (bumping the generation): it changes no row when the mesh is at
/// another generation, a newer owner wrote it, or it is gone.
pub(crate) fn mesh_spec_update(update: &MeshSpecUpdate) -> impl Kept + '_ {
    kept::update(
        mesh::table
            .filter(mesh::name.eq(update.mesh.as_str()))
            .filter(mesh::deleted_flag.eq(0))
            .filter(mesh::generation.eq(update.expected_generation))
            .filter(mesh::owner_epoch.le(update.epoch)),
        (
            &update.change,
            mesh::generation.eq(mesh::generation + 1),
            mesh::owner_epoch.eq(update.epoch),
            mesh::updated_at.eq(now()),
        ),
    )
}

/// Applies `update` (bumping the generation), inside the caller's transaction.
pub(crate) fn update_mesh_spec_in(
    conn: &mut AnyConnection,
    update: &MeshSpecUpdate,
) -> Result<(), StoreError> {
    let name = update.mesh.as_str();
    let changed = mesh_spec_update(update)
        .execute(conn)
        .map_err(|e| StoreError::query("update mesh spec", "mesh", name, e))?;
    if changed == 0 {
        return Err(explain_refusal(
            conn,
            name,
            update.epoch,
            Some(update.expected_generation),
        ));
    }
    Ok(())
}

/// Tells why a fenced or compare-and-set update changed no row.
fn explain_refusal(
    conn: &mut AnyConnection,
    name: &str,
    epoch: i64,
    expected_generation: Option<i64>,
) -> StoreError {
    match load_live(conn, name) {
        Ok(None) => StoreError::NotFound {
            what: "mesh",
            key: name.to_owned(),
        },
        Ok(Some(row)) if row.owner_epoch > epoch => StoreError::Fenced {
            mesh: name.to_owned(),
            epoch,
            owner_epoch: row.owner_epoch,
        },
        Ok(Some(row)) => StoreError::GenerationConflict {
            mesh: name.to_owned(),
            expected: expected_generation.unwrap_or(row.generation),
            actual: row.generation,
        },
        Err(e) => e,
    }
}

impl Store {
    /// Creates a mesh; a live mesh of the same name is [`StoreError::AlreadyExists`].
    pub async fn create_mesh(&self, new: NewMesh) -> Result<MeshRecord, StoreError> {
        self.run("create mesh", move |conn| {
            atomically(conn, |conn| {
                diesel::insert_into(mesh::table)
                    .values(&new)
                    .execute(conn)
                    .map_err(|e| StoreError::query("create mesh", "mesh", &new.name, e))?;
                load_live(conn, &new.name)?.ok_or_else(|| StoreError::NotFound {
                    what: "mesh",
                    key: new.name.clone(),
                })
            })
        })
        .await
    }

    /// A live mesh by name, if the scope may see it.
    pub async fn get_mesh(
        &self,
        scope: &TenantScope,
        name: &str,
    ) -> Result<Option<MeshRecord>, StoreError> {
        let name = name.to_owned();
        let tenant = scope.tenant().map(str::to_owned);
        self.run("get mesh", move |conn| {
            Ok(load_live(conn, &name)?
                .filter(|m| tenant.as_deref().is_none_or(|t| t == m.tenant_id)))
        })
        .await
    }

    /// Live meshes the scope may see, by name.
    pub async fn list_meshes(&self, scope: &TenantScope) -> Result<Vec<MeshRecord>, StoreError> {
        let tenant = scope.tenant().map(str::to_owned);
        self.run("list meshes", move |conn| {
            let mut query = mesh::table
                .filter(mesh::deleted_flag.eq(0))
                .select(MeshRecord::as_select())
                .order(mesh::name.asc())
                .into_boxed();
            if let Some(tenant) = &tenant {
                query = query.filter(mesh::tenant_id.eq(tenant.clone()));
            }
            query.load(conn).map_err(|e| {
                StoreError::query("list meshes", "tenant", tenant.unwrap_or_default(), e)
            })
        })
        .await
    }

    /// Records that the holder of `epoch` owns the mesh from now on; refused when a newer owner
    /// has written already. The same write as a status change that changes nothing else (a
    /// flow's start claims the mesh that way, in its own transaction).
    pub async fn claim_mesh(&self, name: &str, epoch: i64) -> Result<MeshRecord, StoreError> {
        self.update_mesh_status(name, epoch, MeshStatusChange::default())
            .await
    }

    /// Changes the desired state if the mesh is still at `expected_generation` and `epoch` is not
    /// older than its owner epoch; bumps the generation.
    pub async fn update_mesh_spec(
        &self,
        name: &str,
        expected_generation: i64,
        epoch: i64,
        change: MeshSpecChange,
    ) -> Result<MeshRecord, StoreError> {
        let update = MeshSpecUpdate {
            mesh: name.to_owned(),
            expected_generation,
            epoch,
            change,
        };
        self.run("update mesh spec", move |conn| {
            atomically(conn, |conn| {
                update_mesh_spec_in(conn, &update)?;
                load_live(conn, &update.mesh)?.ok_or_else(|| StoreError::NotFound {
                    what: "mesh",
                    key: update.mesh.clone(),
                })
            })
        })
        .await
    }

    /// Records observed state, fenced by `epoch` (no generation check: status is not desired
    /// state).
    pub async fn update_mesh_status(
        &self,
        name: &str,
        epoch: i64,
        change: MeshStatusChange,
    ) -> Result<MeshRecord, StoreError> {
        let name = name.to_owned();
        self.run("update mesh status", move |conn| {
            atomically(conn, |conn| {
                update_mesh_status_in(conn, &name, epoch, &change)
            })
        })
        .await
    }

    /// Soft-deletes a mesh and its member clusters (fenced by `epoch`): `deleted_flag` becomes the
    /// row id, so the name can be used again.
    pub async fn soft_delete_mesh(&self, name: &str, epoch: i64) -> Result<MeshRecord, StoreError> {
        let name = name.to_owned();
        self.run("delete mesh", move |conn| {
            atomically(conn, |conn| {
                let row = load_live(conn, &name)?.ok_or_else(|| StoreError::NotFound {
                    what: "mesh",
                    key: name.clone(),
                })?;
                let at = now();
                let changed = diesel::update(mesh::table)
                    .filter(mesh::id.eq(row.id))
                    .filter(mesh::deleted_flag.eq(0))
                    .filter(mesh::owner_epoch.le(epoch))
                    .set((
                        mesh::deleted_flag.eq(mesh::id),
                        mesh::deleted_at.eq(Some(at)),
                        mesh::owner_epoch.eq(epoch),
                        mesh::updated_at.eq(at),
                    ))
                    .execute(conn)
                    .map_err(|e| StoreError::query("delete mesh", "mesh", &name, e))?;
                if changed == 0 {
                    return Err(explain_refusal(conn, &name, epoch, None));
                }
                diesel::update(cluster::table)
                    .filter(cluster::mesh_name.eq(&name))
                    .filter(cluster::deleted_flag.eq(0))
                    .set((
                        cluster::deleted_flag.eq(cluster::id),
                        cluster::deleted_at.eq(Some(at)),
                    ))
                    .execute(conn)
                    .map_err(|e| StoreError::query("delete mesh members", "mesh", &name, e))?;
                mesh::table
                    .filter(mesh::id.eq(row.id))
                    .select(MeshRecord::as_select())
                    .first(conn)
                    .map_err(|e| StoreError::query("load deleted mesh", "mesh", &name, e))
            })
        })
        .await
    }
}
