//! `meshctl cluster add|list|get|remove`: the cluster registry (`/clusters`).

use serde_json::{Value, json};

use crate::meshctl::args::{ClusterCommand, Format};
use crate::meshctl::client::{ApiClient, segment};
use crate::meshctl::error::{Error, Result};
use crate::meshctl::output::{self, Table, field, time};

fn table(clusters: &[Value]) -> String {
    let mut table = Table::new(&["NAME", "TENANT", "REGION", "STATUS", "SERVER", "CREATED"]);
    for cluster in clusters {
        table.row(vec![
            field(cluster, "name"),
            field(cluster, "tenant_id"),
            field(cluster, "region"),
            field(cluster, "status"),
            field(cluster, "server"),
            time(cluster, "created_at"),
        ]);
    }
    if table.is_empty() {
        return "no clusters registered; add one with `meshctl cluster add NAME --kubeconfig FILE`\n"
            .into();
    }
    table.to_string()
}

/// Runs a `cluster` command.
pub async fn run(client: &ApiClient, format: Format, command: ClusterCommand) -> Result<()> {
    match command {
        ClusterCommand::Add {
            name,
            kubeconfig,
            region,
        } => {
            let text = std::fs::read_to_string(&kubeconfig).map_err(|source| Error::Io {
                path: kubeconfig.clone(),
                source,
            })?;
            let body = json!({ "name": name, "region": region, "kubeconfig": text });
            drop(text);
            let cluster = client.post("/clusters", &body).await?;
            output::print(format, &cluster, |c| {
                format!(
                    "cluster {} registered ({}, {})\n",
                    field(c, "name"),
                    field(c, "status"),
                    field(c, "server")
                )
            })
        }
        ClusterCommand::List => {
            let clusters = client.get("/clusters").await?;
            output::print(format, &clusters, |c| {
                table(c.as_array().map(Vec::as_slice).unwrap_or_default())
            })
        }
        ClusterCommand::Get { name } => {
            let cluster = client.get(&format!("/clusters/{}", segment(&name))).await?;
            output::print(format, &cluster, |c| {
                let mut text = table(std::slice::from_ref(c));
                let message = field(c, "status_message");
                if !message.is_empty() {
                    text.push_str(&format!("\n{message}\n"));
                }
                text
            })
        }
        ClusterCommand::Remove { name } => {
            let removed = client
                .delete(&format!("/clusters/{}", segment(&name)))
                .await?;
            output::print(format, &json!({ "removed": removed }), |_| {
                format!("cluster {name} removed\n")
            })
        }
    }
}
