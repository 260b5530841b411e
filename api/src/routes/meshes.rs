//! Meshes: create, list, get, delete, set trace sampling.
//!
//! Writes are commands: the handler validates what it can (names, topology, version, config,
//! registered clusters, a free name), publishes the command on the bus and answers 202 — the
//! worker owning the mesh records it and runs the flow (see [`super::commands`]). Reads come from
//! the store, scoped to the caller's tenant, so another tenant's mesh answers 404.

use actix_web::{HttpResponse, web};
use chrono::NaiveDateTime;
use mesh_bus::CommandEnvelope;
use mesh_bus::command::{ClusterSpec, CreateMesh, DeleteMesh, SamplingPercent, SetTraceSampling};
use mesh_core::{ClusterName, ClusterRole, MemberSpec, MeshConfig, MeshMode, MeshName, MeshSpec};
use mesh_schema::TenantScope;
use mesh_schema::models::{LbResourceRecord, MemberClusterRecord, MeshRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::commands::{WaitQuery, publish, publish_for};
use crate::auth::Caller;
use crate::envelope::{ApiError, ApiResponse};
use crate::openapi::{
    BadRequest, ClusterRoleDoc, Conflict, Forbidden, ListingTypeDoc, MeshConfigDoc, MeshModeDoc,
    MethodNotAllowed, NotFound, OutboundTrafficPolicyDoc, PayloadTooLarge, Unauthorized,
    Unavailable, UnsupportedMediaType,
};
use crate::state::ApiState;

/// A member cluster in a create body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    /// A registered cluster's name.
    #[schema(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 63)]
    pub name: String,
    /// `master` (or `primary`) or `remote`.
    #[schema(value_type = ClusterRoleDoc)]
    pub role: String,
    /// The cluster's network (DNS-1123 label); defaults to its own name.
    #[serde(default)]
    pub network: String,
}

/// Body of `POST /meshes`: the seed's fields, with the mesh configuration either under
/// `config` or inline (`traceSampling`, `outboundTrafficPolicy`, `autoInjectionNamespaces`,
/// `replicas`), not both for the same setting.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({
    "name": "demo",
    "title": "Demo",
    "region": "eu-west",
    "version": "1.30.3",
    "mode": "multi-primary",
    "clusters": [
        {"name": "c1", "role": "master", "network": "net1"},
        {"name": "c2", "role": "master", "network": "net2"}
    ],
    "config": {"traceSampling": 5.0}
}))]
pub struct CreateBody {
    /// Mesh name (DNS-1123 label).
    #[schema(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 63)]
    pub name: String,
    /// Human title; defaults to the name.
    #[serde(default)]
    pub title: String,
    /// Region label.
    pub region: String,
    /// Istio version to install.
    pub version: String,
    /// `single`, `primary-remote` or `multi-primary`.
    #[schema(value_type = MeshModeDoc)]
    pub mode: String,
    /// Member clusters.
    pub clusters: Vec<MemberBody>,
    /// Mesh configuration as an object.
    #[serde(default)]
    #[schema(value_type = Option<MeshConfigDoc>)]
    pub config: Option<serde_json::Map<String, Value>>,
    /// Inline `config.traceSampling`.
    #[serde(default)]
    #[schema(value_type = Option<f64>, minimum = 0, maximum = 100)]
    pub trace_sampling: Option<Value>,
    /// Inline `config.outboundTrafficPolicy`.
    #[serde(default)]
    #[schema(value_type = Option<OutboundTrafficPolicyDoc>)]
    pub outbound_traffic_policy: Option<Value>,
    /// Inline `config.autoInjectionNamespaces`.
    #[serde(default)]
    #[schema(value_type = Option<std::collections::BTreeMap<String, Vec<String>>>)]
    pub auto_injection_namespaces: Option<Value>,
    /// Inline `config.replicas`.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::ReplicasDoc>)]
    pub replicas: Option<Value>,
}

/// Collects problems as `path: message`.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, path: impl std::fmt::Display, message: impl std::fmt::Display) {
        self.0.push(format!("{path}: {message}"));
    }

    fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::BadRequest(format!(
                "invalid mesh: {}",
                self.0.join("; ")
            )))
        }
    }
}

