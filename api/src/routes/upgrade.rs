//! Upgrades: `POST /meshes/{mesh}` (upgrade to a catalog version, canary or in place) and
//! `POST /meshes/{mesh}/canary` (confirm or roll back the canary).
//!
//! The handlers check what they can without the worker (the body, the version in the catalog,
//! the mesh visible to the caller), publish `UpgradeMesh` / `CanaryOperate` and answer 202 with
//! the command id (or wait with `?wait=`). The version rules that need the mesh's state (no
//! downgrade, one minor at a time in place, an upgrade already under way) are the worker's call,
//! answered as a rejected command.

use actix_web::{HttpResponse, web};
use mesh_bus::command::{CanaryAction, CanaryOperate, UpgradeMesh, UpgradeStrategy};
use mesh_core::upgrade::{CanaryOptions, UpgradeKind, check_upgrade};
use serde::Deserialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

use super::commands::{WaitQuery, publish_for};
use super::meshes::{MeshParam, visible_mesh};
use crate::auth::Caller;
use crate::envelope::{ApiError, ApiResponse};
use crate::openapi::{
    BadRequest, Conflict, Forbidden, MethodNotAllowed, NotFound, PayloadTooLarge, Unauthorized,
    Unavailable, UnsupportedMediaType,
};
use crate::state::ApiState;

/// Body of `POST /meshes/{mesh}`: upgrade the mesh.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpgradeBody {
    /// The target Istio version (from `GET /config/istioversions`).
    #[schema(example = "1.30.3")]
    pub version: String,
    /// `canary` (default) or `in-place`.
    #[serde(default)]
    #[schema(example = "canary")]
    pub strategy: Option<String>,
    /// Namespaces moved per batch and cluster (canary), default 5.
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Pause after each passed health gate, in seconds (canary), default 0.
    #[serde(default)]
    pub pause_seconds: Option<u64>,
    /// Highest 5xx share (0–1) a moved service may answer with (canary), default 0.05.
    #[serde(default)]
    pub max_error_ratio: Option<f64>,
    /// How long a health gate watches the moved services' traffic, in seconds, default 10.
    #[serde(default)]
    pub gate_window_seconds: Option<u64>,
    /// Per cluster, a URL serving Istio standard metrics in the Prometheus text format.
    #[serde(default)]
    pub metrics_urls: BTreeMap<String, String>,
    /// A Prometheus server scraping the clusters' Istio metrics (`http://prometheus:9090`): the
    /// gates ask it for the moved services' 5xx share by `destination_cluster`.
    #[serde(default)]
    #[schema(example = "http://prometheus.monitoring:9090")]
    pub prometheus_url: Option<String>,
}

/// Body of `POST /meshes/{mesh}/canary`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryBody {
    /// `confirm` or `rollback`.
    #[schema(example = "confirm")]
    pub operate: String,
}

/// The command an upgrade body asks for.
fn upgrade_command(body: &UpgradeBody) -> Result<UpgradeMesh, ApiError> {
    let strategy = match body.strategy.as_deref().map(str::trim) {
        None | Some("" | "canary") => UpgradeStrategy::Canary,
        Some("in-place" | "inplace" | "InPlace") => UpgradeStrategy::InPlace,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "strategy must be canary or in-place, got {other:?}"
            )));
        }
    };
    let defaults = CanaryOptions::default();
    let options = CanaryOptions {
        batch_size: body.batch_size.unwrap_or(defaults.batch_size),
        pause_seconds: body.pause_seconds.unwrap_or(defaults.pause_seconds),
        max_error_ratio: body.max_error_ratio.unwrap_or(defaults.max_error_ratio),
        gate_window_seconds: body
            .gate_window_seconds
            .unwrap_or(defaults.gate_window_seconds),
        metrics_urls: body.metrics_urls.clone(),
        prometheus_url: body
            .prometheus_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned),
    };
    let problems = options.problems();
    if !problems.is_empty() {
        return Err(ApiError::BadRequest(problems.join("; ")));
    }
    Ok(UpgradeMesh {
        version: body.version.trim().to_owned(),
        strategy,
        canary: Some(options),
    })
}

