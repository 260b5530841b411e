//! Validation of Istio objects against the OpenAPI schemas of Istio's own CRDs.
//!
//! Inputs: the CRD file bundled with mesh-manager (`data/istio/crds/istio-api-crds.gen.yaml`,
//! read once into a [`SchemaSet`]) and a normalised [`IstioResource`]. Outputs: [`Finding`]s with
//! the field path (`spec.http[0].route[1].weight`), the same verdicts the Kubernetes API server
//! would give for the structural schema (types, unknown fields, required, enum, formats, ranges,
//! lengths, sizes, patterns, `oneOf`/`anyOf`/`not` of `required` lists, list-map keys) and for
//! the `x-kubernetes-validations` CEL rules. A CEL rule that cannot be compiled or evaluated here
//! is skipped, never reported: an interpreter gap must not refuse a valid object.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, LazyLock};

use cel::extractors::This;
use cel::{Context, Env, ExecutionError, Program};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use super::{Finding, IstioKind, IstioResource, Severity, child_path, index_path};

/// The Istio CRDs mesh-manager validates against.
const BUNDLED_CRDS: &str = include_str!("../../data/istio/crds/istio-api-crds.gen.yaml");

/// At most this many findings are reported per object; a garbage object would otherwise produce
/// one per field.
const MAX_FINDINGS: usize = 100;

/// Largest total size of annotations, as the API server enforces.
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

static BUNDLED: LazyLock<SchemaSet> = LazyLock::new(|| {
    SchemaSet::from_crds(BUNDLED_CRDS).expect("invariant: the bundled Istio CRDs are valid")
});

/// The CEL environment every rule is compiled in: the standard library and the strings
/// extension, as the API server offers them.
static CEL_ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // Registering a bundled extension on a fresh environment cannot conflict.
    let _ = env.add_extension(cel::extensions::strings);
    Arc::new(env)
});

/// Why a CRD file could not be turned into schemas.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The file is not YAML.
    #[error("invalid crd yaml: {0}")]
    Yaml(String),
    /// A managed kind has no schema for the version mesh-manager writes.
    #[error("no schema for {kind} {version} in the crds")]
    Missing {
        /// The kind.
        kind: IstioKind,
        /// The version looked for.
        version: &'static str,
    },
}

/// The schemas of every managed kind, compiled once (regular expressions and CEL programs
/// included).
pub struct SchemaSet {
    kinds: HashMap<IstioKind, Node>,
    rules_compiled: usize,
    rules_skipped: usize,
}

impl std::fmt::Debug for SchemaSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaSet")
            .field("kinds", &self.kinds.keys().collect::<Vec<_>>())
            .field("rules_compiled", &self.rules_compiled)
            .field("rules_skipped", &self.rules_skipped)
            .finish()
    }
}

impl SchemaSet {
    /// The schemas of the CRDs bundled with mesh-manager, built on first use.
    pub fn bundled() -> &'static SchemaSet {
        &BUNDLED
    }

    /// Reads the `openAPIV3Schema` of each managed kind, for the version mesh-manager writes,
    /// from a (multi-document) CRD file.
    pub fn from_crds(text: &str) -> Result<SchemaSet, SchemaError> {
        let mut kinds = HashMap::new();
        let mut counts = (0, 0);
        for document in serde_yaml::Deserializer::from_str(text) {
            let crd = Value::deserialize(document).map_err(|e| SchemaError::Yaml(e.to_string()))?;
            if crd["kind"] != "CustomResourceDefinition" {
                continue;
            }
            let spec = &crd["spec"];
            let Some(kind) = spec["names"]["kind"]
                .as_str()
                .and_then(IstioKind::from_kind)
            else {
                continue;
            };
            if spec["group"] != kind.group() {
                continue;
            }
            let Some(versions) = spec["versions"].as_array() else {
                continue;
            };
            if let Some(version) = versions.iter().find(|v| v["name"] == kind.version()) {
                let schema = &version["schema"]["openAPIV3Schema"];
                kinds.insert(kind, Node::compile(schema, &mut counts));
            }
        }
        for kind in IstioKind::ALL {
            if !kinds.contains_key(&kind) {
                return Err(SchemaError::Missing {
                    kind,
                    version: kind.version(),
                });
            }
        }
        Ok(SchemaSet {
            kinds,
            rules_compiled: counts.0,
            rules_skipped: counts.1,
        })
    }

    /// How many CEL rules were compiled, and how many are skipped because the interpreter cannot
    /// compile them (or they compare with the old object, which a desired state has not).
    pub fn rule_counts(&self) -> (usize, usize) {
        (self.rules_compiled, self.rules_skipped)
    }

    /// Validates the object's `spec` against its kind's schema, and the basics of its
    /// `metadata` (label and annotation syntax).
    pub fn validate(&self, resource: &IstioResource) -> Vec<Finding> {
        let mut run = Run {
            resource,
            findings: Vec::new(),
            silent: 0,
            failed: false,
        };
        check_metadata(&mut run, &resource.body["metadata"]);
        if let Some(root) = self.kinds.get(&resource.key.kind)
            && let Some(spec_node) = root.properties.as_ref().and_then(|p| p.get("spec"))
        {
            match resource.body.get("spec") {
                Some(spec) => {
                    run.check(spec_node, spec, "spec");
                }
                None => run.report("spec", "spec is required".into()),
            }
        }
        run.findings.truncate(MAX_FINDINGS);
        run.findings
    }
}

