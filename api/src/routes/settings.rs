//! Mesh settings with routes of their own (seed `/meshes/{mesh}/autoinjectionnamespaces` and
//! `/meshes/{mesh}/outbound-traffic`).
//!
//! Reads come from the mesh's stored configuration. Writes validate the body (namespaces are
//! DNS-1123 labels and not reserved, the cluster is a member, the policy is known), publish
//! `SetAutoInjection` or `SetOutboundTraffic` and answer 202 — or, with `?wait=`, the outcome of
//! the reconfigure flow that labels the namespaces or changes Istio's mesh config in every
//! cluster that needs it.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use mesh_bus::command::{MAX_INJECTION_NAMESPACES, SetAutoInjection, SetOutboundTraffic};
use mesh_core::spec::{OutboundTrafficPolicy, RESERVED_NAMESPACES};
use mesh_core::{ClusterName, MeshConfig, NamespaceName};
use mesh_schema::models::MeshRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::commands::{WaitQuery, publish_for};
use super::meshes::{MeshParam, visible_mesh};
use crate::auth::Caller;
use crate::envelope::{ApiError, ApiResponse};
use crate::openapi::OutboundTrafficPolicyDoc;
use crate::state::ApiState;

/// The injected namespaces of a mesh, per member cluster.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoInjectionView {
    /// Per member cluster (every member is listed; an empty list means no injection there).
    pub auto_injection_namespaces: BTreeMap<String, Vec<String>>,
}

/// Body of `POST /meshes/{mesh}/autoinjectionnamespaces`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"cluster": "c1", "namespaces": ["shop", "payments"]}))]
pub struct AutoInjectionBody {
    /// The member cluster.
    #[schema(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 63)]
    pub cluster: String,
    /// Its namespaces whose pods get sidecars, replacing its list; `[]` turns injection off.
    #[schema(max_items = 1000)]
    pub namespaces: Vec<String>,
}

/// The outbound traffic policy of a mesh (also the body of its `POST`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutboundTrafficBody {
    /// What sidecars do with traffic to destinations outside the registry.
    #[schema(value_type = OutboundTrafficPolicyDoc)]
    pub outbound_traffic_policy: OutboundTrafficPolicy,
}

fn config_of(mesh: &MeshRecord) -> Result<MeshConfig, ApiError> {
    mesh.mesh_config().map_err(|e| {
        ApiError::Internal(format!(
            "stored configuration of mesh {} is unreadable: {e}",
            mesh.name
        ))
    })
}

/// `GET /meshes/{mesh}/autoinjectionnamespaces`.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/meshes/{mesh}/autoinjectionnamespaces",
    tag = "meshes",
    operation_id = "getAutoInjectionNamespaces",
    params(MeshParam),
    responses(
        (status = 200, description = "The injected namespaces per member cluster", body = ApiResponse<AutoInjectionView>),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 405, response = crate::openapi::MethodNotAllowed),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn get_auto_injection(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mesh = visible_mesh(&caller, &state, &path).await?;
    let config = config_of(&mesh)?;
    let mut namespaces: BTreeMap<String, Vec<String>> = state
        .store()?
        .list_member_clusters(&mesh.name)
        .await?
        .into_iter()
        .map(|m| (m.name, Vec::new()))
        .collect();
    for (cluster, listed) in config.auto_injection_namespaces {
        namespaces.insert(cluster, listed);
    }
    Ok(HttpResponse::Ok().json(ApiResponse::ok(AutoInjectionView {
        auto_injection_namespaces: namespaces,
    })))
}

