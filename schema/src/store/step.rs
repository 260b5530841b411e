//! Steps: everything one step of a command or flow writes, committed in one transaction.
//!
//! A flow step (the flow starts, a task starts or ends, the flow ends) changes a task or flow row,
//! maybe the mesh's status and the command's outcome, and appends the events announcing it. Doing
//! that in one transaction keeps the history and the rows in step — no event without its
//! transition, no transition without its event — and costs one commit instead of several.
//!
//! Every step is fenced by the writer's lease epoch through the mesh row itself:
//! `UPDATE mesh SET owner_epoch = :epoch … WHERE owner_epoch <= :epoch`. The update locks the row
//! until the commit, so a newer owner's claim waits for a step in progress and every later step of
//! the older owner is refused with [`StoreError::Fenced`]. A mesh deleted by its flow keeps fencing
//! through its deleted row, which carries the epoch of the owner that deleted it. Each event is
//! stored with the epoch of the step that recorded it, so a mesh's history shows who wrote it.
//!
//! Accepting a command is one step as well: the command log row, the change of desired state (a
//! compare-and-set on the generation), the flow with its tasks and the acceptance events.

use diesel::prelude::*;
use mesh_core::CommandStatus;

use super::command::complete_command_in;
use super::event::{AppendedEvent, append_events_in};
use super::flow::{
    FlowTransition, TaskTransition, apply_flow_transition, apply_heartbeat, apply_task_transition,
    insert_flow,
};
use super::mesh::{MeshSpecChange, MeshStatusChange};
use super::{Store, StoreError, now};
use crate::database::AnyConnection;
use crate::models::{FlowRecord, MeshRecord, NewCommand, NewEvent, NewFlow};
use crate::schema::{command_log, mesh};

/// A command's outcome to record with a step.
#[derive(Debug, Clone)]
pub struct CommandOutcome {
    /// The command's envelope id.
    pub command_id: String,
    /// Its new status.
    pub status: CommandStatus,
    /// Why it ended so, if it failed or was rejected.
    pub result: Option<String>,
}

/// Everything one step of a flow writes.
#[derive(Debug, Clone, Default)]
pub struct FlowStep {
    /// The mesh the flow works on (the fence).
    pub mesh: String,
    /// The mesh's tenant.
    pub tenant: String,
    /// The writer's lease epoch; `None` writes unfenced (single-process setups).
    pub epoch: Option<i64>,
    /// The flow's new status, if it changes.
    pub flow: Option<(i64, FlowTransition)>,
    /// Records the processor running the flow (and its heartbeat), if set.
    pub processor: Option<(i64, String)>,
    /// A task's change, if any.
    pub task: Option<(i64, TaskTransition)>,
    /// The mesh's observed status, if it changes (ignored when the mesh no longer exists).
    pub mesh_status: Option<MeshStatusChange>,
    /// The outcome of the command that started the flow, once known (with its flow id).
    pub command: Option<(CommandOutcome, Option<i64>)>,
    /// Events announcing the step, in order; each stored once per event id.
    pub events: Vec<NewEvent>,
}

/// What a step wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecorded {
    /// Where each event of the step landed, in order.
    pub events: Vec<AppendedEvent>,
}

/// The acceptance (or rejection) of a command, written in one transaction.
#[derive(Debug, Clone)]
pub struct AcceptCommand {
    /// The command log row: inserted, or updated if an earlier delivery recorded it.
    pub command: NewCommand,
    /// Why it was rejected, when `command.status` says so.
    pub result: Option<String>,
    /// The writer's lease epoch, fencing the spec change.
    pub epoch: i64,
    /// A change of desired state, compared and set on the mesh's generation.
    pub spec_change: Option<SpecChange>,
    /// The flow that carries the command out, with its task names in order.
    pub flow: Option<(NewFlow, Vec<String>)>,
    /// Events announcing the decision; their `flow_id` is filled in with the new flow's id.
    pub events: Vec<NewEvent>,
}

