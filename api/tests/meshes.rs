//! Meshes: create (validation, command published, `?wait=`), list, get, delete, sampling.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use actix_web::test::TestRequest;
use common::{Harness, app, call, with_token};
use mesh_bus::event::{CommandRejected, FlowFinished, FlowOutcome, FlowStarted};
use mesh_bus::{Bus, Command, EventEnvelope};
use mesh_schema::store::cluster::RegisterCluster;
use serde_json::{Value, json};

const MESHES: &str = "/apis/v1/mesh/meshes";

async fn register(h: &Harness, tenant: &str, name: &str) {
    h.store
        .register_cluster(RegisterCluster {
            tenant_id: tenant.into(),
            name: name.into(),
            region: "eu-west".into(),
            server: "https://127.0.0.1:6443".into(),
            auth_kind: "token".into(),
            kubeconfig: "apiVersion: v1".into(),
            status: "Reachable".into(),
            status_message: "ok".into(),
        })
        .await
        .unwrap();
}

fn mesh_body() -> Value {
    json!({
        "name": "demo",
        "title": "Demo",
        "region": "eu-west",
        "version": "1.30.3",
        "mode": "multi-primary",
        "clusters": [
            {"name": "c1", "role": "master", "network": "net1"},
            {"name": "c2", "role": "master"}
        ],
        "traceSampling": 5.0,
        "config": {"outboundTrafficPolicy": "REGISTRY_ONLY"}
    })
}

fn post(token: &str, body: &Value) -> TestRequest {
    with_token(TestRequest::post().uri(MESHES).set_json(body), token)
}

async fn creating_a_mesh_publishes_create_mesh_and_answers_202(h: Harness) {
    register(&h, "acme", "c1").await;
    register(&h, "acme", "c2").await;
    let app = app(h.state()).await;
    let (status, body) = call(&app, post(&h.acme_editor, &mesh_body())).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["result"], true);
    assert_eq!(body["data"]["mesh"], "demo");
    assert_eq!(body["data"]["status"], "Accepted");
    let command_id = body["data"]["commandId"].as_str().unwrap().to_owned();

    let delivery = h.next_command().await;
    let envelope = delivery.envelope();
    assert_eq!(envelope.id.to_string(), command_id);
    assert_eq!(envelope.tenant.as_str(), "acme");
    assert_eq!(envelope.mesh.as_str(), "demo");
    assert_eq!(envelope.principal, "user:acme-editor");
    let Command::CreateMesh(create) = &envelope.body else {
        panic!("not CreateMesh: {:?}", envelope.body);
    };
    assert_eq!(create.version, "1.30.3");
    assert_eq!(create.title, "Demo");
    let networks: Vec<&str> = create.clusters.iter().map(|c| c.network.as_str()).collect();
    assert_eq!(
        networks,
        ["net1", "c2"],
        "default network is the cluster name"
    );
    assert_eq!(create.config["traceSampling"], 5.0);
    assert_eq!(create.config["outboundTrafficPolicy"], "REGISTRY_ONLY");
}

async fn a_bad_mesh_is_refused_with_every_problem_and_its_path(h: Harness) {
    register(&h, "acme", "c1").await;
    register(&h, "globex", "g1").await;
    let app = app(h.state()).await;
    let body = json!({
        "name": "Bad_Name",
        "region": "eu",
        "version": "9.9.9",
        "mode": "single",
        "clusters": [
            {"name": "c1", "role": "boss"},
            {"name": "g1", "role": "master"},
            {"name": "nowhere", "role": "master", "network": "Bad Net"}
        ],
        "traceSampling": 150
    });
    let (status, body) = call(&app, post(&h.acme_editor, &body)).await;
    assert_eq!(status, 400, "{body}");
    let err = body["err"].as_str().unwrap();
    for expected in [
        "name: invalid mesh name",
        "clusters[0].role: unknown role \"boss\"",
        "version: Istio version 9.9.9 is not installable; installable versions: ",
        "1.30.3",
        "clusters[2].network",
        "config.traceSampling",
        "clusters[1].name: cluster g1 is not registered",
        "clusters[2].name: cluster nowhere is not registered",
    ] {
        assert!(err.contains(expected), "{expected:?} missing in {err}");
    }
    assert_eq!(h.pending_commands(), 0, "nothing published");
}

