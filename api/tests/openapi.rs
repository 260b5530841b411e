//! The OpenAPI document: committed, current, served, and true to the route table.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use actix_web::App;
use actix_web::test as actix_test;
use mesh_api::{ApiState, configure};
use mesh_core::VersionCatalog;
use serde_json::Value;

/// Where the document is committed.
fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
}

#[test]
fn the_committed_openapi_document_is_current() {
    let generated = mesh_api::openapi::document_json();
    let path = committed_path();
    if std::env::var_os("MESH_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, generated).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: the API changed. Regenerate it with\n\n    \
         MESH_UPDATE_OPENAPI=1 cargo test -p mesh-api --test openapi\n\nand commit the result.",
        path.display()
    );
}

#[actix_web::test]
async fn the_served_document_is_the_generated_one_and_public() {
    let app = actix_test::init_service(
        App::new().configure(configure(ApiState::new(VersionCatalog::builtin()))),
    )
    .await;
    let response = actix_test::call_service(
        &app,
        actix_test::TestRequest::get()
            .uri("/apis/v1/mesh/openapi.json")
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/json"
    );
    let body = actix_test::read_body(response).await;
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        mesh_api::openapi::document_json()
    );
}

#[actix_web::test]
async fn every_documented_operation_is_routed_and_secured_ones_need_a_token() {
    let app = actix_test::init_service(
        App::new().configure(configure(ApiState::new(VersionCatalog::builtin()))),
    )
    .await;
    let document: Value = serde_json::from_str(mesh_api::openapi::document_json()).unwrap();
    let paths = document["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        // Fill every path parameter with a valid value.
        let uri = path
            .replace("{mesh}", "prod")
            .replace("{cluster}", "c1")
            .replace("{flow}", "1")
            .replace("{namespace}", "default")
            .replace("{kind}", "virtualservices")
            .replace("{name}", "reviews");
        assert!(!uri.contains('{'), "unfilled parameter in {path}");
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let request = actix_test::TestRequest::default()
                .method(method.to_uppercase().parse().unwrap())
                .uri(&uri)
                .to_request();
            let response = actix_test::call_service(&app, request).await;
            let status = response.status().as_u16();
            let secured = operation
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            if secured {
                assert_eq!(status, 401, "{method} {uri} without a token");
                let responses = operation["responses"].as_object().unwrap();
                assert!(
                    responses.contains_key("401"),
                    "{method} {path} documents 401"
                );
            } else {
                assert!(
                    status != 404 && status != 405 && status != 401,
                    "{method} {uri} answered {status}"
                );
            }
        }
    }
    assert!(operations >= 18, "only {operations} operations documented");
}

#[test]
fn the_document_declares_the_envelope_and_the_error_statuses() {
    let document: Value = serde_json::from_str(mesh_api::openapi::document_json()).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["tke"]["in"], "cookie");
    let error = &document["components"]["schemas"]["ErrorResponse"]["properties"];
    for field in ["result", "err", "rev", "data"] {
        assert!(error.get(field).is_some(), "ErrorResponse.{field}");
    }
    let mut statuses = std::collections::BTreeSet::new();
    for item in document["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            statuses.extend(operation["responses"].as_object().unwrap().keys().cloned());
        }
    }
    for status in [
        "200", "201", "202", "400", "401", "403", "404", "405", "409", "413", "415", "422",
    ] {
        assert!(statuses.contains(status), "no operation documents {status}");
    }
}