fn parse_role(text: &str) -> Option<ClusterRole> {
    match text {
        "master" | "primary" => Some(ClusterRole::Master),
        "remote" => Some(ClusterRole::Remote),
        _ => None,
    }
}

/// Rewrites `clusters[i]…` of the parsed members to the index of the entry in the body.
fn body_path(path: &str, body_index: &[usize]) -> String {
    let rewritten = path
        .strip_prefix("clusters[")
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(index, rest)| {
            let index: usize = index.parse().ok()?;
            Some(format!("clusters[{}]{rest}", body_index.get(index)?))
        });
    rewritten.unwrap_or_else(|| path.to_owned())
}

fn mode_suggested_by(members: &[MemberSpec]) -> MeshMode {
    match (members.len(), members.iter().all(MemberSpec::is_primary)) {
        (0 | 1, _) => MeshMode::Single,
        (_, true) => MeshMode::MultiPrimary,
        (_, false) => MeshMode::PrimaryRemote,
    }
}

/// Builds the mesh configuration from `config` and the inline settings.
fn build_config(body: &mut CreateBody, problems: &mut Problems) -> MeshConfig {
    let mut object = body.config.take().unwrap_or_default();
    let inline = [
        ("traceSampling", body.trace_sampling.take()),
        ("outboundTrafficPolicy", body.outbound_traffic_policy.take()),
        (
            "autoInjectionNamespaces",
            body.auto_injection_namespaces.take(),
        ),
        ("replicas", body.replicas.take()),
    ];
    for (key, value) in inline {
        if let Some(value) = value {
            if object.contains_key(key) {
                problems.add(key, format!("is given both inline and as config.{key}"));
            } else {
                object.insert(key.to_owned(), value);
            }
        }
    }
    match serde_json::from_value::<MeshConfig>(Value::Object(object)) {
        Ok(config) => config,
        Err(e) => {
            problems.add("config", e);
            MeshConfig::default()
        }
    }
}

