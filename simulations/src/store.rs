//! The in-memory object store of one simulated cluster.
//!
//! Objects are JSON values keyed by (group, plural, namespace, name) — shared by every served
//! version of a resource — under one cluster-wide `resourceVersion` counter. Every write appends
//! a [`WatchEvent`] to a bounded history (the watch cache: a watch from a version older than the
//! history gets `410 Expired`) and broadcasts it to live watchers and in-process controllers.
//!
//! The store implements the object semantics of the API server: uid, creationTimestamp,
//! generation bumps on spec changes, optimistic concurrency, status subresources, finalizers and
//! deletionTimestamp, namespace termination, owner-reference garbage collection (dependents of a
//! deleted owner, and objects written later with references to owners that no longer exist),
//! defaulting of the fields clients rely on, and server-side apply (see [`crate::patch`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::error::{ApiError, ApiResult, Reason};
use crate::patch::{self, PatchKind};
use crate::resources::{GroupResource, Registry, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};

/// Watch event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// The wire name (`ADDED`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// resourceVersion of the change.
    pub rv: u64,
    /// What happened.
    pub kind: EventType,
    /// Resource of the object.
    pub gr: GroupResource,
    /// Namespace ("" for cluster-scoped).
    pub namespace: String,
    /// The object after the change (for deletes: the last state).
    pub object: Arc<Value>,
    /// The object before the change, for modifications.
    pub prev: Option<Arc<Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ObjKey {
    gr: GroupResource,
    namespace: String,
    name: String,
}

/// Per-manager applied configurations: key `manager` or `manager/status`, value
/// (apiVersion, time, configuration).
type Applied = BTreeMap<String, (String, String, Value)>;

#[derive(Debug, Clone)]
struct Entry {
    obj: Arc<Value>,
    applied: Applied,
}

struct State {
    registry: Registry,
    objects: BTreeMap<ObjKey, Entry>,
    rv: u64,
    history: VecDeque<Arc<WatchEvent>>,
    history_limit: usize,
    /// Highest resourceVersion dropped from the history.
    compacted: u64,
    next_ip: u32,
    next_node_port: u32,
}

/// Options of a list request.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// Page size (0 = unlimited).
    pub limit: usize,
    /// Continue token of the previous page.
    pub continue_token: Option<String>,
}

/// Options of a write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: validate and answer without storing.
    pub dry_run: bool,
    /// `fieldManager`.
    pub field_manager: Option<String>,
    /// `force` (server-side apply).
    pub force: bool,
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `propagationPolicy: Orphan` leaves dependents alone.
    pub orphan: bool,
}

/// Where a watch starts.
pub struct WatchStart {
    /// Events to send before live ones (synthetic ADDED or replayed history).
    pub initial: Vec<Arc<WatchEvent>>,
    /// Live events, subscribed atomically with `initial`.
    pub rx: broadcast::Receiver<Arc<WatchEvent>>,
    /// resourceVersion of the store when the watch started.
    pub rv: u64,
}

/// The object store of one cluster. Thread-safe; cheap operations under one mutex.
pub struct Store {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<WatchEvent>>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or("")
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

fn tracks_generation(rt: &ResourceType) -> bool {
    !rt.group.is_empty()
}

/// Everything but metadata and status: a change here bumps `generation`.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

/// Object without the fields that change on every write, for no-op detection.
fn comparable(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
    }
    v
}

impl Store {
    /// An empty store serving the built-in kinds and the shipped CRDs (which it also holds as
    /// `CustomResourceDefinition` objects). `history_limit` bounds the watch cache.
    pub fn new(history_limit: usize) -> Self {
        let registry = Registry::with_builtins();
        let mut objects = BTreeMap::new();
        let crd_gr = GroupResource {
            group: "apiextensions.k8s.io".into(),
            plural: "customresourcedefinitions".into(),
        };
        let installed = installed_crds();
        for crd in installed {
            let name = meta_str(crd, "name").to_string();
            objects.insert(
                ObjKey {
                    gr: crd_gr.clone(),
                    namespace: String::new(),
                    name,
                },
                Entry {
                    obj: crd.clone(),
                    applied: Applied::new(),
                },
            );
        }
        let rv = installed.len() as u64;
        let (events, _) = broadcast::channel(1024);
        let store = Store {
            state: Mutex::new(State {
                registry,
                objects,
                rv,
                history: VecDeque::new(),
                history_limit: history_limit.max(1),
                compacted: 0,
                next_ip: 10,
                next_node_port: 30000,
            }),
            events,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let rt = store
                .resource("", "Namespace")
                .expect("invariant: namespaces are built in");
            let _ = store.create(
                &rt,
                "",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                &WriteOptions::default(),
            );
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (writes are committed last).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribe to every committed change (for in-process controllers).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.events.subscribe()
    }

    /// The current resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// The current resourceVersion if `rx` has nothing pending (a safe bookmark version).
    pub fn bookmark_rv(&self, rx: &broadcast::Receiver<Arc<WatchEvent>>) -> Option<u64> {
        let st = self.lock();
        rx.is_empty().then_some(st.rv)
    }

    /// A snapshot of the registry.
    pub fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    /// Look a served resource up by group, version, plural.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.lock().registry.find(group, version, plural)
    }

    /// The preferred version of a (group, kind).
    pub fn resource(&self, group: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.lock().registry.find_kind(group, kind)
    }

    /// Number of stored objects.
    pub fn len(&self) -> usize {
        self.lock().objects.len()
    }

    /// Whether the store holds no objects.
    pub fn is_empty(&self) -> bool {
        self.lock().objects.is_empty()
    }

