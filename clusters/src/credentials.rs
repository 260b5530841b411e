//! Cluster credentials from user-supplied kubeconfigs.
//!
//! A kubeconfig is an attack surface: it can name programs to run (`exec`), plugins
//! (`auth-provider`), local files to read (`tokenFile`, `client-certificate`,
//! `certificate-authority`, ...) or servers on odd schemes. mesh-manager runs none of that. It
//! accepts one context (the current one, or the only one) whose cluster has an `http`/`https`
//! server and whose user authenticates with an inline bearer token or an inline client certificate
//! and key; every other shape is refused with the reason. The accepted kubeconfig is reduced to
//! that one context, so nothing else is ever stored.

use std::fmt;

use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};
use serde::{Deserialize, Serialize};

/// Largest kubeconfig accepted, in bytes.
pub const MAX_KUBECONFIG_BYTES: usize = 256 * 1024;

/// How mesh-manager authenticates to a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthKind {
    /// A bearer token.
    Token,
    /// A client certificate and key.
    ClientCertificate,
}

impl AuthKind {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::ClientCertificate => "client-certificate",
        }
    }
}

impl fmt::Display for AuthKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a kubeconfig was refused. Messages never quote secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// Empty input.
    #[error("the kubeconfig is empty")]
    Empty,
    /// Larger than [`MAX_KUBECONFIG_BYTES`].
    #[error("the kubeconfig is {size} bytes, more than the {MAX_KUBECONFIG_BYTES} bytes accepted")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Not YAML or not a kubeconfig.
    #[error("the kubeconfig cannot be read: {0}")]
    Malformed(String),
    /// No context can be chosen.
    #[error("the kubeconfig has {0}")]
    NoContext(String),
    /// A context names a cluster or user the file does not define.
    #[error("context {context:?} refers to {what} {name:?}, which the kubeconfig does not define")]
    DanglingReference {
        /// The context.
        context: String,
        /// `cluster` or `user`.
        what: &'static str,
        /// The missing name.
        name: String,
    },
    /// The server URL is missing or not http(s).
    #[error("cluster {cluster:?}: {reason}")]
    BadServer {
        /// The cluster entry.
        cluster: String,
        /// What is wrong.
        reason: String,
    },
    /// A credential shape mesh-manager refuses.
    #[error("user {user:?}: {reason}")]
    Refused {
        /// The user entry.
        user: String,
        /// What is refused and what to use instead.
        reason: String,
    },
}

/// Validated credentials of one cluster. `Debug` shows no secrets.
#[derive(Clone)]
pub struct ClusterCredentials {
    server: String,
    auth_kind: AuthKind,
    kubeconfig: Kubeconfig,
}

impl fmt::Debug for ClusterCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCredentials")
            .field("server", &self.server)
            .field("auth_kind", &self.auth_kind)
            .finish_non_exhaustive()
    }
}

fn refused(user: &str, reason: &str) -> CredentialsError {
    CredentialsError::Refused {
        user: user.to_owned(),
        reason: reason.to_owned(),
    }
}

