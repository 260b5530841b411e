//! The Sail operator, simulated.
//!
//! - `Istio` (cluster-scoped, `sailoperator.io/v1`) → one `IstioRevision` per version: named
//!   like the `Istio` for `updateStrategy.type: InPlace` (so `default` for the usual `Istio`
//!   named `default`), `<name>-<version with dots as dashes>` for `RevisionBased`. Old
//!   revisions of a RevisionBased `Istio` stay while in use and are deleted once unused for
//!   `inactiveRevisionDeletionGracePeriodSeconds`. Status: `Reconciled`, `Ready`, `state`,
//!   `activeRevisionName`, `revisions.{total,ready,inUse}`.
//! - `IstioRevision` → Deployment and Service `istiod` (revision `default`) or `istiod-<rev>` in
//!   `spec.namespace`, ConfigMap `istio[-<rev>]` and MutatingWebhookConfiguration
//!   `istio-sidecar-injector[-<rev>]`; profile `remote` installs only the webhook (pointing at
//!   `values.global.remotePilotAddress`). Status conditions `Reconciled`, `Ready` (istiod
//!   available), `InUse` (a namespace labelled `istio.io/rev=<rev or tag>`, or
//!   `istio-injection=enabled` for `default`, or a pod labelled so).
//! - `IstioRevisionTag` → resolves `targetRef` (Istio or IstioRevision), webhook
//!   `istio-revision-tag-<tag>`, status `istioRevision`, `istiodNamespace`, `InUse`.
//! - `IstioCNI` → Ready once its namespace exists.
//!
//! Unknown versions (not in the mesh-core catalog) and missing namespaces report
//! `Reconciled=False` with reason `ReconcileError`, as the operator does.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{apply, conditions, owner_ref, patch_status, rt};
use crate::cluster::Shared;
use crate::store::DeleteOptions;

const MANAGER: &str = "sail-operator";

/// Memory of the operator between reconciles: when each old revision became unused.
#[derive(Default)]
pub(crate) struct State {
    unused_since: HashMap<String, Instant>,
}

fn list(shared: &Shared, group: &str, kind: &str) -> Vec<Value> {
    rt(shared, group, kind)
        .map(|rt| shared.store.list_values(&rt, None))
        .unwrap_or_default()
}

fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("")
}

fn version_ok(version: &str) -> Result<(), String> {
    let catalog = mesh_core::VersionCatalog::builtin();
    let v = version.trim_start_matches('v');
    if v.ends_with("-latest") || catalog.resolve(v).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "spec.version: unsupported Istio version {version:?}"
        ))
    }
}

/// The revision an `Istio` currently wants.
fn active_revision_name(istio: &Value) -> String {
    let version = istio["spec"]["version"].as_str().unwrap_or("");
    if istio["spec"]["updateStrategy"]["type"] == "RevisionBased" {
        format!("{}-{}", name(istio), version.replace('.', "-"))
    } else {
        name(istio).to_string()
    }
}

fn istiod_name(rev: &str) -> String {
    if rev == "default" {
        "istiod".into()
    } else {
        format!("istiod-{rev}")
    }
}

fn suffix(rev: &str) -> String {
    if rev == "default" {
        String::new()
    } else {
        format!("-{rev}")
    }
}

