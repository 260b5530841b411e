//! Several `meshd worker` processes share the command partitions: killed with SIGKILL over and over
//! while meshes are created, changed and deleted, they lose nothing and apply nothing twice.
//!
//! Real processes, a real NATS JetStream server (leases in its key-value store), a real MariaDB,
//! simulated clusters over HTTP.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_bus::command::{ClusterSpec, CreateMesh, DeleteMesh, SamplingPercent, SetTraceSampling};
use mesh_bus::{Bus, BusConfig, CommandEnvelope, NatsBus};
use mesh_core::{ClusterName, ClusterRole, MeshMode, MeshName, TenantId};
use mesh_schema::store::cluster::RegisterCluster;
use mesh_schema::{DatabaseTarget, SecretBox, SecretKey, Store, TenantScope};

/// Flow slots each worker of the chaos test is given (`MESHD_MAX_CONCURRENT_FLOWS`), which
/// `meshd workers` must report.
const WORKER_FLOW_SLOTS: u32 = 48;

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");

thread_local! {
    /// Where the worker logs are, for failure messages.
    static LOGS_DIR: std::cell::RefCell<Option<std::path::PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// One `meshd worker` process.
struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    fn spawn(
        name: &str,
        database: &str,
        nats: &str,
        root: &str,
        key: &std::path::Path,
        log: &std::path::Path,
    ) -> Self {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(MESHD)
            .args([
                "worker",
                "--worker-id",
                name,
                "--lease-ttl",
                "2s",
                "--ack-wait",
                "3s",
            ])
            .args(["--database-url", database, "--nats-url", nats])
            .args(["--secret-key-file", key.to_str().unwrap()])
            .env("MESHD_BUS__ROOT", root)
            .env("MESHD_LOG", "info")
            .env("MESHD_MAX_CONCURRENT_FLOWS", WORKER_FLOW_SLOTS.to_string())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { child }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
        false
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn command(mesh: &str, body: impl Into<mesh_bus::Command>) -> CommandEnvelope {
    CommandEnvelope::command(tenant(), MeshName::new(mesh).unwrap(), "chaos", body).unwrap()
}

fn worker_logs(dir: &std::path::Path) -> String {
    let mut logs: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    logs.sort();
    logs.into_iter()
        .map(|(name, text)| format!("== {name}\n{text}"))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(()) => return,
            Err(state) if Instant::now() > deadline => {
                let logs =
                    LOGS_DIR.with(|d| d.borrow().as_deref().map(worker_logs).unwrap_or_default());
                panic!("{what} did not happen in time: {state}\n{logs}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[actix_rt::test]
async fn killed_workers_lose_nothing_and_apply_nothing_twice() {
    let cycles: usize = std::env::var("MESH_CHAOS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let nats = mesh_testkit::nats::NatsServer::start();
    let database = mesh_testkit::mariadb::TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    LOGS_DIR.with(|d| *d.borrow_mut() = Some(dir.path().to_owned()));
    let key_path = dir.path().join("meshd.key");
    let key = SecretKey::generate();
    key.write_new(&key_path).unwrap();
    let store = Store::open(
        DatabaseTarget::parse(&database.url()).unwrap(),
        SecretBox::new(&key),
        4,
        true,
    )
    .await
    .unwrap();
    let world = mesh_sim::World::builder()
        .clusters(6)
        .deploy_ready_delay(Duration::from_millis(20))
        .remote_sync_interval(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    for cluster in world.clusters() {
        store
            .register_cluster(RegisterCluster {
                tenant_id: "acme".into(),
                name: cluster.name().into(),
                region: "sim".into(),
                server: cluster.url(),
                auth_kind: "token".into(),
                kubeconfig: cluster.kubeconfig_yaml(),
                status: "Reachable".into(),
                status_message: String::new(),
            })
            .await
            .unwrap();
    }
    let root = mesh_testkit::nats::unique_root();
    let bus = Arc::new(
        NatsBus::connect(nats.url(), BusConfig::with_root(root.clone()))
            .await
            .unwrap(),
    );
    let spawn = |index: usize, generation: usize| {
        WorkerProcess::spawn(
            &format!("w{index}-{generation}"),
            &database.url(),
            nats.url(),
            &root,
            &key_path,
            &dir.path().join(format!("w{index}-{generation}.log")),
        )
    };
    let mut workers: Vec<WorkerProcess> = (0..3).map(|i| spawn(i, 0)).collect();

    // One single-cluster mesh per simulated cluster.
    let meshes: Vec<String> = (0..world.clusters().len())
        .map(|i| format!("chaos-{i}"))
        .collect();
    for (mesh, cluster) in meshes.iter().zip(world.clusters()) {
        let create = CreateMesh {
            title: mesh.clone(),
            region: "sim".into(),
            version: "1.30.3".into(),
            mode: MeshMode::Single,
            clusters: vec![ClusterSpec {
                name: ClusterName::new(cluster.name()).unwrap(),
                role: ClusterRole::Master,
                network: "net".into(),
            }],
            config: serde_json::json!({}),
        };
        bus.publish_command(&command(mesh, create)).await.unwrap();
    }

    // Chaos: every cycle, change sampling on every mesh and SIGKILL a worker, then restart it.
    let mut published = 0;
    let mut rng_state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next_random = move |bound: usize| {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        usize::try_from(rng_state % bound as u64).unwrap_or(0)
    };
    for cycle in 0..cycles {
        for (i, mesh) in meshes.iter().enumerate() {
            let percent = SamplingPercent::new(((cycle * 7 + i) % 100) as f64).unwrap();
            // A publish whose acknowledgement times out under load is sent again with the same
            // id, as a client should: JetStream's duplicate window keeps it single.
            let sampling = command(mesh, SetTraceSampling { percent });
            let mut attempt = 0;
            while let Err(error) = bus.publish_command(&sampling).await {
                attempt += 1;
                assert!(attempt < 5, "publish failed {attempt} times: {error}");
            }
            published += 1;
        }
        let victim = next_random(workers.len());
        workers[victim].kill9();
        tokio::time::sleep(Duration::from_millis(700)).await;
        workers[victim] = spawn(victim, cycle + 1);
        tokio::time::sleep(Duration::from_millis(800)).await;
    }

    // Every command reaches an outcome, every flow ends, every mesh its desired state.
    // First, every mesh must exist (or be deleted after existing): the creates were carried out.
    wait_until(
        "every create to be carried out",
        Duration::from_secs(120),
        || {
            let store = store.clone();
            let meshes = meshes.clone();
            async move {
                for mesh in &meshes {
                    let commands = store
                        .list_commands(mesh, 1000)
                        .await
                        .map_err(|e| e.to_string())?;
                    if !commands.iter().any(|c| c.kind == "CreateMesh") {
                        return Err(format!("the create of {mesh} was not received yet"));
                    }
                }
                Ok(())
            }
        },
    )
    .await;
    wait_until("every flow to end", Duration::from_secs(180), || {
        let store = store.clone();
        let meshes = meshes.clone();
        async move {
            for mesh in &meshes {
                for flow in store
                    .list_flows(mesh, 1000)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    if matches!(flow.status.as_str(), "Pending" | "Running") {
                        return Err(format!("flow {} of {mesh} is {}", flow.id, flow.status));
                    }
                }
                let commands = store
                    .list_commands(mesh, 1000)
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some(open) = commands.iter().find(|c| c.status == "Accepted") {
                    return Err(format!(
                        "command {} of {mesh} is still open",
                        open.command_id
                    ));
                }
            }
            Ok(())
        }
    })
    .await;
    // Delete half of the meshes, each once it is idle (a busy mesh rejects a delete, as it should).
    for mesh in meshes.iter().step_by(2) {
        wait_until(
            "the mesh to accept its delete",
            Duration::from_secs(120),
            || {
                let bus = Arc::clone(&bus);
                let store = store.clone();
                let mesh = mesh.clone();
                async move {
                    let delete = command(&mesh, DeleteMesh {});
                    bus.publish_command(&delete)
                        .await
                        .map_err(|e| e.to_string())?;
                    let id = delete.id.to_string();
                    for _ in 0..100 {
                        if let Some(record) =
                            store.get_command(&id).await.map_err(|e| e.to_string())?
                        {
                            if record.flow_id.is_some() {
                                return Ok(());
                            }
                            if record.status == "Rejected" {
                                return Err(format!(
                                    "delete of {mesh} rejected: {:?}",
                                    record.result
                                ));
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(format!("delete of {mesh} not handled yet"))
                }
            },
        )
        .await;
    }
    wait_until("every flow to end", Duration::from_secs(180), || {
        let store = store.clone();
        let meshes = meshes.clone();
        async move {
            for mesh in &meshes {
                for flow in store
                    .list_flows(mesh, 1000)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    if matches!(flow.status.as_str(), "Pending" | "Running") {
                        return Err(format!("flow {} of {mesh} is {}", flow.id, flow.status));
                    }
                }
                let commands = store
                    .list_commands(mesh, 1000)
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some(open) = commands.iter().find(|c| c.status == "Accepted") {
                    return Err(format!(
                        "command {} of {mesh} is still open",
                        open.command_id
                    ));
                }
            }
            Ok(())
        }
    })
    .await;

    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for (i, mesh) in meshes.iter().enumerate() {
        let commands = store.list_commands(mesh, 1000).await.unwrap();
        let flows = store.list_flows(mesh, 1000).await.unwrap();
        for c in &commands {
            *outcomes.entry(c.status.clone()).or_default() += 1;
        }
        // Exactly one effect per accepted command: one flow each, and no flow without a command.
        let accepted: Vec<_> = commands.iter().filter(|c| c.flow_id.is_some()).collect();
        assert_eq!(
            accepted.len(),
            flows.len(),
            "{mesh}: flows and accepted commands match one to one"
        );
        for c in &accepted {
            assert_eq!(
                flows.iter().filter(|f| Some(f.id) == c.flow_id).count(),
                1,
                "{mesh}: command {}",
                c.command_id
            );
        }
        for flow in &flows {
            assert_eq!(
                flow.status, "Succeeded",
                "{mesh}: flow {} ({}) ended {}: {:?}",
                flow.id, flow.def_name, flow.status, flow.log
            );
        }
        // No event missing: every flow's start and end are in the mesh's history.
        let events = store.list_events(mesh, 0, 100_000).await.unwrap();
        for flow in &flows {
            for kind in ["FlowStarted", "FlowFinished"] {
                assert!(
                    events
                        .iter()
                        .any(|e| e.kind == kind && e.flow_id == Some(flow.id)),
                    "{mesh}: {kind} of flow {} missing",
                    flow.id
                );
            }
        }
        let row = store.get_mesh(&TenantScope::All, mesh).await.unwrap();
        if row.is_none() && i % 2 == 1 {
            panic!(
                "{mesh} is missing; commands {commands:?}; logs:\n{}",
                worker_logs(dir.path())
            );
        }
        if i % 2 == 0 {
            assert!(row.is_none(), "{mesh} was deleted");
        } else {
            assert_eq!(row.unwrap().status, "Running", "{mesh}");
        }
    }
    eprintln!("chaos: {cycles} kill cycles, {published} sampling commands; outcomes {outcomes:?}");
    assert!(
        outcomes.get("Succeeded").copied().unwrap_or(0) >= meshes.len(),
        "{outcomes:?}"
    );

    // `meshd workers` reports who owns what; after any rebalancing every partition has an owner.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = Command::new(MESHD)
            .args(["workers", "--json", "--nats-url", nats.url()])
            .env("MESHD_BUS__ROOT", &root)
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
        let report: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        let owned = report["partitions"].as_array().unwrap().len();
        let workers = report["workers"].as_array().unwrap().len();
        if owned == 32 && workers >= 3 {
            // Each worker reports its flow slots: the configured number, none beyond it in use.
            for worker in report["workers"].as_array().unwrap() {
                let flows = &worker["flows"];
                assert_eq!(flows["slots"], WORKER_FLOW_SLOTS, "{report}");
                assert!(
                    flows["running"].as_u64().unwrap() <= WORKER_FLOW_SLOTS as u64,
                    "{report}"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "partitions never all owned: {report}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    let table = Command::new(MESHD)
        .args(["workers", "--nats-url", nats.url()])
        .env("MESHD_BUS__ROOT", &root)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("FLOWS (RUN/SLOTS)"), "{table}");
    assert!(
        table.contains(&format!("/{WORKER_FLOW_SLOTS}")),
        "each worker's row shows its slots: {table}"
    );

    // A clean stop hands partitions over and exits 0.
    for worker in &mut workers {
        assert!(worker.terminate(), "SIGTERM ends a worker cleanly");
    }
    drop(world);
}
