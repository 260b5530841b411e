//! Benchmark of horizontal scaling and failover, with the raw limits measured in the same run.
//!
//! Prints:
//! - the raw limits: a JetStream publish → consume → ack loop, and a single-row MariaDB commit loop;
//! - end-to-end throughput of a light command (`SetTraceSampling` on single-cluster meshes whose
//!   simulated clusters answer at once), publish to committed effect (`FlowFinished`), with 1, 2
//!   and 3 workers; then the same with 20 ms of simulated API latency (I/O-bound), by 1 and 2
//!   workers of a few flow slots each (fewer than the meshes in flight), so that one worker's
//!   slots bound the figure and a second worker's slots add to it;
//! - for one worker, when each event of a command arrives on average (where the time goes), what
//!   one light command costs in CPU time (worker, database calls, simulated clusters, MariaDB,
//!   NATS) and in MariaDB statements, and for every measurement how busy the machine's CPUs were
//!   (what bounds it on one machine);
//! - failover: from killing the owner of a partition to that partition's meshes making progress
//!   again (a command accepted), p50/p99 over the cycles, next to the lease TTL.
//!
//! Each cluster client's request rate limit is raised far above its default (20 per second), so
//! the figures are the control plane's, not the limit's.
//!
//! Workers are real `Worker`s with their own actix runtime each, sharing partitions through NATS
//! key-value leases; "kill" drops a worker's runtime at once, as SIGKILL would. Needs a NATS server
//! (`MESH_TEST_NATS_URL` or `.tools/py/bin/nats-server`) and MariaDB (`MESH_TEST_MYSQL_URL`).
//! Run: `cargo run --release -p mesh-actors --example worker_bench [seconds-per-measurement]`;
//! `MESH_BENCH_POOL` sets the workers' database pool size (default 16, meshd's default);
//! `MESH_DB_COMPOUND=off` has the store run every transaction statement by statement, to compare.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use futures::StreamExt;
use mesh_actors::flow::{DEFAULT_MAX_CONCURRENT_FLOWS, RunnerConfig};
use mesh_actors::{Worker, WorkerConfig};
use mesh_bus::command::{ClusterSpec, CreateMesh, SamplingPercent, SetTraceSampling};
use mesh_bus::{
    Bus, BusConfig, CommandEnvelope, Event, EventFilter, NatsBus, StartAt, partition_of,
};
use mesh_clusters::RateLimit;
use mesh_core::{ClusterName, ClusterRole, MeshMode, MeshName, TenantId, VersionCatalog};
use mesh_schema::store::cluster::RegisterCluster;
use mesh_schema::{DatabaseTarget, SecretBox, SecretKey, Store};
use support::BENCH_CLUSTER_LIMIT;

const LEASE_TTL: Duration = Duration::from_secs(2);
const MESHES: usize = 12;
/// Flow slots of each worker in the I/O-bound phase: fewer than the meshes one worker owns, so a
/// worker's slots, not the number of meshes in flight, bound its throughput (slots ÷ latency),
/// and a second worker brings its own.
const IO_FLOW_SLOTS: usize = 3;

