//! Field-level differences, content hashes and drift.
//!
//! Inputs: two versions of an object (JSON), or a desired body and the live object read from a
//! cluster. Outputs: [`FieldChange`]s with paths such as `spec.http[0].route[1].weight` (objects
//! compared key by key, arrays index by index), a stable content hash, and the drift of the
//! fields mesh-manager owns.

use std::collections::BTreeSet;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{FieldChange, child_path, index_path};

/// The changed fields between `before` and `after`: a field only in `after` has no `before`, a
/// field only in `before` has no `after`. Objects are compared by key, arrays by index; a value
/// whose type changed is one change.
pub fn diff(before: &Value, after: &Value) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    diff_at("", Some(before), Some(after), &mut changes);
    changes
}

fn diff_at(path: &str, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<FieldChange>) {
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for key in keys {
                diff_at(&child_path(path, key), b.get(key), a.get(key), out);
            }
        }
        (Some(Value::Array(b)), Some(Value::Array(a))) => {
            for i in 0..b.len().max(a.len()) {
                diff_at(&index_path(path, i), b.get(i), a.get(i), out);
            }
        }
        (b, a) if b == a => {}
        (b, a) => out.push(FieldChange {
            path: path.to_string(),
            before: b.cloned(),
            after: a.cloned(),
        }),
    }
}

/// The SHA-256 (lower-case hex) of `body` as canonical JSON: object keys sorted, no whitespace.
/// Equal contents give equal hashes whatever the key order of the input.
pub fn content_hash(body: &Value) -> String {
    let mut hasher = Sha256::new();
    write_canonical(body, &mut hasher);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write_canonical(value: &Value, hasher: &mut Sha256) {
    match value {
        Value::Object(map) => {
            hasher.update(b"{");
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    hasher.update(b",");
                }
                hasher.update(Value::String(key.clone()).to_string().as_bytes());
                hasher.update(b":");
                write_canonical(&map[key], hasher);
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    hasher.update(b",");
                }
                write_canonical(item, hasher);
            }
            hasher.update(b"]");
        }
        scalar => hasher.update(scalar.to_string().as_bytes()),
    }
}

/// How the live object differs from the desired body in what mesh-manager owns: all of `spec`,
/// and the labels and annotations the desired body sets (labels and annotations others added to
/// the live object are theirs and ignored). Each change's `before` is the desired value and
/// `after` the live one.
pub fn drift(desired: &Value, live: &Value) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    for field in ["labels", "annotations"] {
        let Some(wanted) = desired["metadata"][field].as_object() else {
            continue;
        };
        let present = live["metadata"][field].as_object();
        let mut keys: Vec<&String> = wanted.keys().collect();
        keys.sort();
        for key in keys {
            let path = child_path(&child_path("metadata", field), key);
            diff_at(
                &path,
                Some(&wanted[key.as_str()]),
                present.and_then(|p| p.get(key.as_str())),
                &mut changes,
            );
        }
    }
    diff_at("spec", desired.get("spec"), live.get("spec"), &mut changes);
    changes
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn diff_lists_changed_added_and_removed_fields() {
        let before = json!({"spec": {"hosts": ["a"], "http": [{"route": [{"weight": 80}, {"weight": 20}]}], "gone": 1}});
        let after = json!({"spec": {"hosts": ["a", "b"], "http": [{"route": [{"weight": 70}, {"weight": 20}]}], "new": {"x": true}}});
        let changes = diff(&before, &after);
        let summary: Vec<_> = changes
            .iter()
            .map(|c| (c.path.as_str(), c.before.clone(), c.after.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("spec.gone", Some(json!(1)), None),
                ("spec.hosts[1]", None, Some(json!("b"))),
                (
                    "spec.http[0].route[0].weight",
                    Some(json!(80)),
                    Some(json!(70))
                ),
                ("spec.new", None, Some(json!({"x": true}))),
            ]
        );
        assert!(diff(&before, &before).is_empty());
    }

    #[test]
    fn keys_that_are_not_identifiers_are_bracketed() {
        let changes = diff(
            &json!({"metadata": {"labels": {"app.kubernetes.io/name": "a"}}}),
            &json!({"metadata": {"labels": {"app.kubernetes.io/name": "b"}}}),
        );
        assert_eq!(changes[0].path, "metadata.labels[app.kubernetes.io/name]");
    }

    #[test]
    fn content_hash_ignores_key_order_and_sees_values() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": "s"}}"#).expect("json");
        let b: Value =
            serde_json::from_str(r#"{"a": {"x": "s", "y": [1, 2]}, "b": 1}"#).expect("json");
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_eq!(content_hash(&a).len(), 64);
        assert_ne!(
            content_hash(&a),
            content_hash(&json!({"a": {"x": "s", "y": [2, 1]}, "b": 1}))
        );
        // The canonical text is plain sorted JSON.
        let expected = Sha256::digest(br#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
        let expected: String = expected.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(content_hash(&a), expected);
    }

    #[test]
    fn drift_ignores_extra_live_labels_but_sees_a_changed_weight() {
        let desired = json!({"metadata": {"name": "reviews", "labels": {"team": "books"}},
            "spec": {"http": [{"route": [{"weight": 80}, {"weight": 20}]}]}});
        let live = json!({"metadata": {"name": "reviews", "resourceVersion": "9",
                "labels": {"team": "books", "added-by": "someone-else"},
                "annotations": {"note": "x"}},
            "spec": {"http": [{"route": [{"weight": 50}, {"weight": 20}]}]},
            "status": {}});
        let changes = drift(&desired, &live);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].path, "spec.http[0].route[0].weight");
        assert_eq!(changes[0].before, Some(json!(80)));
        assert_eq!(changes[0].after, Some(json!(50)));

        let relabelled =
            json!({"metadata": {"labels": {"team": "films"}}, "spec": desired["spec"].clone()});
        let changes = drift(&desired, &relabelled);
        assert_eq!(changes[0].path, "metadata.labels.team");
        assert!(
            drift(&desired, &json!({"spec": desired["spec"].clone()}))[0]
                .after
                .is_none()
        );
    }
}
