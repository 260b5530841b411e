//! Behaviour inside simulated clusters: workload controllers, the Sail operator, multi-cluster
//! discovery and run-time faults, observed through the unmodified `kube` client.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use mesh_sim::{SimCluster, World};
use serde_json::{Value, json};

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ssa() -> PatchParams {
    PatchParams::apply("mesh-manager").force()
}

async fn apply_ns(client: &Client, name: &str, labels: Value) {
    let nss: Api<Namespace> = Api::all(client.clone());
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
    nss.patch(name, &ssa(), &Patch::Apply(&body)).await.unwrap();
}

fn sail(client: &Client, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("sailoperator.io", "v1", kind);
    Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk))
}

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}},
    })
}

fn available(d: &Deployment) -> bool {
    let s = d.status.clone().unwrap_or_default();
    s.observed_generation == d.metadata.generation
        && s.available_replicas == Some(2)
        && s.conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True"))
}

fn condition(obj: &DynamicObject, kind: &str) -> Option<String> {
    let conds = obj.data["status"]["conditions"].as_array()?;
    let c = conds.iter().find(|c| c["type"].as_str() == Some(kind))?;
    Some(c["status"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn deployments_become_ready_after_the_delay_unless_held() {
    let world = World::builder()
        .deploy_ready_delay(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let c = world.cluster(0);
    let client = c.client().await.unwrap();
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    deps.patch("web", &ssa(), &Patch::Apply(&deployment("web")))
        .await
        .unwrap();
    let cond =
        kube::runtime::wait::await_condition(deps.clone(), "web", |d: Option<&Deployment>| {
            d.is_some_and(available)
        });
    tokio::time::timeout(Duration::from_secs(5), cond)
        .await
        .unwrap()
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "ready too early"
    );
    // A rollout while the fault is on never completes; healing lets it finish.
    c.faults().set_deployments_never_ready(true);
    deps.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"template": {"metadata": {"annotations": {"restartedAt": "now"}}}}}),
        ),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let d = deps.get("web").await.unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    assert!(!available(&d), "held rollout must not be ready");
    c.faults().set_deployments_never_ready(false);
    eventually("rollout after heal", Duration::from_secs(5), || {
        let deps = deps.clone();
        async move { available(&deps.get("web").await.unwrap()) }
    })
    .await;
}

#[tokio::test]
async fn load_balancers_get_addresses_from_the_pool_unless_faulted() {
    let world = World::builder()
        .lb_pool(vec!["127.10.0.7".into()])
        .start()
        .await
        .unwrap();
    let c = world.cluster(0);
    let svcs: Api<Service> = Api::namespaced(c.client().await.unwrap(), "default");
    let svc = |name: &str| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"type": "LoadBalancer", "ports": [{"port": 15443}]}});
    let ip_of = |svcs: Api<Service>, name: &'static str| async move {
        svcs.get(name)
            .await
            .unwrap()
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|l| l.ingress)
            .and_then(|i| i.first().and_then(|i| i.ip.clone()))
    };
    svcs.patch("ew", &ssa(), &Patch::Apply(&svc("ew")))
        .await
        .unwrap();
    eventually("lb address", Duration::from_secs(5), || async {
        ip_of(svcs.clone(), "ew").await.as_deref() == Some("127.10.0.7")
    })
    .await;
    c.faults().set_lb_never_assigned(true);
    svcs.patch("ew2", &ssa(), &Patch::Apply(&svc("ew2")))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ip_of(svcs.clone(), "ew2").await, None);
    c.faults().set_lb_never_assigned(false);
    eventually("lb address after heal", Duration::from_secs(5), || async {
        ip_of(svcs.clone(), "ew2").await.is_some()
    })
    .await;
}