struct ThreadWorker {
    name: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ThreadWorker {
    fn start(
        name: String,
        store: Store,
        nats_url: String,
        root: String,
        max_concurrent_flows: usize,
    ) -> Self {
        let label = name.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, is_ready) = std::sync::mpsc::channel();
        // Named, so that the bench can tell the worker's CPU time from the rest of the process's.
        let thread = std::thread::Builder::new()
            .name(format!("{name}-actors"))
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let nats = NatsBus::connect(&nats_url, BusConfig::with_root(root))
                        .await
                        .expect("bus");
                    let leases = Arc::new(nats.leases(LEASE_TTL).await.expect("leases"));
                    let bus: Arc<dyn Bus> = Arc::new(nats);
                    let config = WorkerConfig {
                        runner: RunnerConfig {
                            processor: name,
                            backoff: Duration::from_millis(50),
                            max_concurrent_flows,
                            ..RunnerConfig::default()
                        },
                        cluster_rate_limit: BENCH_CLUSTER_LIMIT,
                        ..WorkerConfig::default()
                    };
                    let _worker = Worker::start_with_leases(
                        config,
                        store,
                        bus,
                        leases,
                        Arc::new(VersionCatalog::builtin()),
                    )
                    .await
                    .expect("worker");
                    let _ = ready.send(());
                    let _ = stopped.await;
                });
            })
            .expect("a thread for the worker");
        let _ = is_ready.recv();
        Self {
            name: label,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn kill(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn tenant() -> TenantId {
    TenantId::new("bench").expect("valid")
}

fn sampling(mesh: &str, percent: f64) -> anyhow::Result<CommandEnvelope> {
    Ok(CommandEnvelope::command(
        tenant(),
        MeshName::new(mesh)?,
        "bench",
        SetTraceSampling {
            percent: SamplingPercent::new(percent)?,
        },
    )?)
}

/// Raw JetStream: publish `n` messages (each acknowledged by the server), consume and ack them.
async fn raw_jetstream(url: &str, n: usize) -> anyhow::Result<f64> {
    let root = mesh_testkit::nats::unique_root();
    let bus = NatsBus::connect(url, BusConfig::with_root(root)).await?;
    let command = sampling("raw", 1.0)?;
    let partition = partition_of(&command.tenant, &command.mesh, bus.subjects().partitions());
    let mut deliveries = bus.consume_commands(&[partition]).await?;
    let started = Instant::now();
    for i in 0..n {
        let mut envelope = sampling("raw", (i % 100) as f64)?;
        envelope.id = uuid_v7();
        bus.publish_command(&envelope).await?;
        let delivery = deliveries
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("stream ended"))??;
        delivery.ack().await?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

fn uuid_v7() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

/// Raw MariaDB: one single-row INSERT per committed transaction. Returns the commits per second
/// and, where `/proc` tells it, MariaDB's CPU milliseconds per commit.
fn raw_mariadb(url: &str, seconds: f64) -> anyhow::Result<(f64, Option<f64>)> {
    use diesel::Connection;
    let mut conn = diesel::mysql::MysqlConnection::establish(url)?;
    conn.batch_execute("CREATE TABLE bench_commit (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64)) ENGINE=InnoDB")?;
    let mariadb_ticks = || mariadb_pid().and_then(process_ticks);
    let ticks_before = mariadb_ticks();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        conn.batch_execute("BEGIN; INSERT INTO bench_commit (v) VALUES ('x'); COMMIT;")?;
        n += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_ms_per_commit = ticks_before
        .zip(mariadb_ticks())
        .map(|(before, after)| after.saturating_sub(before) as f64 * MS_PER_TICK / n.max(1) as f64);
    conn.batch_execute("DROP TABLE bench_commit")?;
    Ok((n as f64 / elapsed, cpu_ms_per_commit))
}

/// CPU time so far of the processes a command goes through, in clock ticks: this process by thread
/// name (worker actors, the blocking pool running database calls, simulated clusters, the bench's
/// own publishing), MariaDB and NATS; and MariaDB's statement counters (Linux only for CPU).
#[derive(Default)]
struct CostSnapshot {
    ticks: BTreeMap<String, u64>,
    statements: BTreeMap<String, u64>,
}

/// Milliseconds of CPU time in one clock tick of `/proc` (USER_HZ, 100 per second on Linux).
const MS_PER_TICK: f64 = 10.0;

/// utime + stime of process `pid` so far, in clock ticks.
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::path::Path::new("/proc")
        .join(pid.to_string())
        .join("stat");
    stat_ticks(&stat).map(|(_, ticks)| ticks)
}

/// utime + stime of one `/proc/.../stat` file, with the thread or process name it gives.
fn stat_ticks(path: &std::path::Path) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    // After the name: state is field 3 of the man page, utime 14 and stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, utime + stime))
}

/// The id of the running MariaDB server, found by its process name.
fn mariadb_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            matches!(comm.trim(), "mariadbd" | "mysqld").then_some(pid)
        })
}

