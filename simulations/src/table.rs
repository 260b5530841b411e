//! Server-side printing: `meta.k8s.io/v1` `Table` responses, as kubectl asks for with
//! `Accept: application/json;as=Table;g=meta.k8s.io;v=v1`.
//!
//! Columns are Name and Age for every kind, a few well-known ones for built-ins (Deployment,
//! Service, Secret, Namespace), and a CRD's `additionalPrinterColumns` (simple JSONPath:
//! `.a.b`, `.a[0].b`, `.conditions[?(@.type=="Ready")].status`).

use serde_json::{Value, json};

use crate::resources::ResourceType;

/// How much of each object a row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object.
    None,
    /// `PartialObjectMetadata` (the default).
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Parse the `includeObject` query parameter.
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

/// One column: header, type and a JSONPath into the object.
#[derive(Debug, Clone)]
pub struct Column {
    name: String,
    kind: String,
    path: String,
}

fn col(name: &str, kind: &str, path: &str) -> Column {
    Column {
        name: name.into(),
        kind: kind.into(),
        path: path.into(),
    }
}

/// The columns of a resource; `crd` is its CustomResourceDefinition if it is a custom resource.
pub fn columns(rt: &ResourceType, crd: Option<&Value>) -> Vec<Column> {
    let mut cols = vec![col("Name", "string", ".metadata.name")];
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment") => {
            cols.push(col("Ready", "string", "@ready"));
            cols.push(col("Up-to-date", "integer", ".status.updatedReplicas"));
            cols.push(col("Available", "integer", ".status.availableReplicas"));
        }
        ("", "Service") => {
            cols.push(col("Type", "string", ".spec.type"));
            cols.push(col("Cluster-IP", "string", ".spec.clusterIP"));
            cols.push(col("External-IP", "string", "@external-ip"));
        }
        ("", "Namespace") => cols.push(col("Status", "string", ".status.phase")),
        ("", "Secret") => cols.push(col("Type", "string", ".type")),
        ("", "ConfigMap") => cols.push(col("Data", "integer", "@data-count")),
        _ => {}
    }
    if let Some(crd) = crd {
        let version = crd["spec"]["versions"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["name"] == rt.version.as_str()));
        for c in version
            .and_then(|v| v["additionalPrinterColumns"].as_array())
            .into_iter()
            .flatten()
        {
            let name = c["name"].as_str().unwrap_or_default();
            let path = c["jsonPath"].as_str().unwrap_or_default();
            if path == ".metadata.creationTimestamp" {
                continue;
            }
            cols.push(col(name, c["type"].as_str().unwrap_or("string"), path));
        }
    }
    cols.push(col("Age", "string", "@age"));
    cols
}

fn age(ts: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) else {
        return "<unknown>".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 3 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Evaluate a simple JSONPath (see module docs).
pub fn eval_path(obj: &Value, path: &str) -> Value {
    let mut cur = obj.clone();
    let mut rest = path.trim_start_matches('.');
    while !rest.is_empty() {
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let (field, tail) = rest.split_at(end);
        if !field.is_empty() {
            cur = cur.get(field).cloned().unwrap_or(Value::Null);
        }
        rest = tail;
        if let Some(t) = rest.strip_prefix('[') {
            let Some(close) = t.find(']') else {
                return Value::Null;
            };
            let sel = &t[..close];
            rest = &t[close + 1..];
            if let Ok(i) = sel.parse::<usize>() {
                cur = cur.get(i).cloned().unwrap_or(Value::Null);
            } else if let Some(filter) = sel.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')'))
            {
                let Some((k, v)) = filter.split_once("==") else {
                    return Value::Null;
                };
                let v = v.trim_matches('"').trim_matches('\'');
                cur = cur
                    .as_array()
                    .and_then(|a| a.iter().find(|e| e[k.trim()].as_str() == Some(v)).cloned())
                    .unwrap_or(Value::Null);
            } else {
                return Value::Null;
            }
        }
        rest = rest.trim_start_matches('.');
    }
    cur
}

fn cell(obj: &Value, c: &Column) -> Value {
    match c.path.as_str() {
        "@age" => json!(age(obj["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or(""))),
        "@ready" => json!(format!(
            "{}/{}",
            obj["status"]["readyReplicas"].as_i64().unwrap_or(0),
            obj["spec"]["replicas"].as_i64().unwrap_or(1)
        )),
        "@external-ip" => {
            let ips: Vec<String> = obj["status"]["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| {
                    i["ip"]
                        .as_str()
                        .or(i["hostname"].as_str())
                        .map(str::to_string)
                })
                .collect();
            if !ips.is_empty() {
                json!(ips.join(","))
            } else if obj["spec"]["type"] == "LoadBalancer" {
                json!("<pending>")
            } else {
                json!("<none>")
            }
        }
        "@data-count" => json!(obj["data"].as_object().map(|m| m.len()).unwrap_or(0)),
        p => match eval_path(obj, p) {
            Value::Null => json!(if c.kind == "integer" {
                json!(0)
            } else {
                json!("")
            }),
            Value::String(s) => json!(s),
            Value::Number(n) => json!(n),
            Value::Bool(b) => json!(b.to_string()),
            other => json!(other.to_string()),
        },
    }
}

fn row_object(obj: &Value, include: IncludeObject) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Object => Some(obj.clone()),
        IncludeObject::Metadata => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"].clone(),
        })),
    }
}

/// A Table of `objects`, with list metadata (`resourceVersion`, `continue`).
pub fn table(
    cols: &[Column],
    objects: &[Value],
    list_meta: Value,
    include: IncludeObject,
) -> Value {
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": if c.name == "Name" { "name" } else { "" },
                "description": "",
                "priority": 0,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut r = json!({"cells": cols.iter().map(|c| cell(o, c)).collect::<Vec<_>>()});
            if let Some(obj) = row_object(o, include) {
                r["object"] = obj;
            }
            r
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_filters_conditions() {
        let o = json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(
            eval_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            json!("True")
        );
        assert_eq!(eval_path(&o, ".status.conditions[0].type"), json!("A"));
    }
}