/// Validates `resource` against the bundled Istio CRD schemas (see [`SchemaSet::validate`]).
pub fn validate_schema(resource: &IstioResource) -> Vec<Finding> {
    SchemaSet::bundled().validate(resource)
}

/// A JSON type of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl Type {
    fn parse(s: &str) -> Option<Type> {
        Some(match s {
            "object" => Type::Object,
            "array" => Type::Array,
            "string" => Type::String,
            "integer" => Type::Integer,
            "number" => Type::Number,
            "boolean" => Type::Boolean,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Type::Object => "object",
            Type::Array => "array",
            Type::String => "string",
            Type::Integer => "integer",
            Type::Number => "number",
            Type::Boolean => "boolean",
        }
    }

    fn admits(self, value: &Value) -> bool {
        match self {
            Type::Object => value.is_object(),
            Type::Array => value.is_array(),
            Type::String => value.is_string(),
            Type::Integer => value.is_i64() || value.is_u64(),
            Type::Number => value.is_number(),
            Type::Boolean => value.is_boolean(),
        }
    }
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// What an object admits beyond its `properties`.
enum Additional {
    /// Nothing (unknown fields are refused).
    Closed,
    /// Anything.
    Open,
    /// Values of this schema (a map).
    Schema(Box<Node>),
}

/// One CEL rule of `x-kubernetes-validations`.
struct Rule {
    text: String,
    program: Option<Program>,
    message: Option<String>,
    message_expression: Option<Program>,
    field_path: Option<String>,
}

/// A compiled schema node.
#[derive(Default)]
struct Node {
    ty: Option<Type>,
    nullable: bool,
    int_or_string: bool,
    preserve_unknown: bool,
    properties: Option<BTreeMap<String, Node>>,
    additional: Option<Additional>,
    items: Option<Box<Node>>,
    required: Vec<String>,
    enumeration: Option<Vec<Value>>,
    format: Option<String>,
    minimum: Option<(f64, bool)>,
    maximum: Option<(f64, bool)>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    min_properties: Option<u64>,
    max_properties: Option<u64>,
    pattern: Option<(String, Option<Regex>)>,
    unique_items: bool,
    list_map_keys: Option<Vec<String>>,
    list_set: bool,
    one_of: Vec<Node>,
    any_of: Vec<Node>,
    all_of: Vec<Node>,
    not: Option<Box<Node>>,
    rules: Vec<Rule>,
}

impl Node {
    fn compile(schema: &Value, counts: &mut (usize, usize)) -> Node {
        let mut node = Node {
            ty: schema["type"].as_str().and_then(Type::parse),
            nullable: schema["nullable"].as_bool().unwrap_or(false),
            int_or_string: schema["x-kubernetes-int-or-string"]
                .as_bool()
                .unwrap_or(false),
            preserve_unknown: schema["x-kubernetes-preserve-unknown-fields"]
                .as_bool()
                .unwrap_or(false),
            required: strings(&schema["required"]),
            enumeration: schema["enum"].as_array().cloned(),
            format: schema["format"].as_str().map(str::to_string),
            minimum: schema["minimum"]
                .as_f64()
                .map(|m| (m, schema["exclusiveMinimum"].as_bool().unwrap_or(false))),
            maximum: schema["maximum"]
                .as_f64()
                .map(|m| (m, schema["exclusiveMaximum"].as_bool().unwrap_or(false))),
            min_length: schema["minLength"].as_u64(),
            max_length: schema["maxLength"].as_u64(),
            min_items: schema["minItems"].as_u64(),
            max_items: schema["maxItems"].as_u64(),
            min_properties: schema["minProperties"].as_u64(),
            max_properties: schema["maxProperties"].as_u64(),
            pattern: schema["pattern"]
                .as_str()
                .map(|p| (p.to_string(), Regex::new(p).ok())),
            unique_items: schema["uniqueItems"].as_bool().unwrap_or(false),
            list_set: schema["x-kubernetes-list-type"] == "set",
            ..Node::default()
        };
        if schema["x-kubernetes-list-type"] == "map" {
            node.list_map_keys = Some(strings(&schema["x-kubernetes-list-map-keys"]));
        }
        if let Some(props) = schema["properties"].as_object() {
            node.properties = Some(
                props
                    .iter()
                    .map(|(k, v)| (k.clone(), Node::compile(v, counts)))
                    .collect(),
            );
        }
        node.additional = match &schema["additionalProperties"] {
            Value::Bool(true) => Some(Additional::Open),
            Value::Bool(false) => Some(Additional::Closed),
            v @ Value::Object(_) => Some(Additional::Schema(Box::new(Node::compile(v, counts)))),
            _ => None,
        };
        if schema["items"].is_object() {
            node.items = Some(Box::new(Node::compile(&schema["items"], counts)));
        }
        let list = |key: &str, counts: &mut (usize, usize)| -> Vec<Node> {
            schema[key]
                .as_array()
                .map(|a| a.iter().map(|s| Node::compile(s, counts)).collect())
                .unwrap_or_default()
        };
        node.one_of = list("oneOf", counts);
        node.any_of = list("anyOf", counts);
        node.all_of = list("allOf", counts);
        if schema["not"].is_object() {
            node.not = Some(Box::new(Node::compile(&schema["not"], counts)));
        }
        for rule in schema["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(text) = rule["rule"].as_str() else {
                continue;
            };
            let program = compile_rule(text);
            if program.is_some() {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
            node.rules.push(Rule {
                text: text.to_string(),
                program,
                message: rule["message"].as_str().map(str::to_string),
                message_expression: rule["messageExpression"].as_str().and_then(compile_rule),
                field_path: rule["fieldPath"].as_str().map(str::to_string),
            });
        }
        node
    }

    /// Field names named by the `required` lists of the branches (for messages about
    /// mutually exclusive fields).
    fn branch_fields(branches: &[Node]) -> Vec<String> {
        let mut fields = Vec::new();
        for branch in branches {
            for f in &branch.required {
                if !fields.contains(f) {
                    fields.push(f.clone());
                }
            }
            if let Some(not) = &branch.not {
                for f in Node::branch_fields(&not.any_of) {
                    if !fields.contains(&f) {
                        fields.push(f);
                    }
                }
            }
        }
        fields
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Compiles a rule, or `None` when the interpreter cannot, or when the rule compares with the
/// old object (transition rules have nothing to compare a desired state with).
fn compile_rule(text: &str) -> Option<Program> {
    if text.contains("oldSelf") {
        return None;
    }
    // The parser is not expected to panic, but a rule it chokes on must not take validation down.
    std::panic::catch_unwind(|| CEL_ENV.compile(text).ok())
        .ok()
        .flatten()
}

/// One validation pass over one object.
struct Run<'a> {
    resource: &'a IstioResource,
    findings: Vec<Finding>,
    /// Above zero while checking whether a `oneOf`/`anyOf`/`not` branch matches: nothing is
    /// reported, only `failed` is set.
    silent: usize,
    failed: bool,
}

impl Run<'_> {
    fn report(&mut self, path: &str, message: String) {
        self.failed = true;
        if self.silent > 0 || self.findings.len() >= MAX_FINDINGS {
            return;
        }
        self.findings.push(Finding {
            severity: Severity::Error,
            resource: Some(self.resource.key.clone()),
            path: path.to_string(),
            message,
        });
    }

    fn warn(&mut self, path: &str, message: String) {
        if self.silent > 0 || self.findings.len() >= MAX_FINDINGS {
            return;
        }
        self.findings.push(Finding {
            severity: Severity::Warning,
            resource: Some(self.resource.key.clone()),
            path: path.to_string(),
            message,
        });
    }

    /// Whether `value` satisfies `node`, reporting nothing.
    fn matches(&mut self, node: &Node, value: &Value) -> bool {
        let failed = std::mem::replace(&mut self.failed, false);
        self.silent += 1;
        self.check(node, value, "");
        self.silent -= 1;
        let ok = !self.failed;
        self.failed = failed;
        ok
    }

    /// Checks `value` against `node`; returns whether it passed (so CEL rules above it run only
    /// on structurally valid values).
    fn check(&mut self, node: &Node, value: &Value, path: &str) -> bool {
        if self.findings.len() >= MAX_FINDINGS && self.silent == 0 {
            return false;
        }
        let failed_before = std::mem::replace(&mut self.failed, false);
        self.check_value(node, value, path);
        let ok = !self.failed;
        self.failed = failed_before || self.failed;
        ok
    }

    fn check_value(&mut self, node: &Node, value: &Value, path: &str) {
        if value.is_null() {
            if !node.nullable && node.ty.is_some() {
                self.warn(
                    path,
                    "null is not a valid value here; the API server drops the field".into(),
                );
            }
            return;
        }
        if node.int_or_string {
            if !(value.is_i64() || value.is_u64() || value.is_string()) {
                self.report(
                    path,
                    format!(
                        "must be an integer or a string, not {}",
                        json_type_name(value)
                    ),
                );
                return;
            }
        } else if let Some(ty) = node.ty
            && !ty.admits(value)
        {
            let found = json_type_name(value);
            self.report(path, format!("must be of type {}, not {found}", ty.name()));
            return;
        }

        match value {
            Value::Object(map) => self.check_object(node, map, path),
            Value::Array(items) => self.check_array(node, items, path),
            Value::String(s) => self.check_string(node, s, path),
            Value::Number(_) => self.check_number(node, value, path),
            _ => {}
        }
        if let Some(allowed) = &node.enumeration
            && !allowed.contains(value)
        {
            let list = allowed
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join(", ");
            self.report(
                path,
                format!("unsupported value {value}; supported values: {list}"),
            );
        }
        self.check_combinations(node, value, path);
        if !self.failed && !node.rules.is_empty() {
            self.check_rules(node, value, path);
        }
    }

    fn check_object(&mut self, node: &Node, map: &serde_json::Map<String, Value>, path: &str) {
        for (key, child) in map {
            let child_path = child_path(path, key);
            if let Some(prop) = node.properties.as_ref().and_then(|p| p.get(key)) {
                self.check(prop, child, &child_path);
                continue;
            }
            match &node.additional {
                Some(Additional::Schema(schema)) => {
                    self.check(schema, child, &child_path);
                }
                Some(Additional::Open) => {}
                Some(Additional::Closed) | None => {
                    let open = node.preserve_unknown
                        || (node.properties.is_none()
                            && node.additional.is_none()
                            && node.ty.is_none());
                    if !open {
                        let known = node
                            .properties
                            .as_ref()
                            .map(|p| p.keys().cloned().collect::<Vec<_>>().join(", "))
                            .unwrap_or_default();
                        let message = if known.is_empty() {
                            format!("unknown field {key:?}")
                        } else {
                            format!("unknown field {key:?}; known fields: {known}")
                        };
                        self.report(&child_path, message);
                    }
                }
            }
        }
        for required in &node.required {
            if map.get(required).is_none_or(Value::is_null) {
                self.report(
                    &child_path(path, required),
                    format!("{required} is required"),
                );
            }
        }
        if let Some(max) = node.max_properties
            && map.len() as u64 > max
        {
            self.report(
                path,
                format!("must have at most {max} entries, has {}", map.len()),
            );
        }
        if let Some(min) = node.min_properties
            && (map.len() as u64) < min
        {
            self.report(
                path,
                format!("must have at least {min} entries, has {}", map.len()),
            );
        }
    }

    fn check_array(&mut self, node: &Node, items: &[Value], path: &str) {
        if let Some(item_node) = &node.items {
            for (i, item) in items.iter().enumerate() {
                self.check(item_node, item, &index_path(path, i));
            }
        }
        if let Some(max) = node.max_items
            && items.len() as u64 > max
        {
            self.report(
                path,
                format!("must have at most {max} items, has {}", items.len()),
            );
        }
        if let Some(min) = node.min_items
            && (items.len() as u64) < min
        {
            self.report(
                path,
                format!("must have at least {min} items, has {}", items.len()),
            );
        }
        if node.unique_items || node.list_set {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    self.report(&index_path(path, i), format!("duplicate value {item}"));
                }
            }
        }
        if let Some(keys) = &node.list_map_keys {
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let key: Vec<String> = keys.iter().map(|k| item[k].to_string()).collect();
                if !seen.insert(key.clone()) {
                    self.report(
                        &index_path(path, i),
                        format!(
                            "duplicate entry with {} {}",
                            keys.join(", "),
                            key.join(", ")
                        ),
                    );
                }
            }
        }
    }

    fn check_string(&mut self, node: &Node, s: &str, path: &str) {
        let chars = || s.chars().count() as u64;
        if let Some(max) = node.max_length
            && s.len() as u64 > max
            && chars() > max
        {
            self.report(
                path,
                format!("must be at most {max} characters, has {}", chars()),
            );
        }
        if let Some(min) = node.min_length
            && chars() < min
        {
            self.report(
                path,
                format!("must be at least {min} characters, has {}", chars()),
            );
        }
        if let Some((pattern, Some(regex))) = &node.pattern
            && !regex.is_match(s)
        {
            self.report(
                path,
                format!("{s:?} does not match the pattern {pattern:?}"),
            );
        }
        match node.format.as_deref() {
            Some("byte") => {
                use base64::Engine as _;
                if base64::engine::general_purpose::STANDARD.decode(s).is_err() {
                    self.report(path, "must be base64-encoded".into());
                }
            }
            Some("date-time") => {
                let format = time::format_description::well_known::Rfc3339;
                if time::OffsetDateTime::parse(s, &format).is_err() {
                    self.report(path, format!("{s:?} is not an RFC 3339 date-time"));
                }
            }
            _ => {}
        }
    }

    fn check_number(&mut self, node: &Node, value: &Value, path: &str) {
        let range = match node.format.as_deref() {
            Some("int32") => Some((i32::MIN as i128, i32::MAX as i128)),
            Some("uint32") => Some((0, u32::MAX as i128)),
            Some("int64") => Some((i64::MIN as i128, i64::MAX as i128)),
            Some("uint64") => Some((0, u64::MAX as i128)),
            _ => None,
        };
        let as_int = value
            .as_i64()
            .map(i128::from)
            .or_else(|| value.as_u64().map(i128::from));
        if let (Some((lo, hi)), Some(n)) = (range, as_int)
            && (n < lo || n > hi)
        {
            let format = node.format.as_deref().unwrap_or_default();
            self.report(
                path,
                format!("{n} is out of range for {format} ({lo}..{hi})"),
            );
            return;
        }
        let Some(n) = value.as_f64() else {
            return;
        };
        if let Some((min, exclusive)) = node.minimum
            && (n < min || (exclusive && n == min))
        {
            let op = if exclusive {
                "greater than"
            } else {
                "at least"
            };
            self.report(path, format!("must be {op} {min}, is {value}"));
        }
        if let Some((max, exclusive)) = node.maximum
            && (n > max || (exclusive && n == max))
        {
            let op = if exclusive { "less than" } else { "at most" };
            self.report(path, format!("must be {op} {max}, is {value}"));
        }
    }

    fn check_combinations(&mut self, node: &Node, value: &Value, path: &str) {
        let set_fields = |fields: &[String]| -> Vec<String> {
            fields
                .iter()
                .filter(|f| value.get(f.as_str()).is_some_and(|v| !v.is_null()))
                .cloned()
                .collect()
        };
        if !node.one_of.is_empty() {
            let matched = node
                .one_of
                .iter()
                .filter(|branch| self.matches(branch, value))
                .count();
            if matched != 1 {
                let fields = Node::branch_fields(&node.one_of);
                let set = set_fields(&fields);
                let message = if fields.is_empty() {
                    format!("must match exactly one schema of oneOf, matches {matched}")
                } else if set.len() > 1 {
                    format!(
                        "only one of {} may be set, found {}",
                        fields.join(", "),
                        set.join(" and ")
                    )
                } else {
                    format!("exactly one of {} must be set", fields.join(", "))
                };
                self.report(path, message);
            }
        }
        if !node.any_of.is_empty() && !node.any_of.iter().any(|b| self.matches(b, value)) {
            let fields = Node::branch_fields(&node.any_of);
            let message = if fields.is_empty() {
                "must match at least one schema of anyOf".to_string()
            } else {
                format!("at least one of {} must be set", fields.join(", "))
            };
            self.report(path, message);
        }
        for branch in &node.all_of {
            // allOf branches report their own (combination) findings at this path.
            self.check_combinations(branch, value, path);
            if !branch.required.is_empty() {
                for required in &branch.required {
                    if value.get(required).is_none_or(Value::is_null) {
                        self.report(
                            &child_path(path, required),
                            format!("{required} is required"),
                        );
                    }
                }
            }
        }
        if let Some(not) = &node.not
            && self.matches(not, value)
        {
            let fields = Node::branch_fields(std::slice::from_ref(not));
            let message = if fields.is_empty() {
                "must not match the schema of not".to_string()
            } else {
                format!("must not set {}", fields.join(", "))
            };
            self.report(path, message);
        }
    }

    fn check_rules(&mut self, node: &Node, value: &Value, path: &str) {
        let self_value = to_cel(value);
        for rule in &node.rules {
            let Some(program) = &rule.program else {
                continue;
            };
            // An interpreter panic is an interpreter gap like any other, not a verdict.
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let mut context = rule_context();
                context.add_variable_from_value("self", self_value.clone());
                program.execute(&context)
            }))
            .ok();
            let failed = match outcome {
                Some(Ok(cel::Value::Bool(false))) => true,
                // `duration(self)` fails on a string that is no duration: that is the verdict
                // the API server gives, and one this module can reach without the interpreter.
                Some(Err(_)) if rule.text.contains("duration(self)") => value
                    .as_str()
                    .is_some_and(|s| parse_go_duration(s).is_none()),
                // Anything else (an error, a non-boolean) is not a verdict.
                _ => false,
            };
            if !failed {
                continue;
            }
            let message = rule
                .message_expression
                .as_ref()
                .and_then(|expression| {
                    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        let mut context = rule_context();
                        context.add_variable_from_value("self", self_value.clone());
                        expression.execute(&context)
                    }));
                    match outcome {
                        Ok(Ok(cel::Value::String(s))) if !s.is_empty() => Some(s.to_string()),
                        _ => None,
                    }
                })
                .or_else(|| rule.message.clone())
                .unwrap_or_else(|| format!("failed rule: {}", rule.text));
            let rule_path = match &rule.field_path {
                Some(field_path) => format!("{path}{field_path}"),
                None => path.to_string(),
            };
            self.report(&rule_path, message);
        }
    }
}

