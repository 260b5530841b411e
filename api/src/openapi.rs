//! The OpenAPI 3 document of the API, generated from the handlers' `#[utoipa::path]` attributes
//! and the request and response types, served at `GET /apis/v1/mesh/openapi.json` (public).
//!
//! The same document is committed as `api/openapi.json`; the `openapi` test fails when the two
//! differ and says how to regenerate it (`MESH_UPDATE_OPENAPI=1 cargo test -p mesh-api --test
//! openapi`).
//!
//! Errors are reusable responses (`#/components/responses/BadRequest`, ...), all with the
//! [`ErrorResponse`] body that [`crate::ApiError`] answers. Routes that need a caller carry the
//! `bearer` and `tke` (cookie) security schemes.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

use crate::envelope::ErrorResponse;
use crate::routes::{
    clusters, config, events, flows, health, meshes, microservices, resources, settings, upgrade,
};

/// Name of the bearer-token security scheme.
pub const BEARER_SCHEME: &str = "bearer";
/// Name of the cookie security scheme (the seed clients' `tke` cookie).
pub const COOKIE_SCHEME: &str = "tke";

/// 400: the request is malformed — bad JSON, a wrong type, an unknown enum value, a name that is
/// not a DNS-1123 label, an out-of-range number, an unknown Istio version.
#[derive(ToResponse)]
#[response(description = "The request is malformed; `err` says what to fix")]
pub struct BadRequest(pub ErrorResponse);

/// 401: no token, or one that is not valid.
#[derive(ToResponse)]
#[response(
    description = "No valid token: send `Authorization: Bearer <token>` or the `tke` cookie"
)]
pub struct Unauthorized(pub ErrorResponse);

/// 403: the caller's role may not do this.
#[derive(ToResponse)]
#[response(description = "The caller's role (viewer) may not change anything")]
pub struct Forbidden(pub ErrorResponse);

/// 404: no such object, or one of another tenant.
#[derive(ToResponse)]
#[response(
    description = "No such object (another tenant's objects answer the same), or no such route"
)]
pub struct NotFound(pub ErrorResponse);

/// 405: the path exists, but not with this method.
#[derive(ToResponse)]
#[response(description = "The path exists, but not with this method")]
pub struct MethodNotAllowed(pub ErrorResponse);

/// 409: the request conflicts with the current state.
#[derive(ToResponse)]
#[response(
    description = "Conflicts with the current state (exists already, still in use, rejected by the worker)"
)]
pub struct Conflict(pub ErrorResponse);

/// 413: the body is over the limit.
#[derive(ToResponse)]
#[response(description = "The request body is larger than the configured limit")]
pub struct PayloadTooLarge(pub ErrorResponse);

/// 415: the body is not JSON.
#[derive(ToResponse)]
#[response(description = "The request body is not JSON (`Content-Type: application/json`)")]
pub struct UnsupportedMediaType(pub ErrorResponse);

/// 422: well formed, but cannot be carried out as given.
#[derive(ToResponse)]
#[response(
    description = "Well formed but cannot be carried out (the cluster failed its registration probe)"
)]
pub struct Unprocessable(pub ErrorResponse);

/// 502: a cluster the request needs did not answer.
#[derive(ToResponse)]
#[response(description = "A Kubernetes cluster the request needs did not answer")]
pub struct BadGateway(pub ErrorResponse);

/// 503: a backend is unavailable.
#[derive(ToResponse)]
#[response(description = "The database or the message bus is unavailable; retry later")]
pub struct Unavailable(pub ErrorResponse);

/// Topology of a mesh (`mode` of a create body).
#[derive(ToSchema)]
#[schema(as = MeshMode)]
#[allow(dead_code)]
pub(crate) enum MeshModeDoc {
    /// One cluster.
    #[schema(rename = "single")]
    Single,
    /// One primary, the others remote.
    #[schema(rename = "primary-remote")]
    PrimaryRemote,
    /// Every member a primary.
    #[schema(rename = "multi-primary")]
    MultiPrimary,
}

/// Role of a member cluster (`primary` is accepted for `master`).
#[derive(ToSchema)]
#[schema(as = ClusterRole)]
#[allow(dead_code)]
pub(crate) enum ClusterRoleDoc {
    /// Runs istiod.
    #[schema(rename = "master")]
    Master,
    /// Same as `master`.
    #[schema(rename = "primary")]
    Primary,
    /// Uses a primary's istiod.
    #[schema(rename = "remote")]
    Remote,
}

/// `?type=` of the mesh listing.
#[derive(ToSchema)]
#[schema(as = MeshListingType)]
#[allow(dead_code)]
pub(crate) enum ListingTypeDoc {
    /// Names and statuses only.
    #[schema(rename = "simple")]
    Simple,
    /// Everything (the default).
    #[schema(rename = "full")]
    Full,
}

/// What happens to traffic to unknown hosts.
#[derive(ToSchema)]
#[schema(as = OutboundTrafficPolicy)]
#[allow(dead_code)]
pub(crate) enum OutboundTrafficPolicyDoc {
    /// Let it through (the default).
    #[schema(rename = "ALLOW_ANY")]
    AllowAny,
    /// Only registered services are reachable.
    #[schema(rename = "REGISTRY_ONLY")]
    RegistryOnly,
}

