//! Istio resources of a mesh (service governance): the desired state, changes to it, dry runs.
//!
//! Input: Kubernetes objects as JSON or (multi-document) YAML, per object on the seed routes
//! `/meshes/{mesh}/namespaces/{ns}/{kind}[/{name}]` or as a batch on `/meshes/{mesh}/resources`
//! (what `meshctl apply -f` sends). Pipeline: parse → normalise and validate against the Istio
//! schemas and the mesh's other resources (pure, `mesh_core::resources`) → with `?dryRun=true`,
//! read the target clusters and answer per cluster what would be created, changed (field by
//! field) or deleted, writing nothing → otherwise publish one `ApplyResources` command (202, or
//! the flow's outcome with `?wait=`). Reads come from the database (desired state) or, for
//! `/clusters/{cluster}/namespaces/{ns}/{kind}`, live from the cluster.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use futures::StreamExt;
use mesh_bus::command::{ApplyResources, ResourceChange, ResourceOp};
use mesh_clusters::{ClusterOps, ObjectRef};
use mesh_core::resources::{
    self, ClusterFacts, FieldChange, Finding, IstioKind, IstioResource, ProposedChange,
    ResourceKey, ServiceFact, Severity, WorkloadFact, normalize, parse_documents,
};
use mesh_core::{ClusterName, ClusterRole, NamespaceName};
use mesh_schema::models::MeshRecord;
use mesh_schema::store::resource::{ResourceRecord, ResourceRef, scope_conflict};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::commands::{WaitQuery, publish_for};
use super::meshes::{MeshParam, visible_mesh};
use crate::auth::Caller;
use crate::envelope::{ApiError, ApiResponse};
use crate::state::ApiState;

/// Query of the writing routes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct ApplyQuery {
    /// Validate and show per cluster what would change; write nothing.
    pub dry_run: Option<bool>,
    /// How long to wait for the rollout to end (`60s`); without it the answer is 202 at once.
    #[param(pattern = "^[0-9]+(ms|s|m|h)?$", example = "60s")]
    pub wait: Option<String>,
    /// Namespace for objects that name none (default `default`).
    pub namespace: Option<String>,
    /// Apply only the change if the object is at this generation (`0`: must not exist yet).
    pub expected_generation: Option<i64>,
}

impl ApplyQuery {
    fn wait(&self) -> WaitQuery {
        WaitQuery {
            wait: self.wait.clone(),
        }
    }
}

/// Query of the batch route (`meshctl apply|delete -f`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct BatchQuery {
    /// Validate and show per cluster what would change; write nothing.
    pub dry_run: Option<bool>,
    /// How long to wait for the rollout to end (`60s`); without it the answer is 202 at once.
    #[param(pattern = "^[0-9]+(ms|s|m|h)?$", example = "60s")]
    pub wait: Option<String>,
    /// Namespace for objects that name none (default `default`).
    pub namespace: Option<String>,
    /// Change the objects of this member cluster only (its own objects) instead of the mesh-wide
    /// ones.
    pub cluster: Option<String>,
    /// Delete the objects the body names (only their kind, namespace and name are read) instead
    /// of applying them; every one must exist.
    pub delete: Option<bool>,
}

/// Path of one kind in a namespace of a mesh.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KindPath {
    /// The mesh.
    pub mesh: String,
    /// The namespace.
    pub namespace: String,
    /// The kind as lower-case plural: `virtualservices`, `destinationrules`, `gateways`,
    /// `serviceentries`, `sidecars`, `envoyfilters`, `workloadentries`.
    pub kind: String,
}

/// Path of one object of a mesh.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ObjectPath {
    /// The mesh.
    pub mesh: String,
    /// The namespace.
    pub namespace: String,
    /// The kind as lower-case plural (`virtualservices`).
    pub kind: String,
    /// The object's name.
    pub name: String,
}

/// Path of one kind in a namespace of a cluster.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ClusterKindPath {
    /// The registered cluster.
    pub cluster: String,
    /// The namespace.
    pub namespace: String,
    /// The kind as lower-case plural (`virtualservices`).
    pub kind: String,
}

/// Path of one object in a namespace of a cluster.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ClusterObjectPath {
    /// The registered cluster.
    pub cluster: String,
    /// The namespace.
    pub namespace: String,
    /// The kind as lower-case plural (`virtualservices`).
    pub kind: String,
    /// The object's name.
    pub name: String,
}

