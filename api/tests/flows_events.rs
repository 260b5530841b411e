//! Flows with their tasks, and the server-sent event stream (history, then live from the bus).

#![allow(clippy::unwrap_used)]

mod common;

use std::pin::Pin;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::test::{self, TestRequest};
use common::{Harness, app, call, with_token};
use mesh_bus::event::{FlowFinished, FlowOutcome, FlowStarted, MeshDeleted};
use mesh_bus::{Bus, Event, EventEnvelope};
use mesh_core::{MeshName, TenantId};
use mesh_schema::models::{NewEvent, NewFlow, NewTask};

const MESHES: &str = "/apis/v1/mesh/meshes";

async fn flow(h: &Harness, tenant: &str, mesh: &str) -> i64 {
    let flow = h
        .store
        .create_flow(NewFlow {
            tenant_id: tenant.into(),
            mesh_name: mesh.into(),
            name: format!("install-{mesh}"),
            def_name: "install".into(),
            status: "Running".into(),
            input: r#"{"kind":"CreateMesh"}"#.into(),
            processor: "worker-1".into(),
        })
        .await
        .unwrap();
    for task in ["install-istio:c1", "link:c1"] {
        h.store
            .create_task(NewTask {
                flow_id: flow.id,
                name: task.into(),
                status: "Pending".into(),
                steps: String::new(),
            })
            .await
            .unwrap();
    }
    flow.id
}

