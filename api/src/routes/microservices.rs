//! The microservices of a namespace of a mesh (seed `/meshes/{mesh}/namespaces/{ns}/microservices`).
//!
//! Input: the mesh and namespace from the path. Reads, live from every member cluster (remotes
//! included: their workloads are part of the mesh), the namespace's Services, Deployments and
//! Endpoints, and the mesh's desired Istio resources from the database; the grouping by `app`
//! label and the matching of VirtualServices and DestinationRules to hosts is
//! `mesh_core::resources::services` (pure). A cluster that cannot be read is named in
//! `unreachableClusters`; the others still answer.

use actix_web::{HttpResponse, web};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use mesh_core::NamespaceName;
use mesh_core::resources::IstioResource;
use mesh_core::resources::services::{
    EndpointAddress, EndpointsSeen, MemberObservation, Microservice, ServiceSeen, WorkloadSeen,
    microservices,
};
use mesh_schema::models::MeshRecord;
use mesh_schema::store::resource::ResourceRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::meshes::visible_mesh;
use crate::auth::Caller;
use crate::envelope::{ApiError, ApiResponse};
use crate::state::ApiState;

/// Path of the microservices of a namespace.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NamespacePath {
    /// The mesh.
    pub mesh: String,
    /// The namespace.
    pub namespace: String,
}

/// Path of one microservice.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MicroservicePath {
    /// The mesh.
    pub mesh: String,
    /// The namespace.
    pub namespace: String,
    /// The microservice: the value of the `app` label of its Services.
    pub name: String,
}

/// A member cluster that could not be read.
#[derive(Debug, Serialize, ToSchema)]
pub struct Unreachable {
    /// The cluster.
    pub cluster: String,
    /// Why.
    pub error: String,
}

/// The microservices of a namespace.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MicroserviceList {
    /// The namespace.
    pub namespace: String,
    /// By name: per cluster its Services, workloads (with version and readiness) and endpoints;
    /// its hosts and versions; the VirtualServices (`applies`: `byHost` or `byRoute`) and
    /// DestinationRules (with their subsets) that apply to it.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Microservice>,
    /// Member clusters that could not be read (their microservices are missing above).
    pub unreachable_clusters: Vec<Unreachable>,
}

/// What one member holds in the namespace.
async fn observe(state: &ApiState, cluster: &str, namespace: &str) -> MemberObservation {
    let mut observation = MemberObservation {
        cluster: cluster.to_owned(),
        ..MemberObservation::default()
    };
    if let Err(e) = read_member(state, cluster, namespace, &mut observation).await {
        observation.error = Some(e);
    }
    observation
}

async fn read_member(
    state: &ApiState,
    cluster: &str,
    namespace: &str,
    observation: &mut MemberObservation,
) -> Result<(), String> {
    let client = super::clusters::cluster_client(state, cluster)
        .await
        .map_err(|e| e.to_string())?;
    let unreachable = |e: kube::Error| format!("cluster {cluster} did not answer: {e}");
    let services: kube::Api<Service> = kube::Api::namespaced(client.clone(), namespace);
    for service in services
        .list(&Default::default())
        .await
        .map_err(unreachable)?
    {
        let ports = service
            .spec
            .and_then(|s| s.ports)
            .unwrap_or_default()
            .into_iter()
            .map(|p| match p.name {
                Some(name) => format!("{name}/{}", p.port),
                None => p.port.to_string(),
            })
            .collect();
        observation.services.push(ServiceSeen {
            name: service.metadata.name.unwrap_or_default(),
            labels: service.metadata.labels.unwrap_or_default(),
            ports,
        });
    }
    let deployments: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), namespace);
    for deployment in deployments
        .list(&Default::default())
        .await
        .map_err(unreachable)?
    {
        let spec = deployment.spec;
        observation.workloads.push(WorkloadSeen {
            kind: "Deployment".to_owned(),
            name: deployment.metadata.name.unwrap_or_default(),
            labels: spec
                .template
                .metadata
                .and_then(|m| m.labels)
                .unwrap_or_default(),
            replicas: i64::from(spec.replicas.unwrap_or(1)),
            ready_replicas: i64::from(
                deployment
                    .status
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0),
            ),
        });
    }
    let endpoints: kube::Api<Endpoints> = kube::Api::namespaced(client, namespace);
    for object in endpoints
        .list(&Default::default())
        .await
        .map_err(unreachable)?
    {
        let mut addresses = Vec::new();
        for subset in object.subsets.unwrap_or_default() {
            for (list, ready) in [
                (subset.addresses, true),
                (subset.not_ready_addresses, false),
            ] {
                addresses.extend(
                    list.unwrap_or_default()
                        .into_iter()
                        .map(|a| EndpointAddress {
                            ip: a.ip,
                            pod: a.target_ref.and_then(|t| t.name),
                            ready,
                        }),
                );
            }
        }
        observation.endpoints.push(EndpointsSeen {
            service: object.metadata.name.unwrap_or_default(),
            addresses,
        });
    }
    Ok(())
}