/// A desired Istio resource.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceView {
    /// The kind (`VirtualService`).
    pub kind: String,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// The member it belongs to; absent for mesh-wide resources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Accepted changes so far; send it back as `expectedGeneration` to change it safely.
    pub generation: i64,
    /// SHA-256 of the stored object.
    pub content_hash: String,
    /// Who changed it last.
    pub updated_by: String,
    /// When (UTC).
    pub updated_at: String,
    /// The object.
    #[schema(value_type = Object)]
    pub object: Value,
}

impl From<&ResourceRecord> for ResourceView {
    fn from(row: &ResourceRecord) -> Self {
        Self {
            kind: row.kind.clone(),
            namespace: row.namespace.clone(),
            name: row.name.clone(),
            cluster: Some(row.cluster_name.clone()).filter(|c| !c.is_empty()),
            generation: row.generation,
            content_hash: row.content_hash.clone(),
            updated_by: row.updated_by.clone(),
            updated_at: row.updated_at.and_utc().to_rfc3339(),
            object: serde_json::from_str(&row.body).unwrap_or(Value::Null),
        }
    }
}

/// What a change would do to one object in one cluster.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectPlan {
    /// The kind.
    pub kind: String,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// `create`, `update`, `delete` or `unchanged`.
    pub action: String,
    /// For `update`: the fields that change (`before` is the cluster's, `after` the new value).
    #[schema(value_type = Vec<Object>)]
    pub fields: Vec<FieldChange>,
}

/// What a change would do in one cluster.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPlan {
    /// The cluster.
    pub cluster: String,
    /// Why the cluster could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Per object.
    pub objects: Vec<ObjectPlan>,
}

/// The answer of a dry run.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    /// Whether the change would be accepted (no finding of severity `error`).
    pub valid: bool,
    /// Validation findings (errors block, warnings do not), each with its field path.
    #[schema(value_type = Vec<Object>)]
    pub findings: Vec<Finding>,
    /// Per target cluster, what would change.
    pub clusters: Vec<ClusterPlan>,
}

/// One parsed change of a request.
struct Requested {
    change: ProposedChange,
    expected_generation: Option<i64>,
}

impl Requested {
    fn apply(resource: IstioResource, expected_generation: Option<i64>) -> Self {
        Self {
            change: ProposedChange {
                key: resource.key.clone(),
                resource: Some(resource),
            },
            expected_generation,
        }
    }

    fn delete(key: ResourceKey, expected_generation: Option<i64>) -> Self {
        Self {
            change: ProposedChange {
                key,
                resource: None,
            },
            expected_generation,
        }
    }
}

fn kind_of(plural: &str) -> Result<IstioKind, ApiError> {
    IstioKind::from_plural(plural).ok_or_else(|| {
        ApiError::NotFound(format!(
            "unknown Istio kind {:?}: use one of {}",
            plural.chars().take(40).collect::<String>(),
            IstioKind::plurals()
        ))
    })
}

/// Reads a body of at most `limit` bytes.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "request body exceeds the limit of {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Checks the content type: JSON, YAML or plain text (or none).
fn check_content_type(request: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = request.headers().get(actix_web::http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = text.split(';').next().unwrap_or("").trim();
    let accepted = [
        "application/json",
        "application/yaml",
        "application/x-yaml",
        "text/yaml",
        "text/x-yaml",
        "text/plain",
        "",
    ];
    if accepted.contains(&essence) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "content type {essence:?} is not accepted: send the objects as application/json or application/yaml"
        )))
    }
}

