//! Service governance end to end: the Istio bookinfo networking samples applied to a
//! multi-primary mesh land identically in every primary, unchanged objects cost no write, a
//! cluster refusing writes rolls the whole change back, broken bodies and stale generations are
//! refused with nothing written, a cluster's own objects stay in that cluster, and an edit or a
//! deletion made with `kubectl` in one cluster is reported and repaired.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use mesh_bus::command::{ApplyResources, ResourceChange, ResourceOp};
use mesh_bus::event::FlowOutcome;
use mesh_bus::{CommandEnvelope, Event};
use mesh_clusters::ObjectRef;
use mesh_core::MeshName;
use mesh_core::resources::parse_documents;
use mesh_sim::World;
use serde_json::{Value, json};
use support::harness::*;

const DESTINATION_RULES: &str =
    include_str!("../../core/data/istio/samples/destination-rule-all.yaml");
const ROUTES_ALL_V1: &str =
    include_str!("../../core/data/istio/samples/virtual-service-all-v1.yaml");
const GATEWAY: &str = include_str!("../../core/data/istio/samples/bookinfo-gateway.yaml");
const REVIEWS_80_20: &str =
    include_str!("../../core/data/istio/samples/virtual-service-reviews-80-20.yaml");
const REVIEWS_JASON: &str =
    include_str!("../../core/data/istio/samples/virtual-service-reviews-jason-v2-v3.yaml");

fn documents(texts: &[&str]) -> Vec<Value> {
    texts
        .iter()
        .flat_map(|t| parse_documents(t).unwrap())
        .collect()
}

fn apply_change(doc: &Value) -> ResourceChange {
    ResourceChange {
        op: ResourceOp::Apply,
        kind: doc["kind"].as_str().unwrap().to_owned(),
        namespace: doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned(),
        name: doc["metadata"]["name"].as_str().unwrap().to_owned(),
        body: Some(doc.clone()),
        expected_generation: None,
    }
}

fn resources_command(mesh: &str, changes: Vec<ResourceChange>) -> CommandEnvelope {
    scoped_command(mesh, None, changes)
}

fn scoped_command(
    mesh: &str,
    cluster: Option<&str>,
    changes: Vec<ResourceChange>,
) -> CommandEnvelope {
    CommandEnvelope::command(
        tenant(),
        MeshName::new(mesh).unwrap(),
        "user:alice",
        ApplyResources {
            cluster: cluster.map(|c| mesh_core::ClusterName::new(c).unwrap()),
            changes,
        },
    )
    .unwrap()
}

fn apply_command(mesh: &str, docs: &[Value]) -> CommandEnvelope {
    resources_command(mesh, docs.iter().map(apply_change).collect())
}

/// The live `spec` of an Istio object in cluster `index`, `None` when absent.
async fn live_spec(world: &World, index: usize, kind: &str, name: &str) -> Option<Value> {
    let api_version = if kind == "EnvoyFilter" {
        "networking.istio.io/v1alpha3"
    } else {
        "networking.istio.io/v1"
    };
    let target = ObjectRef {
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: Some("default".into()),
        name: name.into(),
    };
    let object = cluster_ops(world, index)
        .await
        .get(&target)
        .await
        .unwrap()?;
    Some(serde_json::to_value(object).unwrap()["spec"].clone())
}

fn writes(world: &World) -> u64 {
    world
        .clusters()
        .iter()
        .map(|c| {
            let verbs = c.requests_by_verb();
            ["create", "update", "patch", "delete"]
                .iter()
                .map(|v| verbs.get(v).copied().unwrap_or(0))
                .sum::<u64>()
        })
        .sum()
}

fn outcome(event: &Event) -> (FlowOutcome, String) {
    match event {
        Event::FlowFinished(finished) => (
            finished.outcome,
            finished.detail.clone().unwrap_or_default(),
        ),
        other => panic!("expected a finished flow, got {other:?}"),
    }
}

