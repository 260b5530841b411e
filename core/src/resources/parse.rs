//! Parsing and normalisation of submitted Istio objects.
//!
//! Inputs: text a tenant sends (JSON, or YAML with one or many documents, possibly a `kind: List`)
//! and, for each object, the namespace of the request. Outputs: JSON values
//! ([`parse_documents`]) and normalised [`IstioResource`]s ([`normalize`]) holding only the fields
//! mesh-manager owns, or [`Finding`]s that say why an object was refused.

use std::io;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Finding, IstioKind, IstioResource, MAX_RESOURCE_BYTES, ResourceKey, Severity};
use crate::names::NamespaceName;

/// The largest text [`parse_documents`] reads: room for a few dozen objects of the largest
/// accepted size, refused before any parsing happens.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// The most objects one submission may hold.
pub const MAX_DOCUMENTS: usize = 1000;

/// The annotation `kubectl apply` writes; it duplicates the object and is never stored.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Why a text could not be read as Kubernetes objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The text is larger than [`MAX_INPUT_BYTES`].
    #[error("input is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Size of the text.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The text is not valid JSON.
    #[error("invalid json: {0}")]
    Json(String),
    /// A YAML document is not valid (or not representable as JSON).
    #[error("invalid yaml in document {document}: {message}")]
    Yaml {
        /// 1-based position of the document in the text.
        document: usize,
        /// What the YAML reader said.
        message: String,
    },
    /// More objects than [`MAX_DOCUMENTS`].
    #[error("input holds more than {limit} objects")]
    TooManyDocuments {
        /// The limit.
        limit: usize,
    },
    /// A `List` whose `items` is not an array.
    #[error("a list's items must be an array")]
    BadList,
}

/// Reads JSON or multi-document YAML into one JSON value per object: empty documents are
/// skipped and the items of a `List` (`kind: List` or a typed `…List` with `items`) are unfolded.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, ParseError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(ParseError::TooLarge {
            size: text.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    let trimmed = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    let documents = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        // JSON: one object, an array of objects or a stream of them, as `kubectl` reads them.
        // YAML in flow style (`{kind: Gateway}`) also starts with a brace: it is tried next, and
        // the JSON error reported when neither reads.
        match parse_json(trimmed) {
            Ok(documents) => documents,
            Err(json_error) => parse_yaml(text).map_err(|_| json_error)?,
        }
    } else {
        parse_yaml(text)?
    };
    let mut out = Vec::with_capacity(documents.len());
    for document in documents {
        unfold(document, &mut out)?;
        if out.len() > MAX_DOCUMENTS {
            return Err(ParseError::TooManyDocuments {
                limit: MAX_DOCUMENTS,
            });
        }
    }
    Ok(out)
}

fn parse_json(text: &str) -> Result<Vec<Value>, ParseError> {
    let mut documents = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
        match value.map_err(|e| ParseError::Json(e.to_string()))? {
            Value::Array(items) => documents.extend(items),
            other => documents.push(other),
        }
    }
    Ok(documents)
}

fn parse_yaml(text: &str) -> Result<Vec<Value>, ParseError> {
    let mut documents = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document).map_err(|e| ParseError::Yaml {
            document: index + 1,
            message: e.to_string(),
        })?;
        documents.push(value);
        if documents.len() > MAX_DOCUMENTS {
            return Err(ParseError::TooManyDocuments {
                limit: MAX_DOCUMENTS,
            });
        }
    }
    Ok(documents)
}

/// Adds `value` to `out`, skipping empty documents and replacing a list by its items.
fn unfold(value: Value, out: &mut Vec<Value>) -> Result<(), ParseError> {
    match value {
        Value::Null => Ok(()),
        Value::Object(ref map) if map.is_empty() => Ok(()),
        Value::Object(mut map) if is_list(&map) => match map.remove("items") {
            Some(Value::Array(items)) => {
                for item in items {
                    unfold(item, out)?;
                }
                Ok(())
            }
            Some(Value::Null) | None => Ok(()),
            Some(_) => Err(ParseError::BadList),
        },
        other => {
            out.push(other);
            Ok(())
        }
    }
}

