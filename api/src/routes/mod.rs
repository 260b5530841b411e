//! Route table of the API.
//!
//! - `GET /healthz`: the process is alive.
//! - `GET /readyz`: every backend answers (database, bus); 503 with the failing ones otherwise.
//! - `GET /apis/v1/mesh/config/istioversions`: installable Istio versions, newest first.
//! - anything else: a JSON 404 (or 405 for a known path with another method) in the envelope.

pub mod config;
pub mod health;

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use crate::envelope::ApiError;
use crate::state::ApiState;

/// Mounts every route and the JSON error handlers on an actix-web app.
pub fn configure(state: ApiState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        let body_limit = state.body_limit;
        cfg.app_data(web::Data::new(state))
            .app_data(json_config(body_limit))
            .route("/healthz", web::get().to(health::healthz))
            .route("/readyz", web::get().to(health::readyz))
            .service(
                web::scope(crate::BASE_PATH).service(
                    web::resource("/config/istioversions")
                        .route(web::get().to(config::istio_versions))
                        .default_service(web::to(method_not_allowed)),
                ),
            )
            .default_service(web::to(not_found));
    }
}

/// JSON bodies: size limit and errors in the envelope (400 malformed, 413 too large, 415 not
/// JSON).
fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |error, _request| {
            use actix_web::error::JsonPayloadError as E;
            let api_error = match &error {
                E::OverflowKnownLength { length, limit } => ApiError::PayloadTooLarge(format!(
                    "request body of {length} bytes exceeds the limit of {limit} bytes"
                )),
                E::Overflow { limit } => ApiError::PayloadTooLarge(format!(
                    "request body exceeds the limit of {limit} bytes"
                )),
                E::ContentType => ApiError::UnsupportedMediaType(
                    "request body must be JSON (Content-Type: application/json)".into(),
                ),
                E::Deserialize(e) => ApiError::BadRequest(format!("invalid JSON body: {e}")),
                other => ApiError::BadRequest(format!("cannot read request body: {other}")),
            };
            actix_web::error::InternalError::from_response(error, api_error.error_response()).into()
        })
}

async fn not_found(request: HttpRequest) -> HttpResponse {
    ApiError::NotFound(format!(
        "no route for {} {}",
        request.method(),
        request.path()
    ))
    .error_response()
}

async fn method_not_allowed(request: HttpRequest) -> HttpResponse {
    ApiError::MethodNotAllowed(format!(
        "method {} is not allowed on {}",
        request.method(),
        request.path()
    ))
    .error_response()
}