    fn key(rt: &ResourceType, ns: &str, name: &str) -> ObjKey {
        ObjKey {
            gr: rt.group_resource(),
            namespace: if rt.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }

    fn present(rt: &ResourceType, obj: &Value) -> Value {
        let mut v = obj.clone();
        v["apiVersion"] = json!(rt.api_version());
        v["kind"] = json!(rt.kind);
        v
    }

    /// Get one object.
    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<Value> {
        let st = self.lock();
        st.objects
            .get(&Self::key(rt, ns, name))
            .map(|e| Self::present(rt, &e.obj))
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    /// List objects of a resource, in one namespace or all (`ns = None`).
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<Value> {
        let st = self.lock();
        let gr = rt.group_resource();
        let start = match &opts.continue_token {
            Some(tok) => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(tok)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .ok_or_else(|| {
                        ApiError::bad_request("continue key is not valid: illegal base64 data")
                    })?;
                let rv = raw["rv"].as_u64().unwrap_or(0);
                if rv < st.compacted {
                    return Err(ApiError::new(
                        Reason::Expired,
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ));
                }
                Some((
                    raw["ns"].as_str().unwrap_or("").to_string(),
                    raw["name"].as_str().unwrap_or("").to_string(),
                ))
            }
            None => None,
        };
        let lower = ObjKey {
            gr: gr.clone(),
            namespace: start.as_ref().map(|s| s.0.clone()).unwrap_or_default(),
            name: start.as_ref().map(|s| s.1.clone()).unwrap_or_default(),
        };
        let range = st.objects.range(lower..).filter(|(k, _)| k.gr == gr);
        let mut items = Vec::new();
        let mut next = None;
        let mut remaining = 0usize;
        let selective =
            opts.labels != LabelSelector::default() || opts.fields != FieldSelector::default();
        for (k, e) in range {
            if let Some((sns, sname)) = &start
                && &k.namespace == sns
                && &k.name == sname
            {
                continue;
            }
            if let Some(ns) = ns
                && rt.namespaced
                && k.namespace != ns
            {
                continue;
            }
            if !opts.labels.matches(&e.obj) || !opts.fields.matches(&e.obj) {
                continue;
            }
            if opts.limit > 0 && items.len() == opts.limit {
                if next.is_none() {
                    let last: &Value = items.last().expect("invariant: limit > 0 items taken");
                    next = Some(
                        json!({"rv": st.rv, "ns": meta_str(last, "namespace"), "name": meta_str(last, "name")}),
                    );
                }
                remaining += 1;
                if selective {
                    break;
                }
                continue;
            }
            items.push(Self::present(rt, &e.obj));
        }
        let mut metadata = json!({"resourceVersion": st.rv.to_string()});
        if let Some(n) = next {
            let tok = base64::engine::general_purpose::STANDARD.encode(n.to_string());
            metadata["continue"] = json!(tok);
            if !selective {
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
        Ok(json!({
            "kind": format!("{}List", rt.kind),
            "apiVersion": rt.api_version(),
            "metadata": metadata,
            "items": items,
        }))
    }

    /// All objects of a resource (for controllers), optionally in one namespace.
    pub fn list_values(&self, rt: &ResourceType, ns: Option<&str>) -> Vec<Value> {
        self.list(rt, ns, &ListOptions::default())
            .ok()
            .and_then(|l| l["items"].as_array().cloned())
            .unwrap_or_default()
    }

    fn commit(
        &self,
        st: &mut State,
        key: ObjKey,
        kind: EventType,
        obj: Option<Value>,
        prev: Option<Arc<Value>>,
    ) -> Arc<Value> {
        st.rv += 1;
        let rv = st.rv;
        let (object, applied) = match obj {
            Some(mut o) => {
                o["metadata"]["resourceVersion"] = json!(rv.to_string());
                let applied = st
                    .objects
                    .get(&key)
                    .map(|e| e.applied.clone())
                    .unwrap_or_default();
                (Arc::new(o), applied)
            }
            None => {
                let mut last = (*prev.clone().unwrap_or_default()).clone();
                last["metadata"]["resourceVersion"] = json!(rv.to_string());
                (Arc::new(last), Applied::new())
            }
        };
        let event = Arc::new(WatchEvent {
            rv,
            kind,
            gr: key.gr.clone(),
            namespace: key.namespace.clone(),
            object: object.clone(),
            prev: if kind == EventType::Modified {
                prev
            } else {
                None
            },
        });
        if kind == EventType::Deleted {
            st.objects.remove(&key);
        } else {
            st.objects.insert(
                key,
                Entry {
                    obj: object.clone(),
                    applied,
                },
            );
        }
        if key_is_crd(&event.gr) {
            if kind == EventType::Deleted {
                st.registry.remove_crd(&object);
            } else {
                st.registry.install_crd(&object);
            }
        }
        st.history.push_back(event.clone());
        while st.history.len() > st.history_limit {
            if let Some(old) = st.history.pop_front() {
                st.compacted = old.rv;
            }
        }
        // No receivers is fine: nobody watches yet.
        let _ = self.events.send(event);
        object
    }

    fn defaults(st: &mut State, rt: &ResourceType, obj: &mut Value, old: Option<&Value>) {
        let name = meta_str(obj, "name").to_string();
        match (rt.group.as_str(), rt.kind.as_str()) {
            ("", "Namespace") => {
                obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
                if obj["status"]["phase"].is_null() {
                    obj["status"]["phase"] = json!("Active");
                }
                if obj["spec"]["finalizers"].is_null() {
                    obj["spec"]["finalizers"] = json!(["kubernetes"]);
                }
            }
            ("", "Secret") => {
                if let Some(sd) = obj.get("stringData").and_then(Value::as_object).cloned() {
                    for (k, v) in sd {
                        let enc = base64::engine::general_purpose::STANDARD
                            .encode(v.as_str().unwrap_or_default());
                        obj["data"][k] = json!(enc);
                    }
                }
                if let Some(m) = obj.as_object_mut() {
                    m.remove("stringData");
                }
                if obj["type"].is_null() {
                    obj["type"] = json!("Opaque");
                }
            }
            ("", "Service") => {
                let spec = &mut obj["spec"];
                if spec["type"].is_null() {
                    spec["type"] = json!("ClusterIP");
                }
                if spec["clusterIP"].is_null() {
                    let kept = old
                        .and_then(|o| o["spec"]["clusterIP"].as_str())
                        .map(str::to_string);
                    let ip = kept.unwrap_or_else(|| {
                        st.next_ip += 1;
                        format!("10.96.{}.{}", st.next_ip / 250, st.next_ip % 250 + 1)
                    });
                    spec["clusterIP"] = json!(ip);
                    spec["clusterIPs"] = json!([ip]);
                }
                let lb = matches!(
                    spec["type"].as_str(),
                    Some("LoadBalancer") | Some("NodePort")
                );
                if let Some(ports) = spec["ports"].as_array_mut() {
                    for p in ports {
                        if p["protocol"].is_null() {
                            p["protocol"] = json!("TCP");
                        }
                        if p["targetPort"].is_null() {
                            p["targetPort"] = p["port"].clone();
                        }
                        if lb && p["nodePort"].is_null() {
                            st.next_node_port += 1;
                            p["nodePort"] = json!(st.next_node_port);
                        }
                    }
                }
                if spec["sessionAffinity"].is_null() {
                    spec["sessionAffinity"] = json!("None");
                }
            }
            ("apps", "Deployment") => {
                let spec = &mut obj["spec"];
                if spec["replicas"].is_null() {
                    spec["replicas"] = json!(1);
                }
                if spec["strategy"].is_null() {
                    spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
                }
                if spec["revisionHistoryLimit"].is_null() {
                    spec["revisionHistoryLimit"] = json!(10);
                }
                if spec["progressDeadlineSeconds"].is_null() {
                    spec["progressDeadlineSeconds"] = json!(600);
                }
            }
            _ => {}
        }
    }

    fn validate(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
        let name = meta_str(obj, "name");
        if name.is_empty() {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                name,
                "metadata.name: Required value: name or generateName is required",
            ));
        }
        if !is_dns_subdomain(name) {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                name,
                format!(
                    "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ),
            ));
        }
        for field in ["labels", "annotations"] {
            if let Some(m) = obj["metadata"][field].as_object()
                && m.values().any(|v| !v.is_string())
            {
                return Err(ApiError::bad_request(format!(
                    "metadata.{field} values must be strings"
                )));
            }
        }
        Ok(())
    }

