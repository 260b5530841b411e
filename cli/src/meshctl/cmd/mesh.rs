//! `meshctl mesh create|list|get|describe|delete|upgrade|canary|sampling|injection|outbound`:
//! meshes (`/meshes`).
//!
//! Writes are commands answered 202 with a command id. With `--wait`, meshctl follows the mesh's
//! event stream for that command (see [`crate::meshctl::progress`]) and ends with a success line,
//! or fails naming the cluster and the error.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::meshctl::args::{
    CanaryActionArg, Format, MeshCommand, OutboundPolicyArg, UpgradeStrategyArg, WaitArgs,
};
use crate::meshctl::client::{ApiClient, segment};
use crate::meshctl::error::{Error, Result};
use crate::meshctl::feed::EventFeed;
use crate::meshctl::output::{self, Table, field, render, text, time};
use crate::meshctl::progress;

/// Flows `mesh describe` shows, newest first.
const DESCRIBED_FLOWS: usize = 5;
/// Of those, how many are shown with their tasks.
const DESCRIBED_FLOW_TASKS: usize = 2;

/// Runs a `mesh` command.
pub async fn run(client: &ApiClient, format: Format, command: MeshCommand) -> Result<()> {
    match command {
        MeshCommand::Create { file, wait } => create(client, format, &file, &wait).await,
        MeshCommand::List => {
            let meshes = client.get("/meshes").await?;
            output::print(format, &meshes, |m| {
                let meshes = m.as_array().map(Vec::as_slice).unwrap_or_default();
                if meshes.is_empty() {
                    return "no meshes; create one with `meshctl mesh create -f mesh.yaml --wait`\n"
                        .into();
                }
                mesh_table(meshes)
            })
        }
        MeshCommand::Get { name } => {
            let mesh = client.get(&mesh_path(&name)).await?;
            output::print(format, &mesh, |m| mesh_table(std::slice::from_ref(m)))
        }
        MeshCommand::Describe { name } => describe(client, format, &name).await,
        MeshCommand::Delete { name, wait } => {
            let path = mesh_path(&name);
            operate(
                client,
                format,
                &name,
                "delete",
                "deleted",
                &wait,
                true,
                async { client.delete(&path).await },
            )
            .await
        }
        MeshCommand::Upgrade {
            name,
            version,
            strategy,
            batch_size,
            pause_seconds,
            max_error_ratio,
            prometheus_url,
            gate_window_seconds,
            wait,
        } => {
            let path = mesh_path(&name);
            let strategy = match strategy {
                UpgradeStrategyArg::Canary => "canary",
                UpgradeStrategyArg::InPlace => "in-place",
            };
            let mut body = json!({ "version": version, "strategy": strategy });
            if let Some(size) = batch_size {
                body["batchSize"] = json!(size);
            }
            if let Some(pause) = pause_seconds {
                body["pauseSeconds"] = json!(pause);
            }
            if let Some(ratio) = max_error_ratio {
                body["maxErrorRatio"] = json!(ratio);
            }
            if let Some(url) = prometheus_url {
                body["prometheusUrl"] = json!(url);
            }
            if let Some(window) = gate_window_seconds {
                body["gateWindowSeconds"] = json!(window);
            }
            let done = if strategy == "canary" {
                "is in canary (confirm or roll back with `meshctl mesh canary`)"
            } else {
                "upgraded"
            };
            operate(client, format, &name, "upgrade", done, &wait, true, async {
                client.post(&path, &body).await
            })
            .await
        }
        MeshCommand::Canary { action, name, wait } => {
            let path = format!("{}/canary", mesh_path(&name));
            let (operate_as, verb, done) = match action {
                CanaryActionArg::Confirm => ("confirm", "canary confirm", "confirmed"),
                CanaryActionArg::Rollback => ("rollback", "canary rollback", "rolled back"),
            };
            let body = json!({ "operate": operate_as });
            operate(client, format, &name, verb, done, &wait, true, async {
                client.post(&path, &body).await
            })
            .await
        }
        MeshCommand::Injection {
            name,
            cluster,
            namespaces,
            wait,
        } => injection(client, format, &name, cluster, namespaces, &wait).await,
        MeshCommand::Outbound { name, policy, wait } => {
            let path = format!("{}/outbound-traffic", mesh_path(&name));
            let Some(policy) = policy else {
                let current = client.get(&path).await?;
                return output::print(format, &current, |c| {
                    format!("{}\n", field(c, "outboundTrafficPolicy"))
                });
            };
            let policy = match policy {
                OutboundPolicyArg::AllowAny => "ALLOW_ANY",
                OutboundPolicyArg::RegistryOnly => "REGISTRY_ONLY",
            };
            let body = json!({ "outboundTrafficPolicy": policy });
            operate(
                client,
                format,
                &name,
                "outbound traffic change",
                "reconfigured",
                &wait,
                true,
                async { client.post(&path, &body).await },
            )
            .await
        }
        MeshCommand::Sampling {
            name,
            percent,
            wait,
        } => {
            let path = format!("{}/sampling", mesh_path(&name));
            let body = json!({ "traceSampling": percent });
            operate(
                client,
                format,
                &name,
                "trace sampling change",
                "reconfigured",
                &wait,
                true,
                async { client.post(&path, &body).await },
            )
            .await
        }
    }
}

