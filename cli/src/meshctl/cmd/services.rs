//! `meshctl services MESH -n NS [NAME]`: the microservices view
//! (`GET /meshes/{mesh}/namespaces/{ns}/microservices[/{name}]`).
//!
//! The list shows one line per microservice: its versions, ready endpoints per cluster and the
//! VirtualServices and DestinationRules that apply to it. With a name, one microservice in
//! detail: per cluster its Services, workloads (ready/wanted replicas) and endpoint addresses,
//! then the rules with the subsets they name.

use serde_json::Value;

use crate::meshctl::args::Format;
use crate::meshctl::client::{ApiClient, segment};
use crate::meshctl::error::Result;
use crate::meshctl::output::{self, Table, field};

fn items(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// `cluster-a 2/2, cluster-b 0/1`: ready endpoints of all endpoints per cluster.
fn endpoints_by_cluster(microservice: &Value) -> String {
    items(&microservice["clusters"])
        .iter()
        .map(|c| {
            let endpoints = items(&c["endpoints"]);
            let ready = endpoints.iter().filter(|e| e["ready"] == true).count();
            format!("{} {ready}/{}", field(c, "cluster"), endpoints.len())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn names(rules: &Value) -> String {
    let names: Vec<String> = items(rules).iter().map(|r| field(r, "name")).collect();
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(",")
    }
}

fn list_text(view: &Value) -> String {
    let mut out = String::new();
    let microservices = items(&view["items"]);
    if microservices.is_empty() {
        out.push_str(&format!(
            "no microservices in namespace {}: no Service there carries an `app` label\n",
            field(view, "namespace")
        ));
    } else {
        let mut table = Table::new(&[
            "NAME",
            "VERSIONS",
            "ENDPOINTS (READY/ALL)",
            "VIRTUALSERVICES",
            "DESTINATIONRULES",
        ]);
        for microservice in microservices {
            let versions: Vec<String> = items(&microservice["versions"])
                .iter()
                .map(output::text)
                .collect();
            table.row(vec![
                field(microservice, "name"),
                versions.join(","),
                endpoints_by_cluster(microservice),
                names(&microservice["virtualServices"]),
                names(&microservice["destinationRules"]),
            ]);
        }
        out.push_str(&table.to_string());
    }
    for unreachable in items(&view["unreachableClusters"]) {
        out.push_str(&format!(
            "warning: cluster {} was not read: {}\n",
            field(unreachable, "cluster"),
            field(unreachable, "error")
        ));
    }
    out
}

fn detail_text(microservice: &Value) -> String {
    let mut out = format!(
        "Name:       {}\nNamespace:  {}\nHosts:      {}\n",
        field(microservice, "name"),
        field(microservice, "namespace"),
        items(&microservice["hosts"])
            .iter()
            .map(output::text)
            .collect::<Vec<_>>()
            .join(", ")
    );
    for cluster in items(&microservice["clusters"]) {
        out.push_str(&format!("Cluster {}:\n", field(cluster, "cluster")));
        for service in items(&cluster["services"]) {
            let ports: Vec<String> = items(&service["ports"]).iter().map(output::text).collect();
            out.push_str(&format!(
                "  service   {} ({})\n",
                field(service, "name"),
                ports.join(", ")
            ));
        }
        for workload in items(&cluster["workloads"]) {
            out.push_str(&format!(
                "  workload  {} {} version={} ready {}/{}\n",
                field(workload, "kind"),
                field(workload, "name"),
                field(&workload["labels"], "version"),
                field(workload, "readyReplicas"),
                field(workload, "replicas")
            ));
        }
        for endpoint in items(&cluster["endpoints"]) {
            out.push_str(&format!(
                "  endpoint  {} {}{}\n",
                field(endpoint, "ip"),
                field(endpoint, "pod"),
                if endpoint["ready"] == true {
                    ""
                } else {
                    " (not ready)"
                }
            ));
        }
    }
    for (title, rules) in [
        ("VirtualServices", &microservice["virtualServices"]),
        ("DestinationRules", &microservice["destinationRules"]),
    ] {
        out.push_str(&format!("{title}:\n"));
        if items(rules).is_empty() {
            out.push_str("  (none)\n");
        }
        for rule in items(rules) {
            let subsets: Vec<String> = items(&rule["subsets"]).iter().map(output::text).collect();
            out.push_str(&format!(
                "  {}/{} ({}){}\n",
                field(rule, "namespace"),
                field(rule, "name"),
                field(rule, "applies"),
                if subsets.is_empty() {
                    String::new()
                } else {
                    format!(" subsets {}", subsets.join(","))
                }
            ));
        }
    }
    out
}

/// Runs `meshctl services`.
pub async fn show(
    client: &ApiClient,
    format: Format,
    mesh: &str,
    namespace: &str,
    name: Option<&str>,
) -> Result<()> {
    let base = format!(
        "/meshes/{}/namespaces/{}/microservices",
        segment(mesh),
        segment(namespace)
    );
    match name {
        Some(name) => {
            let microservice = client.get(&format!("{base}/{}", segment(name))).await?;
            output::print(format, &microservice, detail_text)
        }
        None => {
            let view = client.get(&base).await?;
            output::print(format, &view, list_text)
        }
    }
}
