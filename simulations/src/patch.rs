//! Patch semantics: JSON merge patch, JSON patch and a managedFields-lite server-side apply.
//!
//! Server-side apply keeps, per object, the last configuration each field manager applied. An
//! apply merges the new configuration into the live object (maps merged recursively, lists
//! replaced whole), removes fields the same manager applied before but no longer sets (unless
//! another manager also sets them), and reports a 409 conflict when another manager applied a
//! different value for the same field — unless `force` is set, which moves ownership. Strategic
//! merge patches are treated as JSON merge patches (lists are replaced whole).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult, Reason};

/// The kinds of PATCH the server accepts, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`, treated as a merge patch.
    Strategic,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
}

impl PatchKind {
    /// The patch kind of a request `Content-Type`.
    pub fn from_content_type(ct: &str) -> ApiResult<Self> {
        let ct = ct.split(';').next().unwrap_or("").trim();
        match ct {
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
            other => Err(ApiError::new(
                Reason::UnsupportedMediaType,
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"
                ),
            )),
        }
    }
}

/// Apply a merge or JSON patch to `doc`.
pub fn apply_patch(kind: PatchKind, doc: &mut Value, body: &[u8]) -> ApiResult<()> {
    match kind {
        PatchKind::Merge | PatchKind::Strategic => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            if !p.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: a merge patch must be a JSON object",
                ));
            }
            json_patch::merge(doc, &p);
            Ok(())
        }
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(doc, &p).map_err(|e| {
                ApiError::new(
                    Reason::Invalid,
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })
        }
        PatchKind::Apply => Err(ApiError::bad_request(
            "apply patches go through server-side apply",
        )),
    }
}

/// Parse an apply body (YAML or JSON). JSON, what the kube client sends, is read by the JSON
/// parser (YAML's is many times slower on large objects); anything else as YAML.
pub fn parse_apply_body(body: &[u8]) -> ApiResult<Value> {
    let json = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let parsed = if json {
        serde_json::from_slice(body).ok()
    } else {
        None
    };
    let v: Value = match parsed {
        Some(v) => v,
        None => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
    };
    if !v.is_object() {
        return Err(ApiError::bad_request("apply body must be an object"));
    }
    Ok(v)
}

/// Recursively merge `cfg` into `live`: objects merged key by key, anything else replaced.
pub fn deep_merge(live: &mut Value, cfg: &Value) {
    match (live, cfg) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, v) in c {
                match l.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        deep_merge(existing, v)
                    }
                    _ => {
                        l.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (live, cfg) => *live = cfg.clone(),
    }
}

/// Remove from `live` what `old_cfg` set and `new_cfg` no longer sets, unless one of `others`
/// also sets it.
pub fn prune(live: &mut Value, old_cfg: &Value, new_cfg: &Value, others: &[&Value]) {
    let (Some(old), Some(l)) = (old_cfg.as_object(), live.as_object_mut()) else {
        return;
    };
    for (k, old_v) in old {
        let sub_others: Vec<&Value> = others.iter().filter_map(|o| o.get(k)).collect();
        match new_cfg.get(k) {
            None => {
                if sub_others.is_empty() {
                    l.remove(k);
                } else if old_v.is_object()
                    && let Some(lv) = l.get_mut(k)
                {
                    prune(lv, old_v, &json!({}), &sub_others);
                }
            }
            Some(new_v) if old_v.is_object() && new_v.is_object() => {
                if let Some(lv) = l.get_mut(k) {
                    prune(lv, old_v, new_v, &sub_others);
                }
            }
            Some(_) => {}
        }
    }
}

/// Leaf paths where `new_cfg` sets a value different from what `other` applied.
pub fn conflicts(new_cfg: &Value, other: &Value, prefix: &str, out: &mut Vec<String>) {
    let (Some(n), Some(o)) = (new_cfg.as_object(), other.as_object()) else {
        return;
    };
    for (k, nv) in n {
        let Some(ov) = o.get(k) else { continue };
        let path = format!("{prefix}.{k}");
        if nv.is_object() && ov.is_object() {
            conflicts(nv, ov, &path, out);
        } else if nv != ov {
            out.push(path);
        }
    }
}

/// Remove a dotted path (as produced by [`conflicts`]) from a configuration.
pub fn remove_path(cfg: &mut Value, path: &str) {
    let segs: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    let Some((last, parents)) = segs.split_last() else {
        return;
    };
    let mut cur = cfg;
    for s in parents {
        match cur.get_mut(*s) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(*last);
    }
}

/// `fieldsV1` of a configuration: `f:<key>` for every key, lists owned whole.
pub fn fields_v1(cfg: &Value) -> Value {
    let mut out = Map::new();
    if let Some(m) = cfg.as_object() {
        for (k, v) in m {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            if k == "metadata" {
                let mut meta = Map::new();
                for (mk, mv) in v.as_object().into_iter().flatten() {
                    if matches!(mk.as_str(), "name" | "namespace" | "resourceVersion") {
                        continue;
                    }
                    meta.insert(format!("f:{mk}"), fields_v1(mv));
                }
                if !meta.is_empty() {
                    out.insert("f:metadata".into(), Value::Object(meta));
                }
                continue;
            }
            out.insert(format!("f:{k}"), fields_v1(v));
        }
    }
    Value::Object(out)
}

/// The `metadata.managedFields` for the per-manager applied configurations.
pub fn managed_fields(applied: &BTreeMap<String, (String, String, Value)>) -> Value {
    let entries: Vec<Value> = applied
        .iter()
        .map(|(key, (api_version, time, cfg))| {
            let (manager, sub) = match key.split_once('/') {
                Some((m, s)) => (m, Some(s)),
                None => (key.as_str(), None),
            };
            let mut e = json!({
                "manager": manager,
                "operation": "Apply",
                "apiVersion": api_version,
                "time": time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_v1(cfg),
            });
            if let Some(s) = sub {
                e["subresource"] = json!(s);
            }
            e
        })
        .collect();
    Value::Array(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_removes_fields_only_this_manager_set() {
        let mut live = json!({"metadata": {"labels": {"a": "1", "b": "2", "c": "3"}}});
        let old = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let new = json!({"metadata": {"labels": {"a": "1"}}});
        let other = json!({"metadata": {"labels": {"b": "2"}}});
        prune(&mut live, &old, &new, &[]);
        assert_eq!(live, json!({"metadata": {"labels": {"a": "1", "c": "3"}}}));
        let mut live = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        prune(&mut live, &old, &new, &[&other]);
        assert_eq!(live, json!({"metadata": {"labels": {"a": "1", "b": "2"}}}));
    }

    #[test]
    fn conflicts_report_differing_leaves() {
        let mut out = Vec::new();
        conflicts(
            &json!({"spec": {"x": 1, "y": 2}}),
            &json!({"spec": {"x": 1, "y": 3}}),
            "",
            &mut out,
        );
        assert_eq!(out, vec![".spec.y".to_string()]);
    }

    #[test]
    fn unknown_patch_content_type_is_415() {
        let e = PatchKind::from_content_type("text/plain").expect_err("must fail");
        assert_eq!(e.reason.code(), 415);
    }
}