fn rejection(event: &Event) -> String {
    match event {
        Event::CommandRejected(rejected) => rejected.reason.clone(),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[actix_rt::test]
async fn bookinfo_rules_appear_identically_in_every_primary_and_deleting_one_removes_it_everywhere()
{
    let setup = setup(3, true, true).await;
    install_multi_primary(&setup, "shop").await;

    let docs = documents(&[DESTINATION_RULES, ROUTES_ALL_V1, GATEWAY]);
    assert_eq!(docs.len(), 10, "4 rules, 4 routes, a gateway and its route");
    let first = run_command(&setup, apply_command("shop", &docs)).await;
    assert_eq!(outcome(&first).0, FlowOutcome::Succeeded, "{first:?}");
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap();
        let name = doc["metadata"]["name"].as_str().unwrap();
        for index in 0..3 {
            let spec = live_spec(&setup.world, index, kind, name).await;
            assert_eq!(
                spec.as_ref(),
                Some(&doc["spec"]),
                "{kind} {name} in cluster {index}"
            );
        }
    }
    let desired = setup
        .store
        .list_resources("shop", Some(""), None, None)
        .await
        .unwrap();
    assert_eq!(desired.len(), 10);
    assert!(
        desired
            .iter()
            .all(|r| r.generation == 1 && r.updated_by == "user:alice")
    );

    // The same batch again: nothing differs, so no cluster is written to.
    let before = writes(&setup.world);
    let again = run_command(&setup, apply_command("shop", &docs)).await;
    assert_eq!(outcome(&again).0, FlowOutcome::Succeeded);
    assert_eq!(
        writes(&setup.world),
        before,
        "unchanged objects cost no write"
    );

    // A weighted split: exactly one write per primary.
    let split = documents(&[REVIEWS_80_20]);
    let before = writes(&setup.world);
    let changed = run_command(&setup, apply_command("shop", &split)).await;
    assert_eq!(outcome(&changed).0, FlowOutcome::Succeeded);
    assert_eq!(
        writes(&setup.world) - before,
        3,
        "one write per changed object per cluster"
    );
    for index in 0..3 {
        let spec = live_spec(&setup.world, index, "VirtualService", "reviews")
            .await
            .unwrap();
        assert_eq!(spec["http"][0]["route"][1]["weight"], json!(20));
    }

    let delete = resources_command(
        "shop",
        vec![ResourceChange {
            op: ResourceOp::Delete,
            kind: "VirtualService".into(),
            namespace: "default".into(),
            name: "ratings".into(),
            body: None,
            expected_generation: Some(1),
        }],
    );
    assert_eq!(
        outcome(&run_command(&setup, delete).await).0,
        FlowOutcome::Succeeded
    );
    for index in 0..3 {
        assert_eq!(
            live_spec(&setup.world, index, "VirtualService", "ratings").await,
            None,
            "ratings route left in cluster {index}"
        );
    }
}

#[actix_rt::test]
async fn a_cluster_refusing_writes_rolls_the_change_back_everywhere() {
    let setup = setup(3, false, false).await;
    install_multi_primary(&setup, "shop").await;
    let base = documents(&[DESTINATION_RULES, REVIEWS_80_20]);
    assert_eq!(
        outcome(&run_command(&setup, apply_command("shop", &base)).await).0,
        FlowOutcome::Succeeded
    );
    let refusing = setup.world.cluster(2);
    refusing
        .faults()
        .set_writes_denied(Some("VirtualService changes are frozen"));

    let change = documents(&[REVIEWS_JASON]);
    let finished = run_command(&setup, apply_command("shop", &change)).await;
    let (result, detail) = outcome(&finished);
    assert_eq!(result, FlowOutcome::RolledBack, "{detail}");
    assert!(
        detail.contains(refusing.name()) && detail.contains("frozen"),
        "the reason names the cluster and its error: {detail}"
    );
    refusing.faults().set_writes_denied(None);
    for index in 0..3 {
        let spec = live_spec(&setup.world, index, "VirtualService", "reviews")
            .await
            .unwrap();
        assert_eq!(
            spec, base[4]["spec"],
            "cluster {index} holds the previous version"
        );
    }
    let reviews = setup
        .store
        .list_resources("shop", Some(""), Some("VirtualService"), None)
        .await
        .unwrap();
    assert_eq!(reviews.len(), 1);
    assert_eq!(
        reviews[0].generation, 1,
        "the desired state is restored too"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&reviews[0].body).unwrap()["spec"],
        base[4]["spec"]
    );
    let flows = setup.store.list_flows("shop", 1).await.unwrap();
    assert_eq!(flows[0].status, "RolledBack");
    let tasks: Vec<String> = setup
        .store
        .list_tasks(flows[0].id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| format!("{} {}", t.name, t.status))
        .collect();
    assert!(
        tasks
            .iter()
            .any(|t| t.starts_with("restore-desired") && t.ends_with("Succeeded")),
        "{tasks:?}"
    );
}