async fn reader_token(c: &SimCluster) -> String {
    let client = c.client().await.unwrap();
    apply_ns(&client, "istio-system", json!({})).await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "istio-system");
    sas.patch("istio-reader", &ssa(), &Patch::Apply(&json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "istio-reader"}}))).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(client, "istio-system");
    let body = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "istio-reader-token", "annotations": {"kubernetes.io/service-account.name": "istio-reader"}},
        "type": "kubernetes.io/service-account-token",
    });
    secrets
        .patch("istio-reader-token", &ssa(), &Patch::Apply(&body))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(t) = secrets
            .get("istio-reader-token")
            .await
            .unwrap()
            .data
            .and_then(|d| d.get("token").cloned())
        {
            return String::from_utf8(t.0).unwrap();
        }
        assert!(Instant::now() < deadline, "token never filled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn client_with_token(c: &SimCluster, token: &str) -> Client {
    let kc = kube::config::Kubeconfig::from_yaml(&c.kubeconfig_yaml_for("reader", token)).unwrap();
    mesh_sim::cluster::client_from_kubeconfig(kc).await.unwrap()
}

#[tokio::test]
async fn service_account_tokens_authenticate_until_revoked() {
    let world = World::start(1).await.unwrap();
    let c = world.cluster(0);
    let token = reader_token(c).await;
    let reader = client_with_token(c, &token).await;
    let nss: Api<Namespace> = Api::all(reader.clone());
    assert!(nss.list(&ListParams::default()).await.is_ok());
    assert!(c.revoke_token(&token));
    match nss.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 401),
        other => panic!("expected 401, got {other:?}"),
    }
    // Deleting the Secret revokes a token too.
    let secrets: Api<Secret> = Api::namespaced(c.client().await.unwrap(), "istio-system");
    secrets
        .delete("istio-reader-token", &Default::default())
        .await
        .unwrap();
    let token2 = reader_token(c).await;
    assert_ne!(token, token2);
    let nss2: Api<Namespace> = Api::all(client_with_token(c, &token2).await);
    assert!(nss2.list(&ListParams::default()).await.is_ok());
    secrets
        .delete("istio-reader-token", &Default::default())
        .await
        .unwrap();
    eventually("revoked on delete", Duration::from_secs(3), || {
        let nss2 = nss2.clone();
        async move { nss2.list(&ListParams::default()).await.is_err() }
    })
    .await;
}

fn istio(name: &str, version: &str, strategy: &str, profile: Option<&str>) -> Value {
    let mut v = json!({
        "apiVersion": "sailoperator.io/v1", "kind": "Istio",
        "metadata": {"name": name},
        "spec": {"version": version, "namespace": "istio-system", "updateStrategy": {"type": strategy, "inactiveRevisionDeletionGracePeriodSeconds": 0},
                 "values": {"global": {"meshID": "mesh1", "multiCluster": {"clusterName": "cluster-1"}, "network": "net1"}}},
    });
    if let Some(p) = profile {
        v["spec"]["profile"] = json!(p);
    }
    v
}