fn owned_by(v: &Value, uid: &str) -> bool {
    v["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|r| r.iter().any(|o| o["uid"] == uid))
}

fn namespace_exists(shared: &Shared, ns: &str) -> bool {
    rt(shared, "", "Namespace").is_ok_and(|rt| {
        shared
            .store
            .get(&rt, "", ns)
            .is_ok_and(|n| n["metadata"]["deletionTimestamp"].is_null())
    })
}

/// Run one full reconcile of every Sail object (idempotent).
pub(crate) fn reconcile(shared: &Shared, state: &mut State) {
    let istios = list(shared, "sailoperator.io", "Istio");
    let tags = list(shared, "sailoperator.io", "IstioRevisionTag");
    if istios.is_empty()
        && tags.is_empty()
        && list(shared, "sailoperator.io", "IstioRevision").is_empty()
        && list(shared, "sailoperator.io", "IstioCNI").is_empty()
    {
        return;
    }
    for istio in &istios {
        reconcile_istio_revisions(shared, istio);
    }
    let revisions = list(shared, "sailoperator.io", "IstioRevision");
    // tag name → revision name
    let mut tag_targets: BTreeMap<String, String> = BTreeMap::new();
    for tag in &tags {
        let target = &tag["spec"]["targetRef"];
        let resolved = match target["kind"].as_str() {
            Some("Istio") => istios
                .iter()
                .find(|i| name(i) == target["name"])
                .map(active_revision_name),
            Some("IstioRevision") => revisions
                .iter()
                .find(|r| name(r) == target["name"])
                .map(|r| name(r).to_string()),
            _ => None,
        };
        if let Some(r) = resolved {
            tag_targets.insert(name(tag).to_string(), r);
        }
    }
    let used = revisions_in_use(shared, &tag_targets);
    let used_tags = tags_in_use(shared);
    // Like the operator's informer cache, this list can be a moment old: a revision deleted
    // meanwhile still gets its children written, and the garbage collector removes them (their
    // owner reference names a uid that no longer exists).
    for rev in &revisions {
        reconcile_revision(shared, rev, used.contains_key(name(rev)));
    }
    for tag in &tags {
        reconcile_tag(
            shared,
            tag,
            tag_targets.get(name(tag)),
            &revisions,
            used_tags.contains(&name(tag).to_string()),
        );
    }
    let revisions = list(shared, "sailoperator.io", "IstioRevision");
    for istio in &istios {
        istio_status(shared, state, istio, &revisions, &used);
    }
    for cni in list(shared, "sailoperator.io", "IstioCNI") {
        let ns = cni["spec"]["namespace"].as_str().unwrap_or("istio-cni");
        let ok = namespace_exists(shared, ns);
        let msg = if ok {
            String::new()
        } else {
            format!("namespace {ns:?} doesn't exist")
        };
        let status = json!({
            "observedGeneration": cni["metadata"]["generation"],
            "state": if ok { "Healthy" } else { "ReconcileError" },
            "conditions": conditions(&cni["status"]["conditions"], &[
                ("Reconciled", ok, if ok { "Healthy" } else { "ReconcileError" }, &msg),
                ("Ready", ok, if ok { "Healthy" } else { "ReconcileError" }, &msg),
            ]),
        });
        if let Ok(rt) = rt(shared, "sailoperator.io", "IstioCNI") {
            let _ = patch_status(shared, &rt, "", name(&cni), status);
        }
    }
}

fn reconcile_istio_revisions(shared: &Shared, istio: &Value) {
    let version = istio["spec"]["version"].as_str().unwrap_or("");
    if version_ok(version).is_err() || !istio["metadata"]["deletionTimestamp"].is_null() {
        return;
    }
    let ns = istio["spec"]["namespace"]
        .as_str()
        .unwrap_or("istio-system");
    let rev = active_revision_name(istio);
    let mut values = istio["spec"]["values"].clone();
    if !values.is_object() {
        values = json!({});
    }
    if let Some(p) = istio["spec"]["profile"].as_str() {
        values["profile"] = json!(p);
    }
    values["revision"] = json!(if rev == "default" { "" } else { rev.as_str() });
    let body = json!({
        "apiVersion": "sailoperator.io/v1",
        "kind": "IstioRevision",
        "metadata": {
            "name": rev,
            "labels": {"sailoperator.io/istio": name(istio)},
            "ownerReferences": [owner_ref(istio)],
        },
        "spec": {"version": version, "namespace": ns, "values": values},
    });
    let _ = apply(shared, MANAGER, &body);
}

/// Revision name → whether something uses it (namespaces or pods).
fn revisions_in_use(shared: &Shared, tags: &BTreeMap<String, String>) -> BTreeMap<String, bool> {
    let mut used = BTreeMap::new();
    let mut mark = |labels: &Value| {
        let by_rev = labels["istio.io/rev"].as_str();
        let target = match by_rev {
            Some(r) => Some(tags.get(r).cloned().unwrap_or_else(|| r.to_string())),
            None if labels["istio-injection"] == "enabled" => Some(
                tags.get("default")
                    .cloned()
                    .unwrap_or_else(|| "default".into()),
            ),
            None => None,
        };
        if let Some(t) = target {
            used.insert(t, true);
        }
    };
    for ns in list(shared, "", "Namespace") {
        if ns["metadata"]["deletionTimestamp"].is_null() {
            mark(&ns["metadata"]["labels"]);
        }
    }
    for pod in list(shared, "", "Pod") {
        mark(&pod["metadata"]["labels"]);
    }
    used
}

fn tags_in_use(shared: &Shared) -> Vec<String> {
    let mut out = Vec::new();
    for ns in list(shared, "", "Namespace") {
        if let Some(r) = ns["metadata"]["labels"]["istio.io/rev"].as_str() {
            out.push(r.to_string());
        } else if ns["metadata"]["labels"]["istio-injection"] == "enabled" {
            out.push("default".into());
        }
    }
    out
}

fn reconcile_revision(shared: &Shared, rev: &Value, in_use: bool) {
    let Ok(rev_rt) = rt(shared, "sailoperator.io", "IstioRevision") else {
        return;
    };
    let rname = name(rev).to_string();
    let ns = rev["spec"]["namespace"]
        .as_str()
        .unwrap_or("istio-system")
        .to_string();
    let version = rev["spec"]["version"].as_str().unwrap_or("").to_string();
    let values = &rev["spec"]["values"];
    let remote = values["profile"] == "remote";
    let mut reconciled: Result<(), String> = version_ok(&version);
    if reconciled.is_ok() && !namespace_exists(shared, &ns) {
        reconciled = Err(format!("namespace {ns:?} doesn't exist"));
    }
    let owner = vec![owner_ref(rev)];
    let istiod = istiod_name(&rname);
    let labels = json!({"app": "istiod", "istio": "pilot", "istio.io/rev": rname, "sailoperator.io/revision": rname});
    if reconciled.is_ok() {
        let image_tag = version.trim_start_matches('v');
        let mesh_id = values["global"]["meshID"].as_str().unwrap_or("");
        let cluster = values["global"]["multiCluster"]["clusterName"]
            .as_str()
            .unwrap_or("");
        let network = values["global"]["network"].as_str().unwrap_or("");
        let mesh_cfg = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("istio{}", suffix(&rname)), "namespace": ns, "labels": labels, "ownerReferences": owner},
            "data": {"mesh": format!("defaultConfig:\n  discoveryAddress: {istiod}.{ns}.svc:15012\n  meshId: {mesh_id}\nrootNamespace: {ns}\ntrustDomain: cluster.local\n")},
        });
        let _ = apply(shared, MANAGER, &mesh_cfg);
        let webhook_client = if remote {
            let addr = values["global"]["remotePilotAddress"]
                .as_str()
                .unwrap_or("");
            json!({"url": format!("https://{addr}:15017/inject/cluster/{cluster}/net/{network}")})
        } else {
            json!({"service": {"name": istiod, "namespace": ns, "path": "/inject", "port": 443}})
        };
        let selector = if rname == "default" {
            json!({"matchExpressions": [{"key": "istio-injection", "operator": "In", "values": ["enabled"]}]})
        } else {
            json!({"matchExpressions": [{"key": "istio.io/rev", "operator": "In", "values": [rname]}, {"key": "istio-injection", "operator": "DoesNotExist"}]})
        };
        let webhook = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": format!("istio-sidecar-injector{}", suffix(&rname)), "labels": labels, "ownerReferences": owner},
            "webhooks": [{
                "name": "rev.namespace.sidecar-injector.istio.io",
                "clientConfig": webhook_client,
                "namespaceSelector": selector,
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
                "admissionReviewVersions": ["v1beta1", "v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
            }],
        });
        let _ = apply(shared, MANAGER, &webhook);
        if !remote {
            let deploy = json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": istiod, "namespace": ns, "labels": labels, "ownerReferences": owner},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "istiod", "istio.io/rev": rname}},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"serviceAccountName": format!("istiod{}", suffix(&rname)), "containers": [{
                            "name": "discovery",
                            "image": format!("docker.io/istio/pilot:{image_tag}"),
                            "args": ["discovery"],
                            "env": [
                                {"name": "REVISION", "value": rname},
                                {"name": "CLUSTER_ID", "value": cluster},
                                {"name": "ISTIO_META_NETWORK", "value": network},
                            ],
                            "ports": [{"containerPort": 15010}, {"containerPort": 15012}, {"containerPort": 15017}, {"containerPort": 15014}],
                        }]},
                    },
                },
            });
            let _ = apply(shared, MANAGER, &deploy);
            let svc = json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": istiod, "namespace": ns, "labels": labels, "ownerReferences": owner},
                "spec": {
                    "selector": {"app": "istiod", "istio.io/rev": rname},
                    "ports": [
                        {"name": "grpc-xds", "port": 15010, "protocol": "TCP"},
                        {"name": "https-dns", "port": 15012, "protocol": "TCP"},
                        {"name": "https-webhook", "port": 443, "targetPort": 15017, "protocol": "TCP"},
                        {"name": "http-monitoring", "port": 15014, "protocol": "TCP"},
                    ],
                },
            });
            let _ = apply(shared, MANAGER, &svc);
            let sa = json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": format!("istiod{}", suffix(&rname)), "namespace": ns, "labels": labels, "ownerReferences": owner},
            });
            let _ = apply(shared, MANAGER, &sa);
        }
    }
    let ready = match &reconciled {
        Err(_) => Err("not reconciled".to_string()),
        Ok(()) if remote => Ok(()),
        Ok(()) => {
            let d = rt(shared, "apps", "Deployment")
                .ok()
                .and_then(|drt| shared.store.get(&drt, &ns, &istiod).ok());
            match d {
                Some(d) if d["status"]["availableReplicas"].as_i64().unwrap_or(0) >= 1 => Ok(()),
                _ => Err("istiod Deployment is not ready".to_string()),
            }
        }
    };
    let (rec_ok, rec_msg) = match &reconciled {
        Ok(()) => (true, String::new()),
        Err(m) => (false, m.clone()),
    };
    let (ready_ok, ready_msg) = match &ready {
        Ok(()) => (true, String::new()),
        Err(m) => (false, m.clone()),
    };
    let state = if !rec_ok {
        "ReconcileError"
    } else if ready_ok {
        "Healthy"
    } else {
        "NotReady"
    };
    let status = json!({
        "observedGeneration": rev["metadata"]["generation"],
        "state": state,
        "conditions": conditions(&rev["status"]["conditions"], &[
            ("Reconciled", rec_ok, if rec_ok { "Healthy" } else { "ReconcileError" }, &rec_msg),
            ("Ready", ready_ok, if ready_ok { "Healthy" } else if rec_ok { "IstiodNotReady" } else { "ReconcileError" }, &ready_msg),
            ("InUse", in_use, if in_use { "ReferencedByWorkloads" } else { "NotReferencedByAnything" }, ""),
        ]),
    });
    let _ = patch_status(shared, &rev_rt, "", &rname, status);
}