/// Groups a thread name: worker threads are `w<N>-actors`; tokio's blocking pool, which runs the
/// database calls, names its threads `tokio-rt-worker` or `tokio-runtime-w` (by tokio version).
fn thread_group(name: &str) -> String {
    if name.ends_with("-actors") {
        "worker actors".into()
    } else if name.starts_with("tokio-r") {
        "database calls (blocking pool)".into()
    } else if name.starts_with("sim-clusters") {
        "simulated clusters".into()
    } else {
        "bench client and other".into()
    }
}

/// MariaDB's server-wide statement counters read around a measurement (the bench assumes nothing
/// else uses the server meanwhile, as it assumes for the CPU time of MariaDB's process).
const STATEMENT_COUNTERS: [&str; 9] = [
    "Questions",
    "Com_select",
    "Com_insert",
    "Com_update",
    "Com_commit",
    "Com_delete",
    "Com_stmt_prepare",
    "Com_stmt_execute",
    "Com_stmt_close",
];

/// Reads the CPU times and statement counters now; what cannot be read is left out (and then
/// missing from the printed cost), so the bench still runs off Linux.
fn cost_snapshot(
    status: &mut diesel::mysql::MysqlConnection,
    nats_pid: Option<u32>,
) -> CostSnapshot {
    let mut snapshot = CostSnapshot::default();
    if let Ok(threads) = std::fs::read_dir("/proc/self/task") {
        for thread in threads.flatten() {
            if let Some((name, ticks)) = stat_ticks(&thread.path().join("stat")) {
                *snapshot.ticks.entry(thread_group(&name)).or_default() += ticks;
            }
        }
    }
    for (label, pid) in [("MariaDB", mariadb_pid()), ("NATS", nats_pid)] {
        if let Some(ticks) = pid.and_then(process_ticks) {
            snapshot.ticks.insert(label.into(), ticks);
        }
    }
    #[derive(diesel::QueryableByName)]
    struct StatusRow {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "Variable_name")]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "Value")]
        value: String,
    }
    use diesel::RunQueryDsl;
    let query = format!(
        "SHOW GLOBAL STATUS WHERE Variable_name IN ({})",
        STATEMENT_COUNTERS.map(|c| format!("'{c}'")).join(",")
    );
    if let Ok(rows) = diesel::sql_query(query).load::<StatusRow>(status) {
        for row in rows {
            if let Ok(value) = row.value.parse() {
                snapshot.statements.insert(row.name, value);
            }
        }
    }
    snapshot
}

