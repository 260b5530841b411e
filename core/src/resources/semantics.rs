//! What Istio's own admission validation checks beyond the CRD schema.
//!
//! Inputs: one normalised, structurally valid [`IstioResource`]. Outputs: [`Finding`]s: errors
//! for what istiod's validating webhook refuses (negative route weights, weights that add up to
//! nothing, regular expressions that do not compile, hosts that are not domain names, subsets
//! without a unique DNS-1123 name, gateway servers without hosts or with a bad port, …) and
//! warnings for what is legal but most likely a mistake (routes shadowed by a catch-all, a
//! destination that gets no traffic, a gateway without a selector).

use std::collections::BTreeSet;

use serde_json::Value;

use super::parse::check_dns_label;
use super::{Finding, IstioKind, IstioResource, Severity, child_path, index_path};

/// Checks `resource` with the rules Istio applies on admission, by kind.
pub fn validate_semantics(resource: &IstioResource) -> Vec<Finding> {
    let mut out = Out {
        resource,
        findings: Vec::new(),
    };
    let spec = &resource.body["spec"];
    match resource.key.kind {
        IstioKind::VirtualService => virtual_service(&mut out, spec),
        IstioKind::DestinationRule => destination_rule(&mut out, spec),
        IstioKind::Gateway => gateway(&mut out, spec),
        IstioKind::ServiceEntry => service_entry(&mut out, spec),
        IstioKind::Sidecar | IstioKind::EnvoyFilter | IstioKind::WorkloadEntry => {}
    }
    if let Some(export_to) = spec["exportTo"].as_array() {
        let mut seen = BTreeSet::new();
        for (i, entry) in export_to.iter().enumerate() {
            let entry = match entry.as_str() {
                Some(".") => resource.key.namespace.as_str(),
                Some(other) => other,
                None => continue,
            };
            if !seen.insert(entry) {
                out.error(
                    index_path("spec.exportTo", i),
                    format!("duplicate entry {entry:?} in exportTo"),
                );
            }
        }
    }
    out.findings
}

struct Out<'a> {
    resource: &'a IstioResource,
    findings: Vec<Finding>,
}

impl Out<'_> {
    fn push(&mut self, severity: Severity, path: String, message: String) {
        self.findings.push(Finding {
            severity,
            resource: Some(self.resource.key.clone()),
            path,
            message,
        });
    }

    fn error(&mut self, path: String, message: String) {
        self.push(Severity::Error, path, message);
    }

    fn warn(&mut self, path: String, message: String) {
        self.push(Severity::Warning, path, message);
    }
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// Checks a host name as Istio does (`ValidateWildcardDomain`): at most 255 characters,
/// DNS-1123 labels, a wildcard only as (the prefix of) the first label, no all-numeric top-level
/// label. IP addresses are accepted.
pub fn check_wildcard_domain(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host name".into());
    }
    if host.len() > 255 {
        return Err(format!("host name {host:?} is too long (at most 255)"));
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let (first, rest) = match host.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (host, None),
    };
    let first_ok = first == "*"
        || check_dns_label(
            first
                .strip_prefix("*-")
                .or_else(|| first.strip_prefix('*'))
                .unwrap_or(first),
        )
        .is_ok();
    if !first_ok {
        return Err(format!("host name {host:?} is invalid (label {first:?})"));
    }
    let Some(rest) = rest else {
        if first.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("host name {host:?} is invalid (all digits)"));
        }
        return Ok(());
    };
    let labels: Vec<&str> = rest.split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        // A trailing dot (`istio.io.`) is an unambiguous absolute name.
        if i == labels.len() - 1 && label.is_empty() {
            break;
        }
        if check_dns_label(label).is_err() {
            return Err(format!("host name {host:?} is invalid (label {label:?})"));
        }
    }
    if let Some(tld) = labels.iter().rev().find(|l| !l.is_empty())
        && tld.chars().all(|c| c.is_ascii_digit())
    {
        return Err(format!(
            "host name {host:?} is invalid (top-level label {tld:?} is all digits)"
        ));
    }
    Ok(())
}

