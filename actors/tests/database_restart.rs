//! A MariaDB restart in the middle of a flow: the worker's pool reconnects, the steps that could
//! not be recorded while the database was away are retried, the flow finishes, and nothing is lost
//! or applied twice.
//!
//! The database is a private `mariadbd` of the test (killed as a crash would, then started again
//! on the same port and data), never the shared server.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mesh_bus::command::{SamplingPercent, SetTraceSampling};
use mesh_bus::{Bus, BusConfig, CommandEnvelope, NatsBus};
use mesh_core::MeshName;
use mesh_schema::{DatabaseTarget, SecretBox, SecretKey, Store, TenantScope};

/// Polls `check` (database errors count as "not yet": the server may be restarting).
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, mesh_schema::StoreError>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(error) => last = error.to_string(),
        }
        assert!(Instant::now() < deadline, "{what} did not happen: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn finished_flow(store: &Store, flow_id: i64) -> String {
    eventually("the flow to end", Duration::from_secs(120), || async {
        Ok(store
            .get_flow(flow_id)
            .await?
            .map(|f| f.status)
            .filter(|s| s != "Running" && s != "Pending"))
    })
    .await
}

#[actix_rt::test]
async fn a_database_restart_while_an_install_waits_loses_nothing() {
    let Some(mut server) = mesh_testkit::mariadb_server::MariaDbServer::start_or_skip() else {
        return;
    };
    let url = server.create_database("tke_mesh");
    let key = SecretKey::generate();
    let open = |size| {
        let url = url.clone();
        let key = SecretKey::from_base64(&key.to_base64(), "test").unwrap();
        async move {
            Store::open(
                DatabaseTarget::parse(&url).unwrap(),
                SecretBox::new(&key),
                size,
                true,
            )
            .await
            .unwrap()
        }
    };
    let store = open(4).await;
    let nats = mesh_testkit::nats::NatsServer::start();
    let world = mesh_sim::World::builder()
        .clusters(2)
        .deploy_ready_delay(Duration::from_secs(4))
        .remote_sync_interval(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    support::register_world(&store, &world, "acme").await;
    let root = mesh_testkit::nats::unique_root();
    // The worker has its own pool, as its own process would.
    let _worker = support::spawn_worker(
        "db-survivor",
        open(8).await,
        nats.url().into(),
        root.clone(),
    );
    let publisher = NatsBus::connect(nats.url(), BusConfig::with_root(root))
        .await
        .unwrap();
    let tenant = support::harness::tenant();
    let mesh = MeshName::new("dbrestart").unwrap();
    let create = support::harness::multi_primary_command(
        "dbrestart",
        &support::harness::cluster_names(&world),
    );
    publisher.publish_command(&create).await.unwrap();

    // Restart the database while the install waits for a control plane.
    let flow_id = eventually("the install to wait", Duration::from_secs(60), || async {
        let Some(flow) = store.list_flows("dbrestart", 1).await?.into_iter().next() else {
            return Ok(None);
        };
        let waiting = store
            .list_tasks(flow.id)
            .await?
            .iter()
            .any(|t| t.name.starts_with("wait-control-plane") && t.status == "Running");
        Ok(waiting.then_some(flow.id))
    })
    .await;
    // Down longer than the control plane takes to become ready (4 s), so the steps that record the
    // wait's end and the next task's start meet the outage and must be retried; and longer than the
    // pool's 10 s wait for a connection, so they fail at least once rather than merely wait.
    server.kill();
    tokio::time::sleep(Duration::from_secs(15)).await;
    server.start_again();

    assert_eq!(finished_flow(&store, flow_id).await, "Succeeded");
    let row = store
        .get_mesh(&TenantScope::All, "dbrestart")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, "Running");

    // A command after the restart is carried out as usual.
    let sampling = CommandEnvelope::command(
        tenant,
        mesh,
        "test",
        SetTraceSampling {
            percent: SamplingPercent::new(9.0).unwrap(),
        },
    )
    .unwrap();
    publisher.publish_command(&sampling).await.unwrap();
    let sampling_flow = eventually(
        "the sampling change to be accepted",
        Duration::from_secs(60),
        || async {
            Ok(store
                .get_command(&sampling.id.to_string())
                .await?
                .and_then(|c| c.flow_id))
        },
    )
    .await;
    assert_eq!(finished_flow(&store, sampling_flow).await, "Succeeded");

    // Nothing lost, nothing twice: one flow per command, every task done, every transition in the
    // history exactly once.
    let commands = store.list_commands("dbrestart", 100).await.unwrap();
    assert_eq!(commands.len(), 2, "{commands:?}");
    for command in &commands {
        assert_eq!(command.status, "Succeeded", "{command:?}");
    }
    let flows = store.list_flows("dbrestart", 100).await.unwrap();
    assert_eq!(flows.len(), 2, "one flow per command");
    let events = store.list_events("dbrestart", 0, 10_000).await.unwrap();
    for flow in &flows {
        let of_flow: Vec<_> = events
            .iter()
            .filter(|e| e.flow_id == Some(flow.id))
            .collect();
        for kind in ["CommandAccepted", "FlowStarted", "FlowFinished"] {
            assert!(
                of_flow.iter().any(|e| e.kind == kind),
                "flow {}: {kind} missing",
                flow.id
            );
        }
        let tasks = store.list_tasks(flow.id).await.unwrap();
        for task in &tasks {
            assert_eq!(task.status, "Succeeded", "{task:?}");
            for kind in ["TaskStarted", "TaskFinished"] {
                let payload_names_task = |payload: &str| {
                    let value: serde_json::Value = serde_json::from_str(payload).unwrap();
                    value["payload"]["task_id"] == task.id
                };
                assert!(
                    of_flow
                        .iter()
                        .any(|e| e.kind == kind && payload_names_task(&e.payload)),
                    "flow {}: {kind} of task {} missing",
                    flow.id,
                    task.name
                );
            }
        }
    }
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    for event in &events {
        *ids.entry(event.event_id.as_str()).or_default() += 1;
    }
    assert!(ids.values().all(|n| *n == 1), "an event stored twice");
    let finished = events.iter().filter(|e| e.kind == "FlowFinished").count();
    assert_eq!(finished, 2, "each flow ended once");
}