/// Parses a duration as Go's `time.ParseDuration` (and so Kubernetes' CEL `duration()`) does:
/// an optional sign, then decimal numbers each with a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`,
/// `h`), or a bare `0`. Returns nanoseconds.
pub(crate) fn parse_go_duration(s: &str) -> Option<f64> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_end];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * factor;
        rest = &rest[unit_end..];
    }
    Some(if negative { -total } else { total })
}

/// A context with the Kubernetes helpers the standard library lacks: `url(s)` with
/// `getScheme()`, `getHost()` and `getEscapedPath()`.
fn rule_context() -> Context<'static, 'static> {
    let mut context = Context::with_env(CEL_ENV.clone());
    let _ = context.add_function(
        "url",
        |s: Arc<String>| -> Result<cel::Value, ExecutionError> {
            parse_url(&s).ok_or_else(|| ExecutionError::function_error("url", "not a url"))
        },
    );
    for (name, part) in [
        ("getScheme", "scheme"),
        ("getHost", "host"),
        ("getEscapedPath", "path"),
    ] {
        let _ = context.add_function(name, move |This(url): This<cel::Value>| {
            url_part(&url, part)
        });
    }
    context
}

fn url_part(url: &cel::Value, part: &str) -> Result<cel::Value, ExecutionError> {
    match url {
        cel::Value::Map(map) => map
            .get(&cel::objects::Key::String(Arc::new(format!(
                "__url_{part}"
            ))))
            .cloned()
            .ok_or_else(|| ExecutionError::function_error(part, "not a url")),
        _ => Err(ExecutionError::function_error(part, "not a url")),
    }
}