fn parse_objects(
    body: &[u8],
    default_namespace: &NamespaceName,
) -> Result<Vec<IstioResource>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::BadRequest("the body is not UTF-8 text".into()))?;
    let documents = parse_documents(text).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if documents.is_empty() {
        return Err(ApiError::BadRequest(
            "the body holds no objects: send one or more Istio resources as JSON or YAML".into(),
        ));
    }
    let mut resources = Vec::new();
    let mut problems = Vec::new();
    for (index, document) in documents.iter().enumerate() {
        match normalize(document, Some(default_namespace)) {
            Ok(resource) => resources.push(resource),
            Err(findings) => problems.extend(
                findings
                    .into_iter()
                    .filter(|f| f.severity == Severity::Error)
                    .map(|f| format!("object {}: {f}", index + 1)),
            ),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "invalid Istio resources: {}",
            problems.join("; ")
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for resource in &resources {
        if !seen.insert(resource.key.clone()) {
            return Err(ApiError::BadRequest(format!(
                "{} appears twice in the body",
                resource.key
            )));
        }
    }
    Ok(resources)
}

/// The one object of a single-object route's body; it must be the `kind` in `namespace` the path
/// names. `batch` is the route to send several objects to.
fn one_object(
    body: &[u8],
    kind: IstioKind,
    namespace: &NamespaceName,
    batch: &str,
) -> Result<IstioResource, ApiError> {
    let mut resources = parse_objects(body, namespace)?;
    if resources.len() != 1 {
        return Err(ApiError::BadRequest(format!(
            "send exactly one object here (got {}); use {batch} for a batch",
            resources.len()
        )));
    }
    let resource = resources.remove(0);
    if resource.key.kind != kind || &resource.key.namespace != namespace {
        return Err(ApiError::BadRequest(format!(
            "the body is {} but the path names a {kind} in namespace {namespace}",
            resource.key
        )));
    }
    Ok(resource)
}

fn namespace_of(text: Option<&str>) -> Result<NamespaceName, ApiError> {
    Ok(NamespaceName::new(text.unwrap_or("default"))?)
}

/// The members that hold the mesh's mesh-wide resources.
fn targets(members: &[(String, String)]) -> Vec<String> {
    members
        .iter()
        .filter(|(_, role)| role.as_str() != ClusterRole::Remote.as_str())
        .map(|(name, _)| name.clone())
        .collect()
}

/// Services and workloads of the target clusters, for the checks that need them.
async fn gather_facts(state: &ApiState, clusters: &[String]) -> ClusterFacts {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;
    let mut facts = ClusterFacts::default();
    for cluster in clusters {
        let (Ok(name), Ok(client)) = (
            ClusterName::new(cluster.clone()),
            super::clusters::cluster_client(state, cluster).await,
        ) else {
            continue;
        };
        let services: kube::Api<Service> = kube::Api::all(client.clone());
        if let Ok(list) = services.list(&Default::default()).await {
            facts
                .services
                .extend(list.items.into_iter().map(|s| ServiceFact {
                    cluster: name.clone(),
                    namespace: s.metadata.namespace.unwrap_or_default(),
                    name: s.metadata.name.unwrap_or_default(),
                    labels: s.metadata.labels.unwrap_or_default(),
                }));
        }
        let deployments: kube::Api<Deployment> = kube::Api::all(client);
        if let Ok(list) = deployments.list(&Default::default()).await {
            facts.workloads.extend(list.items.into_iter().map(|d| {
                WorkloadFact {
                    cluster: name.clone(),
                    namespace: d.metadata.namespace.unwrap_or_default(),
                    name: d.metadata.name.unwrap_or_default(),
                    labels: d
                        .spec
                        .template
                        .metadata
                        .and_then(|m| m.labels)
                        .unwrap_or_default(),
                }
            }));
        }
    }
    facts
}

/// Per target cluster, what the change would do.
async fn plan_clusters(
    state: &ApiState,
    mesh: &MeshRecord,
    clusters: &[String],
    requested: &[Requested],
) -> Vec<ClusterPlan> {
    let Ok(mesh_name) = mesh_core::MeshName::new(mesh.name.clone()) else {
        return Vec::new();
    };
    let mut plans = Vec::new();
    for cluster in clusters {
        let mut plan = ClusterPlan {
            cluster: cluster.clone(),
            error: None,
            objects: Vec::new(),
        };
        let ops = match super::clusters::cluster_client(state, cluster).await {
            Ok(client) => ClusterOps::new(cluster.clone(), client),
            Err(e) => {
                plan.error = Some(e.to_string());
                plans.push(plan);
                continue;
            }
        };
        for Requested { change, .. } in requested {
            let target = ObjectRef {
                api_version: change.key.kind.api_version(),
                kind: change.key.kind.kind().to_owned(),
                namespace: Some(change.key.namespace.to_string()),
                name: change.key.name.clone(),
            };
            let live = match ops.get(&target).await {
                Ok(live) => live.and_then(|l| serde_json::to_value(l).ok()),
                Err(e) => {
                    plan.error = Some(e.to_string());
                    break;
                }
            };
            let wanted = change
                .resource
                .as_ref()
                .map(|r| resources::with_managed_labels(&r.body, &mesh_name));
            let (action, fields) = match (&wanted, &live) {
                (Some(_), None) => ("create", Vec::new()),
                (Some(wanted), Some(live)) => {
                    let fields: Vec<FieldChange> = resources::drift(wanted, live)
                        .into_iter()
                        .map(|c| FieldChange {
                            path: c.path,
                            before: c.after,
                            after: c.before,
                        })
                        .collect();
                    if fields.is_empty() {
                        ("unchanged", fields)
                    } else {
                        ("update", fields)
                    }
                }
                (None, Some(_)) => ("delete", Vec::new()),
                (None, None) => ("unchanged", Vec::new()),
            };
            plan.objects.push(ObjectPlan {
                kind: change.key.kind.kind().to_owned(),
                namespace: change.key.namespace.to_string(),
                name: change.key.name.clone(),
                action: action.to_owned(),
                fields,
            });
        }
        plans.push(plan);
    }
    plans
}

/// Validates a change and either answers the dry run or publishes it. `cluster` is the member
/// whose own objects change (the per-cluster routes); `None` changes the mesh-wide objects.
async fn carry_out(
    caller: &Caller,
    state: &ApiState,
    mesh: MeshRecord,
    cluster: Option<&str>,
    requested: Vec<Requested>,
    dry_run: Option<bool>,
    wait: WaitQuery,
) -> Result<HttpResponse, ApiError> {
    let store = state.store()?;
    let scope = cluster.unwrap_or_default();
    let rows = store.list_resources(&mesh.name, None, None, None).await?;
    for q in &requested {
        if let Some(reason) = scope_conflict(&rows, scope, &q.change.key) {
            return Err(ApiError::Conflict(reason));
        }
    }
    // What the target clusters hold: the mesh-wide objects and the member's own.
    let current: Vec<IstioResource> = rows
        .iter()
        .filter(|r| r.cluster_name.is_empty() || r.cluster_name == scope)
        .filter_map(ResourceRecord::resource)
        .collect();
    let clusters = match cluster {
        Some(cluster) => vec![cluster.to_owned()],
        None => targets(
            &store
                .list_member_clusters(&mesh.name)
                .await?
                .into_iter()
                .map(|m| (m.name, m.role))
                .collect::<Vec<_>>(),
        ),
    };
    let changes: Vec<ProposedChange> = requested.iter().map(|q| q.change.clone()).collect();
    if dry_run.unwrap_or(false) {
        let facts = gather_facts(state, &clusters).await;
        let findings = resources::validate_change(&current, &changes, Some(&facts));
        let plan = DryRun {
            valid: !resources::has_errors(&findings),
            clusters: plan_clusters(state, &mesh, &clusters, &requested).await,
            findings,
        };
        return Ok(HttpResponse::Ok().json(ApiResponse::ok(plan)));
    }
    caller.require_write()?;
    let errors: Vec<String> = resources::validate_change(&current, &changes, None)
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "invalid Istio resources: {}",
            errors.join("; ")
        )));
    }
    let wait = wait.duration(state.max_wait)?;
    let changes = requested
        .into_iter()
        .map(
            |Requested {
                 change,
                 expected_generation,
             }| ResourceChange {
                op: if change.resource.is_some() {
                    ResourceOp::Apply
                } else {
                    ResourceOp::Delete
                },
                kind: change.key.kind.kind().to_owned(),
                namespace: change.key.namespace.to_string(),
                name: change.key.name.clone(),
                body: change.resource.map(|r| r.body),
                expected_generation,
            },
        )
        .collect();
    let cluster = cluster.map(ClusterName::new).transpose()?;
    publish_for(
        state,
        caller,
        &mesh,
        ApplyResources { cluster, changes },
        wait,
    )
    .await
}