fn is_list(map: &Map<String, Value>) -> bool {
    map.get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind == "List" || (kind.ends_with("List") && map.contains_key("items")))
}

/// The serialised JSON size of `value`, counted without building the text.
pub fn serialized_size(value: &Value) -> usize {
    struct Counter(usize);
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a `Value` to a sink that never fails cannot fail either.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Checks a DNS-1123 subdomain (`metadata.name` of most Kubernetes objects): at most 253
/// characters, dot-separated labels of lower-case alphanumerics and `-`, each starting and ending
/// alphanumeric. Returns what is wrong.
pub fn check_dns_subdomain(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > 253 {
        return Err(format!(
            "must be at most 253 characters (it has {})",
            value.len()
        ));
    }
    for label in value.split('.') {
        check_label_chars(label).map_err(|reason| {
            format!("{reason} (a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit)")
        })?;
    }
    Ok(())
}

/// Checks a DNS-1123 label of at most 63 characters. Returns what is wrong.
pub fn check_dns_label(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err(format!(
            "must be at most 63 characters (it has {})",
            value.len()
        ));
    }
    check_label_chars(value).map_err(|reason| {
        format!("{reason} (a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit)")
    })
}

fn check_label_chars(label: &str) -> Result<(), &'static str> {
    let bytes = label.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (None, _) | (_, None) => Err("has an empty label"),
        (Some(&first), Some(&last)) if !alnum(first) || !alnum(last) => Err("is not a valid name"),
        _ if !bytes.iter().all(|&b| alnum(b) || b == b'-') => Err("is not a valid name"),
        _ => Ok(()),
    }
}

fn error(resource: Option<&ResourceKey>, path: &str, message: impl Into<String>) -> Finding {
    Finding {
        severity: Severity::Error,
        resource: resource.cloned(),
        path: path.to_string(),
        message: message.into(),
    }
}

fn accepted_kinds() -> String {
    IstioKind::ALL.map(|k| k.kind()).join(", ")
}