#[tokio::test]
async fn sail_in_place_istio_installs_istiod_and_reports_ready_and_in_use() {
    let world = World::builder()
        .deploy_ready_delay(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let c = world.cluster(0);
    let client = c.client().await.unwrap();
    let istios = sail(&client, "Istio");
    // Without its namespace the install is not reconciled.
    istios
        .patch(
            "default",
            &ssa(),
            &Patch::Apply(&istio("default", "v1.30.3", "InPlace", None)),
        )
        .await
        .unwrap();
    eventually(
        "ReconcileError without namespace",
        Duration::from_secs(5),
        || {
            let istios = istios.clone();
            async move {
                istios.get("default").await.unwrap().data["status"]["state"] == "ReconcileError"
            }
        },
    )
    .await;
    apply_ns(&client, "istio-system", json!({})).await;
    eventually("Istio ready", Duration::from_secs(5), || {
        let istios = istios.clone();
        async move {
            condition(&istios.get("default").await.unwrap(), "Ready").as_deref() == Some("True")
        }
    })
    .await;
    let i = istios.get("default").await.unwrap();
    assert_eq!(i.data["status"]["activeRevisionName"], "default");
    assert_eq!(i.data["status"]["revisions"]["total"], 1);
    assert_eq!(i.data["status"]["state"], "Healthy");
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "istio-system");
    assert!(deps.get("istiod").await.is_ok());
    let svcs: Api<Service> = Api::namespaced(client.clone(), "istio-system");
    assert!(svcs.get("istiod").await.is_ok());
    let hooks: Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
        Api::all(client.clone());
    assert!(hooks.get("istio-sidecar-injector").await.is_ok());
    // A namespace with istio-injection=enabled uses the revision.
    apply_ns(&client, "bookinfo", json!({"istio-injection": "enabled"})).await;
    eventually("inUse", Duration::from_secs(5), || {
        let istios = istios.clone();
        async move { istios.get("default").await.unwrap().data["status"]["revisions"]["inUse"] == 1 }
    })
    .await;
    // Crash-looping istiod makes the Istio unready; healing recovers.
    c.faults().set_istiod_crashloop(true);
    eventually("unready on crashloop", Duration::from_secs(5), || {
        let istios = istios.clone();
        async move {
            condition(&istios.get("default").await.unwrap(), "Ready").as_deref() == Some("False")
        }
    })
    .await;
    c.faults().set_istiod_crashloop(false);
    eventually("ready after heal", Duration::from_secs(5), || {
        let istios = istios.clone();
        async move {
            condition(&istios.get("default").await.unwrap(), "Ready").as_deref() == Some("True")
        }
    })
    .await;
    // Deleting the Istio removes its revision and istiod.
    istios.delete("default", &Default::default()).await.unwrap();
    eventually("istiod removed", Duration::from_secs(5), || {
        let deps = deps.clone();
        async move { deps.get("istiod").await.is_err() }
    })
    .await;
}

#[tokio::test]
async fn sail_revision_based_upgrade_keeps_old_revision_while_in_use() {
    let world = World::builder()
        .deploy_ready_delay(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let client = world.cluster(0).client().await.unwrap();
    apply_ns(&client, "istio-system", json!({})).await;
    let istios = sail(&client, "Istio");
    let revs = sail(&client, "IstioRevision");
    let tags = sail(&client, "IstioRevisionTag");
    istios
        .patch(
            "default",
            &ssa(),
            &Patch::Apply(&istio("default", "v1.29.0", "RevisionBased", None)),
        )
        .await
        .unwrap();
    let old = "default-v1-29-0";
    eventually("old revision ready", Duration::from_secs(5), || {
        let revs = revs.clone();
        async move {
            revs.get(old)
                .await
                .ok()
                .and_then(|r| condition(&r, "Ready"))
                .as_deref()
                == Some("True")
        }
    })
    .await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "istio-system");
    assert!(deps.get(&format!("istiod-{old}")).await.is_ok());
    apply_ns(&client, "app", json!({"istio.io/rev": old})).await;
    istios
        .patch(
            "default",
            &ssa(),
            &Patch::Apply(&istio("default", "v1.30.3", "RevisionBased", None)),
        )
        .await
        .unwrap();
    let new = "default-v1-30-3";
    eventually("two revisions", Duration::from_secs(5), || {
        let istios = istios.clone();
        async move {
            let s = istios.get("default").await.unwrap().data["status"].clone();
            s["activeRevisionName"] == new
                && s["revisions"]["total"] == 2
                && s["revisions"]["ready"] == 2
                && s["revisions"]["inUse"] == 1
        }
    })
    .await;
    // A tag pointing at the Istio follows its active revision; moving the namespace to the
    // tag frees the old revision, which is then removed.
    tags.patch("prod", &ssa(), &Patch::Apply(&json!({"apiVersion": "sailoperator.io/v1", "kind": "IstioRevisionTag", "metadata": {"name": "prod"}, "spec": {"targetRef": {"kind": "Istio", "name": "default"}}}))).await.unwrap();
    apply_ns(&client, "app", json!({"istio.io/rev": "prod"})).await;
    eventually(
        "tag resolved and old revision gone",
        Duration::from_secs(8),
        || {
            let (tags, revs) = (tags.clone(), revs.clone());
            async move {
                let t = tags.get("prod").await.unwrap();
                t.data["status"]["istioRevision"] == new
                    && condition(&t, "InUse").as_deref() == Some("True")
                    && revs.get(old).await.is_err()
            }
        },
    )
    .await;
    assert!(condition(&revs.get(new).await.unwrap(), "InUse").as_deref() == Some("True"));
    eventually("old istiod gone", Duration::from_secs(5), || {
        let deps = deps.clone();
        async move { deps.get(&format!("istiod-{old}")).await.is_err() }
    })
    .await;
}