/// `POST /meshes/{mesh}/resources`: apply a batch (JSON or multi-document YAML).
#[utoipa::path(
    post,
    path = "/apis/v1/mesh/meshes/{mesh}/resources",
    tag = "resources",
    operation_id = "applyMeshResources",
    params(MeshParam, BatchQuery),
    request_body(content = String, content_type = "application/yaml", description = "One or more Istio resources (VirtualService, DestinationRule, Gateway, ServiceEntry, Sidecar, EnvoyFilter, WorkloadEntry) as multi-document YAML or JSON"),
    responses(
        (status = 200, description = "`?dryRun=true`: findings and per-cluster changes; or, with `?wait=`, the rollout ended", body = ApiResponse<DryRun>),
        (status = 202, description = "`ApplyResources` published", body = ApiResponse<super::commands::CommandAnswer>),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 405, response = crate::openapi::MethodNotAllowed),
        (status = 409, response = crate::openapi::Conflict),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn apply_batch(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<String>,
    query: web::Query<BatchQuery>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    check_content_type(&request)?;
    let body = read_body(payload, state.body_limit).await?;
    let mesh = visible_mesh(&caller, &state, &path).await?;
    let cluster = match &query.cluster {
        Some(cluster) => {
            let (cluster, member_of) = member_mesh(&caller, &state, cluster).await?;
            if member_of.name != mesh.name {
                return Err(ApiError::Unprocessable(format!(
                    "cluster {cluster} is a member of mesh {}, not of mesh {}",
                    member_of.name, mesh.name
                )));
            }
            Some(cluster)
        }
        None => None,
    };
    let namespace = namespace_of(query.namespace.as_deref())?;
    let objects = parse_objects(&body, &namespace)?;
    let requested = if query.delete.unwrap_or(false) {
        let scope = cluster.as_deref().unwrap_or_default();
        let rows = state
            .store()?
            .list_resources(&mesh.name, Some(scope), None, None)
            .await?;
        let missing: Vec<String> = objects
            .iter()
            .filter(|o| !rows.iter().any(|r| r.is(&o.key)))
            .map(|o| o.key.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::NotFound(format!(
                "not in the desired state of mesh {}{}: {}",
                mesh.name,
                cluster
                    .as_deref()
                    .map(|c| format!(" for cluster {c}"))
                    .unwrap_or_default(),
                missing.join(", ")
            )));
        }
        objects
            .into_iter()
            .map(|o| Requested::delete(o.key, None))
            .collect()
    } else {
        objects
            .into_iter()
            .map(|resource| Requested::apply(resource, None))
            .collect()
    };
    let wait = WaitQuery {
        wait: query.wait.clone(),
    };
    carry_out(
        &caller,
        &state,
        mesh,
        cluster.as_deref(),
        requested,
        query.dry_run,
        wait,
    )
    .await
}

