//! Mesh lifecycle end to end: commands on a real bus, state in a real database, Istio installed
//! into simulated clusters through the unmodified kube client.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use support::harness::*;

use std::time::Duration;

use futures::StreamExt;
use mesh_bus::command::{ClusterSpec, DeleteMesh, SamplingPercent, SetTraceSampling};
use mesh_bus::{Bus, BusConfig, CommandEnvelope, Event, EventFilter, NatsBus, StartAt};
use mesh_core::plan::managed_kinds;
use mesh_core::{ClusterName, ClusterRole, MeshMode, MeshName};
use mesh_schema::{DatabaseTarget, SecretBox, SecretKey, Store, TenantScope};
use mesh_sim::World;
use mesh_testkit::mariadb::TestDatabase;

#[actix_rt::test]
async fn a_multi_primary_mesh_reaches_running_and_deletes_without_leftovers() {
    let setup = setup(3, true, true).await;
    let names = cluster_names(&setup.world);
    let create = multi_primary_command("demo", &names);
    assert_succeeded(&run_command(&setup, create.clone()).await);

    let mesh = setup
        .store
        .get_mesh(&TenantScope::All, "demo")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mesh.status, "Running");
    for member in setup.store.list_member_clusters("demo").await.unwrap() {
        assert_eq!(member.phase, "Running", "{member:?}");
        assert!(member.linked_at.is_some());
    }
    assert_eq!(
        setup.store.list_lb_resources("demo").await.unwrap().len(),
        3
    );
    // Every istiod sees every peer.
    for cluster in setup.world.clusters() {
        let client = cluster.client().await.unwrap();
        let ops = mesh_clusters::ClusterOps::new(cluster.name(), client);
        for peer in names.iter().filter(|n| *n != cluster.name()) {
            let status = ops.remote_cluster_status(peer).await.unwrap().unwrap();
            assert_eq!(
                status["syncStatus"],
                "synced",
                "{} -> {peer}: {status}",
                cluster.name()
            );
        }
    }
    assert!(!managed_objects(&setup.world, "demo").await.is_empty());

    // The same command again has no second effect.
    setup.bus.publish_command(&create).await.unwrap();
    let flows = setup.store.list_flows("demo", 10).await.unwrap();
    assert_eq!(flows.len(), 1);

    let sampling = CommandEnvelope::command(
        tenant(),
        MeshName::new("demo").unwrap(),
        "test",
        SetTraceSampling {
            percent: mesh_bus::command::SamplingPercent::new(10.0).unwrap(),
        },
    )
    .unwrap();
    assert_succeeded(&run_command(&setup, sampling).await);
    let mesh = setup
        .store
        .get_mesh(&TenantScope::All, "demo")
        .await
        .unwrap()
        .unwrap();
    assert!(mesh.config.unwrap().contains("\"traceSampling\":10.0"));
    assert_eq!(mesh.generation, 2);
    // A new sampling rate rewrites the mesh-wide Telemetry of every primary, and nothing else.
    let latest = setup.store.list_flows("demo", 1).await.unwrap();
    let tasks = setup.store.list_tasks(latest[0].id).await.unwrap();
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| n.starts_with("mesh-config:")),
        "only the mesh configuration is re-applied: {names:?}"
    );
    for (index, cluster) in setup.world.clusters().iter().enumerate() {
        let telemetries = cluster_ops(&setup.world, index)
            .await
            .list_labelled_objects(
                "telemetry.istio.io/v1",
                "Telemetry",
                &format!("{}=demo", mesh_core::plan::MESH_LABEL),
            )
            .await
            .unwrap();
        assert_eq!(telemetries.len(), 1, "{}", cluster.name());
        assert_eq!(
            telemetries[0]["spec"]["tracing"][0]["randomSamplingPercentage"],
            10.0,
            "{}",
            cluster.name()
        );
    }

    // Before the delete the control plane's webhook is there (so the check after it means something).
    for cluster in setup.world.clusters() {
        let ops = mesh_clusters::ClusterOps::new(cluster.name(), cluster.client().await.unwrap());
        let webhooks = ops
            .list_labelled(
                "admissionregistration.k8s.io/v1",
                "MutatingWebhookConfiguration",
                "istio.io/rev",
            )
            .await
            .unwrap();
        assert!(
            !webhooks.is_empty(),
            "{} has an injector webhook",
            cluster.name()
        );
    }
    let delete = CommandEnvelope::command(
        tenant(),
        MeshName::new("demo").unwrap(),
        "test",
        DeleteMesh {},
    )
    .unwrap();
    assert_succeeded(&run_command(&setup, delete).await);
    assert!(
        setup
            .store
            .get_mesh(&TenantScope::All, "demo")
            .await
            .unwrap()
            .is_none()
    );
    let left = managed_objects(&setup.world, "demo").await;
    assert!(left.is_empty(), "objects left behind: {left:?}");
    // Nothing Istio-related outlives the mesh either: no remote secret, gateway, webhook or
    // control plane, labelled by us or not.
    for cluster in setup.world.clusters() {
        let ops = mesh_clusters::ClusterOps::new(cluster.name(), cluster.client().await.unwrap());
        let checks = [
            ("v1", "Secret", "istio/multiCluster=true"),
            (
                "admissionregistration.k8s.io/v1",
                "MutatingWebhookConfiguration",
                "app=sidecar-injector",
            ),
            (
                "admissionregistration.k8s.io/v1",
                "MutatingWebhookConfiguration",
                "istio.io/rev",
            ),
            (
                "admissionregistration.k8s.io/v1",
                "ValidatingWebhookConfiguration",
                "istio.io/rev",
            ),
            ("apps/v1", "Deployment", "istio=eastwestgateway"),
            ("apps/v1", "Deployment", "app=istiod"),
            ("sailoperator.io/v1", "Istio", ""),
            ("sailoperator.io/v1", "IstioRevision", ""),
        ];
        for (api_version, kind, selector) in checks {
            let found = ops
                .list_labelled(api_version, kind, selector)
                .await
                .unwrap();
            assert!(
                found.is_empty(),
                "{}: {kind} {selector} left behind: {found:?}",
                cluster.name()
            );
        }
    }
    let events = setup.store.list_events("demo", 0, 1000).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "MeshDeleted"));
}

