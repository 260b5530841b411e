//! Flows of a mesh and their tasks, read from the store.
//!
//! A flow belongs to a mesh by name and tenant; a mesh name may be reused after a delete, so
//! flows of an earlier mesh of the same name in another tenant are never shown.

use actix_web::{HttpResponse, web};
use chrono::NaiveDateTime;
use mesh_schema::models::{FlowRecord, TaskRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::meshes::visible_mesh;
use crate::auth::Caller;
use crate::envelope::{ApiError, ApiResponse};
use crate::openapi::{BadRequest, MethodNotAllowed, NotFound, Unauthorized, Unavailable};
use crate::state::ApiState;

/// Most flows one listing returns.
const MAX_FLOWS: i64 = 500;

/// `?limit=` of the flow listing.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many of the newest flows to return (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// A flow as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FlowView {
    /// The flow id.
    pub id: i64,
    /// The mesh.
    pub mesh_name: String,
    /// Instance name.
    pub name: String,
    /// Definition (`install`, `upgrade`, ...).
    pub def_name: String,
    /// Status.
    pub status: String,
    /// The input (the command that started it), parsed.
    #[schema(value_type = Object)]
    pub input: Value,
    /// Log lines.
    pub log: Option<String>,
    /// When it started.
    pub started_at: Option<NaiveDateTime>,
    /// When it ended.
    pub finished_at: Option<NaiveDateTime>,
    /// When it was recorded.
    pub created_at: Option<NaiveDateTime>,
    /// When it was last written.
    pub updated_at: Option<NaiveDateTime>,
    /// Its tasks (only when one flow is read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskView>>,
}

impl From<FlowRecord> for FlowView {
    fn from(flow: FlowRecord) -> Self {
        Self {
            input: serde_json::from_str(&flow.input).unwrap_or(Value::String(flow.input)),
            id: flow.id,
            mesh_name: flow.mesh_name,
            name: flow.name,
            def_name: flow.def_name,
            status: flow.status,
            log: flow.log,
            started_at: flow.started_at,
            finished_at: flow.finished_at,
            created_at: flow.created_at,
            updated_at: flow.updated_at,
            tasks: None,
        }
    }
}

/// A task as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    /// Task id.
    pub id: i64,
    /// Task name.
    pub name: String,
    /// Status.
    pub status: String,
    /// Output, parsed when JSON.
    #[schema(value_type = Option<Object>)]
    pub output: Value,
    /// Error, when failed.
    pub error: Option<String>,
    /// Step summary.
    pub steps: String,
    /// Log lines.
    pub log: Option<String>,
    /// When it started.
    pub started_at: Option<NaiveDateTime>,
    /// When it ended.
    pub finished_at: Option<NaiveDateTime>,
}

impl From<TaskRecord> for TaskView {
    fn from(task: TaskRecord) -> Self {
        Self {
            output: task.output.map_or(Value::Null, |o| {
                serde_json::from_str(&o).unwrap_or(Value::String(o))
            }),
            id: task.id,
            name: task.name,
            status: task.status,
            error: task.error,
            steps: task.steps,
            log: task.log,
            started_at: task.started_at,
            finished_at: task.finished_at,
        }
    }
}

/// The `{mesh}` and `{flow}` path parameters (documentation only).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct FlowParams {
    /// The mesh's name (DNS-1123 label).
    #[param(
        pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length = 63,
        example = "prod"
    )]
    mesh: String,
    /// The flow's id.
    #[param(example = 1)]
    flow: i64,
}

/// `GET /meshes/{mesh}/flows`: the newest flows first.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/meshes/{mesh}/flows",
    tag = "flows",
    operation_id = "listFlows",
    params(super::meshes::MeshParam, ListQuery),
    responses(
        (status = 200, description = "The mesh's newest flows first, without tasks", body = ApiResponse<Vec<FlowView>>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 405, response = MethodNotAllowed),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn list(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_FLOWS).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be from 1 to {MAX_FLOWS}, got {limit}"
        )));
    }
    let mesh = visible_mesh(&caller, &state, &path).await?;
    let flows = state.store()?.list_flows(&mesh.name, limit).await?;
    let views: Vec<FlowView> = flows
        .into_iter()
        .filter(|f| f.tenant_id == mesh.tenant_id)
        .map(FlowView::from)
        .collect();
    Ok(HttpResponse::Ok().json(ApiResponse::ok(views)))
}

/// `GET /meshes/{mesh}/flows/{flow}`: one flow with its tasks.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/meshes/{mesh}/flows/{flow}",
    tag = "flows",
    operation_id = "getFlow",
    params(FlowParams),
    responses(
        (status = 200, description = "The flow with its tasks", body = ApiResponse<FlowView>),
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
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (mesh_name, flow_id) = path.into_inner();
    let id: i64 = flow_id.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "invalid flow id {:?}: expected a number",
            flow_id.chars().take(32).collect::<String>()
        ))
    })?;
    let mesh = visible_mesh(&caller, &state, &mesh_name).await?;
    let store = state.store()?;
    let flow = store
        .get_flow(id)
        .await?
        .filter(|f| f.mesh_name == mesh.name && f.tenant_id == mesh.tenant_id)
        .ok_or_else(|| ApiError::NotFound(format!("flow {id} of mesh {} not found", mesh.name)))?;
    let tasks = store.list_tasks(flow.id).await?;
    let mut view = FlowView::from(flow);
    view.tasks = Some(tasks.into_iter().map(TaskView::from).collect());
    Ok(HttpResponse::Ok().json(ApiResponse::ok(view)))
}
