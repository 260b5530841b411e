//! State shared by the handlers: the version catalog, the store, the bus, the readiness probes and
//! the authentication settings.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::Bus;
use mesh_core::VersionCatalog;
use mesh_schema::Store;

use crate::envelope::ApiError;
use crate::metrics::Metrics;

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
    /// Where state is read from and clusters are registered; routes that need it answer 503
    /// without it.
    pub store: Option<Store>,
    /// Where commands are published and live events read; routes that need it answer 503
    /// without it.
    pub bus: Option<Arc<dyn Bus>>,
    /// Peer addresses of front proxies whose `X-Remote-TenantID` header is honoured; the header
    /// is ignored from anyone else.
    pub trusted_proxies: Vec<IpAddr>,
    /// Whether requests must carry a token. When off (tests, a private loopback setup) every
    /// caller is an anonymous administrator.
    pub auth_required: bool,
    /// Longest `?wait=` a caller may ask for.
    pub max_wait: Duration,
    /// What `/metrics` shows; the HTTP middleware records requests here, and the workers get a
    /// clone to report commands, flows, actors and leases.
    pub metrics: Metrics,
}

impl ApiState {
    /// State with the given catalog, no store, no bus, no readiness probes, a 1 MiB body limit,
    /// authentication required, no trusted proxies, waits of at most 5 minutes and a fresh
    /// metrics registry.
    pub fn new(catalog: VersionCatalog) -> Self {
        Self {
            catalog: Arc::new(catalog),
            readiness: Vec::new(),
            body_limit: 1024 * 1024,
            store: None,
            bus: None,
            trusted_proxies: Vec::new(),
            auth_required: true,
            max_wait: Duration::from_secs(300),
            metrics: Metrics::new(),
        }
    }

    /// Adds a readiness probe.
    pub fn with_probe(mut self, probe: Arc<dyn ReadinessProbe>) -> Self {
        self.readiness.push(probe);
        self
    }

    /// Sets the store.
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Sets the bus.
    pub fn with_bus(mut self, bus: Arc<dyn Bus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Sets the front proxies whose tenant header is trusted.
    pub fn with_trusted_proxies(mut self, proxies: Vec<IpAddr>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Sets the metrics registry (to share it with the workers).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Sets the longest `?wait=` a caller may ask for.
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Turns the token requirement on or off.
    pub fn with_auth_required(mut self, required: bool) -> Self {
        self.auth_required = required;
        self
    }

    /// The store, or 503 when none is configured.
    pub(crate) fn store(&self) -> Result<&Store, ApiError> {
        self.store
            .as_ref()
            .ok_or_else(|| ApiError::Unavailable("no database is configured".into()))
    }

    /// The bus, or 503 when none is configured.
    pub(crate) fn bus(&self) -> Result<&Arc<dyn Bus>, ApiError> {
        self.bus
            .as_ref()
            .ok_or_else(|| ApiError::Unavailable("no message bus is configured".into()))
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
