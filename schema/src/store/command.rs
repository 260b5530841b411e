//! The command log: every accepted command by its envelope id, with its outcome.
//!
//! Recording is the idempotency gate: the first delivery of a command id inserts its row and goes
//! on to act; any later delivery — even one long after the bus's duplicate window — finds the row
//! and does nothing but report the recorded outcome.

use diesel::prelude::*;
use mesh_core::CommandStatus;

use super::kept::{self, Kept, insert_row};
use super::{Store, StoreError, fit_text_column, now};
use crate::database::AnyConnection;
use crate::models::{CommandRecord, NewCommand};
use crate::schema::command_log;

/// The result of recording a command.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandRecorded {
    /// The first delivery of the id: recorded now, to be acted on.
    New,
    /// The id had been recorded before (this delivery must have no effect): its row as it stands,
    /// with the flow it started and its outcome.
    Duplicate(CommandRecord),
}

/// How an acceptance finds its command in the log.
#[derive(Debug, Clone)]
pub enum CommandEntry {
    /// Recorded already (by [`Store::record_command`]), by its id: the acceptance links it to
    /// its flow.
    Recorded(String),
    /// Not recorded yet: the acceptance records it, linked to its flow, in the same transaction.
    /// That insert is the idempotency gate then: a command recorded before fails the whole
    /// acceptance with `StoreError::AlreadyExists { what: "command", .. }` and leaves nothing.
    New(NewCommand),
}

/// Inserts `new`; a command recorded before fails it with `StoreError::AlreadyExists { what:
/// "command", .. }`. Inside the caller's transaction, if any.
pub(crate) fn insert_command_in(
    conn: &mut AnyConnection,
    new: &NewCommand,
) -> Result<(), StoreError> {
    let new = NewCommand {
        result: new.result.clone().map(fit_text_column),
        ..new.clone()
    };
    insert_row!(conn, command_log::table, &new)
        .map_err(|e| StoreError::query("record command", "command", &new.command_id, e))?;
    Ok(())
}

/// The statement recording a command's outcome (and its flow).
pub(crate) fn command_completion(
    id: &str,
    status: CommandStatus,
    result: Option<String>,
    flow_id: Option<i64>,
) -> impl Kept + '_ {
    kept::update(
        command_log::table.find(id),
        (
            command_log::status.eq(status.as_str()),
            command_log::result.eq(result.map(fit_text_column)),
            command_log::flow_id.eq(flow_id),
            command_log::updated_at.eq(now()),
        ),
    )
}

/// Records a command's outcome (and its flow), inside the caller's transaction.
pub(crate) fn complete_command_in(
    conn: &mut AnyConnection,
    id: &str,
    status: CommandStatus,
    result: Option<String>,
    flow_id: Option<i64>,
) -> Result<(), StoreError> {
    let changed = command_completion(id, status, result, flow_id)
        .execute(conn)
        .map_err(|e| StoreError::query("complete command", "command", id, e))?;
    if changed == 0 {
        return Err(StoreError::NotFound {
            what: "command",
            key: id.to_owned(),
        });
    }
    Ok(())
}

fn load_command(conn: &mut AnyConnection, id: &str) -> Result<Option<CommandRecord>, StoreError> {
    command_log::table
        .find(id)
        .select(CommandRecord::as_select())
        .first(conn)
        .optional()
        .map_err(|e| StoreError::query("load command", "command", id, e))
}

impl Store {
    /// Records a command unless its id is known; tells which happened.
    pub async fn record_command(&self, new: NewCommand) -> Result<CommandRecorded, StoreError> {
        self.run("record command", move |conn| {
            match insert_command_in(conn, &new) {
                Ok(_) => Ok(CommandRecorded::New),
                Err(StoreError::AlreadyExists { .. }) => load_command(conn, &new.command_id)?
                    .map(CommandRecorded::Duplicate)
                    .ok_or_else(|| StoreError::NotFound {
                        what: "command",
                        key: new.command_id.clone(),
                    }),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Records a command decided on its first delivery without a flow (a refusal, with its reason
    /// as `result`, or a deferral) in one insert; a command recorded before fails it with `StoreError::AlreadyExists { what:
    /// "command", .. }` and changes nothing.
    pub async fn record_decided_command(&self, new: NewCommand) -> Result<(), StoreError> {
        self.run("record command", move |conn| insert_command_in(conn, &new))
            .await
    }

    /// Records a command's outcome and the flow it started.
    pub async fn complete_command(
        &self,
        id: &str,
        status: CommandStatus,
        result: Option<String>,
        flow_id: Option<i64>,
    ) -> Result<CommandRecord, StoreError> {
        let id = id.to_owned();
        self.run("complete command", move |conn| {
            complete_command_in(conn, &id, status, result, flow_id)?;
            load_command(conn, &id)?.ok_or(StoreError::NotFound {
                what: "command",
                key: id.clone(),
            })
        })
        .await
    }

    /// A command by id.
    pub async fn get_command(&self, id: &str) -> Result<Option<CommandRecord>, StoreError> {
        let id = id.to_owned();
        self.run("get command", move |conn| load_command(conn, &id))
            .await
    }

    /// The commands of a mesh, newest first, at most `limit`.
    pub async fn list_commands(
        &self,
        mesh_name: &str,
        limit: i64,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        let mesh_name = mesh_name.to_owned();
        self.run("list commands", move |conn| {
            command_log::table
                .filter(command_log::mesh_name.eq(&mesh_name))
                .order((
                    command_log::created_at.desc(),
                    command_log::command_id.desc(),
                ))
                .limit(limit)
                .select(CommandRecord::as_select())
                .load(conn)
                .map_err(|e| StoreError::query("list commands", "mesh", &mesh_name, e))
        })
        .await
    }
}
