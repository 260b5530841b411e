//! What every role of meshd needs before it can work: the secret key, the store and the bus.
//!
//! Each step fails with one line saying what to fix (a bad database URL, an unreachable server, a
//! missing key file), which `meshd` prints before exiting non-zero.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use mesh_bus::{Bus, BusConfig, LocalBus, NatsBus};
use mesh_schema::{DatabaseTarget, SecretBox, SecretKey, Store};

use crate::config::MeshdConfig;

/// Name of the key file generated beside the embedded SQLite database.
pub const EMBEDDED_KEY_FILE: &str = "meshd.key";

/// Where the key file of the embedded default lives: beside the SQLite file.
fn embedded_key_path(sqlite_path: &str) -> PathBuf {
    Path::new(sqlite_path)
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .map_or_else(
            || PathBuf::from(EMBEDDED_KEY_FILE),
            |dir| dir.join(EMBEDDED_KEY_FILE),
        )
}

/// Loads the secret key. A configured key file must exist; without one, the SQLite default
/// creates `meshd.key` (mode 0600) on first run, and any other database is refused.
pub fn secret_key(config: &MeshdConfig, target: &DatabaseTarget) -> anyhow::Result<SecretKey> {
    if let Some(path) = &config.secret_key_file {
        return Ok(SecretKey::load(path)?);
    }
    match target {
        DatabaseTarget::Sqlite { path } => {
            let key_path = embedded_key_path(path);
            let existed = key_path.exists();
            let key = SecretKey::load_or_create(&key_path)?;
            if !existed {
                tracing::info!(path = %key_path.display(), key_id = %key.id(), "generated a new secret key");
            }
            Ok(key)
        }
        DatabaseTarget::Mysql { .. } => anyhow::bail!(
            "no secret key configured for {target}: set --secret-key-file or MESHD_SECRET_KEY_FILE \
             (create a key with `meshd keygen --out meshd.key`)"
        ),
    }
}

/// Opens the store (migrating first when configured to).
pub async fn open_store(config: &MeshdConfig) -> anyhow::Result<Store> {
    let target = config.database()?;
    let key = secret_key(config, &target)?;
    let store = Store::open(
        target.clone(),
        SecretBox::new(&key),
        config.database_pool_size,
        config.auto_migrate,
    )
    .await
    .context("check --database-url / MESHD_DATABASE_URL")?;
    Ok(store)
}

/// Connects the bus: NATS JetStream when a URL is configured, the in-process bus otherwise.
pub async fn connect_bus(config: &MeshdConfig) -> anyhow::Result<Arc<dyn Bus>> {
    let bus_config =
        BusConfig::with_root(config.bus.root.clone()).partitions(config.bus.partitions);
    match config.nats() {
        Some(url) => {
            let bus = NatsBus::connect(url, bus_config)
                .await
                .context("check --nats-url / MESHD_NATS_URL; NATS must run with JetStream (-js)")?;
            Ok(Arc::new(bus))
        }
        None => Ok(Arc::new(LocalBus::new(bus_config)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_key_lives_beside_the_database() {
        assert_eq!(embedded_key_path("meshd.db"), PathBuf::from("meshd.key"));
        assert_eq!(
            embedded_key_path("/var/lib/meshd/state.db"),
            PathBuf::from("/var/lib/meshd/meshd.key")
        );
    }

    #[test]
    fn a_server_database_without_a_key_file_is_refused() {
        let config = MeshdConfig::default();
        let target = DatabaseTarget::parse("mysql://root@127.0.0.1/tke_mesh").expect("valid");
        let error = secret_key(&config, &target).expect_err("no key");
        assert!(error.to_string().contains("meshd keygen"), "{error}");
    }
}
