//! Workload controllers: Deployment readiness, LoadBalancer addresses, service-account tokens.
//!
//! - A Deployment whose `generation` changes reports `observedGeneration` at once and becomes
//!   ready (`readyReplicas`, `availableReplicas`, `updatedReplicas`, conditions `Available` and
//!   `Progressing`) after the cluster's readiness delay — unless the rollout fault holds it, or
//!   it is istiod (`app=istiod`) and istiod crash-loops — every istiod, or the one revision named
//!   by the fault (then it also drops to unready).
//! - A Service of type LoadBalancer gets `status.loadBalancer.ingress[0].ip` from the cluster's
//!   pool unless the LB fault is on.
//! - A Secret of type `kubernetes.io/service-account-token` gets `data.token` (a token the
//!   cluster's API server accepts as that service account), `data.namespace` and `data.ca.crt`;
//!   deleting the Secret revokes its token.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};

use super::{conditions, patch_status, rt};
use crate::cluster::Shared;
use crate::patch::PatchKind;
use crate::store::{EventType, WriteOptions};

/// Pending readiness timers, by (uid, generation).
#[derive(Default)]
pub(crate) struct State {
    pending: Mutex<HashSet<(String, i64)>>,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Re-examine every Deployment, Service and token Secret (after faults flip or a lag).
pub(crate) fn resync(shared: &Arc<Shared>, state: &Arc<State>) {
    if let Ok(rt) = rt(shared, "apps", "Deployment") {
        for d in shared.store.list_values(&rt, None) {
            deployment(shared, state, &d);
        }
    }
    if let Ok(rt) = rt(shared, "", "Service") {
        for s in shared.store.list_values(&rt, None) {
            service(shared, &s);
        }
    }
}

fn held(shared: &Shared, d: &Value) -> bool {
    shared.faults.deployments_never_ready() || istiod_crashloops(shared, d)
}

/// Whether `d` is an istiod whose revision crash-loops (all of them, or one revision).
fn istiod_crashloops(shared: &Shared, d: &Value) -> bool {
    let labels = &d["metadata"]["labels"];
    labels["app"] == "istiod"
        && shared
            .faults
            .istiod_crashloops(labels["istio.io/rev"].as_str().unwrap_or("default"))
}

fn status_of(d: &Value, ready: bool) -> Value {
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
    let existing = &d["status"]["conditions"];
    if ready || replicas == 0 {
        json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "unavailableReplicas": null,
            "conditions": conditions(existing, &[
                ("Available", true, "MinimumReplicasAvailable", "Deployment has minimum availability."),
                ("Progressing", true, "NewReplicaSetAvailable", "ReplicaSet has successfully progressed."),
            ]),
        })
    } else {
        json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": null,
            "availableReplicas": null,
            "unavailableReplicas": replicas,
            "conditions": conditions(existing, &[
                ("Available", false, "MinimumReplicasUnavailable", "Deployment does not have minimum availability."),
                ("Progressing", true, "ReplicaSetUpdated", "ReplicaSet is progressing."),
            ]),
        })
    }
}

fn is_ready(d: &Value) -> bool {
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    d["status"]["observedGeneration"] == d["metadata"]["generation"]
        && d["status"]["availableReplicas"].as_i64().unwrap_or(0) >= replicas
        && d["status"]["updatedReplicas"].as_i64().unwrap_or(0) >= replicas
}

/// React to a Deployment change.
pub(crate) fn deployment(shared: &Arc<Shared>, state: &Arc<State>, d: &Value) {
    let Ok(rt) = rt(shared, "apps", "Deployment") else {
        return;
    };
    let ns = d["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let name = d["metadata"]["name"].as_str().unwrap_or("").to_string();
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
    let uid = d["metadata"]["uid"].as_str().unwrap_or("").to_string();
    if !d["metadata"]["deletionTimestamp"].is_null() {
        return;
    }
    let crashloop = istiod_crashloops(shared, d);
    if is_ready(d) {
        if crashloop {
            let _ = patch_status(shared, &rt, &ns, &name, status_of(d, false));
        }
        return;
    }
    if d["status"]["observedGeneration"].as_i64() != Some(generation)
        || d["status"]["replicas"].is_null()
    {
        let _ = patch_status(shared, &rt, &ns, &name, status_of(d, false));
    }
    if held(shared, d) {
        return;
    }
    let key = (uid.clone(), generation);
    {
        let mut pending = state.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !pending.insert(key.clone()) {
            return;
        }
    }
    let shared = shared.clone();
    let state = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(shared.opts.deploy_ready_delay).await;
        state
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        let Ok(current) = shared.store.get(&rt, &ns, &name) else {
            return;
        };
        if current["metadata"]["uid"].as_str() != Some(uid.as_str())
            || current["metadata"]["generation"].as_i64() != Some(generation)
            || held(&shared, &current)
        {
            return;
        }
        let _ = patch_status(&shared, &rt, &ns, &name, status_of(&current, true));
    });
}

