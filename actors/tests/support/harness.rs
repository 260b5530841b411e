//! A whole mesh-manager world for end-to-end actor tests: a database (MariaDB or SQLite), a bus
//! (NATS or in-process), simulated clusters registered for tenant `acme`, one worker; and helpers
//! to run a command to its end and to report what the flows did.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mesh_actors::flow::RunnerConfig;
use mesh_actors::{Worker, WorkerConfig};
use mesh_bus::command::ClusterSpec;
use mesh_bus::command::CreateMesh;
use mesh_bus::{Bus, BusConfig, CommandEnvelope, Event, EventFilter, LocalBus, NatsBus, StartAt};
use mesh_core::plan::managed_kinds;
use mesh_core::{ClusterName, ClusterRole, MeshMode, MeshName, TenantId, VersionCatalog};
use mesh_schema::Store;
use mesh_sim::World;
use mesh_testkit::mariadb::TestDatabase;

pub struct Setup {
    pub store: Store,
    pub bus: Arc<dyn Bus>,
    pub world: World,
    worker: Option<Worker>,
    _database: Option<TestDatabase>,
    _dir: tempfile::TempDir,
    _nats: Option<mesh_testkit::nats::NatsServer>,
}

pub async fn setup(clusters: usize, mariadb: bool, nats: bool) -> Setup {
    setup_with(
        clusters,
        mariadb,
        nats,
        mesh_actors::flow::DEFAULT_MAX_CONCURRENT_FLOWS,
        Duration::from_millis(50),
    )
    .await
}

/// Like [`setup`], with `max_concurrent_flows` flow slots in the worker and the simulated
/// deployments getting ready after `deploy_ready_delay`.
pub async fn setup_with(
    clusters: usize,
    mariadb: bool,
    nats: bool,
    max_concurrent_flows: usize,
    deploy_ready_delay: Duration,
) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let database = mariadb.then(TestDatabase::create);
    let url = match &database {
        Some(db) => db.url(),
        None => format!("sqlite://{}", dir.path().join("meshd.db").display()),
    };
    let store = super::open_store(&url, 8).await;
    let (bus, nats_server): (Arc<dyn Bus>, _) = if nats {
        let server = mesh_testkit::nats::NatsServer::start();
        let config = BusConfig::with_root(mesh_testkit::nats::unique_root());
        (
            Arc::new(NatsBus::connect(server.url(), config).await.unwrap()),
            Some(server),
        )
    } else {
        (Arc::new(LocalBus::new(BusConfig::default()).unwrap()), None)
    };
    let world = World::builder()
        .clusters(clusters)
        .deploy_ready_delay(deploy_ready_delay)
        .remote_sync_interval(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    super::register_world(&store, &world, "acme").await;
    let config = WorkerConfig {
        runner: RunnerConfig {
            wait_timeout: Duration::from_secs(10),
            backoff: Duration::from_millis(100),
            attempts: 40,
            heartbeat: Duration::from_millis(500),
            max_concurrent_flows,
            ..RunnerConfig::default()
        },
        ..WorkerConfig::default()
    };
    let worker = Worker::start(
        config,
        store.clone(),
        Arc::clone(&bus),
        Arc::new(VersionCatalog::builtin()),
    )
    .await
    .unwrap();
    Setup {
        store,
        bus,
        world,
        worker: Some(worker),
        _database: database,
        _dir: dir,
        _nats: nats_server,
    }
}

impl Setup {
    /// Stops the worker as SIGTERM does: current steps finish, waiting flows are left alone.
    pub async fn stop_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.shutdown().await;
        }
    }
}

pub fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}

pub fn create_command(
    mesh: &str,
    mode: MeshMode,
    members: &[(&str, ClusterRole)],
) -> CommandEnvelope {
    CommandEnvelope::command(
        tenant(),
        MeshName::new(mesh).unwrap(),
        "test",
        CreateMesh {
            title: format!("{mesh} mesh"),
            region: "sim".into(),
            version: "1.30.3".into(),
            mode,
            clusters: members
                .iter()
                .map(|(name, role)| ClusterSpec {
                    name: ClusterName::new(*name).unwrap(),
                    role: *role,
                    network: format!("net-{name}"),
                })
                .collect(),
            config: serde_json::json!({"traceSampling": 2.5}),
        },
    )
    .unwrap()
}