fn check_server(name: &str, cluster: &Cluster) -> Result<String, CredentialsError> {
    let bad = |reason: String| CredentialsError::BadServer {
        cluster: name.to_owned(),
        reason,
    };
    let server = cluster
        .server
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("has no server URL".into()))?;
    let parsed =
        url::Url::parse(server).map_err(|e| bad(format!("server {server:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(bad(format!(
            "server scheme {:?} is not allowed; use https:// (or http://)",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad(format!("server {server:?} has no host")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(
            "server URL must not carry a user name or password".into()
        ));
    }
    if cluster.certificate_authority.is_some() {
        return Err(bad(
            "certificate-authority names a local file; inline it as certificate-authority-data"
                .into(),
        ));
    }
    if cluster.proxy_url.is_some() {
        return Err(bad("proxy-url is not supported".into()));
    }
    Ok(parsed.to_string().trim_end_matches('/').to_owned())
}

fn check_user(name: &str, auth: &AuthInfo) -> Result<AuthKind, CredentialsError> {
    if auth.exec.is_some() {
        return Err(refused(
            name,
            "exec credential plugins are not accepted (mesh-manager runs no programs); use a service-account token or an inline client certificate",
        ));
    }
    if auth.auth_provider.is_some() {
        return Err(refused(
            name,
            "auth-provider plugins are not accepted; use a service-account token or an inline client certificate",
        ));
    }
    if auth.token_file.is_some() {
        return Err(refused(
            name,
            "tokenFile names a local file; put the token inline as token",
        ));
    }
    if auth.client_certificate.is_some() || auth.client_key.is_some() {
        return Err(refused(
            name,
            "client-certificate/client-key name local files; inline them as client-certificate-data and client-key-data",
        ));
    }
    if auth.username.is_some() || auth.password.is_some() {
        return Err(refused(
            name,
            "basic authentication (username/password) is not accepted; use a token",
        ));
    }
    if auth.impersonate.is_some() || auth.impersonate_groups.is_some() {
        return Err(refused(name, "impersonation is not accepted"));
    }
    let has_token = auth.token.is_some();
    let has_cert = auth.client_certificate_data.is_some() || auth.client_key_data.is_some();
    match (has_token, has_cert) {
        (true, false) => Ok(AuthKind::Token),
        (false, true)
            if auth.client_certificate_data.is_some() && auth.client_key_data.is_some() =>
        {
            Ok(AuthKind::ClientCertificate)
        }
        (false, true) => Err(refused(
            name,
            "client-certificate-data and client-key-data must both be given",
        )),
        (true, true) => Err(refused(
            name,
            "give either a token or a client certificate, not both",
        )),
        (false, false) => Err(refused(
            name,
            "has no credentials; give a bearer token or client-certificate-data and client-key-data",
        )),
    }
}

impl ClusterCredentials {
    /// Validates a kubeconfig in YAML (or JSON).
    pub fn from_kubeconfig_yaml(text: &str) -> Result<Self, CredentialsError> {
        if text.trim().is_empty() {
            return Err(CredentialsError::Empty);
        }
        if text.len() > MAX_KUBECONFIG_BYTES {
            return Err(CredentialsError::TooLarge { size: text.len() });
        }
        let config: Kubeconfig = serde_yaml::from_str(text)
            .map_err(|e| CredentialsError::Malformed(first_line(&e.to_string())))?;
        Self::from_kubeconfig(config)
    }

    /// Validates a parsed kubeconfig.
    pub fn from_kubeconfig(config: Kubeconfig) -> Result<Self, CredentialsError> {
        let context_name = match (&config.current_context, config.contexts.as_slice()) {
            (Some(current), _) if !current.is_empty() => current.clone(),
            (_, [only]) => only.name.clone(),
            (_, []) => return Err(CredentialsError::NoContext("no contexts".into())),
            (_, _) => {
                return Err(CredentialsError::NoContext(
                    "several contexts and no current-context; set current-context".into(),
                ));
            }
        };
        let context: Context = config
            .contexts
            .iter()
            .find(|c| c.name == context_name)
            .and_then(|c| c.context.clone())
            .ok_or_else(|| {
                CredentialsError::NoContext(format!("no context named {context_name:?}"))
            })?;
        let cluster_name = context.cluster.clone();
        let user_name = context.user.clone().unwrap_or_default();
        let dangling = |what, name: &str| CredentialsError::DanglingReference {
            context: context_name.clone(),
            what,
            name: name.to_owned(),
        };
        let cluster = config
            .clusters
            .iter()
            .find(|c| c.name == cluster_name)
            .and_then(|c| c.cluster.clone())
            .ok_or_else(|| dangling("cluster", &cluster_name))?;
        let user = config
            .auth_infos
            .iter()
            .find(|u| u.name == user_name)
            .and_then(|u| u.auth_info.clone())
            .ok_or_else(|| dangling("user", &user_name))?;
        let server = check_server(&cluster_name, &cluster)?;
        let auth_kind = check_user(&user_name, &user)?;
        let kubeconfig = Kubeconfig {
            current_context: Some(context_name.clone()),
            contexts: vec![NamedContext {
                name: context_name,
                context: Some(Context {
                    cluster: cluster_name.clone(),
                    user: Some(user_name.clone()),
                    namespace: context.namespace,
                    extensions: None,
                    ..Context::default()
                }),
                ..NamedContext::default()
            }],
            clusters: vec![NamedCluster {
                name: cluster_name,
                cluster: Some(Cluster {
                    extensions: None,
                    ..cluster
                }),
                ..NamedCluster::default()
            }],
            auth_infos: vec![NamedAuthInfo {
                name: user_name,
                auth_info: Some(user),
                ..NamedAuthInfo::default()
            }],
            ..Kubeconfig::default()
        };
        Ok(Self {
            server,
            auth_kind,
            kubeconfig,
        })
    }

    /// The API server URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The cluster's CA bundle (base64), when the kubeconfig carries one.
    pub fn certificate_authority_data(&self) -> Option<&str> {
        self.kubeconfig
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref())
            .and_then(|c| c.certificate_authority_data.as_deref())
    }

    /// How mesh-manager authenticates.
    pub fn auth_kind(&self) -> AuthKind {
        self.auth_kind
    }

    /// The reduced kubeconfig (one context) — secret: store it sealed, never log it.
    pub fn kubeconfig(&self) -> &Kubeconfig {
        &self.kubeconfig
    }

    /// The reduced kubeconfig as YAML — secret.
    pub fn to_yaml(&self) -> Result<String, CredentialsError> {
        serde_yaml::to_string(&self.kubeconfig)
            .map_err(|e| CredentialsError::Malformed(e.to_string()))
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or(text)
        .chars()
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(server: &str, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: ctx\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\n- name: other\n  context:\n    cluster: c2\n    user: u2\nusers:\n- name: u\n  user:\n{user}\n- name: u2\n  user:\n    token: second-secret\n"
        )
    }

    #[test]
    fn token_kubeconfigs_are_accepted_and_reduced_to_one_context() {
        let creds = ClusterCredentials::from_kubeconfig_yaml(&kubeconfig(
            "https://10.0.0.1:6443/",
            "    token: abc.def",
        ))
        .expect("valid");
        assert_eq!(creds.server(), "https://10.0.0.1:6443");
        assert_eq!(creds.auth_kind(), AuthKind::Token);
        let yaml = creds.to_yaml().expect("yaml");
        assert!(
            !yaml.contains("second-secret"),
            "other users are dropped: {yaml}"
        );
        assert!(!format!("{creds:?}").contains("abc.def"));
    }

    #[test]
    fn inline_client_certificates_are_accepted() {
        let creds = ClusterCredentials::from_kubeconfig_yaml(&kubeconfig(
            "https://k8s.example:443",
            "    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ",
        ))
        .expect("valid");
        assert_eq!(creds.auth_kind(), AuthKind::ClientCertificate);
    }

    #[test]
    fn dangerous_credential_shapes_are_refused_with_a_reason() {
        let cases = [
            (
                "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh",
                "exec",
            ),
            ("    auth-provider:\n      name: gcp", "auth-provider"),
            ("    tokenFile: /var/run/secrets/token", "tokenFile"),
            (
                "    client-certificate: /etc/cert.pem\n    client-key: /etc/key.pem",
                "local files",
            ),
            (
                "    username: admin\n    password: admin",
                "basic authentication",
            ),
            ("    client-certificate-data: Q0VSVA==", "both"),
            (
                "    token: t\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ",
                "not both",
            ),
            ("    {}", "no credentials"),
        ];
        for (user, expected) in cases {
            let error =
                ClusterCredentials::from_kubeconfig_yaml(&kubeconfig("https://h:6443", user))
                    .expect_err(expected);
            assert!(error.to_string().contains(expected), "{expected}: {error}");
        }
    }

    #[test]
    fn servers_must_be_http_urls_without_embedded_credentials() {
        for (server, expected) in [
            ("file:///etc/passwd", "scheme"),
            ("unix:///var/run/k8s.sock", "scheme"),
            ("ftp://h", "scheme"),
            ("https://user:pw@h:6443", "password"),
            ("not a url", "not a URL"),
            ("''", "no server"),
        ] {
            let error =
                ClusterCredentials::from_kubeconfig_yaml(&kubeconfig(server, "    token: t"))
                    .expect_err(server);
            assert!(error.to_string().contains(expected), "{server}: {error}");
        }
    }

    #[test]
    fn malformed_and_oversized_input_is_refused() {
        assert_eq!(
            ClusterCredentials::from_kubeconfig_yaml("  ").expect_err("empty"),
            CredentialsError::Empty
        );
        assert!(matches!(
            ClusterCredentials::from_kubeconfig_yaml(&"a".repeat(MAX_KUBECONFIG_BYTES + 1)),
            Err(CredentialsError::TooLarge { .. })
        ));
        assert!(matches!(
            ClusterCredentials::from_kubeconfig_yaml("clusters: [unclosed"),
            Err(CredentialsError::Malformed(_))
        ));
        let no_context = "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n";
        assert!(matches!(
            ClusterCredentials::from_kubeconfig_yaml(no_context),
            Err(CredentialsError::NoContext(_))
        ));
        let dangling = kubeconfig("https://h", "    token: t").replace(
            "cluster: c\n    user: u\n-",
            "cluster: nope\n    user: u\n-",
        );
        assert!(matches!(
            ClusterCredentials::from_kubeconfig_yaml(&dangling),
            Err(CredentialsError::DanglingReference {
                what: "cluster",
                ..
            })
        ));
    }

    #[test]
    fn yaml_alias_bombs_do_not_explode() {
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
        assert!(ClusterCredentials::from_kubeconfig_yaml(bomb).is_err());
    }
}