/// React to a Service change: hand out a load-balancer address.
pub(crate) fn service(shared: &Shared, s: &Value) {
    let Ok(rt) = rt(shared, "", "Service") else {
        return;
    };
    let ns = s["metadata"]["namespace"].as_str().unwrap_or("");
    let name = s["metadata"]["name"].as_str().unwrap_or("");
    let is_lb = s["spec"]["type"] == "LoadBalancer";
    let has = s["status"]["loadBalancer"]["ingress"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    if is_lb && !has && !shared.faults.lb_never_assigned() {
        let ip = shared.next_lb_address();
        let _ = patch_status(
            shared,
            &rt,
            ns,
            name,
            json!({"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}),
        );
    } else if !is_lb && has {
        let _ = patch_status(shared, &rt, ns, name, json!({"loadBalancer": {}}));
    }
}

/// The CA a service-account token Secret carries: the cluster's own serving CA when it serves TLS
/// (as on a real cluster), a placeholder otherwise.
fn cluster_ca(shared: &Shared) -> String {
    match crate::tls::tls() {
        Ok(tls) if shared.opts.tls => tls.ca_pem.clone(),
        _ => FAKE_CA.to_owned(),
    }
}

const FAKE_CA: &str =
    "-----BEGIN CERTIFICATE-----\nTUVTSC1TSU0tRkFLRS1DQQ==\n-----END CERTIFICATE-----\n";

/// React to a Secret change: fill service-account tokens, revoke deleted ones.
pub(crate) fn secret(shared: &Shared, kind: EventType, s: &Value) {
    if s["type"] != "kubernetes.io/service-account-token" {
        return;
    }
    if kind == EventType::Deleted {
        if let Some(tok) = s["data"]["token"].as_str()
            && let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(tok)
        {
            shared.auth.revoke(&String::from_utf8_lossy(&raw));
        }
        return;
    }
    if !s["data"]["token"].is_null() || !s["metadata"]["deletionTimestamp"].is_null() {
        return;
    }
    let Some(sa) = s["metadata"]["annotations"]["kubernetes.io/service-account.name"].as_str()
    else {
        return;
    };
    let ns = s["metadata"]["namespace"].as_str().unwrap_or("");
    let name = s["metadata"]["name"].as_str().unwrap_or("");
    let Ok(rt) = rt(shared, "", "Secret") else {
        return;
    };
    let sa_uid = rt_get(shared, "", "ServiceAccount", ns, sa)
        .map(|v| v["metadata"]["uid"].clone())
        .unwrap_or(Value::Null);
    let token = shared
        .auth
        .issue(&format!("system:serviceaccount:{ns}:{sa}"));
    let patch = json!({
        "metadata": {"annotations": {"kubernetes.io/service-account.uid": sa_uid}},
        "data": {"token": b64(&token), "namespace": b64(ns), "ca.crt": b64(&cluster_ca(shared))},
    });
    let body = serde_json::to_vec(&patch).unwrap_or_default();
    if shared
        .store
        .patch(
            &rt,
            ns,
            name,
            PatchKind::Merge,
            &body,
            false,
            &WriteOptions::default(),
        )
        .is_err()
    {
        shared.auth.revoke(&token);
    }
}

fn rt_get(shared: &Shared, group: &str, kind: &str, ns: &str, name: &str) -> Option<Value> {
    let rt = rt(shared, group, kind).ok()?;
    shared.store.get(&rt, ns, name).ok()
}
