//! Liveness and readiness.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::envelope::ApiResponse;
use crate::openapi::MethodNotAllowed;
use crate::state::ApiState;

/// The outcome of one readiness probe.
#[derive(Serialize, ToSchema)]
pub struct ProbeResult {
    /// What was checked (`database`, `bus`).
    #[schema(value_type = String)]
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What is wrong, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /healthz`: answers as long as the process serves requests.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    operation_id = "healthz",
    responses(
        (status = 200, description = "The process serves requests", body = ApiResponse<String>),
        (status = 405, response = MethodNotAllowed),
    )
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(ApiResponse::ok("ok"))
}

/// `GET /readyz`: runs every readiness probe; 503 naming the failing ones.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "meta",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Every backend answers", body = ApiResponse<Vec<ProbeResult>>),
        (status = 405, response = MethodNotAllowed),
        (status = 503, description = "A backend is unavailable; `err` names it", body = ApiResponse<Vec<ProbeResult>>),
    )
)]
pub async fn readyz(state: web::Data<ApiState>) -> HttpResponse {
    let checks = state.readiness.iter().map(|probe| async move {
        let outcome = probe.check().await;
        ProbeResult {
            name: probe.name(),
            ok: outcome.is_ok(),
            error: outcome.err(),
        }
    });
    let results = futures::future::join_all(checks).await;
    let failing: Vec<&str> = results.iter().filter(|r| !r.ok).map(|r| r.name).collect();
    if failing.is_empty() {
        HttpResponse::Ok().json(ApiResponse::ok(results))
    } else {
        HttpResponse::ServiceUnavailable().json(ApiResponse {
            result: false,
            err: format!("not ready: {} unavailable", failing.join(", ")),
            rev: 0,
            data: Some(results),
        })
    }
}