fn reconcile_tag(
    shared: &Shared,
    tag: &Value,
    target: Option<&String>,
    revisions: &[Value],
    in_use: bool,
) {
    let Ok(tag_rt) = rt(shared, "sailoperator.io", "IstioRevisionTag") else {
        return;
    };
    let tname = name(tag);
    let rev = target.and_then(|t| revisions.iter().find(|r| name(r) == t.as_str()));
    let status = match rev {
        Some(rev) => {
            let ns = rev["spec"]["namespace"].as_str().unwrap_or("istio-system");
            let rname = name(rev);
            let webhook = json!({
                "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                "metadata": {"name": format!("istio-revision-tag-{tname}"), "labels": {"istio.io/tag": tname, "istio.io/rev": rname}, "ownerReferences": [owner_ref(tag)]},
                "webhooks": [{
                    "name": "rev.namespace.sidecar-injector.istio.io",
                    "clientConfig": {"service": {"name": istiod_name(rname), "namespace": ns, "path": "/inject", "port": 443}},
                    "namespaceSelector": {"matchExpressions": [{"key": "istio.io/rev", "operator": "In", "values": [tname]}]},
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                }],
            });
            let _ = apply(shared, MANAGER, &webhook);
            json!({
                "observedGeneration": tag["metadata"]["generation"],
                "istioRevision": rname,
                "istiodNamespace": ns,
                "state": "Healthy",
                "conditions": conditions(&tag["status"]["conditions"], &[
                    ("Reconciled", true, "Healthy", ""),
                    ("InUse", in_use, if in_use { "ReferencedByWorkloads" } else { "NotReferencedByAnything" }, ""),
                ]),
            })
        }
        None => json!({
            "observedGeneration": tag["metadata"]["generation"],
            "state": "ReconcileError",
            "conditions": conditions(&tag["status"]["conditions"], &[
                ("Reconciled", false, "RefNotFound", "referenced Istio or IstioRevision not found"),
                ("InUse", in_use, if in_use { "ReferencedByWorkloads" } else { "NotReferencedByAnything" }, ""),
            ]),
        }),
    };
    let _ = patch_status(shared, &tag_rt, "", tname, status);
}