#[actix_rt::test]
async fn a_primary_remote_mesh_reaches_running() {
    let setup = setup(3, false, false).await;
    let names = cluster_names(&setup.world);
    let members = [
        (names[0].as_str(), ClusterRole::Master),
        (names[1].as_str(), ClusterRole::Remote),
        (names[2].as_str(), ClusterRole::Remote),
    ];
    assert_succeeded(
        &run_command(
            &setup,
            create_command("pr", MeshMode::PrimaryRemote, &members),
        )
        .await,
    );
    let mesh = setup
        .store
        .get_mesh(&TenantScope::All, "pr")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mesh.status, "Running");
    let primary = setup.world.cluster(0);
    let ops = mesh_clusters::ClusterOps::new(primary.name(), primary.client().await.unwrap());
    for remote in &names[1..] {
        let status = ops.remote_cluster_status(remote).await.unwrap().unwrap();
        assert_eq!(status["syncStatus"], "synced", "{status}");
    }
}

#[actix_rt::test]
async fn a_single_cluster_mesh_reaches_running_and_bad_commands_are_rejected() {
    let setup = setup(1, false, false).await;
    let name = setup.world.cluster(0).name().to_owned();
    assert_succeeded(
        &run_command(
            &setup,
            create_command("solo", MeshMode::Single, &[(&name, ClusterRole::Master)]),
        )
        .await,
    );
    assert_eq!(mesh_row(&setup.store, "solo").await.status, "Running");

    let again = run_command(
        &setup,
        create_command("solo", MeshMode::Single, &[(&name, ClusterRole::Master)]),
    )
    .await;
    assert_rejected(&again, "already exists");
    let unknown = run_command(
        &setup,
        create_command(
            "other",
            MeshMode::Single,
            &[("not-registered", ClusterRole::Master)],
        ),
    )
    .await;
    assert_rejected(&unknown, "not registered");

    // A configuration change decided against an old generation is refused whole: no flow, no
    // change of the desired state.
    let generation = mesh_row(&setup.store, "solo").await.generation;
    let flows_before = setup.store.list_flows("solo", 100).await.unwrap().len();
    let mut stale = cluster_command(
        "solo",
        SetTraceSampling {
            percent: SamplingPercent::new(42.0).unwrap(),
        },
    );
    stale.expected_generation = Some(generation - 1);
    assert_rejected(
        &run_command(&setup, stale).await,
        &format!("is at generation {generation}, not {}", generation - 1),
    );
    let mesh = mesh_row(&setup.store, "solo").await;
    assert_eq!(mesh.generation, generation);
    assert!(!mesh.config.unwrap_or_default().contains("42"));
    assert_eq!(
        setup.store.list_flows("solo", 100).await.unwrap().len(),
        flows_before
    );
    // The same change at the current generation is carried out.
    let mut current = cluster_command(
        "solo",
        SetTraceSampling {
            percent: SamplingPercent::new(42.0).unwrap(),
        },
    );
    current.expected_generation = Some(generation);
    assert_succeeded(&run_command(&setup, current).await);
    assert_eq!(
        mesh_row(&setup.store, "solo").await.generation,
        generation + 1
    );
}