/// `mesh injection`: shows every member's injected namespaces, or sets one member's.
async fn injection(
    client: &ApiClient,
    format: Format,
    name: &str,
    cluster: Option<String>,
    namespaces: Vec<String>,
    wait: &WaitArgs,
) -> Result<()> {
    let path = format!("{}/autoinjectionnamespaces", mesh_path(name));
    let Some(cluster) = cluster else {
        if !namespaces.is_empty() {
            return Err(Error::Input(
                "name the member cluster whose namespaces to set with --cluster".into(),
            ));
        }
        let current = client.get(&path).await?;
        return output::print(format, &current, |c| {
            let mut table = Table::new(&["CLUSTER", "NAMESPACES"]);
            if let Some(members) = c["autoInjectionNamespaces"].as_object() {
                for (cluster, listed) in members {
                    let listed: Vec<String> = listed
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .map(text)
                        .collect();
                    table.row(vec![
                        cluster.clone(),
                        if listed.is_empty() {
                            "-".to_owned()
                        } else {
                            listed.join(",")
                        },
                    ]);
                }
            }
            table.to_string()
        });
    };
    let body = json!({ "cluster": cluster, "namespaces": namespaces });
    operate(
        client,
        format,
        name,
        "injection change",
        "reconfigured",
        wait,
        true,
        async { client.post(&path, &body).await },
    )
    .await
}

fn mesh_path(name: &str) -> String {
    format!("/meshes/{}", segment(name))
}