/// `POST /meshes/{mesh}`: publishes `UpgradeMesh`; 202 with the command id.
#[utoipa::path(
    post,
    path = "/apis/v1/mesh/meshes/{mesh}",
    tag = "meshes",
    operation_id = "upgradeMesh",
    params(MeshParam, WaitQuery),
    request_body = UpgradeBody,
    responses(
        (status = 200, description = "With `?wait=`: the flow ended in time; `status` is its outcome", body = ApiResponse<super::commands::CommandAnswer>),
        (status = 202, description = "`UpgradeMesh` published (or still running when the wait ended)", body = ApiResponse<super::commands::CommandAnswer>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 405, response = MethodNotAllowed),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = []), ("tke" = []))
)]
pub async fn upgrade(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<String>,
    query: web::Query<WaitQuery>,
    body: web::Json<UpgradeBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_write()?;
    let wait = query.duration(state.max_wait)?;
    let command = upgrade_command(&body)?;
    let mesh = visible_mesh(&caller, &state, &path).await?;
    // The version rules answer at once; the worker checks them again against the mesh it holds.
    let kind = match command.strategy {
        UpgradeStrategy::Canary => UpgradeKind::Canary,
        UpgradeStrategy::InPlace => UpgradeKind::InPlace,
    };
    check_upgrade(&state.catalog, &mesh.version, &command.version, kind)
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    publish_for(&state, &caller, &mesh, command, wait).await
}

/// `POST /meshes/{mesh}/canary`: publishes `CanaryOperate`; 202 with the command id.
#[utoipa::path(
    post,
    path = "/apis/v1/mesh/meshes/{mesh}/canary",
    tag = "meshes",
    operation_id = "operateCanary",
    params(MeshParam, WaitQuery),
    request_body = CanaryBody,
    responses(
        (status = 200, description = "With `?wait=`: the flow ended in time; `status` is its outcome", body = ApiResponse<super::commands::CommandAnswer>),
        (status = 202, description = "`CanaryOperate` published (or still running when the wait ended)", body = ApiResponse<super::commands::CommandAnswer>),
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
pub async fn canary(
    caller: Caller,
    state: web::Data<ApiState>,
    path: web::Path<String>,
    query: web::Query<WaitQuery>,
    body: web::Json<CanaryBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_write()?;
    let wait = query.duration(state.max_wait)?;
    let action = match body.operate.trim() {
        "confirm" => CanaryAction::Confirm,
        "rollback" => CanaryAction::Rollback,
        other => {
            return Err(ApiError::BadRequest(format!(
                "operate must be confirm or rollback, got {other:?}"
            )));
        }
    };
    let mesh = visible_mesh(&caller, &state, &path).await?;
    publish_for(&state, &caller, &mesh, CanaryOperate { action }, wait).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: serde_json::Value) -> UpgradeBody {
        serde_json::from_value(json).expect("body")
    }

    #[test]
    fn an_upgrade_body_becomes_a_canary_command_with_defaults() {
        let command =
            upgrade_command(&body(serde_json::json!({"version": "1.30.3"}))).expect("valid");
        assert_eq!(command.strategy, UpgradeStrategy::Canary);
        assert_eq!(command.canary, Some(CanaryOptions::default()));
        let command = upgrade_command(&body(
            serde_json::json!({"version": "1.30.3", "strategy": "in-place", "batchSize": 2}),
        ))
        .expect("valid");
        assert_eq!(command.strategy, UpgradeStrategy::InPlace);
        assert_eq!(command.canary.map(|o| o.batch_size), Some(2));
    }

    #[test]
    fn bad_strategies_and_options_are_refused() {
        assert!(
            upgrade_command(&body(
                serde_json::json!({"version": "1.30.3", "strategy": "yolo"})
            ))
            .is_err()
        );
        assert!(
            upgrade_command(&body(
                serde_json::json!({"version": "1.30.3", "batchSize": 0})
            ))
            .is_err()
        );
    }
}
