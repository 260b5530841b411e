//! Conformance: Kubernetes API conventions checked through the unmodified `kube` client.
//!
//! By default every test runs against a fresh simulated cluster. With `MESH_SIM_TARGET=real`
//! the same tests run against the cluster `KUBECONFIG` (or `~/.kube/config`) points to, each in
//! its own namespace; tests that need simulator-only knobs (tiny watch history, fast bookmarks)
//! are skipped there. The Istio CRDs must be installed on a real cluster.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::watcher;
use kube::{Client, Discovery};
use mesh_sim::World;
use serde_json::json;

/// Where the tests run: a simulated world, or a real cluster.
struct Target {
    world: Option<World>,
    client: Client,
    ns: String,
}

impl Target {
    async fn new() -> Target {
        Self::with(
            World::builder()
                .bookmark_interval(Duration::from_millis(200))
                .history_limit(50),
        )
        .await
    }

    async fn with(builder: mesh_sim::WorldBuilder) -> Target {
        let ns = format!("conf-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let (world, client) = if std::env::var("MESH_SIM_TARGET").as_deref() == Ok("real") {
            (
                None,
                Client::try_default().await.expect("KUBECONFIG client"),
            )
        } else {
            let world = builder.start().await.unwrap();
            let client = world.cluster(0).client().await.unwrap();
            (Some(world), client)
        };
        let t = Target { world, client, ns };
        let nss: Api<Namespace> = Api::all(t.client.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": t.ns}})).unwrap();
        nss.create(&PostParams::default(), &ns).await.unwrap();
        t
    }

    fn is_sim(&self) -> bool {
        self.world.is_some()
    }

    fn cms(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn vs_api(&self) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
        Api::namespaced_with(self.client.clone(), &self.ns, &ApiResource::from_gvk(&gvk))
    }

    async fn cleanup(self) {
        if !self.is_sim() {
            let nss: Api<Namespace> = Api::all(self.client.clone());
            let _ = nss.delete(&self.ns, &DeleteParams::default()).await;
        }
    }
}

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

fn api_err(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn sample_vs() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../core/data/istio/samples/virtual-service-all-v1.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let first = serde_yaml::Deserializer::from_str(&text).next().unwrap();
    let v: serde_json::Value = serde::Deserialize::deserialize(first).unwrap();
    v
}

#[tokio::test]
async fn discovery_serves_core_kinds_and_istio_crds() {
    let t = Target::new().await;
    let v = t.client.apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");
    let d = Discovery::new(t.client.clone()).run().await.unwrap();
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
    let (ar, caps) = d.resolve_gvk(&gvk).expect("VirtualService discovered");
    assert_eq!(ar.plural, "virtualservices");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    let sail = GroupVersionKind::gvk("sailoperator.io", "v1", "Istio");
    assert_eq!(
        d.resolve_gvk(&sail).expect("Istio discovered").1.scope,
        kube::discovery::Scope::Cluster
    );
    let apps = GroupVersionKind::gvk("apps", "v1", "Deployment");
    assert!(d.resolve_gvk(&apps).is_some());
    let agg = Discovery::new(t.client.clone())
        .run_aggregated()
        .await
        .unwrap();
    assert!(
        agg.resolve_gvk(&gvk).is_some(),
        "aggregated discovery finds VirtualService"
    );
    assert!(
        agg.resolve_gvk(&GroupVersionKind::gvk("", "v1", "Namespace"))
            .is_some()
    );
    t.cleanup().await;
}

#[tokio::test]
async fn create_get_conflicts_and_not_found_use_status_reasons() {
    let t = Target::new().await;
    let cms = t.cms();
    let created = cms
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(
        meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some()
    );
    assert_eq!(
        api_err(
            cms.create(&PostParams::default(), &cm("a", json!({})))
                .await
                .unwrap_err()
        ),
        (409, "AlreadyExists".into())
    );
    assert_eq!(
        api_err(cms.get("missing").await.unwrap_err()),
        (404, "NotFound".into())
    );
    // Optimistic concurrency: a replace with a stale resourceVersion is a 409 Conflict.
    let mut first = created.clone();
    first.data = Some([("k".to_string(), "1".to_string())].into());
    cms.replace("a", &PostParams::default(), &first)
        .await
        .unwrap();
    let mut stale = created.clone();
    stale.data = Some([("k".to_string(), "2".to_string())].into());
    assert_eq!(
        api_err(
            cms.replace("a", &PostParams::default(), &stale)
                .await
                .unwrap_err()
        ),
        (409, "Conflict".into())
    );
    // Invalid names are 422 Invalid.
    assert_eq!(
        api_err(
            cms.create(&PostParams::default(), &cm("Not_Valid", json!({})))
                .await
                .unwrap_err()
        ),
        (422, "Invalid".into())
    );
    // Namespaced objects need their namespace.
    let elsewhere: Api<ConfigMap> = Api::namespaced(t.client.clone(), "no-such-namespace");
    assert_eq!(
        api_err(
            elsewhere
                .create(&PostParams::default(), &cm("a", json!({})))
                .await
                .unwrap_err()
        )
        .0,
        404
    );
    t.cleanup().await;
}

#[tokio::test]
async fn list_pages_with_continue_and_filters_with_selectors() {
    let t = Target::new().await;
    let cms = t.cms();
    for i in 0..7 {
        let tier = if i % 2 == 0 { "front" } else { "back" };
        cms.create(
            &PostParams::default(),
            &cm(&format!("c{i}"), json!({"app": "demo", "tier": tier})),
        )
        .await
        .unwrap();
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().labels("app=demo").limit(3);
    let mut pages = 0;
    loop {
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 3);
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(tok) => lp = lp.continue_token(&tok),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, (0..7).map(|i| format!("c{i}")).collect::<Vec<_>>());
    let count = |sel: &str| {
        let cms = cms.clone();
        let sel = sel.to_string();
        async move {
            cms.list(&ListParams::default().labels(&sel))
                .await
                .unwrap()
                .items
                .len()
        }
    };
    assert_eq!(count("tier=front").await, 4);
    assert_eq!(count("tier!=front,app=demo").await, 3);
    assert_eq!(count("tier in (front,back)").await, 7);
    assert_eq!(count("tier notin (front),app").await, 3);
    assert_eq!(count("!tier,app").await, 0);
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=c3"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("tier=back"),
    )
    .await
    .unwrap();
    assert_eq!(count("app=demo").await, 4);
    t.cleanup().await;
}