async fn flows_list_and_read_with_their_tasks(h: Harness) {
    h.seed_mesh("acme", "demo", &["c1"]).await;
    h.seed_mesh("acme", "other", &["c2"]).await;
    let id = flow(&h, "acme", "demo").await;
    let foreign = flow(&h, "acme", "other").await;
    let app = app(h.state()).await;
    let get = |uri: String| with_token(TestRequest::get().uri(&uri), &h.acme_viewer);

    let (status, body) = call(&app, get(format!("{MESHES}/demo/flows"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["id"], id);
    assert_eq!(body["data"][0]["input"]["kind"], "CreateMesh");
    assert!(body["data"][0].get("tasks").is_none());

    let (status, body) = call(&app, get(format!("{MESHES}/demo/flows/{id}"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["tasks"][0]["name"], "install-istio:c1");
    assert_eq!(body["data"]["tasks"][1]["name"], "link:c1");

    let (status, _) = call(&app, get(format!("{MESHES}/demo/flows/{foreign}"))).await;
    assert_eq!(status, 404, "a flow of another mesh");
    let (status, _) = call(&app, get(format!("{MESHES}/demo/flows/99999"))).await;
    assert_eq!(status, 404);
    let (status, body) = call(&app, get(format!("{MESHES}/demo/flows/abc"))).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = call(&app, get(format!("{MESHES}/demo/flows?limit=0"))).await;
    assert_eq!(status, 400);
    let (status, _) = call(&app, get(format!("{MESHES}/demo/flows?limit=x"))).await;
    assert_eq!(status, 400);
    let (status, _) = call(
        &app,
        with_token(
            TestRequest::get().uri(&format!("{MESHES}/demo/flows/{id}")),
            &h.globex_editor,
        ),
    )
    .await;
    assert_eq!(status, 404);
}

fn event(tenant: &str, mesh: &str, body: impl Into<Event>) -> EventEnvelope {
    EventEnvelope::event(
        TenantId::new(tenant).unwrap(),
        MeshName::new(mesh).unwrap(),
        "system:test",
        body,
    )
    .unwrap()
}

/// Stores an event as a worker does (history) and publishes it on the bus.
async fn emit(h: &Harness, envelope: &EventEnvelope) -> i64 {
    let id = h
        .store
        .append_event(NewEvent {
            event_id: envelope.id.to_string(),
            tenant_id: envelope.tenant.to_string(),
            mesh_name: envelope.mesh.to_string(),
            kind: envelope.kind().into(),
            correlation_id: Some(envelope.correlation_id.to_string()),
            flow_id: None,
            payload: String::from_utf8(envelope.to_json().unwrap()).unwrap(),
            occurred_at: envelope.occurred_at.naive_utc(),
            epoch: None,
        })
        .await
        .unwrap()
        .id;
    h.bus.publish_event(envelope).await.unwrap();
    id
}

/// A parsed SSE frame: (id, event, data).
type Frame = (String, String, String);

/// Reads frames with an id until `n` arrived (or 5 s passed).
async fn frames(body: &mut actix_web::body::BoxBody, n: usize) -> Vec<Frame> {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let parsed = parse(&text);
        if parsed.len() >= n {
            return parsed;
        }
        let chunk = tokio::time::timeout_at(
            deadline,
            futures::future::poll_fn(|cx| Pin::new(&mut *body).poll_next(cx)),
        )
        .await;
        match chunk {
            Ok(Some(Ok(bytes))) => text.push_str(std::str::from_utf8(&bytes).unwrap()),
            _ => return parsed,
        }
    }
}

fn parse(text: &str) -> Vec<Frame> {
    text.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .filter_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            let id = field("id");
            (!id.is_empty()).then(|| (id, field("event"), field("data")))
        })
        .collect()
}

async fn events_stream_history_then_live(h: Harness) {
    h.seed_mesh("acme", "demo", &["c1"]).await;
    // An earlier mesh of the same name in another tenant: never shown.
    emit(&h, &event("globex", "demo", MeshDeleted {})).await;
    let started = event(
        "acme",
        "demo",
        FlowStarted {
            flow_id: 1,
            flow: "install".into(),
        },
    );
    let first = emit(&h, &started).await;
    let second = emit(
        &h,
        &event(
            "acme",
            "demo",
            FlowStarted {
                flow_id: 2,
                flow: "link".into(),
            },
        ),
    )
    .await;
    let app = app(h.state()).await;

    let response = test::call_service(
        &app,
        with_token(
            TestRequest::get().uri(&format!("{MESHES}/demo/events")),
            &h.acme_viewer,
        )
        .to_request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let mut body = response.into_body();
    let history = frames(&mut body, 2).await;
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0].0, first.to_string());
    assert_eq!(history[0].1, "FlowStarted");
    let data: serde_json::Value = serde_json::from_str(&history[0].2).unwrap();
    assert_eq!(data["id"], started.id.to_string());
    assert_eq!(history[1].0, second.to_string());

    let finished = event(
        "acme",
        "demo",
        FlowFinished {
            flow_id: 1,
            outcome: FlowOutcome::Succeeded,
            detail: None,
        },
    );
    h.bus.publish_event(&finished).await.unwrap();
    let live = frames(&mut body, 1).await;
    assert_eq!(
        live.len(),
        1,
        "history events replayed by the bus are skipped: {live:?}"
    );
    assert!(live[0].0.starts_with("bus-"), "{live:?}");
    assert_eq!(live[0].1, "FlowFinished");
    let data: serde_json::Value = serde_json::from_str(&live[0].2).unwrap();
    assert_eq!(data["id"], finished.id.to_string());
    let bus_id = live[0].0.clone();
    drop(body);

    // Resuming from a history position continues after it.
    let response = test::call_service(
        &app,
        with_token(
            TestRequest::get().uri(&format!("{MESHES}/demo/events")),
            &h.acme_viewer,
        )
        .insert_header(("Last-Event-ID", first.to_string()))
        .to_request(),
    )
    .await;
    let mut body = response.into_body();
    let resumed = frames(&mut body, 2).await;
    assert_eq!(resumed[0].0, second.to_string(), "{resumed:?}");
    assert_eq!(resumed[1].1, "FlowFinished", "{resumed:?}");
    drop(body);

    // Resuming from a bus sequence goes on live after it.
    let response = test::call_service(
        &app,
        with_token(
            TestRequest::get().uri(&format!("{MESHES}/demo/events?after={bus_id}")),
            &h.acme_viewer,
        )
        .to_request(),
    )
    .await;
    let mut body = response.into_body();
    let later = event("acme", "demo", MeshDeleted {});
    h.bus.publish_event(&later).await.unwrap();
    let resumed = frames(&mut body, 1).await;
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert_eq!(resumed[0].1, "MeshDeleted");

    let (status, body) = call(
        &app,
        with_token(
            TestRequest::get().uri(&format!("{MESHES}/demo/events?after=soon")),
            &h.acme_viewer,
        ),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

on_every_backend!(
    flows_list_and_read_with_their_tasks,
    events_stream_history_then_live,
);