/// Turns a parsed object into an [`IstioResource`]: checks kind, name, namespace, size and
/// `spec`, rewrites `apiVersion` to the version mesh-manager writes and keeps only
/// `apiVersion`, `kind`, `metadata.{name,namespace,labels,annotations}` (without kubectl's
/// last-applied annotation) and `spec`. `default_namespace` is the namespace of the request; an
/// object naming another namespace is refused.
pub fn normalize(
    value: &Value,
    default_namespace: Option<&NamespaceName>,
) -> Result<IstioResource, Vec<Finding>> {
    let Some(object) = value.as_object() else {
        return Err(vec![error(None, "", "an object must be a JSON/YAML map")]);
    };
    // Checked first so that an oversized object costs one counting pass and nothing more. Only
    // what is kept counts: server fields and kubectl's copy of the object are dropped anyway.
    if let Some(spec) = object.get("spec") {
        let size = serialized_size(spec);
        if size > MAX_RESOURCE_BYTES {
            return Err(vec![too_large(None, size, "its spec alone ")]);
        }
    }

    let mut findings = Vec::new();
    let kind = match object.get("kind") {
        Some(Value::String(kind)) => match IstioKind::from_kind(kind) {
            Some(kind) => Some(kind),
            None => {
                findings.push(error(
                    None,
                    "kind",
                    format!(
                        "kind {kind:?} is not managed; accepted kinds: {}",
                        accepted_kinds()
                    ),
                ));
                None
            }
        },
        Some(_) => {
            findings.push(error(None, "kind", "kind must be a string"));
            None
        }
        None => {
            findings.push(error(
                None,
                "kind",
                format!("kind is required; accepted kinds: {}", accepted_kinds()),
            ));
            None
        }
    };
    if let Some(kind) = kind {
        match object.get("apiVersion").and_then(Value::as_str) {
            Some(api_version) if kind.accepts_api_version(api_version) => {}
            Some(api_version) => findings.push(error(
                None,
                "apiVersion",
                format!(
                    "apiVersion {api_version:?} is not served for {kind}; use {}",
                    kind.api_version()
                ),
            )),
            None => findings.push(error(
                None,
                "apiVersion",
                format!("apiVersion is required (use {})", kind.api_version()),
            )),
        }
    }

    let empty = Map::new();
    let metadata = match object.get("metadata") {
        Some(Value::Object(metadata)) => metadata,
        Some(_) => {
            findings.push(error(None, "metadata", "metadata must be a map"));
            &empty
        }
        None => {
            findings.push(error(None, "metadata", "metadata is required"));
            &empty
        }
    };
    let name = match metadata.get("name") {
        Some(Value::String(name)) => match check_dns_subdomain(name) {
            Ok(()) => Some(name.clone()),
            Err(reason) => {
                findings.push(error(
                    None,
                    "metadata.name",
                    format!("name {name:?} {reason}"),
                ));
                None
            }
        },
        Some(_) => {
            findings.push(error(None, "metadata.name", "name must be a string"));
            None
        }
        None if metadata.contains_key("generateName") => {
            findings.push(error(
                None,
                "metadata.name",
                "name is required (generateName is not supported)",
            ));
            None
        }
        None => {
            findings.push(error(None, "metadata.name", "name is required"));
            None
        }
    };
    let namespace = match (metadata.get("namespace"), default_namespace) {
        (Some(Value::String(given)), default) => match NamespaceName::new(given.as_str()) {
            Ok(given) => match default {
                Some(default) if *default != given => {
                    findings.push(error(
                        None,
                        "metadata.namespace",
                        format!(
                            "namespace {given} of the object differs from namespace {default} of the request"
                        ),
                    ));
                    None
                }
                _ => Some(given),
            },
            Err(e) => {
                findings.push(error(None, "metadata.namespace", e.to_string()));
                None
            }
        },
        (Some(Value::Null) | None, Some(default)) => Some(default.clone()),
        (Some(Value::Null) | None, None) => {
            findings.push(error(None, "metadata.namespace", "namespace is required"));
            None
        }
        (Some(_), _) => {
            findings.push(error(
                None,
                "metadata.namespace",
                "namespace must be a string",
            ));
            None
        }
    };
    let mut kept = Map::new();
    for field in ["labels", "annotations"] {
        match metadata.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                let mut map = map.clone();
                if field == "annotations" {
                    map.remove(LAST_APPLIED);
                }
                if !map.is_empty() {
                    kept.insert(field.to_string(), Value::Object(map));
                }
            }
            Some(_) => findings.push(error(
                None,
                &format!("metadata.{field}"),
                format!("{field} must be a map of strings"),
            )),
        }
    }
    let spec = match object.get("spec") {
        Some(Value::Object(spec)) => Some(spec),
        Some(_) => {
            findings.push(error(None, "spec", "spec must be a map"));
            None
        }
        None => {
            findings.push(error(None, "spec", "spec is required"));
            None
        }
    };

    let (Some(kind), Some(name), Some(namespace), Some(spec), true) =
        (kind, name, namespace, spec, findings.is_empty())
    else {
        if let Some(key) = findings_key(kind, metadata, default_namespace) {
            for finding in &mut findings {
                finding.resource = Some(key.clone());
            }
        }
        return Err(findings);
    };

    let mut meta = Map::new();
    meta.insert("name".into(), Value::String(name.clone()));
    meta.insert("namespace".into(), Value::String(namespace.to_string()));
    meta.extend(kept);
    let mut body = Map::new();
    body.insert("apiVersion".into(), Value::String(kind.api_version()));
    body.insert("kind".into(), Value::String(kind.kind().into()));
    body.insert("metadata".into(), Value::Object(meta));
    body.insert("spec".into(), Value::Object(spec.clone()));
    let body = Value::Object(body);
    let key = ResourceKey {
        kind,
        namespace,
        name,
    };
    let size = serialized_size(&body);
    if size > MAX_RESOURCE_BYTES {
        return Err(vec![too_large(Some(&key), size, "")]);
    }
    Ok(IstioResource { key, body })
}

fn too_large(resource: Option<&ResourceKey>, size: usize, what: &str) -> Finding {
    error(
        resource,
        "",
        format!(
            "object is {what}{size} bytes serialised, over the limit of {MAX_RESOURCE_BYTES} bytes"
        ),
    )
}

