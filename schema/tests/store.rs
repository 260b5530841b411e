//! Every Store operation, run on SQLite and on a real MariaDB.

#![allow(clippy::unwrap_used)]

mod common;

use chrono::{Duration, Utc};
use common::Harness;
use diesel::prelude::*;
use mesh_core::{CommandStatus, FlowStatus, TaskStatus, TenantId};
use mesh_schema::models::{NewCommand, NewEvent, NewFlow, NewMemberCluster, NewMesh, NewTask};
use mesh_schema::store::cluster::RegisterCluster;
use mesh_schema::store::command::{CommandEntry, CommandRecorded};
use mesh_schema::store::flow::{
    FlowAcceptance, FlowStep, FlowStepEffects, FlowToRun, FlowTransition, TaskTransition,
};
use mesh_schema::store::mesh::{MeshSpecChange, MeshSpecUpdate, MeshStatusChange};
use mesh_schema::store::snapshot::{SNAPSHOT_EVENTS, SNAPSHOT_REFRESH_DELAY};
use mesh_schema::{Store, StoreError, TenantScope};

fn new_mesh(tenant: &str, name: &str) -> NewMesh {
    NewMesh {
        tenant_id: tenant.into(),
        name: name.into(),
        region: "eu-west".into(),
        title: format!("{name} mesh"),
        status: "Creating".into(),
        version: "1.30.3".into(),
        config: Some(r#"{"traceSampling":1.0}"#.into()),
        mode: "multi-primary".into(),
        state: None,
    }
}

/// A pending flow of definition `def_name` for `mesh` (tenant `t1`).
fn new_flow(mesh: &str, def_name: &str) -> NewFlow {
    NewFlow {
        tenant_id: "t1".into(),
        mesh_name: mesh.into(),
        name: format!("{def_name}-{mesh}"),
        def_name: def_name.into(),
        status: FlowStatus::Pending.as_str().into(),
        input: "{}".into(),
        processor: String::new(),
    }
}

/// A pending task `name` of flow `flow_id`.
fn new_task(flow_id: i64, name: &str) -> NewTask {
    NewTask {
        flow_id,
        name: name.into(),
        status: TaskStatus::Pending.as_str().into(),
        steps: String::new(),
    }
}

/// An accepted command `command_id` of `kind` for `mesh` (tenant `t1`).
fn new_command(command_id: &str, mesh: &str, kind: &str) -> NewCommand {
    NewCommand {
        command_id: command_id.into(),
        tenant_id: "t1".into(),
        mesh_name: mesh.into(),
        kind: kind.into(),
        status: CommandStatus::Accepted.as_str().into(),
        result: None,
        flow_id: None,
    }
}

/// The flow the command log links command `id` to.
async fn flow_of_command(store: &Store, id: &str) -> Option<i64> {
    store.get_command(id).await.unwrap().unwrap().flow_id
}

fn tenant(id: &str) -> TenantScope {
    TenantScope::Tenant(TenantId::new(id).unwrap())
}

async fn meshes_are_created_read_and_listed_per_tenant(h: Harness) {
    let store = &h.store;
    let created = store.create_mesh(new_mesh("t1", "alpha")).await.unwrap();
    assert_eq!(created.generation, 1);
    assert_eq!(created.owner_epoch, 0);
    assert_eq!(created.deleted_flag, 0);
    assert_eq!(created.status, "Creating");
    store.create_mesh(new_mesh("t1", "beta")).await.unwrap();
    store.create_mesh(new_mesh("t2", "gamma")).await.unwrap();

    let t1: Vec<String> = store
        .list_meshes(&tenant("t1"))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(t1, ["alpha", "beta"]);
    assert_eq!(store.list_meshes(&TenantScope::All).await.unwrap().len(), 3);
    assert!(
        store
            .get_mesh(&tenant("t2"), "alpha")
            .await
            .unwrap()
            .is_none(),
        "other tenants cannot see it"
    );
    let got = store
        .get_mesh(&tenant("t1"), "alpha")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, created);

    let err = store
        .create_mesh(new_mesh("t2", "alpha"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { what: "mesh", .. }),
        "{err}"
    );
}

