//! The seed's `mesh_events` snapshot: each mesh's latest events as one JSON array, rebuilt from
//! the append-only history (`mesh_event_log`) shortly after events are appended.
//!
//! The history is the record; the snapshot is a projection of it kept for seed clients. Writing
//! it inside every transaction that appends an event meant reading and rewriting up to 64 KB twice
//! per command. Instead, a transaction that appends events marks its meshes stale once it has
//! committed, and a refresher rebuilds each stale mesh's snapshot from its history at most once per
//! [`SNAPSHOT_REFRESH_DELAY`], however many events arrived meanwhile. The refresher runs only
//! while snapshots are stale, on the runtime of the write that marked them.
//!
//! What a reader sees:
//! - [`Store::event_snapshot`] rebuilds a snapshot this process marked stale before reading it, so
//!   mesh-manager reads its own writes;
//! - a seed client reading the table directly sees an event within about
//!   [`SNAPSHOT_REFRESH_DELAY`] of its commit;
//! - a process that dies with stale snapshots leaves them behind by its last events until the
//!   mesh's next event, or until a worker loads the mesh again (the mesh actor marks it stale when
//!   it starts). The history never misses an event.
//!
//! A rebuild always takes the newest events of the history, so rebuilds racing in two processes
//! (a worker handing a mesh over) both write a correct snapshot; the later rebuild wins.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::prelude::*;

use super::kept;
use super::{Store, StoreError};
use crate::database::AnyConnection;
use crate::schema::{mesh_event_log, mesh_events};

/// How many of the latest events the `mesh_events` snapshot keeps per mesh.
pub const SNAPSHOT_EVENTS: usize = 100;

/// The most bytes the `mesh_events` snapshot may take: the seed's column is a `TEXT`, which
/// MariaDB/MySQL refuse to overfill. The newest events that fit are kept; the history keeps all
/// of them.
pub const SNAPSHOT_MAX_BYTES: usize = super::TEXT_COLUMN_BYTES;

/// How long a stale snapshot waits before it is rebuilt: the events appended meanwhile are taken
/// in one rebuild.
pub const SNAPSHOT_REFRESH_DELAY: Duration = Duration::from_millis(500);

/// Which meshes' snapshots wait for a rebuild, and whether a refresher is running.
#[derive(Debug, Default)]
pub(crate) struct StaleSnapshots {
    meshes: std::sync::Mutex<BTreeSet<String>>,
    refreshing: AtomicBool,
}

impl StaleSnapshots {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        // The set stays consistent whatever a panicking holder did: it only adds and takes names.
        self.meshes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes every stale mesh.
    fn take_all(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.lock())
    }

    /// Takes `mesh` if it is stale.
    fn take(&self, mesh: &str) -> bool {
        self.lock().remove(mesh)
    }
}

/// Clears the refresher's flag when the refresher ends, also when its runtime drops it.
struct Refreshing<'a>(&'a StaleSnapshots);

impl Drop for Refreshing<'_> {
    fn drop(&mut self) {
        self.0.refreshing.store(false, Ordering::SeqCst);
    }
}

/// The snapshot of the history's newest events `newest_first`: the latest [`SNAPSHOT_EVENTS`]
/// that fit in [`SNAPSHOT_MAX_BYTES`] as a JSON array, oldest first (an event too large to fit
/// alone is passed over). Events are carried as raw JSON text, never parsed into trees; a payload
/// that is not JSON is kept as a string.
pub(crate) fn snapshot_of(newest_first: &[String]) -> Result<String, StoreError> {
    use serde_json::value::RawValue;
    let encode = |e: serde_json::Error| StoreError::Encode {
        what: "event snapshot",
        reason: e.to_string(),
    };
    let mut kept: Vec<Box<RawValue>> = Vec::with_capacity(SNAPSHOT_EVENTS);
    // `[` and `]`, and a comma between two events.
    let mut bytes = 2;
    for payload in newest_first {
        if kept.len() == SNAPSHOT_EVENTS {
            break;
        }
        let event = match serde_json::from_str::<&RawValue>(payload) {
            Ok(raw) => raw.to_owned(),
            Err(_) => serde_json::value::to_raw_value(payload).map_err(encode)?,
        };
        let size = event.get().len();
        if 2 + size > SNAPSHOT_MAX_BYTES {
            continue;
        }
        let with_separator = size + usize::from(!kept.is_empty());
        if bytes + with_separator > SNAPSHOT_MAX_BYTES {
            break;
        }
        bytes += with_separator;
        kept.push(event);
    }
    kept.reverse();
    serde_json::to_string(&kept).map_err(encode)
}

