//! Who may call what: tokens, cookies, roles, tenants and the trusted-proxy tenant header.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use actix_web::test::TestRequest;
use common::{Harness, app, call, with_token};
use mesh_api::ApiState;
use mesh_core::VersionCatalog;

async fn anonymous_requests_get_401_except_on_public_routes(h: Harness) {
    let app = app(h.state()).await;
    for uri in [
        "/apis/v1/mesh/meshes",
        "/apis/v1/mesh/clusters",
        "/apis/v1/mesh/meshes/demo",
        "/apis/v1/mesh/meshes/demo/events",
    ] {
        let (status, body) = call(&app, TestRequest::get().uri(uri)).await;
        assert_eq!(status, 401, "{uri}: {body}");
        assert_eq!(body["result"], false);
        assert!(body["err"].as_str().unwrap().contains("Bearer"), "{body}");
    }
    // Writes are refused before their bodies are even read.
    let (status, _) = call(
        &app,
        TestRequest::post()
            .uri("/apis/v1/mesh/meshes")
            .insert_header(("Content-Type", "application/json"))
            .set_payload("{not json"),
    )
    .await;
    assert_eq!(status, 401);
    for uri in ["/healthz", "/readyz", "/apis/v1/mesh/config/istioversions"] {
        let (status, _) = call(&app, TestRequest::get().uri(uri)).await;
        assert_eq!(status, 200, "{uri}");
    }
    let (status, _) = call(&app, TestRequest::get().uri("/apis/v1/mesh/nope")).await;
    assert_eq!(status, 404);
}

async fn bad_revoked_and_non_bearer_credentials_get_401(h: Harness) {
    let app = app(h.state()).await;
    let uri = "/apis/v1/mesh/meshes";
    let (status, body) = call(&app, with_token(TestRequest::get().uri(uri), "mmt_nope")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        !body.to_string().contains("mmt_nope"),
        "tokens are not echoed"
    );
    let (status, _) = call(
        &app,
        TestRequest::get()
            .uri(uri)
            .insert_header(("Authorization", format!("Basic {}", h.acme_editor))),
    )
    .await;
    assert_eq!(status, 401);

    let (status, _) = call(
        &app,
        with_token(TestRequest::get().uri(uri), &h.acme_editor),
    )
    .await;
    assert_eq!(status, 200);
    let id = h
        .store
        .list_api_tokens()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.principal == "user:acme-editor")
        .unwrap()
        .id;
    h.store.revoke_api_token(id).await.unwrap();
    let (status, _) = call(
        &app,
        with_token(TestRequest::get().uri(uri), &h.acme_editor),
    )
    .await;
    assert_eq!(status, 401);
}

