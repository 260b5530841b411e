//! Events: the append-only history of each mesh (`mesh_event_log`) and the seed's `mesh_events`
//! snapshot of the latest events, written together in one transaction.
//!
//! Appending is idempotent by event id, so an event published again after a crash is stored once.

use diesel::prelude::*;

use super::kept::{self, insert_row};
use super::{Store, StoreError, last_insert_id};
use crate::database::AnyConnection;
use crate::models::{EventRecord, NewEvent};
use crate::schema::{mesh_event_log, mesh_events};

/// How many of the latest events the `mesh_events` snapshot keeps per mesh.
pub const SNAPSHOT_EVENTS: usize = 100;

/// The most bytes the `mesh_events` snapshot may take: the seed's column is a `TEXT`, which
/// MariaDB/MySQL refuse to overfill (and with it the transaction that appends the event). The
/// newest events that fit are kept; the history keeps all of them.
pub const SNAPSHOT_MAX_BYTES: usize = super::TEXT_COLUMN_BYTES;

/// Where an appended event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedEvent {
    /// Its position in the history.
    pub id: i64,
    /// Whether it had been appended before (nothing was written now).
    pub duplicate: bool,
}

/// Adds `payloads` (in order) to the mesh's snapshot: one read and one write however many.
fn update_snapshot(
    conn: &mut AnyConnection,
    mesh_name: &str,
    payloads: &[&str],
) -> Result<(), StoreError> {
    if payloads.is_empty() {
        return Ok(());
    }
    let err = |e| StoreError::query("update event snapshot", "mesh", mesh_name, e);
    let existing: Option<Option<String>> = mesh_events::table
        .filter(mesh_events::name.eq(mesh_name))
        .select(mesh_events::events)
        .first(conn)
        .optional()
        .map_err(err)?;
    let has_row = existing.is_some();
    let text = snapshot_with(existing.flatten().as_deref(), payloads)?;
    if has_row {
        kept::update(
            mesh_events::table.filter(mesh_events::name.eq(mesh_name)),
            mesh_events::events.eq(Some(text)),
        )
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

/// The snapshot `existing` (a JSON array) with `payloads` appended, keeping the latest
/// [`SNAPSHOT_EVENTS`] that fit in [`SNAPSHOT_MAX_BYTES`] (an event too large to fit alone is left
/// out). The events are carried as raw JSON text, never parsed into trees: this runs on every
/// event. An unreadable snapshot starts afresh; a payload that is not JSON is kept as a string.
fn snapshot_with(existing: Option<&str>, payloads: &[&str]) -> Result<String, StoreError> {
    use serde_json::value::RawValue;
    let encode = |e: serde_json::Error| StoreError::Encode {
        what: "event snapshot",
        reason: e.to_string(),
    };
    let mut events: Vec<&RawValue> = existing
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    // Each payload is read once: as raw JSON, or quoted into a JSON string when it is not JSON.
    let entries = payloads
        .iter()
        .map(|payload| match serde_json::from_str::<&RawValue>(payload) {
            Ok(raw) => Ok(Ok(raw)),
            Err(_) => serde_json::value::to_raw_value(payload).map(Err),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(encode)?;
    for entry in &entries {
        events.push(match entry {
            Ok(raw) => raw,
            Err(quoted) => quoted,
        });
    }
    // The newest events whose JSON array (`[` `]` and a comma between two) fits; one that could
    // never fit is passed over.
    let mut bytes = 2;
    let mut newest_first: Vec<&RawValue> = Vec::with_capacity(SNAPSHOT_EVENTS);
    for event in events.iter().rev() {
        if newest_first.len() == SNAPSHOT_EVENTS {
            break;
        }
        let size = event.get().len();
        if 2 + size > SNAPSHOT_MAX_BYTES {
            continue;
        }
        let with_separator = size + usize::from(!newest_first.is_empty());
        if bytes + with_separator > SNAPSHOT_MAX_BYTES {
            break;
        }
        bytes += with_separator;
        newest_first.push(event);
    }
    newest_first.reverse();
    serde_json::to_string(&newest_first).map_err(encode)
}

/// Stores `new` unless an event of its id is stored already (a step run again); whether it was
/// stored now. Inserted first, looked up only when its id is taken: a stored event is rare, and
/// the failed insert leaves the transaction usable on both backends.
fn insert_event(conn: &mut AnyConnection, new: &NewEvent) -> Result<bool, StoreError> {
    match insert_row!(conn, mesh_event_log::table, new) {
        Ok(_) => Ok(true),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(false),
        Err(e) => Err(StoreError::query("append event", "event", &new.event_id, e)),
    }
}

/// Appends `new` to its mesh's history (once per event id) and refreshes the snapshot, inside the
/// caller's transaction; tells where it stands in the history.
pub(crate) fn append_event_in(
    conn: &mut AnyConnection,
    new: &NewEvent,
) -> Result<AppendedEvent, StoreError> {
    let err = |e| StoreError::query("append event", "event", &new.event_id, e);
    if insert_event(conn, new)? {
        let id = last_insert_id(conn).map_err(err)?;
        update_snapshot(conn, &new.mesh_name, &[&new.payload])?;
        return Ok(AppendedEvent {
            id,
            duplicate: false,
        });
    }
    let id: i64 = mesh_event_log::table
        .filter(mesh_event_log::event_id.eq(&new.event_id))
        .select(mesh_event_log::id)
        .first(conn)
        .map_err(err)?;
    Ok(AppendedEvent {
        id,
        duplicate: true,
    })
}

/// Appends `events` (in order, once per event id) to their meshes' histories and refreshes each
/// mesh's snapshot once, inside the caller's transaction. Their positions are not read back.
pub(crate) fn append_events_in(
    conn: &mut AnyConnection,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    let mut fresh: Vec<(&str, Vec<&str>)> = Vec::new();
    for new in events {
        if !insert_event(conn, new)? {
            continue;
        }
        match fresh.iter_mut().find(|(mesh, _)| *mesh == new.mesh_name) {
            Some((_, payloads)) => payloads.push(&new.payload),
            None => fresh.push((&new.mesh_name, vec![&new.payload])),
        }
    }
    for (mesh, payloads) in &fresh {
        update_snapshot(conn, mesh, payloads)?;
    }
    Ok(())
}

impl Store {
    /// Appends an event to its mesh's history (once per event id) and refreshes the snapshot.
    pub async fn append_event(&self, new: NewEvent) -> Result<AppendedEvent, StoreError> {
        self.run("append event", move |conn| {
            conn.transaction(|conn| append_event_in(conn, &new))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_keeps_the_latest_events_as_they_were_written() {
        let mut text = snapshot_with(None, &[r#"{"kind":"A","n":0}"#]).expect("first");
        assert_eq!(text, r#"[{"kind":"A","n":0}]"#);
        for n in 1..=SNAPSHOT_EVENTS {
            let payload = format!(r#"{{"kind":"A","n":{n}}}"#);
            text = snapshot_with(Some(&text), &[&payload]).expect("next");
        }
        let events: Vec<serde_json::Value> = serde_json::from_str(&text).expect("an array");
        assert_eq!(events.len(), SNAPSHOT_EVENTS);
        assert_eq!(events[0]["n"], 1, "the oldest dropped");
        assert_eq!(events[SNAPSHOT_EVENTS - 1]["n"], SNAPSHOT_EVENTS);
    }

    #[test]
    fn the_snapshot_fits_its_column_and_passes_over_an_event_too_large_for_it() {
        let event =
            |n: usize, detail: usize| format!(r#"{{"n":{n},"detail":"{}"}}"#, "x".repeat(detail));
        let mut text = String::from("[]");
        for n in 1..=60 {
            text = snapshot_with(Some(&text), &[&event(n, 2_000)]).expect("next");
        }
        assert!(text.len() <= SNAPSHOT_MAX_BYTES, "{} bytes", text.len());
        let events: Vec<serde_json::Value> = serde_json::from_str(&text).expect("an array");
        let kept = SNAPSHOT_MAX_BYTES / (event(60, 2_000).len() + 1);
        assert_eq!(events.len(), kept, "as many of the newest as fit");
        assert_eq!(events[kept - 1]["n"], 60);

        let huge = event(61, SNAPSHOT_MAX_BYTES);
        let small = event(62, 10);
        let text = snapshot_with(Some(&text), &[&huge, &small]).expect("next");
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
    fn an_unreadable_snapshot_starts_afresh_and_a_text_payload_is_kept_as_a_string() {
        let text =
            snapshot_with(Some("not json"), &["plain \"text\"", r#"{"n":1}"#]).expect("written");
        let events: Vec<serde_json::Value> = serde_json::from_str(&text).expect("an array");
        assert_eq!(
            events,
            vec![
                serde_json::json!("plain \"text\""),
                serde_json::json!({"n": 1})
            ],
            "kept in the order given"
        );
    }
}