/// `GET /meshes/{mesh}/resources`: every desired resource of the mesh.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/meshes/{mesh}/resources",
    tag = "resources",
    operation_id = "listMeshResources",
    params(MeshParam),
    responses(
        (status = 200, description = "The desired resources", body = ApiResponse<Vec<ResourceView>>),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 405, response = crate::openapi::MethodNotAllowed),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn list_all(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mesh = visible_mesh(&caller, &state, &path).await?;
    let rows = state
        .store()?
        .list_resources(&mesh.name, None, None, None)
        .await?;
    let views: Vec<ResourceView> = rows.iter().map(ResourceView::from).collect();
    Ok(HttpResponse::Ok().json(ApiResponse::ok(views)))
}

/// `GET /meshes/{mesh}/namespaces/{namespace}/{kind}`: the desired objects of a kind.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/meshes/{mesh}/namespaces/{namespace}/{kind}",
    tag = "resources",
    operation_id = "listMeshResourcesOfKind",
    params(KindPath),
    responses(
        (status = 200, description = "The desired objects", body = ApiResponse<Vec<ResourceView>>),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 405, response = crate::openapi::MethodNotAllowed),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn list_kind(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<KindPath>,
) -> Result<HttpResponse, ApiError> {
    let kind = kind_of(&path.kind)?;
    let namespace = NamespaceName::new(path.namespace.as_str())?;
    let mesh = visible_mesh(&caller, &state, &path.mesh).await?;
    let rows = state
        .store()?
        .list_resources(
            &mesh.name,
            Some(""),
            Some(kind.kind()),
            Some(namespace.as_str()),
        )
        .await?;
    let views: Vec<ResourceView> = rows.iter().map(ResourceView::from).collect();
    Ok(HttpResponse::Ok().json(ApiResponse::ok(views)))
}