#[tokio::test]
async fn sail_remote_profile_installs_no_istiod() {
    let world = World::start(1).await.unwrap();
    let client = world.cluster(0).client().await.unwrap();
    apply_ns(&client, "istio-system", json!({})).await;
    let istios = sail(&client, "Istio");
    let mut body = istio("default", "v1.30.3", "InPlace", Some("remote"));
    body["spec"]["values"]["global"]["remotePilotAddress"] = json!("127.200.1.1");
    istios
        .patch("default", &ssa(), &Patch::Apply(&body))
        .await
        .unwrap();
    eventually("remote ready", Duration::from_secs(5), || {
        let istios = istios.clone();
        async move {
            condition(&istios.get("default").await.unwrap(), "Ready").as_deref() == Some("True")
        }
    })
    .await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "istio-system");
    assert!(
        deps.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // An unsupported version is a reconcile error.
    istios
        .patch(
            "default",
            &ssa(),
            &Patch::Apply(&istio("default", "v0.1.0", "InPlace", None)),
        )
        .await
        .unwrap();
    eventually("ReconcileError", Duration::from_secs(5), || {
        let istios = istios.clone();
        async move { istios.get("default").await.unwrap().data["status"]["state"] == "ReconcileError" }
    })
    .await;
}

fn remote_secret(name: &str, kubeconfig: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("istio-remote-secret-{name}"), "namespace": "istio-system",
                     "labels": {"istio/multiCluster": "true"}, "annotations": {"networking.istio.io/cluster": name}},
        "stringData": {name: kubeconfig},
    })
}

