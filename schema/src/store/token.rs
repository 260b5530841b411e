//! API tokens: issue, list, revoke, authenticate.
//!
//! A token is `mmt_` followed by 32 random bytes (URL-safe base64). Only its SHA-256 (hex) is
//! stored, so a copy of the database grants no access; the clear token is handed out once, when
//! it is issued. Authentication hashes the presented token and looks the hash up among tokens that
//! are not revoked.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use diesel::prelude::*;
use mesh_core::TenantId;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::atomic::atomically;
use super::{Store, StoreError, now};
use crate::models::{ApiTokenRecord, NewApiTokenRow};
use crate::schema::api_token;

/// Prefix of every API token, so leaked tokens are easy to recognise (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "mmt_";

/// Longest token accepted for authentication; anything longer is not one of ours.
const MAX_TOKEN_LEN: usize = 128;

/// What a token's holder may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenRole {
    /// Everything, in every tenant.
    Admin,
    /// Read and write in its own tenant.
    Editor,
    /// Read in its own tenant.
    Viewer,
}

impl TokenRole {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Editor => "editor",
            Self::Viewer => "viewer",
        }
    }
}

impl fmt::Display for TokenRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not `admin`, `editor` or `viewer`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected admin, editor or viewer")]
pub struct UnknownRole(pub String);

impl FromStr for TokenRole {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Self::Admin),
            "editor" => Ok(Self::Editor),
            "viewer" => Ok(Self::Viewer),
            other => Err(UnknownRole(other.chars().take(32).collect())),
        }
    }
}

/// A token to issue.
#[derive(Debug, Clone)]
pub struct NewApiToken {
    /// Who will use it (`user:alice`, `ci`), 1 to 255 bytes.
    pub principal: String,
    /// The tenant it acts for.
    pub tenant: TenantId,
    /// What it may do.
    pub role: TokenRole,
}

/// A freshly issued token: the only time the clear token exists outside its holder. `Debug`
/// hides it.
#[derive(Clone)]
pub struct IssuedToken {
    /// The stored row (without the hash).
    pub record: ApiTokenRecord,
    /// The token in the clear — show it once, never log it.
    pub token: String,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// Who a valid token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    /// The token's id.
    pub token_id: i64,
    /// Its principal.
    pub principal: String,
    /// Its tenant.
    pub tenant: TenantId,
    /// Its role.
    pub role: TokenRole,
}

/// SHA-256 of a token, hex encoded: the stored form.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn load_token(
    conn: &mut crate::database::AnyConnection,
    id: i64,
) -> Result<ApiTokenRecord, StoreError> {
    api_token::table
        .find(id)
        .select(ApiTokenRecord::as_select())
        .first(conn)
        .optional()
        .map_err(|e| StoreError::query("load api token", "api token", id.to_string(), e))?
        .ok_or(StoreError::NotFound {
            what: "api token",
            key: id.to_string(),
        })
}

impl Store {
    /// Issues a token; the answer holds the clear token, which is not stored anywhere.
    pub async fn create_api_token(&self, new: NewApiToken) -> Result<IssuedToken, StoreError> {
        if new.principal.trim().is_empty() || new.principal.len() > 255 {
            return Err(StoreError::Encode {
                what: "api token principal",
                reason: "the principal must be 1 to 255 bytes and not blank".into(),
            });
        }
        let token = generate_token();
        let row = NewApiTokenRow {
            token_hash: hash_token(&token),
            principal: new.principal,
            tenant_id: new.tenant.as_str().to_owned(),
            role: new.role.as_str().to_owned(),
        };
        let record = self
            .run("create api token", move |conn| {
                atomically(conn, |conn| {
                    diesel::insert_into(api_token::table)
                        .values(&row)
                        .execute(conn)
                        .map_err(|e| {
                            StoreError::query("create api token", "api token", &row.principal, e)
                        })?;
                    let id: i64 = api_token::table
                        .filter(api_token::token_hash.eq(&row.token_hash))
                        .select(api_token::id)
                        .first(conn)
                        .map_err(|e| {
                            StoreError::query("create api token", "api token", &row.principal, e)
                        })?;
                    load_token(conn, id)
                })
            })
            .await?;
        Ok(IssuedToken { record, token })
    }

    /// Every token (valid and revoked), oldest first, without hashes.
    pub async fn list_api_tokens(&self) -> Result<Vec<ApiTokenRecord>, StoreError> {
        self.run("list api tokens", |conn| {
            api_token::table
                .order(api_token::id.asc())
                .select(ApiTokenRecord::as_select())
                .load(conn)
                .map_err(|e| StoreError::query("list api tokens", "api tokens", "", e))
        })
        .await
    }