/// `POST /meshes`: validates the mesh and publishes `CreateMesh`; 202 with the command id.
#[utoipa::path(
    post,
    path = "/apis/v1/mesh/meshes",
    tag = "meshes",
    operation_id = "createMesh",
    params(WaitQuery),
    request_body = CreateBody,
    responses(
        (status = 200, description = "With `?wait=`: the flow ended in time; `status` is its outcome", body = ApiResponse<super::commands::CommandAnswer>),
        (status = 202, description = "`CreateMesh` published (or still running when the wait ended)", body = ApiResponse<super::commands::CommandAnswer>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 405, response = MethodNotAllowed),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn create(
    caller: Caller,
    state: web::Data<ApiState>,
    query: web::Query<WaitQuery>,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_write()?;
    let wait = query.duration(state.max_wait)?;
    let store = state.store()?;
    let mut body = body.into_inner();
    let mut problems = Problems::default();

    let name = MeshName::new(body.name.as_str())
        .map_err(|e| problems.add("name", e))
        .ok();
    let mode = body
        .mode
        .parse::<MeshMode>()
        .map_err(|e| problems.add("mode", e))
        .ok();
    if body.region.trim().is_empty() {
        problems.add("region", "must not be empty");
    }
    if body.title.trim().is_empty() {
        body.title = body.name.clone();
    }
    // Members that parsed, and where each stands in the body, so paths name the body's entries.
    let mut members = Vec::new();
    let mut body_index = Vec::new();
    for (i, member) in body.clusters.iter().enumerate() {
        let cluster = ClusterName::new(member.name.as_str())
            .map_err(|e| problems.add(format_args!("clusters[{i}].name"), e))
            .ok();
        let role = parse_role(&member.role);
        if role.is_none() {
            problems.add(
                format_args!("clusters[{i}].role"),
                format!(
                    "unknown role {:?}: expected master or remote",
                    member.role.chars().take(32).collect::<String>()
                ),
            );
        }
        if let (Some(cluster), Some(role)) = (cluster, role) {
            members.push(MemberSpec::new(cluster, role).with_network(member.network.clone()));
            body_index.push(i);
        }
    }
    if body.clusters.is_empty() {
        problems.add("clusters", "a mesh needs at least one cluster");
    }
    let config = build_config(&mut body, &mut problems);

    // With a bad name or mode, validate the rest anyway (under a stand-in name and the mode the
    // members suggest) so one answer lists every problem.
    let mode = mode.unwrap_or_else(|| mode_suggested_by(&members));
    let spec = MeshSpec {
        tenant: caller.tenant.clone(),
        name: name.unwrap_or_else(|| MeshName::new("invalid").expect("invariant: valid name")),
        title: body.title,
        region: body.region,
        mode,
        version: body.version,
        clusters: members,
        config,
    };
    if let Err(errors) = spec.validate(&state.catalog) {
        for error in errors {
            problems.add(body_path(&error.path, &body_index), &error.message);
        }
    }
    // Only clusters registered in the mesh's tenant may join it.
    let registered = store
        .list_registered_clusters(&TenantScope::Tenant(spec.tenant.clone()))
        .await?;
    for (i, member) in spec.clusters.iter().enumerate() {
        if !registered.iter().any(|c| c.name == member.name.as_str()) {
            problems.add(
                body_path(&format!("clusters[{i}].name"), &body_index),
                format!("cluster {} is not registered", member.name),
            );
        }
    }
    problems.into_result()?;
    if store
        .get_mesh(&TenantScope::All, spec.name.as_str())
        .await?
        .is_some()
    {
        return Err(ApiError::Conflict(format!(
            "mesh {} already exists",
            spec.name
        )));
    }

    let version = state
        .catalog
        .resolve(&spec.version)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
        .to_string();
    let command = CreateMesh {
        title: spec.title.clone(),
        region: spec.region.clone(),
        version,
        mode: spec.mode,
        clusters: spec
            .clusters
            .iter()
            .map(|m| ClusterSpec {
                name: m.name.clone(),
                role: m.role,
                network: m.network_name().to_owned(),
            })
            .collect(),
        config: serde_json::to_value(&spec.config)
            .map_err(|e| ApiError::Internal(format!("cannot encode mesh config: {e}")))?,
    };
    let envelope = CommandEnvelope::command(
        spec.tenant.clone(),
        spec.name.clone(),
        &caller.principal,
        command,
    )?;
    publish(&state, envelope, wait).await
}

/// `?type=simple` selects the cheap listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `simple` for names and statuses only ([`MeshSummary`]); `full` or nothing for
    /// [`MeshView`]s.
    #[serde(rename = "type")]
    #[param(value_type = Option<ListingTypeDoc>)]
    pub kind: Option<String>,
}

/// The `{mesh}` path parameter (documentation only; handlers take `web::Path<String>`).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct MeshParam {
    /// The mesh's name (DNS-1123 label).
    #[param(
        pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length = 63,
        example = "prod"
    )]
    mesh: String,
}

/// A mesh in the cheap listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeshSummary {
    /// Mesh name.
    pub name: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Human title.
    pub title: String,
    /// Region label.
    pub region: String,
    /// Mode.
    pub mode: String,
    /// Overall status.
    pub status: String,
    /// Installed version.
    pub version: String,
}

impl From<&MeshRecord> for MeshSummary {
    fn from(mesh: &MeshRecord) -> Self {
        Self {
            name: mesh.name.clone(),
            tenant_id: mesh.tenant_id.clone(),
            title: mesh.title.clone(),
            region: mesh.region.clone(),
            mode: mesh.mode.clone(),
            status: mesh.status.clone(),
            version: mesh.version.clone(),
        }
    }
}

/// A member cluster and where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    /// Cluster name.
    pub name: String,
    /// Region label.
    pub region: String,
    /// `master` or `remote`.
    pub role: String,
    /// Its network (empty: a network named after the cluster).
    pub network: String,
    /// `Installing`, `Linking`, `Running`, ...
    pub phase: String,
    /// Last error, empty when none.
    pub error: String,
    /// When linking finished.
    pub linked_at: Option<NaiveDateTime>,
}

