//! The microservices view of a namespace of a mesh: what runs, where, and which rules govern it.
//!
//! Inputs: per member cluster, the Services, workloads and Endpoints observed in one namespace
//! ([`MemberObservation`]), and the mesh's desired Istio objects. Output: one [`Microservice`]
//! per value of the `app` label carried by a Service, with per cluster its Services, the
//! workloads whose pods carry that `app` label (with version, replicas and readiness) and the
//! endpoint addresses of its Services; plus the VirtualServices and DestinationRules that apply
//! to its hosts. A VirtualService applies `byHost` when it routes the service's own host for
//! sidecars (its `gateways` empty or naming `mesh`), `byRoute` when it only sends traffic to the
//! service (a gateway route, a mirror). Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cross::{destinations, resolve_host, wildcard_covers};
use super::semantics::applies_to_mesh;
use super::{IstioKind, IstioResource};

/// The label naming the microservice a Service or a pod belongs to.
pub const APP_LABEL: &str = "app";
/// The label naming a workload's version (the subsets of DestinationRules usually select it).
pub const VERSION_LABEL: &str = "version";

/// What one member cluster holds in the namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberObservation {
    /// The cluster.
    pub cluster: String,
    /// Why it could not be read, when it could not (its lists are then empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its Services.
    pub services: Vec<ServiceSeen>,
    /// Its workloads.
    pub workloads: Vec<WorkloadSeen>,
    /// Its Endpoints objects.
    pub endpoints: Vec<EndpointsSeen>,
}

/// A Service as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSeen {
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its ports, as `name/port` (`http/9080`) or the bare number.
    pub ports: Vec<String>,
}

/// A workload (Deployment) as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSeen {
    /// The kind (`Deployment`).
    pub kind: String,
    /// Its name.
    pub name: String,
    /// The labels of its pods.
    pub labels: BTreeMap<String, String>,
    /// Replicas wanted.
    pub replicas: i64,
    /// Replicas ready.
    pub ready_replicas: i64,
}

/// The Endpoints of one Service as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointsSeen {
    /// The Service's name.
    pub service: String,
    /// Its addresses.
    pub addresses: Vec<EndpointAddress>,
}

/// One endpoint address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointAddress {
    /// The pod's IP.
    pub ip: String,
    /// The pod, when the address names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Whether it receives traffic.
    pub ready: bool,
}

/// A microservice across the mesh's member clusters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Microservice {
    /// The `app` label value.
    pub name: String,
    /// The namespace.
    pub namespace: String,
    /// Its hosts (`reviews.bookinfo.svc.cluster.local`), one per Service.
    pub hosts: Vec<String>,
    /// Versions seen on its workloads (`version` label).
    pub versions: Vec<String>,
    /// Per member cluster that runs it.
    pub clusters: Vec<MicroserviceInCluster>,
    /// Ready endpoints across clusters.
    pub ready_endpoints: usize,
    /// The VirtualServices that apply to it.
    pub virtual_services: Vec<RuleRef>,
    /// The DestinationRules that apply to it.
    pub destination_rules: Vec<RuleRef>,
}

/// The microservice in one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MicroserviceInCluster {
    /// The cluster.
    pub cluster: String,
    /// Its Services there.
    pub services: Vec<ServiceSeen>,
    /// Its workloads there.
    pub workloads: Vec<WorkloadSeen>,
    /// Its endpoint addresses there.
    pub endpoints: Vec<EndpointAddress>,
}

/// How a VirtualService reaches a microservice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Applies {
    /// It configures the service's host (for sidecars), or, for a DestinationRule, its traffic
    /// policy.
    ByHost,
    /// It only sends traffic to it (a gateway route, a mirror).
    ByRoute,
}

/// A desired Istio object that applies to a microservice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// How it applies.
    pub applies: Applies,
    /// Subsets it names for the service (routes) or defines (DestinationRule).
    pub subsets: Vec<String>,
}

/// Strings of a JSON array.
fn strings(value: &Value) -> impl Iterator<Item = &str> {
    value
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
}

/// Whether `host`, written in an object of `namespace`, names one of `hosts`.
fn names_any(host: &str, namespace: &str, hosts: &BTreeSet<String>) -> bool {
    let resolved = resolve_host(host, namespace);
    hosts
        .iter()
        .any(|h| *h == resolved || (resolved.starts_with('*') && wildcard_covers(&resolved, h)))
}

