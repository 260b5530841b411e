//! Checks across a set of Istio objects, and against what the clusters hold.
//!
//! Inputs: the normalised objects of one scope (a namespace, a mesh) and, optionally,
//! [`ClusterFacts`] observed in the member clusters (services and workload labels). Outputs:
//! [`Finding`]s: a route to a subset the host's DestinationRules do not define and two
//! VirtualServices claiming
//! the same host on the same gateway (Istio's IST0109) are errors; a subset of a host no rule in
//! the set configures, hosts that name no known
//! service, gateways that select no workload and several DestinationRules for one host are
//! warnings. Checks that need facts run only when facts are given.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::semantics::applies_to_mesh;
use super::{Finding, IstioKind, IstioResource, ResourceKey, Severity, child_path, index_path};
use crate::names::ClusterName;

/// The DNS suffix of Kubernetes services Istio resolves short names with.
const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// What the member clusters hold that Istio objects refer to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFacts {
    /// Kubernetes services.
    pub services: Vec<ServiceFact>,
    /// Workloads (Deployments and the like) with their pod template labels.
    pub workloads: Vec<WorkloadFact>,
}

/// A Kubernetes service seen in a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceFact {
    /// The cluster it is in.
    pub cluster: ClusterName,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// A workload seen in a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadFact {
    /// The cluster it is in.
    pub cluster: ClusterName,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The labels of its pods (pod template labels).
    pub labels: BTreeMap<String, String>,
}

/// `host` as Istio resolves it from `namespace`: a name without dots is a service of that
/// namespace (`reviews` in `default` is `reviews.default.svc.cluster.local`); names with dots and
/// wildcards are taken as written.
pub fn resolve_host(host: &str, namespace: &str) -> String {
    if host.starts_with('*') || host.contains('.') {
        host.to_string()
    } else {
        format!("{host}.{namespace}.{CLUSTER_DOMAIN}")
    }
}

/// Whether the wildcard host `pattern` (`*.example.com`, `*`) covers `host`.
pub(crate) fn wildcard_covers(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
        None => pattern == host,
    }
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A destination inside a VirtualService, with the path of its object.
pub(crate) struct DestinationRef<'a> {
    pub(crate) destination: &'a Value,
    pub(crate) path: String,
}

/// Every destination of a VirtualService: routes of http/tcp/tls rules and HTTP mirrors.
pub(crate) fn destinations(spec: &Value) -> Vec<DestinationRef<'_>> {
    let mut out = Vec::new();
    for kind in ["http", "tcp", "tls"] {
        for (i, rule) in array(&spec[kind]).iter().enumerate() {
            let rule_path = index_path(&child_path("spec", kind), i);
            for (j, route) in array(&rule["route"]).iter().enumerate() {
                out.push(DestinationRef {
                    destination: &route["destination"],
                    path: child_path(
                        &index_path(&child_path(&rule_path, "route"), j),
                        "destination",
                    ),
                });
            }
            if rule["mirror"].is_object() {
                out.push(DestinationRef {
                    destination: &rule["mirror"],
                    path: child_path(&rule_path, "mirror"),
                });
            }
            for (j, mirror) in array(&rule["mirrors"]).iter().enumerate() {
                out.push(DestinationRef {
                    destination: &mirror["destination"],
                    path: child_path(
                        &index_path(&child_path(&rule_path, "mirrors"), j),
                        "destination",
                    ),
                });
            }
        }
    }
    out
}

struct Out {
    findings: Vec<Finding>,
}

impl Out {
    fn push(&mut self, severity: Severity, key: &ResourceKey, path: String, message: String) {
        self.findings.push(Finding {
            severity,
            resource: Some(key.clone()),
            path,
            message,
        });
    }
}