/// Whether a VirtualService (by its `gateways` list) applies to sidecars.
pub fn applies_to_mesh(gateways: &[Value]) -> bool {
    gateways.is_empty() || gateways.iter().any(|g| g == "mesh")
}

fn virtual_service(out: &mut Out<'_>, spec: &Value) {
    let hosts = array(&spec["hosts"]);
    let gateways = array(&spec["gateways"]);
    if hosts.is_empty() {
        if gateways.is_empty() {
            out.warn(
                "spec.hosts".into(),
                "no hosts: this VirtualService is only used as a delegate of another one".into(),
            );
        } else {
            out.error(
                "spec.hosts".into(),
                "virtual service must have at least one host (a delegate, which has none, must have no gateways)".into(),
            );
        }
    }
    let mesh = applies_to_mesh(gateways);
    for (i, host) in hosts.iter().enumerate() {
        let Some(host) = host.as_str() else { continue };
        let path = index_path("spec.hosts", i);
        if host == "*" && mesh {
            out.error(
                path,
                "wildcard host * is not allowed for a VirtualService bound to the mesh (set gateways)".into(),
            );
        } else if let Err(reason) = check_wildcard_domain(host) {
            out.error(path, reason);
        }
    }
    for (i, gateway) in gateways.iter().enumerate() {
        let Some(gateway) = gateway.as_str() else {
            continue;
        };
        let name = gateway.rsplit_once('/').map_or(gateway, |(_, name)| name);
        let namespace_ok = gateway
            .split_once('/')
            .is_none_or(|(ns, _)| check_dns_label(ns).is_ok());
        if gateway != "mesh" && (super::parse::check_dns_subdomain(name).is_err() || !namespace_ok)
        {
            out.error(
                index_path("spec.gateways", i),
                format!("invalid gateway name {gateway:?} (use name, namespace/name or mesh)"),
            );
        }
    }

    let http = array(&spec["http"]);
    for (i, route) in http.iter().enumerate() {
        let path = index_path("spec.http", i);
        http_route(out, route, &path);
        let catch_all = array(&route["match"]).is_empty()
            || array(&route["match"]).iter().any(|m| {
                m.as_object()
                    .is_some_and(|o| o.is_empty() || o.keys().all(|k| k == "name"))
            });
        if catch_all && i + 1 < http.len() {
            out.warn(
                path,
                format!(
                    "this route matches every request, so the {} route(s) after it are never used",
                    http.len() - i - 1
                ),
            );
        }
    }
    for (kind, routes) in [("tcp", &spec["tcp"]), ("tls", &spec["tls"])] {
        for (i, route) in array(routes).iter().enumerate() {
            let path = index_path(&child_path("spec", kind), i);
            destinations(out, array(&route["route"]), &child_path(&path, "route"));
        }
    }
    if http.is_empty() && array(&spec["tcp"]).is_empty() && array(&spec["tls"]).is_empty() {
        out.error(
            "spec".into(),
            "http, tcp or tls must hold at least one route".into(),
        );
    }
}

