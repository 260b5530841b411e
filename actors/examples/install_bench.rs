//! Benchmark of a mesh install: a 3-cluster multi-primary mesh on simulated clusters with no
//! artificial delays, from the CreateMesh command to `Running`.
//!
//! Prints the time to `Running` (median and worst over the runs) and the Kubernetes API requests
//! each cluster served, by verb — waits are watches, so `watch` counts stay small and there are
//! no polling `get`s. Run: `cargo run --release -p mesh-actors --example install_bench [runs]`.

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use anyhow::Context;

async fn one_install(
    run: usize,
) -> anyhow::Result<(
    Duration,
    Vec<(String, std::collections::BTreeMap<&'static str, u64>)>,
)> {
    let bench = support::start(3, &format!("bench{run}-")).await?;
    let (bus, world) = (&bench.bus, &bench.world);
    let before: Vec<_> = world
        .clusters()
        .iter()
        .map(|c| c.requests_by_verb())
        .collect();
    let command = support::create_mesh(world)?;
    let started = Instant::now();
    let finished = support::run(bus, &command).await?;
    anyhow::ensure!(
        finished.outcome == mesh_bus::event::FlowOutcome::Succeeded,
        "install failed: {:?}",
        finished.detail
    );
    let elapsed = started.elapsed();
    let by_verb = world
        .clusters()
        .iter()
        .zip(before)
        .map(|(cluster, before)| {
            let mut delta = cluster.requests_by_verb();
            for (verb, count) in before {
                if let Some(now) = delta.get_mut(verb) {
                    *now -= count;
                }
            }
            (cluster.name().to_owned(), delta)
        })
        .collect();
    world.stop();
    Ok((elapsed, by_verb))
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()
        .context("runs must be a number")?
        .unwrap_or(5);
    let mut times = Vec::new();
    let mut last = Vec::new();
    for run in 0..runs.max(1) {
        let (elapsed, by_verb) = one_install(run).await?;
        times.push(elapsed);
        last = by_verb;
    }
    times.sort();
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    println!(
        "3-cluster multi-primary install, {} runs, no artificial delays",
        times.len()
    );
    println!(
        "time to Running: median {:.0} ms, worst {:.0} ms",
        median.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );
    println!("Kubernetes API requests per cluster during the last install, by verb:");
    for (cluster, verbs) in last {
        let shown: Vec<String> = verbs
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(v, n)| format!("{v}={n}"))
            .collect();
        println!("  {cluster}: {}", shown.join(" "));
    }
    Ok(())
}
