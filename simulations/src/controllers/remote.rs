//! istiod's multi-cluster discovery, simulated.
//!
//! When the cluster runs an available istiod in `istio-system`, every Secret there labelled
//! `istio/multiCluster=true` is read like istiod reads remote secrets: each data key is a
//! cluster name and its value a kubeconfig. The kubeconfig must use token or client-certificate
//! auth (no exec, auth-provider or file paths) and is used, over real HTTP, to list the remote
//! cluster's Services.
//!
//! The outcome is published in ConfigMap `istio-system/istiod-remote-clusters` (one data key
//! per remote cluster, a JSON document):
//! `{"cluster", "secret", "syncStatus": "synced" | "failed", "error", "services": ["ns/name", ...]}`
//! — the simulator's stand-in for istiod's `/debug/clusterz`. A wrong token, revoked token or
//! unreachable address gives `syncStatus: failed` with the error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

use super::{apply, rt};
use crate::cluster::Shared;

/// Name of the ConfigMap holding the sync state.
pub const STATUS_CONFIGMAP: &str = "istiod-remote-clusters";
const NS: &str = "istio-system";

fn istiod_running(shared: &Shared) -> bool {
    let Ok(drt) = rt(shared, "apps", "Deployment") else {
        return false;
    };
    shared.store.list_values(&drt, Some(NS)).iter().any(|d| {
        d["metadata"]["labels"]["app"] == "istiod"
            && d["status"]["availableReplicas"].as_i64().unwrap_or(0) >= 1
    })
}

/// Start one sync pass unless one is already running.
pub(crate) fn spawn_sync(shared: Arc<Shared>) {
    if shared.remote_sync_running.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async move {
        sync(&shared).await;
        shared.remote_sync_running.store(false, Ordering::Release);
    });
}

async fn sync(shared: &Shared) {
    if !istiod_running(shared) {
        return;
    }
    let Ok(srt) = rt(shared, "", "Secret") else {
        return;
    };
    let secrets: Vec<Value> = shared
        .store
        .list_values(&srt, Some(NS))
        .into_iter()
        .filter(|s| {
            s["metadata"]["labels"]["istio/multiCluster"] == "true"
                && s["metadata"]["deletionTimestamp"].is_null()
        })
        .collect();
    let mut data = BTreeMap::new();
    for s in &secrets {
        let secret_name = s["metadata"]["name"].as_str().unwrap_or("");
        for (cluster, v) in s["data"].as_object().into_iter().flatten() {
            let raw = v
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let entry = match check(&raw).await {
                Ok(services) => {
                    json!({"cluster": cluster, "secret": format!("{NS}/{secret_name}"), "syncStatus": "synced", "services": services})
                }
                Err(e) => {
                    json!({"cluster": cluster, "secret": format!("{NS}/{secret_name}"), "syncStatus": "failed", "error": e, "services": []})
                }
            };
            data.insert(cluster.clone(), json!(entry.to_string()));
        }
    }
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": STATUS_CONFIGMAP, "namespace": NS, "labels": {"app": "istiod"}},
        "data": data,
    });
    let _ = apply(shared, "istiod", &cm);
}

fn check_auth(kc: &kube::config::Kubeconfig) -> Result<(), String> {
    for user in &kc.auth_infos {
        if let Some(a) = &user.auth_info
            && (a.exec.is_some()
                || a.auth_provider.is_some()
                || a.token_file.is_some()
                || a.client_certificate.is_some()
                || a.client_key.is_some())
        {
            return Err("remote secret kubeconfig uses a disallowed auth method (exec, auth-provider or file path)".into());
        }
    }
    Ok(())
}

async fn check(raw: &str) -> Result<Vec<String>, String> {
    let kc =
        kube::config::Kubeconfig::from_yaml(raw).map_err(|e| format!("invalid kubeconfig: {e}"))?;
    check_auth(&kc)?;
    let client = crate::cluster::client_from_kubeconfig(kc)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let svcs: Api<Service> = Api::all(client);
    let list = tokio::time::timeout(Duration::from_secs(3), svcs.list(&ListParams::default()))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s.metadata.namespace.clone().unwrap_or_default(),
                s.metadata.name.clone().unwrap_or_default()
            )
        })
        .collect())
}