fn http_route(out: &mut Out<'_>, route: &Value, path: &str) {
    let has = |key: &str| route.get(key).is_some_and(|v| !v.is_null());
    let routes = array(&route["route"]);
    if has("redirect") {
        if !routes.is_empty() {
            out.error(
                path.into(),
                "HTTP route cannot contain both route and redirect".into(),
            );
        }
        if has("fault") {
            out.error(
                path.into(),
                "HTTP route cannot contain both fault and redirect".into(),
            );
        }
        if has("rewrite") {
            out.error(
                path.into(),
                "HTTP route cannot contain both rewrite and redirect".into(),
            );
        }
    } else if routes.is_empty() && !has("directResponse") && !has("delegate") {
        out.error(
            child_path(path, "route"),
            "HTTP route, redirect or directResponse is required".into(),
        );
    }
    for (i, m) in array(&route["match"]).iter().enumerate() {
        let match_path = index_path(&child_path(path, "match"), i);
        for field in ["uri", "scheme", "method", "authority"] {
            string_match(out, &m[field], &child_path(&match_path, field));
        }
        for field in ["headers", "queryParams", "withoutHeaders"] {
            if let Some(map) = m[field].as_object() {
                let field_path = child_path(&match_path, field);
                for (name, matcher) in map {
                    if name.is_empty() {
                        out.error(field_path.clone(), "header name cannot be empty".into());
                    }
                    string_match(out, matcher, &child_path(&field_path, name));
                }
            }
        }
    }
    if let Some(origins) = route["corsPolicy"]["allowOrigins"].as_array() {
        let origins_path = child_path(&child_path(path, "corsPolicy"), "allowOrigins");
        for (i, origin) in origins.iter().enumerate() {
            string_match(out, origin, &index_path(&origins_path, i));
        }
    }
    // Percentages Istio accepts: 0, or 0.0001 up to 100.
    for (value, path) in [
        (
            &route["mirrorPercentage"]["value"],
            child_path(&child_path(path, "mirrorPercentage"), "value"),
        ),
        (
            &route["fault"]["delay"]["percentage"]["value"],
            format!("{path}.fault.delay.percentage.value"),
        ),
        (
            &route["fault"]["abort"]["percentage"]["value"],
            format!("{path}.fault.abort.percentage.value"),
        ),
    ] {
        if let Some(percent) = value.as_f64()
            && (!(0.0..=100.0).contains(&percent) || (percent > 0.0 && percent < 0.0001))
        {
            out.error(
                path,
                format!("percentage {percent} is neither 0 nor in the range 0.0001..100"),
            );
        }
    }
    if let Some(regex) = route["rewrite"]["uriRegexRewrite"]["match"].as_str() {
        let regex_path = child_path(
            &child_path(&child_path(path, "rewrite"), "uriRegexRewrite"),
            "match",
        );
        check_regex(out, regex, regex_path);
    }
    destinations(out, routes, &child_path(path, "route"));
}

fn string_match(out: &mut Out<'_>, matcher: &Value, path: &str) {
    if let Some(regex) = matcher["regex"].as_str() {
        check_regex(out, regex, child_path(path, "regex"));
    }
}

fn check_regex(out: &mut Out<'_>, regex: &str, path: String) {
    if regex.is_empty() {
        out.error(path, "regex string match must not be empty".into());
        return;
    }
    if let Err(e) = regex::Regex::new(regex) {
        let reason = e.to_string();
        let reason = reason.lines().last().unwrap_or_default().trim().to_string();
        out.error(
            path,
            format!("invalid regular expression {regex:?}: {reason}"),
        );
    }
}

/// Route destinations: weights must not be negative and, with several destinations, must not
/// add up to zero (Istio treats them as relative proportions since 1.15, so they need not add
/// up to 100).
fn destinations(out: &mut Out<'_>, routes: &[Value], path: &str) {
    let mut total: i64 = 0;
    let mut unweighted = Vec::new();
    for (i, destination) in routes.iter().enumerate() {
        let item = index_path(path, i);
        match destination["weight"].as_i64() {
            Some(weight) if weight < 0 => {
                out.error(
                    child_path(&item, "weight"),
                    format!("weight {weight} must not be negative"),
                );
            }
            Some(weight) => {
                total += weight;
                if weight == 0 && routes.len() > 1 {
                    unweighted.push(i);
                }
            }
            None => {
                if routes.len() > 1 {
                    unweighted.push(i);
                }
            }
        }
        if let Some(port) = destination["destination"]["port"]["number"].as_i64()
            && !(1..=65535).contains(&port)
        {
            out.error(
                child_path(
                    &child_path(&child_path(&item, "destination"), "port"),
                    "number",
                ),
                format!("port number {port} must be in the range 1..65535"),
            );
        }
    }
    if routes.len() > 1 && total == 0 {
        out.error(
            path.into(),
            "total destination weight is 0: give at least one destination a positive weight".into(),
        );
    } else if routes.len() > 1 && total > i64::from(u32::MAX) {
        out.error(
            path.into(),
            format!(
                "total destination weight {total} is larger than {}",
                u32::MAX
            ),
        );
    } else {
        for i in unweighted {
            out.warn(
                child_path(&index_path(path, i), "weight"),
                "destination has no weight and receives no traffic".into(),
            );
        }
    }
}

