//! Clusters: the member clusters of meshes (seed table `cluster`), the cluster registry with
//! sealed credentials, and the load-balancer resources of meshes (seed table `lb_resource`).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::atomic::atomically;
use super::{Store, StoreError, TenantScope, now};
use crate::database::AnyConnection;
use crate::models::{
    LbResourceRecord, MemberClusterRecord, MeshRecord, NewMemberCluster, NewRegisteredClusterRow,
    RegisteredClusterRecord,
};
use crate::schema::{cluster, lb_resource, mesh, registered_cluster};

/// A cluster to register, with its credentials in the clear (sealed before they are stored).
#[derive(Clone)]
pub struct RegisterCluster {
    /// Owning tenant.
    pub tenant_id: String,
    /// Cluster name, unique among registered clusters.
    pub name: String,
    /// Region label.
    pub region: String,
    /// API server URL.
    pub server: String,
    /// `token` or `client-certificate`.
    pub auth_kind: String,
    /// The kubeconfig (secret).
    pub kubeconfig: String,
    /// Result of the registration probe.
    pub status: String,
    /// What the probe said.
    pub status_message: String,
}

impl std::fmt::Debug for RegisterCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterCluster")
            .field("tenant_id", &self.tenant_id)
            .field("name", &self.name)
            .field("server", &self.server)
            .field("auth_kind", &self.auth_kind)
            .finish_non_exhaustive()
    }
}

/// Associated data binding a sealed kubeconfig to its cluster.
fn credentials_context(name: &str) -> String {
    format!("registered_cluster:{name}")
}

fn load_member(
    conn: &mut AnyConnection,
    name: &str,
) -> Result<Option<MemberClusterRecord>, StoreError> {
    cluster::table
        .filter(cluster::name.eq(name))
        .filter(cluster::deleted_flag.eq(0))
        .select(MemberClusterRecord::as_select())
        .first(conn)
        .optional()
        .map_err(|e| StoreError::query("load member cluster", "cluster", name, e))
}

fn load_registered(
    conn: &mut AnyConnection,
    name: &str,
) -> Result<Option<RegisteredClusterRecord>, StoreError> {
    registered_cluster::table
        .filter(registered_cluster::name.eq(name))
        .filter(registered_cluster::deleted_flag.eq(0))
        .select(RegisteredClusterRecord::as_select())
        .first(conn)
        .optional()
        .map_err(|e| StoreError::query("load registered cluster", "cluster", name, e))
}

/// The live member clusters of `mesh_name`, by name.
pub(crate) fn members_of(
    conn: &mut crate::database::AnyConnection,
    mesh_name: &str,
) -> Result<Vec<MemberClusterRecord>, StoreError> {
    cluster::table
        .filter(cluster::mesh_name.eq(mesh_name))
        .filter(cluster::deleted_flag.eq(0))
        .order(cluster::name.asc())
        .select(MemberClusterRecord::as_select())
        .load(conn)
        .map_err(|e| StoreError::query("list member clusters", "mesh", mesh_name, e))
}

/// Live mesh `mesh_name` with its member clusters (by name), read with one query.
pub(crate) fn live_mesh_with_members(
    conn: &mut crate::database::AnyConnection,
    mesh_name: &str,
) -> Result<Option<(MeshRecord, Vec<MemberClusterRecord>)>, StoreError> {
    let rows: Vec<(MeshRecord, Option<MemberClusterRecord>)> = mesh::table
        .left_join(
            cluster::table.on(cluster::mesh_name
                .eq(mesh::name)
                .and(cluster::deleted_flag.eq(0))),
        )
        .filter(mesh::name.eq(mesh_name))
        .filter(mesh::deleted_flag.eq(0))
        .order(cluster::name.asc())
        .select((
            MeshRecord::as_select(),
            Option::<MemberClusterRecord>::as_select(),
        ))
        .load(conn)
        .map_err(|e| StoreError::query("load mesh and members", "mesh", mesh_name, e))?;
    let mut rows = rows.into_iter();
    let Some((mesh, first)) = rows.next() else {
        return Ok(None);
    };
    let members = first
        .into_iter()
        .chain(rows.filter_map(|(_, member)| member))
        .collect();
    Ok(Some((mesh, members)))
}