#[actix_rt::test]
async fn broken_bodies_and_stale_generations_are_refused_with_nothing_written() {
    let setup = setup(2, false, false).await;
    install_multi_primary(&setup, "shop").await;
    let before = writes(&setup.world);

    let broken = [
        (
            json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                   "metadata": {"name": "reviews"}, "spec": {"hosts": "reviews"}}),
            "spec.hosts",
        ),
        (
            json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                   "metadata": {"name": "reviews"},
                   "spec": {"hosts": ["reviews"], "http": [{"retries": {"attempts": 3}, "bogus": 1,
                            "route": [{"destination": {"host": "reviews"}}]}]}}),
            "spec.http[0].bogus",
        ),
        (
            json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                   "metadata": {"name": "reviews"},
                   "spec": {"hosts": ["reviews"], "http": [{"match": [{"uri": {"regex": "(unclosed"}}],
                            "route": [{"destination": {"host": "reviews"}}]}]}}),
            "spec.http[0].match[0].uri.regex",
        ),
        (
            json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                   "metadata": {"name": "Reviews_V1"},
                   "spec": {"hosts": ["reviews"]}}),
            "metadata.name",
        ),
    ];
    for (body, path) in broken {
        let command = resources_command("shop", vec![apply_change(&body)]);
        let reason = rejection(&run_command(&setup, command).await);
        assert!(reason.contains(path), "{path} not named in: {reason}");
    }
    let huge = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "huge"},
        "spec": {"hosts": ["reviews"], "http": [{"name": "x".repeat(5 * 1024 * 1024),
                 "route": [{"destination": {"host": "reviews"}}]}]}});
    let reason =
        rejection(&run_command(&setup, resources_command("shop", vec![apply_change(&huge)])).await);
    assert!(reason.contains("bytes"), "{reason}");

    let docs = documents(&[DESTINATION_RULES]);
    let mut stale = apply_change(&docs[0]);
    stale.expected_generation = Some(4);
    let reason = rejection(&run_command(&setup, resources_command("shop", vec![stale])).await);
    assert!(reason.contains("does not exist"), "{reason}");

    assert_eq!(writes(&setup.world), before, "no cluster was written to");
    assert!(
        setup
            .store
            .list_resources("shop", None, None, None)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Waits until `check` holds for cluster `index`'s object, polling the simulated cluster.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("{what} did not happen within 60 s");
}

/// The next `DriftDetected` event of the mesh.
async fn next_drift(
    events: &mut (
             impl futures::Stream<Item = Result<mesh_bus::EventRecord, mesh_bus::BusError>> + Unpin
         ),
) -> mesh_bus::event::DriftDetected {
    use futures::StreamExt as _;
    let wait = async {
        while let Some(record) = events.next().await {
            if let Event::DriftDetected(drift) = record.unwrap().envelope.body {
                return drift;
            }
        }
        panic!("event stream ended");
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), wait)
        .await
        .expect("drift is reported within a minute")
}

/// Edits made directly in a cluster, as an operator would: with `kubectl` when it is installed
/// (required under `CI=true`), else through the kube client with another field manager.
struct ByHand {
    kubeconfig: Option<(tempfile::TempDir, std::path::PathBuf)>,
    api: kube::Api<kube::api::DynamicObject>,
}

impl ByHand {
    async fn new(cluster: &mesh_sim::SimCluster) -> Self {
        let kubectl = std::process::Command::new("kubectl")
            .args(["version", "--client"])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            kubectl || std::env::var("CI").as_deref() != Ok("true"),
            "kubectl is required under CI=true (apt-get install kubernetes-client)"
        );
        let kubeconfig = kubectl.then(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("kubeconfig");
            std::fs::write(&path, cluster.kubeconfig_yaml()).unwrap();
            (dir, path)
        });
        let resource = kube::discovery::ApiResource {
            group: "networking.istio.io".into(),
            version: "v1".into(),
            api_version: "networking.istio.io/v1".into(),
            kind: "VirtualService".into(),
            plural: "virtualservices".into(),
        };
        let api = kube::Api::namespaced_with(cluster.client().await.unwrap(), "default", &resource);
        Self { kubeconfig, api }
    }

    async fn kubectl(&self, args: &[&str]) -> bool {
        let Some((_, path)) = &self.kubeconfig else {
            return false;
        };
        let mut command = std::process::Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(path)
            .args(["-n", "default"])
            .args(args);
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        true
    }

    async fn patch_reviews(&self, patch: &Value) {
        let text = patch.to_string();
        if !self
            .kubectl(&[
                "patch",
                "virtualservice",
                "reviews",
                "--type",
                "merge",
                "-p",
                &text,
            ])
            .await
        {
            self.api
                .patch(
                    "reviews",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(patch),
                )
                .await
                .unwrap();
        }
    }

    async fn delete_reviews(&self) {
        if !self.kubectl(&["delete", "virtualservice", "reviews"]).await {
            self.api
                .delete("reviews", &kube::api::DeleteParams::default())
                .await
                .unwrap();
        }
    }
}