fn destination_rule(out: &mut Out<'_>, spec: &Value) {
    if let Some(host) = spec["host"].as_str()
        && let Err(reason) = check_wildcard_domain(host)
    {
        out.error("spec.host".into(), reason);
    }
    let mut names = BTreeSet::new();
    for (i, subset) in array(&spec["subsets"]).iter().enumerate() {
        let path = index_path("spec.subsets", i);
        let Some(name) = subset["name"].as_str() else {
            continue;
        };
        if let Err(reason) = check_dns_label(name) {
            out.error(
                child_path(&path, "name"),
                format!("subset name {name:?} {reason}"),
            );
        }
        if !names.insert(name) {
            out.error(
                child_path(&path, "name"),
                format!("duplicate subset name {name:?}"),
            );
        }
        if subset["labels"].as_object().is_none_or(|l| l.is_empty()) {
            out.warn(
                child_path(&path, "labels"),
                format!("subset {name:?} has no labels and selects every endpoint of the host"),
            );
        }
    }
}

/// Protocols a gateway server port may name (case-insensitive).
const GATEWAY_PROTOCOLS: [&str; 12] = [
    "HTTP",
    "HTTPS",
    "GRPC",
    "GRPC-WEB",
    "HTTP2",
    "HTTP_PROXY",
    "MONGO",
    "MYSQL",
    "REDIS",
    "TCP",
    "TLS",
    "UDP",
];

