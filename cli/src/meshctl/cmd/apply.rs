//! `meshctl apply`: Istio resources from a file to every cluster of a mesh that needs them.
//!
//! Input: multi-document YAML or JSON. Without `--dry-run` the objects go to
//! `POST /meshes/{mesh}/resources` as one batch (one all-or-nothing rollout; `--wait` follows it
//! with per-cluster progress). With `--dry-run` (or `--diff`) the server validates them and
//! answers per cluster what would be created, changed or deleted; nothing is written, and the
//! exit status is non-zero when a finding blocks the change.

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
    let path = format!(
        "/meshes/{}/resources?namespace={}",
        segment(mesh),
        segment(&options.namespace)
    );
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
    operate(
        client,
        format,
        mesh,
        "apply",
        "applied",
        wait,
        true,
        async { client.post_text(&path, body).await },
    )
    .await
}