fn mesh_table(meshes: &[Value]) -> String {
    let mut table = Table::new(&[
        "NAME", "MODE", "VERSION", "STATUS", "CLUSTERS", "TENANT", "CREATED",
    ]);
    for mesh in meshes {
        let clusters = mesh
            .get("clusters")
            .and_then(Value::as_array)
            .map(|c| {
                c.iter()
                    .map(|m| field(m, "name"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        table.row(vec![
            field(mesh, "name"),
            field(mesh, "mode"),
            field(mesh, "version"),
            field(mesh, "status"),
            clusters,
            field(mesh, "tenant_id"),
            time(mesh, "created_at"),
        ]);
    }
    table.to_string()
}

/// Reads a mesh manifest: YAML or JSON, from a file or `-` (standard input).
pub fn read_manifest(file: &Path) -> Result<Value> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(|source| Error::Io {
            path: file.to_owned(),
            source,
        })?
    } else {
        std::fs::read_to_string(file).map_err(|source| Error::Io {
            path: file.to_owned(),
            source,
        })?
    };
    // YAML is a superset of JSON, so one parser reads both.
    let value: Value = serde_yaml::from_str(&text)
        .map_err(|e| Error::Input(format!("{} is neither YAML nor JSON: {e}", file.display())))?;
    match value.get("name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() && value.is_object() => Ok(value),
        _ => Err(Error::Input(format!(
            "{} must be a mesh object with a name (name, region, version, mode, clusters)",
            file.display()
        ))),
    }
}

async fn create(client: &ApiClient, format: Format, file: &Path, wait: &WaitArgs) -> Result<()> {
    let manifest = read_manifest(file)?;
    let name = field(&manifest, "name");
    operate(
        client,
        format,
        &name,
        "create",
        "created",
        wait,
        false,
        async { client.post("/meshes", &manifest).await },
    )
    .await
}

/// Sends a long operation and, with `--wait`, follows it to its end.
///
/// The event stream is opened first when the mesh exists already (`stream_first`), so an
/// operation that removes the mesh is still followed to its end; for a create it is opened right
/// after, once a worker has recorded the mesh.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn operate(
    client: &ApiClient,
    format: Format,
    mesh: &str,
    verb: &str,
    done: &str,
    wait: &WaitArgs,
    stream_first: bool,
    send: impl Future<Output = Result<Value>>,
) -> Result<()> {
    let what = format!("{verb} of mesh {mesh}");
    let deadline = Instant::now() + wait.timeout;
    let mut feed = if wait.wait && stream_first {
        Some(EventFeed::open(client, mesh, None).await?)
    } else {
        None
    };
    let answer = send.await?;
    let command_id = field(&answer, "commandId");
    if !wait.wait {
        return output::print(format, &answer, |a| {
            format!(
                "mesh {mesh}: {} {} (command {command_id}); follow it with `meshctl events {mesh} -f`\n",
                field(a, "kind"),
                field(a, "status").to_lowercase(),
            )
        });
    }
    let mut feed = match feed.take() {
        Some(feed) => feed,
        None => EventFeed::open(client, mesh, Some(deadline)).await?,
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    let finished = progress::follow(
        client,
        &mut feed,
        mesh,
        &what,
        &command_id,
        remaining.max(Duration::from_secs(1)),
    )
    .await?;
    let summary = json!({
        "mesh": mesh,
        "commandId": command_id,
        "kind": field(&answer, "kind"),
        "status": "Succeeded",
        "flowId": finished.flow_id,
        "flow": finished.flow,
        "tasks": finished.tasks,
        "clusters": finished.clusters,
        "elapsedSeconds": (finished.elapsed.as_secs_f64() * 10.0).round() / 10.0,
    });
    output::print(format, &summary, |_| {
        format!(
            "mesh {mesh} {done}: {} succeeded in {:.1}s ({} task(s) on {} cluster(s))\n",
            finished.flow.as_deref().unwrap_or("flow"),
            finished.elapsed.as_secs_f64(),
            finished.tasks,
            finished.clusters
        )
    })
}

async fn describe(client: &ApiClient, format: Format, name: &str) -> Result<()> {
    let path = mesh_path(name);
    let mesh = client.get(&path).await?;
    let listed = client
        .get(&format!("{path}/flows?limit={DESCRIBED_FLOWS}"))
        .await?;
    let mut flows = Vec::new();
    for (i, flow) in listed
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        if i < DESCRIBED_FLOW_TASKS
            && let Some(id) = flow.get("id").and_then(Value::as_i64)
        {
            flows.push(client.get(&format!("{path}/flows/{id}")).await?);
        } else {
            flows.push(flow);
        }
    }
    let described = json!({ "mesh": mesh, "flows": flows });
    if format != Format::Table {
        return output::print(format, &described, |_| String::new());
    }
    output::out(&describe_text(&mesh, &flows))
}

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

/// The `mesh describe` text of a mesh and its recent flows.
pub fn describe_text(mesh: &Value, flows: &[Value]) -> String {
    let mut out = String::new();
    let or_dash = |s: String| if s.is_empty() { "-".to_owned() } else { s };
    for (label, value) in [
        ("Name", field(mesh, "name")),
        ("Tenant", field(mesh, "tenant_id")),
        ("Title", field(mesh, "title")),
        ("Region", field(mesh, "region")),
        ("Mode", field(mesh, "mode")),
        ("Status", field(mesh, "status")),
        ("Version", field(mesh, "version")),
        ("Last version", field(mesh, "last_version")),
        ("Generation", field(mesh, "generation")),
        ("Created", time(mesh, "created_at")),
        ("Updated", time(mesh, "updated_at")),
    ] {
        out.push_str(&format!("{:<14}{}\n", format!("{label}:"), or_dash(value)));
    }
    out.push_str("Config:\n");
    match mesh.get("config") {
        Some(config) if !config.is_null() => {
            let yaml = render(Format::Yaml, config).unwrap_or_else(|_| text(config));
            out.push_str(&indent(&yaml, "  "));
        }
        _ => out.push_str("  -\n"),
    }
    out.push_str("Clusters:\n");
    let mut clusters = Table::new(&[
        "NAME", "ROLE", "NETWORK", "REGION", "PHASE", "LINKED", "ERROR",
    ]);
    for member in mesh
        .get("clusters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        clusters.row(vec![
            field(member, "name"),
            field(member, "role"),
            or_dash(field(member, "network")),
            or_dash(field(member, "region")),
            field(member, "phase"),
            or_dash(time(member, "linked_at")),
            or_dash(field(member, "error")),
        ]);
    }
    out.push_str(&indent(&clusters.to_string(), "  "));
    out.push_str("Gateways:\n");
    let gateways: Vec<&Value> = mesh
        .get("lb_resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    if gateways.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut table = Table::new(&["NAME", "STATUS"]);
        for lb in gateways {
            table.row(vec![field(lb, "name"), field(lb, "status")]);
        }
        out.push_str(&indent(&table.to_string(), "  "));
    }
    out.push_str("Recent flows:\n");
    if flows.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&indent(&flow_table(flows), "  "));
    }
    for flow in flows {
        let Some(tasks) = flow.get("tasks").and_then(Value::as_array) else {
            continue;
        };
        out.push_str(&format!(
            "Tasks of flow {} ({}, {}):\n",
            field(flow, "id"),
            field(flow, "def_name"),
            field(flow, "status")
        ));
        out.push_str(&indent(&task_table(tasks), "  "));
    }
    out
}

