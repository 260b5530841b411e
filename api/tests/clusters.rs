//! Cluster registration against simulated clusters over real HTTP: probe, store sealed, list,
//! namespaces, remove; hostile kubeconfigs and failing probes store nothing.

#![allow(clippy::unwrap_used)]

mod common;

use actix_web::test::TestRequest;
use common::{Harness, app, call, with_token};
use mesh_schema::TenantScope;
use mesh_sim::World;
use serde_json::{Value, json};

const CLUSTERS: &str = "/apis/v1/mesh/clusters";

fn register(token: &str, body: Value) -> TestRequest {
    with_token(TestRequest::post().uri(CLUSTERS).set_json(body), token)
}

async fn a_simulated_cluster_registers_and_lists_its_namespaces(h: Harness) {
    let world = World::start(1).await.unwrap();
    let sim = world.cluster(0);
    let app = app(h.state()).await;
    let (status, body) = call(
        &app,
        register(
            &h.acme_editor,
            json!({"name": "east", "region": "eu-west", "kubeconfig": sim.kubeconfig_yaml()}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["name"], "east");
    assert_eq!(body["data"]["status"], "Reachable");
    assert_eq!(body["data"]["tenant_id"], "acme");
    assert_eq!(body["data"]["auth_kind"], "token");
    assert!(
        !body.to_string().contains(sim.token()),
        "no credentials in answers"
    );
    assert!(body["data"].get("kubeconfig").is_none());
    let stored = h.store.cluster_kubeconfig("east").await.unwrap();
    assert!(
        stored.contains(sim.token()),
        "the reduced kubeconfig is stored"
    );

    let (status, body) = call(
        &app,
        with_token(
            TestRequest::get().uri(&format!("{CLUSTERS}/east/namespaces")),
            &h.acme_viewer,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"default"), "{names:?}");
    assert!(!body.to_string().contains(sim.token()));

    // Tenant scoping: listed for acme, invisible to globex, everything for the admin.
    let list = |token: &str| with_token(TestRequest::get().uri(CLUSTERS), token);
    let (_, body) = call(&app, list(&h.acme_viewer)).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let (_, body) = call(&app, list(&h.globex_editor)).await;
    assert_eq!(body["data"], json!([]));
    let (_, body) = call(&app, list(&h.admin)).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    for request in [
        TestRequest::get().uri(&format!("{CLUSTERS}/east")),
        TestRequest::get().uri(&format!("{CLUSTERS}/east/namespaces")),
        TestRequest::delete().uri(&format!("{CLUSTERS}/east")),
    ] {
        let (status, body) = call(&app, with_token(request, &h.globex_editor)).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["err"], "cluster east not found");
    }

    // The name is taken, by whichever tenant.
    let (status, _) = call(
        &app,
        register(
            &h.globex_editor,
            json!({"name": "east", "region": "r", "kubeconfig": sim.kubeconfig_yaml()}),
        ),
    )
    .await;
    assert_eq!(status, 409);
    world.stop();
}

async fn a_rejected_token_answers_422_and_stores_nothing(h: Harness) {
    let world = World::start(1).await.unwrap();
    let sim = world.cluster(0);
    let app = app(h.state()).await;
    let kubeconfig = sim.kubeconfig_yaml_for("intruder", "not-the-token");
    let (status, body) = call(
        &app,
        register(
            &h.acme_editor,
            json!({"name": "east", "region": "eu", "kubeconfig": kubeconfig}),
        ),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let err = body["err"].as_str().unwrap();
    assert!(err.contains("rejected"), "{err}");
    assert!(err.contains("Unauthorized"), "{err}");
    assert!(!err.contains("not-the-token"), "{err}");
    assert!(
        h.store
            .list_registered_clusters(&TenantScope::All)
            .await
            .unwrap()
            .is_empty()
    );
    world.stop();
}

async fn an_unreachable_server_answers_422(h: Harness) {
    let app = app(h.state()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = mesh_sim::cluster::kubeconfig_yaml(
        "gone",
        &format!("http://127.0.0.1:{port}"),
        None,
        "u",
        "t",
    );
    let (status, body) = call(
        &app,
        register(
            &h.acme_editor,
            json!({"name": "gone", "region": "eu", "kubeconfig": kubeconfig}),
        ),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["err"].as_str().unwrap().contains("Unreachable"),
        "{body}"
    );
}

fn kubeconfig_with(server: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n    server: {server}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n{user}\n"
    )
}

async fn hostile_or_malformed_registrations_answer_400(h: Harness) {
    let app = app(h.state()).await;
    let exec = kubeconfig_with(
        "https://10.0.0.1:6443",
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n      args: [\"-c\", \"secret-command\"]",
    );
    let token_file = kubeconfig_with("https://10.0.0.1:6443", "    tokenFile: /etc/shadow");
    let ftp = kubeconfig_with("ftp://10.0.0.1", "    token: abc");
    let provider = kubeconfig_with("https://10.0.0.1", "    auth-provider:\n      name: gcp");
    let huge = format!(
        "{}\n# {}",
        kubeconfig_with("https://h", "    token: t"),
        "x".repeat(300 * 1024)
    );
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"name": "c", "region": "r", "kubeconfig": exec}),
            "exec credential plugins",
        ),
        (
            json!({"name": "c", "region": "r", "kubeconfig": token_file}),
            "tokenFile",
        ),
        (
            json!({"name": "c", "region": "r", "kubeconfig": ftp}),
            "scheme",
        ),
        (
            json!({"name": "c", "region": "r", "kubeconfig": provider}),
            "auth-provider",
        ),
        (
            json!({"name": "c", "region": "r", "kubeconfig": huge}),
            "bytes accepted",
        ),
        (
            json!({"name": "c", "region": "r", "kubeconfig": "clusters: [unclosed"}),
            "cannot be read",
        ),
        (
            json!({"name": "c", "region": "r", "kubeconfig": ""}),
            "empty",
        ),
        (
            json!({"name": "Bad_Name", "region": "r", "kubeconfig": "x"}),
            "invalid cluster name",
        ),
        (
            json!({"name": "c", "region": "r\u{7}", "kubeconfig": "x"}),
            "region",
        ),
        (
            json!({"name": "c", "region": "r"}),
            "missing field `kubeconfig`",
        ),
        (json!({"name": "c", "kubeconfig": 5}), "invalid type"),
        (
            json!({"name": "c", "kubeconfig": "x", "token": "y"}),
            "unknown field `token`",
        ),
    ];
    for (body, message) in cases {
        let (status, answer) = call(&app, register(&h.acme_editor, body)).await;
        assert_eq!(status, 400, "{message}: {answer}");
        let err = answer["err"].as_str().unwrap();
        assert!(err.contains(message), "{message}: {err}");
        assert!(!err.contains("secret-command"), "{err}");
    }
    assert!(
        h.store
            .list_registered_clusters(&TenantScope::All)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_member_cluster_cannot_be_removed(h: Harness) {
    let world = World::start(1).await.unwrap();
    let sim = world.cluster(0);
    let app = app(h.state()).await;
    for name in ["east", "west"] {
        let (status, body) = call(
            &app,
            register(
                &h.acme_editor,
                json!({"name": name, "region": "eu", "kubeconfig": sim.kubeconfig_yaml()}),
            ),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    h.seed_mesh("acme", "demo", &["east"]).await;
    let remove = |name: &str| {
        with_token(
            TestRequest::delete().uri(&format!("{CLUSTERS}/{name}")),
            &h.acme_editor,
        )
    };
    let (status, body) = call(&app, remove("east")).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["err"].as_str().unwrap().contains("member of a mesh"),
        "{body}"
    );
    let (status, body) = call(&app, remove("west")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(
        &app,
        with_token(
            TestRequest::get().uri(&format!("{CLUSTERS}/west")),
            &h.acme_editor,
        ),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(&app, remove("west")).await;
    assert_eq!(status, 404);
    world.stop();
}

on_every_backend!(
    a_simulated_cluster_registers_and_lists_its_namespaces,
    a_rejected_token_answers_422_and_stores_nothing,
    a_member_cluster_cannot_be_removed,
);

#[actix_web::test]
async fn hostile_or_malformed_registrations_answer_400_on_sqlite() {
    hostile_or_malformed_registrations_answer_400(Harness::sqlite().await).await;
}

#[actix_web::test]
async fn an_unreachable_server_answers_422_on_sqlite() {
    an_unreachable_server_answers_422(Harness::sqlite().await).await;
}