#[tokio::test]
async fn server_side_apply_creates_updates_and_detects_conflicts() {
    let t = Target::new().await;
    let vs = t.vs_api();
    let mut body = sample_vs();
    body["metadata"]["namespace"] = json!(t.ns);
    let name = body["metadata"]["name"].as_str().unwrap().to_string();
    let pp = PatchParams::apply("mesh-manager");
    let created = vs.patch(&name, &pp, &Patch::Apply(&body)).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.managed_fields.as_ref().is_some_and(|m| {
        m.iter()
            .any(|f| f.manager.as_deref() == Some("mesh-manager"))
    }));
    // Re-applying the same configuration is a no-op.
    let again = vs.patch(&name, &pp, &Patch::Apply(&body)).await.unwrap();
    assert_eq!(
        again.metadata.resource_version,
        created.metadata.resource_version
    );
    // A changed spec bumps generation.
    body["spec"]["hosts"] = json!(["productpage", "extra"]);
    let changed = vs.patch(&name, &pp, &Patch::Apply(&body)).await.unwrap();
    assert_eq!(changed.metadata.generation, Some(2));
    // Another manager setting the same field differently conflicts unless forced.
    let mut other = body.clone();
    other["spec"]["hosts"] = json!(["other"]);
    let e = vs
        .patch(
            &name,
            &PatchParams::apply("someone-else"),
            &Patch::Apply(&other),
        )
        .await
        .unwrap_err();
    assert_eq!(api_err(e), (409, "Conflict".into()));
    let forced = vs
        .patch(
            &name,
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(forced.data["spec"]["hosts"], json!(["other"]));
    // Merge and JSON patches.
    let merged = vs
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.metadata.labels.unwrap()["x"], "y");
    let jp: json_patch::Patch = serde_json::from_value(
        json!([{"op": "replace", "path": "/spec/hosts/0", "value": "patched"}]),
    )
    .unwrap();
    let patched = vs
        .patch(&name, &PatchParams::default(), &Patch::Json::<()>(jp))
        .await
        .unwrap();
    assert_eq!(patched.data["spec"]["hosts"][0], "patched");
    // Status lives in its subresource: the main endpoint ignores it.
    let ignored = vs
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 7}})),
        )
        .await
        .unwrap();
    assert!(
        ignored
            .data
            .get("status")
            .is_none_or(|s| s.get("observedGeneration").is_none())
    );
    let st = vs
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(st.data["status"]["observedGeneration"], 7);
    // Apply without a field manager is rejected.
    let e = vs
        .patch(&name, &PatchParams::default(), &Patch::Apply(&body))
        .await
        .unwrap_err();
    assert!(matches!(api_err(e).0, 400 | 422));
    t.cleanup().await;
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let t = Target::new().await;
    let cms = t.cms();
    let mut c = cm("held", json!({}));
    c.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &c).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let still = cms.get("held").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_err(cms.get("held").await.unwrap_err()).0, 404);
    t.cleanup().await;
}

