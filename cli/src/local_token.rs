//! The local admin token of the embedded default.
//!
//! Input: the store and the configuration. Output: on the first start of a SQLite database whose
//! token table is empty, one admin token for the configured tenant, written to `meshd.token`
//! (mode 0600) beside the database, so `meshctl` run in that directory finds it. The token is never
//! printed or logged; only its file's path is. A server database (MySQL) gets no such file: its
//! operators issue tokens with `meshd token create`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use mesh_schema::store::token::{NewApiToken, TokenRole};
use mesh_schema::{DatabaseTarget, Store};

use crate::config::MeshdConfig;

/// Name of the token file written beside the embedded SQLite database.
pub const TOKEN_FILE: &str = "meshd.token";

/// Principal of the local admin token.
pub const LOCAL_ADMIN: &str = "token:local-admin";

/// Where the token file of a SQLite database lives: beside it.
pub fn token_path(sqlite_path: &str) -> PathBuf {
    Path::new(sqlite_path)
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from(TOKEN_FILE), |dir| dir.join(TOKEN_FILE))
}

/// Makes the local admin token when the database has no token at all; returns where it was
/// written, or `None` when nothing was made.
pub async fn ensure_local_admin_token(
    store: &Store,
    config: &MeshdConfig,
) -> anyhow::Result<Option<PathBuf>> {
    let DatabaseTarget::Sqlite { path } = config.database()? else {
        return Ok(None);
    };
    if !store
        .list_api_tokens()
        .await
        .context("cannot list API tokens")?
        .is_empty()
    {
        return Ok(None);
    }
    let file = token_path(&path);
    let issued = store
        .create_api_token(NewApiToken {
            principal: LOCAL_ADMIN.to_owned(),
            tenant: config.tenant()?,
            role: TokenRole::Admin,
        })
        .await
        .context("cannot create the local admin token")?;
    if let Err(error) = write_private(&file, &format!("{}\n", issued.token)) {
        // A token nobody can read is useless: revoke it so the next start tries again.
        let _ = store.revoke_api_token(issued.record.id).await;
        return Err(error);
    }
    tracing::info!(
        path = %file.display(),
        tenant = %issued.record.tenant_id,
        role = %issued.record.role,
        "wrote a local admin token; meshctl run in its directory uses it"
    );
    Ok(Some(file))
}

/// Writes `text` to `path`, readable by the owner only.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let context = || format!("cannot write the token file {}", path.display());
    let mut file = options.open(path).with_context(context)?;
    #[cfg(unix)]
    {
        // A file left from an earlier database keeps its mode on open; make it private too.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(context)?;
    }
    file.write_all(text.as_bytes()).with_context(context)?;
    file.sync_all().with_context(context)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_lives_beside_the_database() {
        assert_eq!(token_path("meshd.db"), PathBuf::from("meshd.token"));
        assert_eq!(
            token_path("/var/lib/meshd/state.db"),
            PathBuf::from("/var/lib/meshd/meshd.token")
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_token_file_is_private_even_when_it_existed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(TOKEN_FILE);
        std::fs::write(&path, "old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_private(&path, "new\n").expect("written");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new\n");
    }
}
