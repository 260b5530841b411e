//! The standalone simulator behind `meshd sim --clusters N`.
//!
//! Starts a world, writes `<out>/<cluster>.kubeconfig` for each cluster, prints where each
//! listens and runs until ctrl-c (or until the optional run time ends).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::world::World;

/// Options of the standalone simulator.
#[derive(Debug, Clone)]
pub struct StandaloneOptions {
    /// Number of clusters.
    pub clusters: usize,
    /// Directory for the kubeconfig files (created if missing).
    pub out_dir: PathBuf,
    /// Cluster name prefix (`cluster-` gives `cluster-1`, ...).
    pub name_prefix: String,
    /// Deployment readiness delay.
    pub deploy_ready_delay: Duration,
    /// Stop after this long instead of waiting for ctrl-c (for scripts and tests).
    pub run_for: Option<Duration>,
}

impl Default for StandaloneOptions {
    fn default() -> Self {
        StandaloneOptions {
            clusters: 1,
            out_dir: PathBuf::from("."),
            name_prefix: "cluster-".into(),
            deploy_ready_delay: Duration::from_secs(2),
            run_for: None,
        }
    }
}

/// Run simulated clusters until ctrl-c: writes one kubeconfig per cluster into `opts.out_dir`
/// and prints each cluster's name, URL and kubeconfig path on stdout.
pub async fn run_standalone(opts: StandaloneOptions) -> anyhow::Result<()> {
    let world = World::builder()
        .clusters(opts.clusters)
        .name_prefix(&opts.name_prefix)
        .deploy_ready_delay(opts.deploy_ready_delay)
        .start()
        .await
        .context("starting simulated clusters")?;
    let paths = world.write_kubeconfigs(&opts.out_dir)?;
    for (c, p) in world.clusters().iter().zip(&paths) {
        println!("{}\t{}\t{}", c.name(), c.url(), p.display());
    }
    println!(
        "{} simulated cluster(s) running; press ctrl-c to stop",
        world.clusters().len()
    );
    match opts.run_for {
        Some(d) => tokio::time::sleep(d).await,
        None => tokio::signal::ctrl_c()
            .await
            .context("waiting for ctrl-c")?,
    }
    world.stop();
    Ok(())
}