#[tokio::test]
async fn watcher_sees_adds_modifications_and_deletes() {
    let t = Target::new().await;
    let cms = t.cms();
    let stream = watcher(cms.clone(), watcher::Config::default()).boxed();
    let events = tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut stream = stream;
        while let Some(ev) = stream.try_next().await.unwrap() {
            match ev {
                watcher::Event::Apply(c) => seen.push(format!(
                    "apply:{}:{}",
                    c.metadata.name.unwrap(),
                    c.data.unwrap()["k"]
                )),
                watcher::Event::Delete(c) => {
                    seen.push(format!("delete:{}", c.metadata.name.unwrap()));
                    break;
                }
                _ => {}
            }
        }
        seen
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cms.create(&PostParams::default(), &cm("w", json!({})))
        .await
        .unwrap();
    cms.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v2"}})),
    )
    .await
    .unwrap();
    cms.delete("w", &DeleteParams::default()).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), events)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen, vec!["apply:w:v", "apply:w:v2", "delete:w"]);
    t.cleanup().await;
}

#[tokio::test]
async fn watch_from_a_compacted_version_is_gone_and_bookmarks_arrive() {
    let t = Target::new().await;
    if !t.is_sim() {
        return;
    }
    let cms = t.cms();
    let first = cms
        .create(&PostParams::default(), &cm("old", json!({})))
        .await
        .unwrap();
    let old_rv = first.metadata.resource_version.unwrap();
    for i in 0..60 {
        cms.patch(
            "old",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let mut s = cms
        .watch(&WatchParams::default().timeout(5), &old_rv)
        .await
        .unwrap()
        .boxed();
    match s.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
    let now = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut s = cms
        .watch(&WatchParams::default().timeout(3), &now)
        .await
        .unwrap()
        .boxed();
    let got = tokio::time::timeout(Duration::from_secs(3), s.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(got, Some(WatchEvent::Bookmark(_))), "got {got:?}");
    // timeoutSeconds ends the stream.
    let start = std::time::Instant::now();
    let mut s = cms
        .watch(&WatchParams::default().timeout(1), &now)
        .await
        .unwrap()
        .boxed();
    while s.try_next().await.unwrap().is_some() {}
    assert!(start.elapsed() < Duration::from_secs(3));
    t.cleanup().await;
}

#[tokio::test]
async fn wrong_token_is_unauthorized() {
    let t = Target::new().await;
    let mut config = match &t.world {
        Some(w) => {
            kube::Config::from_custom_kubeconfig(w.cluster(0).kubeconfig(), &Default::default())
                .await
                .unwrap()
        }
        None => kube::Config::infer().await.unwrap(),
    };
    config.auth_info = kube::config::AuthInfo {
        token: Some("not-a-token".to_string().into()),
        ..Default::default()
    };
    let bad = Client::try_from(config).unwrap();
    let nss: Api<Namespace> = Api::all(bad);
    assert_eq!(
        api_err(nss.list(&ListParams::default()).await.unwrap_err()),
        (401, "Unauthorized".into())
    );
    t.cleanup().await;
}

#[tokio::test]
async fn deleting_a_namespace_terminates_its_content() {
    let t = Target::new().await;
    let cms = t.cms();
    cms.create(&PostParams::default(), &cm("gone", json!({})))
        .await
        .unwrap();
    let nss: Api<Namespace> = Api::all(t.client.clone());
    nss.delete(&t.ns, &DeleteParams::default()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match nss.get(&t.ns).await {
            Err(e) => {
                assert_eq!(api_err(e).0, 404);
                break;
            }
            Ok(ns) => {
                assert_eq!(
                    ns.status.and_then(|s| s.phase).as_deref(),
                    Some("Terminating")
                );
                assert!(std::time::Instant::now() < deadline);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let e = cms
        .create(&PostParams::default(), &cm("late", json!({})))
        .await
        .unwrap_err();
    assert_eq!(api_err(e).0, 404);
}

#[tokio::test]
async fn deployment_status_is_ignored_on_the_main_endpoint() {
    let t = Target::new().await;
    let deps: Api<Deployment> = Api::namespaced(t.client.clone(), &t.ns);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        "status": {"replicas": 42}
    }))
    .unwrap();
    let created = deps.create(&PostParams::default(), &d).await.unwrap();
    assert_ne!(created.status.and_then(|s| s.replicas), Some(42));
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.spec.replicas, Some(1), "replicas defaulted");
    t.cleanup().await;
}