/// Rebuilds `mesh`'s snapshot from its history: one read of its newest events and one write.
fn rebuild_snapshot(conn: &mut AnyConnection, mesh: &str) -> Result<(), StoreError> {
    let err = |e| StoreError::query("rebuild event snapshot", "mesh", mesh, e);
    let newest_first: Vec<String> = mesh_event_log::table
        .filter(mesh_event_log::mesh_name.eq(mesh))
        .order(mesh_event_log::id.desc())
        .limit(SNAPSHOT_EVENTS as i64)
        .select(mesh_event_log::payload)
        .load(conn)
        .map_err(err)?;
    let text = snapshot_of(&newest_first)?;
    let changed = kept::update(
        mesh_events::table.filter(mesh_events::name.eq(mesh)),
        mesh_events::events.eq(Some(&text)),
    )
    .execute(conn)
    .map_err(err)?;
    // Diesel's MariaDB/MySQL connections count matched rows, so a row already holding `text`
    // counts too, as in the store's other updates.
    if changed > 0 {
        return Ok(());
    }
    match diesel::insert_into(mesh_events::table)
        .values((
            mesh_events::name.eq(mesh),
            mesh_events::events.eq(Some(&text)),
        ))
        .execute(conn)
    {
        // Another process inserted it meanwhile; its rebuild holds the history as well.
        Ok(_)
        | Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(()),
        Err(e) => Err(err(e)),
    }
}

