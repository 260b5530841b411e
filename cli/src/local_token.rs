//! The local admin token of the embedded default.
//!
//! Input: the store and the configuration. Output: when meshd starts on a SQLite database holding
//! no valid token (its first start, or every token revoked), one admin token for the configured
//! tenant. Only its hash is stored; the
//! token itself is printed once on standard output, on a line of its own (`admin token: …`), and
//! never again: it is not logged and not written anywhere. `meshctl login --token …` keeps it in
//! meshctl's private config file. A server database (MySQL) gets no such token: its operators issue
//! tokens with `meshd token create`.

use std::io::Write;

use anyhow::Context;
use mesh_schema::store::token::{NewApiToken, TokenRole};
use mesh_schema::{DatabaseTarget, Store};

use crate::config::MeshdConfig;

/// Principal of the local admin token.
pub const LOCAL_ADMIN: &str = "token:local-admin";

/// What starts the line that carries the first-start admin token.
pub const ADMIN_TOKEN_PREFIX: &str = "admin token: ";

/// Makes the local admin token when the embedded database holds no valid token and prints it once
/// to `out`; returns whether one was made.
pub async fn ensure_local_admin_token(
    store: &Store,
    config: &MeshdConfig,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let DatabaseTarget::Sqlite { .. } = config.database()? else {
        return Ok(false);
    };
    let tokens = store
        .list_api_tokens()
        .await
        .context("cannot list API tokens")?;
    if tokens.iter().any(|token| token.revoked_at.is_none()) {
        return Ok(false);
    }
    let issued = store
        .create_api_token(NewApiToken {
            principal: LOCAL_ADMIN.to_owned(),
            tenant: config.tenant()?,
            role: TokenRole::Admin,
        })
        .await
        .context("cannot create the local admin token")?;
    let printed = writeln!(out, "{ADMIN_TOKEN_PREFIX}{}", issued.token).and_then(|()| out.flush());
    if let Err(error) = printed {
        // A token nobody saw is useless: revoke it so the next start makes another.
        let _ = store.revoke_api_token(issued.record.id).await;
        return Err(error).context("cannot print the local admin token");
    }
    tracing::info!(
        tenant = %issued.record.tenant_id,
        role = %issued.record.role,
        "made the local admin token and printed it once on standard output; only its hash is kept"
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that refuses every write, like a closed standard output.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "closed",
            ))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn embedded(dir: &std::path::Path) -> MeshdConfig {
        MeshdConfig {
            database_url: format!("sqlite://{}", dir.join("meshd.db").display()),
            ..MeshdConfig::default()
        }
    }

    #[tokio::test]
    async fn the_first_start_prints_one_token_whose_hash_alone_is_stored_and_later_starts_print_none()
     {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = embedded(dir.path());
        let store = crate::setup::open_store(&config).await.expect("store");

        let mut out = Vec::new();
        assert!(
            ensure_local_admin_token(&store, &config, &mut out)
                .await
                .expect("made")
        );
        let text = String::from_utf8(out).expect("utf-8");
        let token = text
            .strip_prefix(ADMIN_TOKEN_PREFIX)
            .and_then(|rest| rest.strip_suffix('\n'))
            .expect("one `admin token: …` line");
        assert!(!token.contains('\n'));
        let principal = store.authenticate_api_token(token).await.expect("lookup");
        assert_eq!(
            principal.map(|p| p.role),
            Some(TokenRole::Admin),
            "the printed token is an admin token"
        );
        let database = std::fs::read(dir.path().join("meshd.db")).expect("database file");
        assert!(
            !database
                .windows(token.len())
                .any(|window| window == token.as_bytes()),
            "the token itself is not in the database"
        );

        let mut again = Vec::new();
        assert!(
            !ensure_local_admin_token(&store, &config, &mut again)
                .await
                .expect("checked")
        );
        assert!(again.is_empty(), "printed once only");
    }

    #[tokio::test]
    async fn a_token_that_cannot_be_printed_is_revoked_so_the_next_start_tries_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = embedded(dir.path());
        let store = crate::setup::open_store(&config).await.expect("store");
        let error = ensure_local_admin_token(&store, &config, &mut Closed)
            .await
            .expect_err("refused");
        assert!(format!("{error:#}").contains("cannot print"), "{error:#}");
        let mut out = Vec::new();
        assert!(
            ensure_local_admin_token(&store, &config, &mut out)
                .await
                .expect("made")
        );
        assert!(!out.is_empty());
    }
}