/// `POST /meshes/{mesh}/autoinjectionnamespaces`: publishes `SetAutoInjection`; 202.
#[utoipa::path(
    post,
    path = "/apis/v1/mesh/meshes/{mesh}/autoinjectionnamespaces",
    tag = "meshes",
    operation_id = "setAutoInjectionNamespaces",
    params(MeshParam, WaitQuery),
    request_body = AutoInjectionBody,
    responses(
        (status = 200, description = "With `?wait=`: the flow ended in time; `status` is its outcome", body = ApiResponse<super::commands::CommandAnswer>),
        (status = 202, description = "`SetAutoInjection` published", body = ApiResponse<super::commands::CommandAnswer>),
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
pub async fn set_auto_injection(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<String>,
    query: web::Query<WaitQuery>,
    body: web::Json<AutoInjectionBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_write()?;
    let wait = query.duration(state.max_wait)?;
    let cluster = ClusterName::new(body.cluster.as_str())
        .map_err(|e| ApiError::BadRequest(format!("cluster: {e}")))?;
    if body.namespaces.len() > MAX_INJECTION_NAMESPACES {
        return Err(ApiError::BadRequest(format!(
            "namespaces: at most {MAX_INJECTION_NAMESPACES} per cluster, got {}",
            body.namespaces.len()
        )));
    }
    let mut namespaces = Vec::with_capacity(body.namespaces.len());
    for (index, text) in body.namespaces.iter().enumerate() {
        let namespace = NamespaceName::new(text.as_str())
            .map_err(|e| ApiError::BadRequest(format!("namespaces[{index}]: {e}")))?;
        if RESERVED_NAMESPACES.contains(&namespace.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "namespaces[{index}]: {namespace} is reserved and never gets sidecars"
            )));
        }
        if namespaces.contains(&namespace) {
            return Err(ApiError::BadRequest(format!(
                "namespaces[{index}]: {namespace} is listed twice"
            )));
        }
        namespaces.push(namespace);
    }
    let mesh = visible_mesh(&caller, &state, &path).await?;
    let member = state
        .store()?
        .list_member_clusters(&mesh.name)
        .await?
        .into_iter()
        .any(|m| m.name == cluster.as_str());
    if !member {
        return Err(ApiError::Unprocessable(format!(
            "cluster {cluster} is not a member of mesh {}",
            mesh.name
        )));
    }
    let command = SetAutoInjection {
        cluster,
        namespaces,
    };
    publish_for(&state, &caller, &mesh, command, wait).await
}

/// `GET /meshes/{mesh}/outbound-traffic`.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/meshes/{mesh}/outbound-traffic",
    tag = "meshes",
    operation_id = "getOutboundTraffic",
    params(MeshParam),
    responses(
        (status = 200, description = "The mesh's outbound traffic policy", body = ApiResponse<OutboundTrafficBody>),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 405, response = crate::openapi::MethodNotAllowed),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn get_outbound_traffic(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let mesh = visible_mesh(&caller, &state, &path).await?;
    let config = config_of(&mesh)?;
    Ok(
        HttpResponse::Ok().json(ApiResponse::ok(OutboundTrafficBody {
            outbound_traffic_policy: config.outbound_traffic_policy,
        })),
    )
}

/// `POST /meshes/{mesh}/outbound-traffic`: publishes `SetOutboundTraffic`; 202.
#[utoipa::path(
    post,
    path = "/apis/v1/mesh/meshes/{mesh}/outbound-traffic",
    tag = "meshes",
    operation_id = "setOutboundTraffic",
    params(MeshParam, WaitQuery),
    request_body = OutboundTrafficBody,
    responses(
        (status = 200, description = "With `?wait=`: the flow ended in time; `status` is its outcome", body = ApiResponse<super::commands::CommandAnswer>),
        (status = 202, description = "`SetOutboundTraffic` published", body = ApiResponse<super::commands::CommandAnswer>),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 405, response = crate::openapi::MethodNotAllowed),
        (status = 409, response = crate::openapi::Conflict),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn set_outbound_traffic(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<String>,
    query: web::Query<WaitQuery>,
    body: web::Json<OutboundTrafficBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_write()?;
    let wait = query.duration(state.max_wait)?;
    let mesh = visible_mesh(&caller, &state, &path).await?;
    let command = SetOutboundTraffic {
        policy: body.outbound_traffic_policy,
    };
    publish_for(&state, &caller, &mesh, command, wait).await
}
