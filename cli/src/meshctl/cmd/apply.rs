//! `meshctl apply|delete -f` and `meshctl resources`: Istio resources of a mesh.
//!
//! Input: multi-document YAML or JSON. Without `--dry-run` the objects go to
//! `POST /meshes/{mesh}/resources` as one batch (one all-or-nothing rollout; `--wait` follows it
//! with per-cluster progress); `delete` sends the same batch with `delete=true`, and `--cluster`
//! makes the objects one member cluster's own. With `--dry-run` (or `--diff`) the server
//! validates them and answers per cluster what would be created, changed or deleted; nothing is
//! written, and the exit status is non-zero when a finding blocks the change. `resources` lists
//! the desired state.

use std::path::Path;

use serde_json::Value;

use super::mesh::operate;
use crate::meshctl::args::{Format, WaitArgs};
use crate::meshctl::client::{ApiClient, segment};
use crate::meshctl::error::{Error, Result};
use crate::meshctl::output;

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Namespace for objects that name none.
    pub namespace: String,
    /// The member cluster whose own objects change; `None` for mesh-wide objects.
    pub cluster: Option<String>,
    /// Delete the named objects instead of applying them.
    pub delete: bool,
    /// Only show what would change.
    pub dry_run: bool,
    /// Show every changed field.
    pub diff: bool,
}

fn read_text(file: &Path) -> Result<String> {
    let read = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    };
    read.map_err(|source| Error::Io {
        path: file.to_owned(),
        source,
    })
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The human-readable form of a dry run.
pub fn dry_run_text(plan: &Value, diff: bool) -> String {
    let mut out = String::new();
    for finding in plan["findings"].as_array().into_iter().flatten() {
        let resource = &finding["resource"];
        let object = if resource.is_object() {
            format!(
                "{} {}/{}: ",
                text(&resource["kind"]),
                text(&resource["namespace"]),
                text(&resource["name"])
            )
        } else {
            String::new()
        };
        let path = finding["path"].as_str().filter(|p| !p.is_empty());
        out.push_str(&format!(
            "{}: {object}{}{}\n",
            text(&finding["severity"]),
            path.map(|p| format!("{p}: ")).unwrap_or_default(),
            text(&finding["message"])
        ));
    }
    for cluster in plan["clusters"].as_array().into_iter().flatten() {
        out.push_str(&format!("cluster {}:\n", text(&cluster["cluster"])));
        if let Some(error) = cluster["error"].as_str() {
            out.push_str(&format!("  cannot read it: {error}\n"));
        }
        for object in cluster["objects"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {:<9} {} {}/{}\n",
                text(&object["action"]),
                text(&object["kind"]),
                text(&object["namespace"]),
                text(&object["name"])
            ));
            if diff {
                for field in object["fields"].as_array().into_iter().flatten() {
                    let show = |v: &Value| {
                        if v.is_null() {
                            "(none)".to_owned()
                        } else {
                            v.to_string()
                        }
                    };
                    out.push_str(&format!(
                        "      ~ {}: {} -> {}\n",
                        text(&field["path"]),
                        show(&field["before"]),
                        show(&field["after"])
                    ));
                }
            }
        }
    }
    let valid = plan["valid"].as_bool().unwrap_or(false);
    out.push_str(if valid {
        "dry run: the change is valid; nothing was written\n"
    } else {
        "dry run: the change would be refused; nothing was written\n"
    });
    out
}

/// Runs `meshctl apply`.
pub async fn apply(
    client: &ApiClient,
    format: Format,
    file: &Path,
    mesh: &str,
    options: &ApplyOptions,
    wait: &WaitArgs,
) -> Result<()> {
    let body = read_text(file)?;
    let mut path = format!(
        "/meshes/{}/resources?namespace={}",
        segment(mesh),
        segment(&options.namespace)
    );
    if let Some(cluster) = &options.cluster {
        path.push_str(&format!("&cluster={}", segment(cluster)));
    }
    if options.delete {
        path.push_str("&delete=true");
    }
    let (verb, done) = if options.delete {
        ("delete of resources", "deleted")
    } else {
        ("apply", "applied")
    };
    if options.dry_run {
        let plan = client
            .post_text(&format!("{path}&dryRun=true"), body)
            .await?;
        output::print(format, &plan, |p| dry_run_text(p, options.diff))?;
        if !plan["valid"].as_bool().unwrap_or(false) {
            return Err(Error::Failed(format!(
                "the resources for mesh {mesh} are invalid (see the findings above)"
            )));
        }
        return Ok(());
    }
    operate(client, format, mesh, verb, done, wait, true, async {
        client.post_text(&path, body).await
    })
    .await
}

/// Runs `meshctl resources`: the mesh's desired Istio resources.
pub async fn list(
    client: &ApiClient,
    format: Format,
    mesh: &str,
    namespace: Option<&str>,
) -> Result<()> {
    let all = client
        .get(&format!("/meshes/{}/resources", segment(mesh)))
        .await?;
    let rows: Vec<Value> = all
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|r| namespace.is_none_or(|ns| r["namespace"] == ns))
        .cloned()
        .collect();
    output::print(format, &Value::Array(rows), |rows| {
        let rows = rows.as_array().map(Vec::as_slice).unwrap_or_default();
        if rows.is_empty() {
            return format!(
                "mesh {mesh} has no Istio resources; add some with `meshctl apply -f FILE --mesh {mesh}`\n"
            );
        }
        let mut table = output::Table::new(&[
            "KIND",
            "NAMESPACE",
            "NAME",
            "SCOPE",
            "GENERATION",
            "UPDATED",
            "BY",
        ]);
        for row in rows {
            table.row(vec![
                output::field(row, "kind"),
                output::field(row, "namespace"),
                output::field(row, "name"),
                row["cluster"]
                    .as_str()
                    .map_or_else(|| "mesh-wide".to_owned(), |c| format!("cluster {c}")),
                output::field(row, "generation"),
                output::time(row, "updatedAt"),
                output::field(row, "updatedBy"),
            ]);
        }
        table.to_string()
    })
}