#[tokio::test]
async fn remote_secrets_with_valid_tokens_sync_and_broken_ones_do_not() {
    let world = World::builder()
        .clusters(3)
        .deploy_ready_delay(Duration::from_millis(50))
        .remote_sync_interval(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let (c1, c2, c3) = (world.cluster(0), world.cluster(1), world.cluster(2));
    let client1 = c1.client().await.unwrap();
    apply_ns(&client1, "istio-system", json!({})).await;
    sail(&client1, "Istio")
        .patch(
            "default",
            &ssa(),
            &Patch::Apply(&istio("default", "v1.30.3", "InPlace", None)),
        )
        .await
        .unwrap();
    let token2 = reader_token(c2).await;
    let svcs2: Api<Service> = Api::namespaced(c2.client().await.unwrap(), "default");
    svcs2.patch("reviews", &ssa(), &Patch::Apply(&json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews"}, "spec": {"ports": [{"port": 9080}]}}))).await.unwrap();
    let secrets1: Api<Secret> = Api::namespaced(client1.clone(), "istio-system");
    secrets1
        .patch(
            "istio-remote-secret-cluster-2",
            &ssa(),
            &Patch::Apply(&remote_secret(
                "cluster-2",
                &c2.kubeconfig_yaml_for("istio-reader", &token2),
            )),
        )
        .await
        .unwrap();
    secrets1
        .patch(
            "istio-remote-secret-cluster-3",
            &ssa(),
            &Patch::Apply(&remote_secret(
                "cluster-3",
                &c3.kubeconfig_yaml_for("istio-reader", "wrong-token"),
            )),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client1.clone(), "istio-system");
    let entry = |cms: Api<ConfigMap>, cluster: &'static str| async move {
        let cm = cms.get("istiod-remote-clusters").await.ok()?;
        let raw = cm.data?.get(cluster)?.clone();
        serde_json::from_str::<Value>(&raw).ok()
    };
    eventually(
        "cluster-2 synced, cluster-3 failed",
        Duration::from_secs(10),
        || {
            let cms = cms.clone();
            async move {
                let two = entry(cms.clone(), "cluster-2").await;
                let three = entry(cms, "cluster-3").await;
                two.is_some_and(|e| {
                    e["syncStatus"] == "synced"
                        && e["services"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|s| s == "default/reviews")
                }) && three.is_some_and(|e| e["syncStatus"] == "failed")
            }
        },
    )
    .await;
    // A partition of cluster-2 shows up as not synced.
    c2.faults().set_partitioned(true);
    eventually(
        "cluster-2 failed when partitioned",
        Duration::from_secs(10),
        || {
            let cms = cms.clone();
            async move {
                entry(cms, "cluster-2")
                    .await
                    .is_some_and(|e| e["syncStatus"] == "failed")
            }
        },
    )
    .await;
    c2.faults().set_partitioned(false);
    eventually(
        "cluster-2 synced after heal",
        Duration::from_secs(10),
        || {
            let cms = cms.clone();
            async move {
                entry(cms, "cluster-2")
                    .await
                    .is_some_and(|e| e["syncStatus"] == "synced")
            }
        },
    )
    .await;
    let _ = base64::engine::general_purpose::STANDARD.encode("");
}

#[tokio::test]
async fn api_faults_add_latency_errors_and_refuse_connections() {
    let world = World::start(1).await.unwrap();
    let c = world.cluster(0);
    let nss: Api<Namespace> = Api::all(c.client().await.unwrap());
    c.faults().set_latency(Duration::from_millis(300));
    let t = Instant::now();
    nss.list(&ListParams::default()).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
    c.faults().set_latency(Duration::ZERO);
    c.faults().set_error_rate(1.0);
    match nss.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (500, "InternalError")),
        other => panic!("expected 500, got {other:?}"),
    }
    c.faults().set_error_rate(0.0);
    c.faults().set_partitioned(true);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        std::net::TcpStream::connect(c.addr()).is_err(),
        "partitioned cluster refuses connections"
    );
    assert!(nss.list(&ListParams::default()).await.is_err());
    c.faults().set_partitioned(false);
    eventually("reachable after heal", Duration::from_secs(5), || {
        let nss = nss.clone();
        async move { nss.list(&ListParams::default()).await.is_ok() }
    })
    .await;
    // Revoking the admin token locks the admin kubeconfig out.
    let token = c.token().to_string();
    c.revoke_token(&token);
    match nss.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 401),
        other => panic!("expected 401, got {other:?}"),
    }
    let _ = PostParams::default();
}