/// The VirtualServices that apply to `hosts`.
fn virtual_services_for(resources: &[IstioResource], hosts: &BTreeSet<String>) -> Vec<RuleRef> {
    let mut out = Vec::new();
    for resource in resources
        .iter()
        .filter(|r| r.key.kind == IstioKind::VirtualService)
    {
        let namespace = resource.key.namespace.as_str();
        let spec = &resource.body["spec"];
        let gateways = spec["gateways"].as_array().cloned().unwrap_or_default();
        let subsets: BTreeSet<String> = destinations(spec)
            .iter()
            .filter(|d| {
                d.destination["host"]
                    .as_str()
                    .is_some_and(|h| names_any(h, namespace, hosts))
            })
            .filter_map(|d| d.destination["subset"].as_str().map(str::to_owned))
            .collect();
        let routes_to = destinations(spec).iter().any(|d| {
            d.destination["host"]
                .as_str()
                .is_some_and(|h| names_any(h, namespace, hosts))
        });
        let by_host = applies_to_mesh(&gateways)
            && strings(&spec["hosts"]).any(|h| names_any(h, namespace, hosts));
        let applies = if by_host {
            Applies::ByHost
        } else if routes_to {
            Applies::ByRoute
        } else {
            continue;
        };
        out.push(RuleRef {
            namespace: namespace.to_owned(),
            name: resource.key.name.clone(),
            applies,
            subsets: subsets.into_iter().collect(),
        });
    }
    out.sort();
    out
}

