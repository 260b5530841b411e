//! In-cluster controllers of a simulated cluster.
//!
//! One task per cluster consumes the store's change stream (plus a periodic resync and fault
//! flips) and dispatches to the controllers, which read and write the store directly (no HTTP,
//! so API faults do not affect them):
//! - [`workloads`]: Deployment readiness after a delay, LoadBalancer addresses, service-account
//!   token Secrets.
//! - [`sail`]: the Sail operator (`Istio` → `IstioRevision` → istiod, `IstioRevisionTag`,
//!   `IstioCNI`).
//! - [`remote`]: istiod's multi-cluster discovery through remote secrets.
//! - [`endpoints`]: the `Endpoints` of each Service, one address per matching replica.
//!
//! Every write is idempotent (the store skips no-op writes), so reacting to one's own events
//! converges.

pub(crate) mod endpoints;
pub(crate) mod remote;
pub(crate) mod sail;
pub(crate) mod workloads;

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::cluster::Shared;
use crate::error::{ApiError, ApiResult};
use crate::patch::PatchKind;
use crate::resources::ResourceType;
use crate::store::{EventType, WatchEvent, WriteOptions};

/// Spawn the controllers of one cluster.
pub(crate) fn spawn(shared: Arc<Shared>) {
    tokio::spawn(run(shared));
}

async fn run(shared: Arc<Shared>) {
    let mut rx = shared.store.subscribe();
    let state = Arc::new(workloads::State::default());
    let mut sail_state = sail::State::default();
    let mut tick = tokio::time::interval(shared.opts.remote_sync_interval);
    resync(&shared, &state, &mut sail_state);
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => on_event(&shared, &state, &mut sail_state, &ev),
                Err(RecvError::Lagged(_)) => resync(&shared, &state, &mut sail_state),
                Err(RecvError::Closed) => return,
            },
            _ = shared.faults.changed() => resync(&shared, &state, &mut sail_state),
            _ = tick.tick() => {
                resync(&shared, &state, &mut sail_state);
                remote::spawn_sync(shared.clone());
            }
            _ = shared.shutdown.cancelled() => return,
        }
    }
}

fn resync(shared: &Arc<Shared>, state: &Arc<workloads::State>, sail_state: &mut sail::State) {
    workloads::resync(shared, state);
    sail::reconcile(shared, sail_state);
    endpoints::resync(shared);
}

fn on_event(
    shared: &Arc<Shared>,
    state: &Arc<workloads::State>,
    sail_state: &mut sail::State,
    ev: &WatchEvent,
) {
    let (g, p) = (ev.gr.group.as_str(), ev.gr.plural.as_str());
    match (g, p) {
        ("apps", "deployments") => {
            if ev.kind != EventType::Deleted {
                workloads::deployment(shared, state, &ev.object);
            }
            endpoints::reconcile_namespace(shared, namespace_of(&ev.object));
            if ev.object["metadata"]["labels"]["app"] == "istiod" {
                sail::reconcile(shared, sail_state);
            }
        }
        ("", "services") => {
            if ev.kind != EventType::Deleted {
                workloads::service(shared, &ev.object);
            }
            endpoints::reconcile_namespace(shared, namespace_of(&ev.object));
        }
        ("", "secrets") => {
            workloads::secret(shared, ev.kind, &ev.object);
            if ev.object["metadata"]["labels"]["istio/multiCluster"] == "true" {
                remote::spawn_sync(shared.clone());
            }
        }
        ("sailoperator.io", _) | ("", "namespaces") | ("", "pods") => {
            sail::reconcile(shared, sail_state)
        }
        _ => {}
    }
}

fn namespace_of(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or_default()
}

pub(crate) fn rt(shared: &Shared, group: &str, kind: &str) -> ApiResult<Arc<ResourceType>> {
    shared
        .store
        .resource(group, kind)
        .ok_or_else(|| ApiError::not_found(group, kind, ""))
}

/// Server-side apply `obj` as `manager`, forcing ownership (controllers own their objects).
pub(crate) fn apply(shared: &Shared, manager: &str, obj: &Value) -> ApiResult<Value> {
    let api_version = obj["apiVersion"].as_str().unwrap_or("");
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let rt = rt(shared, group, obj["kind"].as_str().unwrap_or(""))?;
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let body = serde_json::to_vec(obj).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let opts = WriteOptions {
        field_manager: Some(manager.to_string()),
        force: true,
        dry_run: false,
    };
    shared
        .store
        .patch(&rt, ns, name, PatchKind::Apply, &body, false, &opts)
        .map(|(v, _)| v)
}

/// Merge `status` into the object's status subresource (no-op when unchanged).
pub(crate) fn patch_status(
    shared: &Shared,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    status: Value,
) -> ApiResult<Value> {
    let body = serde_json::to_vec(&json!({"status": status}))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    shared
        .store
        .patch(
            rt,
            ns,
            name,
            PatchKind::Merge,
            &body,
            rt.status_subresource,
            &WriteOptions::default(),
        )
        .map(|(v, _)| v)
}

/// A condition list where unchanged conditions keep their `lastTransitionTime`.
pub(crate) fn conditions(existing: &Value, wanted: &[(&str, bool, &str, &str)]) -> Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let out: Vec<Value> = wanted
        .iter()
        .map(|(kind, ok, reason, message)| {
            let status = if *ok { "True" } else { "False" };
            let prev = existing
                .as_array()
                .and_then(|a| a.iter().find(|c| c["type"] == *kind))
                .filter(|c| c["status"] == status)
                .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_string));
            json!({
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": prev.unwrap_or_else(|| now.clone()),
            })
        })
        .collect();
    Value::Array(out)
}

/// An ownerReference to `owner` (with its kind and apiVersion).
pub(crate) fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}