fn gateway(out: &mut Out<'_>, spec: &Value) {
    let name = &out.resource.key.name;
    if let Err(reason) = check_dns_label(name) {
        out.error(
            "metadata.name".into(),
            format!("gateway name {name:?} {reason}; VirtualServices refer to gateways by label"),
        );
    }
    if spec["selector"].as_object().is_none_or(|s| s.is_empty()) {
        out.warn(
            "spec.selector".into(),
            "no selector: the gateway applies to every gateway workload in the mesh".into(),
        );
    }
    let servers = array(&spec["servers"]);
    if servers.is_empty() {
        out.error(
            "spec.servers".into(),
            "gateway must have at least one server".into(),
        );
    }
    let mut port_names = BTreeSet::new();
    for (i, server) in servers.iter().enumerate() {
        let path = index_path("spec.servers", i);
        let hosts = array(&server["hosts"]);
        if hosts.is_empty() {
            out.error(
                child_path(&path, "hosts"),
                "server must have at least one host".into(),
            );
        }
        for (j, host) in hosts.iter().enumerate() {
            let Some(host) = host.as_str() else { continue };
            let (namespace, dns) = host.split_once('/').unwrap_or(("", host));
            let namespace_ok =
                matches!(namespace, "" | "." | "*" | "~") || check_dns_label(namespace).is_ok();
            if !namespace_ok {
                out.error(
                    index_path(&child_path(&path, "hosts"), j),
                    format!("invalid namespace {namespace:?} in host {host:?}"),
                );
            } else if dns != "*"
                && let Err(reason) = check_wildcard_domain(dns)
            {
                out.error(index_path(&child_path(&path, "hosts"), j), reason);
            }
        }
        let port = &server["port"];
        let port_path = child_path(&path, "port");
        if !port.is_object() {
            out.error(port_path, "server port is required".into());
            continue;
        }
        if let Some(number) = port["number"].as_i64()
            && !(1..=65535).contains(&number)
        {
            out.error(
                child_path(&port_path, "number"),
                format!("port number {number} must be in the range 1..65535"),
            );
        }
        let protocol = port["protocol"].as_str().unwrap_or_default();
        let known = GATEWAY_PROTOCOLS
            .iter()
            .any(|p| p.eq_ignore_ascii_case(protocol));
        if !known {
            out.error(
                child_path(&port_path, "protocol"),
                format!(
                    "invalid protocol {protocol:?}; supported: {}",
                    GATEWAY_PROTOCOLS.join(", ")
                ),
            );
        }
        if let Some(port_name) = port["name"].as_str()
            && !port_names.insert(port_name)
        {
            out.error(
                child_path(&port_path, "name"),
                format!("port names in servers must be unique: duplicate name {port_name:?}"),
            );
        }
        let tls = &server["tls"];
        let is_tls = protocol.eq_ignore_ascii_case("HTTPS") || protocol.eq_ignore_ascii_case("TLS");
        if is_tls && !tls.is_object() {
            out.error(
                child_path(&path, "tls"),
                "server must have TLS settings for HTTPS/TLS protocols".into(),
            );
        }
        if let Some(mode) = tls["mode"].as_str()
            && matches!(mode, "SIMPLE" | "MUTUAL")
        {
            let has = |k: &str| tls[k].as_str().is_some_and(|s| !s.is_empty());
            let credentials = has("credentialName")
                || tls["credentialNames"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
                || tls["tlsCertificates"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty());
            let files = has("serverCertificate") && has("privateKey");
            if !(credentials || files) {
                out.error(
                    child_path(&path, "tls"),
                    format!(
                        "{mode} TLS requires credentialName or serverCertificate and privateKey"
                    ),
                );
            }
        }
    }
}

fn service_entry(out: &mut Out<'_>, spec: &Value) {
    let hosts = array(&spec["hosts"]);
    if hosts.is_empty() {
        out.error(
            "spec.hosts".into(),
            "service entry must have at least one host".into(),
        );
    }
    for (i, host) in hosts.iter().enumerate() {
        if let Some(host) = host.as_str()
            && let Err(reason) = check_wildcard_domain(host)
        {
            out.error(index_path("spec.hosts", i), reason);
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

    fn errors(findings: &[Finding]) -> Vec<(&str, &str)> {
        findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| (f.path.as_str(), f.message.as_str()))
            .collect()
    }

    fn error_paths(findings: &[Finding]) -> Vec<String> {
        errors(findings)
            .into_iter()
            .map(|(p, _)| p.to_string())
            .collect()
    }

    #[test]
    fn negative_weight_is_an_error_at_its_path() {
        let vs = resource(
            "VirtualService",
            "reviews",
            json!({"hosts": ["reviews"], "http": [{"route": [
            {"destination": {"host": "reviews", "subset": "v1"}, "weight": 110},
            {"destination": {"host": "reviews", "subset": "v2"}, "weight": -10}]}]}),
        );
        let errors = error_paths(&validate_semantics(&vs));
        assert_eq!(errors, vec!["spec.http[0].route[1].weight"]);
    }

    #[test]
    fn weights_adding_up_to_zero_are_an_error_but_any_positive_total_is_fine() {
        let zero = resource(
            "VirtualService",
            "r",
            json!({"hosts": ["r"], "tcp": [{"route": [
            {"destination": {"host": "a"}, "weight": 0}, {"destination": {"host": "b"}}]}]}),
        );
        let findings = validate_semantics(&zero);
        assert_eq!(errors(&findings).len(), 1);
        assert_eq!(errors(&findings)[0].0, "spec.tcp[0].route");
        let relative = resource(
            "VirtualService",
            "r",
            json!({"hosts": ["r"], "http": [{"route": [
            {"destination": {"host": "a"}, "weight": 3}, {"destination": {"host": "b"}, "weight": 1}]}]}),
        );
        assert!(validate_semantics(&relative).is_empty());
    }

    #[test]
    fn invalid_regex_in_a_uri_match_is_an_error_at_its_path() {
        let vs = resource(
            "VirtualService",
            "r",
            json!({"hosts": ["r"], "http": [
            {"match": [{"uri": {"prefix": "/"}}, {"uri": {"regex": "/api/(v1"}}],
             "route": [{"destination": {"host": "r"}}]}]}),
        );
        let errs = error_paths(&validate_semantics(&vs));
        assert_eq!(errs, vec!["spec.http[0].match[1].uri.regex"]);
        let header = resource(
            "VirtualService",
            "r",
            json!({"hosts": ["r"], "http": [
            {"match": [{"headers": {"x-user": {"regex": "["}}}], "route": [{"destination": {"host": "r"}}]}]}),
        );
        assert_eq!(
            error_paths(&validate_semantics(&header))[0],
            "spec.http[0].match[0].headers.x-user.regex"
        );
    }

    #[test]
    fn hosts_must_be_domain_names_and_wildcard_needs_a_gateway() {
        let vs = resource(
            "VirtualService",
            "r",
            json!({"hosts": ["*", "Bad_Host", "*.example.com", "10.0.0.1", "123", "a.b.c.", "x.42"],
            "http": [{"route": [{"destination": {"host": "r"}}]}]}),
        );
        let paths = error_paths(&validate_semantics(&vs));
        assert_eq!(
            paths,
            vec![
                "spec.hosts[0]",
                "spec.hosts[1]",
                "spec.hosts[4]",
                "spec.hosts[6]"
            ]
        );
    }

    #[test]
    fn virtual_service_without_hosts_is_a_delegate_unless_it_names_gateways() {
        let delegate = resource(
            "VirtualService",
            "r",
            json!({"http": [{"route": [{"destination": {"host": "r"}}]}]}),
        );
        let findings = validate_semantics(&delegate);
        assert!(errors(&findings).is_empty());
        assert_eq!(findings[0].severity, Severity::Warning);
        let bound = resource(
            "VirtualService",
            "r",
            json!({"gateways": ["gw"], "http": [{"route": [{"destination": {"host": "r"}}]}]}),
        );
        assert_eq!(error_paths(&validate_semantics(&bound))[0], "spec.hosts");
    }

    #[test]
    fn percentages_outside_zero_to_a_hundred_are_errors() {
        let vs = resource(
            "VirtualService",
            "r",
            json!({"hosts": ["r"], "http": [{
            "route": [{"destination": {"host": "r"}}],
            "mirror": {"host": "m"}, "mirrorPercentage": {"value": -1.0},
            "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 100.5}},
                      "delay": {"fixedDelay": "1s", "percentage": {"value": 0.5}}}}]}),
        );
        assert_eq!(
            error_paths(&validate_semantics(&vs)),
            vec![
                "spec.http[0].mirrorPercentage.value",
                "spec.http[0].fault.abort.percentage.value"
            ]
        );
    }

    #[test]
    fn a_catch_all_route_before_others_is_a_warning() {
        let vs = resource(
            "VirtualService",
            "r",
            json!({"hosts": ["r"], "http": [
            {"route": [{"destination": {"host": "r", "subset": "v1"}}]},
            {"match": [{"uri": {"prefix": "/x"}}], "route": [{"destination": {"host": "r"}}]}]}),
        );
        let findings = validate_semantics(&vs);
        assert!(errors(&findings).is_empty());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].path, "spec.http[0]");
    }

    #[test]
    fn subset_names_must_be_unique_dns_labels() {
        let dr = resource(
            "DestinationRule",
            "r",
            json!({"host": "reviews", "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v1", "labels": {"version": "v2"}},
            {"name": "V3", "labels": {"version": "v3"}}]}),
        );
        let paths = error_paths(&validate_semantics(&dr));
        assert_eq!(paths, vec!["spec.subsets[1].name", "spec.subsets[2].name"]);
    }

    #[test]
    fn gateway_servers_need_hosts_valid_ports_and_tls_for_https() {
        let gw = resource(
            "Gateway",
            "gw",
            json!({"selector": {"istio": "ingressgateway"}, "servers": [
            {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": []},
            {"port": {"number": 70000, "name": "http", "protocol": "HTTPS"}, "hosts": ["bad/ns/x"]},
            {"port": {"number": 81, "name": "x", "protocol": "SMTP"}, "hosts": ["ns/*.example.com"]}]}),
        );
        let paths = error_paths(&validate_semantics(&gw));
        assert_eq!(
            paths,
            vec![
                "spec.servers[0].hosts",
                "spec.servers[1].hosts[0]",
                "spec.servers[1].port.number",
                "spec.servers[1].port.name",
                "spec.servers[1].tls",
                "spec.servers[2].port.protocol",
            ]
        );
        let dotted = resource(
            "Gateway",
            "gw.v1",
            json!({"selector": {"a": "b"}, "servers": [
            {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}),
        );
        assert_eq!(
            error_paths(&validate_semantics(&dotted))[0],
            "metadata.name"
        );
    }
}