fn cluster_command(mesh: &str, command: impl Into<mesh_bus::Command>) -> CommandEnvelope {
    CommandEnvelope::command(tenant(), MeshName::new(mesh).unwrap(), "test", command).unwrap()
}

async fn synced_peers(cluster: &mesh_sim::SimCluster, peers: &[&str]) -> Vec<String> {
    let ops = mesh_clusters::ClusterOps::new(cluster.name(), cluster.client().await.unwrap());
    let mut synced = Vec::new();
    for peer in peers {
        let status = ops.remote_cluster_status(peer).await.unwrap();
        if status.is_some_and(|s| s["syncStatus"] == "synced") {
            synced.push((*peer).to_owned());
        }
    }
    synced
}

#[actix_rt::test]
async fn adding_a_fourth_cluster_links_it_everywhere_and_removing_it_unlinks_it() {
    let setup = setup(4, false, false).await;
    let names = cluster_names(&setup.world);
    assert_succeeded(&run_command(&setup, multi_primary_command("grow", &names[..3])).await);

    let fourth = ClusterName::new(names[3].clone()).unwrap();
    let add = cluster_command(
        "grow",
        mesh_bus::command::AddCluster {
            cluster: ClusterSpec {
                name: fourth.clone(),
                role: ClusterRole::Master,
                network: "net-4".into(),
            },
        },
    );
    assert_succeeded(&run_command(&setup, add).await);
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    for cluster in setup.world.clusters() {
        let peers: Vec<&str> = all
            .iter()
            .copied()
            .filter(|n| *n != cluster.name())
            .collect();
        assert_eq!(
            synced_peers(cluster, &peers).await.len(),
            3,
            "{} sees every peer",
            cluster.name()
        );
    }
    assert_eq!(
        setup
            .store
            .list_member_clusters("grow")
            .await
            .unwrap()
            .len(),
        4
    );

    let remove = cluster_command(
        "grow",
        mesh_bus::command::RemoveCluster {
            cluster: fourth.clone(),
        },
    );
    assert_succeeded(&run_command(&setup, remove).await);
    assert_eq!(
        setup
            .store
            .list_member_clusters("grow")
            .await
            .unwrap()
            .len(),
        3
    );
    for cluster in &setup.world.clusters()[..3] {
        let ops = mesh_clusters::ClusterOps::new(cluster.name(), cluster.client().await.unwrap());
        let secret = mesh_clusters::ObjectRef {
            api_version: "v1".into(),
            kind: "Secret".into(),
            namespace: Some("istio-system".into()),
            name: format!("istio-remote-secret-{fourth}"),
        };
        assert!(
            ops.get(&secret).await.unwrap().is_none(),
            "{} still holds a secret for {fourth}",
            cluster.name()
        );
    }
    let fourth_cluster = setup.world.cluster(3);
    let ops = mesh_clusters::ClusterOps::new(
        fourth_cluster.name(),
        fourth_cluster.client().await.unwrap(),
    );
    for kind in managed_kinds() {
        let left = ops
            .list_labelled(kind.api_version, kind.kind, "mesh-manager.io/mesh=grow")
            .await
            .unwrap();
        assert!(left.is_empty(), "left in the removed cluster: {left:?}");
    }
    let rejected = run_command(
        &setup,
        cluster_command("grow", mesh_bus::command::RemoveCluster { cluster: fourth }),
    )
    .await;
    assert!(
        matches!(rejected, Event::CommandRejected(_)),
        "{rejected:?}"
    );
}

