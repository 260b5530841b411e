//! Operations on one cluster: server-side apply, delete, label sweeps and waits.
//!
//! [`ClusterOps`] wraps a `kube::Client` for one member cluster. Every write is a server-side apply
//! with field manager `mesh-manager` (so re-running a step is a no-op in effect) or a delete that
//! treats "already gone" as success. Waits use watches (`kube::runtime::wait`), never polling
//! loops. API resources are discovered once per kind and cached.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Scope};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::RwLock;

/// ConfigMap in `istio-system` where istiod's remote-cluster sync state is read.
pub const REMOTE_CLUSTERS_STATUS: &str = "istiod-remote-clusters";

/// Field manager of every write mesh-manager makes.
pub const FIELD_MANAGER: &str = "mesh-manager";

/// Why an operation on a cluster failed. Messages carry the cluster's own error text.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The object body is not a Kubernetes object.
    #[error("invalid object {what}: {reason}")]
    InvalidObject {
        /// Which object.
        what: String,
        /// What is missing.
        reason: String,
    },
    /// The cluster does not serve this kind (CRD missing).
    #[error("cluster {cluster} does not serve {api_version}/{kind}: {source}")]
    UnknownKind {
        /// The cluster.
        cluster: String,
        /// Its apiVersion.
        api_version: String,
        /// Its kind.
        kind: String,
        /// What discovery said.
        source: Box<kube::Error>,
    },
    /// A request failed.
    #[error("cluster {cluster}: {action} failed: {source}")]
    Request {
        /// The cluster.
        cluster: String,
        /// What was attempted, e.g. `apply Secret istio-system/cacerts`.
        action: String,
        /// The API error.
        source: Box<kube::Error>,
    },
    /// A wait did not end in time.
    #[error("cluster {cluster}: timed out after {seconds}s waiting for {what}")]
    Timeout {
        /// The cluster.
        cluster: String,
        /// What was awaited.
        what: String,
        /// How long.
        seconds: u64,
    },
}

impl OpsError {
    /// Whether retrying may help (network trouble, server errors, conflicts, time-outs).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Request { source, .. } | Self::UnknownKind { source, .. } => {
                match source.as_ref() {
                    kube::Error::Api(status) => {
                        status.code >= 500 || status.code == 409 || status.code == 429
                    }
                    _ => true,
                }
            }
            Self::Timeout { .. } => true,
            Self::InvalidObject { .. } => false,
        }
    }
}

/// A discovered kind: its resource and capabilities.
type DiscoveredKind = (ApiResource, ApiCapabilities);
/// Kinds discovered so far, by (apiVersion, kind).
type KindCache = Arc<RwLock<HashMap<(String, String), DiscoveredKind>>>;

/// One cluster, as mesh-manager operates on it.
#[derive(Clone)]
pub struct ClusterOps {
    name: String,
    client: Client,
    kinds: KindCache,
}

impl std::fmt::Debug for ClusterOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOps")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// A reference to one object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// apiVersion (`v1`, `apps/v1`, `sailoperator.io/v1`).
    pub api_version: String,
    /// kind.
    pub kind: String,
    /// Namespace, for namespaced kinds.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