/// `POST /meshes/{mesh}/namespaces/{namespace}/{kind}`: create or replace one object.
#[utoipa::path(
    post,
    path = "/apis/v1/mesh/meshes/{mesh}/namespaces/{namespace}/{kind}",
    tag = "resources",
    operation_id = "applyMeshResource",
    params(KindPath, ApplyQuery),
    request_body(content = Object, content_type = "application/json", description = "The Kubernetes object (JSON, or YAML with a YAML content type)"),
    responses(
        (status = 200, description = "`?dryRun=true`: findings and per-cluster changes; or, with `?wait=`, the rollout ended", body = ApiResponse<DryRun>),
        (status = 202, description = "`ApplyResources` published", body = ApiResponse<super::commands::CommandAnswer>),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 405, response = crate::openapi::MethodNotAllowed),
        (status = 409, response = crate::openapi::Conflict),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn apply_one(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<KindPath>,
    query: web::Query<ApplyQuery>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    check_content_type(&request)?;
    let body = read_body(payload, state.body_limit).await?;
    let kind = kind_of(&path.kind)?;
    let namespace = NamespaceName::new(path.namespace.as_str())?;
    let mesh = visible_mesh(&caller, &state, &path.mesh).await?;
    let batch = format!("/meshes/{}/resources", mesh.name);
    let resource = one_object(&body, kind, &namespace, &batch)?;
    let requested = vec![Requested::apply(resource, query.expected_generation)];
    carry_out(
        &caller,
        &state,
        mesh,
        None,
        requested,
        query.dry_run,
        query.wait(),
    )
    .await
}

/// The desired row of one object of `mesh` in `scope` (`""` mesh-wide, else a member's name).
async fn desired_row(
    state: &ApiState,
    mesh: &MeshRecord,
    scope: &str,
    kind: IstioKind,
    namespace: &NamespaceName,
    name: &str,
) -> Result<Option<ResourceRecord>, ApiError> {
    let target = ResourceRef {
        cluster_name: scope.to_owned(),
        kind: kind.kind().to_owned(),
        namespace: namespace.to_string(),
        name: name.to_owned(),
    };
    Ok(state.store()?.get_resource(&mesh.name, &target).await?)
}

/// The mesh-wide desired row the path names; 404 when there is none.
async fn mesh_wide_row(
    state: &ApiState,
    mesh: &MeshRecord,
    path: &ObjectPath,
) -> Result<(IstioKind, ResourceRecord), ApiError> {
    let kind = kind_of(&path.kind)?;
    let namespace = NamespaceName::new(path.namespace.as_str())?;
    let row = desired_row(state, mesh, "", kind, &namespace, &path.name)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "{kind} {namespace}/{} not found in mesh {}",
                path.name.chars().take(253).collect::<String>(),
                mesh.name
            ))
        })?;
    Ok((kind, row))
}

/// `GET /meshes/{mesh}/namespaces/{namespace}/{kind}/{name}`: one desired object.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/meshes/{mesh}/namespaces/{namespace}/{kind}/{name}",
    tag = "resources",
    operation_id = "getMeshResource",
    params(ObjectPath),
    responses(
        (status = 200, description = "The desired object", body = ApiResponse<ResourceView>),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 405, response = crate::openapi::MethodNotAllowed),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn get_one(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<ObjectPath>,
) -> Result<HttpResponse, ApiError> {
    let mesh = visible_mesh(&caller, &state, &path.mesh).await?;
    let (_, row) = mesh_wide_row(&state, &mesh, &path).await?;
    Ok(HttpResponse::Ok().json(ApiResponse::ok(ResourceView::from(&row))))
}

/// `DELETE /meshes/{mesh}/namespaces/{namespace}/{kind}/{name}`: delete it from every cluster.
#[utoipa::path(
    delete,
    path = "/apis/v1/mesh/meshes/{mesh}/namespaces/{namespace}/{kind}/{name}",
    tag = "resources",
    operation_id = "deleteMeshResource",
    params(ObjectPath, ApplyQuery),
    responses(
        (status = 200, description = "`?dryRun=true`: what would change; or, with `?wait=`, the rollout ended", body = ApiResponse<DryRun>),
        (status = 202, description = "`ApplyResources` published", body = ApiResponse<super::commands::CommandAnswer>),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 405, response = crate::openapi::MethodNotAllowed),
        (status = 409, response = crate::openapi::Conflict),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn delete_one(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<ObjectPath>,
    query: web::Query<ApplyQuery>,
) -> Result<HttpResponse, ApiError> {
    let mesh = visible_mesh(&caller, &state, &path.mesh).await?;
    let (kind, row) = mesh_wide_row(&state, &mesh, &path).await?;
    let key = ResourceKey {
        kind,
        namespace: NamespaceName::new(row.namespace.clone())?,
        name: row.name.clone(),
    };
    let requested = vec![Requested::delete(key, query.expected_generation)];
    carry_out(
        &caller,
        &state,
        mesh,
        None,
        requested,
        query.dry_run,
        query.wait(),
    )
    .await
}

