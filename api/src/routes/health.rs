//! Liveness and readiness.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::envelope::ApiResponse;
use crate::state::ApiState;

#[derive(Serialize)]
struct ProbeResult {
    name: &'static str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `GET /healthz`: answers as long as the process serves requests.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(ApiResponse::ok("ok"))
}

/// `GET /readyz`: runs every readiness probe; 503 naming the failing ones.
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
