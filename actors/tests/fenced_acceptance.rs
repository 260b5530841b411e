//! A command whose acceptance is fenced (a newer owner holds the mesh) goes back to the stream for
//! that owner: the stale owner neither acknowledges it without effect nor loses it, and the newer
//! owner accepts and runs it once; a later delivery of it has no second effect.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use futures::StreamExt;
use mesh_actors::connections::ClusterConnections;
use mesh_actors::events::EventSink;
use mesh_actors::flow::{FlowRunner, RunnerConfig};
use mesh_actors::mesh::{Acceptance, HandleCommand, MeshActor, MeshComponent};
use mesh_bus::command::{ClusterSpec, CreateMesh, SamplingPercent, SetTraceSampling};
use mesh_bus::{Bus, BusConfig, CommandEnvelope, Delivery, LocalBus, partition_of};
use mesh_core::{ClusterName, ClusterRole, FlowStatus, MeshMode, MeshName, VersionCatalog};
use mesh_schema::{Store, TenantScope};

/// The mesh component of a worker holding the mesh's partition at `epoch`.
fn component_at(store: &Store, bus: &Arc<dyn Bus>, epoch: i64, name: &str) -> MeshComponent {
    let runner = FlowRunner::new(
        store.clone(),
        EventSink::new(store.clone(), Arc::clone(bus)),
        ClusterConnections::new(store.clone()),
        RunnerConfig {
            processor: name.into(),
            epoch,
            backoff: Duration::from_millis(50),
            ..RunnerConfig::default()
        },
    );
    MeshComponent::new(runner, Arc::new(VersionCatalog::builtin()))
}

async fn next_delivery(
    deliveries: &mut (impl futures::Stream<Item = Result<Delivery, mesh_bus::BusError>> + Unpin),
    what: &str,
) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), deliveries.next())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing delivered within 10 s"))
        .expect("the stream goes on")
        .expect("a delivery")
}

/// Accepts `command` as `component` would on its first delivery, and runs its flow to the end.
async fn accept_and_run(component: &MeshComponent, command: &CommandEnvelope) -> FlowStatus {
    let Acceptance::Started(flow_id) = component.accept(command).await.unwrap() else {
        panic!("{} not accepted", command.kind());
    };
    component.runner().run(flow_id).await.unwrap()
}

#[actix_rt::test]
async fn a_fenced_acceptance_leaves_the_command_to_the_newer_owner() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("meshd.db").display());
    let store = support::open_store(&url, 4).await;
    let bus: Arc<dyn Bus> = Arc::new(LocalBus::new(BusConfig::default()).unwrap());
    let world = mesh_sim::World::builder()
        .clusters(1)
        .deploy_ready_delay(Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    support::register_world(&store, &world, "acme").await;
    let tenant = support::harness::tenant();
    let mesh = MeshName::new("handed-over").unwrap();

    // The earlier owner (epoch 1) installs the mesh.
    let earlier = component_at(&store, &bus, 1, "earlier");
    let create = CommandEnvelope::command(
        tenant.clone(),
        mesh.clone(),
        "test",
        CreateMesh {
            title: "handed over".into(),
            region: "sim".into(),
            version: "1.30.3".into(),
            mode: MeshMode::Single,
            clusters: vec![ClusterSpec {
                name: ClusterName::new(world.cluster(0).name()).unwrap(),
                role: ClusterRole::Master,
                network: "net".into(),
            }],
            config: serde_json::json!({}),
        },
    )
    .unwrap();
    assert_eq!(
        accept_and_run(&earlier, &create).await,
        FlowStatus::Succeeded
    );

    // A newer owner (epoch 7) takes the mesh over; the earlier one still gets a command for it.
    store.claim_mesh(mesh.as_str(), 7).await.unwrap();
    let partition = partition_of(&tenant, &mesh, bus.subjects().partitions());
    let mut deliveries = bus.consume_commands(&[partition]).await.unwrap();
    let sampling = CommandEnvelope::command(
        tenant.clone(),
        mesh.clone(),
        "test",
        SetTraceSampling {
            percent: SamplingPercent::new(42.0).unwrap(),
        },
    )
    .unwrap();
    bus.publish_command(&sampling).await.unwrap();
    let first = next_delivery(&mut deliveries, "the command").await;
    assert_eq!(first.envelope().id, sampling.id);
    let stale_actor = MeshActor::new(earlier).start();
    stale_actor.send(HandleCommand(first)).await.unwrap();

    // Its acceptance was refused: the command is delivered again, and nothing of it landed.
    let again = next_delivery(&mut deliveries, "the command, left to the newer owner").await;
    assert_eq!(again.envelope().id, sampling.id);
    assert!(again.delivered() >= 2, "a redelivery");
    let command_id = sampling.id.to_string();
    assert_eq!(
        store.get_command(&command_id).await.unwrap(),
        None,
        "a configuration change is recorded by its acceptance, and that was refused whole"
    );
    assert_eq!(store.list_flows(mesh.as_str(), 10).await.unwrap().len(), 1);
    assert!(
        store.fenced_write_count() >= 1,
        "the stale write was refused"
    );

    // The newer owner decides it as a first delivery and runs it.
    let newer = component_at(&store, &bus, 7, "newer");
    assert_eq!(
        accept_and_run(&newer, again.envelope()).await,
        FlowStatus::Succeeded
    );
    again.ack().await.unwrap();
    let logged = store.get_command(&command_id).await.unwrap().unwrap();
    assert_eq!(logged.status, "Succeeded", "{logged:?}");
    assert!(logged.flow_id.is_some());
    let row = store
        .get_mesh(&TenantScope::All, mesh.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.owner_epoch, 7, "the newer owner still holds the mesh");
    assert!(
        row.config.as_deref().unwrap_or_default().contains("42"),
        "the sampling change has its effect: {:?}",
        row.config
    );
    let correlation = sampling.correlation_id.to_string();
    let accepted = store
        .list_events(mesh.as_str(), 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| {
            e.kind == "CommandAccepted" && e.correlation_id.as_deref() == Some(&correlation)
        })
        .count();
    assert_eq!(accepted, 1, "accepted once, by the newer owner");

    // Delivered once more, as after the bus's duplicate window: no second effect.
    assert_eq!(
        newer.accept(&sampling).await.unwrap(),
        Acceptance::Duplicate
    );
    assert_eq!(store.list_flows(mesh.as_str(), 10).await.unwrap().len(), 2);
    let after = store
        .get_mesh(&TenantScope::All, mesh.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.generation, row.generation,
        "the desired state is unchanged"
    );
    world.stop();
}