#[tokio::test]
async fn sample_app_emits_istio_metrics_and_sampled_traces() {
    let world = World::start(1).await.unwrap();
    let c = world.cluster(0);
    let dp = c.dataplane();
    dp.deploy_bookinfo("bookinfo").unwrap();
    let client = c.client().await.unwrap();
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "bookinfo");
    assert_eq!(
        deps.list(&ListParams::default()).await.unwrap().items.len(),
        7
    );
    // 100% sampling through a mesh-wide Telemetry resource.
    apply_ns(&client, "istio-system", json!({})).await;
    let tel_gvk = GroupVersionKind::gvk("telemetry.istio.io", "v1", "Telemetry");
    let tel: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "istio-system",
        &ApiResource::from_gvk(&tel_gvk),
    );
    tel.patch("mesh-default", &ssa(), &Patch::Apply(&json!({
        "apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry", "metadata": {"name": "mesh-default", "namespace": "istio-system"},
        "spec": {"tracing": [{"randomSamplingPercentage": 100.0}]},
    }))).await.unwrap();
    dp.set_rate("bookinfo", 200.0);
    dp.set_error_ratio("bookinfo", "ratings", 0.5);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = reqwest_get(&dp.metrics_url()).await;
    let line = body
        .lines()
        .find(|l| {
            l.starts_with(
                "istio_requests_total{reporter=\"destination\",source_workload=\"reviews-v2\"",
            ) && l.contains("response_code=\"503\"")
        })
        .expect("503s from ratings");
    for label in [
        "destination_service=\"ratings.bookinfo.svc.cluster.local\"",
        "source_cluster=\"cluster-1\"",
        "destination_workload=\"ratings-v1\"",
    ] {
        assert!(line.contains(label), "{line}");
    }
    assert!(body.contains("istio_request_duration_milliseconds_bucket{"));
    assert!(body.contains("istio_tcp_sent_bytes_total{"));
    let services: Value =
        serde_json::from_str(&reqwest_get(&format!("{}/api/services", dp.jaeger_url())).await)
            .unwrap();
    assert!(
        services["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "productpage.bookinfo")
    );
    let traces: Value = serde_json::from_str(
        &reqwest_get(&format!(
            "{}/api/traces?service=productpage.bookinfo&limit=5",
            dp.jaeger_url()
        ))
        .await,
    )
    .unwrap();
    let traces = traces["data"].as_array().unwrap();
    assert_eq!(traces.len(), 5);
    assert!(traces[0]["spans"].as_array().unwrap().len() >= 3);
}

/// A minimal HTTP GET over a TCP stream (the telemetry listener is plain HTTP/1.1).
async fn reqwest_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((len, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(len.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        return out;
    }
    body.to_string()
}

#[tokio::test]
async fn services_get_endpoints_for_the_ready_replicas_they_select() {
    use k8s_openapi::api::core::v1::Endpoints;
    let world = World::start(1).await.unwrap();
    let c = world.cluster(0);
    c.dataplane().deploy_bookinfo("bookinfo").unwrap();
    let client = c.client().await.unwrap();
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "bookinfo");
    let ready_of = |e: &Endpoints| -> Vec<String> {
        e.subsets
            .iter()
            .flatten()
            .flat_map(|s| s.addresses.iter().flatten())
            .filter_map(|a| a.target_ref.as_ref().and_then(|t| t.name.clone()))
            .collect()
    };
    eventually(
        "reviews has three ready endpoints",
        Duration::from_secs(10),
        || {
            let endpoints = endpoints.clone();
            async move {
                endpoints
                    .get_opt("reviews")
                    .await
                    .unwrap()
                    .is_some_and(|e| ready_of(&e).len() == 3)
            }
        },
    )
    .await;
    let reviews = endpoints.get("reviews").await.unwrap();
    let mut pods = ready_of(&reviews);
    pods.sort();
    assert_eq!(pods, ["reviews-v1-0", "reviews-v2-0", "reviews-v3-0"]);
    let port = &reviews.subsets.as_ref().unwrap()[0].ports.as_ref().unwrap()[0];
    assert_eq!((port.port, port.name.as_deref()), (9080, Some("http")));

    // Scaling a version up adds an address (not ready until the Deployment is); deleting the
    // Service removes its Endpoints.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "bookinfo");
    deployments
        .patch(
            "reviews-v3",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    eventually(
        "reviews has four endpoints",
        Duration::from_secs(10),
        || {
            let endpoints = endpoints.clone();
            async move {
                let e = endpoints.get("reviews").await.unwrap();
                e.subsets
                    .iter()
                    .flatten()
                    .map(|s| {
                        s.addresses.as_ref().map_or(0, Vec::len)
                            + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
                    })
                    .sum::<usize>()
                    == 4
            }
        },
    )
    .await;
    let services: Api<Service> = Api::namespaced(client, "bookinfo");
    services
        .delete("ratings", &Default::default())
        .await
        .unwrap();
    eventually(
        "ratings' endpoints are gone",
        Duration::from_secs(10),
        || {
            let endpoints = endpoints.clone();
            async move { endpoints.get_opt("ratings").await.unwrap().is_none() }
        },
    )
    .await;
}
