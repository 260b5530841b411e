//! Configuration the clients read: installable Istio versions.

use actix_web::{HttpResponse, web};

use crate::envelope::ApiResponse;
use crate::openapi::MethodNotAllowed;
use crate::state::ApiState;

/// `GET /apis/v1/mesh/config/istioversions`: `{"result":true,"data":["1.30.3",…]}`, newest first.
#[utoipa::path(
    get,
    path = "/apis/v1/mesh/config/istioversions",
    tag = "meta",
    operation_id = "listIstioVersions",
    responses(
        (status = 200, description = "Installable Istio versions, newest first", body = ApiResponse<Vec<String>>),
        (status = 405, response = MethodNotAllowed),
    )
)]
pub async fn istio_versions(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(ApiResponse::ok(state.catalog.version_strings()))
}
