//! A worker's flow slots: with `max_concurrent_flows` flows running, a further accepted flow
//! waits `Pending` until one ends, and a worker stopped meanwhile leaves it untouched for the
//! partition's next owner.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::time::{Duration, Instant};

use mesh_core::{ClusterRole, MeshMode};
use mesh_schema::Store;
use mesh_schema::models::FlowRecord;
use support::harness::*;

/// How long the simulated control planes take to get ready: long enough to watch a flow wait.
const DEPLOY_READY_DELAY: Duration = Duration::from_millis(1500);

/// The newest flow of `mesh`, once there is one.
async fn newest_flow(store: &Store, mesh: &str) -> Option<FlowRecord> {
    store.list_flows(mesh, 1).await.unwrap().into_iter().next()
}

/// Waits until both meshes have a flow and returns them as (first, second).
async fn both_flows(store: &Store) -> (FlowRecord, FlowRecord) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let (Some(first), Some(second)) = (
            newest_flow(store, "first").await,
            newest_flow(store, "second").await,
        ) {
            return (first, second);
        }
        assert!(Instant::now() < deadline, "the commands were not accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes the installs of meshes `first` and `second`, one cluster each.
async fn publish_two_installs(setup: &Setup) {
    let clusters = cluster_names(&setup.world);
    for (mesh, cluster) in [("first", &clusters[0]), ("second", &clusters[1])] {
        let create = create_command(
            mesh,
            MeshMode::Single,
            &[(cluster.as_str(), ClusterRole::Master)],
        );
        setup.bus.publish_command(&create).await.unwrap();
    }
}

#[actix_rt::test]
async fn a_flow_beyond_the_workers_slots_waits_pending_until_one_frees() {
    let setup = setup_with(2, true, false, 1, DEPLOY_READY_DELAY).await;
    publish_two_installs(&setup).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen_waiting = false;
    loop {
        let (first, second) = both_flows(&setup.store).await;
        let statuses = [first.status.as_str(), second.status.as_str()];
        assert_ne!(
            statuses,
            ["Running", "Running"],
            "two flows ran at once on a worker with one slot"
        );
        let running = statuses.iter().filter(|s| **s == "Running").count();
        let pending = statuses.iter().filter(|s| **s == "Pending").count();
        if running == 1 && pending == 1 {
            seen_waiting = true;
            let waiting = if first.status == "Pending" {
                &first
            } else {
                &second
            };
            assert!(
                waiting.started_at.is_none(),
                "a waiting flow has no start: {waiting:?}"
            );
        }
        if statuses == ["Succeeded", "Succeeded"] {
            break;
        }
        assert!(
            !statuses.contains(&"Failed") && !statuses.contains(&"RolledBack"),
            "{}{}",
            flow_report(&setup.store, "first").await,
            flow_report(&setup.store, "second").await
        );
        assert!(
            Instant::now() < deadline,
            "the installs did not finish: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        seen_waiting,
        "one flow never waited while the other ran: the slot limit was not observed"
    );
    let (first, second) = both_flows(&setup.store).await;
    let (earlier, later) = if first.started_at <= second.started_at {
        (first, second)
    } else {
        (second, first)
    };
    assert!(
        later.started_at >= earlier.finished_at,
        "the second flow started before the first ended: {earlier:?} {later:?}"
    );
}

#[actix_rt::test]
async fn a_stopping_worker_leaves_a_flow_waiting_for_a_slot_untouched() {
    let mut setup = setup_with(2, true, false, 1, DEPLOY_READY_DELAY * 4).await;
    publish_two_installs(&setup).await;

    // Wait until one flow runs and the other waits for the only slot.
    let deadline = Instant::now() + Duration::from_secs(30);
    let waiting = loop {
        let (first, second) = both_flows(&setup.store).await;
        match (first.status.as_str(), second.status.as_str()) {
            ("Running", "Pending") => break second,
            ("Pending", "Running") => break first,
            statuses => assert!(
                Instant::now() < deadline,
                "never saw one flow running and one waiting: {statuses:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let tasks_before = setup.store.list_tasks(waiting.id).await.unwrap();

    setup.stop_worker().await;

    let after = setup.store.get_flow(waiting.id).await.unwrap().unwrap();
    assert_eq!(after.status, "Pending", "{after:?}");
    assert_eq!(after.started_at, None, "{after:?}");
    assert_eq!(after.processor, waiting.processor, "{after:?}");
    assert_eq!(after.heartbeat, waiting.heartbeat, "{after:?}");
    assert_eq!(after.log, waiting.log, "{after:?}");
    let tasks_after = setup.store.list_tasks(waiting.id).await.unwrap();
    assert_eq!(
        format!("{tasks_after:?}"),
        format!("{tasks_before:?}"),
        "the waiting flow's tasks were written to"
    );
    assert!(
        tasks_after.iter().all(|task| task.status == "Pending"),
        "{tasks_after:?}"
    );
}
