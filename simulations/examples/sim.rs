//! Run simulated clusters standalone: `cargo run -p mesh-sim --example sim -- [N] [OUT_DIR]`.
//! (`meshd sim --clusters N --out DIR` calls the same entry point.)

use std::path::PathBuf;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let clusters = args.next().and_then(|n| n.parse().ok()).unwrap_or(2);
    let out_dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    mesh_sim::run_standalone(mesh_sim::StandaloneOptions {
        clusters,
        out_dir,
        ..Default::default()
    })
    .await
}
