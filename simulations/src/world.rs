//! A world of simulated clusters, for Rust tests, the standalone simulator and benches.
//!
//! [`World::builder`] sets the number of clusters and their behaviour; [`World::start`] is the
//! one-liner. Each cluster is a [`SimCluster`] named `<prefix><i>` (default `cluster-1`, ...).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::cluster::{ClusterOptions, SimCluster};

/// Options of a world, as a chainable builder.
#[derive(Debug, Clone)]
pub struct WorldBuilder {
    clusters: usize,
    prefix: String,
    opts: ClusterOptions,
}

impl Default for WorldBuilder {
    fn default() -> Self {
        WorldBuilder {
            clusters: 1,
            prefix: "cluster-".into(),
            opts: ClusterOptions::default(),
        }
    }
}

impl WorldBuilder {
    /// Number of clusters.
    pub fn clusters(mut self, n: usize) -> Self {
        self.clusters = n;
        self
    }

    /// Cluster name prefix (`cluster-` gives `cluster-1`, `cluster-2`, ...).
    pub fn name_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
        self
    }

    /// Delay before Deployments become ready.
    pub fn deploy_ready_delay(mut self, d: Duration) -> Self {
        self.opts.deploy_ready_delay = d;
        self
    }

    /// Interval between watch bookmarks.
    pub fn bookmark_interval(mut self, d: Duration) -> Self {
        self.opts.bookmark_interval = d;
        self
    }

    /// Number of changes each cluster retains for watches.
    pub fn history_limit(mut self, n: usize) -> Self {
        self.opts.history_limit = n;
        self
    }

    /// Load-balancer addresses handed out (the same pool for every cluster; empty: a
    /// per-cluster `127.200.<i>.<n>` range).
    pub fn lb_pool(mut self, pool: Vec<String>) -> Self {
        self.opts.lb_pool = pool;
        self
    }

    /// How often istiod re-checks remote clusters.
    pub fn remote_sync_interval(mut self, d: Duration) -> Self {
        self.opts.remote_sync_interval = d;
        self
    }

    /// Default grace before an unused old revision is removed.
    pub fn revision_grace_default(mut self, d: Duration) -> Self {
        self.opts.revision_grace_default = d;
        self
    }

    /// Serve HTTPS (default `true`; kubectl needs it).
    pub fn tls(mut self, on: bool) -> Self {
        self.opts.tls = on;
        self
    }

    /// Full cluster options.
    pub fn options(mut self, opts: ClusterOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Start every cluster.
    pub async fn start(self) -> anyhow::Result<World> {
        let mut clusters = Vec::with_capacity(self.clusters);
        for i in 1..=self.clusters {
            let name = format!("{}{i}", self.prefix);
            clusters.push(
                SimCluster::start(&name, i, self.opts.clone())
                    .await
                    .with_context(|| format!("starting {name}"))?,
            );
        }
        Ok(World { clusters })
    }
}

/// A running set of simulated clusters. Dropping it stops them.
#[derive(Debug)]
pub struct World {
    clusters: Vec<SimCluster>,
}

impl World {
    /// A builder with defaults (1 cluster, 200 ms readiness delay).
    pub fn builder() -> WorldBuilder {
        WorldBuilder::default()
    }

    /// Start `n` clusters with default options.
    pub async fn start(n: usize) -> anyhow::Result<World> {
        World::builder().clusters(n).start().await
    }

    /// Every cluster, in order.
    pub fn clusters(&self) -> &[SimCluster] {
        &self.clusters
    }

    /// The cluster at `index` (0-based).
    pub fn cluster(&self, index: usize) -> &SimCluster {
        &self.clusters[index]
    }

    /// The cluster named `name`.
    pub fn by_name(&self, name: &str) -> Option<&SimCluster> {
        self.clusters.iter().find(|c| c.name() == name)
    }

    /// Write `<dir>/<cluster>.kubeconfig` for every cluster; returns the paths.
    pub fn write_kubeconfigs(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut out = Vec::new();
        for c in &self.clusters {
            let path = dir.join(format!("{}.kubeconfig", c.name()));
            std::fs::write(&path, c.kubeconfig_yaml())
                .with_context(|| format!("writing {}", path.display()))?;
            out.push(path);
        }
        Ok(out)
    }

    /// Stop every cluster.
    pub fn stop(&self) {
        for c in &self.clusters {
            c.stop();
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop();
    }
}