#[actix_rt::test]
async fn a_refused_cluster_stalls_the_install_visibly_and_clearing_the_fault_lets_it_finish() {
    let setup = setup(2, false, false).await;
    let names = cluster_names(&setup.world);
    setup.world.cluster(1).faults().set_partitioned(true);
    let create = multi_primary_command("faulty", &names);
    let mut events = setup
        .bus
        .subscribe_events(
            EventFilter::Mesh(tenant(), MeshName::new("faulty").unwrap()),
            StartAt::Beginning,
        )
        .await
        .unwrap();
    setup.bus.publish_command(&create).await.unwrap();

    // The reason shows up on the refusing cluster while the flow keeps retrying.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let reason = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            flow_report(&setup.store, "faulty").await
        );
        let members = setup.store.list_member_clusters("faulty").await.unwrap();
        if let Some(stalled) = members
            .iter()
            .find(|m| m.name == names[1] && !m.error.is_empty())
        {
            break stalled.error.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(reason.contains(&names[1]), "{reason}");
    setup.world.cluster(1).faults().set_partitioned(false);

    let finished = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(record) = events.next().await {
            if let Event::FlowFinished(finished) = record.unwrap().envelope.body {
                return finished;
            }
        }
        panic!("event stream ended");
    })
    .await
    .expect("the flow finished after the fault cleared");
    assert_eq!(
        finished.outcome,
        mesh_bus::event::FlowOutcome::Succeeded,
        "{:?}",
        finished.detail
    );
    let members = setup.store.list_member_clusters("faulty").await.unwrap();
    assert!(
        members
            .iter()
            .all(|m| m.phase == "Running" && m.error.is_empty()),
        "{members:?}"
    );
}

#[actix_rt::test]
async fn a_worker_killed_mid_install_is_replaced_and_the_install_converges_once() {
    let nats = mesh_testkit::nats::NatsServer::start();
    let root = mesh_testkit::nats::unique_root();
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::create();
    let store = Store::open(
        DatabaseTarget::parse(&database.url()).unwrap(),
        SecretBox::new(&SecretKey::generate()),
        8,
        true,
    )
    .await
    .unwrap();
    let world = World::builder()
        .clusters(3)
        .deploy_ready_delay(Duration::from_millis(300))
        .remote_sync_interval(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    support::register_world(&store, &world, "acme").await;
    let first = support::spawn_worker("first", store.clone(), nats.url().to_owned(), root.clone());
    let publisher = NatsBus::connect(nats.url(), BusConfig::with_root(root.clone()))
        .await
        .unwrap();
    publisher
        .publish_command(&multi_primary_command("phoenix", &cluster_names(&world)))
        .await
        .unwrap();

    // Kill the worker once the install is under way (the first cluster's gateway is up).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let flow_id = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            flow_report(&store, "phoenix").await
        );
        if let Some(flow) = store
            .list_flows("phoenix", 1)
            .await
            .unwrap()
            .into_iter()
            .next()
        {
            let tasks = store.list_tasks(flow.id).await.unwrap();
            if tasks
                .iter()
                .any(|t| t.name.starts_with("gateway:") && t.status == "Succeeded")
            {
                break flow.id;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    first.kill();
    let root_ca_before = store
        .mesh_secret("phoenix", "root-ca")
        .await
        .unwrap()
        .unwrap();
    let flow = store.get_flow(flow_id).await.unwrap().unwrap();
    assert_eq!(
        flow.status, "Running",
        "the killed worker left the flow unfinished"
    );

    // A new worker takes the partition over once the dead worker's lease expires, and resumes.
    let second = support::spawn_worker("second", store.clone(), nats.url().to_owned(), root);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            flow_report(&store, "phoenix").await
        );
        let flow = store.get_flow(flow_id).await.unwrap().unwrap();
        if flow.status != "Running" {
            assert_eq!(
                flow.status,
                "Succeeded",
                "{}",
                flow_report(&store, "phoenix").await
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    second.kill();
    let mesh = store
        .get_mesh(&TenantScope::All, "phoenix")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mesh.status, "Running");
    assert_eq!(
        store.list_flows("phoenix", 10).await.unwrap().len(),
        1,
        "one flow, resumed"
    );
    assert_eq!(
        store
            .mesh_secret("phoenix", "root-ca")
            .await
            .unwrap()
            .unwrap(),
        root_ca_before,
        "the mesh's trust root was not made twice"
    );
    for task in store.list_tasks(flow_id).await.unwrap() {
        assert_eq!(task.status, "Succeeded", "{task:?}");
    }
    let commands = store.list_commands("phoenix", 10).await.unwrap();
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].status, "Succeeded");
    drop(dir);
}

