//! One simulated cluster: its store, token table, faults, HTTP listener and controllers.
//!
//! [`SimCluster::start`] binds `127.0.0.1:0`, serves the Kubernetes API on it (see
//! [`crate::server`]) and spawns the in-cluster controllers ([`crate::controllers`]). The
//! listener honours the partition fault by closing its socket (connections are refused) and
//! cutting open connections; healing re-binds the same port.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Body;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::faults::Faults;
use crate::store::Store;

/// Behaviour knobs of a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// How long a Deployment takes to become ready after a spec change.
    pub deploy_ready_delay: Duration,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: Duration,
    /// Number of changes retained for watches (older versions get `410 Expired`).
    pub history_limit: usize,
    /// Addresses handed to LoadBalancer Services, in order. Empty: `127.200.<index>.<n>`.
    pub lb_pool: Vec<String>,
    /// How often istiod re-checks its remote clusters.
    pub remote_sync_interval: Duration,
    /// How long an unused old revision stays when `inactiveRevisionDeletionGracePeriodSeconds`
    /// is not set on the `Istio` (Sail's default is 30 s).
    pub revision_grace_default: Duration,
    /// Serve HTTPS (default). kubectl only sends bearer tokens over TLS; plain HTTP is enough
    /// for the `kube` crate and saves CPU in benches.
    pub tls: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            deploy_ready_delay: Duration::from_millis(200),
            bookmark_interval: Duration::from_secs(5),
            history_limit: 2000,
            lb_pool: Vec::new(),
            remote_sync_interval: Duration::from_secs(2),
            revision_grace_default: Duration::from_secs(30),
            tls: true,
        }
    }
}

/// State shared by the HTTP layer and the controllers of one cluster.
pub(crate) struct Shared {
    pub name: String,
    pub index: usize,
    pub store: Store,
    pub auth: Auth,
    pub faults: Faults,
    pub admin_token: String,
    pub requests: AtomicU64,
    /// Requests by Kubernetes verb (`get`, `list`, `watch`, `create`, `patch`, ...).
    pub verbs: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    pub opts: ClusterOptions,
    pub lb_next: Mutex<usize>,
    pub shutdown: CancellationToken,
    pub remote_sync_running: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// The next free load-balancer address.
    pub fn next_lb_address(&self) -> String {
        let mut n = self.lb_next.lock().unwrap_or_else(|p| p.into_inner());
        let i = *n;
        *n += 1;
        if let Some(a) = self.opts.lb_pool.get(i % self.opts.lb_pool.len().max(1)) {
            return a.clone();
        }
        format!("127.200.{}.{}", self.index % 256, i % 254 + 1)
    }
}

/// A running simulated cluster. Cheap to clone; stops when [`SimCluster::stop`] is called or
/// the runtime ends.
#[derive(Clone)]
pub struct SimCluster {
    shared: Arc<Shared>,
    addr: SocketAddr,
    dataplane: crate::dataplane::DataPlaneHandle,
}

impl std::fmt::Debug for SimCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCluster")
            .field("name", &self.shared.name)
            .field("addr", &self.addr)
            .finish()
    }
}

async fn serve_conn(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    partition: tokio::sync::watch::Receiver<bool>,
) {
    if shared.opts.tls {
        let Ok(tls) = crate::tls::tls() else { return };
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(10), tls.acceptor.accept(stream)).await
        {
            serve_io(shared, s, partition).await;
        }
    } else {
        serve_io(shared, stream, partition).await;
    }
}

async fn serve_io<I>(
    shared: Arc<Shared>,
    stream: I,
    mut partition: tokio::sync::watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let shared = shared.clone();
        async move {
            Ok::<_, std::convert::Infallible>(
                crate::server::handle(shared, req.map(Body::new)).await,
            )
        }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        _ = conn => {}
        _ = partition.wait_for(|p| *p) => {}
    }
}

async fn accept_loop(shared: Arc<Shared>, mut listener: Option<TcpListener>, addr: SocketAddr) {
    let mut partition = shared.faults.partition_watch();
    loop {
        match &listener {
            Some(l) => {
                tokio::select! {
                    acc = l.accept() => {
                        if let Ok((stream, _)) = acc {
                            let _ = stream.set_nodelay(true);
                            let p = shared.faults.partition_watch();
                            tokio::spawn(serve_conn(shared.clone(), stream, p));
                        }
                    }
                    r = partition.changed() => {
                        if r.is_err() { return; }
                        if *partition.borrow() {
                            listener = None;
                        }
                    }
                    _ = shared.shutdown.cancelled() => return,
                }
            }
            None => {
                tokio::select! {
                    r = partition.changed() => {
                        if r.is_err() { return; }
                        if !*partition.borrow() {
                            for _ in 0..50 {
                                match TcpListener::bind(addr).await {
                                    Ok(l) => { listener = Some(l); break; }
                                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                                }
                            }
                        }
                    }
                    _ = shared.shutdown.cancelled() => return,
                }
            }
        }
    }
}