impl From<MemberClusterRecord> for MemberView {
    fn from(member: MemberClusterRecord) -> Self {
        Self {
            name: member.name,
            region: member.region,
            role: member.role,
            network: member.network,
            phase: member.phase,
            error: member.error,
            linked_at: member.linked_at,
        }
    }
}

/// A load-balancer resource of a mesh.
#[derive(Debug, Serialize, ToSchema)]
pub struct LbView {
    /// Resource name.
    pub name: String,
    /// Address or state.
    pub status: String,
}

impl From<LbResourceRecord> for LbView {
    fn from(lb: LbResourceRecord) -> Self {
        Self {
            name: lb.name,
            status: lb.status,
        }
    }
}

/// A mesh with everything known about it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeshView {
    /// Mesh name.
    pub name: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Human title.
    pub title: String,
    /// Region label.
    pub region: String,
    /// Mode.
    pub mode: String,
    /// Overall status (`Running` when healthy).
    pub status: String,
    /// Installed version.
    pub version: String,
    /// Version before the last upgrade.
    pub last_version: String,
    /// Mesh configuration (`traceSampling`, ...).
    #[schema(value_type = Option<MeshConfigDoc>)]
    pub config: Value,
    /// Observed state.
    #[schema(value_type = Option<Object>)]
    pub state: Value,
    /// Task summary of the running operation.
    #[schema(value_type = Option<Object>)]
    pub tasks: Value,
    /// Member clusters and their phases.
    pub clusters: Vec<MemberView>,
    /// Load-balancer resources.
    pub lb_resources: Vec<LbView>,
    /// Generation of the desired state (also the envelope's `rev`).
    pub generation: i64,
    /// When it was created.
    pub created_at: Option<NaiveDateTime>,
    /// When it was last written.
    pub updated_at: Option<NaiveDateTime>,
}

/// Parses a JSON column; text that is not JSON is shown as a string, absent as `null`.
fn json_column(text: Option<&str>) -> Value {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Value::Null,
        Some(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())),
    }
}

async fn mesh_view(state: &ApiState, mesh: MeshRecord) -> Result<MeshView, ApiError> {
    let store = state.store()?;
    let clusters = store.list_member_clusters(&mesh.name).await?;
    let lbs = store.list_lb_resources(&mesh.name).await?;
    Ok(MeshView {
        config: json_column(mesh.config.as_deref()),
        state: json_column(mesh.state.as_deref()),
        tasks: json_column(mesh.tasks.as_deref()),
        clusters: clusters.into_iter().map(MemberView::from).collect(),
        lb_resources: lbs.into_iter().map(LbView::from).collect(),
        name: mesh.name,
        tenant_id: mesh.tenant_id,
        title: mesh.title,
        region: mesh.region,
        mode: mesh.mode,
        status: mesh.status,
        version: mesh.version,
        last_version: mesh.last_version,
        generation: mesh.generation,
        created_at: mesh.created_at,
        updated_at: mesh.updated_at,
    })
}

/// `GET /meshes`: the meshes the caller may see; `?type=simple` for the cheap form.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/meshes",
    tag = "meshes",
    operation_id = "listMeshes",
    params(ListQuery),
    responses(
        (status = 200, description = "The meshes the caller may see: `MeshView`s, or `MeshSummary`s with `?type=simple`", body = ApiResponse<Vec<MeshView>>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 405, response = MethodNotAllowed),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn list(
    caller: Caller,
    state: web::Data<ApiState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let simple = match query.kind.as_deref() {
        None | Some("" | "full") => false,
        Some("simple") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "unknown listing type {:?}: use simple or leave it out",
                other.chars().take(32).collect::<String>()
            )));
        }
    };
    let meshes = state.store()?.list_meshes(&caller.scope()).await?;
    if simple {
        let summaries: Vec<MeshSummary> = meshes.iter().map(MeshSummary::from).collect();
        return Ok(HttpResponse::Ok().json(ApiResponse::ok(summaries)));
    }
    let mut views = Vec::with_capacity(meshes.len());
    for mesh in meshes {
        views.push(mesh_view(&state, mesh).await?);
    }
    Ok(HttpResponse::Ok().json(ApiResponse::ok(views)))
}