#[actix_rt::test]
async fn injection_namespaces_and_the_outbound_policy_are_set_by_their_own_commands() {
    use mesh_bus::command::{SetAutoInjection, SetOutboundTraffic};
    use mesh_clusters::ObjectRef;
    use mesh_core::NamespaceName;
    use mesh_core::spec::OutboundTrafficPolicy;

    let setup = setup(2, false, false).await;
    install_multi_primary(&setup, "tuned").await;
    let names = cluster_names(&setup.world);
    let ops = |index: usize| cluster_ops(&setup.world, index);
    let get = |kind: &str, api_version: &str, namespace: Option<&str>, name: &str| ObjectRef {
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: namespace.map(str::to_owned),
        name: name.into(),
    };

    let inject = SetAutoInjection {
        cluster: ClusterName::new(names[1].clone()).unwrap(),
        namespaces: vec![NamespaceName::new("shop").unwrap()],
    };
    assert_succeeded(&run_command(&setup, cluster_command("tuned", inject)).await);
    let shop = ops(1)
        .await
        .get(&get("Namespace", "v1", None, "shop"))
        .await
        .unwrap()
        .expect("the namespace exists in the second cluster");
    let labels = serde_json::to_value(&shop).unwrap()["metadata"]["labels"].clone();
    assert!(
        labels["istio-injection"] == "enabled" || labels["istio.io/rev"].is_string(),
        "injection label on shop: {labels}"
    );
    let first = ops(0)
        .await
        .get(&get("Namespace", "v1", None, "shop"))
        .await
        .unwrap();
    let first_labels =
        first.map(|n| serde_json::to_value(&n).unwrap()["metadata"]["labels"].clone());
    assert!(
        first_labels.is_none_or(|l| l["istio-injection"].is_null() && l["istio.io/rev"].is_null()),
        "the first cluster's shop is left alone"
    );

    // Turning it off again removes the label; a non-member is refused by name.
    let off = SetAutoInjection {
        cluster: ClusterName::new(names[1].clone()).unwrap(),
        namespaces: Vec::new(),
    };
    assert_succeeded(&run_command(&setup, cluster_command("tuned", off)).await);
    let shop = ops(1)
        .await
        .get(&get("Namespace", "v1", None, "shop"))
        .await
        .unwrap()
        .unwrap();
    let labels = serde_json::to_value(&shop).unwrap()["metadata"]["labels"].clone();
    assert!(
        labels["istio-injection"].is_null() && labels["istio.io/rev"].is_null(),
        "{labels}"
    );
    let stranger = SetAutoInjection {
        cluster: ClusterName::new("elsewhere").unwrap(),
        namespaces: vec![NamespaceName::new("shop").unwrap()],
    };
    assert_rejected(
        &run_command(&setup, cluster_command("tuned", stranger)).await,
        "elsewhere",
    );

    let strict = SetOutboundTraffic {
        policy: OutboundTrafficPolicy::RegistryOnly,
    };
    assert_succeeded(&run_command(&setup, cluster_command("tuned", strict)).await);
    for index in 0..2 {
        let istio = ops(index)
            .await
            .get(&get("Istio", "sailoperator.io/v1", None, "default"))
            .await
            .unwrap()
            .unwrap();
        let istio = serde_json::to_value(&istio).unwrap();
        assert_eq!(
            istio["spec"]["values"]["meshConfig"]["outboundTrafficPolicy"]["mode"], "REGISTRY_ONLY",
            "cluster {index}"
        );
    }
}