/// The parts of an absolute URL (`scheme://host/path`) or an absolute path, as Kubernetes'
/// `url()` accepts them.
fn parse_url(s: &str) -> Option<cel::Value> {
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => {
            let mut chars = scheme.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            if !valid {
                return None;
            }
            (scheme.to_string(), rest)
        }
        None if s.starts_with('/') => (String::new(), ""),
        None => return None,
    };
    let (host, path) = if scheme.is_empty() {
        (String::new(), s.to_string())
    } else {
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let host = authority.rsplit('@').next().unwrap_or_default();
        let path_end = rest[end..].find(['?', '#']).map_or(rest.len(), |i| end + i);
        (host.to_string(), rest[end..path_end].to_string())
    };
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let mut map = HashMap::new();
    map.insert("__url_scheme".to_string(), cel::Value::from(scheme));
    map.insert("__url_host".to_string(), cel::Value::from(host));
    map.insert("__url_path".to_string(), cel::Value::from(path));
    Some(cel::Value::from(map))
}

/// A JSON value as a CEL value: integers as `int` (as the API server gives integer fields),
/// other numbers as `double`.
fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let map: HashMap<String, cel::Value> =
                map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::from(map)
        }
    }
}

/// Label and annotation syntax, as the API server checks it for every object.
fn check_metadata(run: &mut Run<'_>, metadata: &Value) {
    if let Some(labels) = metadata.get("labels").and_then(Value::as_object) {
        for (key, value) in labels {
            let path = child_path("metadata.labels", key);
            if let Err(reason) = check_qualified_name(key) {
                run.report(&path, format!("label key {key:?} {reason}"));
            }
            match value.as_str() {
                Some(v) => {
                    if let Err(reason) = check_label_value(v) {
                        run.report(&path, format!("label value {v:?} {reason}"));
                    }
                }
                None => run.report(&path, "label values must be strings".into()),
            }
        }
    }
    if let Some(annotations) = metadata.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (key, value) in annotations {
            let path = child_path("metadata.annotations", key);
            if let Err(reason) = check_qualified_name(key) {
                run.report(&path, format!("annotation key {key:?} {reason}"));
            }
            match value.as_str() {
                Some(v) => total += key.len() + v.len(),
                None => run.report(&path, "annotation values must be strings".into()),
            }
        }
        if total > MAX_ANNOTATIONS_BYTES {
            run.report(
                "metadata.annotations",
                format!("annotations are {total} bytes, over the limit of {MAX_ANNOTATIONS_BYTES}"),
            );
        }
    }
}

