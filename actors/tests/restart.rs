//! NATS restarts in the middle of a flow: workers reconnect (or re-subscribe after giving their
//! partitions back) and finish, and later commands are carried out as usual.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::{Duration, Instant};

use mesh_bus::command::{ClusterSpec, CreateMesh, SamplingPercent, SetTraceSampling};
use mesh_bus::{Bus, BusConfig, CommandEnvelope, NatsBus};
use mesh_core::{ClusterName, ClusterRole, MeshMode, MeshName, TenantId};
use mesh_schema::{DatabaseTarget, SecretBox, SecretKey, Store, TenantScope};

async fn wait_for_flow(store: &Store, flow_id: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let flow = store.get_flow(flow_id).await.unwrap().unwrap();
        if flow.status != "Running" && flow.status != "Pending" {
            assert_eq!(flow.status, "Succeeded", "{flow:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "flow {flow_id} did not finish: {flow:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_rt::test]
async fn a_nats_restart_in_the_middle_of_a_flow_loses_nothing() {
    let mut nats = mesh_testkit::nats::NatsServer::start_private();
    let database = mesh_testkit::mariadb::TestDatabase::create();
    let store = Store::open(
        DatabaseTarget::parse(&database.url()).unwrap(),
        SecretBox::new(&SecretKey::generate()),
        8,
        true,
    )
    .await
    .unwrap();
    let world = mesh_sim::World::builder()
        .clusters(2)
        .deploy_ready_delay(Duration::from_millis(1500))
        .remote_sync_interval(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    support::register_world(&store, &world, "acme").await;
    let mut members = Vec::new();
    for cluster in world.clusters() {
        members.push(ClusterSpec {
            name: ClusterName::new(cluster.name()).unwrap(),
            role: ClusterRole::Master,
            network: format!("net-{}", cluster.name()),
        });
    }
    let root = mesh_testkit::nats::unique_root();
    let _worker = support::spawn_worker(
        "survivor",
        store.clone(),
        nats.url().to_owned(),
        root.clone(),
    );
    let tenant = TenantId::new("acme").unwrap();
    let mesh = MeshName::new("restart").unwrap();
    let create = CreateMesh {
        title: "restart".into(),
        region: "sim".into(),
        version: "1.30.3".into(),
        mode: MeshMode::MultiPrimary,
        clusters: members,
        config: serde_json::json!({}),
    };
    {
        let publisher = NatsBus::connect(nats.url(), BusConfig::with_root(root.clone()))
            .await
            .unwrap();
        publisher
            .publish_command(
                &CommandEnvelope::command(tenant.clone(), mesh.clone(), "test", create).unwrap(),
            )
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let flow_id = loop {
        assert!(Instant::now() < deadline, "the install never started");
        if let Some(flow) = store
            .list_flows("restart", 1)
            .await
            .unwrap()
            .into_iter()
            .next()
        {
            let tasks = store.list_tasks(flow.id).await.unwrap();
            if tasks
                .iter()
                .any(|t| t.name.starts_with("wait-control-plane") && t.status == "Running")
            {
                break flow.id;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    nats.restart();
    wait_for_flow(&store, flow_id, Duration::from_secs(90)).await;
    assert_eq!(
        store
            .get_mesh(&TenantScope::All, "restart")
            .await
            .unwrap()
            .unwrap()
            .status,
        "Running"
    );

    // Commands published after the restart are carried out.
    let publisher = NatsBus::connect(nats.url(), BusConfig::with_root(root))
        .await
        .unwrap();
    let sampling = CommandEnvelope::command(
        tenant,
        mesh,
        "test",
        SetTraceSampling {
            percent: SamplingPercent::new(7.0).unwrap(),
        },
    )
    .unwrap();
    publisher.publish_command(&sampling).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let flow_id = loop {
        assert!(
            Instant::now() < deadline,
            "the command after the restart was never accepted"
        );
        if let Some(flow_id) = store
            .get_command(&sampling.id.to_string())
            .await
            .unwrap()
            .and_then(|c| c.flow_id)
        {
            break flow_id;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    wait_for_flow(&store, flow_id, Duration::from_secs(60)).await;
    assert_eq!(store.list_flows("restart", 10).await.unwrap().len(), 2);
}