impl Store {
    /// Adds a cluster to a mesh; a cluster belongs to one mesh at a time.
    pub async fn add_member_cluster(
        &self,
        new: NewMemberCluster,
    ) -> Result<MemberClusterRecord, StoreError> {
        self.run("add member cluster", move |conn| {
            atomically(conn, |conn| {
                diesel::insert_into(cluster::table)
                    .values(&new)
                    .execute(conn)
                    .map_err(|e| {
                        StoreError::query("add member cluster", "member cluster", &new.name, e)
                    })?;
                load_member(conn, &new.name)?.ok_or_else(|| StoreError::NotFound {
                    what: "member cluster",
                    key: new.name.clone(),
                })
            })
        })
        .await
    }

    /// The member cluster of that name (with the mesh it belongs to), if it is in a mesh.
    pub async fn get_member_cluster(
        &self,
        name: &str,
    ) -> Result<Option<MemberClusterRecord>, StoreError> {
        let name = name.to_owned();
        self.run("get member cluster", move |conn| load_member(conn, &name))
            .await
    }

    /// The member clusters of a mesh, by name.
    pub async fn list_member_clusters(
        &self,
        mesh_name: &str,
    ) -> Result<Vec<MemberClusterRecord>, StoreError> {
        let mesh_name = mesh_name.to_owned();
        self.run("list member clusters", move |conn| {
            members_of(conn, &mesh_name)
        })
        .await
    }

    /// Records where a member cluster stands. `linked_at` of `Some(None)` clears it.
    pub async fn update_member_phase(
        &self,
        name: &str,
        phase: &str,
        error: &str,
        linked_at: Option<Option<NaiveDateTime>>,
    ) -> Result<MemberClusterRecord, StoreError> {
        let (name, phase, error) = (name.to_owned(), phase.to_owned(), error.to_owned());
        self.run("update member phase", move |conn| {
            let target = cluster::table
                .filter(cluster::name.eq(&name))
                .filter(cluster::deleted_flag.eq(0));
            let changed = match linked_at {
                Some(linked) => diesel::update(target)
                    .set((
                        cluster::phase.eq(&phase),
                        cluster::error.eq(&error),
                        cluster::linked_at.eq(linked),
                        cluster::updated_at.eq(now()),
                    ))
                    .execute(conn),
                None => diesel::update(target)
                    .set((
                        cluster::phase.eq(&phase),
                        cluster::error.eq(&error),
                        cluster::updated_at.eq(now()),
                    ))
                    .execute(conn),
            }
            .map_err(|e| StoreError::query("update member phase", "member cluster", &name, e))?;
            if changed == 0 {
                return Err(StoreError::NotFound {
                    what: "member cluster",
                    key: name,
                });
            }
            load_member(conn, &name)?.ok_or(StoreError::NotFound {
                what: "member cluster",
                key: name,
            })
        })
        .await
    }

    /// Removes a cluster from its mesh (soft delete, so the name can join another mesh).
    pub async fn remove_member_cluster(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.run("remove member cluster", move |conn| {
            let changed = diesel::update(cluster::table)
                .filter(cluster::name.eq(&name))
                .filter(cluster::deleted_flag.eq(0))
                .set((
                    cluster::deleted_flag.eq(cluster::id),
                    cluster::deleted_at.eq(Some(now())),
                ))
                .execute(conn)
                .map_err(|e| {
                    StoreError::query("remove member cluster", "member cluster", &name, e)
                })?;
            if changed == 0 {
                return Err(StoreError::NotFound {
                    what: "member cluster",
                    key: name,
                });
            }
            Ok(())
        })
        .await
    }

