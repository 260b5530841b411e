//! Bench: 100 simulated clusters in one process; memory per cluster and API throughput for a
//! mixed get/list/apply workload through the `kube` client.
//!
//! `cargo run -p mesh-sim --release --example bench -- [CLUSTERS] [SECONDS] [WORKERS]`
//! (defaults 100, 10, 32). Clusters serve plain HTTP here so the numbers measure the API
//! server, not TLS handshakes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let clusters: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(100);
    let seconds: u64 = args.next().and_then(|v| v.parse().ok()).unwrap_or(10);
    let workers: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(32);

    // Shared, process-wide data (the parsed Istio/Sail CRDs) is loaded before the baseline.
    let before_crds = rss_kib();
    let crds = mesh_sim::resources::shipped_crds().len();
    drop(mesh_sim::store::Store::new(10));
    let base = rss_kib();
    println!(
        "shared CRD data: {crds} CRDs, {} KiB (once per process)",
        base.saturating_sub(before_crds)
    );

    let t = Instant::now();
    let world = mesh_sim::World::builder()
        .clusters(clusters)
        .tls(false)
        .start()
        .await?;
    let started = rss_kib();
    println!(
        "started {clusters} clusters in {:.2}s; RSS {} KiB -> {} KiB: {:.1} KiB per idle cluster",
        t.elapsed().as_secs_f64(),
        base,
        started,
        started.saturating_sub(base) as f64 / clusters as f64
    );

    let mut clients = Vec::new();
    for c in world.clusters() {
        let client = c.client().await?;
        let nss: Api<Namespace> = Api::all(client.clone());
        nss.patch(
            "bench",
            &PatchParams::apply("bench").force(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
            ),
        )
        .await?;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bench");
        for i in 0..20 {
            let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}"), "labels": {"app": "bench"}}, "data": {"v": "0"}});
            cms.patch(
                &format!("cm-{i}"),
                &PatchParams::apply("bench").force(),
                &Patch::Apply(&body),
            )
            .await?;
        }
        clients.push(cms);
    }
    let seeded = rss_kib();
    println!(
        "seeded 20 ConfigMaps per cluster: RSS {} KiB: {:.1} KiB per cluster (incl. its kube client)",
        seeded,
        seeded.saturating_sub(base) as f64 / clusters as f64
    );

    let clients = Arc::new(clients);
    let counts = Arc::new([
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ]);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start_requests: u64 = world.clusters().iter().map(|c| c.request_count()).sum();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (clients, counts) = (clients.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < deadline {
                let cms = &clients[i % clients.len()];
                let name = format!("cm-{}", i % 20);
                let op = i % 10;
                let ok = if op < 4 {
                    cms.get(&name).await.is_ok()
                } else if op < 7 {
                    cms.list(&ListParams::default().labels("app=bench")).await.is_ok()
                } else {
                    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "bench"}}, "data": {"v": i.to_string()}});
                    cms.patch(&name, &PatchParams::apply("bench").force(), &Patch::Apply(&body)).await.is_ok()
                };
                let slot = if !ok { 3 } else if op < 4 { 0 } else if op < 7 { 1 } else { 2 };
                counts[slot].fetch_add(1, Ordering::Relaxed);
                i += workers;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let secs = t.elapsed().as_secs_f64();
    let served: u64 = world
        .clusters()
        .iter()
        .map(|c| c.request_count())
        .sum::<u64>()
        - start_requests;
    let (g, l, a, e) = (
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
        counts[2].load(Ordering::Relaxed),
        counts[3].load(Ordering::Relaxed),
    );
    println!(
        "mixed workload, {workers} workers over {clusters} clusters for {secs:.1}s: {} requests ({g} get, {l} list of 20, {a} apply, {e} errors) = {:.0} req/s",
        served,
        served as f64 / secs
    );
    println!(
        "RSS after workload: {} KiB ({:.1} KiB per cluster)",
        rss_kib(),
        rss_kib().saturating_sub(base) as f64 / clusters as f64
    );
    Ok(())
}