async fn malformed_and_oversized_bodies_answer_4xx_in_the_envelope(h: Harness) {
    register(&h, "acme", "c1").await;
    let app = app(h.state()).await;
    let raw = |payload: &str| {
        with_token(
            TestRequest::post()
                .uri(MESHES)
                .insert_header(("Content-Type", "application/json"))
                .set_payload(payload.to_owned()),
            &h.acme_editor,
        )
    };
    let mut unknown = mesh_body();
    unknown["colour"] = json!("blue");
    let mut wrong_type = mesh_body();
    wrong_type["clusters"] = json!("c1");
    let mut unknown_config = mesh_body();
    unknown_config["config"] = json!({"traceSamplin": 1});
    let mut both = mesh_body();
    both["config"] = json!({"traceSampling": 1});
    let mut bad_mode = mesh_body();
    bad_mode["mode"] = json!("triple");
    let cases: Vec<(TestRequest, u16, &str)> = vec![
        (raw("{not json"), 400, "invalid JSON body"),
        (raw("[]"), 400, "invalid JSON body"),
        (raw(""), 400, "invalid JSON body"),
        (
            post(&h.acme_editor, &unknown),
            400,
            "unknown field `colour`",
        ),
        (post(&h.acme_editor, &wrong_type), 400, "invalid type"),
        (post(&h.acme_editor, &unknown_config), 400, "traceSamplin"),
        (
            post(&h.acme_editor, &both),
            400,
            "given both inline and as config",
        ),
        (
            post(&h.acme_editor, &bad_mode),
            400,
            "mode: unknown mesh mode",
        ),
        (
            raw(&format!("{{\"name\":\"{}\"}}", "a".repeat(2 * 1024 * 1024))),
            413,
            "exceeds the limit",
        ),
        (
            with_token(
                TestRequest::post().uri(MESHES).set_payload("{}"),
                &h.acme_editor,
            ),
            415,
            "application/json",
        ),
        (
            with_token(
                TestRequest::post()
                    .uri(&format!("{MESHES}?wait=forever"))
                    .set_json(mesh_body()),
                &h.acme_editor,
            ),
            400,
            "invalid wait",
        ),
    ];
    for (request, expected, message) in cases {
        let (status, body) = call(&app, request).await;
        assert_eq!(status, expected, "{message}: {body}");
        assert_eq!(body["result"], false);
        assert!(
            body["err"].as_str().unwrap().contains(message),
            "{message}: {body}"
        );
    }
    assert_eq!(h.pending_commands(), 0);
}

async fn a_taken_name_answers_409(h: Harness) {
    register(&h, "acme", "c1").await;
    register(&h, "acme", "c2").await;
    h.seed_mesh("globex", "demo", &["g1"]).await;
    let app = app(h.state()).await;
    let (status, body) = call(&app, post(&h.acme_editor, &mesh_body())).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["err"], "mesh demo already exists");
}

/// Plays the worker: takes the next command and answers with `events` caused by it.
async fn worker_answers(h: &Harness, events: Vec<mesh_bus::Event>) {
    let delivery = h.next_command().await;
    for event in events {
        let envelope = EventEnvelope::caused_by(delivery.envelope(), event).unwrap();
        h.bus.publish_event(&envelope).await.unwrap();
    }
    delivery.ack().await.unwrap();
}

async fn waiting_answers_the_flow_outcome(h: Harness) {
    register(&h, "acme", "c1").await;
    register(&h, "acme", "c2").await;
    let app = app(h.state()).await;
    let request = with_token(
        TestRequest::post()
            .uri(&format!("{MESHES}?wait=10s"))
            .set_json(mesh_body()),
        &h.acme_editor,
    );
    let worker = worker_answers(
        &h,
        vec![
            FlowStarted {
                flow_id: 7,
                flow: "install".into(),
            }
            .into(),
            FlowFinished {
                flow_id: 7,
                outcome: FlowOutcome::Succeeded,
                detail: None,
            }
            .into(),
        ],
    );
    let ((status, body), ()) = futures::join!(call(&app, request), worker);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "Succeeded");
    assert_eq!(body["data"]["flowId"], 7);
}

async fn a_rejected_command_answers_409_when_waiting(h: Harness) {
    h.seed_mesh("acme", "demo", &["c1"]).await;
    let app = app(h.state()).await;
    let request = with_token(
        TestRequest::delete().uri(&format!("{MESHES}/demo?wait=10s")),
        &h.acme_editor,
    );
    let worker = worker_answers(
        &h,
        vec![
            CommandRejected {
                command: "DeleteMesh".into(),
                reason: "an install flow is running".into(),
            }
            .into(),
        ],
    );
    let ((status, body), ()) = futures::join!(call(&app, request), worker);
    assert_eq!(status, 409, "{body}");
    assert!(
        body["err"]
            .as_str()
            .unwrap()
            .contains("an install flow is running")
    );
}