/// A compare-and-set change of a mesh's desired state.
#[derive(Debug, Clone)]
pub struct SpecChange {
    /// The mesh.
    pub mesh: String,
    /// The generation the change was decided on.
    pub expected_generation: i64,
    /// The fields to change.
    pub change: MeshSpecChange,
}

/// What accepting a command wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandAcceptance {
    /// The flow started, if any.
    pub flow: Option<FlowRecord>,
    /// The mesh as changed, if its desired state changed.
    pub mesh: Option<MeshRecord>,
}

fn load_live(conn: &mut AnyConnection, name: &str) -> Result<Option<MeshRecord>, StoreError> {
    mesh::table
        .filter(mesh::name.eq(name))
        .filter(mesh::deleted_flag.eq(0))
        .select(MeshRecord::as_select())
        .first(conn)
        .optional()
        .map_err(|e| StoreError::query("load mesh", "mesh", name, e))
}

/// Takes the fence of `mesh` for `epoch` (and writes its status change): refused when a newer
/// owner wrote the mesh; nothing to fence when the mesh is gone.
fn fence_mesh(
    conn: &mut AnyConnection,
    name: &str,
    tenant: &str,
    epoch: Option<i64>,
    status: Option<&MeshStatusChange>,
) -> Result<(), StoreError> {
    let Some(epoch) = epoch else {
        if let Some(change) = status {
            diesel::update(mesh::table)
                .filter(mesh::name.eq(name))
                .filter(mesh::tenant_id.eq(tenant))
                .filter(mesh::deleted_flag.eq(0))
                .set((change, mesh::updated_at.eq(now())))
                .execute(conn)
                .map_err(|e| StoreError::query("update mesh status", "mesh", name, e))?;
        }
        return Ok(());
    };
    // The tenant too: a mesh of another tenant with the same name is not this writer's to fence.
    let target = || {
        mesh::table
            .filter(mesh::name.eq(name))
            .filter(mesh::tenant_id.eq(tenant))
            .filter(mesh::deleted_flag.eq(0))
            .filter(mesh::owner_epoch.le(epoch))
    };
    let changed = match status {
        Some(change) => diesel::update(target())
            .set((
                change,
                mesh::owner_epoch.eq(epoch),
                mesh::updated_at.eq(now()),
            ))
            .execute(conn),
        None => diesel::update(target())
            .set(mesh::owner_epoch.eq(epoch))
            .execute(conn),
    }
    .map_err(|e| StoreError::query("fence mesh", "mesh", name, e))?;
    if changed > 0 {
        return Ok(());
    }
    // No live row took the fence: either a newer owner holds it, or the mesh is gone — deleted by
    // a flow whose owner recorded its epoch on the deleted row, which still fences older owners.
    // The newest row of the name (and tenant) tells.
    let owner_epoch: Option<i64> = mesh::table
        .filter(mesh::name.eq(name))
        .filter(mesh::tenant_id.eq(tenant))
        .order(mesh::id.desc())
        .select(mesh::owner_epoch)
        .first(conn)
        .optional()
        .map_err(|e| StoreError::query("fence mesh", "mesh", name, e))?;
    match owner_epoch {
        Some(owner_epoch) if owner_epoch > epoch => Err(StoreError::Fenced {
            mesh: name.to_owned(),
            epoch,
            owner_epoch,
        }),
        _ => Ok(()),
    }
}

fn record_step_in(conn: &mut AnyConnection, step: FlowStep) -> Result<StepRecorded, StoreError> {
    fence_mesh(
        conn,
        &step.mesh,
        &step.tenant,
        step.epoch,
        step.mesh_status.as_ref(),
    )?;
    if let Some((id, transition)) = step.task {
        apply_task_transition(conn, id, transition)?;
    }
    if let Some((outcome, flow_id)) = step.command {
        complete_command_in(
            conn,
            &outcome.command_id,
            outcome.status,
            outcome.result,
            flow_id,
        )?;
    }
    if let Some((id, processor)) = &step.processor {
        apply_heartbeat(conn, *id, processor)?;
    }
    let mut events = step.events;
    for event in &mut events {
        event.epoch = step.epoch;
    }
    let events = append_events_in(conn, &events)?;
    // The flow row last: a terminal flow means everything before it is stored.
    if let Some((id, transition)) = &step.flow {
        apply_flow_transition(conn, *id, transition)?;
    }
    Ok(StepRecorded { events })
}