impl Store {
    /// Marks the snapshots of `meshes` stale (their events are committed) and makes sure a
    /// refresher will rebuild them.
    pub fn mark_event_snapshots_stale<I>(&self, meshes: I)
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let any_stale = {
            let mut stale = self.inner.snapshots.lock();
            stale.extend(meshes.into_iter().map(Into::into));
            !stale.is_empty()
        };
        if any_stale {
            self.ensure_snapshot_refresher();
        }
    }

    /// Starts the refresher unless one runs. Outside a runtime nothing starts: the snapshots stay
    /// stale until the next write or read of their mesh in one.
    fn ensure_snapshot_refresher(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.snapshots.refreshing.swap(true, Ordering::SeqCst) {
            return;
        }
        let store = self.clone();
        runtime.spawn(async move {
            let snapshots = &store.inner.snapshots;
            loop {
                let refreshing = Refreshing(snapshots);
                loop {
                    tokio::time::sleep(SNAPSHOT_REFRESH_DELAY).await;
                    let meshes = snapshots.take_all();
                    if meshes.is_empty() {
                        break;
                    }
                    store.rebuild_snapshots(meshes).await;
                }
                drop(refreshing);
                // A mesh marked between the last look and the flag's clearing found this
                // refresher still running: carry on for it.
                if snapshots.lock().is_empty() || snapshots.refreshing.swap(true, Ordering::SeqCst)
                {
                    return;
                }
            }
        });
    }

    /// Rebuilds the snapshots of `meshes`; one that fails is marked stale again for the next pass
    /// (the database may be down for a while), and said so in the log.
    async fn rebuild_snapshots(&self, meshes: BTreeSet<String>) {
        let pending = meshes.clone();
        let failed = self
            .run("rebuild event snapshots", move |conn| {
                let mut failed = Vec::new();
                for mesh in meshes {
                    if let Err(error) = rebuild_snapshot(conn, &mesh) {
                        tracing::warn!(%error, %mesh, "event snapshot not rebuilt; retrying");
                        failed.push(mesh);
                    }
                }
                Ok(failed)
            })
            .await;
        let failed = match failed {
            Ok(failed) => failed,
            Err(error) => {
                tracing::warn!(%error, "event snapshots not rebuilt; retrying");
                pending.into_iter().collect()
            }
        };
        if !failed.is_empty() {
            self.inner.snapshots.lock().extend(failed);
        }
    }

    /// The seed's snapshot of a mesh's latest events (a JSON array), if it has any; rebuilt first
    /// when this process appended events to it since its last rebuild.
    pub async fn event_snapshot(
        &self,
        mesh_name: &str,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let mesh_name = mesh_name.to_owned();
        let stale = self.inner.snapshots.take(&mesh_name);
        let name = mesh_name.clone();
        let read = self
            .run("read event snapshot", move |conn| {
                if stale {
                    rebuild_snapshot(conn, &name)?;
                }
                let text: Option<Option<String>> = mesh_events::table
                    .filter(mesh_events::name.eq(&name))
                    .select(mesh_events::events)
                    .first(conn)
                    .optional()
                    .map_err(|e| StoreError::query("read event snapshot", "mesh", &name, e))?;
                Ok(text
                    .flatten()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default())
            })
            .await;
        if stale && read.is_err() {
            self.mark_event_snapshots_stale([mesh_name]);
        }
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn newest_first(payloads: &[String]) -> Vec<String> {
        payloads.iter().rev().cloned().collect()
    }

    #[test]
    fn the_snapshot_keeps_the_latest_events_oldest_first() {
        let one = snapshot_of(&[r#"{"kind":"A","n":0}"#.to_owned()]).expect("one");
        assert_eq!(one, r#"[{"kind":"A","n":0}]"#);
        let history: Vec<String> = (0..=SNAPSHOT_EVENTS)
            .map(|n| format!(r#"{{"kind":"A","n":{n}}}"#))
            .collect();
        let text = snapshot_of(&newest_first(&history)).expect("snapshot");
        let events: Vec<serde_json::Value> = serde_json::from_str(&text).expect("an array");
        assert_eq!(events.len(), SNAPSHOT_EVENTS);
        assert_eq!(events[0]["n"], 1, "the oldest dropped");
        assert_eq!(events[SNAPSHOT_EVENTS - 1]["n"], SNAPSHOT_EVENTS);
        assert_eq!(snapshot_of(&[]).expect("empty"), "[]");
    }

    #[test]
    fn the_snapshot_fits_its_column_and_passes_over_an_event_too_large_for_it() {
        let event =
            |n: usize, detail: usize| format!(r#"{{"n":{n},"detail":"{}"}}"#, "x".repeat(detail));
        let mut history: Vec<String> = (1..=60).map(|n| event(n, 2_000)).collect();
        let text = snapshot_of(&newest_first(&history)).expect("snapshot");
        assert!(text.len() <= SNAPSHOT_MAX_BYTES, "{} bytes", text.len());
        let events: Vec<serde_json::Value> = serde_json::from_str(&text).expect("an array");
        let kept = SNAPSHOT_MAX_BYTES / (event(60, 2_000).len() + 1);
        assert_eq!(events.len(), kept, "as many of the newest as fit");
        assert_eq!(events[kept - 1]["n"], 60);

        history.push(event(61, SNAPSHOT_MAX_BYTES));
        history.push(event(62, 10));
        let text = snapshot_of(&newest_first(&history)).expect("snapshot");
        let events: Vec<serde_json::Value> = serde_json::from_str(&text).expect("an array");
        assert!(text.len() <= SNAPSHOT_MAX_BYTES);
        assert!(
            events.iter().all(|e| e["n"] != 61),
            "the event too large is left out"
        );
        assert_eq!(events.last().expect("kept")["n"], 62);
        assert_eq!(events[events.len() - 2]["n"], 60, "older events still kept");
    }

    #[test]
    fn a_payload_that_is_not_json_is_kept_as_a_string() {
        let text =
            snapshot_of(&[r#"{"n":1}"#.to_owned(), "plain \"text\"".to_owned()]).expect("written");
        let events: Vec<serde_json::Value> = serde_json::from_str(&text).expect("an array");
        assert_eq!(
            events,
            vec![
                serde_json::json!("plain \"text\""),
                serde_json::json!({"n": 1})
            ],
            "oldest first"
        );
    }
}