async fn a_wait_that_runs_out_answers_202_with_what_is_known(h: Harness) {
    h.seed_mesh("acme", "demo", &["c1"]).await;
    let app = app(h.state()).await;
    let started = std::time::Instant::now();
    let (status, body) = call(
        &app,
        with_token(
            TestRequest::post()
                .uri(&format!("{MESHES}/demo/sampling?wait=300ms"))
                .set_json(json!({"traceSampling": 5.0})),
            &h.acme_editor,
        ),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["status"], "Accepted");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let delivery = h.next_command().await;
    let Command::SetTraceSampling(sampling) = &delivery.envelope().body else {
        panic!("not SetTraceSampling");
    };
    assert_eq!(sampling.percent.get(), 5.0);
}

async fn sampling_is_bounded_and_typed(h: Harness) {
    h.seed_mesh("acme", "demo", &["c1"]).await;
    let app = app(h.state()).await;
    for (payload, message) in [
        (json!({"traceSampling": 100.5}), "from 0 to 100"),
        (json!({"traceSampling": -1}), "from 0 to 100"),
        (json!({"traceSampling": "five"}), "invalid type"),
        (json!({"traceSampling": 1, "x": 1}), "unknown field"),
        (json!({}), "missing field"),
    ] {
        let (status, body) = call(
            &app,
            with_token(
                TestRequest::post()
                    .uri(&format!("{MESHES}/demo/sampling"))
                    .set_json(&payload),
                &h.acme_editor,
            ),
        )
        .await;
        assert_eq!(status, 400, "{payload}: {body}");
        assert!(body["err"].as_str().unwrap().contains(message), "{body}");
    }
    assert_eq!(h.pending_commands(), 0);
}