impl SimCluster {
    /// Start a cluster named `name` (the `index` picks its default load-balancer range).
    pub async fn start(
        name: &str,
        index: usize,
        opts: ClusterOptions,
    ) -> anyhow::Result<SimCluster> {
        if opts.tls {
            crate::tls::tls()?;
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the API server")?;
        let addr = listener.local_addr()?;
        let (auth, admin_token) = Auth::with_admin();
        let shared = Arc::new(Shared {
            name: name.to_string(),
            index,
            store: Store::new(opts.history_limit),
            auth,
            faults: Faults::default(),
            admin_token,
            requests: AtomicU64::new(0),
            verbs: Mutex::new(std::collections::BTreeMap::new()),
            opts,
            lb_next: Mutex::new(0),
            shutdown: CancellationToken::new(),
            remote_sync_running: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(accept_loop(shared.clone(), Some(listener), addr));
        crate::controllers::spawn(shared.clone());
        let dataplane = crate::dataplane::start(shared.clone())
            .await
            .context("starting the telemetry listener")?;
        Ok(SimCluster {
            shared,
            addr,
            dataplane,
        })
    }

    /// The cluster's name (also its kubeconfig context, cluster and user prefix).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Where the API server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:<port>` (or `http://` when TLS is off).
    pub fn url(&self) -> String {
        let scheme = if self.shared.opts.tls {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// PEM of the CA the API server's certificate chains to (when TLS is on).
    pub fn ca_pem(&self) -> Option<String> {
        self.shared
            .opts
            .tls
            .then(|| crate::tls::tls().ok().map(|t| t.ca_pem.clone()))
            .flatten()
    }

    /// The admin bearer token.
    pub fn token(&self) -> &str {
        &self.shared.admin_token
    }

    /// A kubeconfig that reaches this cluster as admin.
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_yaml_for(&format!("{}-admin", self.name()), self.token())
    }

    /// A kubeconfig that reaches this cluster with `token` as user `user`.
    pub fn kubeconfig_yaml_for(&self, user: &str, token: &str) -> String {
        kubeconfig_yaml(
            self.name(),
            &self.url(),
            self.ca_pem().as_deref(),
            user,
            token,
        )
    }

    /// The admin kubeconfig, parsed.
    pub fn kubeconfig(&self) -> kube::config::Kubeconfig {
        kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml())
            .expect("invariant: generated kubeconfig parses")
    }

    /// A `kube::Client` for this cluster as admin, built through the ordinary kubeconfig path.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        client_from_kubeconfig(self.kubeconfig()).await
    }

    /// The simulated data plane: sample app, `/metrics`, Jaeger query API.
    pub fn dataplane(&self) -> &crate::dataplane::DataPlaneHandle {
        &self.dataplane
    }

    /// The cluster's run-time faults.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// The cluster's token table (issue or revoke tokens).
    pub fn auth(&self) -> &Auth {
        &self.shared.auth
    }

    /// Revoke a bearer token (including the admin token): later requests with it get 401.
    pub fn revoke_token(&self, token: &str) -> bool {
        self.shared.auth.revoke(token)
    }

    /// In-process access to the object store (for assertions and fixtures).
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Requests served so far.
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Requests served so far by Kubernetes verb (`discovery`, `get`, `list`, `watch`,
    /// `create`, `update`, `patch`, `delete`).
    pub fn requests_by_verb(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.shared
            .verbs
            .lock()
            .map(|verbs| verbs.clone())
            .unwrap_or_default()
    }

    /// Stop the listener and the controllers.
    pub fn stop(&self) {
        self.shared.shutdown.cancel();
    }
}

/// A kubeconfig document for one cluster and one token user.
pub fn kubeconfig_yaml(
    name: &str,
    server: &str,
    ca_pem: Option<&str>,
    user: &str,
    token: &str,
) -> String {
    use base64::Engine as _;
    let ca = ca_pem
        .map(|p| {
            format!(
                "    certificate-authority-data: {}\n",
                base64::engine::general_purpose::STANDARD.encode(p)
            )
        })
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\n{ca}contexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {user}\n    namespace: default\ncurrent-context: {name}\nusers:\n- name: {user}\n  user:\n    token: {token}\npreferences: {{}}\n"
    )
}

/// A `kube::Client` from a kubeconfig (its current context).
pub async fn client_from_kubeconfig(kc: kube::config::Kubeconfig) -> anyhow::Result<kube::Client> {
    install_crypto_provider();
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("kubeconfig to client config")?;
    kube::Client::try_from(config).context("building kube client")
}

/// Make sure rustls has a process-wide crypto provider (kube's TLS stack needs one even for
/// plain-HTTP clusters). Installing twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