fn istio_status(
    shared: &Shared,
    state: &mut State,
    istio: &Value,
    revisions: &[Value],
    used: &BTreeMap<String, bool>,
) {
    let Ok(istio_rt) = rt(shared, "sailoperator.io", "Istio") else {
        return;
    };
    let Ok(rev_rt) = rt(shared, "sailoperator.io", "IstioRevision") else {
        return;
    };
    let uid = istio["metadata"]["uid"].as_str().unwrap_or("");
    let active = active_revision_name(istio);
    let grace = istio["spec"]["updateStrategy"]["inactiveRevisionDeletionGracePeriodSeconds"]
        .as_u64()
        .map(Duration::from_secs)
        .unwrap_or(shared.opts.revision_grace_default);
    let mut owned: Vec<&Value> = revisions.iter().filter(|r| owned_by(r, uid)).collect();
    // Old revisions: InPlace keeps one; RevisionBased removes unused ones after the grace period.
    owned.retain(|r| {
        let rname = name(r).to_string();
        if rname == active || used.contains_key(&rname) {
            state.unused_since.remove(&rname);
            return true;
        }
        let since = *state
            .unused_since
            .entry(rname.clone())
            .or_insert_with(Instant::now);
        if since.elapsed() >= grace {
            state.unused_since.remove(&rname);
            let _ = shared
                .store
                .delete(&rev_rt, "", &rname, &DeleteOptions::default());
            return false;
        }
        true
    });
    let is_ready = |r: &Value| {
        r["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    };
    let total = owned.len();
    let ready = owned.iter().filter(|r| is_ready(r)).count();
    let in_use = owned.iter().filter(|r| used.contains_key(name(r))).count();
    let active_rev = owned.iter().find(|r| name(r) == active);
    let version_err = version_ok(istio["spec"]["version"].as_str().unwrap_or("")).err();
    let rev_reconciled = active_rev.is_some_and(|r| {
        r["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Reconciled" && c["status"] == "True")
        })
    });
    let rec_msg = version_err.clone().unwrap_or_else(|| {
        if rev_reconciled {
            String::new()
        } else {
            "active revision not reconciled".into()
        }
    });
    let rec_ok = version_err.is_none() && rev_reconciled;
    let ready_ok = active_rev.is_some_and(|r| is_ready(r));
    let state_str = if !rec_ok {
        "ReconcileError"
    } else if ready_ok {
        "Healthy"
    } else {
        "NotReady"
    };
    let status = json!({
        "observedGeneration": istio["metadata"]["generation"],
        "activeRevisionName": active,
        "state": state_str,
        "revisions": {"total": total, "ready": ready, "inUse": in_use},
        "conditions": conditions(&istio["status"]["conditions"], &[
            ("Reconciled", rec_ok, if rec_ok { "Healthy" } else { "ReconcileError" }, &rec_msg),
            ("Ready", ready_ok, if ready_ok { "Healthy" } else { "IstiodNotReady" }, if ready_ok { "" } else { "active revision is not ready" }),
        ]),
    });
    let _ = patch_status(shared, &istio_rt, "", name(istio), status);
}