async fn a_mesh_reads_with_config_phases_load_balancers_and_generation(h: Harness) {
    h.seed_mesh("acme", "demo", &["c1", "c2"]).await;
    h.store
        .upsert_lb_resource("c1/ew", "demo", "10.0.0.1")
        .await
        .unwrap();
    h.store
        .update_member_phase("c2", "Linking", "", None)
        .await
        .unwrap();
    let app = app(h.state()).await;
    let (status, body) = call(
        &app,
        with_token(
            TestRequest::get().uri(&format!("{MESHES}/demo")),
            &h.acme_viewer,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    assert_eq!(data["status"], "Running");
    assert_eq!(data["version"], "1.30.3");
    assert_eq!(data["last_version"], "");
    assert_eq!(data["config"]["traceSampling"], 5.0);
    assert_eq!(data["clusters"][0]["name"], "c1");
    assert_eq!(data["clusters"][1]["phase"], "Linking");
    assert_eq!(data["lb_resources"][0]["status"], "10.0.0.1");
    assert_eq!(body["rev"], data["generation"]);

    let (status, body) = call(
        &app,
        with_token(
            TestRequest::get().uri(&format!("{MESHES}?type=simple")),
            &h.acme_viewer,
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body["data"][0].get("config").is_none(), "{body}");
    let (status, body) = call(
        &app,
        with_token(
            TestRequest::get().uri(&format!("{MESHES}?type=odd")),
            &h.acme_viewer,
        ),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = call(
        &app,
        with_token(
            TestRequest::get().uri(&format!("{MESHES}/Not_A_Name")),
            &h.acme_viewer,
        ),
    )
    .await;
    assert_eq!(status, 400);
}

async fn deleting_a_mesh_publishes_delete_mesh(h: Harness) {
    h.seed_mesh("globex", "demo", &["g1"]).await;
    let app = app(h.state()).await;
    // An administrator acts in the mesh's tenant.
    let (status, body) = call(
        &app,
        with_token(
            TestRequest::delete().uri(&format!("{MESHES}/demo")),
            &h.admin,
        ),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let delivery = h.next_command().await;
    assert!(matches!(delivery.envelope().body, Command::DeleteMesh(_)));
    assert_eq!(delivery.envelope().tenant.as_str(), "globex");
    assert_eq!(delivery.envelope().principal, "user:ops-admin");
}

async fn resource_and_setting_routes_refuse_bad_input_with_nothing_published(h: Harness) {
    h.seed_mesh("acme", "shop", &["a1"]).await;
    let app = app(h.state()).await;
    let post_text = |uri: &str, content_type: &str, body: String| {
        with_token(
            TestRequest::post()
                .uri(uri)
                .insert_header(("content-type", content_type.to_owned()))
                .set_payload(body),
            &h.acme_editor,
        )
    };
    let resources = format!("{MESHES}/shop/resources");
    let huge = format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: big}}\nspec:\n  hosts: [\"{}\"]\n",
        "a".repeat(5 * 1024 * 1024)
    );
    let cases: Vec<(TestRequest, u16, &str)> = vec![
        (post_text(&resources, "application/yaml", huge), 413, "exceeds the limit"),
        (
            post_text(&resources, "application/yaml", "kind: [unclosed".into()),
            400,
            "",
        ),
        (
            post_text(
                &resources,
                "application/yaml",
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: Bad_Name}\nspec: {hosts: [a]}\n".into(),
            ),
            400,
            "metadata.name",
        ),
        (
            post_text(
                &resources,
                "application/yaml",
                "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: w}\nspec:\n  hosts: [a]\n  http:\n  - route:\n    - {destination: {host: a}, weight: -5}\n".into(),
            ),
            422,
            "spec.http[0].route[0].weight",
        ),
        (
            post_text(&format!("{resources}?cluster=elsewhere"), "application/yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: w}\nspec: {hosts: [a]}\n".into()),
            404,
            "cluster elsewhere not found",
        ),
        (
            post_text(&format!("{resources}?delete=true"), "application/yaml", "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: never}\nspec: {hosts: [a]}\n".into()),
            404,
            "VirtualService default/never",
        ),
        (
            post_text(
                &format!("{MESHES}/shop/autoinjectionnamespaces"),
                "application/json",
                json!({"cluster": "a1", "namespaces": ["kube-system"]}).to_string(),
            ),
            400,
            "reserved",
        ),
        (
            post_text(
                &format!("{MESHES}/shop/autoinjectionnamespaces"),
                "application/json",
                json!({"cluster": "a1", "namespaces": ["Not_A_Label"]}).to_string(),
            ),
            400,
            "namespaces[0]",
        ),
        (
            post_text(
                &format!("{MESHES}/shop/autoinjectionnamespaces"),
                "application/json",
                json!({"cluster": "z9", "namespaces": ["web"]}).to_string(),
            ),
            422,
            "not a member",
        ),
        (
            post_text(
                &format!("{MESHES}/shop/outbound-traffic"),
                "application/json",
                json!({"outboundTrafficPolicy": "SOMETIMES"}).to_string(),
            ),
            400,
            "unknown variant",
        ),
        (
            with_token(
                TestRequest::get().uri(&format!("{MESHES}/shop/namespaces/Bad_Ns/microservices")),
                &h.acme_editor,
            ),
            400,
            "",
        ),
    ];
    for (request, status, text) in cases {
        let (got, body) = call(&app, request).await;
        assert_eq!(got, status, "{body}");
        assert!(
            body["err"].as_str().unwrap().contains(text),
            "{text:?} in {body}"
        );
    }
    assert_eq!(h.pending_commands(), 0, "nothing was published");

    // The settings read back from the stored configuration.
    let get = |uri: String| with_token(TestRequest::get().uri(&uri), &h.acme_editor);
    let (status, body) = call(&app, get(format!("{MESHES}/shop/outbound-traffic"))).await;
    assert_eq!(
        (status, &body["data"]),
        (200, &json!({"outboundTrafficPolicy": "ALLOW_ANY"}))
    );
    let (status, body) = call(&app, get(format!("{MESHES}/shop/autoinjectionnamespaces"))).await;
    assert_eq!(
        (status, &body["data"]),
        (200, &json!({"autoInjectionNamespaces": {"a1": []}}))
    );
}

on_every_backend!(
    creating_a_mesh_publishes_create_mesh_and_answers_202,
    a_bad_mesh_is_refused_with_every_problem_and_its_path,
    malformed_and_oversized_bodies_answer_4xx_in_the_envelope,
    a_taken_name_answers_409,
    waiting_answers_the_flow_outcome,
    a_rejected_command_answers_409_when_waiting,
    a_wait_that_runs_out_answers_202_with_what_is_known,
    sampling_is_bounded_and_typed,
    a_mesh_reads_with_config_phases_load_balancers_and_generation,
    deleting_a_mesh_publishes_delete_mesh,
    resource_and_setting_routes_refuse_bad_input_with_nothing_published,
);