/// A mesh the caller may see, or 404.
pub(crate) async fn visible_mesh(
    caller: &Caller,
    state: &ApiState,
    name: &str,
) -> Result<MeshRecord, ApiError> {
    let name = MeshName::new(name)?;
    state
        .store()?
        .get_mesh(&caller.scope(), name.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("mesh {name} not found")))
}

/// `GET /meshes/{mesh}`: the mesh with status, config, member phases and load balancers;
/// `rev` is its generation.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/meshes/{mesh}",
    tag = "meshes",
    operation_id = "getMesh",
    params(MeshParam),
    responses(
        (status = 200, description = "The mesh; `rev` is its generation", body = ApiResponse<MeshView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 405, response = MethodNotAllowed),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn get(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mesh = visible_mesh(&caller, &state, &path).await?;
    let view = mesh_view(&state, mesh).await?;
    let rev = view.generation;
    Ok(HttpResponse::Ok().json(ApiResponse::ok(view).with_rev(rev)))
}

/// `DELETE /meshes/{mesh}`: publishes `DeleteMesh`; 202.
#[utoipa::path(
    delete,
    path = "/apis/v1/mesh/meshes/{mesh}",
    tag = "meshes",
    operation_id = "deleteMesh",
    params(MeshParam, WaitQuery),
    responses(
        (status = 200, description = "With `?wait=`: the flow ended in time; `status` is its outcome", body = ApiResponse<super::commands::CommandAnswer>),
        (status = 202, description = "`DeleteMesh` published (or still running when the wait ended)", body = ApiResponse<super::commands::CommandAnswer>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 405, response = MethodNotAllowed),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn delete(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<String>,
    query: web::Query<WaitQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_write()?;
    let wait = query.duration(state.max_wait)?;
    let mesh = visible_mesh(&caller, &state, &path).await?;
    publish_for(&state, &caller, &mesh, DeleteMesh {}, wait).await
}

/// Body of `POST /meshes/{mesh}/sampling`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SamplingBody {
    /// Percentage of requests traced, 0 to 100.
    #[schema(minimum = 0, maximum = 100, example = 5.0)]
    pub trace_sampling: f64,
}

/// `POST /meshes/{mesh}/sampling`: publishes `SetTraceSampling`; 202.
#[utoipa::path(
    post,
    path = "/apis/v1/mesh/meshes/{mesh}/sampling",
    tag = "meshes",
    operation_id = "setMeshTraceSampling",
    params(MeshParam, WaitQuery),
    request_body = SamplingBody,
    responses(
        (status = 200, description = "With `?wait=`: the flow ended in time; `status` is its outcome", body = ApiResponse<super::commands::CommandAnswer>),
        (status = 202, description = "`SetTraceSampling` published (or still running when the wait ended)", body = ApiResponse<super::commands::CommandAnswer>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 405, response = MethodNotAllowed),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn set_sampling(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<String>,
    query: web::Query<WaitQuery>,
    body: web::Json<SamplingBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_write()?;
    let wait = query.duration(state.max_wait)?;
    let percent = SamplingPercent::new(body.trace_sampling).map_err(|_| {
        ApiError::BadRequest(format!(
            "traceSampling must be a percentage from 0 to 100, got {}",
            body.trace_sampling
        ))
    })?;
    let mesh = visible_mesh(&caller, &state, &path).await?;
    publish_for(&state, &caller, &mesh, SetTraceSampling { percent }, wait).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_parsed_members_name_the_entries_of_the_body() {
        let body_index = [0, 2];
        assert_eq!(
            body_path("clusters[1].network", &body_index),
            "clusters[2].network"
        );
        assert_eq!(
            body_path("clusters[0].name", &body_index),
            "clusters[0].name"
        );
        assert_eq!(body_path("clusters", &body_index), "clusters");
        assert_eq!(
            body_path("clusters[9].name", &body_index),
            "clusters[9].name"
        );
        assert_eq!(
            body_path("config.traceSampling", &body_index),
            "config.traceSampling"
        );
    }
}
