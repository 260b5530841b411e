//! Black-box tests of the routes through actix-web's test server.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use actix_web::{App, test};
use mesh_api::{ApiState, ReadinessProbe, configure};
use mesh_core::VersionCatalog;
use serde_json::Value;

struct Failing;

impl ReadinessProbe for Failing {
    fn name(&self) -> &'static str {
        "bus"
    }
    fn check(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async { Err("cannot reach NATS".into()) })
    }
}

#[actix_web::test]
async fn istio_versions_lists_the_catalog_newest_first() {
    let app = test::init_service(
        App::new().configure(configure(ApiState::new(VersionCatalog::builtin()))),
    )
    .await;
    let request = test::TestRequest::get()
        .uri("/apis/v1/mesh/config/istioversions")
        .to_request();
    let body: Value = test::call_and_read_body_json(&app, request).await;
    assert_eq!(body["result"], true);
    let versions: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(versions, VersionCatalog::builtin().version_strings());
    assert!(versions.contains(&"1.30.3"));
}

#[actix_web::test]
async fn a_configured_catalog_replaces_the_builtin_one() {
    let catalog = VersionCatalog::from_strings(&["1.29.6", "1.30.3"]).unwrap();
    let app = test::init_service(App::new().configure(configure(ApiState::new(catalog)))).await;
    let request = test::TestRequest::get()
        .uri("/apis/v1/mesh/config/istioversions")
        .to_request();
    let body: Value = test::call_and_read_body_json(&app, request).await;
    assert_eq!(body["data"], serde_json::json!(["1.30.3", "1.29.6"]));
}

#[actix_web::test]
async fn unknown_routes_answer_a_json_404_in_the_envelope() {
    let app = test::init_service(
        App::new().configure(configure(ApiState::new(VersionCatalog::builtin()))),
    )
    .await;
    for uri in [
        "/apis/v1/mesh/nope",
        "/",
        "/apis/v2/mesh/config/istioversions",
    ] {
        let response =
            test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
        assert_eq!(response.status(), 404, "{uri}");
        let body: Value = test::read_body_json(response).await;
        assert_eq!(body["result"], false);
        assert!(body["err"].as_str().unwrap().contains(uri), "{body}");
    }
    let response = test::call_service(
        &app,
        test::TestRequest::delete()
            .uri("/apis/v1/mesh/config/istioversions")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), 405);
}

#[actix_web::test]
async fn readiness_names_the_failing_backend() {
    let state = ApiState::new(VersionCatalog::builtin()).with_probe(Arc::new(Failing));
    let app = test::init_service(App::new().configure(configure(state))).await;
    let response =
        test::call_service(&app, test::TestRequest::get().uri("/readyz").to_request()).await;
    assert_eq!(response.status(), 503);
    let body: Value = test::read_body_json(response).await;
    assert_eq!(body["err"], "not ready: bus unavailable");
    let health =
        test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(health.status(), 200);
}