/// The microservices of `namespace` in `mesh`, with the clusters that could not be read.
async fn list_for(
    state: &ApiState,
    mesh: &MeshRecord,
    namespace: &NamespaceName,
) -> Result<MicroserviceList, ApiError> {
    let store = state.store()?;
    let members = store.list_member_clusters(&mesh.name).await?;
    let observations = futures::future::join_all(
        members
            .iter()
            .map(|m| observe(state, &m.name, namespace.as_str())),
    )
    .await;
    let rules: Vec<IstioResource> = store
        .list_resources(&mesh.name, None, None, None)
        .await?
        .iter()
        .filter_map(ResourceRecord::resource)
        .collect();
    let unreachable_clusters = observations
        .iter()
        .filter_map(|o| {
            o.error.as_ref().map(|error| Unreachable {
                cluster: o.cluster.clone(),
                error: error.clone(),
            })
        })
        .collect();
    Ok(MicroserviceList {
        namespace: namespace.to_string(),
        items: microservices(namespace.as_str(), &observations, &rules),
        unreachable_clusters,
    })
}

/// `GET /meshes/{mesh}/namespaces/{namespace}/microservices`.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/meshes/{mesh}/namespaces/{namespace}/microservices",
    tag = "resources",
    operation_id = "listMicroservices",
    params(NamespacePath),
    responses(
        (status = 200, description = "The microservices of the namespace across the mesh's clusters", body = ApiResponse<MicroserviceList>),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 405, response = crate::openapi::MethodNotAllowed),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn list(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<NamespacePath>,
) -> Result<HttpResponse, ApiError> {
    let namespace = NamespaceName::new(path.namespace.as_str())?;
    let mesh = visible_mesh(&caller, &state, &path.mesh).await?;
    let view = list_for(&state, &mesh, &namespace).await?;
    Ok(HttpResponse::Ok().json(ApiResponse::ok(view)))
}

/// `GET /meshes/{mesh}/namespaces/{namespace}/microservices/{name}`.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/meshes/{mesh}/namespaces/{namespace}/microservices/{name}",
    tag = "resources",
    operation_id = "getMicroservice",
    params(MicroservicePath),
    responses(
        (status = 200, description = "One microservice across the mesh's clusters", body = ApiResponse<Object>),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 405, response = crate::openapi::MethodNotAllowed),
        (status = 503, response = crate::openapi::Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn get(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<MicroservicePath>,
) -> Result<HttpResponse, ApiError> {
    let namespace = NamespaceName::new(path.namespace.as_str())?;
    let mesh = visible_mesh(&caller, &state, &path.mesh).await?;
    let view = list_for(&state, &mesh, &namespace).await?;
    let unreachable: Vec<String> = view
        .unreachable_clusters
        .iter()
        .map(|u| u.cluster.clone())
        .collect();
    let found = view.items.into_iter().find(|m| m.name == path.name);
    match found {
        Some(microservice) => Ok(HttpResponse::Ok().json(ApiResponse::ok(microservice))),
        None => Err(ApiError::NotFound(format!(
            "no microservice {:?} in namespace {namespace} of mesh {}: no Service there carries the label app={}{}",
            path.name.chars().take(63).collect::<String>(),
            mesh.name,
            path.name.chars().take(63).collect::<String>(),
            if unreachable.is_empty() {
                String::new()
            } else {
                format!(" (clusters not read: {})", unreachable.join(", "))
            }
        ))),
    }
}