    /// Registers a cluster; its kubeconfig is sealed before it is written.
    pub async fn register_cluster(
        &self,
        new: RegisterCluster,
    ) -> Result<RegisteredClusterRecord, StoreError> {
        let sealed = self
            .secrets()
            .seal(&credentials_context(&new.name), new.kubeconfig.as_bytes())?;
        let row = NewRegisteredClusterRow {
            tenant_id: new.tenant_id,
            name: new.name,
            region: new.region,
            server: new.server,
            auth_kind: new.auth_kind,
            credentials_sealed: sealed,
            key_id: self.secrets().key_id().to_owned(),
            status: new.status,
            status_message: new.status_message,
        };
        self.run("register cluster", move |conn| {
            atomically(conn, |conn| {
                diesel::insert_into(registered_cluster::table)
                    .values(&row)
                    .execute(conn)
                    .map_err(|e| StoreError::query("register cluster", "cluster", &row.name, e))?;
                load_registered(conn, &row.name)?.ok_or_else(|| StoreError::NotFound {
                    what: "cluster",
                    key: row.name.clone(),
                })
            })
        })
        .await
    }

    /// A registered cluster (without credentials), if the scope may see it.
    pub async fn get_registered_cluster(
        &self,
        scope: &TenantScope,
        name: &str,
    ) -> Result<Option<RegisteredClusterRecord>, StoreError> {
        let name = name.to_owned();
        let tenant = scope.tenant().map(str::to_owned);
        self.run("get registered cluster", move |conn| {
            Ok(load_registered(conn, &name)?
                .filter(|c| tenant.as_deref().is_none_or(|t| t == c.tenant_id)))
        })
        .await
    }

    /// Registered clusters the scope may see, by name.
    pub async fn list_registered_clusters(
        &self,
        scope: &TenantScope,
    ) -> Result<Vec<RegisteredClusterRecord>, StoreError> {
        let tenant = scope.tenant().map(str::to_owned);
        self.run("list registered clusters", move |conn| {
            let mut query = registered_cluster::table
                .filter(registered_cluster::deleted_flag.eq(0))
                .order(registered_cluster::name.asc())
                .select(RegisteredClusterRecord::as_select())
                .into_boxed();
            if let Some(tenant) = &tenant {
                query = query.filter(registered_cluster::tenant_id.eq(tenant.clone()));
            }
            query.load(conn).map_err(|e| {
                StoreError::query(
                    "list registered clusters",
                    "tenant",
                    tenant.unwrap_or_default(),
                    e,
                )
            })
        })
        .await
    }

    /// The kubeconfig of a registered cluster, opened. Callers must not log it.
    pub async fn cluster_kubeconfig(&self, name: &str) -> Result<String, StoreError> {
        let key = name.to_owned();
        let sealed = self
            .run("load cluster credentials", move |conn| {
                registered_cluster::table
                    .filter(registered_cluster::name.eq(&key))
                    .filter(registered_cluster::deleted_flag.eq(0))
                    .select(registered_cluster::credentials_sealed)
                    .first::<String>(conn)
                    .optional()
                    .map_err(|e| StoreError::query("load cluster credentials", "cluster", &key, e))?
                    .ok_or(StoreError::NotFound {
                        what: "cluster",
                        key,
                    })
            })
            .await?;
        let plain = self.secrets().open(&credentials_context(name), &sealed)?;
        String::from_utf8(plain).map_err(|_| {
            StoreError::Crypto(crate::crypto::CryptoError::Corrupt {
                context: credentials_context(name),
            })
        })
    }

    /// Records the result of a probe of a registered cluster.
    pub async fn update_registered_cluster_status(
        &self,
        name: &str,
        status: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        let (name, status, message) = (name.to_owned(), status.to_owned(), message.to_owned());
        self.run("update registered cluster status", move |conn| {
            let changed = diesel::update(registered_cluster::table)
                .filter(registered_cluster::name.eq(&name))
                .filter(registered_cluster::deleted_flag.eq(0))
                .set((
                    registered_cluster::status.eq(&status),
                    registered_cluster::status_message.eq(&message),
                    registered_cluster::updated_at.eq(now()),
                ))
                .execute(conn)
                .map_err(|e| {
                    StoreError::query("update registered cluster status", "cluster", &name, e)
                })?;
            if changed == 0 {
                return Err(StoreError::NotFound {
                    what: "cluster",
                    key: name,
                });
            }
            Ok(())
        })
        .await
    }

