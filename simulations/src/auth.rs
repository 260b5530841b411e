//! Bearer-token authentication of one simulated cluster.
//!
//! Each cluster has an admin token (written into its kubeconfig) and accepts the tokens its
//! service-account token controller issues. Revoking a token (a fault, or deleting its Secret)
//! makes the API server answer `401 Unauthorized` to it.

use std::collections::HashMap;
use std::sync::RwLock;

/// Who a token authenticates as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `system:admin` or `system:serviceaccount:<ns>:<name>`.
    pub user: String,
}

/// The token table of one cluster.
#[derive(Debug, Default)]
pub struct Auth {
    tokens: RwLock<HashMap<String, Identity>>,
}

fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Auth {
    /// A table holding one fresh admin token, returned alongside.
    pub fn with_admin() -> (Self, String) {
        let auth = Auth::default();
        let token = random_token();
        auth.add(&token, "system:admin");
        (auth, token)
    }

    /// Accept `token` as `user`.
    pub fn add(&self, token: &str, user: &str) {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                token.to_string(),
                Identity {
                    user: user.to_string(),
                },
            );
    }

    /// Issue a new random token for `user`.
    pub fn issue(&self, user: &str) -> String {
        let token = random_token();
        self.add(&token, user);
        token
    }

    /// Stop accepting `token`. Returns whether it was known.
    pub fn revoke(&self, token: &str) -> bool {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token)
            .is_some()
    }

    /// Stop accepting every token of `user`.
    pub fn revoke_user(&self, user: &str) {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, id| id.user != user);
    }

    /// Who `token` is, if accepted.
    pub fn check(&self, token: &str) -> Option<Identity> {
        self.tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }
}