/// A table of flows.
pub fn flow_table(flows: &[Value]) -> String {
    let mut table = Table::new(&["ID", "FLOW", "STATUS", "STARTED", "FINISHED"]);
    for flow in flows {
        table.row(vec![
            field(flow, "id"),
            field(flow, "def_name"),
            field(flow, "status"),
            time(flow, "started_at"),
            time(flow, "finished_at"),
        ]);
    }
    table.to_string()
}

/// A table of a flow's tasks.
pub fn task_table(tasks: &[Value]) -> String {
    let mut table = Table::new(&["ID", "TASK", "STATUS", "STARTED", "FINISHED", "ERROR"]);
    for task in tasks {
        table.row(vec![
            field(task, "id"),
            field(task, "name"),
            field(task, "status"),
            time(task, "started_at"),
            time(task, "finished_at"),
            field(task, "error"),
        ]);
    }
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_read_as_yaml_or_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = dir.path().join("mesh.yaml");
        std::fs::write(
            &yaml,
            "name: demo\nmode: multi-primary\nclusters:\n- name: sim-1\n  role: master\n",
        )
        .expect("write");
        assert_eq!(
            read_manifest(&yaml).expect("yaml")["clusters"][0]["role"],
            "master"
        );
        let json = dir.path().join("mesh.json");
        std::fs::write(&json, r#"{"name":"demo","clusters":[]}"#).expect("write");
        assert_eq!(read_manifest(&json).expect("json")["name"], "demo");
        let nameless = dir.path().join("bad.yaml");
        std::fs::write(&nameless, "- a\n").expect("write");
        assert!(read_manifest(&nameless).is_err());
    }

    #[test]
    fn describe_shows_phases_gateways_and_tasks() {
        let mesh = serde_json::json!({
            "name": "demo", "status": "Running", "version": "1.30.3",
            "config": {"traceSampling": 1.0},
            "clusters": [{"name": "sim-1", "role": "master", "phase": "Running", "error": ""}],
            "lb_resources": [{"name": "eastwest-sim-1", "status": "127.200.1.1"}]
        });
        let flows = vec![serde_json::json!({
            "id": 1, "def_name": "install", "status": "Succeeded",
            "tasks": [{"id": 2, "name": "control-plane:sim-1", "status": "Succeeded"}]
        })];
        let text = describe_text(&mesh, &flows);
        for expected in [
            "Status:       Running",
            "traceSampling: 1.0",
            "sim-1",
            "Running",
            "eastwest-sim-1",
            "control-plane:sim-1",
        ] {
            assert!(text.contains(expected), "{expected:?} in\n{text}");
        }
    }
}
