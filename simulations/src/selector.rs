//! Label and field selectors of list and watch requests.
//!
//! Label selectors support `=`, `==`, `!=`, `in (...)`, `notin (...)`, `key` (exists) and `!key`
//! (does not exist). Field selectors support `=`, `==` and `!=` on `metadata.name`,
//! `metadata.namespace` and a few per-kind fields (`type` of Secrets, `status.phase` and
//! `spec.nodeName` of Pods, `spec.type` of Services); any other field is a 400 as on a real server.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    reqs: Vec<Requirement>,
}

/// Split on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse_set(rest: &str, whole: &str) -> ApiResult<Vec<String>> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| ApiError::bad_request(format!("unable to parse requirement: {whole}")))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    /// Parse the `labelSelector` query parameter.
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let req = if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(key.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Eq(k.trim().to_string(), v.trim().to_string())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Eq(k.trim().to_string(), v.trim().to_string())
            } else if let Some(idx) = part.find(" notin ") {
                Requirement::NotIn(
                    part[..idx].trim().to_string(),
                    parse_set(&part[idx + 7..], &part)?,
                )
            } else if let Some(idx) = part.find(" in ") {
                Requirement::In(
                    part[..idx].trim().to_string(),
                    parse_set(&part[idx + 4..], &part)?,
                )
            } else if part.contains(' ') || part.contains('(') {
                return Err(ApiError::bad_request(format!(
                    "unable to parse requirement: {part}"
                )));
            } else {
                Requirement::Exists(part.to_string())
            };
            reqs.push(req);
        }
        Ok(LabelSelector { reqs })
    }

    /// Build a selector from equality pairs (as in `spec.selector.matchLabels`).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        LabelSelector {
            reqs: pairs
                .into_iter()
                .map(|(k, v)| Requirement::Eq(k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Whether the object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        if self.reqs.is_empty() {
            return true;
        }
        let labels = &obj["metadata"]["labels"];
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.reqs.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|l| !vs.iter().any(|v| v == l)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

const GENERIC_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

fn kind_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Secret" => &["type"],
        "Pod" => &["status.phase", "spec.nodeName", "spec.serviceAccountName"],
        "Service" => &["spec.type", "spec.clusterIP"],
        "Event" => &[
            "involvedObject.name",
            "involvedObject.namespace",
            "involvedObject.kind",
            "reason",
            "type",
        ],
        "Namespace" => &["status.phase"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parse the `fieldSelector` query parameter for objects of `kind`.
    pub fn parse(s: &str, kind: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let (field, eq, value) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if !GENERIC_FIELDS.contains(&field) && !kind_fields(kind).contains(&field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector { reqs })
    }

    /// Whether the object satisfies every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|(field, eq, value)| {
            let mut cur = obj;
            for seg in field.split('.') {
                cur = &cur[seg];
            }
            let actual = cur.as_str().unwrap_or("");
            (actual == value) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn label_selector_supports_set_based_requirements() {
        let o = obj(json!({"app": "web", "tier": "front"}));
        let m = |s: &str| LabelSelector::parse(s).expect("parse").matches(&o);
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(m("app in (web, api),!missing"));
        assert!(m("tier notin (back)"));
        assert!(m("app!=api"));
        assert!(!m("app notin (web)"));
        assert!(!m("missing"));
        assert!(!m("app in (api)"));
        assert!(m(""));
    }

    #[test]
    fn field_selector_rejects_unknown_fields() {
        assert!(FieldSelector::parse("spec.foo=bar", "ConfigMap").is_err());
        let fs = FieldSelector::parse("metadata.name=a,metadata.namespace!=x", "ConfigMap")
            .expect("parse");
        assert!(fs.matches(&obj(json!({}))));
    }
}