/// The names of the world's clusters, in order.
pub fn cluster_names(world: &World) -> Vec<String> {
    world
        .clusters()
        .iter()
        .map(|c| c.name().to_owned())
        .collect()
}

/// The command creating a multi-primary mesh whose primaries are `clusters`.
pub fn multi_primary_command(mesh: &str, clusters: &[String]) -> CommandEnvelope {
    let members: Vec<(&str, ClusterRole)> = clusters
        .iter()
        .map(|n| (n.as_str(), ClusterRole::Master))
        .collect();
    create_command(mesh, MeshMode::MultiPrimary, &members)
}

/// Creates a multi-primary mesh over every cluster of the world and waits until it succeeded.
pub async fn install_multi_primary(setup: &Setup, mesh: &str) {
    let create = multi_primary_command(mesh, &cluster_names(&setup.world));
    assert_succeeded(&run_command(setup, create).await);
}

/// Operations on cluster `index` of the world, through its admin credentials.
pub async fn cluster_ops(world: &World, index: usize) -> mesh_clusters::ClusterOps {
    let cluster = world.cluster(index);
    mesh_clusters::ClusterOps::new(cluster.name(), cluster.client().await.unwrap())
}

/// What the flows of a mesh did, for failure messages.
pub async fn flow_report(store: &Store, mesh: &str) -> String {
    let mut report = String::new();
    for flow in store.list_flows(mesh, 10).await.unwrap() {
        report.push_str(&format!(
            "flow {} {} {}\n",
            flow.id, flow.def_name, flow.status
        ));
        for task in store.list_tasks(flow.id).await.unwrap() {
            report.push_str(&format!(
                "  {} {} {:?} {:?}\n",
                task.name, task.status, task.error, task.log
            ));
        }
    }
    report
}

/// Publishes a command and waits for the event that ends it (FlowFinished or CommandRejected).
pub async fn run_command(setup: &Setup, command: CommandEnvelope) -> Event {
    let bus = &setup.bus;
    let mut events = bus
        .subscribe_events(
            EventFilter::Mesh(command.tenant.clone(), command.mesh.clone()),
            StartAt::Beginning,
        )
        .await
        .unwrap();
    bus.publish_command(&command).await.unwrap();
    let wait = async {
        while let Some(record) = events.next().await {
            let record = record.unwrap();
            if record.envelope.correlation_id != command.correlation_id {
                continue;
            }
            if matches!(
                record.envelope.body,
                Event::FlowFinished(_) | Event::CommandRejected(_)
            ) {
                return record.envelope.body;
            }
        }
        panic!("event stream ended");
    };
    match tokio::time::timeout(Duration::from_secs(240), wait).await {
        Ok(event) => event,
        Err(_) => panic!(
            "the command did not finish in time:\n{}",
            flow_report(&setup.store, command.mesh.as_str()).await
        ),
    }
}

pub async fn managed_objects(world: &World, mesh: &str) -> Vec<String> {
    let mut found = Vec::new();
    for cluster in world.clusters() {
        let client = cluster.client().await.unwrap();
        let ops = mesh_clusters::ClusterOps::new(cluster.name(), client);
        for kind in managed_kinds() {
            let selector =
                format!("app.kubernetes.io/managed-by=mesh-manager,mesh-manager.io/mesh={mesh}");
            for object in ops
                .list_labelled(kind.api_version, kind.kind, &selector)
                .await
                .unwrap()
            {
                found.push(format!("{}: {object}", cluster.name()));
            }
        }
    }
    found
}

pub fn assert_succeeded(event: &Event) {
    match event {
        Event::FlowFinished(finished) => assert_eq!(
            finished.outcome,
            mesh_bus::event::FlowOutcome::Succeeded,
            "flow failed: {:?}",
            finished.detail
        ),
        other => panic!("expected a finished flow, got {other:?}"),
    }
}

/// Asserts that `event` is a rejection whose reason contains `expected`.
pub fn assert_rejected(event: &Event, expected: &str) {
    match event {
        Event::CommandRejected(rejected) => assert!(
            rejected.reason.contains(expected),
            "expected a reason naming {expected:?}, got {:?}",
            rejected.reason
        ),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// The live row of mesh `name`.
pub async fn mesh_row(store: &Store, name: &str) -> mesh_schema::models::MeshRecord {
    store
        .get_mesh(&mesh_schema::TenantScope::All, name)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("mesh {name} exists"))
}
