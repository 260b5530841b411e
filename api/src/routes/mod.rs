//! Route table of the API.
//!
//! - `GET /healthz`: the process is alive.
//! - `GET /readyz`: every backend answers (database, bus); 503 with the failing ones otherwise.
//! - `GET /metrics`: Prometheus text format ([`crate::metrics`]).
//! - `GET /apis/v1/mesh/openapi.json`: the OpenAPI document ([`crate::openapi`]).
//! - `GET /apis/v1/mesh/config/istioversions`: installable Istio versions, newest first.
//! - [`clusters`]: `POST|GET /clusters`, `GET|DELETE /clusters/{c}`, `GET /clusters/{c}/namespaces`.
//! - [`meshes`]: `POST|GET /meshes`, `GET|DELETE /meshes/{m}`, `POST /meshes/{m}/sampling`.
//! - [`resources`]: Istio resources — `GET|POST /meshes/{m}/resources` (batch, `?dryRun=true`),
//!   `GET|POST /meshes/{m}/namespaces/{ns}/{kind}`, `GET|DELETE …/{kind}/{name}`,
//!   `GET|POST /clusters/{c}/namespaces/{ns}/{kind}` (live list; a member's own objects),
//!   `GET|DELETE /clusters/{c}/namespaces/{ns}/{kind}/{name}`.
//! - [`microservices`]: `GET /meshes/{m}/namespaces/{ns}/microservices[/{name}]`.
//! - [`upgrade`]: `POST /meshes/{m}` (upgrade), `POST /meshes/{m}/canary`.
//! - [`settings`]: `GET|POST /meshes/{m}/autoinjectionnamespaces`, `GET|POST
//!   /meshes/{m}/outbound-traffic`.
//! - [`flows`]: `GET /meshes/{m}/flows`, `GET /meshes/{m}/flows/{id}`.
//! - [`events`]: `GET /meshes/{m}/events`, server-sent events.
//! - anything else: a JSON 404 (or 405 for a known path with another method) in the envelope.
//!
//! Every route under the base path except the version catalog and the OpenAPI document needs a
//! [`crate::auth::Caller`]; [`crate::auth::authenticate`] runs on the whole scope. Path, query and
//! body extraction errors answer 4xx in the envelope. [`crate::metrics::track`] wraps everything,
//! unknown paths included, so `/metrics` counts every request by its route pattern.

pub mod clusters;
pub mod commands;
pub mod config;
pub mod events;
pub mod flows;
pub mod health;
pub mod meshes;
pub mod microservices;
pub mod resources;
pub mod settings;
pub mod upgrade;

use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use crate::auth::authenticate;
use crate::envelope::ApiError;
use crate::state::ApiState;

/// Mounts every route and the JSON error handlers on an actix-web app.
pub fn configure(state: ApiState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        let body_limit = state.body_limit;
        cfg.app_data(web::Data::new(state))
            .app_data(json_config(body_limit))
            .app_data(query_config())
            .app_data(path_config())
            .service(
                // An empty prefix matches every path, so the middleware sees unknown ones too.
                web::scope("")
                    .wrap(from_fn(crate::metrics::track))
                    .service(resource("/healthz").get(health::healthz))
                    .service(resource("/readyz").get(health::readyz))
                    .service(resource("/metrics").get(crate::metrics::scrape))
                    .service(api_scope())
                    .default_service(web::to(not_found)),
            )
            .default_service(web::to(not_found));
    }
}

/// The seed-compatible routes under [`crate::BASE_PATH`].
fn api_scope() -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::scope(crate::BASE_PATH)
        .wrap(from_fn(authenticate))
        .service(resource("/openapi.json").get(crate::openapi::openapi_json))
        .service(resource("/config/istioversions").get(config::istio_versions))
        .service(
            resource("/clusters")
                .get(clusters::list)
                .post(clusters::register),
        )
        .service(
            resource("/clusters/{cluster}")
                .get(clusters::get)
                .delete(clusters::remove),
        )
        .service(resource("/clusters/{cluster}/namespaces").get(clusters::namespaces))
        .service(resource("/meshes").get(meshes::list).post(meshes::create))
        .service(
            resource("/meshes/{mesh}")
                .get(meshes::get)
                .post(upgrade::upgrade)
                .delete(meshes::delete),
        )
        .service(resource("/meshes/{mesh}/canary").post(upgrade::canary))
        .service(resource("/meshes/{mesh}/sampling").post(meshes::set_sampling))
        .service(
            resource("/meshes/{mesh}/autoinjectionnamespaces")
                .get(settings::get_auto_injection)
                .post(settings::set_auto_injection),
        )
        .service(
            resource("/meshes/{mesh}/outbound-traffic")
                .get(settings::get_outbound_traffic)
                .post(settings::set_outbound_traffic),
        )
        .service(
            resource("/meshes/{mesh}/resources")
                .get(resources::list_all)
                .post(resources::apply_batch),
        )
        // Before the Istio kinds' routes, which would take `microservices` for a kind.
        .service(
            resource("/meshes/{mesh}/namespaces/{namespace}/microservices")
                .get(microservices::list),
        )
        .service(
            resource("/meshes/{mesh}/namespaces/{namespace}/microservices/{name}")
                .get(microservices::get),
        )
        .service(
            resource("/meshes/{mesh}/namespaces/{namespace}/{kind}")
                .get(resources::list_kind)
                .post(resources::apply_one),
        )
        .service(
            resource("/meshes/{mesh}/namespaces/{namespace}/{kind}/{name}")
                .get(resources::get_one)
                .delete(resources::delete_one),
        )
        .service(
            resource("/clusters/{cluster}/namespaces/{namespace}/{kind}")
                .get(resources::list_cluster_kind)
                .post(resources::apply_cluster_one),
        )
        .service(
            resource("/clusters/{cluster}/namespaces/{namespace}/{kind}/{name}")
                .get(resources::get_cluster_one)
                .delete(resources::delete_cluster_one),
        )
        .service(resource("/meshes/{mesh}/flows").get(flows::list))
        .service(resource("/meshes/{mesh}/flows/{flow}").get(flows::get))
        .service(resource("/meshes/{mesh}/events").get(events::stream))
}

/// A resource whose other methods answer 405 in the envelope.
struct Resource(actix_web::Resource);

fn resource(path: &str) -> Resource {
    Resource(web::resource(path))
}

impl Resource {
    fn get<F, Args>(self, handler: F) -> Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        Self(self.0.route(web::get().to(handler)))
    }

    fn post<F, Args>(self, handler: F) -> Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        Self(self.0.route(web::post().to(handler)))
    }

    fn delete<F, Args>(self, handler: F) -> Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        Self(self.0.route(web::delete().to(handler)))
    }
}

impl actix_web::dev::HttpServiceFactory for Resource {
    fn register(self, config: &mut actix_web::dev::AppService) {
        self.0
            .default_service(web::to(method_not_allowed))
            .register(config);
    }
}

/// Query strings that do not parse: 400 in the envelope.
fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _request| {
        let api_error = ApiError::BadRequest(format!("invalid query string: {error}"));
        actix_web::error::InternalError::from_response(error, api_error.error_response()).into()
    })
}

/// Path segments that do not parse: 400 in the envelope.
fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|error, _request| {
        let api_error = ApiError::BadRequest(format!("invalid path: {error}"));
        actix_web::error::InternalError::from_response(error, api_error.error_response()).into()
    })
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