/// `GET /clusters/{cluster}/namespaces/{namespace}/{kind}`: the objects of a kind as the cluster
/// holds them now (managed by mesh-manager or not).
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/clusters/{cluster}/namespaces/{namespace}/{kind}",
    tag = "resources",
    operation_id = "listClusterResources",
    params(ClusterKindPath),
    responses(
        (status = 200, description = "The live objects", body = ApiResponse<Vec<Object>>),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 405, response = crate::openapi::MethodNotAllowed),
        (status = 502, response = crate::openapi::BadGateway),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn list_cluster_kind(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<ClusterKindPath>,
) -> Result<HttpResponse, ApiError> {
    let kind = kind_of(&path.kind)?;
    let namespace = NamespaceName::new(path.namespace.as_str())?;
    let record = super::clusters::visible(&caller, &state, &path.cluster).await?;
    let api = live_api(&state, &record.name, kind, &namespace).await?;
    let list = api.list(&Default::default()).await.map_err(|e| {
        ApiError::ClusterUnavailable(format!("cluster {} did not answer: {e}", record.name))
    })?;
    let mut objects: BTreeMap<String, Value> = BTreeMap::new();
    for item in list.items {
        let name = item.metadata.name.clone().unwrap_or_default();
        objects.insert(name, live_value(&item, kind));
    }
    let objects: Vec<Value> = objects.into_values().collect();
    Ok(HttpResponse::Ok().json(ApiResponse::ok(objects)))
}

/// A client for one Istio kind in one namespace of a registered cluster.
async fn live_api(
    state: &ApiState,
    cluster: &str,
    kind: IstioKind,
    namespace: &NamespaceName,
) -> Result<kube::Api<kube::api::DynamicObject>, ApiError> {
    let client = super::clusters::cluster_client(state, cluster).await?;
    let resource = kube::discovery::ApiResource {
        group: kind.group().to_owned(),
        version: kind.version().to_owned(),
        api_version: kind.api_version(),
        kind: kind.kind().to_owned(),
        plural: kind.plural().to_owned(),
    };
    Ok(kube::Api::namespaced_with(
        client,
        namespace.as_str(),
        &resource,
    ))
}

/// A live object as JSON, with its `apiVersion` and `kind`.
fn live_value(item: &kube::api::DynamicObject, kind: IstioKind) -> Value {
    let mut value = serde_json::to_value(item).unwrap_or(Value::Null);
    value["apiVersion"] = Value::from(kind.api_version());
    value["kind"] = Value::from(kind.kind());
    value
}

/// The mesh a cluster belongs to, for changes to that cluster's own objects: the cluster must be
/// visible to the caller, a member of a mesh the caller sees, and not a remote.
async fn member_mesh(
    caller: &Caller,
    state: &ApiState,
    cluster: &str,
) -> Result<(String, MeshRecord), ApiError> {
    let record = super::clusters::visible(caller, state, cluster).await?;
    let member = state
        .store()?
        .get_member_cluster(&record.name)
        .await?
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "cluster {} is in no mesh: add it to a mesh before giving it Istio resources of its own",
                record.name
            ))
        })?;
    let mesh = visible_mesh(caller, state, &member.mesh_name).await?;
    if member.role == ClusterRole::Remote.as_str() {
        return Err(ApiError::Unprocessable(format!(
            "cluster {} is a remote of mesh {}: its workloads take Istio configuration from its primary; \
             give the object to the primary or apply it mesh-wide (/meshes/{}/namespaces/…)",
            record.name, mesh.name, mesh.name
        )));
    }
    Ok((record.name, mesh))
}

/// `POST /clusters/{cluster}/namespaces/{namespace}/{kind}`: create or replace an object of this
/// member cluster only (it must not also be a mesh-wide object of its mesh).
#[utoipa::path(
    post,
    path = "/apis/v1/mesh/clusters/{cluster}/namespaces/{namespace}/{kind}",
    tag = "resources",
    operation_id = "applyClusterResource",
    params(ClusterKindPath, ApplyQuery),
    request_body(content = Object, content_type = "application/json", description = "The Kubernetes object (JSON, or YAML with a YAML content type)"),
    responses(
        (status = 200, description = "`?dryRun=true`: findings and the cluster's changes; or, with `?wait=`, the rollout ended", body = ApiResponse<DryRun>),
        (status = 202, description = "`ApplyResources` published for the cluster", body = ApiResponse<super::commands::CommandAnswer>),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 405, response = crate::openapi::MethodNotAllowed),
        (status = 409, response = crate::openapi::Conflict),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn apply_cluster_one(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<ClusterKindPath>,
    query: web::Query<ApplyQuery>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    check_content_type(&request)?;
    let body = read_body(payload, state.body_limit).await?;
    let kind = kind_of(&path.kind)?;
    let namespace = NamespaceName::new(path.namespace.as_str())?;
    let (cluster, mesh) = member_mesh(&caller, &state, &path.cluster).await?;
    let batch = format!("/meshes/{}/resources?cluster={cluster}", mesh.name);
    let resource = one_object(&body, kind, &namespace, &batch)?;
    let requested = vec![Requested::apply(resource, query.expected_generation)];
    carry_out(
        &caller,
        &state,
        mesh,
        Some(&cluster),
        requested,
        query.dry_run,
        query.wait(),
    )
    .await
}