/// Checks a set of objects together (and against `facts`, when given).
pub fn validate_set(resources: &[IstioResource], facts: Option<&ClusterFacts>) -> Vec<Finding> {
    let mut out = Out {
        findings: Vec::new(),
    };
    let mut seen = BTreeSet::new();
    for resource in resources {
        if !seen.insert(&resource.key) {
            out.push(
                Severity::Error,
                &resource.key,
                String::new(),
                format!("{} appears more than once in the set", resource.key),
            );
        }
    }

    let of_kind = |kind: IstioKind| resources.iter().filter(move |r| r.key.kind == kind);

    // DestinationRules by resolved host.
    let mut rules: BTreeMap<String, Vec<&IstioResource>> = BTreeMap::new();
    for dr in of_kind(IstioKind::DestinationRule) {
        if let Some(host) = dr.body["spec"]["host"].as_str() {
            rules
                .entry(resolve_host(host, dr.key.namespace.as_str()))
                .or_default()
                .push(dr);
        }
    }
    for (host, drs) in &rules {
        for dr in drs.iter().skip(1) {
            out.push(
                Severity::Warning,
                &dr.key,
                "spec.host".into(),
                format!(
                    "{} also configures host {host}; Istio uses only one DestinationRule per host unless it can merge them",
                    drs[0].key
                ),
            );
        }
    }
    let subsets_for = |host: &str| -> Option<BTreeSet<&str>> {
        let candidates: Vec<&IstioResource> = match rules.get(host) {
            Some(exact) => exact.clone(),
            None => {
                // The most specific wildcard rule applies.
                let best = rules
                    .keys()
                    .filter(|pattern| pattern.starts_with('*') && wildcard_covers(pattern, host))
                    .max_by_key(|pattern| pattern.len())?;
                rules[best].clone()
            }
        };
        Some(
            candidates
                .iter()
                .flat_map(|dr| array(&dr.body["spec"]["subsets"]))
                .filter_map(|s| s["name"].as_str())
                .collect(),
        )
    };

    // Subsets routed to must be defined.
    for vs in of_kind(IstioKind::VirtualService) {
        for d in destinations(&vs.body["spec"]) {
            let (Some(host), Some(subset)) = (
                d.destination["host"].as_str(),
                d.destination["subset"].as_str(),
            ) else {
                continue;
            };
            let fqdn = resolve_host(host, vs.key.namespace.as_str());
            let path = child_path(&d.path, "subset");
            match subsets_for(&fqdn) {
                // The rule may live outside the set (another namespace, the root namespace):
                // only a rule in the set that lacks the subset is proof of a mistake.
                None => out.push(
                    Severity::Warning,
                    &vs.key,
                    path,
                    format!("no DestinationRule in the set configures host {fqdn}; one must define subset {subset:?}"),
                ),
                Some(defined) if !defined.contains(subset) => {
                    let defined = defined.into_iter().collect::<Vec<_>>().join(", ");
                    out.push(
                        Severity::Error,
                        &vs.key,
                        path,
                        format!("subset {subset:?} of host {fqdn} is defined by no DestinationRule (defined: {defined})"),
                    );
                }
                Some(_) => {}
            }
        }
    }

    // Two VirtualServices for one host on one gateway (IST0109).
    let mut claims: BTreeMap<(String, String), Vec<(&IstioResource, usize)>> = BTreeMap::new();
    for vs in of_kind(IstioKind::VirtualService) {
        let spec = &vs.body["spec"];
        let namespace = vs.key.namespace.as_str();
        let gateways: BTreeSet<String> = if array(&spec["gateways"]).is_empty() {
            BTreeSet::from(["mesh".to_string()])
        } else {
            array(&spec["gateways"])
                .iter()
                .filter_map(Value::as_str)
                .map(|g| match g {
                    "mesh" => g.to_string(),
                    g if g.contains('/') => g.to_string(),
                    g => format!("{namespace}/{g}"),
                })
                .collect()
        };
        let hosts: BTreeSet<(String, usize)> = array(&spec["hosts"])
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_str().map(|h| (resolve_host(h, namespace), i)))
            .collect();
        let mut claimed_hosts = BTreeSet::new();
        for (host, index) in hosts {
            if !claimed_hosts.insert(host.clone()) {
                continue;
            }
            for gateway in &gateways {
                claims
                    .entry((gateway.clone(), host.clone()))
                    .or_default()
                    .push((vs, index));
            }
        }
    }
    let mut reported = BTreeSet::new();
    for ((gateway, host), claimants) in &claims {
        if claimants.len() < 2 {
            continue;
        }
        for (vs, index) in claimants {
            let others = claimants
                .iter()
                .filter(|(other, _)| other.key != vs.key)
                .map(|(other, _)| other.key.to_string())
                .collect::<Vec<_>>();
            if others.is_empty() || !reported.insert((vs.key.clone(), *index, gateway.clone())) {
                continue;
            }
            out.push(
                Severity::Error,
                &vs.key,
                index_path("spec.hosts", *index),
                format!(
                    "host {host} on gateway {gateway} is also claimed by {} (IST0109 conflicting hosts): merge the routes into one VirtualService",
                    others.join(", ")
                ),
            );
        }
    }

    if let Some(facts) = facts {
        check_against_facts(&mut out, resources, facts);
    }
    out.findings
}

