//! Upgrades end to end: canary by revision with health gates, confirm, rollback (by the operator
//! and automatic), in place, and a worker killed mid-upgrade. Commands go over a real NATS, state
//! lives in a real MariaDB, Istio runs in simulated clusters reached through the unmodified kube
//! client.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use mesh_bus::command::{
    CanaryAction, CanaryOperate, ClusterSpec, CreateMesh, UpgradeMesh, UpgradeStrategy,
};
use mesh_bus::event::FlowOutcome;
use mesh_bus::{Bus, BusConfig, CommandEnvelope, Event, EventFilter, NatsBus, StartAt};
use mesh_clusters::{ClusterOps, ObjectRef};
use mesh_core::plan::managed_kinds;
use mesh_core::upgrade::CanaryOptions;
use mesh_core::{ClusterName, ClusterRole, FlowStatus, MeshMode, MeshName, TaskStatus, TenantId};
use mesh_schema::store::flow::{FlowTransition, TaskTransition};
use mesh_schema::{DatabaseTarget, SecretBox, SecretKey, Store, TenantScope};
use mesh_sim::World;
use mesh_testkit::mariadb::TestDatabase;
use serde_json::{Value, json};

const FROM: &str = "1.29.6";
const TO: &str = "1.30.3";
const OLD_REVISION: &str = "default";
const NEW_REVISION: &str = "default-v1-30-3";
const NAMESPACES: [&str; 2] = ["shop", "web"];

struct Setup {
    store: Store,
    bus: NatsBus,
    world: World,
    nats: mesh_testkit::nats::NatsServer,
    root: String,
    worker: Option<support::WorkerThread>,
    _database: TestDatabase,
}