impl ObjectRef {
    /// Reads the reference out of an object body.
    pub fn of(body: &Value) -> Result<Self, OpsError> {
        let field = |path: &[&str]| {
            path.iter()
                .try_fold(body, |v, key| v.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let invalid = |reason: &str| OpsError::InvalidObject {
            what: field(&["metadata", "name"]).unwrap_or_else(|| "<unnamed>".into()),
            reason: reason.into(),
        };
        Ok(Self {
            api_version: field(&["apiVersion"]).ok_or_else(|| invalid("no apiVersion"))?,
            kind: field(&["kind"]).ok_or_else(|| invalid("no kind"))?,
            namespace: field(&["metadata", "namespace"]),
            name: field(&["metadata", "name"]).ok_or_else(|| invalid("no metadata.name"))?,
        })
    }
}

impl ClusterOps {
    /// Operations on the cluster `name` through `client`.
    pub fn new(name: impl Into<String>, client: Client) -> Self {
        Self {
            name: name.into(),
            client,
            kinds: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn request_error(
        &self,
        action: impl Into<String>,
    ) -> impl FnOnce(kube::Error) -> OpsError + '_ {
        let action = action.into();
        move |source| OpsError::Request {
            cluster: self.name.clone(),
            action,
            source: Box::new(source),
        }
    }

    /// The API resource of a kind, discovered once.
    pub async fn resource(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<DiscoveredKind, OpsError> {
        let key = (api_version.to_owned(), kind.to_owned());
        if let Some(found) = self.kinds.read().await.get(&key) {
            return Ok(found.clone());
        }
        let (group, version) = split_api_version(api_version);
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let found = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|source| OpsError::UnknownKind {
                cluster: self.name.clone(),
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
                source: Box::new(source),
            })?;
        self.kinds.write().await.insert(key, found.clone());
        Ok(found)
    }

    async fn dynamic_api(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Api<DynamicObject>, OpsError> {
        let (resource, caps) = self.resource(api_version, kind).await?;
        Ok(match (caps.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(self.client.clone(), ns, &resource)
            }
            (Scope::Namespaced, None) => {
                Api::default_namespaced_with(self.client.clone(), &resource)
            }
            (Scope::Cluster, _) => Api::all_with(self.client.clone(), &resource),
        })
    }

    /// Server-side applies an object (created when missing, our fields forced).
    pub async fn apply(&self, body: &Value) -> Result<DynamicObject, OpsError> {
        let target = ObjectRef::of(body)?;
        let api = self
            .dynamic_api(
                &target.api_version,
                &target.kind,
                target.namespace.as_deref(),
            )
            .await?;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&target.name, &params, &Patch::Apply(body))
            .await
            .map_err(self.request_error(format!("apply {target}")))
    }

    /// Reads an object, `None` when it does not exist.
    pub async fn get(&self, target: &ObjectRef) -> Result<Option<DynamicObject>, OpsError> {
        let api = self
            .dynamic_api(
                &target.api_version,
                &target.kind,
                target.namespace.as_deref(),
            )
            .await?;
        api.get_opt(&target.name)
            .await
            .map_err(self.request_error(format!("read {target}")))
    }

    /// Deletes an object; one that is already gone counts as deleted. Returns whether it existed.
    pub async fn delete(&self, target: &ObjectRef) -> Result<bool, OpsError> {
        let api = match self
            .dynamic_api(
                &target.api_version,
                &target.kind,
                target.namespace.as_deref(),
            )
            .await
        {
            Ok(api) => api,
            // The kind is not served any more (CRD removed): nothing of it can be left.
            Err(OpsError::UnknownKind { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        match api.delete(&target.name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(source) => Err(self.request_error(format!("delete {target}"))(source)),
        }
    }

    /// Every object of a kind carrying `label_selector`, in all namespaces.
    pub async fn list_labelled(
        &self,
        api_version: &str,
        kind: &str,
        label_selector: &str,
    ) -> Result<Vec<ObjectRef>, OpsError> {
        let api = match self.dynamic_api(api_version, kind, None).await {
            Ok(api) => api,
            Err(OpsError::UnknownKind { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let (resource, caps) = self.resource(api_version, kind).await?;
        let api = match caps.scope {
            Scope::Namespaced => Api::<DynamicObject>::all_with(self.client.clone(), &resource),
            Scope::Cluster => api,
        };
        let list = api
            .list_metadata(&ListParams::default().labels(label_selector))
            .await
            .map_err(self.request_error(format!("list {kind} with {label_selector}")))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|item| {
                Some(ObjectRef {
                    api_version: api_version.to_owned(),
                    kind: kind.to_owned(),
                    namespace: item.metadata.namespace,
                    name: item.metadata.name?,
                })
            })
            .collect())
    }

    /// Every object of a kind carrying `label_selector`, in all namespaces, as JSON (one list
    /// request; a kind the cluster does not serve has no objects).
    pub async fn list_labelled_objects(
        &self,
        api_version: &str,
        kind: &str,
        label_selector: &str,
    ) -> Result<Vec<Value>, OpsError> {
        let (resource, caps) = match self.resource(api_version, kind).await {
            Ok(found) => found,
            Err(OpsError::UnknownKind { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let api = match caps.scope {
            Scope::Namespaced => Api::<DynamicObject>::all_with(self.client.clone(), &resource),
            Scope::Cluster => Api::all_with(self.client.clone(), &resource),
        };
        let list = api
            .list(&ListParams::default().labels(label_selector))
            .await
            .map_err(self.request_error(format!("list {kind} with {label_selector}")))?;
        list.items
            .into_iter()
            .map(|item| {
                let mut value =
                    serde_json::to_value(&item).map_err(|e| OpsError::InvalidObject {
                        what: item.metadata.name.clone().unwrap_or_default(),
                        reason: e.to_string(),
                    })?;
                // Items of a list carry no type fields; put them back for the caller.
                value["apiVersion"] = Value::String(api_version.to_owned());
                value["kind"] = Value::String(kind.to_owned());
                Ok(value)
            })
            .collect()
    }

    /// A stream that yields once the objects of a kind carrying `label_selector` are listed and
    /// again whenever one of them is created, changed or deleted, in any namespace (a watch that
    /// re-lists and resumes on its own after errors). A kind the cluster does not serve never
    /// yields.
    pub async fn watch_changes(
        &self,
        api_version: &str,
        kind: &str,
        label_selector: &str,
    ) -> Result<futures::stream::BoxStream<'static, ()>, OpsError> {
        use futures::StreamExt as _;
        use kube::runtime::{WatchStreamExt as _, watcher};
        let (resource, caps) = match self.resource(api_version, kind).await {
            Ok(found) => found,
            Err(OpsError::UnknownKind { .. }) => return Ok(futures::stream::pending().boxed()),
            Err(e) => return Err(e),
        };
        let api = match caps.scope {
            Scope::Namespaced => Api::<DynamicObject>::all_with(self.client.clone(), &resource),
            Scope::Cluster => Api::all_with(self.client.clone(), &resource),
        };
        let config = watcher::Config::default().labels(label_selector);
        Ok(watcher(api, config)
            .default_backoff()
            .filter_map(|event| async move {
                match event {
                    Ok(
                        watcher::Event::Apply(_)
                        | watcher::Event::Delete(_)
                        | watcher::Event::InitDone,
                    ) => Some(()),
                    _ => None,
                }
            })
            .boxed())
    }

    /// Merges `labels` and `annotations` into a namespace mesh-manager does not own (a `null`
    /// value removes a key). The namespace is created when missing.
    pub async fn patch_namespace_metadata(
        &self,
        namespace: &str,
        labels: &Value,
        annotations: &Value,
    ) -> Result<(), OpsError> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let patch = serde_json::json!({"metadata": {"labels": labels, "annotations": annotations}});
        match api
            .patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                // A merge patch removes keys with `null`; a new namespace simply lacks them.
                let present = |map: &Value| -> Value {
                    Value::Object(
                        map.as_object()
                            .map(|m| {
                                m.iter()
                                    .filter(|(_, v)| !v.is_null())
                                    .map(|(k, v)| (k.clone(), v.clone()))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    )
                };
                let body = serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {
                        "name": namespace,
                        "labels": present(labels),
                        "annotations": present(annotations),
                    },
                });
                self.apply(&body).await.map(drop)
            }
            Err(source) => Err(self.request_error(format!("label namespace {namespace}"))(
                source,
            )),
        }
    }

    async fn wait<K, C>(
        &self,
        api: Api<K>,
        name: &str,
        what: String,
        timeout: Duration,
        condition: C,
    ) -> Result<Option<K>, OpsError>
    where
        K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
        C: Condition<K>,
    {
        match tokio::time::timeout(timeout, await_condition(api, name, condition)).await {
            Ok(Ok(object)) => Ok(object),
            Ok(Err(error)) => Err(OpsError::Request {
                cluster: self.name.clone(),
                action: format!("watch {what}"),
                source: Box::new(match error {
                    kube::runtime::wait::Error::ProbeFailed(watch_error) => {
                        kube::Error::Service(watch_error.to_string().into())
                    }
                }),
            }),
            Err(_) => Err(OpsError::Timeout {
                cluster: self.name.clone(),
                what,
                seconds: timeout.as_secs(),
            }),
        }
    }

    /// Waits (by watch) until a Deployment has all its replicas available.
    pub async fn wait_deployment_available(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<(), OpsError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let available = |d: Option<&Deployment>| {
            d.is_some_and(|d| {
                let want = d.spec.replicas.unwrap_or(1);
                let status = d.status.as_ref();
                status.and_then(|s| s.available_replicas).unwrap_or(0) >= want
                    && status.and_then(|s| s.observed_generation) >= d.metadata.generation
            })
        };
        self.wait(
            api,
            name,
            format!("Deployment {namespace}/{name} to be available"),
            timeout,
            available,
        )
        .await
        .map(drop)
    }

    /// Waits (by watch) until a Deployment no longer exists (its owner was deleted and the
    /// garbage collector took it).
    pub async fn wait_deployment_gone(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<(), OpsError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        self.wait(
            api,
            name,
            format!("Deployment {namespace}/{name} to be removed"),
            timeout,
            |d: Option<&Deployment>| d.is_none(),
        )
        .await
        .map(drop)
    }

    /// Waits (by watch) until a LoadBalancer Service has an address, and returns it.
    pub async fn wait_load_balancer_address(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<String, OpsError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        let address_of = |s: &Service| {
            s.status
                .as_ref()
                .and_then(|st| st.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .and_then(|ingress| ingress.first())
                .and_then(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        };
        let found = self
            .wait(
                api,
                name,
                format!("Service {namespace}/{name} to get a load-balancer address"),
                timeout,
                move |s: Option<&Service>| s.and_then(address_of).is_some(),
            )
            .await?;
        Ok(found.as_ref().and_then(address_of).unwrap_or_default())
    }

    /// Waits (by watch) until a service-account token Secret holds its token, and returns it
    /// with the cluster CA (base64) when present. The token is secret: never log it.
    pub async fn wait_service_account_token(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<(String, Option<String>), OpsError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let has_token = |s: Option<&Secret>| {
            s.and_then(|s| s.data.as_ref())
                .is_some_and(|d| d.contains_key("token"))
        };
        let secret = self
            .wait(
                api,
                name,
                format!("Secret {namespace}/{name} to hold a token"),
                timeout,
                has_token,
            )
            .await?
            .unwrap_or_default();
        let data = secret.data.unwrap_or_default();
        let token = data
            .get("token")
            .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
            .unwrap_or_default();
        let ca = data.get("ca.crt").map(|bytes| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(&bytes.0)
        });
        Ok((token, ca))
    }

    /// Waits (by watch) until a cluster-scoped custom object reports condition `Ready=True`.
    pub async fn wait_custom_ready(
        &self,
        api_version: &str,
        kind: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<(), OpsError> {
        let api = self.dynamic_api(api_version, kind, None).await?;
        let ready = |o: Option<&DynamicObject>| {
            o.and_then(|o| o.data.get("status"))
                .and_then(|s| s.get("conditions"))
                .and_then(Value::as_array)
                .is_some_and(|conds| {
                    conds
                        .iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        };
        self.wait(
            api,
            name,
            format!("{kind} {name} to be Ready"),
            timeout,
            ready,
        )
        .await
        .map(drop)
    }

    /// Merge-patches a namespace mesh-manager does not own with `patch` (labels only, by
    /// convention); a missing namespace is left alone and reported as `false`.
    pub async fn merge_patch_namespace(
        &self,
        namespace: &str,
        patch: &Value,
    ) -> Result<bool, OpsError> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        match api
            .patch(namespace, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(source) => Err(self.request_error(format!("patch namespace {namespace}"))(
                source,
            )),
        }
    }

    /// Names of the namespaces carrying `label_selector`.
    pub async fn namespaces_labelled(&self, label_selector: &str) -> Result<Vec<String>, OpsError> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let list = api
            .list_metadata(&ListParams::default().labels(label_selector))
            .await
            .map_err(self.request_error(format!("list namespaces with {label_selector}")))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect())
    }

    /// Waits (by watch) until istiod in this cluster reports every cluster in `peers` as synced.
    ///
    /// istiod's view of its remote clusters is read from ConfigMap
    /// `istio-system/istiod-remote-clusters` (one key per remote cluster, JSON with
    /// `syncStatus`), which the simulated istiod maintains as its stand-in for `/debug/clusterz`.
    pub async fn wait_remote_clusters_synced(
        &self,
        peers: &[String],
        timeout: Duration,
    ) -> Result<(), OpsError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), "istio-system");
        let wanted = peers.to_vec();
        let synced = move |cm: Option<&ConfigMap>| {
            let data = cm.and_then(|cm| cm.data.as_ref());
            wanted.iter().all(|peer| {
                data.and_then(|d| d.get(peer))
                    .and_then(|text| serde_json::from_str::<Value>(text).ok())
                    .is_some_and(|status| status["syncStatus"] == "synced")
            })
        };
        let what = format!("istiod to report {} as synced", peers.join(", "));
        self.wait(api, REMOTE_CLUSTERS_STATUS, what, timeout, synced)
            .await
            .map(drop)
    }

    /// istiod's last report of a peer (`syncStatus`, `error`), if any.
    pub async fn remote_cluster_status(&self, peer: &str) -> Result<Option<Value>, OpsError> {
        Ok(self
            .config_map_data("istio-system", REMOTE_CLUSTERS_STATUS)
            .await?
            .and_then(|data| {
                data.get(peer)
                    .and_then(|text| serde_json::from_str(text).ok())
            }))
    }

    /// Restarts every Deployment of `namespace` whose pod template does not yet carry
    /// `annotation = value` (a rollout, as `kubectl rollout restart` does, but idempotent: the
    /// same value twice restarts once). Returns the names of all Deployments in the namespace.
    pub async fn restart_deployments(
        &self,
        namespace: &str,
        annotation: &str,
        value: &str,
    ) -> Result<Vec<String>, OpsError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(self.request_error(format!("list Deployments in {namespace}")))?;
        let mut names = Vec::new();
        for deployment in list.items {
            let Some(name) = deployment.metadata.name.clone() else {
                continue;
            };
            let current = deployment
                .spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get(annotation));
            if current.map(String::as_str) != Some(value) {
                let patch = serde_json::json!({"spec": {"template": {"metadata": {
                    "annotations": {annotation: value}
                }}}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(
                        self.request_error(format!("restart Deployment {namespace}/{name}")),
                    )?;
            }
            names.push(name);
        }
        Ok(names)
    }

    /// Deployments of `namespace` that do not have all their replicas available (or have not
    /// yet observed their latest generation).
    pub async fn unavailable_deployments(&self, namespace: &str) -> Result<Vec<String>, OpsError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(self.request_error(format!("list Deployments in {namespace}")))?;
        Ok(list
            .items
            .into_iter()
            .filter(|d| {
                let want = d.spec.replicas.unwrap_or(1);
                let status = d.status.as_ref();
                let available = status.and_then(|s| s.available_replicas).unwrap_or(0) >= want;
                let observed = status.and_then(|s| s.observed_generation) >= d.metadata.generation;
                !(available && observed)
            })
            .filter_map(|d| d.metadata.name)
            .collect())
    }

    /// Reads a ConfigMap's data, `None` when absent.
    pub async fn config_map_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, OpsError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name)
            .await
            .map(|cm| cm.map(|cm| cm.data.unwrap_or_default()))
            .map_err(self.request_error(format!("read ConfigMap {namespace}/{name}")))
    }
}