fn check_against_facts(out: &mut Out, resources: &[IstioResource], facts: &ClusterFacts) {
    let mut known: BTreeSet<String> = facts
        .services
        .iter()
        .map(|s| format!("{}.{}.{CLUSTER_DOMAIN}", s.name, s.namespace))
        .collect();
    let mut known_patterns = Vec::new();
    for se in resources
        .iter()
        .filter(|r| r.key.kind == IstioKind::ServiceEntry)
    {
        for host in array(&se.body["spec"]["hosts"])
            .iter()
            .filter_map(Value::as_str)
        {
            let host = resolve_host(host, se.key.namespace.as_str());
            if host.starts_with('*') {
                known_patterns.push(host);
            } else {
                known.insert(host);
            }
        }
    }
    let is_known = |host: &str| {
        known.contains(host) || known_patterns.iter().any(|p| wildcard_covers(p, host))
    };
    let check = |out: &mut Out, key: &ResourceKey, host: &str, path: String| {
        if host.starts_with('*') || host.parse::<std::net::IpAddr>().is_ok() {
            return;
        }
        let fqdn = resolve_host(host, key.namespace.as_str());
        if !is_known(&fqdn) {
            out.push(
                Severity::Warning,
                key,
                path,
                format!("host {fqdn} names no service in the mesh's clusters and no ServiceEntry"),
            );
        }
    };
    for resource in resources {
        let spec = &resource.body["spec"];
        match resource.key.kind {
            IstioKind::VirtualService => {
                // Hosts of a VirtualService bound only to gateways are public names.
                if applies_to_mesh(array(&spec["gateways"])) {
                    for (i, host) in array(&spec["hosts"]).iter().enumerate() {
                        if let Some(host) = host.as_str() {
                            check(out, &resource.key, host, index_path("spec.hosts", i));
                        }
                    }
                }
                for d in destinations(spec) {
                    if let Some(host) = d.destination["host"].as_str() {
                        check(out, &resource.key, host, child_path(&d.path, "host"));
                    }
                }
            }
            IstioKind::DestinationRule => {
                if let Some(host) = spec["host"].as_str() {
                    check(out, &resource.key, host, "spec.host".into());
                }
            }
            IstioKind::Gateway => {
                let Some(selector) = spec["selector"].as_object().filter(|s| !s.is_empty()) else {
                    continue;
                };
                let selected = facts.workloads.iter().any(|w| {
                    selector.iter().all(|(k, v)| {
                        v.as_str()
                            .is_some_and(|v| w.labels.get(k).map(String::as_str) == Some(v))
                    })
                });
                if !selected {
                    let selector = selector
                        .iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",");
                    out.push(
                        Severity::Warning,
                        &resource.key,
                        "spec.selector".into(),
                        format!("selector {selector} matches no workload in the mesh's clusters"),
                    );
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::normalize;

    fn resource(kind: &str, name: &str, spec: Value) -> IstioResource {
        normalize(
            &json!({"apiVersion": "networking.istio.io/v1", "kind": kind,
                "metadata": {"name": name, "namespace": "default"}, "spec": spec}),
            None,
        )
        .expect("normalises")
    }

    fn cluster() -> ClusterName {
        ClusterName::new("east").expect("valid")
    }

    fn reviews_dr() -> IstioResource {
        resource(
            "DestinationRule",
            "reviews",
            json!({"host": "reviews", "subsets": [
            {"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]}),
        )
    }

    #[test]
    fn routing_to_an_undefined_subset_is_an_error_at_the_subset() {
        let vs = resource(
            "VirtualService",
            "reviews",
            json!({"hosts": ["reviews"], "http": [
            {"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 50},
                       {"destination": {"host": "reviews.default.svc.cluster.local", "subset": "v9"}, "weight": 50}]}]}),
        );
        let findings = validate_set(&[reviews_dr(), vs.clone()], None);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].severity, Severity::Error);
        assert_eq!(findings[0].path, "spec.http[0].route[1].destination.subset");
        assert!(findings[0].message.contains("v9") && findings[0].message.contains("v1, v2"));
        // Without any rule for the host in the set, the rule may live elsewhere: a warning.
        let alone = validate_set(&[vs], None);
        assert_eq!(alone.len(), 2);
        assert!(
            alone.iter().all(
                |f| f.severity == Severity::Warning && f.message.contains("no DestinationRule")
            )
        );
    }

    #[test]
    fn two_virtual_services_for_one_host_on_the_mesh_conflict() {
        let a = resource(
            "VirtualService",
            "a",
            json!({"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}),
        );
        let b = resource(
            "VirtualService",
            "b",
            json!({"hosts": ["ratings", "reviews.default.svc.cluster.local"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}),
        );
        let findings = validate_set(&[a.clone(), b], None);
        let paths: Vec<_> = findings
            .iter()
            .map(|f| {
                (
                    f.resource.as_ref().map(|k| k.name.as_str()),
                    f.path.as_str(),
                    f.severity,
                )
            })
            .collect();
        assert_eq!(
            paths,
            vec![
                (Some("a"), "spec.hosts[0]", Severity::Error),
                (Some("b"), "spec.hosts[1]", Severity::Error)
            ]
        );
        // On different gateways the same host does not conflict.
        let c = resource(
            "VirtualService",
            "c",
            json!({"hosts": ["reviews"], "gateways": ["gw"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}),
        );
        assert!(validate_set(&[a, c], None).is_empty());
    }

    #[test]
    fn two_destination_rules_for_one_host_are_a_warning() {
        let other = resource(
            "DestinationRule",
            "reviews-2",
            json!({"host": "reviews.default.svc.cluster.local"}),
        );
        let findings = validate_set(&[reviews_dr(), other], None);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].severity, Severity::Warning);
        assert_eq!(findings[0].path, "spec.host");
    }

    #[test]
    fn unknown_hosts_and_unselected_gateways_are_warnings_only_with_facts() {
        let vs = resource(
            "VirtualService",
            "r",
            json!({"hosts": ["reviews"], "http": [{"route": [
            {"destination": {"host": "reviews"}, "weight": 1}, {"destination": {"host": "www.googleapis.com"}, "weight": 1},
            {"destination": {"host": "ghost"}, "weight": 1}]}]}),
        );
        let se = resource(
            "ServiceEntry",
            "google",
            json!({"hosts": ["*.googleapis.com"]}),
        );
        let gw = resource(
            "Gateway",
            "gw",
            json!({"selector": {"istio": "ingressgateway"}}),
        );
        let set = [vs, se, gw];
        assert!(validate_set(&set, None).is_empty());
        let facts = ClusterFacts {
            services: vec![ServiceFact {
                cluster: cluster(),
                namespace: "default".into(),
                name: "reviews".into(),
                labels: BTreeMap::new(),
            }],
            workloads: vec![WorkloadFact {
                cluster: cluster(),
                namespace: "istio-system".into(),
                name: "istio-ingressgateway".into(),
                labels: BTreeMap::from([("istio".into(), "ingress".into())]),
            }],
        };
        let findings = validate_set(&set, Some(&facts));
        let paths: Vec<_> = findings
            .iter()
            .map(|f| (f.path.as_str(), f.severity))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("spec.http[0].route[2].destination.host", Severity::Warning),
                ("spec.selector", Severity::Warning)
            ]
        );
        assert!(
            findings[0]
                .message
                .contains("ghost.default.svc.cluster.local")
        );
    }

    #[test]
    fn a_duplicate_key_in_the_set_is_an_error() {
        let findings = validate_set(&[reviews_dr(), reviews_dr()], None);
        assert!(
            findings
                .iter()
                .any(|f| f.severity == Severity::Error && f.message.contains("more than once"))
        );
    }
}