/// The DestinationRules that apply to `hosts`.
fn destination_rules_for(resources: &[IstioResource], hosts: &BTreeSet<String>) -> Vec<RuleRef> {
    let mut out: Vec<RuleRef> = resources
        .iter()
        .filter(|r| r.key.kind == IstioKind::DestinationRule)
        .filter(|r| {
            r.body["spec"]["host"]
                .as_str()
                .is_some_and(|h| names_any(h, r.key.namespace.as_str(), hosts))
        })
        .map(|r| RuleRef {
            namespace: r.key.namespace.to_string(),
            name: r.key.name.clone(),
            applies: Applies::ByHost,
            subsets: r.body["spec"]["subsets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|s| s["name"].as_str().map(str::to_owned))
                .collect(),
        })
        .collect();
    out.sort();
    out
}

/// The microservices of `namespace`, by name.
pub fn microservices(
    namespace: &str,
    members: &[MemberObservation],
    resources: &[IstioResource],
) -> Vec<Microservice> {
    let mut names = BTreeSet::new();
    for member in members {
        names.extend(
            member
                .services
                .iter()
                .filter_map(|s| s.labels.get(APP_LABEL).cloned()),
        );
    }
    names
        .into_iter()
        .map(|name| one_microservice(namespace, &name, members, resources))
        .collect()
}

fn one_microservice(
    namespace: &str,
    name: &str,
    members: &[MemberObservation],
    resources: &[IstioResource],
) -> Microservice {
    let is_ours =
        |labels: &BTreeMap<String, String>| labels.get(APP_LABEL).map(String::as_str) == Some(name);
    let mut hosts = BTreeSet::new();
    let mut versions = BTreeSet::new();
    let mut clusters = Vec::new();
    for member in members {
        let services: Vec<ServiceSeen> = member
            .services
            .iter()
            .filter(|s| is_ours(&s.labels))
            .cloned()
            .collect();
        let workloads: Vec<WorkloadSeen> = member
            .workloads
            .iter()
            .filter(|w| is_ours(&w.labels))
            .cloned()
            .collect();
        if services.is_empty() && workloads.is_empty() {
            continue;
        }
        let mut endpoints: Vec<EndpointAddress> = member
            .endpoints
            .iter()
            .filter(|e| services.iter().any(|s| s.name == e.service))
            .flat_map(|e| e.addresses.iter().cloned())
            .collect();
        endpoints.sort();
        endpoints.dedup();
        hosts.extend(
            services
                .iter()
                .map(|s| resolve_host(&s.name, namespace).to_string()),
        );
        versions.extend(
            workloads
                .iter()
                .filter_map(|w| w.labels.get(VERSION_LABEL).cloned()),
        );
        clusters.push(MicroserviceInCluster {
            cluster: member.cluster.clone(),
            services,
            workloads,
            endpoints,
        });
    }
    let ready_endpoints = clusters
        .iter()
        .flat_map(|c| c.endpoints.iter())
        .filter(|e| e.ready)
        .count();
    Microservice {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        virtual_services: virtual_services_for(resources, &hosts),
        destination_rules: destination_rules_for(resources, &hosts),
        hosts: hosts.into_iter().collect(),
        versions: versions.into_iter().collect(),
        clusters,
        ready_endpoints,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::normalize;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn member(cluster: &str, versions: &[&str], ready: bool) -> MemberObservation {
        MemberObservation {
            cluster: cluster.to_owned(),
            error: None,
            services: vec![
                ServiceSeen {
                    name: "reviews".into(),
                    labels: labels(&[("app", "reviews")]),
                    ports: vec!["http/9080".into()],
                },
                ServiceSeen {
                    name: "kubernetes".into(),
                    labels: BTreeMap::new(),
                    ports: vec!["443".into()],
                },
            ],
            workloads: versions
                .iter()
                .map(|v| WorkloadSeen {
                    kind: "Deployment".into(),
                    name: format!("reviews-{v}"),
                    labels: labels(&[("app", "reviews"), ("version", v)]),
                    replicas: 1,
                    ready_replicas: i64::from(ready),
                })
                .collect(),
            endpoints: vec![EndpointsSeen {
                service: "reviews".into(),
                addresses: versions
                    .iter()
                    .enumerate()
                    .map(|(i, v)| EndpointAddress {
                        ip: format!("10.0.0.{i}"),
                        pod: Some(format!("reviews-{v}-0")),
                        ready,
                    })
                    .collect(),
            }],
        }
    }

    fn resource(value: Value) -> IstioResource {
        normalize(&value, None).expect("valid sample")
    }

    #[test]
    fn services_are_grouped_by_app_across_clusters_with_the_rules_that_apply() {
        let members = [
            member("a", &["v1", "v2"], true),
            member("b", &["v3"], false),
        ];
        let resources = [
            resource(json!({
                "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": "reviews", "namespace": "bookinfo"},
                "spec": {"hosts": ["reviews"], "http": [{"route": [
                    {"destination": {"host": "reviews", "subset": "v1"}, "weight": 80},
                    {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20}]}]},
            })),
            resource(json!({
                "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": "edge", "namespace": "bookinfo"},
                "spec": {"hosts": ["*"], "gateways": ["bookinfo-gateway"], "http": [{"route": [
                    {"destination": {"host": "reviews.bookinfo.svc.cluster.local"}}]}]},
            })),
            resource(json!({
                "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": "ratings", "namespace": "bookinfo"},
                "spec": {"hosts": ["ratings"], "http": [{"route": [{"destination": {"host": "ratings"}}]}]},
            })),
            resource(json!({
                "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                "metadata": {"name": "reviews", "namespace": "bookinfo"},
                "spec": {"host": "reviews", "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}}]},
            })),
        ];
        let view = microservices("bookinfo", &members, &resources);
        assert_eq!(
            view.len(),
            1,
            "only Services with an app label count: {view:?}"
        );
        let reviews = &view[0];
        assert_eq!(reviews.name, "reviews");
        assert_eq!(reviews.hosts, ["reviews.bookinfo.svc.cluster.local"]);
        assert_eq!(reviews.versions, ["v1", "v2", "v3"]);
        assert_eq!(reviews.clusters.len(), 2);
        assert_eq!(reviews.clusters[1].workloads[0].name, "reviews-v3");
        assert_eq!(
            reviews.ready_endpoints, 2,
            "cluster b's endpoint is not ready"
        );
        let vs: Vec<(&str, Applies)> = reviews
            .virtual_services
            .iter()
            .map(|r| (r.name.as_str(), r.applies))
            .collect();
        assert_eq!(
            vs,
            [("edge", Applies::ByRoute), ("reviews", Applies::ByHost)]
        );
        assert_eq!(reviews.virtual_services[1].subsets, ["v1", "v2"]);
        assert_eq!(reviews.destination_rules.len(), 1);
        assert_eq!(reviews.destination_rules[0].subsets, ["v1", "v2"]);
    }

    #[test]
    fn a_cluster_without_the_service_is_left_out() {
        let mut empty = member("c", &[], true);
        empty.services.clear();
        empty.endpoints.clear();
        let view = microservices("bookinfo", &[member("a", &["v1"], true), empty], &[]);
        assert_eq!(view[0].clusters.len(), 1);
        assert!(view[0].virtual_services.is_empty());
    }
}