/// `GET /clusters/{cluster}/namespaces/{namespace}/{kind}/{name}`: one object as the cluster
/// holds it now.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/clusters/{cluster}/namespaces/{namespace}/{kind}/{name}",
    tag = "resources",
    operation_id = "getClusterResource",
    params(ClusterObjectPath),
    responses(
        (status = 200, description = "The live object", body = ApiResponse<Object>),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 405, response = crate::openapi::MethodNotAllowed),
        (status = 502, response = crate::openapi::BadGateway),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn get_cluster_one(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<ClusterObjectPath>,
) -> Result<HttpResponse, ApiError> {
    let kind = kind_of(&path.kind)?;
    let namespace = NamespaceName::new(path.namespace.as_str())?;
    resources::parse::check_dns_subdomain(&path.name)
        .map_err(|e| ApiError::BadRequest(format!("invalid object name: {e}")))?;
    let record = super::clusters::visible(&caller, &state, &path.cluster).await?;
    let api = live_api(&state, &record.name, kind, &namespace).await?;
    let item = api.get_opt(&path.name).await.map_err(|e| {
        ApiError::ClusterUnavailable(format!("cluster {} did not answer: {e}", record.name))
    })?;
    let item = item.ok_or_else(|| {
        ApiError::NotFound(format!(
            "{kind} {namespace}/{} not found in cluster {}",
            path.name, record.name
        ))
    })?;
    Ok(HttpResponse::Ok().json(ApiResponse::ok(live_value(&item, kind))))
}

/// `DELETE /clusters/{cluster}/namespaces/{namespace}/{kind}/{name}`: delete an object of this
/// member cluster (one created through the per-cluster routes).
#[utoipa::path(
    delete,
    path = "/apis/v1/mesh/clusters/{cluster}/namespaces/{namespace}/{kind}/{name}",
    tag = "resources",
    operation_id = "deleteClusterResource",
    params(ClusterObjectPath, ApplyQuery),
    responses(
        (status = 200, description = "`?dryRun=true`: what would change; or, with `?wait=`, the rollout ended", body = ApiResponse<DryRun>),
        (status = 202, description = "`ApplyResources` published for the cluster", body = ApiResponse<super::commands::CommandAnswer>),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 405, response = crate::openapi::MethodNotAllowed),
        (status = 409, response = crate::openapi::Conflict),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn delete_cluster_one(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<ClusterObjectPath>,
    query: web::Query<ApplyQuery>,
) -> Result<HttpResponse, ApiError> {
    let kind = kind_of(&path.kind)?;
    let namespace = NamespaceName::new(path.namespace.as_str())?;
    let (cluster, mesh) = member_mesh(&caller, &state, &path.cluster).await?;
    let key = ResourceKey {
        kind,
        namespace: namespace.clone(),
        name: path.name.chars().take(253).collect(),
    };
    if desired_row(&state, &mesh, &cluster, kind, &namespace, &key.name)
        .await?
        .is_none()
    {
        let rows = state
            .store()?
            .list_resources(
                &mesh.name,
                None,
                Some(kind.kind()),
                Some(namespace.as_str()),
            )
            .await?;
        return Err(match scope_conflict(&rows, &cluster, &key) {
            Some(reason) => ApiError::Conflict(reason),
            None => ApiError::NotFound(format!(
                "{key} is not an object of cluster {cluster} in mesh {}",
                mesh.name
            )),
        });
    }
    let requested = vec![Requested::delete(key, query.expected_generation)];
    carry_out(
        &caller,
        &state,
        mesh,
        Some(&cluster),
        requested,
        query.dry_run,
        query.wait(),
    )
    .await
}
