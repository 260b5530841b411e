//! A minimal OpenAPI v3 discovery (`/openapi/v3` and `/openapi/v3/{api|apis/g}/{v}`).
//!
//! kubectl's `apply` checks, per kind, whether the server supports the `fieldValidation`
//! query parameter by looking for a PATCH operation tagged with the kind in the group-version
//! document; when it finds one it leaves validation to the server. So each document lists, per
//! resource, its object path with a PATCH operation carrying `x-kubernetes-group-version-kind`
//! and the `fieldValidation` parameter, and a permissive schema per kind.

use serde_json::{Map, Value, json};

use crate::resources::Registry;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Body of `GET /openapi/v3`.
pub fn root(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for t in reg.all() {
        let p = gv_path(&t.group, &t.version);
        paths.entry(p.clone()).or_insert_with(
            || json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=mesh-sim-1")}),
        );
    }
    json!({"paths": paths})
}

/// Body of `GET /openapi/v3/{gv}`, if the group-version is served.
pub fn group_version(reg: &Registry, gv: &str) -> Option<Value> {
    let types: Vec<_> = reg
        .all()
        .iter()
        .filter(|t| gv_path(&t.group, &t.version) == gv)
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for t in types {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let base = if t.namespaced {
            format!("/{gv}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("/{gv}/{}/{{name}}", t.plural)
        };
        let params = json!([
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
        ]);
        let op = |verb: &str| {
            json!({
                "operationId": format!("{verb}{}", t.kind),
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        paths.insert(base, json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
        let group_rev: Vec<&str> = if t.group.is_empty() {
            vec!["io", "k8s", "api", "core"]
        } else {
            t.group.split('.').rev().collect()
        };
        let schema_name = format!("{}.{}.{}", group_rev.join("."), t.version, t.kind);
        schemas.insert(
            schema_name,
            json!({
                "type": "object",
                "x-kubernetes-group-version-kind": [gvk],
                "x-kubernetes-preserve-unknown-fields": true,
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