    fn check_kind(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
        if let Some(kind) = obj["kind"].as_str()
            && kind != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({}) does not match the expected API version ({})",
                obj["apiVersion"].as_str().unwrap_or(""),
                rt.api_version()
            )));
        }
        Ok(())
    }

    fn check_namespace(st: &State, rt: &ResourceType, ns: &str, obj: &mut Value) -> ApiResult<()> {
        if !rt.namespaced {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("namespace");
            }
            return Ok(());
        }
        let body_ns = meta_str(obj, "namespace");
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        obj["metadata"]["namespace"] = json!(ns);
        let ns_key = ObjKey {
            gr: GroupResource {
                group: String::new(),
                plural: "namespaces".into(),
            },
            namespace: String::new(),
            name: ns.to_string(),
        };
        match st.objects.get(&ns_key) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(e) if !e.obj["metadata"]["deletionTimestamp"].is_null() => Err(ApiError::new(
                Reason::Forbidden,
                format!(
                    "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    rt.plural,
                    meta_str(obj, "name")
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Create an object (`POST`).
    pub fn create(
        &self,
        rt: &ResourceType,
        ns: &str,
        obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        let mut st = self.lock();
        self.create_locked(&mut st, rt, ns, obj, opts.dry_run, None)
    }

    fn create_locked(
        &self,
        st: &mut State,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        dry_run: bool,
        applied: Option<Applied>,
    ) -> ApiResult<Value> {
        Self::check_kind(rt, &obj)?;
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        if meta_str(&obj, "name").is_empty() {
            let prefix = meta_str(&obj, "generateName").to_string();
            if !prefix.is_empty() {
                let suffix: String = uuid::Uuid::new_v4()
                    .simple()
                    .to_string()
                    .chars()
                    .take(5)
                    .collect();
                obj["metadata"]["name"] = json!(format!("{prefix}{suffix}"));
            }
        }
        if !meta_str(&obj, "resourceVersion").is_empty() {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        Self::check_namespace(st, rt, ns, &mut obj)?;
        Self::validate(rt, &obj)?;
        let name = meta_str(&obj, "name").to_string();
        let key = Self::key(rt, ns, &name);
        if st.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        if rt.status_subresource
            && !(rt.group.is_empty() && rt.kind == "Namespace")
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("managedFields");
            m.remove("deletionTimestamp");
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        obj["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
        obj["metadata"]["creationTimestamp"] = json!(now());
        if tracks_generation(rt) {
            obj["metadata"]["generation"] = json!(1);
        }
        Self::defaults(st, rt, &mut obj, None);
        if let Some(a) = &applied {
            obj["metadata"]["managedFields"] = patch::managed_fields(a);
        }
        if dry_run {
            return Ok(obj);
        }
        let stored = self.commit(st, key.clone(), EventType::Added, Some(obj), None);
        if let (Some(a), Some(e)) = (applied, st.objects.get_mut(&key)) {
            e.applied = a;
        }
        self.collect_if_orphaned(st, rt, &key);
        Ok(Self::present(rt, &stored))
    }

    /// Finish an update of `old` into `new`: preserve what clients cannot change, keep status or
    /// spec depending on the endpoint, bump generation, check the resourceVersion precondition,
    /// commit (or skip a no-op) and finish deletions whose finalizers are gone.
    #[allow(clippy::too_many_arguments)] // internal: one call per write path
    fn finish_update(
        &self,
        st: &mut State,
        rt: &ResourceType,
        key: ObjKey,
        old: Arc<Value>,
        mut new: Value,
        status_only: bool,
        applied: Option<Applied>,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let name = key.name.clone();
        Self::check_kind(rt, &new)?;
        if !new["metadata"].is_object() {
            new["metadata"] = json!({});
        }
        let body_name = meta_str(&new, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = meta_str(&new, "namespace");
        if rt.namespaced && !body_ns.is_empty() && body_ns != key.namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let rv = meta_str(&new, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::stale(&rt.group, &rt.plural, &name));
        }
        let mut result = if status_only {
            let mut r = (*old).clone();
            r["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            if r["status"].is_null()
                && let Some(m) = r.as_object_mut()
            {
                m.remove("status");
            }
            r
        } else {
            let mut r = new;
            if rt.status_subresource {
                match old.get("status") {
                    Some(s) => r["status"] = s.clone(),
                    None => {
                        if let Some(m) = r.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            r
        };
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old["metadata"].get(field) {
                Some(v) => result["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = result["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        result["metadata"]["name"] = json!(name);
        if rt.namespaced {
            result["metadata"]["namespace"] = json!(key.namespace);
        } else if let Some(m) = result["metadata"].as_object_mut() {
            m.remove("namespace");
        }
        result["apiVersion"] = json!(rt.api_version());
        result["kind"] = json!(rt.kind);
        Self::defaults(st, rt, &mut result, Some(&old));
        Self::validate(rt, &result)?;
        if tracks_generation(rt) && spec_part(&result) != spec_part(&old) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            result["metadata"]["generation"] = json!(g);
        }
        let applied = applied.unwrap_or_else(|| {
            st.objects
                .get(&key)
                .map(|e| e.applied.clone())
                .unwrap_or_default()
        });
        if applied.is_empty() {
            if let Some(m) = result["metadata"].as_object_mut() {
                m.remove("managedFields");
            }
        } else {
            result["metadata"]["managedFields"] = patch::managed_fields(&applied);
        }
        if comparable(&result) == comparable(&old) {
            if let (Some(e), false) = (st.objects.get_mut(&key), dry_run) {
                e.applied = applied;
            }
            return Ok(Self::present(rt, &old));
        }
        if dry_run {
            return Ok(result);
        }
        let finalizers_empty = result["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
        let deleting = !result["metadata"]["deletionTimestamp"].is_null();
        if let Some(e) = st.objects.get_mut(&key) {
            e.applied = applied;
        }
        if deleting && finalizers_empty {
            let ns = key.namespace.clone();
            let gone = self.commit(st, key, EventType::Deleted, None, Some(Arc::new(result)));
            self.after_delete(st, rt, &gone, false);
            self.maybe_finish_namespace(st, &ns);
            return Ok(Self::present(rt, &gone));
        }
        let owners_changed =
            result["metadata"]["ownerReferences"] != old["metadata"]["ownerReferences"];
        let stored = self.commit(
            st,
            key.clone(),
            EventType::Modified,
            Some(result),
            Some(old),
        );
        if owners_changed {
            self.collect_if_orphaned(st, rt, &key);
        }
        Ok(Self::present(rt, &stored))
    }

    /// Replace an object (`PUT`), on the main endpoint or the `/status` subresource.
    pub fn replace(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        obj: Value,
        status_only: bool,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        let mut st = self.lock();
        let key = Self::key(rt, ns, name);
        let old = st
            .objects
            .get(&key)
            .map(|e| e.obj.clone())
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be an object",
            ));
        }
        self.finish_update(&mut st, rt, key, old, obj, status_only, None, opts.dry_run)
    }

    /// Patch an object. Server-side apply creates a missing object. Returns the object and
    /// whether it was created.
    #[allow(clippy::too_many_arguments)] // mirrors the PATCH request: target, kind, body, endpoint, options
    pub fn patch(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &[u8],
        status_only: bool,
        opts: &WriteOptions,
    ) -> ApiResult<(Value, bool)> {
        if kind == PatchKind::Apply {
            return self.apply(rt, ns, name, body, status_only, opts);
        }
        let mut st = self.lock();
        let key = Self::key(rt, ns, name);
        let old = st
            .objects
            .get(&key)
            .map(|e| e.obj.clone())
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        let mut doc = Self::present(rt, &old);
        patch::apply_patch(kind, &mut doc, body)?;
        // A patch carries a resourceVersion only when the client wants the precondition.
        let patched_rv = meta_str(&doc, "resourceVersion").to_string();
        if patched_rv == meta_str(&old, "resourceVersion")
            && let Some(m) = doc["metadata"].as_object_mut()
        {
            m.remove("resourceVersion");
        }
        let v = self.finish_update(&mut st, rt, key, old, doc, status_only, None, opts.dry_run)?;
        Ok((v, false))
    }

    fn apply(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: &[u8],
        status_only: bool,
        opts: &WriteOptions,
    ) -> ApiResult<(Value, bool)> {
        let manager = opts
            .field_manager
            .clone()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                ApiError::invalid(
                    "meta.k8s.io",
                    "PatchOptions",
                    "",
                    "fieldManager: Required value: is required for apply patch",
                )
            })?;
        let mut cfg = patch::parse_apply_body(body)?;
        Self::check_kind(rt, &cfg)?;
        if cfg["apiVersion"].is_null() || cfg["kind"].is_null() {
            return Err(ApiError::bad_request(
                "apiVersion and kind must be set in an apply configuration",
            ));
        }
        let cfg_name = meta_str(&cfg, "name");
        if cfg_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({cfg_name}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(m) = cfg.as_object_mut() {
            if status_only {
                let status = m.remove("status");
                m.retain(|k, _| k == "apiVersion" || k == "kind" || k == "metadata");
                if let Some(s) = status {
                    m.insert("status".into(), s);
                }
            } else if rt.status_subresource {
                m.remove("status");
            }
        }
        if let Some(m) = cfg["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        let mgr_key = if status_only {
            format!("{manager}/status")
        } else {
            manager.clone()
        };
        let key = Self::key(rt, ns, name);
        let mut st = self.lock();
        let Some(entry) = st.objects.get(&key).cloned() else {
            if status_only {
                return Err(ApiError::not_found(&rt.group, &rt.plural, name));
            }
            let mut obj = cfg.clone();
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            let mut applied = Applied::new();
            applied.insert(mgr_key, (rt.api_version(), now(), cfg));
            let created = self.create_locked(&mut st, rt, ns, obj, opts.dry_run, Some(applied))?;
            return Ok((created, true));
        };
        let mut applied = entry.applied.clone();
        let mut conflicts = Vec::new();
        for (other, (_, _, other_cfg)) in &applied {
            if other == &mgr_key {
                continue;
            }
            let mut paths = Vec::new();
            patch::conflicts(&cfg, other_cfg, "", &mut paths);
            for p in paths {
                if matches!(p.as_str(), ".apiVersion" | ".kind")
                    || p.starts_with(".metadata.name")
                    || p.starts_with(".metadata.namespace")
                    || p.starts_with(".metadata.resourceVersion")
                {
                    continue;
                }
                conflicts.push((other.clone(), p));
            }
        }
        if !conflicts.is_empty() {
            if !opts.force {
                let list: Vec<String> = conflicts
                    .iter()
                    .map(|(m, p)| format!("conflict with \"{m}\": {p}"))
                    .collect();
                return Err(ApiError::new(
                    Reason::Conflict,
                    format!(
                        "Apply failed with {} conflict{}: {}",
                        list.len(),
                        if list.len() == 1 { "" } else { "s" },
                        list.join(", ")
                    ),
                )
                .with_details(&rt.group, &rt.plural, name));
            }
            for (other, p) in &conflicts {
                if let Some((_, _, c)) = applied.get_mut(other) {
                    patch::remove_path(c, p);
                }
            }
        }
        let old_cfg = applied
            .get(&mgr_key)
            .map(|(_, _, c)| c.clone())
            .unwrap_or_else(|| json!({}));
        let others: Vec<Value> = applied
            .iter()
            .filter(|(k, _)| *k != &mgr_key)
            .map(|(_, (_, _, c))| c.clone())
            .collect();
        let other_refs: Vec<&Value> = others.iter().collect();
        let mut doc = Self::present(rt, &entry.obj);
        patch::prune(&mut doc, &old_cfg, &cfg, &other_refs);
        patch::deep_merge(&mut doc, &cfg);
        if meta_str(&cfg, "resourceVersion").is_empty()
            && let Some(m) = doc["metadata"].as_object_mut()
        {
            m.remove("resourceVersion");
        }
        let mut stored_cfg = cfg;
        if let Some(m) = stored_cfg["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        applied.insert(mgr_key, (rt.api_version(), now(), stored_cfg));
        let v = self.finish_update(
            &mut st,
            rt,
            key,
            entry.obj.clone(),
            doc,
            status_only,
            Some(applied),
            opts.dry_run,
        )?;
        Ok((v, false))
    }

    /// Delete an object: objects with finalizers get a `deletionTimestamp` instead.
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        let mut st = self.lock();
        self.delete_locked(&mut st, rt, ns, name, opts)
    }

    fn delete_locked(
        &self,
        st: &mut State,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        let key = Self::key(rt, ns, name);
        let old = st
            .objects
            .get(&key)
            .map(|e| e.obj.clone())
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        if let Some(uid) = &opts.uid
            && uid != meta_str(&old, "uid")
        {
            return Err(ApiError::new(
                Reason::Conflict,
                format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            )
            .with_details(&rt.group, &rt.plural, name));
        }
        if let Some(rv) = &opts.resource_version
            && rv != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::new(
                    Reason::Conflict,
                    format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", meta_str(&old, "resourceVersion")),
                )
                .with_details(&rt.group, &rt.plural, name));
        }
        if opts.dry_run {
            return Ok(Self::present(rt, &old));
        }
        let is_namespace = rt.group.is_empty() && rt.kind == "Namespace";
        let has_finalizers = old["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if is_namespace {
            if old["metadata"]["deletionTimestamp"].is_null() {
                let mut o = (*old).clone();
                o["metadata"]["deletionTimestamp"] = json!(now());
                o["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                o["status"]["phase"] = json!("Terminating");
                self.commit(st, key, EventType::Modified, Some(o), Some(old.clone()));
                self.terminate_namespace(st, name);
            }
            self.maybe_finish_namespace(st, name);
            let current = st
                .objects
                .get(&Self::key(rt, ns, name))
                .map(|e| e.obj.clone())
                .unwrap_or(old);
            return Ok(Self::present(rt, &current));
        }
        if has_finalizers {
            if old["metadata"]["deletionTimestamp"].is_null() {
                let mut o = (*old).clone();
                o["metadata"]["deletionTimestamp"] = json!(now());
                o["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                if tracks_generation(rt) {
                    o["metadata"]["generation"] =
                        json!(old["metadata"]["generation"].as_i64().unwrap_or(0) + 1);
                }
                let stored = self.commit(st, key, EventType::Modified, Some(o), Some(old));
                return Ok(Self::present(rt, &stored));
            }
            return Ok(Self::present(rt, &old));
        }
        let gone = self.commit(st, key, EventType::Deleted, None, Some(old));
        self.after_delete(st, rt, &gone, opts.orphan);
        self.maybe_finish_namespace(st, ns);
        Ok(Self::present(rt, &gone))
    }

    /// Garbage-collect dependents of a deleted object (background propagation); dependents
    /// written later are caught by [`Self::collect_if_orphaned`].
    fn after_delete(&self, st: &mut State, _rt: &ResourceType, gone: &Value, orphan: bool) {
        if orphan {
            return;
        }
        let uid = meta_str(gone, "uid").to_string();
        if uid.is_empty() {
            return;
        }
        let dependents: Vec<ObjKey> = st
            .objects
            .iter()
            .filter(|(_, e)| {
                e.obj["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| {
                        refs.iter().any(|r| r["uid"].as_str() == Some(uid.as_str()))
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in dependents {
            let Some(rt) = st
                .registry
                .all()
                .iter()
                .find(|t| t.group_resource() == k.gr)
                .cloned()
            else {
                continue;
            };
            let _ = self.delete_locked(st, &rt, &k.namespace, &k.name, &DeleteOptions::default());
        }
    }

    /// Garbage-collect an object written with owner references whose owners are all gone.
    ///
    /// The API server's garbage collector does the same with dangling owner references: a
    /// controller acting on a view taken just before an owner's deletion (an informer cache, a
    /// list) may still write the owner's children afterwards, and those must not outlive it.
    /// References without a uid are left alone; an object with at least one live owner stays.
    fn collect_if_orphaned(&self, st: &mut State, rt: &ResourceType, key: &ObjKey) {
        let Some(entry) = st.objects.get(key) else {
            return;
        };
        let owners: Vec<String> = entry.obj["metadata"]["ownerReferences"]
            .as_array()
            .map(|refs| {
                refs.iter()
                    .filter_map(|r| r["uid"].as_str())
                    .filter(|uid| !uid.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if owners.is_empty() {
            return;
        }
        let any_alive = st
            .objects
            .values()
            .any(|e| owners.iter().any(|uid| uid == meta_str(&e.obj, "uid")));
        if any_alive {
            return;
        }
        let (ns, name) = (key.namespace.clone(), key.name.clone());
        let _ = self.delete_locked(st, rt, &ns, &name, &DeleteOptions::default());
    }

    fn terminate_namespace(&self, st: &mut State, ns: &str) {
        let keys: Vec<ObjKey> = st
            .objects
            .keys()
            .filter(|k| k.namespace == ns)
            .cloned()
            .collect();
        for k in keys {
            let Some(rt) = st
                .registry
                .all()
                .iter()
                .find(|t| t.group_resource() == k.gr)
                .cloned()
            else {
                continue;
            };
            let _ = self.delete_locked(st, &rt, &k.namespace, &k.name, &DeleteOptions::default());
        }
    }

    fn maybe_finish_namespace(&self, st: &mut State, ns: &str) {
        if ns.is_empty() {
            return;
        }
        let ns_key = ObjKey {
            gr: GroupResource {
                group: String::new(),
                plural: "namespaces".into(),
            },
            namespace: String::new(),
            name: ns.to_string(),
        };
        let Some(e) = st.objects.get(&ns_key) else {
            return;
        };
        if e.obj["metadata"]["deletionTimestamp"].is_null() {
            return;
        }
        if st.objects.keys().any(|k| k.namespace == ns) {
            return;
        }
        let old = e.obj.clone();
        self.commit(st, ns_key, EventType::Deleted, None, Some(old));
    }

    /// Delete every object of a resource matching the selectors (`DELETE` on a collection).
    pub fn delete_collection(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        let items = self.list(
            rt,
            ns,
            &ListOptions {
                limit: 0,
                continue_token: None,
                ..list.clone()
            },
        )?;
        let mut st = self.lock();
        let mut deleted = Vec::new();
        for item in items["items"].as_array().into_iter().flatten() {
            let (ins, iname) = (
                meta_str(item, "namespace").to_string(),
                meta_str(item, "name").to_string(),
            );
            if let Ok(v) = self.delete_locked(&mut st, rt, &ins, &iname, opts) {
                deleted.push(v);
            }
        }
        Ok(json!({
            "kind": format!("{}List", rt.kind),
            "apiVersion": rt.api_version(),
            "metadata": {"resourceVersion": st.rv.to_string()},
            "items": deleted,
        }))
    }

    /// Start a watch. `rv` empty or "0" sends the current objects as ADDED first; a specific
    /// version replays the retained history after it, or fails with `410 Expired`.
    pub fn watch(&self, gr: &GroupResource, rv: &str, send_initial: bool) -> ApiResult<WatchStart> {
        let st = self.lock();
        let rx = self.events.subscribe();
        let mut initial = Vec::new();
        if rv.is_empty() || rv == "0" || send_initial {
            for (k, e) in st.objects.iter().filter(|(k, _)| &k.gr == gr) {
                initial.push(Arc::new(WatchEvent {
                    rv: st.rv,
                    kind: EventType::Added,
                    gr: gr.clone(),
                    namespace: k.namespace.clone(),
                    object: e.obj.clone(),
                    prev: None,
                }));
            }
        } else {
            let from: u64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
            if from < st.compacted {
                return Err(ApiError::new(
                    Reason::Expired,
                    format!("too old resource version: {from} ({})", st.compacted + 1),
                ));
            }
            initial.extend(
                st.history
                    .iter()
                    .filter(|e| e.rv > from && &e.gr == gr)
                    .cloned(),
            );
        }
        Ok(WatchStart {
            initial,
            rx,
            rv: st.rv,
        })
    }
}

/// The shipped CRDs as stored objects, built once per process and shared by every cluster's
/// store (they are by far the largest objects; sharing keeps an idle cluster small). Their
/// uid, creationTimestamp and resourceVersions (`1..=n`) are therefore the same in every
/// cluster.
fn installed_crds() -> &'static [Arc<Value>] {
    static CRDS: std::sync::OnceLock<Vec<Arc<Value>>> = std::sync::OnceLock::new();
    CRDS.get_or_init(|| {
        let created = now();
        crate::resources::shipped_crds()
            .iter()
            .enumerate()
            .map(|(i, crd)| {
                let mut obj = (**crd).clone();
                obj["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
                obj["metadata"]["creationTimestamp"] = json!(created);
                obj["metadata"]["resourceVersion"] = json!((i + 1).to_string());
                obj["metadata"]["generation"] = json!(1);
                obj["status"] = json!({
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "lastTransitionTime": created},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "lastTransitionTime": created},
                    ],
                    "acceptedNames": obj["spec"]["names"].clone(),
                    "storedVersions": [],
                });
                Arc::new(obj)
            })
            .collect()
    })
}

fn key_is_crd(gr: &GroupResource) -> bool {
    gr.group == "apiextensions.k8s.io" && gr.plural == "customresourcedefinitions"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::new(100)
    }

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
    }

    #[test]
    fn create_then_create_again_is_already_exists() {
        let s = store();
        let rt = s.resource("", "ConfigMap").expect("cm");
        s.create(&rt, "default", cm("x"), &WriteOptions::default())
            .expect("create");
        let e = s
            .create(&rt, "default", cm("x"), &WriteOptions::default())
            .expect_err("dup");
        assert_eq!(e.reason, Reason::AlreadyExists);
    }

    #[test]
    fn replace_with_stale_resource_version_conflicts() {
        let s = store();
        let rt = s.resource("", "ConfigMap").expect("cm");
        let v = s
            .create(&rt, "default", cm("x"), &WriteOptions::default())
            .expect("create");
        let mut upd = v.clone();
        upd["data"]["a"] = json!("2");
        s.replace(
            &rt,
            "default",
            "x",
            upd.clone(),
            false,
            &WriteOptions::default(),
        )
        .expect("first update");
        let e = s
            .replace(&rt, "default", "x", upd, false, &WriteOptions::default())
            .expect_err("stale");
        assert_eq!(e.reason, Reason::Conflict);
    }

    #[test]
    fn finalizers_delay_deletion_until_removed() {
        let s = store();
        let rt = s.resource("", "ConfigMap").expect("cm");
        let mut o = cm("f");
        o["metadata"]["finalizers"] = json!(["example.com/hold"]);
        s.create(&rt, "default", o, &WriteOptions::default())
            .expect("create");
        let d = s
            .delete(&rt, "default", "f", &DeleteOptions::default())
            .expect("delete");
        assert!(!d["metadata"]["deletionTimestamp"].is_null());
        let (_, _) = s
            .patch(
                &rt,
                "default",
                "f",
                PatchKind::Merge,
                br#"{"metadata":{"finalizers":null}}"#,
                false,
                &WriteOptions::default(),
            )
            .expect("patch");
        assert_eq!(
            s.get(&rt, "default", "f").expect_err("gone").reason,
            Reason::NotFound
        );
    }

    #[test]
    fn history_window_expires_old_watch_versions() {
        let s = Store::new(3);
        let rt = s.resource("", "ConfigMap").expect("cm");
        let gr = rt.group_resource();
        let first = s.current_rv();
        for i in 0..10 {
            s.create(
                &rt,
                "default",
                cm(&format!("c{i}")),
                &WriteOptions::default(),
            )
            .expect("create");
        }
        assert_eq!(
            s.watch(&gr, &first.to_string(), false)
                .err()
                .map(|e| e.reason),
            Some(Reason::Expired)
        );
        let recent = s.current_rv() - 1;
        assert_eq!(
            s.watch(&gr, &recent.to_string(), false)
                .expect("watch")
                .initial
                .len(),
            1
        );
    }

    #[test]
    fn generation_bumps_only_on_spec_change() {
        let s = store();
        let rt = s.resource("apps", "Deployment").expect("deploy");
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 1}});
        s.create(&rt, "default", d, &WriteOptions::default())
            .expect("create");
        let (v, _) = s
            .patch(
                &rt,
                "default",
                "d",
                PatchKind::Merge,
                br#"{"metadata":{"labels":{"a":"b"}}}"#,
                false,
                &WriteOptions::default(),
            )
            .expect("patch");
        assert_eq!(v["metadata"]["generation"], 1);
        let (v, _) = s
            .patch(
                &rt,
                "default",
                "d",
                PatchKind::Merge,
                br#"{"spec":{"replicas":3}}"#,
                false,
                &WriteOptions::default(),
            )
            .expect("patch");
        assert_eq!(v["metadata"]["generation"], 2);
        let (v, _) = s
            .patch(
                &rt,
                "default",
                "d",
                PatchKind::Merge,
                br#"{"status":{"replicas":3}}"#,
                false,
                &WriteOptions::default(),
            )
            .expect("patch");
        assert!(
            v["status"]["replicas"].is_null(),
            "main endpoint ignores status"
        );
        let (v, _) = s
            .patch(
                &rt,
                "default",
                "d",
                PatchKind::Merge,
                br#"{"status":{"replicas":3}}"#,
                true,
                &WriteOptions::default(),
            )
            .expect("patch");
        assert_eq!(v["status"]["replicas"], 3);
        assert_eq!(v["metadata"]["generation"], 2);
    }

    #[test]
    fn apply_removes_fields_dropped_by_the_same_manager_and_conflicts_with_others() {
        let s = store();
        let rt = s.resource("", "ConfigMap").expect("cm");
        let a = WriteOptions {
            field_manager: Some("a".into()),
            ..Default::default()
        };
        let b = WriteOptions {
            field_manager: Some("b".into()),
            ..Default::default()
        };
        let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"s"},"data":{"x":"1","y":"2"}}"#;
        let (v, created) = s
            .patch(&rt, "default", "s", PatchKind::Apply, body, false, &a)
            .expect("apply");
        assert!(created);
        assert_eq!(v["data"]["y"], "2");
        let body =
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"s"},"data":{"x":"1"}}"#;
        let (v, _) = s
            .patch(&rt, "default", "s", PatchKind::Apply, body, false, &a)
            .expect("apply");
        assert!(v["data"]["y"].is_null());
        let body =
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"s"},"data":{"x":"9"}}"#;
        let e = s
            .patch(&rt, "default", "s", PatchKind::Apply, body, false, &b)
            .expect_err("conflict");
        assert_eq!(e.reason, Reason::Conflict);
        let forced = WriteOptions { force: true, ..b };
        let (v, _) = s
            .patch(&rt, "default", "s", PatchKind::Apply, body, false, &forced)
            .expect("force");
        assert_eq!(v["data"]["x"], "9");
    }

    #[test]
    fn deleting_an_owner_removes_its_dependents() {
        let s = store();
        let rt = s.resource("", "ConfigMap").expect("cm");
        let owner = s
            .create(&rt, "default", cm("owner"), &WriteOptions::default())
            .expect("owner");
        let mut child = cm("child");
        child["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
            "uid": owner["metadata"]["uid"], "controller": true,
        }]);
        s.create(&rt, "default", child, &WriteOptions::default())
            .expect("child");
        s.delete(&rt, "default", "owner", &DeleteOptions::default())
            .expect("delete");
        assert_eq!(
            s.get(&rt, "default", "child").expect_err("gone").reason,
            Reason::NotFound
        );
    }

    #[test]
    fn a_dependent_written_after_its_owner_was_deleted_is_collected() {
        let s = store();
        let rt = s.resource("", "ConfigMap").expect("cm");
        let owner = s
            .create(&rt, "default", cm("owner"), &WriteOptions::default())
            .expect("owner");
        let other = s
            .create(&rt, "default", cm("other"), &WriteOptions::default())
            .expect("other");
        s.delete(&rt, "default", "owner", &DeleteOptions::default())
            .expect("delete");
        let reference = |o: &Value| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"],
                   "uid": o["metadata"]["uid"], "controller": true})
        };
        // Server-side apply from a stale view: the owner is already gone.
        let apply = WriteOptions {
            field_manager: Some("controller".into()),
            force: true,
            ..Default::default()
        };
        let late = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "late", "ownerReferences": [reference(&owner)]}});
        let body = serde_json::to_vec(&late).expect("json");
        let (_, created) = s
            .patch(
                &rt,
                "default",
                "late",
                PatchKind::Apply,
                &body,
                false,
                &apply,
            )
            .expect("apply");
        assert!(created, "the write itself succeeds");
        assert_eq!(
            s.get(&rt, "default", "late").expect_err("collected").reason,
            Reason::NotFound
        );
        // One live owner is enough to stay; losing it by an update collects the object.
        let mut kept = cm("kept");
        kept["metadata"]["ownerReferences"] = json!([reference(&owner), reference(&other)]);
        s.create(&rt, "default", kept, &WriteOptions::default())
            .expect("kept");
        assert!(s.get(&rt, "default", "kept").is_ok());
        let (_, _) = s
            .patch(
                &rt,
                "default",
                "kept",
                PatchKind::Merge,
                &serde_json::to_vec(&json!({"metadata": {"ownerReferences": [reference(&owner)]}}))
                    .expect("json"),
                false,
                &WriteOptions::default(),
            )
            .expect("patch");
        assert_eq!(
            s.get(&rt, "default", "kept").expect_err("collected").reason,
            Reason::NotFound
        );
        // Objects without owners are never touched.
        s.create(&rt, "default", cm("free"), &WriteOptions::default())
            .expect("free");
        assert!(s.get(&rt, "default", "free").is_ok());
    }

    #[test]
    fn deleting_a_namespace_removes_its_content() {
        let s = store();
        let ns = s.resource("", "Namespace").expect("ns");
        let rt = s.resource("", "ConfigMap").expect("cm");
        s.create(
            &ns,
            "",
            json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"t"}}),
            &WriteOptions::default(),
        )
        .expect("ns");
        s.create(&rt, "t", cm("c"), &WriteOptions::default())
            .expect("cm");
        s.delete(&ns, "", "t", &DeleteOptions::default())
            .expect("delete");
        assert!(s.get(&rt, "t", "c").is_err());
        assert!(s.get(&ns, "", "t").is_err());
    }
}