/// CPU milliseconds and statements per command between two snapshots, as two lines.
fn cost_lines(before: &CostSnapshot, after: &CostSnapshot, commands: u64) -> String {
    if commands == 0 {
        return String::new();
    }
    let per_command = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / commands as f64;
    let mut cpu: Vec<(String, f64)> = after
        .ticks
        .iter()
        .map(|(group, ticks)| {
            let earlier = before.ticks.get(group).copied().unwrap_or(0);
            (group.clone(), per_command(*ticks, earlier) * MS_PER_TICK)
        })
        .collect();
    cpu.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = cpu.iter().map(|(_, ms)| ms).sum();
    let statements = STATEMENT_COUNTERS
        .iter()
        .filter_map(|counter| {
            let a = after.statements.get(*counter)?;
            let b = before.statements.get(*counter).copied().unwrap_or(0);
            Some(format!("{counter} {:.1}", per_command(*a, b)))
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "  CPU per command: {total:.2} ms ({})\n  MariaDB statements per command: {statements}",
        cpu.iter()
            .map(|(group, ms)| format!("{group} {ms:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// What one measurement saw: completed flows per second, and when each kind of event of a command
/// arrived on average, in milliseconds after the command was published.
struct Measured {
    rate: f64,
    stages: Vec<(String, f64)>,
    /// Share of the machine's CPU time that was busy during the measurement (Linux), in percent.
    cpu_busy: Option<f64>,
    /// Completed commands, and the cost snapshots around them.
    done: u64,
    cost: (CostSnapshot, CostSnapshot),
}

/// The machine's CPU time so far as (busy, total) clock ticks, from `/proc/stat` (Linux only).
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().sum();
    // idle and iowait are the 4th and 5th fields.
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

impl Measured {
    /// ", machine CPU busy N%" when it is known.
    fn cpu_note(&self) -> String {
        self.cpu_busy
            .map(|busy| format!(", machine CPU {busy:.0}% busy"))
            .unwrap_or_default()
    }

    /// The stages in the order they happen, as one line.
    fn stages_line(&self) -> String {
        let mut stages = self.stages.clone();
        stages.sort_by(|a, b| a.1.total_cmp(&b.1));
        stages
            .iter()
            .map(|(kind, ms)| format!("{kind} {ms:.1} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Keeps one sampling command in flight per mesh for `seconds`.
async fn throughput(
    bus: &NatsBus,
    meshes: &[String],
    seconds: f64,
    status: &mut diesel::mysql::MysqlConnection,
    nats_pid: Option<u32>,
) -> anyhow::Result<Measured> {
    let mut events = bus
        .subscribe_events(EventFilter::Tenant(tenant()), StartAt::New)
        .await?;
    let mut in_flight: BTreeMap<String, uuid::Uuid> = BTreeMap::new();
    let mut sent_at: BTreeMap<String, Instant> = BTreeMap::new();
    let mut stages: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    let mut percent = 0.0;
    for mesh in meshes {
        let command = sampling(mesh, percent)?;
        in_flight.insert(mesh.clone(), command.correlation_id);
        sent_at.insert(mesh.clone(), Instant::now());
        bus.publish_command(&command).await?;
    }
    let started = Instant::now();
    let cpu_before = cpu_ticks();
    let cost_before = cost_snapshot(status, nats_pid);
    let mut done = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(seconds);
    loop {
        let next = tokio::time::timeout_at(deadline, events.next()).await;
        let Ok(Some(record)) = next else { break };
        let envelope = record?.envelope;
        let finished = matches!(
            envelope.body,
            Event::FlowFinished(_) | Event::CommandRejected(_)
        );
        let mesh = envelope.mesh.to_string();
        let current = in_flight.get(&mesh) == Some(&envelope.correlation_id);
        if let Some(sent) = sent_at.get(&mesh).filter(|_| current) {
            let stage = stages.entry(envelope.kind().to_owned()).or_default();
            stage.0 += sent.elapsed().as_secs_f64() * 1000.0;
            stage.1 += 1;
        }
        if finished && current {
            if matches!(envelope.body, Event::FlowFinished(_)) {
                done += 1;
            }
            percent = (percent + 1.0) % 100.0;
            let command = sampling(&mesh, percent)?;
            in_flight.insert(mesh.clone(), command.correlation_id);
            sent_at.insert(mesh, Instant::now());
            bus.publish_command(&command).await?;
        }
    }
    let rate = done as f64 / started.elapsed().as_secs_f64();
    let cost_after = cost_snapshot(status, nats_pid);
    let cpu_busy = match (cpu_before, cpu_ticks()) {
        (Some((busy0, total0)), Some((busy1, total1))) if total1 > total0 => {
            Some(100.0 * (busy1 - busy0) as f64 / (total1 - total0) as f64)
        }
        _ => None,
    };
    // Let the last commands drain before the next measurement.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(Measured {
        rate,
        stages: stages
            .into_iter()
            .map(|(kind, (total, count))| (kind, total / count as f64))
            .collect(),
        cpu_busy,
        done,
        cost: (cost_before, cost_after),
    })
}

#[actix_rt::main]
async fn main() -> anyhow::Result<()> {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(8.0);
    let nats = mesh_testkit::nats::NatsServer::start();
    let database = mesh_testkit::mariadb::TestDatabase::create();
    let store = Store::open(
        DatabaseTarget::parse(&database.url())?,
        SecretBox::new(&SecretKey::generate()),
        std::env::var("MESH_BENCH_POOL")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(16),
        true,
    )
    .await?;

    // A connection of its own for reading MariaDB's statement counters between measurements.
    let mut status = {
        use diesel::Connection;
        diesel::mysql::MysqlConnection::establish(&database.url())?
    };
    let raw_js = raw_jetstream(nats.url(), 2000).await?;
    let db_url = database.url();
    let (raw_db, raw_db_cpu) =
        tokio::task::spawn_blocking(move || raw_mariadb(&db_url, 3.0)).await??;
    let raw_db_cpu = raw_db_cpu
        .map(|ms| format!(" (MariaDB CPU {ms:.3} ms per commit)"))
        .unwrap_or_default();
    println!(
        "raw limits: JetStream publish→consume→ack {raw_js:.0} msg/s; MariaDB single-row commit {raw_db:.0} commits/s{raw_db_cpu}"
    );
    println!(
        "(cluster clients limited to {:.0} requests/s each for the bench; the default is {:.0})",
        BENCH_CLUSTER_LIMIT.qps,
        RateLimit::default().qps
    );

    // The simulated clusters get a runtime and threads of their own: they stand for other
    // machines, and on the bench's own thread their work would be counted against the workers.
    let sim_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sim-clusters")
        .enable_all()
        .build()?;
    let world = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                sim_runtime.block_on(
                    mesh_sim::World::builder()
                        .clusters(MESHES)
                        .deploy_ready_delay(Duration::ZERO)
                        // Single-cluster meshes have no remotes to sync.
                        .remote_sync_interval(Duration::from_secs(5))
                        .start(),
                )
            })
            .join()
    })
    .map_err(|_| anyhow::anyhow!("the simulated clusters did not start"))??;
    let mut meshes = Vec::new();
    for (i, cluster) in world.clusters().iter().enumerate() {
        store
            .register_cluster(RegisterCluster {
                tenant_id: "bench".into(),
                name: cluster.name().into(),
                region: "sim".into(),
                server: cluster.url(),
                auth_kind: "token".into(),
                kubeconfig: cluster.kubeconfig_yaml(),
                status: "Reachable".into(),
                status_message: String::new(),
            })
            .await?;
        meshes.push(format!("bench-{i}"));
    }
    let root = mesh_testkit::nats::unique_root();
    let bus = NatsBus::connect(nats.url(), BusConfig::with_root(root.clone())).await?;
    let mut workers = vec![ThreadWorker::start(
        "w1".into(),
        store.clone(),
        nats.url().into(),
        root.clone(),
        DEFAULT_MAX_CONCURRENT_FLOWS,
    )];
    // Create the meshes and wait until they run.
    let mut events = bus
        .subscribe_events(EventFilter::Tenant(tenant()), StartAt::New)
        .await?;
    for (mesh, cluster) in meshes.iter().zip(world.clusters()) {
        let create = CreateMesh {
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
        };
        bus.publish_command(&CommandEnvelope::command(
            tenant(),
            MeshName::new(mesh.as_str())?,
            "bench",
            create,
        )?)
        .await?;
    }
    let mut running = 0;
    while running < meshes.len() {
        let record = events
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("event stream ended"))??;
        if matches!(record.envelope.body, Event::FlowFinished(_)) {
            running += 1;
        }
    }
    drop(events);

    for count in 1..=3 {
        while workers.len() < count {
            let name = format!("w{}", workers.len() + 1);
            workers.push(ThreadWorker::start(
                name,
                store.clone(),
                nats.url().into(),
                root.clone(),
                DEFAULT_MAX_CONCURRENT_FLOWS,
            ));
        }
        // Let the new worker take its share (one lease period).
        tokio::time::sleep(LEASE_TTL * 2).await;
        let compound_before = store.compound_outcomes();
        let measured = throughput(&bus, &meshes, seconds, &mut status, nats.pid()).await?;
        let compound_after = store.compound_outcomes();
        println!(
            "light command end to end, {count} worker(s): {:.1} commands/s ({:.1}% of the lower raw limit{})",
            measured.rate,
            100.0 * measured.rate / raw_js.min(raw_db),
            measured.cpu_note()
        );
        if count == 1 {
            println!("  events after publish: {}", measured.stages_line());
            println!(
                "{}",
                cost_lines(&measured.cost.0, &measured.cost.1, measured.done)
            );
            println!(
                "  transactions as one compound statement: {}",
                if store.compound_transactions() {
                    format!(
                        "{} committed, {} declined (and run statement by statement)",
                        compound_after.0 - compound_before.0,
                        compound_after.1 - compound_before.1
                    )
                } else {
                    "off (MESH_DB_COMPOUND=off, or a server without them)".to_owned()
                }
            );
        }
    }
    for cluster in world.clusters() {
        cluster.faults().set_latency(Duration::from_millis(20));
    }
    // Workers with few slots each: the figure then shows whether a second worker adds capacity.
    for worker in workers.drain(..) {
        worker.kill();
    }
    let mut io_rates = Vec::new();
    for count in [1usize, 2] {
        workers.push(ThreadWorker::start(
            format!("io{count}"),
            store.clone(),
            nats.url().into(),
            root.clone(),
            IO_FLOW_SLOTS,
        ));
        // The killed workers' leases expire, then the new ones share the partitions.
        tokio::time::sleep(LEASE_TTL * 3).await;
        let measured = throughput(&bus, &meshes, seconds, &mut status, nats.pid()).await?;
        println!(
            "I/O-bound command (20 ms API latency), {count} worker(s) of {IO_FLOW_SLOTS} flow slots, {} meshes: {:.1} commands/s{}",
            meshes.len(),
            measured.rate,
            measured.cpu_note()
        );
        if count == 1 {
            println!("  events after publish: {}", measured.stages_line());
        }
        io_rates.push(measured.rate);
    }
    if let [one, two] = io_rates[..] {
        println!("I/O-bound scaling, 2 workers vs 1: {:.2}x", two / one);
    }
    for cluster in world.clusters() {
        cluster.faults().set_latency(Duration::ZERO);
    }

    // Failover: kill the worker owning a mesh's partition; time until that mesh accepts a command.
    let cycles = 8;
    let mut takeovers = Vec::new();
    for cycle in 0..cycles {
        while workers.len() < 2 {
            let name = format!("wf{cycle}-{}", workers.len());
            workers.push(ThreadWorker::start(
                name,
                store.clone(),
                nats.url().into(),
                root.clone(),
                DEFAULT_MAX_CONCURRENT_FLOWS,
            ));
        }
        tokio::time::sleep(LEASE_TTL * 2).await;
        let mesh = &meshes[cycle % meshes.len()];
        let partition = partition_of(
            &tenant(),
            &MeshName::new(mesh.as_str())?,
            bus.subjects().partitions(),
        );
        let leases = bus.leases(LEASE_TTL).await?;
        let owner = mesh_bus::lease::Leases::owners(&leases)
            .await?
            .into_iter()
            .find(|l| l.partition == partition)
            .map(|l| l.worker);
        let victim = owner
            .and_then(|owner| workers.iter().position(|w| w.name == owner))
            .unwrap_or(0);
        let mut events = bus
            .subscribe_events(
                EventFilter::Mesh(tenant(), MeshName::new(mesh.as_str())?),
                StartAt::New,
            )
            .await?;
        // Kill the partition's owner, then ask the mesh for progress.
        let killed_at = Instant::now();
        workers.remove(victim).kill();
        let command = sampling(mesh, (cycle as f64) + 0.5)?;
        bus.publish_command(&command).await?;
        loop {
            let record = tokio::time::timeout(Duration::from_secs(60), events.next())
                .await?
                .ok_or_else(|| anyhow::anyhow!("event stream ended"))??;
            if record.envelope.correlation_id == command.correlation_id
                && matches!(
                    record.envelope.body,
                    Event::CommandAccepted(_) | Event::CommandRejected(_)
                )
            {
                break;
            }
        }
        takeovers.push(killed_at.elapsed());
    }
    takeovers.sort();
    let p50 = takeovers[takeovers.len() / 2];
    let p99 = takeovers[((takeovers.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)];
    println!(
        "failover over {cycles} kills of the probed mesh's owner (lease TTL {:.0} s): p50 {:.2} s, p99 {:.2} s",
        LEASE_TTL.as_secs_f64(),
        p50.as_secs_f64(),
        p99.as_secs_f64()
    );
    for worker in workers {
        worker.kill();
    }
    world.stop();
    sim_runtime.shutdown_background();
    Ok(())
}
