//! State shared by the handlers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use mesh_core::VersionCatalog;

/// A named check that must pass for meshd to be ready (database reachable, bus connected).
pub trait ReadinessProbe: Send + Sync {
    /// What is checked, e.g. `database`.
    fn name(&self) -> &'static str;
    /// `Ok` when ready, otherwise what is wrong.
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

/// Readiness of the store: the database answers.
impl ReadinessProbe for mesh_schema::Store {
    fn name(&self) -> &'static str {
        "database"
    }

    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move { self.ping().await.map_err(|e| e.to_string()) })
    }
}

/// Everything the handlers need.
#[derive(Clone)]
pub struct ApiState {
    /// Installable Istio versions.
    pub catalog: Arc<VersionCatalog>,
    /// Checks behind `/readyz`.
    pub readiness: Vec<Arc<dyn ReadinessProbe>>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
}

impl ApiState {
    /// State with the given catalog, no readiness probes and a 1 MiB body limit.
    pub fn new(catalog: VersionCatalog) -> Self {
        Self {
            catalog: Arc::new(catalog),
            readiness: Vec::new(),
            body_limit: 1024 * 1024,
        }
    }

    /// Adds a readiness probe.
    pub fn with_probe(mut self, probe: Arc<dyn ReadinessProbe>) -> Self {
        self.readiness.push(probe);
        self
    }
}

/// Readiness of the bus: connected to NATS (always ready in process).
pub struct BusReadiness(pub Arc<dyn mesh_bus::Bus>);

impl ReadinessProbe for BusReadiness {
    fn name(&self) -> &'static str {
        "bus"
    }

    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move { self.0.check_connected().await.map_err(|e| e.to_string()) })
    }
}