async fn deleted_mesh_names_can_be_used_again(h: Harness) {
    let store = &h.store;
    let first = store.create_mesh(new_mesh("t1", "reuse")).await.unwrap();
    store
        .add_member_cluster(NewMemberCluster {
            name: "c1".into(),
            region: "r".into(),
            mesh_name: "reuse".into(),
            role: "master".into(),
            phase: "Pending".into(),
            network: String::new(),
        })
        .await
        .unwrap();
    let deleted = store.soft_delete_mesh("reuse", 0).await.unwrap();
    assert_eq!(
        deleted.deleted_flag, first.id,
        "deleted_flag becomes the row id"
    );
    assert!(deleted.deleted_at.is_some());
    assert!(
        store
            .get_mesh(&TenantScope::All, "reuse")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .list_member_clusters("reuse")
            .await
            .unwrap()
            .is_empty(),
        "members leave with the mesh"
    );

    let second = store.create_mesh(new_mesh("t1", "reuse")).await.unwrap();
    assert_ne!(second.id, first.id);
    assert!(matches!(
        store.soft_delete_mesh("missing", 0).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
}

async fn spec_updates_are_compare_and_set_by_generation(h: Harness) {
    let store = &h.store;
    store.create_mesh(new_mesh("t1", "cas")).await.unwrap();
    let change = MeshSpecChange {
        version: Some("1.30.2".into()),
        last_version: Some("1.30.3".into()),
        ..Default::default()
    };
    let updated = store
        .update_mesh_spec("cas", 1, 0, change.clone())
        .await
        .unwrap();
    assert_eq!(updated.generation, 2);
    assert_eq!(updated.version, "1.30.2");
    assert_eq!(updated.last_version, "1.30.3");
    assert_eq!(updated.title, "cas mesh", "untouched fields stay");

    let stale = store
        .update_mesh_spec("cas", 1, 0, change)
        .await
        .unwrap_err();
    assert!(
        matches!(
            stale,
            StoreError::GenerationConflict {
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "{stale}"
    );
    assert!(matches!(
        store
            .update_mesh_spec("nope", 1, 0, MeshSpecChange::default())
            .await
            .unwrap_err(),
        StoreError::NotFound { .. }
    ));
}

async fn writes_from_an_older_owner_epoch_are_fenced(h: Harness) {
    let store = &h.store;
    store.create_mesh(new_mesh("t1", "fenced")).await.unwrap();
    assert_eq!(store.claim_mesh("fenced", 5).await.unwrap().owner_epoch, 5);

    let status = MeshStatusChange {
        status: Some("Running".into()),
        ..Default::default()
    };
    let stale = store
        .update_mesh_status("fenced", 4, status.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            stale,
            StoreError::Fenced {
                epoch: 4,
                owner_epoch: 5,
                ..
            }
        ),
        "{stale}"
    );
    assert!(matches!(
        store.claim_mesh("fenced", 3).await.unwrap_err(),
        StoreError::Fenced { .. }
    ));
    assert!(matches!(
        store
            .update_mesh_spec("fenced", 1, 4, MeshSpecChange::default())
            .await
            .unwrap_err(),
        StoreError::Fenced { .. }
    ));
    assert!(matches!(
        store.soft_delete_mesh("fenced", 4).await.unwrap_err(),
        StoreError::Fenced { .. }
    ));

    let row = store.update_mesh_status("fenced", 5, status).await.unwrap();
    assert_eq!(row.status, "Running");
    assert_eq!(row.generation, 1, "status is not desired state");
    let taken_over = store
        .update_mesh_status("fenced", 9, MeshStatusChange::default())
        .await
        .unwrap();
    assert_eq!(taken_over.owner_epoch, 9);
    assert!(
        store
            .update_mesh_status("fenced", 5, MeshStatusChange::default())
            .await
            .is_err()
    );
}

async fn member_clusters_record_their_phase(h: Harness) {
    let store = &h.store;
    store.create_mesh(new_mesh("t1", "m")).await.unwrap();
    for (name, role) in [("east", "master"), ("west", "remote")] {
        store
            .add_member_cluster(NewMemberCluster {
                name: name.into(),
                region: "r1".into(),
                mesh_name: "m".into(),
                role: role.into(),
                phase: "Pending".into(),
                network: String::new(),
            })
            .await
            .unwrap();
    }
    let dup = store
        .add_member_cluster(NewMemberCluster {
            name: "east".into(),
            region: "r1".into(),
            mesh_name: "other".into(),
            role: "master".into(),
            phase: "Pending".into(),
            network: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(dup, StoreError::AlreadyExists { .. }),
        "a cluster is in one mesh at a time"
    );

    let linked_at = Utc::now().naive_utc();
    let east = store
        .update_member_phase("east", "Linked", "", Some(Some(linked_at)))
        .await
        .unwrap();
    assert_eq!(east.phase, "Linked");
    assert!(east.linked_at.is_some());
    let east = store
        .update_member_phase("east", "Failed", "istiod not ready", None)
        .await
        .unwrap();
    assert_eq!(east.error, "istiod not ready");
    assert!(east.linked_at.is_some(), "None leaves linked_at alone");

    let names: Vec<_> = store
        .list_member_clusters("m")
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.role))
        .collect();
    assert_eq!(
        names,
        [
            ("east".to_owned(), "master".to_owned()),
            ("west".to_owned(), "remote".to_owned())
        ]
    );
    store.remove_member_cluster("west").await.unwrap();
    assert_eq!(store.list_member_clusters("m").await.unwrap().len(), 1);
    assert!(store.remove_member_cluster("west").await.is_err());
}

async fn registered_cluster_credentials_are_sealed_at_rest(h: Harness) {
    let store = &h.store;
    let kubeconfig = "apiVersion: v1\nusers:\n- user:\n    token: very-secret-token\n";
    let registered = store
        .register_cluster(RegisterCluster {
            tenant_id: "t1".into(),
            name: "prod-1".into(),
            region: "eu".into(),
            server: "https://127.0.0.1:6443".into(),
            auth_kind: "token".into(),
            kubeconfig: kubeconfig.into(),
            status: "Reachable".into(),
            status_message: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(registered.name, "prod-1");
    assert_eq!(
        store.cluster_kubeconfig("prod-1").await.unwrap(),
        kubeconfig
    );

    // Read the raw column: the token must not be there in the clear.
    let target = h.target.clone();
    let raw: String = tokio::task::spawn_blocking(move || {
        use mesh_schema::schema::registered_cluster::dsl::*;
        let mut conn = target.connect().unwrap();
        registered_cluster
            .select(credentials_sealed)
            .first::<String>(&mut conn)
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!raw.contains("very-secret-token"));
    assert!(raw.starts_with("v1:"));

    assert!(
        store
            .get_registered_cluster(&tenant("t2"), "prod-1")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .list_registered_clusters(&tenant("t1"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .list_registered_clusters(&tenant("t2"))
            .await
            .unwrap()
            .is_empty()
    );
    store
        .update_registered_cluster_status("prod-1", "Unreachable", "connection refused")
        .await
        .unwrap();
    let row = store
        .get_registered_cluster(&TenantScope::All, "prod-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.status.as_str(), row.status_message.as_str()),
        ("Unreachable", "connection refused")
    );

    store
        .create_mesh(new_mesh("t1", "uses-prod"))
        .await
        .unwrap();
    store
        .add_member_cluster(NewMemberCluster {
            name: "prod-1".into(),
            region: "eu".into(),
            mesh_name: "uses-prod".into(),
            role: "master".into(),
            phase: "Pending".into(),
            network: String::new(),
        })
        .await
        .unwrap();
    let busy = store
        .remove_registered_cluster(&TenantScope::All, "prod-1")
        .await
        .unwrap_err();
    assert!(busy.to_string().contains("uses-prod"), "{busy}");
    store.remove_member_cluster("prod-1").await.unwrap();
    assert!(matches!(
        store
            .remove_registered_cluster(&tenant("t2"), "prod-1")
            .await
            .unwrap_err(),
        StoreError::NotFound { .. }
    ));
    store
        .remove_registered_cluster(&tenant("t1"), "prod-1")
        .await
        .unwrap();
    assert!(matches!(
        store.cluster_kubeconfig("prod-1").await.unwrap_err(),
        StoreError::NotFound { .. }
    ));
}

async fn a_decision_reads_the_busy_flow_the_visible_mesh_and_its_members_at_once(h: Harness) {
    let store = &h.store;
    let nothing = store.mesh_to_decide(&tenant("t1"), "m").await.unwrap();
    assert!(nothing.unfinished_flow.is_none() && nothing.mesh.is_none());
    assert!(nothing.members.is_empty());

    store.create_mesh(new_mesh("t1", "m")).await.unwrap();
    for name in ["b-east", "a-west"] {
        store
            .add_member_cluster(NewMemberCluster {
                name: name.into(),
                region: "eu".into(),
                mesh_name: "m".into(),
                role: "master".into(),
                phase: "Ready".into(),
                network: String::new(),
            })
            .await
            .unwrap();
    }
    // Finished flows do not make the mesh busy; the newest unfinished one does.
    let finished = store.create_flow(new_flow("m", "install")).await.unwrap();
    store
        .transition_flow(
            finished.id,
            FlowTransition {
                status: FlowStatus::Succeeded,
                log_line: None,
                fence_epoch: None,
                processor: None,
            },
        )
        .await
        .unwrap();
    let idle = store.mesh_to_decide(&tenant("t1"), "m").await.unwrap();
    assert_eq!(idle.unfinished_flow, None);
    assert_eq!(idle.mesh.as_ref().map(|m| m.name.as_str()), Some("m"));
    let names: Vec<&str> = idle.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["a-west", "b-east"], "members by name");

    let pending = store
        .create_flow(new_flow("m", "reconfigure"))
        .await
        .unwrap();
    let busy = store.mesh_to_decide(&tenant("t1"), "m").await.unwrap();
    assert_eq!(
        busy.unfinished_flow,
        Some((pending.id, "reconfigure".into()))
    );

    // Another tenant sees neither the mesh, nor its members, nor its flows.
    let foreign = store.mesh_to_decide(&tenant("t2"), "m").await.unwrap();
    assert!(foreign.mesh.is_none() && foreign.members.is_empty());
    assert_eq!(foreign.unfinished_flow, None);
    let operator = store.mesh_to_decide(&TenantScope::All, "m").await.unwrap();
    assert_eq!(
        operator.unfinished_flow,
        Some((pending.id, "reconfigure".into()))
    );
}

async fn flows_and_tasks_record_every_transition(h: Harness) {
    let store = &h.store;
    let flow = store.create_flow(new_flow("m", "install")).await.unwrap();
    let second = store.create_flow(new_flow("m", "upgrade")).await.unwrap();
    assert!(second.id > flow.id);

    let running = store
        .transition_flow(
            flow.id,
            FlowTransition {
                status: FlowStatus::Running,
                log_line: Some("started".into()),
                fence_epoch: None,
                processor: None,
            },
        )
        .await
        .unwrap();
    assert!(running.started_at.is_some() && running.finished_at.is_none());

    let task = store
        .create_task(new_task(flow.id, "install-istio:east"))
        .await
        .unwrap();
    store
        .transition_task(
            task.id,
            TaskTransition {
                status: Some(TaskStatus::Running),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let failed = store
        .transition_task(
            task.id,
            TaskTransition {
                status: Some(TaskStatus::Failed),
                error: Some("istiod never became ready".into()),
                log_line: Some("waited 300s".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(failed.status, "Failed");
    assert!(failed.started_at.is_some() && failed.finished_at.is_some());
    assert_eq!(failed.error.as_deref(), Some("istiod never became ready"));
    assert_eq!(store.list_tasks(flow.id).await.unwrap(), vec![failed]);

    // Never heartbeated, unfinished: both flows are orphans; after a heartbeat only the other is.
    let stale_before = Utc::now().naive_utc() - Duration::seconds(30);
    assert_eq!(
        store.list_orphaned_flows(stale_before).await.unwrap().len(),
        2
    );
    store
        .heartbeat_flow(flow.id, "worker-1", None)
        .await
        .unwrap();
    let orphans = store.list_orphaned_flows(stale_before).await.unwrap();
    assert_eq!(
        orphans.iter().map(|f| f.id).collect::<Vec<_>>(),
        [second.id]
    );

    let done = store
        .transition_flow(
            flow.id,
            FlowTransition {
                status: FlowStatus::RolledBack,
                log_line: Some("rolled back".into()),
                fence_epoch: None,
                processor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(done.status, "RolledBack");
    assert_eq!(done.processor, "worker-1");
    assert_eq!(done.log.as_deref(), Some("started\nrolled back"));
    assert!(done.finished_at.is_some());

    let listed: Vec<i64> = store
        .list_flows("m", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(listed, [second.id, flow.id], "newest first");
    assert!(store.get_flow(999_999).await.unwrap().is_none());
    assert!(store.heartbeat_flow(999_999, "w", None).await.is_err());
}

/// A pending install flow of `mesh` with one pending `verify` task.
async fn pending_install(
    store: &mesh_schema::Store,
    mesh: &str,
) -> (
    mesh_schema::models::FlowRecord,
    mesh_schema::models::TaskRecord,
) {
    let flow = store.create_flow(new_flow(mesh, "install")).await.unwrap();
    let task = store
        .create_task(new_task(flow.id, "verify"))
        .await
        .unwrap();
    (flow, task)
}

fn event(id: &str, mesh: &str, kind: &str) -> NewEvent {
    NewEvent {
        event_id: id.into(),
        tenant_id: "t1".into(),
        mesh_name: mesh.into(),
        kind: kind.into(),
        correlation_id: None,
        flow_id: None,
        payload: format!(r#"{{"id":"{id}","kind":"{kind}"}}"#),
        occurred_at: Utc::now().naive_utc(),
    }
}

async fn events_are_appended_once_and_snapshotted(h: Harness) {
    let store = &h.store;
    let first = store
        .append_event(event("e-1", "m", "MeshCreated"))
        .await
        .unwrap();
    assert!(!first.duplicate);
    let again = store
        .append_event(event("e-1", "m", "MeshCreated"))
        .await
        .unwrap();
    assert_eq!(
        again,
        mesh_schema::store::event::AppendedEvent {
            id: first.id,
            duplicate: true
        }
    );
    for i in 2..=120 {
        store
            .append_event(event(&format!("e-{i}"), "m", "TaskFinished"))
            .await
            .unwrap();
    }
    store
        .append_event(event("other-1", "other", "MeshCreated"))
        .await
        .unwrap();

    let all = store.list_events("m", 0, 1000).await.unwrap();
    assert_eq!(all.len(), 120);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let after = store.list_events("m", all[99].id, 1000).await.unwrap();
    assert_eq!(after.len(), 20);
    assert_eq!(after[0].event_id, "e-101");

    // The seed's table follows the history on its own, for clients reading it directly.
    let raw = raw_snapshot_once(&h, "m", |events| {
        events.last().is_some_and(|e| e["id"] == "e-120")
    })
    .await;
    assert_eq!(raw.len(), SNAPSHOT_EVENTS);
    assert_eq!(raw[0]["id"], "e-21", "the oldest dropped");
    let other = raw_snapshot_once(&h, "other", |events| !events.is_empty()).await;
    assert_eq!(other.len(), 1);

    // Read through the store, it holds what was just appended, without waiting.
    store
        .append_event(event("e-121", "m", "TaskFinished"))
        .await
        .unwrap();
    let snapshot = store.event_snapshot("m").await.unwrap();
    assert_eq!(snapshot.len(), SNAPSHOT_EVENTS);
    assert_eq!(snapshot.last().unwrap()["id"], "e-121");
    assert!(store.event_snapshot("none").await.unwrap().is_empty());
}

/// The `mesh_events` row of `mesh` as a seed client reads it, once `ready` holds for it (within
/// a few refresh delays).
async fn raw_snapshot_once(
    h: &Harness,
    mesh: &str,
    ready: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + SNAPSHOT_REFRESH_DELAY * 20;
    loop {
        let target = h.target.clone();
        let name = mesh.to_owned();
        let text: Option<Option<String>> = tokio::task::spawn_blocking(move || {
            use mesh_schema::schema::mesh_events;
            let mut conn = target.connect().unwrap();
            mesh_events::table
                .filter(mesh_events::name.eq(name))
                .select(mesh_events::events)
                .first(&mut conn)
                .optional()
                .unwrap()
        })
        .await
        .unwrap();
        let events: Vec<serde_json::Value> = text
            .flatten()
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap_or_default();
        if ready(&events) {
            return events;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the snapshot of {mesh} did not follow its history: {events:?}"
        );
        tokio::time::sleep(SNAPSHOT_REFRESH_DELAY / 5).await;
    }
}

async fn a_steps_events_are_stored_once_in_order_however_many(h: Harness) {
    // MariaDB/MySQL take a step's events in inserts of several rows; a step run again after a
    // crash brings some events that are stored already.
    let store = &h.store;
    let (flow, _task) = pending_install(store, "many").await;
    let step = |ids: std::ops::Range<usize>| FlowStep {
        events: ids
            .map(|n| {
                let mut new = event(&format!("many-{n:02}"), "many", "TaskFinished");
                new.correlation_id = (n % 2 == 0).then(|| format!("corr-{n}"));
                new
            })
            .collect(),
        ..FlowStep::default()
    };
    store.record_flow_step(flow.id, step(0..11)).await.unwrap();
    store.record_flow_step(flow.id, step(8..13)).await.unwrap();
    store.record_flow_step(flow.id, step(0..13)).await.unwrap();

    let history = store.list_events("many", 0, 100).await.unwrap();
    let ids: Vec<&str> = history.iter().map(|e| e.event_id.as_str()).collect();
    let expected: Vec<String> = (0..13).map(|n| format!("many-{n:02}")).collect();
    assert_eq!(ids, expected, "each once, in the order they happened");
    for (n, stored) in history.iter().enumerate() {
        assert_eq!(stored.flow_id, Some(flow.id));
        assert_eq!(stored.kind, "TaskFinished");
        assert_eq!(stored.tenant_id, "t1");
        assert_eq!(
            stored.correlation_id,
            (n % 2 == 0).then(|| format!("corr-{n}"))
        );
        assert_eq!(
            stored.payload,
            format!(r#"{{"id":"many-{n:02}","kind":"TaskFinished"}}"#)
        );
    }
    let snapshot = store.event_snapshot("many").await.unwrap();
    assert_eq!(snapshot.len(), 13);
    assert_eq!(snapshot[12]["id"], "many-12");
}

async fn large_events_keep_the_snapshot_within_its_column(h: Harness) {
    // The seed's `mesh_events.events` is a TEXT column: at most 65,535 bytes on MariaDB/MySQL.
    // A hundred events of 2 KB each (a failed task's detail can be that long) must still append.
    let store = &h.store;
    let detail = "x".repeat(2000);
    for i in 1..=100 {
        let mut new = event(&format!("big-{i}"), "big", "TaskFinished");
        new.payload = format!(r#"{{"id":"big-{i}","kind":"TaskFinished","detail":"{detail}"}}"#);
        store.append_event(new).await.unwrap();
    }
    assert_eq!(store.list_events("big", 0, 1000).await.unwrap().len(), 100);
    let rebuilt = raw_snapshot_once(&h, "big", |events| {
        events.last().is_some_and(|e| e["id"] == "big-100")
    })
    .await;
    let snapshot = store.event_snapshot("big").await.unwrap();
    assert_eq!(rebuilt, snapshot);
    assert!(
        !snapshot.is_empty() && snapshot.len() < 100,
        "the snapshot keeps the newest events that fit: {}",
        snapshot.len()
    );
    assert_eq!(snapshot.last().unwrap()["id"], "big-100");
    assert!(serde_json::to_string(&snapshot).unwrap().len() <= 65_535);
}

async fn messages_longer_than_their_columns_are_cut_not_refused(h: Harness) {
    let store = &h.store;
    let (flow, task) = pending_install(store, "long").await;
    // An error message of 200,000 bytes (two bytes a character) from a cluster's answer.
    let long = "é".repeat(100_000);
    let failed = store
        .transition_task(
            task.id,
            TaskTransition {
                status: Some(TaskStatus::Failed),
                error: Some(long.clone()),
                log_line: Some(long.clone()),
                ..TaskTransition::default()
            },
        )
        .await
        .unwrap();
    let error = failed.error.unwrap();
    assert!(error.len() <= 65_535 && error.starts_with("éé") && error.ends_with("[cut]"));
    assert!(failed.log.unwrap().len() <= 65_535);

    let command = new_command("0192f0c2-0000-7000-8000-000000000301", "long", "CreateMesh");
    store.record_command(command.clone()).await.unwrap();
    let done = store
        .complete_command(
            &command.command_id,
            CommandStatus::Failed,
            Some(long),
            Some(flow.id),
        )
        .await
        .unwrap();
    assert!(done.result.unwrap().len() <= 65_535);
}

async fn the_command_log_keeps_one_effect_per_command(h: Harness) {
    let store = &h.store;
    let cmd = new_command("0192f0c2-0000-7000-8000-000000000001", "m", "CreateMesh");
    let first = store.record_command(cmd.clone()).await.unwrap();
    assert_eq!(first, CommandRecorded::New);
    let recorded = store.get_command(&cmd.command_id).await.unwrap().unwrap();
    assert_eq!(recorded.status, "Accepted");
    let redelivered = store.record_command(cmd.clone()).await.unwrap();
    assert_eq!(redelivered, CommandRecorded::Duplicate(recorded));

    let done = store
        .complete_command(
            &cmd.command_id,
            CommandStatus::Succeeded,
            Some("{\"flow\":1}".into()),
            Some(1),
        )
        .await
        .unwrap();
    assert_eq!(done.status, "Succeeded");
    assert_eq!(done.flow_id, Some(1));
    let late = store.record_command(cmd.clone()).await.unwrap();
    assert!(
        matches!(&late, CommandRecorded::Duplicate(record) if record.status == "Succeeded"),
        "a late redelivery sees the outcome: {late:?}"
    );
    assert_eq!(store.list_commands("m", 10).await.unwrap().len(), 1);
    assert!(store.get_command("missing").await.unwrap().is_none());
    assert!(
        store
            .complete_command("missing", CommandStatus::Failed, None, None)
            .await
            .is_err()
    );
}

async fn load_balancer_resources_are_upserted_by_name(h: Harness) {
    let store = &h.store;
    store
        .upsert_lb_resource("east/istio-eastwestgateway", "m", "Pending")
        .await
        .unwrap();
    let row = store
        .upsert_lb_resource("east/istio-eastwestgateway", "m", "10.0.0.7")
        .await
        .unwrap();
    assert_eq!(row.status, "10.0.0.7");
    store
        .upsert_lb_resource("west/istio-eastwestgateway", "m", "10.1.0.7")
        .await
        .unwrap();
    assert_eq!(store.list_lb_resources("m").await.unwrap().len(), 2);
    store
        .delete_lb_resource("west/istio-eastwestgateway")
        .await
        .unwrap();
    assert_eq!(store.list_lb_resources("m").await.unwrap().len(), 1);
}

async fn the_store_answers_pings_and_reports_no_pending_migrations(h: Harness) {
    h.store.ping().await.unwrap();
    let target = h.target.clone();
    let pending = tokio::task::spawn_blocking(move || target.has_pending_migrations())
        .await
        .unwrap()
        .unwrap();
    assert!(!pending);
    let target = h.target.clone();
    let again = tokio::task::spawn_blocking(move || target.migrate())
        .await
        .unwrap()
        .unwrap();
    assert!(again.is_empty(), "migrating twice applies nothing");
}

async fn mesh_secrets_are_sealed_and_bound_to_their_mesh(h: Harness) {
    let store = &h.store;
    assert!(store.mesh_secret("m", "root-ca").await.unwrap().is_none());
    store
        .put_mesh_secret("m", "root-ca", b"-----BEGIN KEY-----")
        .await
        .unwrap();
    store
        .put_mesh_secret("m", "root-ca", b"-----BEGIN NEW KEY-----")
        .await
        .unwrap();
    store
        .put_mesh_secret("other", "root-ca", b"other key")
        .await
        .unwrap();
    assert_eq!(
        store.mesh_secret("m", "root-ca").await.unwrap().unwrap(),
        b"-----BEGIN NEW KEY-----"
    );
    let target = h.target.clone();
    let raw: Vec<String> = tokio::task::spawn_blocking(move || {
        use mesh_schema::schema::mesh_secret::dsl::*;
        let mut conn = target.connect().unwrap();
        mesh_secret
            .select(sealed)
            .load::<String>(&mut conn)
            .unwrap()
    })
    .await
    .unwrap();
    assert!(raw.iter().all(|r| !r.contains("KEY")));
    store
        .put_mesh_secret("m", "reader:a", b"token")
        .await
        .unwrap();
    assert!(store.delete_mesh_secret("m", "reader:a").await.unwrap());
    assert!(!store.delete_mesh_secret("m", "reader:a").await.unwrap());
    assert_eq!(store.delete_mesh_secrets("m").await.unwrap(), 1);
    assert!(store.mesh_secret("m", "root-ca").await.unwrap().is_none());
    assert!(
        store
            .mesh_secret("other", "root-ca")
            .await
            .unwrap()
            .is_some()
    );
}

async fn flow_and_task_writes_of_a_stale_owner_are_refused(h: Harness) {
    let store = &h.store;
    store.create_mesh(new_mesh("t1", "fm")).await.unwrap();
    store.claim_mesh("fm", 5).await.unwrap();
    let (flow, task) = pending_install(store, "fm").await;
    let before = store.fenced_write_count();
    let stale = store
        .transition_flow(
            flow.id,
            FlowTransition {
                status: FlowStatus::Running,
                log_line: None,
                fence_epoch: Some(4),
                processor: None,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            stale,
            StoreError::Fenced {
                epoch: 4,
                owner_epoch: 5,
                ..
            }
        ),
        "{stale}"
    );
    let stale_task = store
        .transition_task(
            task.id,
            TaskTransition {
                status: Some(TaskStatus::Running),
                fence_epoch: Some(4),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(stale_task, StoreError::Fenced { .. }));
    assert!(matches!(
        store
            .heartbeat_flow(flow.id, "old-owner", Some(4))
            .await
            .unwrap_err(),
        StoreError::Fenced { .. }
    ));
    assert_eq!(store.fenced_write_count(), before + 3);
    assert_eq!(
        store.get_flow(flow.id).await.unwrap().unwrap().status,
        "Pending",
        "nothing landed"
    );
    store
        .transition_flow(
            flow.id,
            FlowTransition {
                status: FlowStatus::Running,
                log_line: None,
                fence_epoch: Some(5),
                processor: None,
            },
        )
        .await
        .unwrap();
}

async fn a_command_is_accepted_whole_or_not_at_all(h: Harness) {
    let store = &h.store;
    store.create_mesh(new_mesh("t1", "acc")).await.unwrap();
    let command = |n: u32| {
        new_command(
            &format!("0192f0c2-0000-7000-8000-00000000010{n}"),
            "acc",
            "SetTraceSampling",
        )
    };
    let flow = || NewFlow {
        processor: "w1".into(),
        ..new_flow("acc", "reconfigure")
    };
    let change = |generation: i64, config: &str| MeshSpecUpdate {
        mesh: "acc".into(),
        expected_generation: generation,
        epoch: 0,
        change: MeshSpecChange {
            config: Some(config.into()),
            ..MeshSpecChange::default()
        },
    };
    let generation = store
        .get_mesh(&TenantScope::All, "acc")
        .await
        .unwrap()
        .unwrap()
        .generation;

    store.record_command(command(1)).await.unwrap();
    let accepted = store
        .start_flow_announcing(
            CommandEntry::Recorded(command(1).command_id.clone()),
            0,
            Some(change(generation, r#"{"traceSampling":5.0}"#)),
            flow(),
            vec!["telemetry:east".into(), "verify".into()],
            vec![
                event("acc-1", "acc", "CommandAccepted"),
                event("acc-2", "acc", "MeshConfigUpdated"),
            ],
        )
        .await
        .unwrap();
    let mesh = store
        .get_mesh(&TenantScope::All, "acc")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mesh.generation, generation + 1);
    assert_eq!(mesh.config.as_deref(), Some(r#"{"traceSampling":5.0}"#));
    let tasks = store.list_tasks(accepted).await.unwrap();
    assert_eq!(
        tasks.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["telemetry:east", "verify"]
    );
    assert_eq!(
        flow_of_command(store, &command(1).command_id).await,
        Some(accepted)
    );
    let history = store.list_events("acc", 0, 10).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|e| (e.kind.as_str(), e.flow_id))
            .collect::<Vec<_>>(),
        [
            ("CommandAccepted", Some(accepted)),
            ("MeshConfigUpdated", Some(accepted))
        ],
        "both events belong to the flow, in order"
    );
    let snapshot = store.event_snapshot("acc").await.unwrap();
    assert_eq!(snapshot.len(), 2);
    assert_eq!(snapshot[1]["id"], "acc-2");

    // Decided against the old generation: nothing of it lands.
    store.record_command(command(2)).await.unwrap();
    let stale = store
        .start_flow_announcing(
            CommandEntry::Recorded(command(2).command_id.clone()),
            0,
            Some(change(generation, r#"{"traceSampling":9.0}"#)),
            flow(),
            vec!["telemetry:east".into()],
            vec![event("acc-3", "acc", "CommandAccepted")],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(stale, StoreError::GenerationConflict { actual, .. } if actual == generation + 1),
        "{stale:?}"
    );
    assert_eq!(
        store.list_flows("acc", 10).await.unwrap().len(),
        1,
        "no flow left behind"
    );
    assert_eq!(
        store.list_events("acc", 0, 10).await.unwrap().len(),
        2,
        "no event"
    );
    assert_eq!(store.event_snapshot("acc").await.unwrap().len(), 2);
    assert_eq!(
        store
            .get_command(&command(2).command_id)
            .await
            .unwrap()
            .unwrap()
            .flow_id,
        None
    );
    let mesh = store
        .get_mesh(&TenantScope::All, "acc")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mesh.config.as_deref(), Some(r#"{"traceSampling":5.0}"#));

    // An event stored before is skipped, and the rest of the transaction still lands.
    store.record_command(command(3)).await.unwrap();
    let again = store
        .start_flow_announcing(
            CommandEntry::Recorded(command(3).command_id.clone()),
            0,
            None,
            flow(),
            vec!["verify".into()],
            vec![
                event("acc-1", "acc", "CommandAccepted"),
                event("acc-4", "acc", "CommandAccepted"),
            ],
        )
        .await
        .unwrap();
    let history = store.list_events("acc", 0, 10).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        ["acc-1", "acc-2", "acc-4"]
    );
    assert_eq!(history[2].flow_id, Some(again));
    assert_eq!(store.event_snapshot("acc").await.unwrap().len(), 3);
}

async fn a_flow_step_is_recorded_whole_or_not_at_all(h: Harness) {
    let store = &h.store;
    if std::env::var_os("MESH_DB_COMPOUND").is_none() {
        assert_eq!(
            store.compound_transactions(),
            !store.target().is_sqlite(),
            "MariaDB takes a step as one compound statement; SQLite needs none"
        );
    }
    store.create_mesh(new_mesh("t1", "step")).await.unwrap();
    store.claim_mesh("step", 3).await.unwrap();
    let command = new_command(
        "0192f0c2-0000-7000-8000-000000000201",
        "step",
        "SetTraceSampling",
    );
    store.record_command(command.clone()).await.unwrap();
    let accept = |owner_epoch: i64| {
        store.start_flow_announcing(
            CommandEntry::Recorded(command.command_id.clone()),
            owner_epoch,
            None,
            new_flow("step", "reconfigure"),
            vec!["telemetry".into(), "verify".into()],
            vec![event("step-0", "step", "CommandAccepted")],
        )
    };
    // Accepted by an owner older than the mesh's: nothing of it lands.
    let stale = accept(2).await.unwrap_err();
    assert!(matches!(stale, StoreError::Fenced { .. }), "{stale}");
    assert!(store.list_flows("step", 10).await.unwrap().is_empty());
    assert!(store.list_events("step", 0, 10).await.unwrap().is_empty());
    let flow_id = accept(3).await.unwrap();
    let tasks = store.list_tasks(flow_id).await.unwrap();
    let task_to = |status: TaskStatus| TaskTransition {
        status: Some(status),
        ..TaskTransition::default()
    };
    let claim = |epoch: i64| FlowStepEffects {
        command: None,
        mesh_status: Some((
            "step".into(),
            epoch,
            MeshStatusChange {
                status: Some("Updating".into()),
                ..MeshStatusChange::default()
            },
        )),
    };

    // The flow's start with its first task's, by the holder of `epoch`.
    let start = |epoch: i64, event_ids: [&str; 2], processor: &str| FlowStep {
        fence_epoch: Some(epoch),
        effects: claim(epoch),
        events: vec![
            event(event_ids[0], "step", "FlowStarted"),
            event(event_ids[1], "step", "TaskStarted"),
        ],
        tasks: vec![(tasks[0].id, task_to(TaskStatus::Running))],
        flow: Some(FlowTransition {
            status: FlowStatus::Running,
            log_line: None,
            fence_epoch: None,
            processor: Some(processor.into()),
        }),
    };

    // The first task moved to `status` (announced by `event`) by the holder of `epoch`, unclaimed.
    let task_step = |epoch: i64, (event_id, kind): (&str, &str), status: TaskStatus| FlowStep {
        fence_epoch: Some(epoch),
        events: vec![event(event_id, "step", kind)],
        tasks: vec![(tasks[0].id, task_to(status))],
        ..FlowStep::default()
    };

    // A stale owner's step (its claim refused) leaves nothing: no event, no row changed. On
    // MariaDB the step goes as one compound statement, which the refused claim rolls back whole;
    // the statement-by-statement transaction then says why.
    let before = store.fenced_write_count();
    let compound_before = store.compound_outcomes();
    let stale = store
        .record_flow_step(flow_id, start(2, ["step-stale-1", "step-stale-2"], "old"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            stale,
            StoreError::Fenced {
                epoch: 2,
                owner_epoch: 3,
                ..
            }
        ),
        "{stale}"
    );
    assert_eq!(store.fenced_write_count(), before + 1);
    let (committed, declined) = store.compound_outcomes();
    if store.compound_transactions() {
        assert_eq!(
            (committed, declined),
            (compound_before.0, compound_before.1 + 1)
        );
    } else {
        assert_eq!((committed, declined), (0, 0));
    }
    assert_eq!(store.list_events("step", 0, 10).await.unwrap().len(), 1);
    assert_eq!(
        store.get_flow(flow_id).await.unwrap().unwrap().status,
        FlowStatus::Pending.as_str()
    );
    assert_eq!(
        store.list_tasks(flow_id).await.unwrap()[0].status,
        TaskStatus::Pending.as_str()
    );

    // Without a claim, the step is fenced by one check of the flow's mesh.
    let unclaimed = store
        .record_flow_step(
            flow_id,
            task_step(2, ("step-stale-3", "TaskStarted"), TaskStatus::Running),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(unclaimed, StoreError::Fenced { .. }),
        "{unclaimed}"
    );
    assert_eq!(store.list_events("step", 0, 10).await.unwrap().len(), 1);

    // The owner's start: the claim, the flow's and first task's start and their events at once.
    let compound_before = store.compound_outcomes();
    store
        .record_flow_step(flow_id, start(3, ["step-1", "step-2"], "w1"))
        .await
        .unwrap();
    if store.compound_transactions() {
        assert_eq!(
            store.compound_outcomes(),
            (compound_before.0 + 1, compound_before.1),
            "the owner's step commits as one statement"
        );
    }
    let started = store.get_flow(flow_id).await.unwrap().unwrap();
    assert_eq!(started.status, FlowStatus::Running.as_str());
    assert_eq!(started.processor, "w1");
    assert!(started.started_at.is_some() && started.heartbeat.is_some());
    assert_eq!(
        store
            .get_mesh(&TenantScope::All, "step")
            .await
            .unwrap()
            .unwrap()
            .status,
        "Updating"
    );

    // One task's end; then the last one's start and end (a quick task) with the flow's end.
    store
        .record_flow_step(
            flow_id,
            task_step(3, ("step-3", "TaskFinished"), TaskStatus::Succeeded),
        )
        .await
        .unwrap();
    store
        .record_flow_step(
            flow_id,
            FlowStep {
                fence_epoch: Some(3),
                effects: FlowStepEffects {
                    command: Some((command.command_id.clone(), CommandStatus::Succeeded, None)),
                    ..claim(3)
                },
                events: vec![
                    event("step-4", "step", "TaskStarted"),
                    event("step-5", "step", "TaskFinished"),
                    event("step-6", "step", "FlowFinished"),
                ],
                tasks: vec![
                    (tasks[1].id, task_to(TaskStatus::Running)),
                    (tasks[1].id, task_to(TaskStatus::Succeeded)),
                ],
                flow: Some(FlowTransition {
                    status: FlowStatus::Succeeded,
                    log_line: Some("flow Succeeded".into()),
                    fence_epoch: None,
                    processor: None,
                }),
            },
        )
        .await
        .unwrap();
    let finished = store.get_flow(flow_id).await.unwrap().unwrap();
    assert_eq!(finished.status, FlowStatus::Succeeded.as_str());
    assert!(finished.finished_at.is_some());
    assert!(
        store
            .list_tasks(flow_id)
            .await
            .unwrap()
            .iter()
            .all(|t| t.status == TaskStatus::Succeeded.as_str()
                && t.started_at.is_some()
                && t.finished_at.is_some())
    );
    assert_eq!(
        store
            .get_command(&command.command_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        CommandStatus::Succeeded.as_str()
    );
    let history = store.list_events("step", 0, 10).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        [
            "step-0", "step-1", "step-2", "step-3", "step-4", "step-5", "step-6"
        ]
    );
    assert!(history.iter().all(|e| e.flow_id == Some(flow_id)));
    assert_eq!(store.event_snapshot("step").await.unwrap().len(), 7);
}

async fn a_new_command_is_recorded_by_its_acceptance_once(h: Harness) {
    let store = &h.store;
    store.create_mesh(new_mesh("t1", "gate")).await.unwrap();
    store.claim_mesh("gate", 2).await.unwrap();
    let command = new_command(
        "0192f0c2-0000-7000-8000-000000000301",
        "gate",
        "SetTraceSampling",
    );
    let generation = |store: &mesh_schema::Store| {
        let store = store.clone();
        async move {
            store
                .get_mesh(&TenantScope::All, "gate")
                .await
                .unwrap()
                .unwrap()
                .generation
        }
    };
    let before = generation(store).await;
    let accept = |owner_epoch: i64, expected_generation: i64, event_id: &'static str| {
        store.start_flow_announcing(
            CommandEntry::New(command.clone()),
            owner_epoch,
            Some(MeshSpecUpdate {
                mesh: "gate".into(),
                expected_generation,
                epoch: owner_epoch,
                change: MeshSpecChange {
                    config: Some(r#"{"traceSampling":7.0}"#.into()),
                    ..MeshSpecChange::default()
                },
            }),
            new_flow("gate", "reconfigure"),
            vec!["telemetry".into()],
            vec![event(event_id, "gate", "CommandAccepted")],
        )
    };

    // A stale owner's acceptance does not even record the command: its new owner decides it.
    let stale = accept(1, before, "gate-0").await.unwrap_err();
    assert!(matches!(stale, StoreError::Fenced { .. }), "{stale}");
    assert_eq!(store.get_command(&command.command_id).await.unwrap(), None);

    let flow_id = accept(2, before, "gate-1").await.unwrap();
    let recorded = store
        .get_command(&command.command_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recorded.flow_id, Some(flow_id), "recorded with its flow");
    assert_eq!(recorded.status, CommandStatus::Accepted.as_str());
    assert_eq!(generation(store).await, before + 1);

    // The same command again (say, redelivered after the bus forgot it), even decided against
    // the current generation: refused whole.
    let again = accept(2, before + 1, "gate-2").await.unwrap_err();
    assert!(
        matches!(&again, StoreError::AlreadyExists { what: "command", key } if key == &command.command_id),
        "{again:?}"
    );
    assert_eq!(store.list_flows("gate", 10).await.unwrap().len(), 1);
    assert_eq!(
        store
            .list_events("gate", 0, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        ["gate-1"]
    );
    assert_eq!(generation(store).await, before + 1, "no second change");
    assert!(matches!(
        store.record_command(command.clone()).await.unwrap(),
        CommandRecorded::Duplicate(row) if row.flow_id == Some(flow_id)
    ));

    // A refusal decided on the first delivery is recorded with its reason in one insert.
    let refused = NewCommand {
        status: CommandStatus::Rejected.as_str().into(),
        result: Some("mesh gate is busy".into()),
        ..new_command("0192f0c2-0000-7000-8000-000000000302", "gate", "DeleteMesh")
    };
    store.record_decided_command(refused.clone()).await.unwrap();
    let row = store
        .get_command(&refused.command_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, CommandStatus::Rejected.as_str());
    assert_eq!(row.result.as_deref(), Some("mesh gate is busy"));
    assert_eq!(row.flow_id, None);
    let twice = store.record_decided_command(refused).await.unwrap_err();
    assert!(
        matches!(
            twice,
            StoreError::AlreadyExists {
                what: "command",
                ..
            }
        ),
        "{twice:?}"
    );
}

async fn logs_and_times_are_kept_however_a_transition_is_written(h: Harness) {
    let store = &h.store;
    let flow = store
        .create_flow(new_flow("m", "reconfigure"))
        .await
        .unwrap();
    let task = store
        .create_task(new_task(flow.id, "telemetry"))
        .await
        .unwrap();
    let step = |transition: TaskTransition| async move {
        store.transition_task(task.id, transition).await.unwrap()
    };
    let started = step(TaskTransition {
        status: Some(TaskStatus::Running),
        log_line: Some("a".into()),
        ..TaskTransition::default()
    })
    .await;
    assert_eq!(started.log.as_deref(), Some("a"));
    let first_start = started.started_at.expect("started");
    let retried = step(TaskTransition {
        status: Some(TaskStatus::Running),
        steps: Some("1/2".into()),
        log_line: Some("b".into()),
        ..TaskTransition::default()
    })
    .await;
    assert_eq!(retried.log.as_deref(), Some("a\nb"));
    assert_eq!(
        retried.started_at,
        Some(first_start),
        "a start is kept once set"
    );
    assert_eq!(retried.finished_at, None);

    // Two transitions in one step: both lines, the last output, the end.
    store
        .record_flow_step(
            flow.id,
            FlowStep {
                tasks: vec![
                    (
                        task.id,
                        TaskTransition {
                            log_line: Some("c".into()),
                            output: Some("first".into()),
                            ..TaskTransition::default()
                        },
                    ),
                    (
                        task.id,
                        TaskTransition {
                            status: Some(TaskStatus::Succeeded),
                            output: Some("second".into()),
                            log_line: Some("d".into()),
                            ..TaskTransition::default()
                        },
                    ),
                ],
                ..FlowStep::default()
            },
        )
        .await
        .unwrap();
    let done = store.list_tasks(flow.id).await.unwrap().remove(0);
    assert_eq!(done.log.as_deref(), Some("a\nb\nc\nd"));
    assert_eq!(done.status, TaskStatus::Succeeded.as_str());
    assert_eq!(done.output.as_deref(), Some("second"));
    assert_eq!(done.steps, "1/2", "steps not given are kept");
    assert_eq!(done.started_at, Some(first_start));
    assert!(done.finished_at.is_some());

    // A log about to pass its bound drops its oldest lines, at a line start.
    let long = |c: char| c.to_string().repeat(40_000);
    step(TaskTransition {
        log_line: Some(long('x')),
        ..TaskTransition::default()
    })
    .await;
    let trimmed = step(TaskTransition {
        log_line: Some(long('y')),
        ..TaskTransition::default()
    })
    .await;
    assert_eq!(trimmed.log, Some(long('y')));
    assert_eq!(trimmed.status, TaskStatus::Succeeded.as_str());

    // The flow: started once, ended with the processor and heartbeat of its last runner.
    let running = store
        .transition_flow(
            flow.id,
            FlowTransition {
                status: FlowStatus::Running,
                log_line: None,
                fence_epoch: None,
                processor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(running.log, None);
    let flow_start = running.started_at.expect("started");
    let finished = store
        .transition_flow(
            flow.id,
            FlowTransition {
                status: FlowStatus::Succeeded,
                log_line: Some("done".into()),
                fence_epoch: None,
                processor: Some("w2".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(finished.log.as_deref(), Some("done"));
    assert_eq!(finished.started_at, Some(flow_start));
    assert!(finished.finished_at.is_some());
    assert_eq!(finished.processor, "w2");
    assert!(finished.heartbeat.is_some());
    let again = store
        .transition_flow(
            flow.id,
            FlowTransition {
                status: FlowStatus::Succeeded,
                log_line: Some("noted".into()),
                fence_epoch: None,
                processor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(again.log.as_deref(), Some("done\nnoted"));
    assert_eq!(again.processor, "w2", "the processor is kept");
    assert_eq!(again.heartbeat, finished.heartbeat);

    // No such task or flow: still an error, not a silent success.
    let missing = store
        .transition_task(i64::MAX, TaskTransition::default())
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StoreError::NotFound { .. }),
        "{missing:?}"
    );
}

async fn an_accepted_change_hands_its_flow_what_a_read_would_find(h: Harness) {
    let store = &h.store;
    store.create_mesh(new_mesh("t1", "ready")).await.unwrap();
    store
        .add_member_cluster(NewMemberCluster {
            name: "east".into(),
            region: "r1".into(),
            mesh_name: "ready".into(),
            role: "master".into(),
            phase: "Pending".into(),
            network: String::new(),
        })
        .await
        .unwrap();
    let decided = store.mesh_to_decide(&tenant("t1"), "ready").await.unwrap();
    let mesh = decided.mesh.unwrap();
    let command = new_command(
        "0192f0c2-0000-7000-8000-000000000401",
        "ready",
        "SetTraceSampling",
    );
    let acceptance = FlowAcceptance {
        command: CommandEntry::New(command.clone()),
        owner_epoch: 3,
        spec: Some(MeshSpecUpdate {
            mesh: "ready".into(),
            expected_generation: mesh.generation,
            epoch: 3,
            change: MeshSpecChange {
                config: Some(r#"{"traceSampling":7.0}"#.into()),
                ..MeshSpecChange::default()
            },
        }),
        flow: NewFlow {
            processor: "w1".into(),
            ..new_flow("ready", "reconfigure")
        },
        tasks: vec!["mesh-config:east".into(), "verify".into()],
        events: vec![event("ready-1", "ready", "CommandAccepted")],
    };
    let compound_before = store.compound_outcomes();
    let (flow_id, handed) = store
        .record_acceptance(acceptance.clone(), Some((mesh.clone(), decided.members)))
        .await
        .unwrap();
    if store.compound_transactions() {
        assert_eq!(
            store.compound_outcomes(),
            (compound_before.0 + 1, compound_before.1),
            "MariaDB records the acceptance as one statement"
        );
    }
    let handed = handed.unwrap();
    assert_eq!(handed.flow.id, flow_id);
    // The command and the events are linked to the new flow, whichever way it was recorded.
    assert_eq!(
        flow_of_command(store, &command.command_id).await,
        Some(flow_id)
    );
    let history = store.list_events("ready", 0, 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].flow_id, Some(flow_id));
    let read = store.flow_to_run(handed.flow.id).await.unwrap().unwrap();

    // Timestamps are the store's or the database's clock; everything else is the row's.
    let without_times = |mut to_run: FlowToRun| {
        to_run.flow.created_at = None;
        to_run.flow.updated_at = None;
        if let Some(mesh) = &mut to_run.mesh {
            mesh.updated_at = None;
        }
        format!(
            "{:?}",
            (to_run.flow, to_run.mesh, to_run.members, to_run.tasks)
        )
    };
    assert_eq!(without_times(handed.clone()), without_times(read.clone()));
    let handed_mesh = handed.mesh.unwrap();
    assert_eq!(handed_mesh.generation, mesh.generation + 1);
    assert_eq!(handed_mesh.owner_epoch, 3);
    assert_eq!(
        handed_mesh.config.as_deref(),
        Some(r#"{"traceSampling":7.0}"#)
    );
    assert_eq!(
        handed
            .tasks
            .iter()
            .map(|t| (t.name.as_str(), t.status.as_str()))
            .collect::<Vec<_>>(),
        [("mesh-config:east", "Pending"), ("verify", "Pending")]
    );

    // A refused acceptance hands nothing over and leaves nothing behind.
    let compound_before = store.compound_outcomes();
    let again = store
        .record_acceptance(acceptance.clone(), Some((mesh.clone(), Vec::new())))
        .await
        .unwrap_err();
    assert!(
        matches!(again, StoreError::GenerationConflict { .. }),
        "{again:?}"
    );
    if store.compound_transactions() {
        assert_eq!(
            store.compound_outcomes(),
            (compound_before.0, compound_before.1 + 1),
            "the compound statement declines and the ordinary transaction says why"
        );
    }
    assert_eq!(store.list_flows("ready", 10).await.unwrap().len(), 1);
    assert_eq!(store.list_events("ready", 0, 10).await.unwrap().len(), 1);

    // The same command once more, decided against the current generation: the command log
    // refuses it whole (its id is recorded), the mesh keeps its generation.
    let current = store.mesh_to_decide(&tenant("t1"), "ready").await.unwrap();
    let current_mesh = current.mesh.unwrap();
    let mut redelivered = acceptance;
    if let Some(spec) = &mut redelivered.spec {
        spec.expected_generation = current_mesh.generation;
    }
    let duplicate = store
        .record_acceptance(redelivered, Some((current_mesh.clone(), Vec::new())))
        .await
        .unwrap_err();
    assert!(
        matches!(
            duplicate,
            StoreError::AlreadyExists {
                what: "command",
                ..
            }
        ),
        "{duplicate:?}"
    );
    let after = store.mesh_to_decide(&tenant("t1"), "ready").await.unwrap();
    assert_eq!(after.mesh.unwrap().generation, current_mesh.generation);
    assert_eq!(store.list_flows("ready", 10).await.unwrap().len(), 1);
    assert_eq!(store.list_events("ready", 0, 10).await.unwrap().len(), 1);
}

async fn concurrent_flow_steps_land_each_with_its_own_answer(h: Harness) {
    let store = &h.store;
    // Two meshes, owned at epochs 2 and 5; many flows on each.
    for (mesh, epoch) in [("grp-a", 2), ("grp-b", 5)] {
        store.create_mesh(new_mesh("t1", mesh)).await.unwrap();
        store.claim_mesh(mesh, epoch).await.unwrap();
    }
    let mut flows = Vec::new();
    for n in 0..24 {
        let mesh = if n % 2 == 0 { "grp-a" } else { "grp-b" };
        let flow = store
            .create_flow(new_flow(mesh, "reconfigure"))
            .await
            .unwrap();
        flows.push((n, mesh, flow.id));
    }
    let fenced_before = store.fenced_write_count();
    // Every third step comes from an owner older than its mesh's: refused, alone.
    let steps = flows.iter().map(|&(n, mesh, flow_id)| {
        let owner = if mesh == "grp-a" { 2 } else { 5 };
        let epoch = if n % 3 == 0 { owner - 1 } else { owner };
        let step = FlowStep {
            fence_epoch: Some(epoch),
            events: vec![event(&format!("grp-{n}"), mesh, "FlowStarted")],
            flow: Some(FlowTransition {
                status: FlowStatus::Running,
                log_line: Some(format!("step {n}")),
                fence_epoch: None,
                processor: Some("w1".into()),
            }),
            ..FlowStep::default()
        };
        let store = store.clone();
        async move { (n, flow_id, store.record_flow_step(flow_id, step).await) }
    });
    let mut running = tokio::task::JoinSet::new();
    for step in steps {
        running.spawn(step);
    }
    let outcomes = running.join_all().await;
    for (n, flow_id, outcome) in outcomes {
        let flow = store.get_flow(flow_id).await.unwrap().unwrap();
        if n % 3 == 0 {
            assert!(
                matches!(outcome, Err(StoreError::Fenced { .. })),
                "step {n}: {outcome:?}"
            );
            assert_eq!(flow.status, "Pending", "step {n} left nothing");
        } else {
            assert!(outcome.is_ok(), "step {n}: {outcome:?}");
            assert_eq!(flow.status, "Running", "step {n} landed");
            assert_eq!(flow.log.as_deref(), Some(format!("step {n}").as_str()));
        }
    }
    assert_eq!(store.fenced_write_count() - fenced_before, 8);
    for mesh in ["grp-a", "grp-b"] {
        let mut ids: Vec<String> = store
            .list_events(mesh, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        ids.sort();
        let mut expected: Vec<String> = flows
            .iter()
            .filter(|&&(n, m, _)| m == mesh && n % 3 != 0)
            .map(|(n, _, _)| format!("grp-{n}"))
            .collect();
        expected.sort();
        assert_eq!(
            ids, expected,
            "{mesh}: the events of the steps that landed, once"
        );
    }
}

on_every_backend!(
    concurrent_flow_steps_land_each_with_its_own_answer,
    an_accepted_change_hands_its_flow_what_a_read_would_find,
    logs_and_times_are_kept_however_a_transition_is_written,
    a_new_command_is_recorded_by_its_acceptance_once,
    a_command_is_accepted_whole_or_not_at_all,
    a_flow_step_is_recorded_whole_or_not_at_all,
    flow_and_task_writes_of_a_stale_owner_are_refused,
    mesh_secrets_are_sealed_and_bound_to_their_mesh,
    meshes_are_created_read_and_listed_per_tenant,
    deleted_mesh_names_can_be_used_again,
    spec_updates_are_compare_and_set_by_generation,
    writes_from_an_older_owner_epoch_are_fenced,
    member_clusters_record_their_phase,
    registered_cluster_credentials_are_sealed_at_rest,
    flows_and_tasks_record_every_transition,
    a_decision_reads_the_busy_flow_the_visible_mesh_and_its_members_at_once,
    events_are_appended_once_and_snapshotted,
    a_steps_events_are_stored_once_in_order_however_many,
    large_events_keep_the_snapshot_within_its_column,
    messages_longer_than_their_columns_are_cut_not_refused,
    the_command_log_keeps_one_effect_per_command,
    load_balancer_resources_are_upserted_by_name,
    the_store_answers_pings_and_reports_no_pending_migrations,
);