    /// Revokes a token; revoking a revoked token keeps its first revocation time.
    pub async fn revoke_api_token(&self, id: i64) -> Result<ApiTokenRecord, StoreError> {
        self.run("revoke api token", move |conn| {
            atomically(conn, |conn| {
                load_token(conn, id)?;
                diesel::update(api_token::table.find(id))
                    .filter(api_token::revoked_at.is_null())
                    .set(api_token::revoked_at.eq(Some(now())))
                    .execute(conn)
                    .map_err(|e| {
                        StoreError::query("revoke api token", "api token", id.to_string(), e)
                    })?;
                load_token(conn, id)
            })
        })
        .await
    }

    /// Who `token` belongs to, if it is a valid, unrevoked token. Never logs the token.
    pub async fn authenticate_api_token(
        &self,
        token: &str,
    ) -> Result<Option<TokenIdentity>, StoreError> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > MAX_TOKEN_LEN {
            return Ok(None);
        }
        let hash = hash_token(token);
        let found: Option<ApiTokenRecord> = self
            .run("authenticate api token", move |conn| {
                api_token::table
                    .filter(api_token::token_hash.eq(&hash))
                    .filter(api_token::revoked_at.is_null())
                    .select(ApiTokenRecord::as_select())
                    .first(conn)
                    .optional()
                    .map_err(|e| StoreError::query("authenticate api token", "api token", "", e))
            })
            .await?;
        // A row whose tenant or role no longer parses grants nothing.
        Ok(found.and_then(|record| {
            Some(TokenIdentity {
                token_id: record.id,
                tenant: TenantId::new(record.tenant_id).ok()?,
                role: record.role.parse().ok()?,
                principal: record.principal,
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hashed_to_hex() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        let hash = hash_token(&a);
        assert_eq!(hash.len(), 64);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!hash.contains(&a[TOKEN_PREFIX.len()..]));
    }

    #[test]
    fn roles_parse_from_their_names_only() {
        for role in [TokenRole::Admin, TokenRole::Editor, TokenRole::Viewer] {
            assert_eq!(role.as_str().parse::<TokenRole>(), Ok(role));
        }
        assert!("root".parse::<TokenRole>().is_err());
        assert!("Admin".parse::<TokenRole>().is_err());
    }

    async fn store_on(target: crate::DatabaseTarget) -> Store {
        let secrets = crate::SecretBox::new(&crate::SecretKey::generate());
        Store::open(target, secrets, 2, true).await.expect("store")
    }

    async fn issue_authenticate_list_and_revoke(store: Store) {
        let tenant = TenantId::new("acme").expect("tenant");
        let issued = store
            .create_api_token(NewApiToken {
                principal: "user:alice".into(),
                tenant: tenant.clone(),
                role: TokenRole::Editor,
            })
            .await
            .expect("issue");
        assert!(!format!("{issued:?}").contains(&issued.token));
        let who = store
            .authenticate_api_token(&issued.token)
            .await
            .expect("lookup")
            .expect("valid");
        assert_eq!(who.principal, "user:alice");
        assert_eq!(who.tenant, tenant);
        assert_eq!(who.role, TokenRole::Editor);
        assert_eq!(who.token_id, issued.record.id);
        let wrong = format!("{}x", issued.token);
        assert_eq!(
            store.authenticate_api_token(&wrong).await.expect("lookup"),
            None
        );
        assert_eq!(
            store.authenticate_api_token("").await.expect("lookup"),
            None
        );

        let listed = store.list_api_tokens().await.expect("list");
        assert_eq!(listed, vec![issued.record.clone()]);

        let revoked = store
            .revoke_api_token(issued.record.id)
            .await
            .expect("revoke");
        assert!(revoked.revoked_at.is_some());
        let again = store
            .revoke_api_token(issued.record.id)
            .await
            .expect("again");
        assert_eq!(again.revoked_at, revoked.revoked_at);
        assert_eq!(
            store
                .authenticate_api_token(&issued.token)
                .await
                .expect("lookup"),
            None
        );
        assert!(matches!(
            store.revoke_api_token(9999).await,
            Err(StoreError::NotFound { .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokens_round_trip_on_sqlite() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let target = crate::DatabaseTarget::parse(&url).expect("target");
        issue_authenticate_list_and_revoke(store_on(target).await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokens_round_trip_on_mariadb() {
        let database = mesh_testkit::mariadb::TestDatabase::create();
        let target = crate::DatabaseTarget::parse(&database.url()).expect("target");
        issue_authenticate_list_and_revoke(store_on(target).await).await;
    }
}
