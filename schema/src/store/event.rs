//! Events: the append-only history of each mesh (`mesh_event_log`). The seed's `mesh_events`
//! snapshot of the latest events is rebuilt from it after the appending transaction commits (see
//! [`super::snapshot`]).
//!
//! Appending is idempotent by event id, so an event published again after a crash is stored once.

use diesel::prelude::*;

use super::atomic::atomically;
use super::computed::NewFlowId;
use super::kept::insert_row;
use super::{Store, StoreError, last_insert_id};
use crate::database::AnyConnection;
use crate::models::{EventRecord, NewEvent};
use crate::schema::mesh_event_log;

/// Where an appended event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedEvent {
    /// Its position in the history.
    pub id: i64,
    /// Whether it had been appended before (nothing was written now).
    pub duplicate: bool,
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

/// Appends `new` to its mesh's history (once per event id) inside the caller's transaction; tells
/// where it stands in the history. The caller marks the mesh's snapshot stale once committed.
pub(crate) fn append_event_in(
    conn: &mut AnyConnection,
    new: &NewEvent,
) -> Result<AppendedEvent, StoreError> {
    let err = |e| StoreError::query("append event", "event", &new.event_id, e);
    if insert_event(conn, new)? {
        let id = last_insert_id(conn).map_err(err)?;
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

/// The most events one MariaDB/MySQL insert carries. Each row count is a statement of its own that
/// a connection prepares once and keeps (see `store::kept`), so the count is bounded.
pub(crate) const EVENTS_PER_INSERT: usize = 8;

/// `INSERT INTO mesh_event_log (…) VALUES (…), (…)` of up to [`EVENTS_PER_INSERT`] events
/// (MariaDB/MySQL): one round trip for a step's events instead of one each. Its SQL text depends
/// only on the number of rows, so the connection keeps it prepared.
pub(crate) struct EventRows<'a> {
    events: &'a [NewEvent],
    /// Whether the events belong to the flow a compound transaction has just inserted
    /// ([`NewFlowId`]) rather than to the flow each names.
    of_new_flow: bool,
}

impl<'a> EventRows<'a> {
    /// The insert of `events`, each of the flow it names.
    pub(crate) fn of(events: &'a [NewEvent]) -> Self {
        Self {
            events,
            of_new_flow: false,
        }
    }

    /// The insert of `events` of the flow the same compound transaction inserted before.
    pub(crate) fn of_new_flow(events: &'a [NewEvent]) -> Self {
        Self {
            events,
            of_new_flow: true,
        }
    }
}

impl diesel::query_builder::QueryId for EventRows<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::QueryFragment<diesel::mysql::Mysql> for EventRows<'_> {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::mysql::Mysql>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};
        use mesh_event_log::{
            correlation_id, event_id, flow_id, kind, mesh_name, occurred_at, payload, tenant_id,
        };
        if self.events.is_empty() || self.events.len() > EVENTS_PER_INSERT {
            return Err(diesel::result::Error::QueryBuilderError(
                format!(
                    "{} events in one insert; from 1 to {EVENTS_PER_INSERT}",
                    self.events.len()
                )
                .into(),
            ));
        }
        out.push_sql("INSERT INTO ");
        out.push_identifier("mesh_event_log")?;
        out.push_sql(" (");
        let columns = [
            event_id::NAME,
            tenant_id::NAME,
            mesh_name::NAME,
            kind::NAME,
            correlation_id::NAME,
            flow_id::NAME,
            payload::NAME,
            occurred_at::NAME,
        ];
        for (i, column) in columns.into_iter().enumerate() {
            if i > 0 {
                out.push_sql(", ");
            }
            out.push_identifier(column)?;
        }
        out.push_sql(") VALUES ");
        for (i, event) in self.events.iter().enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            out.push_bind_param::<Text, _>(&event.event_id)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&event.tenant_id)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&event.mesh_name)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&event.kind)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&event.correlation_id)?;
            out.push_sql(", ");
            if self.of_new_flow {
                NewFlowId.walk_ast(out.reborrow())?;
            } else {
                out.push_bind_param::<Nullable<BigInt>, _>(&event.flow_id)?;
            }
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&event.payload)?;
            out.push_sql(", ");
            out.push_bind_param::<Timestamp, _>(&event.occurred_at)?;
            out.push_sql(")");
        }
        Ok(())
    }
}

impl<Conn> RunQueryDsl<Conn> for EventRows<'_> {}

/// Appends `events` (in order, once per event id) to their meshes' histories inside the caller's
/// transaction. Their positions are not read back. The caller marks their meshes' snapshots stale
/// once committed ([`meshes_of`]).
pub(crate) fn append_events_in(
    conn: &mut AnyConnection,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    for chunk in events.chunks(EVENTS_PER_INSERT) {
        let stored_at_once = match conn {
            AnyConnection::Mysql(mysql) => match EventRows::of(chunk).execute(mysql) {
                Ok(_) => true,
                // One of them is stored already (a step run again): the others are stored one
                // by one below. The failed statement changed nothing and leaves the transaction
                // usable.
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                )) => false,
                Err(e) => {
                    let first = chunk.first().map_or("", |new| new.event_id.as_str());
                    return Err(StoreError::query("append events", "event", first, e));
                }
            },
            // SQLite runs in the process: a statement per event costs no round trip.
            AnyConnection::Sqlite(_) => false,
        };
        if !stored_at_once {
            for new in chunk {
                insert_event(conn, new)?;
            }
        }
    }
    Ok(())
}

/// The meshes `events` belong to: whose snapshots go stale when they are appended (the stale set
/// keeps each once).
pub(crate) fn meshes_of(events: &[NewEvent]) -> Vec<String> {
    events.iter().map(|event| event.mesh_name.clone()).collect()
}

impl Store {
    /// Appends an event to its mesh's history (once per event id); its snapshot follows.
    pub async fn append_event(&self, new: NewEvent) -> Result<AppendedEvent, StoreError> {
        let mesh = new.mesh_name.clone();
        let appended = self
            .run("append event", move |conn| {
                atomically(conn, |conn| append_event_in(conn, &new))
            })
            .await?;
        if !appended.duplicate {
            self.mark_event_snapshots_stale([mesh]);
        }
        Ok(appended)
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
}
