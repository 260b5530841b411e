//! Events: the append-only history of each mesh (`mesh_event_log`) and the seed's `mesh_events`
//! snapshot of the latest events, written together in one transaction.
//!
//! Appending is idempotent by event id, so an event published again after a crash is stored once.

use diesel::prelude::*;

use super::{Store, StoreError, last_insert_id};
use crate::database::AnyConnection;
use crate::models::{EventRecord, NewEvent};
use crate::schema::{mesh_event_log, mesh_events};

/// How many of the latest events the `mesh_events` snapshot keeps per mesh.
pub const SNAPSHOT_EVENTS: usize = 100;

/// Where an appended event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedEvent {
    /// Its position in the history.
    pub id: i64,
    /// Whether it had been appended before (nothing was written now).
    pub duplicate: bool,
}

fn update_snapshot(
    conn: &mut AnyConnection,
    mesh_name: &str,
    added: &[&NewEvent],
) -> Result<(), StoreError> {
    let err = |e| StoreError::query("update event snapshot", "mesh", mesh_name, e);
    let existing: Option<Option<String>> = mesh_events::table
        .filter(mesh_events::name.eq(mesh_name))
        .select(mesh_events::events)
        .first(conn)
        .optional()
        .map_err(err)?;
    let has_row = existing.is_some();
    let mut events: Vec<serde_json::Value> = existing
        .flatten()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    for new in added {
        let payload = serde_json::from_str(&new.payload)
            .unwrap_or_else(|_| serde_json::Value::String(new.payload.clone()));
        events.push(payload);
    }
    if events.len() > SNAPSHOT_EVENTS {
        let excess = events.len() - SNAPSHOT_EVENTS;
        events.drain(..excess);
    }
    let text = serde_json::to_string(&events).map_err(|e| StoreError::Encode {
        what: "event snapshot",
        reason: e.to_string(),
    })?;
    if has_row {
        diesel::update(mesh_events::table.filter(mesh_events::name.eq(mesh_name)))
            .set(mesh_events::events.eq(Some(text)))
            .execute(conn)
            .map_err(err)?;
    } else {
        diesel::insert_into(mesh_events::table)
            .values((
                mesh_events::name.eq(mesh_name),
                mesh_events::events.eq(Some(text)),
            ))
            .execute(conn)
            .map_err(err)?;
    }
    Ok(())
}

/// Appends events in order, each once per event id, and refreshes each mesh's snapshot once.
pub(crate) fn append_events_in(
    conn: &mut AnyConnection,
    events: &[NewEvent],
) -> Result<Vec<AppendedEvent>, StoreError> {
    let mut appended = Vec::with_capacity(events.len());
    let mut fresh: Vec<&NewEvent> = Vec::new();
    for new in events {
        let err = |e| StoreError::query("append event", "event", &new.event_id, e);
        let existing: Option<i64> = mesh_event_log::table
            .filter(mesh_event_log::event_id.eq(&new.event_id))
            .select(mesh_event_log::id)
            .first(conn)
            .optional()
            .map_err(err)?;
        if let Some(id) = existing {
            appended.push(AppendedEvent {
                id,
                duplicate: true,
            });
            continue;
        }
        diesel::insert_into(mesh_event_log::table)
            .values(new)
            .execute(conn)
            .map_err(err)?;
        let id = last_insert_id(conn).map_err(err)?;
        appended.push(AppendedEvent {
            id,
            duplicate: false,
        });
        fresh.push(new);
    }
    let mut meshes: Vec<&str> = fresh.iter().map(|e| e.mesh_name.as_str()).collect();
    meshes.sort_unstable();
    meshes.dedup();
    for mesh in meshes {
        let added: Vec<&NewEvent> = fresh
            .iter()
            .copied()
            .filter(|e| e.mesh_name == mesh)
            .collect();
        update_snapshot(conn, mesh, &added)?;
    }
    Ok(appended)
}

impl Store {
    /// Appends an event to its mesh's history (once per event id) and refreshes the snapshot.
    pub async fn append_event(&self, new: NewEvent) -> Result<AppendedEvent, StoreError> {
        self.run("append event", move |conn| {
            conn.transaction(|conn| {
                let appended = append_events_in(conn, std::slice::from_ref(&new))?;
                appended
                    .first()
                    .copied()
                    .ok_or(StoreError::Aborted { op: "append event" })
            })
        })
        .await
    }

    /// Events of a mesh after position `after_id`, oldest first, at most `limit`.
    pub async fn list_events(
        &self,
        mesh_name: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let mesh_name = mesh_name.to_owned();
        self.run("list events", move |conn| {
            mesh_event_log::table
                .filter(mesh_event_log::mesh_name.eq(&mesh_name))
                .filter(mesh_event_log::id.gt(after_id))
                .order(mesh_event_log::id.asc())
                .limit(limit)
                .select(EventRecord::as_select())
                .load(conn)
                .map_err(|e| StoreError::query("list events", "mesh", &mesh_name, e))
        })
        .await
    }

    /// The seed's snapshot of a mesh's latest events (a JSON array), if it has any.
    pub async fn event_snapshot(
        &self,
        mesh_name: &str,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let mesh_name = mesh_name.to_owned();
        self.run("read event snapshot", move |conn| {
            let text: Option<Option<String>> = mesh_events::table
                .filter(mesh_events::name.eq(&mesh_name))
                .select(mesh_events::events)
                .first(conn)
                .optional()
                .map_err(|e| StoreError::query("read event snapshot", "mesh", &mesh_name, e))?;
            Ok(text
                .flatten()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default())
        })
        .await
    }
}
