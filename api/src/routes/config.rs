//! Configuration the clients read: installable Istio versions.

use actix_web::{HttpResponse, web};

use crate::envelope::ApiResponse;
use crate::state::ApiState;

/// `GET /apis/v1/mesh/config/istioversions`: `{"result":true,"data":["1.30.3",…]}`, newest first.
pub async fn istio_versions(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(ApiResponse::ok(state.catalog.version_strings()))
}
