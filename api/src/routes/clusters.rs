//! Registered clusters: register (kubeconfig upload), list, get, remove, list namespaces.
//!
//! Registration is a pipeline: validate the name and the kubeconfig (pure; hostile shapes answer
//! 400 with the reason) → probe the cluster with the reduced credentials (I/O; anything but
//! `Reachable` answers 422 with what the probe found and stores nothing) → store the cluster with
//! its kubeconfig sealed. No answer ever carries the kubeconfig.

use actix_web::{HttpResponse, web};
use chrono::NaiveDateTime;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ListParams;
use mesh_clusters::ClusterCredentials;
use mesh_clusters::probe::{ProbeStatus, probe};
use mesh_core::ClusterName;
use mesh_schema::StoreError;
use mesh_schema::models::RegisteredClusterRecord;
use mesh_schema::store::cluster::RegisterCluster;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::envelope::{ApiError, ApiResponse};
use crate::openapi::{
    BadGateway, BadRequest, Conflict, Forbidden, MethodNotAllowed, NotFound, PayloadTooLarge,
    Unauthorized, Unavailable, Unprocessable, UnsupportedMediaType,
};
use crate::state::ApiState;

/// Longest region label (the column is `varchar(64)`).
const MAX_REGION_CHARS: usize = 64;

/// Body of `POST /clusters`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "c1", "region": "eu-west", "kubeconfig": "apiVersion: v1\nkind: Config\n…"}))]
pub struct RegisterBody {
    /// Cluster name (DNS-1123 label).
    #[schema(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 63)]
    pub name: String,
    /// Region label.
    #[serde(default)]
    #[schema(max_length = 64)]
    pub region: String,
    /// The kubeconfig, YAML (or JSON) as a string — secret. One cluster, one user with a token
    /// or a client certificate; exec plugins, auth providers and local files are refused.
    pub kubeconfig: String,
}

/// A registered cluster as the API shows it (no credentials).
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterView {
    /// Cluster name.
    pub name: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Region label.
    pub region: String,
    /// API server URL.
    pub server: String,
    /// `token` or `client-certificate`.
    pub auth_kind: String,
    /// Result of the last probe (`Reachable`, ...).
    pub status: String,
    /// What the last probe said.
    pub status_message: String,
    /// When it was registered.
    pub created_at: NaiveDateTime,
    /// When it was last written.
    pub updated_at: NaiveDateTime,
}

impl From<RegisteredClusterRecord> for ClusterView {
    fn from(record: RegisteredClusterRecord) -> Self {
        Self {
            name: record.name,
            tenant_id: record.tenant_id,
            region: record.region,
            server: record.server,
            auth_kind: record.auth_kind,
            status: record.status,
            status_message: record.status_message,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

/// The `{cluster}` path parameter (documentation only; handlers take `web::Path<String>`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct ClusterParam {
    /// A registered cluster's name (DNS-1123 label).
    #[param(
        pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length = 63,
        example = "c1"
    )]
    cluster: String,
}

fn check_region(region: &str) -> Result<(), ApiError> {
    if region.chars().count() > MAX_REGION_CHARS || region.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "region must be at most {MAX_REGION_CHARS} characters without control characters"
        )));
    }
    Ok(())
}

/// `POST /clusters`: validate, probe and register a cluster; 201 with the record.
#[utoipa::path(
    post,
    path = "/apis/v1/mesh/clusters",
    tag = "clusters",
    operation_id = "registerCluster",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "Probed and registered", body = ApiResponse<ClusterView>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 405, response = MethodNotAllowed),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn register(
    caller: Caller,
    state: web::Data<ApiState>,
    body: web::Json<RegisterBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_write()?;
    let store = state.store()?;
    let body = body.into_inner();
    let name = ClusterName::new(body.name)?;
    check_region(&body.region)?;
    let credentials = ClusterCredentials::from_kubeconfig_yaml(&body.kubeconfig)
        .map_err(|e| ApiError::BadRequest(format!("invalid kubeconfig: {e}")))?;
    drop(body.kubeconfig);
    if store
        .get_registered_cluster(&mesh_schema::TenantScope::All, name.as_str())
        .await?
        .is_some()
    {
        return Err(ApiError::Conflict(format!("cluster {name} already exists")));
    }

    let report = probe(&credentials).await;
    if report.status != ProbeStatus::Reachable {
        tracing::info!(cluster = %name, status = report.status.as_str(), "registration probe failed");
        return Err(ApiError::Unprocessable(format!(
            "cluster {name} failed its registration probe ({}): {}",
            report.status.as_str(),
            report.message
        )));
    }
    let kubeconfig = credentials
        .to_yaml()
        .map_err(|e| ApiError::Internal(format!("cannot encode reduced kubeconfig: {e}")))?;
    let record = store
        .register_cluster(RegisterCluster {
            tenant_id: caller.tenant.as_str().to_owned(),
            name: name.as_str().to_owned(),
            region: body.region,
            server: credentials.server().to_owned(),
            auth_kind: credentials.auth_kind().as_str().to_owned(),
            kubeconfig,
            status: report.status.as_str().to_owned(),
            status_message: report.message,
        })
        .await
        .map_err(|e| match e {
            StoreError::AlreadyExists { .. } => {
                ApiError::Conflict(format!("cluster {name} already exists"))
            }
            other => other.into(),
        })?;
    tracing::info!(cluster = %name, tenant = %caller.tenant, "cluster registered");
    Ok(HttpResponse::Created().json(ApiResponse::ok(ClusterView::from(record))))
}