/// Replica counts of the components mesh-manager runs.
#[derive(ToSchema)]
#[schema(as = Replicas)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub(crate) struct ReplicasDoc {
    /// istiod replicas on every primary (1 to 20, default 1).
    #[schema(minimum = 1, maximum = 20)]
    istiod: Option<u32>,
    /// East-west gateway replicas (1 to 20, default 1).
    #[schema(minimum = 1, maximum = 20)]
    eastwest_gateway: Option<u32>,
}

/// What mesh-manager does about managed Istio resources changed directly in a cluster.
#[derive(ToSchema)]
#[schema(as = DriftPolicy)]
#[allow(dead_code)]
pub(crate) enum DriftPolicyDoc {
    /// Report it and put the desired version back (the default).
    #[schema(rename = "repair")]
    Repair,
    /// Report it and leave the cluster as it is.
    #[schema(rename = "report")]
    Report,
}

/// Tunable mesh settings; every field is optional and unknown fields are refused.
#[derive(ToSchema)]
#[schema(as = MeshConfig)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub(crate) struct MeshConfigDoc {
    /// `ALLOW_ANY` (default) or `REGISTRY_ONLY`.
    outbound_traffic_policy: Option<OutboundTrafficPolicyDoc>,
    /// Percentage of requests traced, 0 to 100 (default 1).
    #[schema(minimum = 0, maximum = 100)]
    trace_sampling: Option<f64>,
    /// Per member cluster, the namespaces whose pods get sidecars injected.
    auto_injection_namespaces: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// Component replica counts.
    replicas: Option<ReplicasDoc>,
    /// What happens when a managed Istio resource is changed directly in a cluster.
    drift_policy: Option<DriftPolicyDoc>,
}

/// Adds the security schemes.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (`meshd token create --tenant T --role R`)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            COOKIE_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::TOKEN_COOKIE,
                "The same token in the seed clients' `tke` cookie",
            ))),
        );
    }
}

/// The document's root: every operation, the reusable error responses and the schemes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "mesh-manager API",
        description = "Creates and runs Istio meshes across Kubernetes clusters. Every answer is \
            the envelope `{\"result\",\"err\",\"rev\",\"data\"}`; long operations answer 202 with \
            the command id and, with `?wait=`, the flow's outcome. Another tenant's objects \
            answer 404 exactly like missing ones.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        health::healthz,
        health::readyz,
        crate::metrics::scrape,
        openapi_json,
        config::istio_versions,
        clusters::register,
        clusters::list,
        clusters::get,
        clusters::remove,
        clusters::namespaces,
        meshes::create,
        meshes::list,
        meshes::get,
        meshes::delete,
        meshes::set_sampling,
        settings::get_auto_injection,
        settings::set_auto_injection,
        settings::get_outbound_traffic,
        settings::set_outbound_traffic,
        upgrade::upgrade,
        upgrade::canary,
        resources::apply_batch,
        resources::list_all,
        resources::list_kind,
        resources::apply_one,
        resources::get_one,
        resources::delete_one,
        resources::list_cluster_kind,
        resources::apply_cluster_one,
        resources::get_cluster_one,
        resources::delete_cluster_one,
        microservices::list,
        microservices::get,
        flows::list,
        flows::get,
        events::stream,
    ),
    components(
        schemas(ErrorResponse),
        responses(
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unprocessable,
        BadGateway,
        Unavailable,
        )
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "meta", description = "Health, readiness, metrics, this document, the version catalog"),
        (name = "clusters", description = "Registered Kubernetes clusters"),
        (name = "meshes", description = "Meshes: create, read, delete, settings"),
        (name = "resources", description = "Istio resources of a mesh (VirtualService, DestinationRule, Gateway, …): desired state, dry runs with per-cluster diffs, atomic rollouts"),
        (name = "flows", description = "The flows (long operations) of a mesh and their tasks"),
        (name = "events", description = "The events of a mesh as server-sent events"),
    )
)]
pub struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

/// The document as pretty-printed JSON with a trailing newline, exactly as committed in
/// `api/openapi.json`.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut json = document()
            .to_pretty_json()
            .expect("invariant: the generated document serializes to JSON");
        json.push('\n');
        json
    })
}

/// `GET /apis/v1/mesh/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/openapi.json",
    tag = "meta",
    operation_id = "openapiDocument",
    responses(
        (status = 200, description = "The OpenAPI document of this API", content_type = "application/json", body = Object),
        (status = 405, response = MethodNotAllowed),
    )
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_mesh_config_has_the_fields_of_the_real_one() {
        let real = serde_json::to_value(mesh_core::MeshConfig::default())
            .expect("the default config serializes");
        let mut real: Vec<String> = real
            .as_object()
            .expect("the config is an object")
            .keys()
            .cloned()
            .collect();
        real.sort();
        let documented = serde_json::to_value(document()).expect("the document serializes");
        let properties = &documented["components"]["schemas"]["MeshConfig"]["properties"];
        let mut documented: Vec<String> = properties
            .as_object()
            .expect("MeshConfig has properties")
            .keys()
            .cloned()
            .collect();
        documented.sort();
        assert_eq!(documented, real);
    }

    #[test]
    fn documented_modes_parse_as_mesh_modes() {
        let documented = serde_json::to_value(document()).expect("the document serializes");
        let modes = documented["components"]["schemas"]["MeshMode"]["enum"]
            .as_array()
            .expect("MeshMode is an enum");
        assert_eq!(modes.len(), 3);
        for mode in modes {
            let mode = mode.as_str().expect("a string");
            assert!(mode.parse::<mesh_core::MeshMode>().is_ok(), "{mode}");
        }
    }
}