/// The key findings are about, when the object says enough to name one.
fn findings_key(
    kind: Option<IstioKind>,
    metadata: &Map<String, Value>,
    default_namespace: Option<&NamespaceName>,
) -> Option<ResourceKey> {
    let name = metadata.get("name")?.as_str()?;
    check_dns_subdomain(name).ok()?;
    let namespace = match metadata.get("namespace").and_then(Value::as_str) {
        Some(ns) => NamespaceName::new(ns).ok()?,
        None => default_namespace?.clone(),
    };
    Some(ResourceKey {
        kind: kind?,
        namespace,
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::*;

    fn ns(name: &str) -> NamespaceName {
        NamespaceName::new(name).expect("valid namespace")
    }

    #[test]
    fn multi_document_yaml_skips_empty_documents() {
        let text = "---\napiVersion: v1\nkind: A\n---\n---\n# only a comment\n---\nkind: B\n---\n";
        let docs = parse_documents(text).expect("parses");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["kind"], "B");
    }

    #[test]
    fn lists_are_unfolded_in_json_and_yaml() {
        let json = r#"{"apiVersion":"v1","kind":"List","items":[{"kind":"A"},{"kind":"B"}]}"#;
        assert_eq!(parse_documents(json).expect("json").len(), 2);
        let yaml = "apiVersion: networking.istio.io/v1\nkind: VirtualServiceList\nitems:\n- kind: VirtualService\n";
        let docs = parse_documents(yaml).expect("yaml");
        assert_eq!(docs, vec![json!({"kind": "VirtualService"})]);
        assert_eq!(
            parse_documents("[{\"kind\":\"A\"},{\"kind\":\"B\"}]")
                .expect("array")
                .len(),
            2
        );
    }

    #[test]
    fn broken_yaml_names_the_document() {
        let err = parse_documents("kind: A\n---\nkind: [unclosed\n").expect_err("refused");
        assert!(matches!(err, ParseError::Yaml { document: 2, .. }), "{err}");
        assert!(matches!(
            parse_documents("{\"kind\":"),
            Err(ParseError::Json(_))
        ));
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let text = format!("kind: A\nspec:\n  x: \"{}\"\n", "a".repeat(5 * 1024 * 1024));
        let started = Instant::now();
        let err = parse_documents(&text).expect_err("refused");
        assert!(matches!(
            err,
            ParseError::TooLarge {
                limit: MAX_INPUT_BYTES,
                ..
            }
        ));
        assert!(err.to_string().contains("over the limit"), "{err}");
        assert!(
            started.elapsed().as_millis() < 50,
            "refusal must not parse the text"
        );
    }

    #[test]
    fn normalize_keeps_owned_fields_and_drops_server_fields() {
        let value = json!({
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "VirtualService",
            "metadata": {
                "name": "reviews",
                "namespace": "default",
                "labels": {"app": "reviews"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "team": "books"
                },
                "resourceVersion": "42", "uid": "u", "generation": 3,
                "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": [],
                "selfLink": "/x", "ownerReferences": [], "finalizers": ["f"],
                "deletionTimestamp": "2026-01-01T00:00:00Z"
            },
            "spec": {"hosts": ["reviews"]},
            "status": {"observedGeneration": 3}
        });
        let resource = normalize(&value, None).expect("normalises");
        assert_eq!(resource.key.kind, IstioKind::VirtualService);
        assert_eq!(resource.key.namespace.as_str(), "default");
        assert_eq!(
            resource.body,
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {
                    "name": "reviews",
                    "namespace": "default",
                    "labels": {"app": "reviews"},
                    "annotations": {"team": "books"}
                },
                "spec": {"hosts": ["reviews"]}
            })
        );
    }

    #[test]
    fn namespace_comes_from_the_request_when_the_object_has_none() {
        let value = json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw"}, "spec": {}});
        let resource = normalize(&value, Some(&ns("shop"))).expect("normalises");
        assert_eq!(resource.key.namespace.as_str(), "shop");
        assert_eq!(resource.body["metadata"]["namespace"], "shop");
        let findings = normalize(&value, None).expect_err("no namespace");
        assert_eq!(findings[0].path, "metadata.namespace");
    }

    #[test]
    fn conflicting_namespaces_are_named_in_the_error() {
        let value = json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "other"}, "spec": {}});
        let findings = normalize(&value, Some(&ns("shop"))).expect_err("refused");
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].path, "metadata.namespace");
        assert!(findings[0].message.contains("other") && findings[0].message.contains("shop"));
    }

    #[test]
    fn unmanaged_kinds_list_the_accepted_kinds() {
        let value = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "namespace": "default"}, "spec": {}});
        let findings = normalize(&value, None).expect_err("refused");
        assert_eq!(findings[0].path, "kind");
        assert!(
            findings[0]
                .message
                .contains("VirtualService, DestinationRule")
                || findings[0].message.contains("DestinationRule, Gateway"),
            "{}",
            findings[0].message
        );
    }

    #[test]
    fn names_that_are_not_dns_1123_subdomains_are_refused() {
        for bad in [
            "Reviews",
            "-reviews",
            "reviews-",
            "re_views",
            "a..b",
            &"a".repeat(254),
        ] {
            let value = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": bad, "namespace": "default"}, "spec": {}});
            let findings = normalize(&value, None).expect_err(bad);
            assert_eq!(findings.len(), 1, "{bad}: {findings:?}");
            assert_eq!(findings[0].path, "metadata.name");
        }
        for good in ["reviews", "reviews.v1", "a", "9-to-5"] {
            assert!(check_dns_subdomain(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn wrong_api_version_and_non_object_spec_are_refused() {
        let value = json!({"apiVersion": "networking.istio.io/v2", "kind": "VirtualService",
            "metadata": {"name": "r", "namespace": "default"}, "spec": "x"});
        let findings = normalize(&value, None).expect_err("refused");
        let paths: Vec<_> = findings.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, vec!["apiVersion", "spec"]);
        assert!(findings.iter().all(|f| f.resource.is_some()));
        let findings = normalize(&json!([1, 2]), None).expect_err("refused");
        assert_eq!(findings[0].path, "");
    }

    #[test]
    fn five_megabyte_object_is_refused_quickly_by_size() {
        let value = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "big", "namespace": "default"},
            "spec": {"hosts": ["a"], "padding": "x".repeat(5 * 1024 * 1024)}});
        let started = Instant::now();
        let findings = normalize(&value, None).expect_err("too large");
        assert!(started.elapsed().as_millis() < 2000);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].path, "");
        assert!(
            findings[0]
                .message
                .contains(&MAX_RESOURCE_BYTES.to_string())
        );
        assert!(
            findings[0]
                .message
                .contains(&serialized_size(&value["spec"]).to_string())
        );
    }

    #[test]
    fn size_counts_what_is_kept_not_what_is_dropped() {
        let padding = "x".repeat(MAX_RESOURCE_BYTES / 2 + 1);
        let value = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "r", "namespace": "default", "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": padding.clone()}},
            "spec": {"hosts": [padding.clone()]}, "status": {"x": padding.clone()}});
        let resource = normalize(&value, None).expect("kept part is under the limit");
        assert!(serialized_size(&resource.body) <= MAX_RESOURCE_BYTES);
        let mut value = value;
        value["metadata"]["annotations"] = json!({"note": padding});
        let findings = normalize(&value, None).expect_err("kept part is over the limit");
        assert_eq!(findings[0].path, "");
        assert!(findings[0].resource.is_some());
    }

    #[test]
    fn flow_style_yaml_is_read_even_though_it_starts_with_a_brace() {
        let docs = parse_documents("{kind: Gateway, metadata: {name: gw}}").expect("yaml");
        assert_eq!(
            docs,
            vec![json!({"kind": "Gateway", "metadata": {"name": "gw"}})]
        );
    }

    #[test]
    fn yaml_alias_bombs_are_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..=9u8 {
            let prev = (b'a' + level - 1) as char;
            let this = (b'a' + level) as char;
            let refs = vec![format!("*{prev}"); 10].join(", ");
            text.push_str(&format!("{this}: &{this} [{refs}]\n"));
        }
        let started = Instant::now();
        assert!(parse_documents(&text).is_err());
        assert!(started.elapsed().as_secs() < 5);
    }
}