#[actix_rt::test]
async fn an_edit_or_deletion_made_in_a_cluster_is_reported_and_repaired() {
    let setup = setup(2, false, false).await;
    install_multi_primary(&setup, "shop").await;
    let docs = documents(&[DESTINATION_RULES, ROUTES_ALL_V1]);
    assert_eq!(
        outcome(&run_command(&setup, apply_command("shop", &docs)).await).0,
        FlowOutcome::Succeeded
    );
    let desired = live_spec(&setup.world, 1, "VirtualService", "reviews")
        .await
        .unwrap();
    let mut events = setup
        .bus
        .subscribe_events(
            mesh_bus::EventFilter::Mesh(tenant(), MeshName::new("shop").unwrap()),
            mesh_bus::StartAt::New,
        )
        .await
        .unwrap();

    // Someone edits the route in the second cluster by hand, with kubectl.
    let cluster = setup.world.cluster(1);
    let by_hand = ByHand::new(cluster).await;
    let patch = json!({"spec": {"http": [{"route": [{"destination": {"host": "reviews", "subset": "v3"}}]}]}});
    by_hand.patch_reviews(&patch).await;
    let drift = next_drift(&mut events).await;
    assert_eq!(drift.cluster.as_str(), cluster.name());
    assert_eq!(drift.resource.name, "reviews");
    assert_eq!(drift.drift, "changed");
    assert!(
        drift.fields.iter().any(|f| f.contains("subset")),
        "{:?}",
        drift.fields
    );
    assert_eq!(drift.policy, "repair");
    let world = &setup.world;
    eventually("the edited route is repaired", async || {
        live_spec(world, 1, "VirtualService", "reviews")
            .await
            .as_ref()
            == Some(&desired)
    })
    .await;

    // And a deletion.
    by_hand.delete_reviews().await;
    let drift = next_drift(&mut events).await;
    assert_eq!(drift.drift, "deleted");
    eventually("the deleted route is back", async || {
        live_spec(world, 1, "VirtualService", "reviews")
            .await
            .as_ref()
            == Some(&desired)
    })
    .await;
    let store = &setup.store;
    eventually("both repairs are recorded as succeeded flows", async || {
        let repairs: Vec<String> = store
            .list_flows("shop", 10)
            .await
            .unwrap()
            .into_iter()
            .filter(|f| f.def_name == "repair-drift")
            .map(|f| f.status)
            .collect();
        repairs.len() >= 2 && repairs.iter().all(|s| s == "Succeeded")
    })
    .await;
}

#[actix_rt::test]
async fn a_clusters_own_object_goes_to_that_cluster_only_and_never_doubles_a_mesh_wide_one() {
    let setup = setup(2, false, false).await;
    install_multi_primary(&setup, "shop").await;
    let second = setup.world.cluster(1).name().to_owned();
    let entry = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "local-db", "namespace": "default"},
        "spec": {
            "hosts": ["db.internal.example.com"],
            "ports": [{"number": 5432, "name": "tcp", "protocol": "TCP"}],
            "resolution": "DNS",
        },
    });
    let own = scoped_command("shop", Some(&second), vec![apply_change(&entry)]);
    assert_eq!(
        outcome(&run_command(&setup, own).await).0,
        FlowOutcome::Succeeded
    );
    assert!(
        live_spec(&setup.world, 1, "ServiceEntry", "local-db")
            .await
            .is_some()
    );
    assert!(
        live_spec(&setup.world, 0, "ServiceEntry", "local-db")
            .await
            .is_none(),
        "the other primary never gets it"
    );
    let rows = setup
        .store
        .list_resources("shop", Some(&second), None, None)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);

    // The same object mesh-wide would give the cluster two versions of it: refused.
    let doubled = run_command(&setup, apply_command("shop", std::slice::from_ref(&entry))).await;
    let reason = rejection(&doubled);
    assert!(
        reason.contains(&second) && reason.contains("local-db"),
        "{reason}"
    );

    // Deleting it in its scope removes it from its cluster.
    let delete = ResourceChange {
        op: ResourceOp::Delete,
        body: None,
        ..apply_change(&entry)
    };
    let deleted = scoped_command("shop", Some(&second), vec![delete]);
    assert_eq!(
        outcome(&run_command(&setup, deleted).await).0,
        FlowOutcome::Succeeded
    );
    assert!(
        live_spec(&setup.world, 1, "ServiceEntry", "local-db")
            .await
            .is_none()
    );

    // A member that is not in the mesh is refused by name.
    let stranger = scoped_command("shop", Some("nowhere"), vec![apply_change(&entry)]);
    let reason = rejection(&run_command(&setup, stranger).await);
    assert!(
        reason.contains("nowhere") && reason.contains("not a member"),
        "{reason}"
    );
}
