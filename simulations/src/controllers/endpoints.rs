//! The endpoints controller: what Kubernetes' endpoints controller keeps for each Service.
//!
//! The simulated cluster runs no pods for Deployments, so every replica of a Deployment whose pod
//! template labels match a Service's selector stands for one pod: replicas counted in
//! `status.readyReplicas` are listed under `addresses`, the others under `notReadyAddresses`,
//! each with a stable pod IP (derived from namespace, Deployment and replica index), a
//! `targetRef` naming the pod (`<deployment>-<index>`) and the Service's ports (the numeric
//! target port where one is set). A Service without a selector gets no `Endpoints` (as on a real
//! cluster, where its owner writes them); the `Endpoints` of a deleted Service go with it.
//! Writes are server-side applies, so an unchanged set costs nothing.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::{apply, rt};
use crate::cluster::Shared;
use crate::store::DeleteOptions;

/// The field manager of the controller's writes.
const MANAGER: &str = "endpoint-controller";
/// Annotation marking the `Endpoints` this controller owns (so it never deletes foreign ones).
const MANAGED_ANNOTATION: &str = "endpoints.kubernetes.io/managed-by";

/// Recomputes the `Endpoints` of every Service in `namespace`.
pub(crate) fn reconcile_namespace(shared: &Shared, namespace: &str) {
    let (Ok(services), Ok(deployments), Ok(endpoints)) = (
        rt(shared, "", "Service"),
        rt(shared, "apps", "Deployment"),
        rt(shared, "", "Endpoints"),
    ) else {
        return;
    };
    let deployments: Vec<Value> = shared
        .store
        .list_values(&deployments, Some(namespace))
        .into_iter()
        .filter(|d| d["metadata"]["deletionTimestamp"].is_null())
        .collect();
    let mut wanted = BTreeSet::new();
    for service in shared.store.list_values(&services, Some(namespace)) {
        let Some(selector) = service["spec"]["selector"]
            .as_object()
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        if !service["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        let name = service["metadata"]["name"].as_str().unwrap_or_default();
        wanted.insert(name.to_owned());
        let object = endpoints_of(namespace, name, &service, selector, &deployments);
        let _ = apply(shared, MANAGER, &object);
    }
    for existing in shared.store.list_values(&endpoints, Some(namespace)) {
        let name = existing["metadata"]["name"].as_str().unwrap_or_default();
        let ours = existing["metadata"]["annotations"][MANAGED_ANNOTATION] == MANAGER;
        if ours && !wanted.contains(name) {
            let _ = shared
                .store
                .delete(&endpoints, namespace, name, &DeleteOptions::default());
        }
    }
}

/// Recomputes the `Endpoints` of every namespace.
pub(crate) fn resync(shared: &Shared) {
    let Ok(namespaces) = rt(shared, "", "Namespace") else {
        return;
    };
    for namespace in shared.store.list_values(&namespaces, None) {
        if let Some(name) = namespace["metadata"]["name"].as_str() {
            reconcile_namespace(shared, name);
        }
    }
}

/// Whether every selector label is among the pod template's labels.
fn selects(selector: &Map<String, Value>, labels: &Value) -> bool {
    selector.iter().all(|(key, value)| &labels[key] == value)
}

/// A stable private address for replica `index` of `deployment`.
fn pod_ip(namespace: &str, deployment: &str, index: i64) -> String {
    // FNV-1a over the pod's identity: stable across restarts of the simulated cluster.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in format!("{namespace}/{deployment}").bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let [a, b, _, _] = hash.to_be_bytes();
    format!("10.{}.{}.{}", 64 + a % 64, b, 10 + index.rem_euclid(240))
}

fn endpoints_of(
    namespace: &str,
    name: &str,
    service: &Value,
    selector: &Map<String, Value>,
    deployments: &[Value],
) -> Value {
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for deployment in deployments {
        if !selects(
            selector,
            &deployment["spec"]["template"]["metadata"]["labels"],
        ) {
            continue;
        }
        let deployment_name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
        let ready_replicas = deployment["status"]["readyReplicas"].as_i64().unwrap_or(0);
        for index in 0..replicas {
            let address = json!({
                "ip": pod_ip(namespace, deployment_name, index),
                "targetRef": {
                    "kind": "Pod",
                    "namespace": namespace,
                    "name": format!("{deployment_name}-{index}"),
                },
            });
            if index < ready_replicas {
                ready.push(address);
            } else {
                not_ready.push(address);
            }
        }
    }
    let ports: Vec<Value> = service["spec"]["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .map(|port| {
                    let number = port["targetPort"]
                        .as_i64()
                        .or_else(|| port["port"].as_i64())
                        .unwrap_or(0);
                    let mut out = json!({
                        "port": number,
                        "protocol": port["protocol"].as_str().unwrap_or("TCP"),
                    });
                    if let Some(port_name) = port["name"].as_str() {
                        out["name"] = Value::from(port_name);
                    }
                    out
                })
                .collect()
        })
        .unwrap_or_default();
    let subsets = if ready.is_empty() && not_ready.is_empty() {
        Vec::new()
    } else {
        let mut subset = json!({"ports": ports});
        if !ready.is_empty() {
            subset["addresses"] = Value::Array(ready);
        }
        if !not_ready.is_empty() {
            subset["notReadyAddresses"] = Value::Array(not_ready);
        }
        vec![subset]
    };
    json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": service["metadata"]["labels"].as_object().cloned().unwrap_or_default(),
            "annotations": {MANAGED_ANNOTATION: MANAGER},
        },
        "subsets": subsets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_addresses_are_stable_and_distinct_per_replica() {
        let first = pod_ip("bookinfo", "reviews-v1", 0);
        assert_eq!(first, pod_ip("bookinfo", "reviews-v1", 0));
        assert_ne!(first, pod_ip("bookinfo", "reviews-v1", 1));
        assert!(first.starts_with("10."), "{first}");
    }

    #[test]
    fn ready_and_unready_replicas_of_selected_deployments_are_listed() {
        let service = json!({
            "spec": {"selector": {"app": "reviews"}, "ports": [{"name": "http", "port": 9080}]},
            "metadata": {"labels": {"app": "reviews"}},
        });
        let deployment = |name: &str, app: &str, replicas: i64, ready: i64| {
            json!({
                "metadata": {"name": name},
                "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": app}}}},
                "status": {"readyReplicas": ready},
            })
        };
        let deployments = [
            deployment("reviews-v1", "reviews", 2, 1),
            deployment("ratings-v1", "ratings", 1, 1),
        ];
        let selector = service["spec"]["selector"]
            .as_object()
            .cloned()
            .expect("selector");
        let object = endpoints_of("bookinfo", "reviews", &service, &selector, &deployments);
        let subset = &object["subsets"][0];
        assert_eq!(subset["addresses"].as_array().expect("addresses").len(), 1);
        assert_eq!(
            subset["notReadyAddresses"]
                .as_array()
                .expect("not ready")
                .len(),
            1
        );
        assert_eq!(subset["addresses"][0]["targetRef"]["name"], "reviews-v1-0");
        assert_eq!(subset["ports"][0]["port"], 9080);
        assert_eq!(subset["ports"][0]["name"], "http");
    }
}