/// `GET /clusters`: the clusters the caller may see, by name.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/clusters",
    tag = "clusters",
    operation_id = "listClusters",
    responses(
        (status = 200, description = "The clusters the caller may see", body = ApiResponse<Vec<ClusterView>>),
        (status = 401, response = Unauthorized),
        (status = 405, response = MethodNotAllowed),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn list(caller: Caller, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let clusters = state
        .store()?
        .list_registered_clusters(&caller.scope())
        .await?;
    let views: Vec<ClusterView> = clusters.into_iter().map(ClusterView::from).collect();
    Ok(HttpResponse::Ok().json(ApiResponse::ok(views)))
}

/// A registered cluster the caller may see, or 404.
/// A client for a registered cluster, from its sealed kubeconfig.
pub(crate) async fn cluster_client(
    state: &ApiState,
    cluster: &str,
) -> Result<kube::Client, ApiError> {
    let kubeconfig = state.store()?.cluster_kubeconfig(cluster).await?;
    let credentials = ClusterCredentials::from_kubeconfig_yaml(&kubeconfig).map_err(|e| {
        ApiError::Internal(format!("stored kubeconfig of {cluster} is invalid: {e}"))
    })?;
    drop(kubeconfig);
    mesh_clusters::client::client_for(&credentials, mesh_clusters::RateLimit::default())
        .await
        .map_err(|e| ApiError::ClusterUnavailable(format!("cluster {cluster} did not answer: {e}")))
}

pub(crate) async fn visible(
    caller: &Caller,
    state: &ApiState,
    name: &str,
) -> Result<RegisteredClusterRecord, ApiError> {
    let name = ClusterName::new(name)?;
    state
        .store()?
        .get_registered_cluster(&caller.scope(), name.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("cluster {name} not found")))
}

/// `GET /clusters/{cluster}`.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/clusters/{cluster}",
    tag = "clusters",
    operation_id = "getCluster",
    params(ClusterParam),
    responses(
        (status = 200, description = "The cluster", body = ApiResponse<ClusterView>),
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
    let record = visible(&caller, &state, &path).await?;
    Ok(HttpResponse::Ok().json(ApiResponse::ok(ClusterView::from(record))))
}

/// `DELETE /clusters/{cluster}`: forgets a cluster; 409 while it is a member of a mesh.
#[utoipa::path(
    delete,
    path = "/apis/v1/mesh/clusters/{cluster}",
    tag = "clusters",
    operation_id = "removeCluster",
    params(ClusterParam),
    responses(
        (status = 200, description = "Removed; `data` is its name", body = ApiResponse<String>),
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
pub async fn remove(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_write()?;
    let name = ClusterName::new(path.into_inner())?;
    state
        .store()?
        .remove_registered_cluster(&caller.scope(), name.as_str())
        .await
        .map_err(|e| match e {
            StoreError::NotFound { .. } => ApiError::NotFound(format!("cluster {name} not found")),
            StoreError::AlreadyExists { key, .. } => ApiError::Conflict(format!(
                "cluster {name} is still a member of a mesh ({key}); remove it from the mesh first"
            )),
            other => other.into(),
        })?;
    tracing::info!(cluster = %name, tenant = %caller.tenant, "cluster removed");
    Ok(HttpResponse::Ok().json(ApiResponse::ok(name.as_str())))
}

/// A namespace of a cluster.
#[derive(Debug, Serialize, ToSchema)]
pub struct NamespaceView {
    /// Its name.
    pub name: String,
    /// `Active` or `Terminating`.
    pub phase: String,
    /// Its labels (injection labels among them).
    pub labels: std::collections::BTreeMap<String, String>,
}

/// `GET /clusters/{cluster}/namespaces`: the cluster's namespaces, read with its stored
/// credentials.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/clusters/{cluster}/namespaces",
    tag = "clusters",
    operation_id = "listClusterNamespaces",
    params(ClusterParam),
    responses(
        (status = 200, description = "The cluster's namespaces by name", body = ApiResponse<Vec<NamespaceView>>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 405, response = MethodNotAllowed),
        (status = 502, response = BadGateway),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn namespaces(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let record = visible(&caller, &state, &path).await?;
    let unavailable = |error: String| {
        tracing::warn!(cluster = %record.name, %error, "cannot list namespaces");
        ApiError::ClusterUnavailable(format!("cluster {} did not answer: {error}", record.name))
    };
    let client = cluster_client(&state, &record.name).await?;
    let api: kube::Api<Namespace> = kube::Api::all(client);
    let mut views = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api
            .list(&params)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        views.extend(page.items.into_iter().map(|ns| NamespaceView {
            name: ns.metadata.name.unwrap_or_default(),
            phase: ns.status.and_then(|s| s.phase).unwrap_or_default(),
            labels: ns.metadata.labels.unwrap_or_default(),
        }));
        match next {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    views.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(HttpResponse::Ok().json(ApiResponse::ok(views)))
}
