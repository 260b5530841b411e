//! A `kube::Client` for a cluster, built from validated credentials only, its requests held to a
//! rate limit.

use std::time::Duration;

use kube::config::KubeConfigOptions;

use crate::credentials::ClusterCredentials;
use crate::rate_limit::{RateLimit, RateLimitLayer};

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig could not be turned into a client configuration.
    #[error("cannot build a client for {server}: {reason}")]
    Config {
        /// The API server.
        server: String,
        /// What kube said.
        reason: String,
    },
}

/// Timeouts of cluster clients: connecting fails fast so a cut-off cluster shows up quickly.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest time a single (non-watch) request may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Makes sure rustls has its process-wide crypto provider (ring); installing twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds a client for the cluster the credentials name, sending at most `limit`.
pub async fn client_for(
    credentials: &ClusterCredentials,
    limit: RateLimit,
) -> Result<kube::Client, ClientError> {
    install_crypto_provider();
    let error = |reason: String| ClientError::Config {
        server: credentials.server().to_owned(),
        reason,
    };
    let mut config = kube::Config::from_custom_kubeconfig(
        credentials.kubeconfig().clone(),
        &KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| error(e.to_string()))?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    limit.validate().map_err(&error)?;
    let builder =
        kube::client::ClientBuilder::try_from(config).map_err(|e| error(e.to_string()))?;
    Ok(builder.with_layer(&RateLimitLayer::new(limit)).build())
}