    /// Removes a registered cluster (soft delete; the sealed credentials are wiped). A cluster that
    /// is still a member of a mesh cannot be removed.
    pub async fn remove_registered_cluster(
        &self,
        scope: &TenantScope,
        name: &str,
    ) -> Result<(), StoreError> {
        let name = name.to_owned();
        let tenant = scope.tenant().map(str::to_owned);
        self.run("remove registered cluster", move |conn| {
            atomically(conn, |conn| {
                let found = load_registered(conn, &name)?
                    .filter(|c| tenant.as_deref().is_none_or(|t| t == c.tenant_id))
                    .ok_or_else(|| StoreError::NotFound {
                        what: "cluster",
                        key: name.clone(),
                    })?;
                if let Some(member) = load_member(conn, &name)? {
                    return Err(StoreError::AlreadyExists {
                        what: "membership of cluster",
                        key: format!("{name} in mesh {}", member.mesh_name),
                    });
                }
                diesel::update(
                    registered_cluster::table.filter(registered_cluster::id.eq(found.id)),
                )
                .set((
                    registered_cluster::deleted_flag.eq(registered_cluster::id),
                    registered_cluster::deleted_at.eq(Some(now())),
                    registered_cluster::credentials_sealed.eq(""),
                ))
                .execute(conn)
                .map(drop)
                .map_err(|e| StoreError::query("remove registered cluster", "cluster", &name, e))
            })
        })
        .await
    }

    /// Records a load-balancer resource of a mesh (insert or update by name).
    pub async fn upsert_lb_resource(
        &self,
        name: &str,
        mesh_name: &str,
        status: &str,
    ) -> Result<LbResourceRecord, StoreError> {
        let (name, mesh_name, status) = (name.to_owned(), mesh_name.to_owned(), status.to_owned());
        self.run("record lb resource", move |conn| {
            atomically(conn, |conn| {
                let changed =
                    diesel::update(lb_resource::table.filter(lb_resource::name.eq(&name)))
                        .set((
                            lb_resource::mesh_name.eq(&mesh_name),
                            lb_resource::status.eq(&status),
                        ))
                        .execute(conn)
                        .map_err(|e| {
                            StoreError::query("record lb resource", "lb resource", &name, e)
                        })?;
                if changed == 0 {
                    diesel::insert_into(lb_resource::table)
                        .values((
                            lb_resource::name.eq(&name),
                            lb_resource::mesh_name.eq(&mesh_name),
                            lb_resource::status.eq(&status),
                        ))
                        .execute(conn)
                        .map_err(|e| {
                            StoreError::query("record lb resource", "lb resource", &name, e)
                        })?;
                }
                lb_resource::table
                    .filter(lb_resource::name.eq(&name))
                    .select(LbResourceRecord::as_select())
                    .first(conn)
                    .map_err(|e| StoreError::query("load lb resource", "lb resource", &name, e))
            })
        })
        .await
    }

    /// The load-balancer resources of a mesh.
    pub async fn list_lb_resources(
        &self,
        mesh_name: &str,
    ) -> Result<Vec<LbResourceRecord>, StoreError> {
        let mesh_name = mesh_name.to_owned();
        self.run("list lb resources", move |conn| {
            lb_resource::table
                .filter(lb_resource::mesh_name.eq(&mesh_name))
                .order(lb_resource::name.asc())
                .select(LbResourceRecord::as_select())
                .load(conn)
                .map_err(|e| StoreError::query("list lb resources", "mesh", &mesh_name, e))
        })
        .await
    }

    /// Forgets a load-balancer resource.
    pub async fn delete_lb_resource(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.run("delete lb resource", move |conn| {
            diesel::delete(lb_resource::table.filter(lb_resource::name.eq(&name)))
                .execute(conn)
                .map(drop)
                .map_err(|e| StoreError::query("delete lb resource", "lb resource", &name, e))
        })
        .await
    }
}