/// A Kubernetes qualified name: an optional DNS-1123 subdomain prefix and `/`, then a name of at
/// most 63 alphanumerics, `-`, `_` and `.`, starting and ending alphanumeric.
fn check_qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        super::parse::check_dns_subdomain(prefix).map_err(|r| format!("has a prefix that {r}"))?;
    }
    if name.is_empty() || name.len() > 63 {
        return Err("must have a name part of 1 to 63 characters".into());
    }
    check_label_value(name)
}

fn check_label_value(value: &str) -> Result<(), String> {
    if value.len() > 63 {
        return Err("must be at most 63 characters".into());
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let ok = value.is_empty()
        || (value.starts_with(alnum)
            && value.ends_with(alnum)
            && value
                .chars()
                .all(|c| alnum(c) || matches!(c, '-' | '_' | '.')));
    if ok {
        Ok(())
    } else {
        Err(
            "must consist of alphanumerics, '-', '_' or '.', starting and ending alphanumeric"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::resources::normalize;

    fn resource(kind: &str, spec: Value) -> IstioResource {
        normalize(
            &json!({"apiVersion": "networking.istio.io/v1", "kind": kind,
                "metadata": {"name": "r", "namespace": "default"}, "spec": spec}),
            None,
        )
        .expect("normalises")
    }

    fn vs(spec: Value) -> IstioResource {
        resource("VirtualService", spec)
    }

    fn error_paths(findings: &[Finding]) -> Vec<&str> {
        findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| f.path.as_str())
            .collect()
    }

    #[test]
    fn bundled_crds_give_a_schema_for_every_kind_and_compile_most_rules() {
        let set = SchemaSet::bundled();
        for kind in IstioKind::ALL {
            assert!(set.kinds.contains_key(&kind), "{kind}");
        }
        let (compiled, skipped) = set.rule_counts();
        assert!(compiled > 0);
        assert!(
            skipped * 10 < compiled,
            "compiled {compiled}, skipped {skipped}"
        );
    }

    #[test]
    fn a_string_where_a_list_belongs_is_a_type_error() {
        let findings = validate_schema(&vs(json!({"hosts": "x"})));
        assert_eq!(error_paths(&findings), vec!["spec.hosts"]);
        assert!(
            findings[0].message.contains("array"),
            "{}",
            findings[0].message
        );
    }

    #[test]
    fn unknown_fields_are_refused_at_their_path() {
        let findings = validate_schema(&vs(json!({"hosts": ["r"], "http": [
            {"route": [{"destination": {"host": "r"}}], "retrys": {"attempts": 3}}]})));
        assert_eq!(error_paths(&findings), vec!["spec.http[0].retrys"]);
        assert!(findings[0].message.contains("unknown field \"retrys\""));
        assert!(findings[0].message.contains("retries"));
    }

    #[test]
    fn mutually_exclusive_string_matches_are_refused() {
        let findings = validate_schema(&vs(json!({"hosts": ["r"], "http": [
            {"match": [{"uri": {"exact": "/a", "prefix": "/b"}}], "route": [{"destination": {"host": "r"}}]}]})));
        assert_eq!(error_paths(&findings), vec!["spec.http[0].match[0].uri"]);
        assert!(
            findings[0].message.contains("exact and prefix"),
            "{}",
            findings[0].message
        );
        let one = validate_schema(&vs(json!({"hosts": ["r"], "http": [
            {"match": [{"uri": {"regex": "/a.*"}}], "route": [{"destination": {"host": "r"}}]}]})));
        assert!(one.is_empty(), "{one:?}");
    }

    #[test]
    fn int32_range_required_and_enum_are_enforced() {
        let findings = validate_schema(&vs(json!({"hosts": ["r"], "http": [
            {"route": [{"destination": {"host": "r"}, "weight": 3_000_000_000_u64}, {"weight": 1}]}]})));
        assert_eq!(
            error_paths(&findings),
            vec![
                "spec.http[0].route[0].weight",
                "spec.http[0].route[1].destination"
            ]
        );
        let dr = resource(
            "DestinationRule",
            json!({"host": "r", "trafficPolicy": {"tls": {"mode": "SOMETIMES"}}}),
        );
        let findings = validate_schema(&dr);
        assert_eq!(error_paths(&findings), vec!["spec.trafficPolicy.tls.mode"]);
        assert!(findings[0].message.contains("ISTIO_MUTUAL"));
    }

    #[test]
    fn cel_rules_report_their_message() {
        let findings = validate_schema(&vs(json!({"hosts": ["r"], "http": [
            {"route": [{"destination": {"host": "r"}}], "timeout": "0s"}]})));
        let errors: Vec<_> = findings
            .iter()
            .map(|f| (f.path.as_str(), f.message.as_str()))
            .collect();
        assert_eq!(
            errors,
            vec![(
                "spec.http[0].timeout",
                "must be a valid duration greater than 1ms"
            )]
        );
        let se = resource(
            "ServiceEntry",
            json!({"hosts": ["api.example.com"], "resolution": "DNS", "ports": [
            {"number": 70000, "name": "a", "protocol": "TCP"}, {"number": 443, "name": "b", "protocol": "TLS"},
            {"number": 443, "name": "c", "protocol": "TLS"}]}),
        );
        let findings = validate_schema(&se);
        let errors: Vec<_> = findings
            .iter()
            .map(|f| (f.path.as_str(), f.message.as_str()))
            .collect();
        assert_eq!(
            errors,
            vec![("spec.ports[0].number", "port must be between 1-65535")]
        );
        // `self.all(l1, self.exists_one(l2, l1.number == l2.number))`: unique port numbers. The
        // list's rule runs once its items are valid.
        let mut se = se;
        se.body["spec"]["ports"][0]["number"] = 8080.into();
        let findings = validate_schema(&se);
        let errors: Vec<_> = findings
            .iter()
            .map(|f| (f.path.as_str(), f.message.as_str()))
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "spec.ports");
        let fine = validate_schema(&vs(json!({"hosts": ["r"], "http": [
            {"route": [{"destination": {"host": "r", "port": {"number": 9080}}}], "timeout": "1.5s"}]})));
        assert!(fine.is_empty(), "{fine:?}");
    }

    #[test]
    fn invalid_durations_are_refused_with_the_rule_message() {
        let findings = validate_schema(&vs(json!({"hosts": ["r"], "http": [
            {"route": [{"destination": {"host": "r"}}], "timeout": "ten seconds"}]})));
        assert_eq!(error_paths(&findings), vec!["spec.http[0].timeout"]);
    }

    #[test]
    fn exclusive_fields_and_rules_of_other_kinds_are_enforced() {
        let dr = resource(
            "DestinationRule",
            json!({"host": "r", "trafficPolicy": {"loadBalancer": {
            "simple": "ROUND_ROBIN", "consistentHash": {"useSourceIp": true}}}}),
        );
        let findings = validate_schema(&dr);
        assert_eq!(
            error_paths(&findings),
            vec!["spec.trafficPolicy.loadBalancer"]
        );
        assert!(
            findings[0].message.contains("simple and consistentHash"),
            "{}",
            findings[0].message
        );

        let gw = resource(
            "Gateway",
            json!({"selector": {"istio": "ingressgateway"}, "servers": [
            {"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"],
             "tls": {"mode": "SIMPLE", "credentialName": "a", "credentialNames": ["b"]}}]}),
        );
        let findings = validate_schema(&gw);
        assert_eq!(
            error_paths(&findings),
            vec!["spec.servers[0].tls"],
            "{findings:?}"
        );

        let we = resource("WorkloadEntry", json!({"labels": {"app": "x"}}));
        let findings = validate_schema(&we);
        assert_eq!(error_paths(&findings), vec!["spec"], "{findings:?}");
        assert_eq!(findings[0].message, "Address is required");

        let sidecar = resource(
            "Sidecar",
            json!({"egress": [{"hosts": ["./*"], "port": {"number": 5_000_000_000_u64}}]}),
        );
        assert_eq!(
            error_paths(&validate_schema(&sidecar)),
            vec!["spec.egress[0].port.number"]
        );
    }

    #[test]
    fn go_durations_parse_as_go_parses_them() {
        assert_eq!(parse_go_duration("1.5s"), Some(1.5e9));
        assert_eq!(parse_go_duration("1h30m"), Some(5400e9));
        assert_eq!(parse_go_duration("0"), Some(0.0));
        assert_eq!(parse_go_duration("100us"), Some(100e3));
        for bad in ["", "10", "1x", "s", "1..5s", "ten seconds", "-"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values_follow_kubernetes_syntax() {
        let mut r =
            vs(json!({"hosts": ["r"], "http": [{"route": [{"destination": {"host": "r"}}]}]}));
        r.body["metadata"]["labels"] =
            json!({"app.kubernetes.io/name": "ok", "bad key": "v", "k": "-x"});
        let findings = validate_schema(&r);
        assert_eq!(
            error_paths(&findings),
            vec!["metadata.labels[bad key]", "metadata.labels.k"]
        );
    }

    /// A CRD file with the given schema for every managed kind.
    fn crds_with(spec_schema: &Value) -> String {
        IstioKind::ALL
            .iter()
            .map(|kind| {
                let crd = json!({
                    "apiVersion": "apiextensions.k8s.io/v1",
                    "kind": "CustomResourceDefinition",
                    "spec": {"group": "networking.istio.io", "names": {"kind": kind.kind()},
                        "versions": [{"name": kind.version(), "schema": {"openAPIV3Schema": {
                            "type": "object", "properties": {"spec": spec_schema}}}}]}
                });
                serde_yaml::to_string(&crd).expect("yaml")
            })
            .collect::<Vec<_>>()
            .join("---\n")
    }

    #[test]
    fn unevaluable_cel_rules_never_produce_errors() {
        let schema = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
        "x-kubernetes-validations": [
            {"rule": "self.((( broken", "message": "uncompilable"},
            {"rule": "self.nothere == 1", "message": "missing key"},
            {"rule": "self.hosts.noSuchFunction()", "message": "unknown function"},
            {"rule": "undeclared_variable > 1", "message": "undeclared"},
            {"rule": "self.hosts", "message": "not a boolean"},
            {"rule": "self == oldSelf", "message": "transition"},
            {"rule": "size(self.hosts) < 2", "message": "at most one host"}
        ]});
        let set = SchemaSet::from_crds(&crds_with(&schema)).expect("schemas");
        let (compiled, skipped) = set.rule_counts();
        assert_eq!(skipped, IstioKind::ALL.len() * 2, "compiled {compiled}");
        let ok = set.validate(&vs(json!({"hosts": ["a"]})));
        assert!(ok.is_empty(), "{ok:?}");
        let refused = set.validate(&vs(json!({"hosts": ["a", "b"]})));
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].message, "at most one host");
        assert_eq!(refused[0].path, "spec");
    }

    #[test]
    fn every_structural_keyword_is_enforced() {
        let schema = json!({"type": "object", "properties": {
            "port": {"x-kubernetes-int-or-string": true},
            "labels": {"type": "object", "maxProperties": 2,
                "additionalProperties": {"type": "string", "maxLength": 3}},
            "name": {"type": "string", "minLength": 2, "pattern": "^[a-z]+$"},
            "list": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "integer", "format": "uint32"}},
            "ratio": {"type": "number", "minimum": 0, "maximum": 1},
            "maybe": {"type": "string", "nullable": true},
            "flag": {"type": "boolean"},
            "either": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "anyOf": [{"required": ["a"]}, {"required": ["b"]}]},
            "neither": {"type": "object", "properties": {"a": {"type": "string"}},
                "not": {"required": ["a"]}}
        }});
        let set = SchemaSet::from_crds(&crds_with(&schema)).expect("schemas");
        let good = json!({"port": "http", "labels": {"a": "abc"}, "name": "ok", "list": [0, 4294967295_u64],
            "ratio": 0.5, "maybe": null, "flag": true, "either": {"b": "x"}, "neither": {}});
        assert!(set.validate(&vs(good)).is_empty());
        let bad = json!({"port": 1.5, "labels": {"a": "abcd", "b": "", "c": ""}, "name": "A",
            "list": [-1, 1, 2], "ratio": 2, "flag": "yes", "either": {}, "neither": {"a": "x"}});
        let findings = set.validate(&vs(bad));
        let found: Vec<_> = findings.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            found,
            vec![
                "spec.either",
                "spec.flag",
                "spec.labels.a",
                "spec.labels",
                "spec.list[0]",
                "spec.list",
                "spec.name",
                "spec.name",
                "spec.neither",
                "spec.port",
                "spec.ratio",
            ],
            "{findings:#?}"
        );
        let port = set.validate(&vs(json!({"port": 8080})));
        assert!(port.is_empty());
    }

    #[test]
    fn url_helper_reads_the_scheme() {
        let schema = json!({"type": "object", "properties": {"u": {"type": "string",
            "x-kubernetes-validations": [{"rule": "url(self).getScheme() in ['http', 'https']"}]}}});
        let set = SchemaSet::from_crds(&crds_with(&schema)).expect("schemas");
        assert!(
            set.validate(&vs(json!({"u": "https://example.com/x"})))
                .is_empty()
        );
        let refused = set.validate(&vs(json!({"u": "ftp://example.com/x"})));
        assert_eq!(error_paths(&refused), vec!["spec.u"]);
        assert!(refused[0].message.starts_with("failed rule: url(self)"));
        // Not a URL at all: the helper fails, so the rule gives no verdict.
        assert!(set.validate(&vs(json!({"u": "not a url"}))).is_empty());
    }
}