async fn setup(clusters: usize) -> Setup {
    let database = TestDatabase::create();
    let store = Store::open(
        DatabaseTarget::parse(&database.url()).unwrap(),
        SecretBox::new(&SecretKey::generate()),
        8,
        true,
    )
    .await
    .unwrap();
    let nats = mesh_testkit::nats::NatsServer::start();
    let root = mesh_testkit::nats::unique_root();
    let bus = NatsBus::connect(nats.url(), BusConfig::with_root(root.clone()))
        .await
        .unwrap();
    let world = World::builder()
        .clusters(clusters)
        .deploy_ready_delay(Duration::from_millis(100))
        .remote_sync_interval(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    for cluster in world.clusters() {
        for namespace in NAMESPACES {
            cluster.dataplane().deploy_bookinfo(namespace).unwrap();
        }
    }
    support::register_world(&store, &world, "acme").await;
    let worker = support::spawn_worker("first", store.clone(), nats.url().to_owned(), root.clone());
    Setup {
        store,
        bus,
        world,
        nats,
        root,
        worker: Some(worker),
        _database: database,
    }
}

fn tenant() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn names(setup: &Setup) -> Vec<String> {
    setup
        .world
        .clusters()
        .iter()
        .map(|c| c.name().to_owned())
        .collect()
}

fn create_command(
    mesh: &str,
    mode: MeshMode,
    members: &[(String, ClusterRole)],
) -> CommandEnvelope {
    let injection: BTreeMap<&str, [&str; 2]> = members
        .iter()
        .map(|(n, _)| (n.as_str(), NAMESPACES))
        .collect();
    CommandEnvelope::command(
        tenant(),
        MeshName::new(mesh).unwrap(),
        "test",
        CreateMesh {
            title: format!("{mesh} mesh"),
            region: "sim".into(),
            version: FROM.into(),
            mode,
            clusters: members
                .iter()
                .map(|(name, role)| ClusterSpec {
                    name: ClusterName::new(name.as_str()).unwrap(),
                    role: *role,
                    network: format!("net-{name}"),
                })
                .collect(),
            config: json!({"autoInjectionNamespaces": injection}),
        },
    )
    .unwrap()
}

fn upgrade_command(
    mesh: &str,
    version: &str,
    strategy: UpgradeStrategy,
    options: CanaryOptions,
) -> CommandEnvelope {
    CommandEnvelope::command(
        tenant(),
        MeshName::new(mesh).unwrap(),
        "test",
        UpgradeMesh {
            version: version.into(),
            strategy,
            canary: Some(options),
        },
    )
    .unwrap()
}

fn fast() -> CanaryOptions {
    CanaryOptions {
        batch_size: 1,
        pause_seconds: 0,
        gate_window_seconds: 1,
        ..CanaryOptions::default()
    }
}

fn canary(mesh: &str, action: CanaryAction) -> CommandEnvelope {
    CommandEnvelope::command(
        tenant(),
        MeshName::new(mesh).unwrap(),
        "test",
        CanaryOperate { action },
    )
    .unwrap()
}

/// What the flows of a mesh did, for failure messages.
async fn flow_report(store: &Store, mesh: &str) -> String {
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
async fn run_command(setup: &Setup, command: CommandEnvelope) -> Event {
    let mut events = setup
        .bus
        .subscribe_events(
            EventFilter::Mesh(command.tenant.clone(), command.mesh.clone()),
            StartAt::Beginning,
        )
        .await
        .unwrap();
    setup.bus.publish_command(&command).await.unwrap();
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
    match tokio::time::timeout(Duration::from_secs(120), wait).await {
        Ok(event) => event,
        Err(_) => panic!(
            "the command did not finish in time:\n{}",
            flow_report(&setup.store, command.mesh.as_str()).await
        ),
    }
}

async fn assert_outcome(setup: &Setup, mesh: &str, event: &Event, outcome: FlowOutcome) {
    match event {
        Event::FlowFinished(finished) => assert_eq!(
            finished.outcome,
            outcome,
            "{:?}\n{}",
            finished.detail,
            flow_report(&setup.store, mesh).await
        ),
        other => panic!("expected a finished flow, got {other:?}"),
    }
}

async fn mesh_row(setup: &Setup, mesh: &str) -> mesh_schema::models::MeshRecord {
    setup
        .store
        .get_mesh(&TenantScope::All, mesh)
        .await
        .unwrap()
        .unwrap()
}

fn ops(cluster: &mesh_sim::SimCluster, client: kube::Client) -> ClusterOps {
    ClusterOps::new(cluster.name(), client)
}

async fn revisions(cluster: &mesh_sim::SimCluster) -> Vec<String> {
    let ops = ops(cluster, cluster.client().await.unwrap());
    let mut names: Vec<String> = ops
        .list_labelled("sailoperator.io/v1", "IstioRevision", "")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    names.sort();
    names
}

/// Waits (briefly) until every cluster holds exactly `wanted` revisions.
async fn wait_revisions(setup: &Setup, wanted: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for cluster in setup.world.clusters() {
        loop {
            let found = revisions(cluster).await;
            if found == wanted {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: revisions {found:?}, wanted {wanted:?}",
                cluster.name()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn namespace_ref(name: &str) -> ObjectRef {
    ObjectRef {
        api_version: "v1".into(),
        kind: "Namespace".into(),
        namespace: None,
        name: name.into(),
    }
}

async fn namespace_labels(ops: &ClusterOps, name: &str) -> Value {
    let ns = ops.get(&namespace_ref(name)).await.unwrap().unwrap();
    serde_json::to_value(&ns).unwrap()["metadata"]["labels"].clone()
}

/// What mesh-manager and Sail hold in each cluster, without bookkeeping fields: every managed
/// object (spec, data, labels, annotations), every Sail revision (name, version), the labels of
/// the injection namespaces, the istiod Deployments.
async fn snapshot(setup: &Setup, mesh: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let clean = |object: Value| {
        let mut object = object;
        let metadata = object["metadata"].clone();
        object["metadata"] = json!({
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "labels": metadata["labels"],
            "annotations": metadata["annotations"],
        });
        if let Some(map) = object.as_object_mut() {
            map.remove("status");
        }
        // Node ports are handed out by the API server, not written by mesh-manager.
        if let Some(ports) = object["spec"]["ports"].as_array_mut() {
            for port in ports {
                if let Some(port) = port.as_object_mut() {
                    port.remove("nodePort");
                }
            }
        }
        object
    };
    for cluster in setup.world.clusters() {
        let ops = ops(cluster, cluster.client().await.unwrap());
        let selector =
            format!("app.kubernetes.io/managed-by=mesh-manager,mesh-manager.io/mesh={mesh}");
        let mut kinds: Vec<(&str, &str, String)> = managed_kinds()
            .iter()
            .map(|k| (k.api_version, k.kind, selector.clone()))
            .collect();
        kinds.push(("sailoperator.io/v1", "IstioRevision", String::new()));
        kinds.push(("apps/v1", "Deployment", "app=istiod".into()));
        for (api_version, kind, selector) in kinds {
            for target in ops
                .list_labelled(api_version, kind, &selector)
                .await
                .unwrap()
            {
                let object = ops.get(&target).await.unwrap().unwrap();
                let mut value = clean(serde_json::to_value(&object).unwrap());
                if kind == "IstioRevision" {
                    value = json!({"name": target.name, "version": value["spec"]["version"]});
                }
                out.insert(format!("{}/{target}", cluster.name()), value);
            }
        }
        for namespace in NAMESPACES {
            out.insert(
                format!("{}/namespace {namespace}", cluster.name()),
                namespace_labels(&ops, namespace).await,
            );
        }
    }
    out
}

fn diff(before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in before {
        match after.get(key) {
            None => out.push(format!("missing after: {key}")),
            Some(other) if other != value => out.push(format!(
                "changed: {key}\n  before {value}\n  after  {other}"
            )),
            Some(_) => {}
        }
    }
    for key in after.keys().filter(|k| !before.contains_key(*k)) {
        out.push(format!("new after: {key}"));
    }
    out
}

async fn create_mesh(setup: &Setup, mesh: &str, mode: MeshMode) {
    let names = names(setup);
    let members: Vec<(String, ClusterRole)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let role = if mode == MeshMode::PrimaryRemote && i > 0 {
                ClusterRole::Remote
            } else {
                ClusterRole::Master
            };
            (n.clone(), role)
        })
        .collect();
    let event = run_command(setup, create_command(mesh, mode, &members)).await;
    assert_outcome(setup, mesh, &event, FlowOutcome::Succeeded).await;
    // The end is announced just before the flow row turns terminal.
    for _ in 0..100 {
        let flows = setup.store.list_flows(mesh, 1).await.unwrap();
        if flows.iter().all(|f| f.status == "Succeeded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (briefly, for owner-reference garbage collection) until the clusters hold what they
/// held in `before`; returns the differences left.
async fn settle_to(setup: &Setup, mesh: &str, before: &BTreeMap<String, Value>) -> Vec<String> {
    let mut changes = Vec::new();
    for _ in 0..50 {
        changes = diff(before, &snapshot(setup, mesh).await);
        if changes.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    changes
}

async fn assert_every_namespace_on(setup: &Setup, revision: &str) {
    for cluster in setup.world.clusters() {
        let ops = ops(cluster, cluster.client().await.unwrap());
        for namespace in NAMESPACES {
            let labels = namespace_labels(&ops, namespace).await;
            assert_eq!(
                labels["istio.io/rev"],
                revision,
                "{}/{namespace}: {labels}",
                cluster.name()
            );
            assert!(
                labels["istio-injection"].is_null(),
                "{}/{namespace}: {labels}",
                cluster.name()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_multi_primary_mesh_goes_canary_to_the_next_version_and_confirms() {
    canary_then_confirm(MeshMode::MultiPrimary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_remote_mesh_goes_canary_to_the_next_version_and_confirms() {
    canary_then_confirm(MeshMode::PrimaryRemote).await;
}

/// A 3-cluster mesh of `mode` goes canary (batches, gates), refuses other upgrades meanwhile,
/// confirms, and ends with only the new revision, every namespace on it.
async fn canary_then_confirm(mode: MeshMode) {
    let setup = setup(3).await;
    create_mesh(&setup, "canary", mode).await;

    let event = run_command(
        &setup,
        upgrade_command("canary", TO, UpgradeStrategy::Canary, fast()),
    )
    .await;
    assert_outcome(&setup, "canary", &event, FlowOutcome::Succeeded).await;
    let mesh = mesh_row(&setup, "canary").await;
    assert_eq!(mesh.status, "Canary");
    assert_eq!(mesh.version, FROM, "not committed before confirm");
    wait_revisions(&setup, &[OLD_REVISION, NEW_REVISION]).await;
    assert_every_namespace_on(&setup, NEW_REVISION).await;
    // Batches: one namespace each, gated.
    let flows = setup.store.list_flows("canary", 1).await.unwrap();
    let tasks: Vec<String> = setup
        .store
        .list_tasks(flows[0].id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    let first = &names(&setup)[0];
    assert!(
        tasks.contains(&format!("health-gate:{first}:2")),
        "{tasks:?}"
    );

    // Other changes wait for the canary to end.
    let busy = run_command(
        &setup,
        upgrade_command("canary", TO, UpgradeStrategy::Canary, fast()),
    )
    .await;
    assert!(matches!(busy, Event::CommandRejected(_)), "{busy:?}");

    let event = run_command(&setup, canary("canary", CanaryAction::Confirm)).await;
    assert_outcome(&setup, "canary", &event, FlowOutcome::Succeeded).await;
    let mesh = mesh_row(&setup, "canary").await;
    assert_eq!(mesh.status, "Running");
    assert_eq!(mesh.version, TO);
    assert_eq!(mesh.last_version, FROM);
    wait_revisions(&setup, &[NEW_REVISION]).await;
    assert_every_namespace_on(&setup, NEW_REVISION).await;
    for (index, cluster) in setup.world.clusters().iter().enumerate() {
        let ops = ops(cluster, cluster.client().await.unwrap());
        let istiods: Vec<String> = ops
            .list_labelled("apps/v1", "Deployment", "app=istiod")
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        // A remote runs no istiod of its own: its primary's serves it.
        let wanted: Vec<String> = if mode == MeshMode::PrimaryRemote && index > 0 {
            Vec::new()
        } else {
            vec![format!("istiod-{NEW_REVISION}")]
        };
        assert_eq!(istiods, wanted, "{}", cluster.name());
    }
    drop(setup.worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_remote_mesh_goes_canary_and_rolls_back_to_exactly_what_it_was() {
    canary_then_rollback(MeshMode::PrimaryRemote).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_multi_primary_mesh_goes_canary_and_rolls_back_to_exactly_what_it_was() {
    canary_then_rollback(MeshMode::MultiPrimary).await;
}

/// A 3-cluster mesh of `mode` goes canary and rolls back; every cluster then holds exactly what
/// it held before the upgrade (compared object by object).
async fn canary_then_rollback(mode: MeshMode) {
    let setup = setup(3).await;
    create_mesh(&setup, "pr", mode).await;
    let before = snapshot(&setup, "pr").await;

    let event = run_command(
        &setup,
        upgrade_command("pr", TO, UpgradeStrategy::Canary, fast()),
    )
    .await;
    assert_outcome(&setup, "pr", &event, FlowOutcome::Succeeded).await;
    assert_every_namespace_on(&setup, NEW_REVISION).await;
    assert_eq!(mesh_row(&setup, "pr").await.status, "Canary");

    let event = run_command(&setup, canary("pr", CanaryAction::Rollback)).await;
    assert_outcome(&setup, "pr", &event, FlowOutcome::Succeeded).await;
    let mesh = mesh_row(&setup, "pr").await;
    assert_eq!(
        (mesh.status.as_str(), mesh.version.as_str()),
        ("Running", FROM)
    );
    wait_revisions(&setup, &[OLD_REVISION]).await;
    let changes = settle_to(&setup, "pr", &before).await;
    assert!(changes.is_empty(), "{}", changes.join("\n"));

    // Nothing to confirm any more.
    let event = run_command(&setup, canary("pr", CanaryAction::Confirm)).await;
    assert!(matches!(event, Event::CommandRejected(_)), "{event:?}");
    drop(setup.worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_health_gate_seeing_too_many_errors_rolls_the_upgrade_back_automatically() {
    let setup = setup(2).await;
    create_mesh(&setup, "gate", MeshMode::MultiPrimary).await;
    let before = snapshot(&setup, "gate").await;
    let second = setup.world.cluster(1);
    assert!(second.dataplane().set_error_ratio("shop", "ratings", 0.6));
    let mut options = fast();
    options.batch_size = 2;
    options.gate_window_seconds = 2;
    options.max_error_ratio = 0.05;
    for cluster in setup.world.clusters() {
        options
            .metrics_urls
            .insert(cluster.name().to_owned(), cluster.dataplane().metrics_url());
    }
    let event = run_command(
        &setup,
        upgrade_command("gate", TO, UpgradeStrategy::Canary, options),
    )
    .await;
    assert_outcome(&setup, "gate", &event, FlowOutcome::RolledBack).await;
    let Event::FlowFinished(finished) = &event else {
        unreachable!()
    };
    let detail = finished.detail.clone().unwrap_or_default();
    assert!(
        detail.contains(second.name()) && detail.contains("ratings.shop"),
        "{detail}"
    );
    let mesh = mesh_row(&setup, "gate").await;
    assert_eq!(mesh.version, FROM);
    assert_ne!(mesh.status, "Canary");
    wait_revisions(&setup, &[OLD_REVISION]).await;
    let changes = settle_to(&setup, "gate", &before).await;
    assert!(changes.is_empty(), "{}", changes.join("\n"));
    // The mesh is free again: the upgrade can be tried anew.
    second.dataplane().set_error_ratio("shop", "ratings", 0.0);
    drop(setup.worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_looping_new_istiod_rolls_the_upgrade_back_automatically() {
    let setup = setup(2).await;
    create_mesh(&setup, "crash", MeshMode::MultiPrimary).await;
    let before = snapshot(&setup, "crash").await;
    let first = setup.world.cluster(0);
    first
        .faults()
        .set_istiod_crashloop_revision(Some(NEW_REVISION));
    let event = run_command(
        &setup,
        upgrade_command("crash", TO, UpgradeStrategy::Canary, fast()),
    )
    .await;
    assert_outcome(&setup, "crash", &event, FlowOutcome::RolledBack).await;
    let Event::FlowFinished(finished) = &event else {
        unreachable!()
    };
    let detail = finished.detail.clone().unwrap_or_default();
    assert!(
        detail.contains(first.name()) && detail.contains(NEW_REVISION),
        "{detail}"
    );
    wait_revisions(&setup, &[OLD_REVISION]).await;
    let changes = settle_to(&setup, "crash", &before).await;
    assert!(changes.is_empty(), "{}", changes.join("\n"));
    drop(setup.worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_place_refuses_a_two_minor_jump_with_guidance_and_takes_one_minor() {
    let setup = setup(1).await;
    create_mesh(&setup, "inplace", MeshMode::Single).await;
    let event = run_command(
        &setup,
        upgrade_command("inplace", "1.31.0-beta.1", UpgradeStrategy::InPlace, fast()),
    )
    .await;
    let Event::CommandRejected(rejected) = event else {
        panic!("expected a rejection, got {event:?}")
    };
    assert!(
        rejected
            .reason
            .contains("upgrade to 1.30.3 first, then 1.31.0-beta.1"),
        "{}",
        rejected.reason
    );
    let downgrade = run_command(
        &setup,
        upgrade_command("inplace", "1.29.0", UpgradeStrategy::InPlace, fast()),
    )
    .await;
    assert!(
        matches!(downgrade, Event::CommandRejected(_)),
        "{downgrade:?}"
    );

    let event = run_command(
        &setup,
        upgrade_command("inplace", TO, UpgradeStrategy::InPlace, fast()),
    )
    .await;
    assert_outcome(&setup, "inplace", &event, FlowOutcome::Succeeded).await;
    let mesh = mesh_row(&setup, "inplace").await;
    assert_eq!(
        (mesh.version.as_str(), mesh.last_version.as_str()),
        (TO, FROM)
    );
    wait_revisions(&setup, &[OLD_REVISION]).await;
    let cluster = setup.world.cluster(0);
    let ops = ops(cluster, cluster.client().await.unwrap());
    let revision = ops
        .get(&ObjectRef {
            api_version: "sailoperator.io/v1".into(),
            kind: "IstioRevision".into(),
            namespace: None,
            name: OLD_REVISION.into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::to_value(&revision).unwrap()["spec"]["version"],
        format!("v{TO}")
    );
    drop(setup.worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_upgrade_is_replaced_and_the_canary_ends_clean() {
    let mut setup = setup(3).await;
    create_mesh(&setup, "phoenix", MeshMode::MultiPrimary).await;
    let mut options = fast();
    options.pause_seconds = 1;
    setup
        .bus
        .publish_command(&upgrade_command(
            "phoenix",
            TO,
            UpgradeStrategy::Canary,
            options,
        ))
        .await
        .unwrap();
    // Kill the worker once namespaces are moving.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let flow_id = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            flow_report(&setup.store, "phoenix").await
        );
        let flows = setup.store.list_flows("phoenix", 1).await.unwrap();
        if let Some(flow) = flows.into_iter().find(|f| f.def_name == "upgrade-canary") {
            let tasks = setup.store.list_tasks(flow.id).await.unwrap();
            if tasks
                .iter()
                .any(|t| t.name.starts_with("move-batch:") && t.status == "Succeeded")
            {
                break flow.id;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    setup.worker.take().unwrap().kill();
    assert_eq!(
        setup.store.get_flow(flow_id).await.unwrap().unwrap().status,
        "Running"
    );
    setup.worker = Some(support::spawn_worker(
        "second",
        setup.store.clone(),
        setup.nats.url().to_owned(),
        setup.root.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            flow_report(&setup.store, "phoenix").await
        );
        let flow = setup.store.get_flow(flow_id).await.unwrap().unwrap();
        if flow.status != "Running" && flow.status != "Pending" {
            assert_eq!(
                flow.status,
                "Succeeded",
                "{}",
                flow_report(&setup.store, "phoenix").await
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One control plane resource, the two revisions of a canary, no other.
    wait_revisions(&setup, &[OLD_REVISION, NEW_REVISION]).await;
    for cluster in setup.world.clusters() {
        let ops = ops(cluster, cluster.client().await.unwrap());
        let istios = ops
            .list_labelled("sailoperator.io/v1", "Istio", "")
            .await
            .unwrap();
        assert_eq!(istios.len(), 1, "{}", cluster.name());
    }
    assert_every_namespace_on(&setup, NEW_REVISION).await;
    let event = run_command(&setup, canary("phoenix", CanaryAction::Confirm)).await;
    assert_outcome(&setup, "phoenix", &event, FlowOutcome::Succeeded).await;
    wait_revisions(&setup, &[NEW_REVISION]).await;
    assert_eq!(mesh_row(&setup, "phoenix").await.version, TO);
}

/// Waits until `flow_id` is no longer running and returns its status.
async fn wait_flow_end(setup: &Setup, mesh: &str, flow_id: i64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let flow = setup.store.get_flow(flow_id).await.unwrap().unwrap();
        if flow.status != "Running" && flow.status != "Pending" {
            return flow.status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            flow_report(&setup.store, mesh).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_lost_right_after_closing_the_upgrade_leaves_its_successor_a_clean_end() {
    let mut setup = setup(1).await;
    create_mesh(&setup, "closing", MeshMode::Single).await;
    let event = run_command(
        &setup,
        upgrade_command("closing", TO, UpgradeStrategy::Canary, fast()),
    )
    .await;
    assert_outcome(&setup, "closing", &event, FlowOutcome::Succeeded).await;
    let event = run_command(&setup, canary("closing", CanaryAction::Confirm)).await;
    assert_outcome(&setup, "closing", &event, FlowOutcome::Succeeded).await;
    let flow = setup.store.list_flows("closing", 1).await.unwrap()[0].clone();
    assert_eq!(flow.def_name, "canary-confirm");
    assert_eq!(wait_flow_end(&setup, "closing", flow.id).await, "Succeeded");
    setup.worker.take().unwrap().kill();

    // What the database holds when a worker closes the upgrade in `mesh.state` and loses its
    // lease (or dies) before it records the step as done: the step and its flow still running.
    let end = setup
        .store
        .list_tasks(flow.id)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "end-upgrade")
        .unwrap();
    setup
        .store
        .transition_task(
            end.id,
            TaskTransition {
                status: Some(TaskStatus::Running),
                ..TaskTransition::default()
            },
        )
        .await
        .unwrap();
    setup
        .store
        .transition_flow(
            flow.id,
            FlowTransition {
                status: FlowStatus::Running,
                log_line: None,
                fence_epoch: None,
                processor: None,
            },
        )
        .await
        .unwrap();

    // The next owner resumes the flow at that step and ends it as it would have ended.
    setup.worker = Some(support::spawn_worker(
        "second",
        setup.store.clone(),
        setup.nats.url().to_owned(),
        setup.root.clone(),
    ));
    let status = wait_flow_end(&setup, "closing", flow.id).await;
    assert_eq!(
        status,
        "Succeeded",
        "{}",
        flow_report(&setup.store, "closing").await
    );
    let mesh = mesh_row(&setup, "closing").await;
    assert_eq!(
        (mesh.status.as_str(), mesh.version.as_str()),
        ("Running", TO)
    );
    // The mesh is free for the next change.
    let busy = run_command(&setup, canary("closing", CanaryAction::Rollback)).await;
    let Event::CommandRejected(rejected) = busy else {
        panic!("expected a rejection, got {busy:?}")
    };
    assert!(
        rejected.reason.contains("no canary upgrade"),
        "{}",
        rejected.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prometheus_seeing_too_many_errors_rolls_the_upgrade_back_automatically() {
    use mesh_testkit::prometheus::{Prometheus, prometheus_binary};
    let binary = match prometheus_binary() {
        Ok(binary) => binary,
        Err(reason) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true and no prometheus: {reason}")
        }
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    let setup = setup(2).await;
    let targets: Vec<(String, String)> = setup
        .world
        .clusters()
        .iter()
        .map(|c| (c.name().to_owned(), c.dataplane().addr().to_string()))
        .collect();
    let mut prometheus = Prometheus::start(&binary, &targets);
    prometheus.wait_ready().await;
    create_mesh(&setup, "watched", MeshMode::MultiPrimary).await;
    let before = snapshot(&setup, "watched").await;
    let second = setup.world.cluster(1);
    assert!(second.dataplane().set_error_ratio("shop", "ratings", 0.6));
    // Prometheus has seen the errors before the upgrade starts.
    prometheus
        .eventually(
            "5xx from ratings in the second cluster",
            &format!(
                "sum(increase(istio_requests_total{{reporter=\"destination\",destination_cluster=\"{}\",destination_service_name=\"ratings\",response_code=~\"5..\"}}[3s]))",
                second.name()
            ),
            |value| value.is_some_and(|v| v > 0.0),
        )
        .await;
    let options = CanaryOptions {
        batch_size: 2,
        gate_window_seconds: 3,
        max_error_ratio: 0.05,
        prometheus_url: Some(prometheus.url()),
        ..fast()
    };
    let event = run_command(
        &setup,
        upgrade_command("watched", TO, UpgradeStrategy::Canary, options),
    )
    .await;
    assert_outcome(&setup, "watched", &event, FlowOutcome::RolledBack).await;
    let Event::FlowFinished(finished) = &event else {
        unreachable!()
    };
    let detail = finished.detail.clone().unwrap_or_default();
    assert!(
        detail.contains(second.name())
            && detail.contains("ratings.shop")
            && detail.contains("errors"),
        "{detail}"
    );
    assert_eq!(mesh_row(&setup, "watched").await.version, FROM);
    wait_revisions(&setup, &[OLD_REVISION]).await;
    let changes = settle_to(&setup, "watched", &before).await;
    assert!(changes.is_empty(), "{}", changes.join("\n"));
    drop(prometheus);
    drop(setup.worker);
}
