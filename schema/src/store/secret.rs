//! Per-mesh secrets (root CA, intermediate CAs, reader tokens), sealed before they are stored and
//! bound to their mesh and name, so a sealed value moved to another row does not open.

use diesel::prelude::*;

use super::atomic::atomically;
use super::{Store, StoreError, now};
use crate::crypto::CryptoError;
use crate::schema::mesh_secret;

fn context(mesh_name: &str, name: &str) -> String {
    format!("mesh_secret:{mesh_name}:{name}")
}

impl Store {
    /// Stores (or replaces) a secret of a mesh.
    pub async fn put_mesh_secret(
        &self,
        mesh_name: &str,
        name: &str,
        plaintext: &[u8],
    ) -> Result<(), StoreError> {
        let sealed = self.secrets().seal(&context(mesh_name, name), plaintext)?;
        let key_id = self.secrets().key_id().to_owned();
        let (mesh_name, name) = (mesh_name.to_owned(), name.to_owned());
        self.run("store mesh secret", move |conn| {
            atomically(conn, |conn| {
                let key = format!("{mesh_name}/{name}");
                let target = mesh_secret::table
                    .filter(mesh_secret::mesh_name.eq(&mesh_name))
                    .filter(mesh_secret::name.eq(&name));
                let changed = diesel::update(target)
                    .set((
                        mesh_secret::sealed.eq(&sealed),
                        mesh_secret::key_id.eq(&key_id),
                        mesh_secret::updated_at.eq(now()),
                    ))
                    .execute(conn)
                    .map_err(|e| StoreError::query("store mesh secret", "mesh secret", &key, e))?;
                if changed == 0 {
                    diesel::insert_into(mesh_secret::table)
                        .values((
                            mesh_secret::mesh_name.eq(&mesh_name),
                            mesh_secret::name.eq(&name),
                            mesh_secret::sealed.eq(&sealed),
                            mesh_secret::key_id.eq(&key_id),
                        ))
                        .execute(conn)
                        .map_err(|e| {
                            StoreError::query("store mesh secret", "mesh secret", &key, e)
                        })?;
                }
                Ok(())
            })
        })
        .await
    }

    /// A secret of a mesh, opened; `None` when there is none of that name.
    pub async fn mesh_secret(
        &self,
        mesh_name: &str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (mesh, key) = (mesh_name.to_owned(), name.to_owned());
        let sealed: Option<String> = self
            .run("load mesh secret", move |conn| {
                mesh_secret::table
                    .filter(mesh_secret::mesh_name.eq(&mesh))
                    .filter(mesh_secret::name.eq(&key))
                    .select(mesh_secret::sealed)
                    .first(conn)
                    .optional()
                    .map_err(|e| {
                        StoreError::query(
                            "load mesh secret",
                            "mesh secret",
                            format!("{mesh}/{key}"),
                            e,
                        )
                    })
            })
            .await?;
        sealed
            .map(|sealed| self.secrets().open(&context(mesh_name, name), &sealed))
            .transpose()
            .map_err(|e: CryptoError| e.into())
    }

    /// Forgets one secret of a mesh; returns whether it existed.
    pub async fn delete_mesh_secret(
        &self,
        mesh_name: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let (mesh, key) = (mesh_name.to_owned(), name.to_owned());
        self.run("delete mesh secret", move |conn| {
            diesel::delete(
                mesh_secret::table
                    .filter(mesh_secret::mesh_name.eq(&mesh))
                    .filter(mesh_secret::name.eq(&key)),
            )
            .execute(conn)
            .map(|n| n > 0)
            .map_err(|e| {
                StoreError::query(
                    "delete mesh secret",
                    "mesh secret",
                    format!("{mesh}/{key}"),
                    e,
                )
            })
        })
        .await
    }

    /// Forgets every secret of a mesh (when it is deleted).
    pub async fn delete_mesh_secrets(&self, mesh_name: &str) -> Result<usize, StoreError> {
        let mesh = mesh_name.to_owned();
        self.run("delete mesh secrets", move |conn| {
            diesel::delete(mesh_secret::table.filter(mesh_secret::mesh_name.eq(&mesh)))
                .execute(conn)
                .map_err(|e| StoreError::query("delete mesh secrets", "mesh", &mesh, e))
        })
        .await
    }
}