async fn the_tke_cookie_authenticates_like_a_bearer_token(h: Harness) {
    let app = app(h.state()).await;
    let (status, body) = call(
        &app,
        TestRequest::get()
            .uri("/apis/v1/mesh/meshes")
            .cookie(actix_web::cookie::Cookie::new("tke", h.acme_viewer.clone())),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn viewers_read_but_may_not_write(h: Harness) {
    h.seed_mesh("acme", "demo", &["c1"]).await;
    let app = app(h.state()).await;
    let (status, _) = call(
        &app,
        with_token(
            TestRequest::get().uri("/apis/v1/mesh/meshes/demo"),
            &h.acme_viewer,
        ),
    )
    .await;
    assert_eq!(status, 200);
    let writes = [
        TestRequest::post()
            .uri("/apis/v1/mesh/meshes/demo/sampling")
            .set_json(serde_json::json!({"traceSampling": 5.0})),
        TestRequest::delete().uri("/apis/v1/mesh/meshes/demo"),
        TestRequest::delete().uri("/apis/v1/mesh/clusters/c1"),
        TestRequest::post()
            .uri("/apis/v1/mesh/clusters")
            .set_json(serde_json::json!({"name": "x", "region": "r", "kubeconfig": "k"})),
    ];
    for request in writes {
        let (status, body) = call(&app, with_token(request, &h.acme_viewer)).await;
        assert_eq!(status, 403, "{body}");
        assert!(body["err"].as_str().unwrap().contains("viewer"), "{body}");
    }
    assert_eq!(h.pending_commands(), 0, "nothing was published");
}

async fn tenants_never_see_each_others_meshes(h: Harness) {
    h.seed_mesh("acme", "acme-mesh", &["a1"]).await;
    h.seed_mesh("globex", "globex-mesh", &["g1"]).await;
    let app = app(h.state()).await;

    let names = |body: &serde_json::Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, body) = call(
        &app,
        with_token(
            TestRequest::get().uri("/apis/v1/mesh/meshes"),
            &h.acme_editor,
        ),
    )
    .await;
    assert_eq!(names(&body), ["acme-mesh"]);
    let (_, body) = call(
        &app,
        with_token(
            TestRequest::get().uri("/apis/v1/mesh/meshes?type=simple"),
            &h.globex_editor,
        ),
    )
    .await;
    assert_eq!(names(&body), ["globex-mesh"]);
    let (_, body) = call(
        &app,
        with_token(TestRequest::get().uri("/apis/v1/mesh/meshes"), &h.admin),
    )
    .await;
    assert_eq!(names(&body), ["acme-mesh", "globex-mesh"]);

    // Another tenant's mesh answers exactly like a missing one, on every route.
    for mesh in ["globex-mesh", "no-such-mesh"] {
        let requests = [
            TestRequest::get().uri(&format!("/apis/v1/mesh/meshes/{mesh}")),
            TestRequest::get().uri(&format!("/apis/v1/mesh/meshes/{mesh}/flows")),
            TestRequest::get().uri(&format!("/apis/v1/mesh/meshes/{mesh}/flows/1")),
            TestRequest::get().uri(&format!("/apis/v1/mesh/meshes/{mesh}/events")),
            TestRequest::delete().uri(&format!("/apis/v1/mesh/meshes/{mesh}")),
            TestRequest::post()
                .uri(&format!("/apis/v1/mesh/meshes/{mesh}/sampling"))
                .set_json(serde_json::json!({"traceSampling": 1.0})),
        ];
        for request in requests {
            let (status, body) = call(&app, with_token(request, &h.acme_editor)).await;
            assert_eq!(status, 404, "{mesh}: {body}");
            assert_eq!(body["err"], format!("mesh {mesh} not found"));
        }
    }
    assert_eq!(h.pending_commands(), 0);
}

/// Fills the path parameters of a documented route: `mesh` and `cluster` with the given names,
/// the others with plausible values.
fn concrete(path: &str, mesh: &str, cluster: &str) -> String {
    path.replace("{mesh}", mesh)
        .replace("{cluster}", cluster)
        .replace("{namespace}", "default")
        .replace("{kind}", "virtualservices")
        .replace("{name}", "reviews")
        .replace("{flow}", "1")
}

/// Every documented route that names a mesh or a cluster answers another tenant's mesh or
/// cluster exactly as it answers one that does not exist (same status, same message with the
/// name swapped), and never with a success or a published command.
async fn every_route_hides_other_tenants_meshes_and_clusters(h: Harness) {
    use mesh_schema::store::cluster::RegisterCluster;
    h.seed_mesh("acme", "acme-mesh", &["a1"]).await;
    h.seed_mesh("globex", "globex-mesh", &["g1"]).await;
    h.store
        .register_cluster(RegisterCluster {
            tenant_id: "globex".into(),
            name: "g1".into(),
            region: "eu-west".into(),
            server: "https://127.0.0.1:6443".into(),
            auth_kind: "token".into(),
            kubeconfig: "apiVersion: v1".into(),
            status: "Reachable".into(),
            status_message: "ok".into(),
        })
        .await
        .unwrap();
    let app = app(h.state()).await;
    let document = mesh_api::openapi::document();
    let mut checked = 0;
    for (path, item) in &document.paths.paths {
        if !path.contains("{mesh}") && !path.contains("{cluster}") {
            continue;
        }
        let methods = [
            ("get", item.get.is_some()),
            ("post", item.post.is_some()),
            ("delete", item.delete.is_some()),
        ];
        for (method, present) in methods {
            if !present {
                continue;
            }
            let answer = |mesh: &str, cluster: &str| {
                let uri = concrete(path, mesh, cluster);
                let request = match method {
                    "get" => TestRequest::get(),
                    "post" => TestRequest::post()
                        .insert_header(("content-type", "application/json"))
                        .set_payload("{}"),
                    _ => TestRequest::delete(),
                };
                with_token(request.uri(&uri), &h.acme_editor)
            };
            let (foreign_status, foreign) = call(&app, answer("globex-mesh", "g1")).await;
            let (missing_status, missing) =
                call(&app, answer("no-such-mesh", "no-such-cluster")).await;
            let route = format!("{} {path}", method.to_uppercase());
            assert!(
                (400..500).contains(&foreign_status),
                "{route}: another tenant's answer is {foreign_status}: {foreign}"
            );
            assert_eq!(
                foreign_status, missing_status,
                "{route}: {foreign} vs {missing}"
            );
            let foreign_text = foreign["err"]
                .as_str()
                .unwrap_or_default()
                .replace("globex-mesh", "no-such-mesh")
                .replace("g1", "no-such-cluster");
            assert_eq!(
                foreign_text,
                missing["err"].as_str().unwrap_or_default(),
                "{route}"
            );
            if method != "post" {
                assert_eq!(foreign_status, 404, "{route}: {foreign}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} routes checked");
    assert_eq!(h.pending_commands(), 0, "nothing was published");
}

async fn the_tenant_header_counts_only_from_a_trusted_proxy(h: Harness) {
    h.seed_mesh("acme", "acme-mesh", &["a1"]).await;
    h.seed_mesh("globex", "globex-mesh", &["g1"]).await;
    let proxy: SocketAddr = "10.0.0.5:40000".parse().unwrap();
    let stranger: SocketAddr = "10.0.0.9:40000".parse().unwrap();
    let app = app(h.state().with_trusted_proxies(vec![proxy.ip()])).await;
    let list = |peer: SocketAddr, token: &str, tenant: &str| {
        with_token(
            TestRequest::get()
                .uri("/apis/v1/mesh/meshes?type=simple")
                .peer_addr(peer)
                .insert_header(("X-Remote-TenantID", tenant.to_owned())),
            token,
        )
    };
    let count = |body: &serde_json::Value| body["data"].as_array().unwrap().len();

    let (_, body) = call(&app, list(proxy, &h.admin, "acme")).await;
    assert_eq!(count(&body), 1, "the proxy pins its admin token to acme");
    assert_eq!(body["data"][0]["name"], "acme-mesh");
    let (_, body) = call(&app, list(stranger, &h.admin, "acme")).await;
    assert_eq!(count(&body), 2, "ignored from an untrusted address");
    let (_, body) = call(&app, list(proxy, &h.acme_editor, "globex")).await;
    assert_eq!(
        body["data"][0]["name"], "acme-mesh",
        "never widens an editor"
    );
    assert_eq!(count(&body), 1);
    let (status, _) = call(&app, list(proxy, &h.admin, "bad.tenant")).await;
    assert_eq!(status, 400);
}

on_every_backend!(
    anonymous_requests_get_401_except_on_public_routes,
    bad_revoked_and_non_bearer_credentials_get_401,
    the_tke_cookie_authenticates_like_a_bearer_token,
    viewers_read_but_may_not_write,
    tenants_never_see_each_others_meshes,
    every_route_hides_other_tenants_meshes_and_clusters,
    the_tenant_header_counts_only_from_a_trusted_proxy,
);

#[actix_web::test]
async fn without_required_tokens_callers_are_anonymous_administrators() {
    let h = Harness::sqlite().await;
    h.seed_mesh("acme", "demo", &["c1"]).await;
    let app = app(h.state().with_auth_required(false)).await;
    let (status, body) = call(&app, TestRequest::get().uri("/apis/v1/mesh/meshes/demo")).await;
    assert_eq!(status, 200, "{body}");
}

#[actix_web::test]
async fn without_a_store_protected_routes_cannot_authenticate() {
    let app = app(ApiState::new(VersionCatalog::builtin())).await;
    let (status, _) = call(&app, TestRequest::get().uri("/apis/v1/mesh/meshes")).await;
    assert_eq!(status, 401);
    let (status, _) = call(
        &app,
        with_token(TestRequest::get().uri("/apis/v1/mesh/meshes"), "mmt_x"),
    )
    .await;
    assert_eq!(status, 503);
}