fn accept_command_in(
    conn: &mut AnyConnection,
    accept: AcceptCommand,
) -> Result<CommandAcceptance, StoreError> {
    let AcceptCommand {
        command,
        result,
        epoch,
        spec_change,
        flow,
        mut events,
    } = accept;
    // A worker that lost the mesh's partition decides nothing more for it.
    fence_mesh(
        conn,
        &command.mesh_name,
        &command.tenant_id,
        Some(epoch),
        None,
    )?;
    let id = command.command_id.clone();
    let err = |e| StoreError::query("accept command", "command", &id, e);
    // Insert the command log row unless an earlier delivery of the command recorded it.
    let known = command_log::table
        .find(id.as_str())
        .select(command_log::command_id)
        .first::<String>(conn)
        .optional()
        .map_err(err)?
        .is_some();
    if !known {
        diesel::insert_into(command_log::table)
            .values(&command)
            .execute(conn)
            .map_err(|e| StoreError::query("record command", "command", &id, e))?;
    }
    let mesh = match spec_change {
        Some(SpecChange {
            mesh: name,
            expected_generation,
            change,
        }) => {
            let changed = diesel::update(mesh::table)
                .filter(mesh::name.eq(&name))
                .filter(mesh::deleted_flag.eq(0))
                .filter(mesh::generation.eq(expected_generation))
                .filter(mesh::owner_epoch.le(epoch))
                .set((
                    &change,
                    mesh::generation.eq(mesh::generation + 1),
                    mesh::owner_epoch.eq(epoch),
                    mesh::updated_at.eq(now()),
                ))
                .execute(conn)
                .map_err(|e| StoreError::query("update mesh spec", "mesh", &name, e))?;
            let row = load_live(conn, &name)?.ok_or_else(|| StoreError::NotFound {
                what: "mesh",
                key: name.clone(),
            })?;
            if changed == 0 {
                return Err(if row.owner_epoch > epoch {
                    StoreError::Fenced {
                        mesh: name,
                        epoch,
                        owner_epoch: row.owner_epoch,
                    }
                } else {
                    StoreError::GenerationConflict {
                        mesh: name,
                        expected: expected_generation,
                        actual: row.generation,
                    }
                });
            }
            Some(row)
        }
        None => None,
    };
    let flow = match flow {
        Some((new, tasks)) => {
            let flow_id = insert_flow(conn, &new, &tasks)?;
            for event in &mut events {
                event.flow_id = Some(flow_id);
            }
            Some(super::flow::load_flow(conn, flow_id)?)
        }
        None => None,
    };
    let status = command
        .status
        .parse::<CommandStatus>()
        .unwrap_or(CommandStatus::Accepted);
    complete_command_in(conn, &id, status, result, flow.as_ref().map(|f| f.id))?;
    for event in &mut events {
        event.epoch = Some(epoch);
    }
    append_events_in(conn, &events)?;
    Ok(CommandAcceptance { flow, mesh })
}

impl Store {
    /// Records one step of a flow — its fence, task and flow transitions, mesh status, command
    /// outcome and events — in one transaction.
    pub async fn record_step(&self, step: FlowStep) -> Result<StepRecorded, StoreError> {
        self.run("record flow step", move |conn| {
            conn.transaction(|conn| record_step_in(conn, step))
        })
        .await
    }

    /// Records a command's acceptance or rejection — command log, desired-state change, flow and
    /// tasks, events — in one transaction.
    pub async fn accept_command(
        &self,
        accept: AcceptCommand,
    ) -> Result<CommandAcceptance, StoreError> {
        self.run("accept command", move |conn| {
            conn.transaction(|conn| accept_command_in(conn, accept))
        })
        .await
    }
}
