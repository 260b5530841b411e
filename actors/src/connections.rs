//! Kube clients for member clusters, built from their sealed credentials and cached per cluster;
//! each holds its own request rate limit.

use std::collections::HashMap;
use std::sync::Arc;

use mesh_clusters::client::client_for;
use mesh_clusters::{ClusterCredentials, ClusterOps, RateLimit};
use mesh_schema::Store;
use tokio::sync::Mutex;

use crate::error::ActorError;

/// A member cluster as the actors reach it.
#[derive(Debug)]
pub struct Connection {
    /// Operations on it.
    pub ops: ClusterOps,
    /// Its validated credentials (secret).
    pub credentials: ClusterCredentials,
}

/// A cache of connections by cluster name.
#[derive(Debug, Clone)]
pub struct ClusterConnections {
    store: Store,
    limit: RateLimit,
    cache: Arc<Mutex<HashMap<String, Arc<Connection>>>>,
}

impl ClusterConnections {
    /// Connections whose credentials come from `store`, each sending at most the default rate.
    pub fn new(store: Store) -> Self {
        Self::with_rate_limit(store, RateLimit::default())
    }

    /// Connections whose credentials come from `store`, each sending at most `limit`.
    pub fn with_rate_limit(store: Store, limit: RateLimit) -> Self {
        Self {
            store,
            limit,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The connection to `cluster`, built on first use.
    pub async fn get(&self, cluster: &str) -> Result<Arc<Connection>, ActorError> {
        if let Some(found) = self.cache.lock().await.get(cluster) {
            return Ok(Arc::clone(found));
        }
        let kubeconfig = self.store.cluster_kubeconfig(cluster).await?;
        let credentials =
            ClusterCredentials::from_kubeconfig_yaml(&kubeconfig).map_err(|source| {
                ActorError::Credentials {
                    cluster: cluster.to_owned(),
                    source,
                }
            })?;
        let client =
            client_for(&credentials, self.limit)
                .await
                .map_err(|e| ActorError::Client {
                    cluster: cluster.to_owned(),
                    reason: e.to_string(),
                })?;
        let connection = Arc::new(Connection {
            ops: ClusterOps::new(cluster, client),
            credentials,
        });
        self.cache
            .lock()
            .await
            .insert(cluster.to_owned(), Arc::clone(&connection));
        Ok(connection)
    }

    /// Drops a cached connection (credentials changed, cluster removed).
    pub async fn forget(&self, cluster: &str) {
        self.cache.lock().await.remove(cluster);
    }
}
