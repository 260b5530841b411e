//! Flows and tasks: the persistent record of every operation on a mesh, so a new owner can
//! resume a flow from its current task and users can see what happened.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use mesh_core::{CommandStatus, FlowStatus, TaskStatus};

use super::atomic::atomically;
use super::cluster::live_mesh_with_members;
use super::command::{CommandEntry, command_completion, complete_command_in, insert_command_in};
use super::compound::{Compound, CompoundCounts, Expect};
use super::computed::{AppendedLog, LogAtMost, NewFlowId, REMEMBER_NEW_FLOW, StartedOnce};
use super::event::{EVENTS_PER_INSERT, EventRows, append_events_in, meshes_of};
use super::kept::{self, KeptMysql, insert_row};
use super::mesh::{
    MeshSpecUpdate, MeshStatusChange, mesh_spec_update, mesh_status_update, record_mesh_status_in,
    update_mesh_spec_in,
};
use super::{Store, StoreError, TenantScope, fit_text_column, last_insert_id, now};
use crate::database::AnyConnection;
use crate::models::{
    FlowRecord, MemberClusterRecord, MeshRecord, NewCommand, NewEvent, NewFlow, NewTask, TaskRecord,
};
use crate::schema::{flow, task};

/// The newest unfinished (pending or running) flow of mesh `mesh_name`, of `tenant` only when
/// given: its id and definition.
///
/// Reads every unfinished flow of the mesh (at most a few; usually none) and picks the newest
/// here. Asked for the newest with `ORDER BY id DESC LIMIT 1`, MariaDB may walk the primary key
/// backwards from the newest flow of every mesh and test each row (under `worker_bench` it did,
/// and it was a third of MariaDB's CPU), which reads the whole table when the mesh has no
/// unfinished flow, the usual answer; without the order it takes the `idx_flow_unfinished` range.
fn unfinished_flow_of(
    conn: &mut AnyConnection,
    mesh_name: &str,
    tenant: Option<&str>,
) -> Result<Option<(i64, String)>, StoreError> {
    let mut query = flow::table
        .filter(flow::mesh_name.eq(mesh_name))
        .into_boxed();
    if let Some(tenant) = tenant {
        query = query.filter(flow::tenant_id.eq(tenant));
    }
    let unfinished: Vec<(i64, String)> = query
        .filter(
            flow::status
                .eq(FlowStatus::Pending.as_str())
                .or(flow::status.eq(FlowStatus::Running.as_str())),
        )
        .select((flow::id, flow::def_name))
        .load(conn)
        .map_err(|e| StoreError::query("find unfinished flow", "mesh", mesh_name, e))?;
    Ok(unfinished.into_iter().max_by_key(|(id, _)| *id))
}

/// A mesh as a command's decision reads it (see [`Store::mesh_to_decide`]).
#[derive(Debug, Clone)]
pub struct MeshToDecide {
    /// The newest unfinished flow (id, definition), if the mesh is busy.
    pub unfinished_flow: Option<(i64, String)>,
    /// The live mesh row, if the command's tenant sees one.
    pub mesh: Option<MeshRecord>,
    /// The row's member clusters (none without a row).
    pub members: Vec<MemberClusterRecord>,
}

/// Most log text kept per flow or task; older lines are dropped first.
const MAX_LOG_BYTES: usize = 60_000;

fn append_log(existing: Option<String>, line: &str) -> String {
    let mut log = existing.unwrap_or_default();
    if !log.is_empty() {
        log.push('\n');
    }
    log.push_str(line);
    if log.len() > MAX_LOG_BYTES {
        let mut cut = log.len() - MAX_LOG_BYTES;
        while !log.is_char_boundary(cut) {
            cut += 1;
        }
        let next_line = log[cut..].find('\n').map_or(cut, |i| cut + i + 1);
        log.drain(..next_line);
    }
    log
}

/// The condition that a row's log takes `lines` without dropping older lines (see
/// [`append_log`]): its length, in bytes, at most the bound less the new lines and their separator.
fn log_has_room(lines: Option<&str>) -> LogAtMost {
    LogAtMost::bytes(MAX_LOG_BYTES.saturating_sub(lines.map_or(0, |l| l.len() + 1)))
}

/// The log lines of `lines` as one appended text, or `None` without any; `Err(())` when they
/// alone exceed the log's bound (only the read-modify-write drops lines).
fn lines_to_append<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Option<String>, ()> {
    let lines: Vec<&str> = lines.collect();
    if lines.is_empty() {
        return Ok(None);
    }
    let joined = lines.join("\n");
    if joined.len() >= MAX_LOG_BYTES {
        return Err(());
    }
    Ok(Some(joined))
}

/// A change of a flow's status; timestamps follow from the status.
#[derive(Debug, Clone)]
pub struct FlowTransition {
    /// The new status.
    pub status: FlowStatus,
    /// A log line to append, if any.
    pub log_line: Option<String>,
    /// The writer's lease epoch: the write is refused when a newer owner holds the mesh.
    pub fence_epoch: Option<i64>,
    /// The worker now running the flow: recorded as its processor, with a fresh heartbeat.
    pub processor: Option<String>,
}

/// A change of a task's status.
#[derive(Debug, Clone, Default)]
pub struct TaskTransition {
    /// The new status.
    pub status: Option<TaskStatus>,
    /// Output to record (JSON).
    pub output: Option<String>,
    /// Error to record.
    pub error: Option<String>,
    /// New step summary.
    pub steps: Option<String>,
    /// A log line to append.
    pub log_line: Option<String>,
    /// The writer's lease epoch: the write is refused when a newer owner holds the mesh.
    pub fence_epoch: Option<i64>,
}

/// What a flow step records besides the flow's own row and event, in the same transaction.
#[derive(Debug, Clone, Default)]
pub struct FlowStepEffects {
    /// The command the flow carries out: its id, new status and result.
    pub command: Option<(String, CommandStatus, Option<String>)>,
    /// The mesh's new observed status, fenced by the epoch given; a mesh that no longer exists
    /// is left alone.
    pub mesh_status: Option<(String, i64, MeshStatusChange)>,
}

/// One step of a flow, recorded whole or not at all (see [`Store::record_flow_step`]): a flow's
/// start with its first task's, one task's end with the next one's start, the last task's end
/// with the flow's.
#[derive(Debug, Clone, Default)]
pub struct FlowStep {
    /// The writer's lease epoch: the whole step is refused when a newer owner holds the mesh.
    pub fence_epoch: Option<i64>,
    /// What the step records besides the flow's and tasks' rows.
    pub effects: FlowStepEffects,
    /// The events announcing the step, in the order they happened.
    pub events: Vec<NewEvent>,
    /// Task transitions, in the order they happened.
    pub tasks: Vec<(i64, TaskTransition)>,
    /// The flow's own transition, made after the tasks'.
    pub flow: Option<FlowTransition>,
}

impl FlowStep {
    /// Whether the step records nothing.
    pub fn is_empty(&self) -> bool {
        self.effects.command.is_none()
            && self.effects.mesh_status.is_none()
            && self.events.is_empty()
            && self.tasks.is_empty()
            && self.flow.is_none()
    }
}

/// Records `step` of flow `flow_id` inside the caller's transaction.
fn record_flow_step_in(
    conn: &mut crate::database::AnyConnection,
    flow_id: i64,
    mut step: FlowStep,
) -> Result<(), StoreError> {
    let mut fence_proved = false;
    if let Some((command_id, status, result)) = step.effects.command.take() {
        complete_command_in(conn, &command_id, status, result, Some(flow_id))?;
    }
    if let Some((mesh, epoch, change)) = &step.effects.mesh_status {
        match record_mesh_status_in(conn, mesh, *epoch, change) {
            Ok(()) => fence_proved = step.fence_epoch.is_none_or(|fence| *epoch <= fence),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(epoch) = step.fence_epoch
        && !fence_proved
    {
        super::check_flow_fence(conn, flow_id, epoch)?;
    }
    for event in &mut step.events {
        event.flow_id = Some(flow_id);
    }
    append_events_in(conn, &step.events)?;
    for (task_id, transitions) in by_task(step.tasks) {
        transition_task_many_in(conn, task_id, transitions)?;
    }
    if let Some(transition) = &step.flow {
        transition_flow_in(conn, flow_id, transition)?;
    }
    Ok(())
}

/// A step's task transitions grouped by task, in order: the transitions of one task in the step (a
/// quick task's start and end) are one write.
fn by_task(tasks: Vec<(i64, TaskTransition)>) -> Vec<(i64, Vec<TaskTransition>)> {
    let mut by_task: Vec<(i64, Vec<TaskTransition>)> = Vec::new();
    for (task_id, transition) in tasks {
        match by_task.iter_mut().find(|(id, _)| *id == task_id) {
            Some((_, transitions)) => transitions.push(transition),
            None => by_task.push((task_id, vec![transition])),
        }
    }
    by_task
}

/// Records `step` of flow `flow_id` as one compound statement (MariaDB; see `store::compound`):
/// the statements [`record_flow_step_in`] runs when every write lands as expected, in one round
/// trip. Returns whether it committed; when it did not (a write that the database cannot compute
/// in place, a fence only a read proves, or any statement that found other than expected),
/// nothing was written and the caller runs [`record_flow_step_in`], which says why.
fn record_flow_step_at_once(
    counts: &CompoundCounts,
    conn: &mut diesel::mysql::MysqlConnection,
    flow_id: i64,
    step: &FlowStep,
) -> Result<bool, StoreError> {
    let mut compound = Compound::default();
    let mut fence_proved = step.fence_epoch.is_none();
    if let Some((command_id, status, result)) = &step.effects.command {
        compound.push(
            command_completion(command_id, *status, result.clone(), Some(flow_id)),
            Expect::OneRow,
        );
    }
    if let Some((mesh, epoch, change)) = &step.effects.mesh_status {
        compound.push(mesh_status_update(mesh, *epoch, change), Expect::OneRow);
        fence_proved |= step.fence_epoch.is_some_and(|fence| *epoch <= fence);
    }
    if !fence_proved {
        return Ok(false);
    }
    for chunk in step.events.chunks(EVENTS_PER_INSERT) {
        compound.push(EventRows::of(chunk), Expect::Anything);
    }
    for (task_id, transitions) in by_task(step.tasks.clone()) {
        let Some(statement) = task_in_place(task_id, &transitions) else {
            return Ok(false);
        };
        compound.push(statement, Expect::OneRow);
    }
    if let Some(transition) = &step.flow {
        let Some(statement) = flow_in_place(flow_id, transition) else {
            return Ok(false);
        };
        compound.push(statement, Expect::OneRow);
    }
    counts
        .run("a flow step", compound, conn)
        .map_err(|e| StoreError::query("record a flow step", "flow", flow_id.to_string(), e))
}

/// Updates task `id` (fenced when the transition says so), inside the caller's transaction.
fn transition_task_in(
    conn: &mut crate::database::AnyConnection,
    id: i64,
    transition: TaskTransition,
) -> Result<(), StoreError> {
    transition_task_many_in(conn, id, vec![transition])
}

/// Moves task `id` through `transitions` in order with one write and no read of the row, where
/// the database computes the new row: on MariaDB/MySQL, for transitions that are not fenced
/// themselves and log lines that fit. Returns whether it wrote; if not (no such task, a log about
/// to drop lines, or none of those conditions), the caller reads and writes the row instead.
fn write_task_in_place(
    conn: &mut crate::database::AnyConnection,
    id: i64,
    transitions: &[TaskTransition],
) -> Result<bool, StoreError> {
    let crate::database::AnyConnection::Mysql(conn) = conn else {
        return Ok(false);
    };
    let Some(statement) = task_in_place(id, transitions) else {
        return Ok(false);
    };
    let matched = statement
        .execute(conn)
        .map_err(|e| StoreError::query("update task", "task", id.to_string(), e))?;
    Ok(matched == 1)
}

/// The statement of [`write_task_in_place`] (MariaDB/MySQL), or `None` when the database cannot
/// compute the new row (a fenced transition, log lines beyond the log's bound). It changes no row
/// when there is no such task or its log has no room for the new lines.
fn task_in_place(id: i64, transitions: &[TaskTransition]) -> Option<impl KeptMysql + use<>> {
    if transitions.iter().any(|t| t.fence_epoch.is_some()) {
        return None;
    }
    let lines = lines_to_append(transitions.iter().filter_map(|t| t.log_line.as_deref())).ok()?;
    let at = now();
    let latest = |field: fn(&TaskTransition) -> Option<&String>| {
        transitions.iter().rev().find_map(|t| field(t).cloned())
    };
    let started = transitions
        .iter()
        .any(|t| t.status == Some(TaskStatus::Running));
    let finished = transitions
        .iter()
        .any(|t| t.status.is_some_and(TaskStatus::is_terminal));
    let changes = (
        transitions
            .iter()
            .rev()
            .find_map(|t| t.status)
            .map(|status| task::status.eq(status.as_str())),
        latest(|t| t.output.as_ref()).map(|output| task::output.eq(Some(fit_text_column(output)))),
        latest(|t| t.error.as_ref()).map(|error| task::error.eq(Some(fit_text_column(error)))),
        latest(|t| t.steps.as_ref()).map(|steps| task::steps.eq(steps)),
        lines
            .as_ref()
            .map(|lines| task::log.eq(AppendedLog::new(lines))),
        started.then(|| task::started_at.eq(StartedOnce::at(at))),
        finished.then_some(task::finished_at.eq(Some(at))),
        task::updated_at.eq(at),
    );
    Some(kept::update(
        task::table.find(id).filter(log_has_room(lines.as_deref())),
        changes,
    ))
}

/// Moves task `id` through `transitions` in order (each fenced when it says so) with one write,
/// and one read where the database cannot compute the new row itself, inside the caller's
/// transaction: a quick task's start and end in one step.
fn transition_task_many_in(
    conn: &mut crate::database::AnyConnection,
    id: i64,
    transitions: Vec<TaskTransition>,
) -> Result<(), StoreError> {
    if write_task_in_place(conn, id, &transitions)? {
        return Ok(());
    }
    let mut task = load_task(conn, id)?;
    // One check with the oldest epoch refuses the writes exactly when any one would be refused.
    if let Some(epoch) = transitions.iter().filter_map(|t| t.fence_epoch).min() {
        super::check_flow_fence(conn, task.flow_id, epoch)?;
    }
    let at = now();
    for transition in transitions {
        if let Some(status) = transition.status {
            task.status = status.as_str().to_owned();
            if status == TaskStatus::Running {
                task.started_at = task.started_at.or(Some(at));
            }
            if status.is_terminal() {
                task.finished_at = Some(at);
            }
        }
        task.output = transition.output.map(fit_text_column).or(task.output);
        task.error = transition.error.map(fit_text_column).or(task.error);
        task.steps = transition.steps.unwrap_or(task.steps);
        if let Some(line) = &transition.log_line {
            task.log = Some(append_log(task.log, line));
        }
    }
    kept::update(
        task::table.find(id),
        (
            task::status.eq(task.status),
            task::output.eq(task.output),
            task::error.eq(task.error),
            task::steps.eq(task.steps),
            task::log.eq(task.log),
            task::started_at.eq(task.started_at),
            task::finished_at.eq(task.finished_at),
            task::updated_at.eq(at),
        ),
    )
    .execute(conn)
    .map_err(|e| StoreError::query("update task", "task", id.to_string(), e))?;
    Ok(())
}

/// Moves flow `id` to `transition.status` with one write and no read of the row, where the
/// database computes the new row (see [`write_task_in_place`]). Returns whether it wrote.
fn write_flow_in_place(
    conn: &mut crate::database::AnyConnection,
    id: i64,
    transition: &FlowTransition,
) -> Result<bool, StoreError> {
    let crate::database::AnyConnection::Mysql(conn) = conn else {
        return Ok(false);
    };
    let Some(statement) = flow_in_place(id, transition) else {
        return Ok(false);
    };
    let matched = statement
        .execute(conn)
        .map_err(|e| StoreError::query("update flow", "flow", id.to_string(), e))?;
    Ok(matched == 1)
}

/// The statement of [`write_flow_in_place`] (MariaDB/MySQL), or `None` when the database cannot
/// compute the new row (a fenced transition, a log line beyond the log's bound). It changes no row
/// when there is no such flow or its log has no room for the new line.
fn flow_in_place(id: i64, transition: &FlowTransition) -> Option<impl KeptMysql + '_> {
    if transition.fence_epoch.is_some() {
        return None;
    }
    let lines = lines_to_append(transition.log_line.as_deref().into_iter()).ok()?;
    let at = now();
    let changes = (
        flow::status.eq(transition.status.as_str()),
        // A flow that ends without having run (nothing left to do) started when it ended.
        (transition.status != FlowStatus::Pending)
            .then(|| flow::started_at.eq(StartedOnce::at(at))),
        transition
            .status
            .is_terminal()
            .then_some(flow::finished_at.eq(Some(at))),
        lines
            .as_ref()
            .map(|lines| flow::log.eq(AppendedLog::new(lines))),
        transition
            .processor
            .as_ref()
            .map(|processor| (flow::processor.eq(processor), flow::heartbeat.eq(Some(at)))),
        flow::updated_at.eq(at),
    );
    Some(kept::update(
        flow::table.find(id).filter(log_has_room(lines.as_deref())),
        changes,
    ))
}

/// Moves flow `id` to `transition.status` (fenced when the transition says so), inside the
/// caller's transaction.
fn transition_flow_in(
    conn: &mut crate::database::AnyConnection,
    id: i64,
    transition: &FlowTransition,
) -> Result<(), StoreError> {
    if write_flow_in_place(conn, id, transition)? {
        return Ok(());
    }
    let current = load_flow(conn, id)?;
    if let Some(epoch) = transition.fence_epoch {
        super::check_fence(conn, &current.mesh_name, epoch)?;
    }
    let at = now();
    // A flow that ends without having run (nothing left to do) started when it ended.
    let started = current
        .started_at
        .or((transition.status != FlowStatus::Pending).then_some(at));
    let finished = transition
        .status
        .is_terminal()
        .then_some(at)
        .or(current.finished_at);
    let log = match &transition.log_line {
        Some(line) => Some(append_log(current.log, line)),
        None => current.log,
    };
    let (processor, heartbeat) = match &transition.processor {
        Some(processor) => (processor.clone(), Some(at)),
        None => (current.processor, current.heartbeat),
    };
    kept::update(
        flow::table.find(id),
        (
            flow::status.eq(transition.status.as_str()),
            flow::started_at.eq(started),
            flow::finished_at.eq(finished),
            flow::log.eq(log),
            flow::processor.eq(processor),
            flow::heartbeat.eq(heartbeat),
            flow::updated_at.eq(at),
        ),
    )
    .execute(conn)
    .map_err(|e| StoreError::query("update flow", "flow", id.to_string(), e))?;
    Ok(())
}

/// Records a flow with its `Pending` tasks and links `command` to it (recording it, if new),
/// inside the caller's transaction; returns the flow's id.
fn start_flow_in(
    conn: &mut crate::database::AnyConnection,
    command: &CommandEntry,
    new: &NewFlow,
    task_names: &[String],
) -> Result<i64, StoreError> {
    use crate::schema::command_log;
    let err = |e| StoreError::query("start flow", "flow", &new.name, e);
    insert_row!(conn, flow::table, new).map_err(err)?;
    let id = last_insert_id(conn).map_err(err)?;
    for name in task_names {
        let row = NewTask {
            flow_id: id,
            name: name.clone(),
            status: TaskStatus::Pending.as_str().to_owned(),
            steps: String::new(),
        };
        insert_row!(conn, task::table, &row).map_err(err)?;
    }
    match command {
        CommandEntry::Recorded(command_id) => {
            kept::update(
                command_log::table.find(command_id),
                (
                    command_log::flow_id.eq(Some(id)),
                    command_log::updated_at.eq(now()),
                ),
            )
            .execute(conn)
            .map_err(err)?;
        }
        CommandEntry::New(command) => insert_command_in(
            conn,
            &crate::models::NewCommand {
                flow_id: Some(id),
                ..command.clone()
            },
        )?,
    }
    Ok(id)
}

/// A desired-state change's acceptance as one compound statement (MariaDB; see
/// `store::compound`): the statements of the ordinary transaction (the compare-and-set of the
/// mesh, the flow, its tasks, the command linked to it, the events), the flow's id kept in a
/// variable the later statements link to.
struct AcceptedAtOnce<'a> {
    spec: &'a MeshSpecUpdate,
    command: &'a CommandEntry,
    flow: &'a NewFlow,
    tasks: &'a [String],
    events: &'a [NewEvent],
}

impl AcceptedAtOnce<'_> {
    /// Records the acceptance in one round trip and returns the new flow's id and, with
    /// `read_tasks`, its tasks (one more); `None` when it did not commit (nothing was written; the
    /// ordinary transaction then runs and says why). The tasks are read after the commit: should
    /// that read fail, the error is returned though the acceptance stands, and the command's next
    /// delivery finds it recorded with its flow (as after a worker that died right after the
    /// commit).
    fn record(
        &self,
        counts: &CompoundCounts,
        conn: &mut diesel::mysql::MysqlConnection,
        read_tasks: bool,
    ) -> Result<Option<(i64, Vec<TaskRecord>)>, StoreError> {
        use crate::schema::command_log;
        let mut compound = Compound::default();
        compound.push(mesh_spec_update(self.spec), Expect::OneRow);
        compound.push(kept::insert_set(flow::table, self.flow), Expect::Anything);
        compound.push_sql(REMEMBER_NEW_FLOW);
        for name in self.tasks {
            compound.push(
                kept::insert_set(
                    task::table,
                    (
                        task::flow_id.eq(NewFlowId),
                        task::name.eq(name),
                        task::status.eq(TaskStatus::Pending.as_str()),
                        task::steps.eq(""),
                    ),
                ),
                Expect::Anything,
            );
        }
        match self.command {
            CommandEntry::Recorded(command_id) => {
                compound.push(
                    kept::update(
                        command_log::table.find(command_id),
                        (
                            command_log::flow_id.eq(NewFlowId.nullable()),
                            command_log::updated_at.eq(now()),
                        ),
                    ),
                    Expect::OneRow,
                );
            }
            CommandEntry::New(command) => {
                // Every field of the row (the compiler names any new one here), its flow the new one.
                let NewCommand {
                    command_id,
                    tenant_id,
                    mesh_name,
                    kind,
                    status,
                    result,
                    flow_id: _,
                } = command;
                compound.push(
                    kept::insert_set(
                        command_log::table,
                        (
                            command_log::command_id.eq(command_id),
                            command_log::tenant_id.eq(tenant_id),
                            command_log::mesh_name.eq(mesh_name),
                            command_log::kind.eq(kind),
                            command_log::status.eq(status),
                            command_log::result.eq(result.clone().map(fit_text_column)),
                            command_log::flow_id.eq(NewFlowId.nullable()),
                        ),
                    ),
                    Expect::Anything,
                );
            }
        }
        for chunk in self.events.chunks(EVENTS_PER_INSERT) {
            compound.push(EventRows::of_new_flow(chunk), Expect::Anything);
        }
        let err = |e| StoreError::query("accept command", "flow", &self.flow.name, e);
        if !counts
            .run("a command's acceptance", compound, conn)
            .map_err(err)?
        {
            return Ok(None);
        }
        let tasks: Vec<TaskRecord> = if read_tasks && !self.tasks.is_empty() {
            task::table
                .filter(task::flow_id.eq(NewFlowId))
                .order(task::id.asc())
                .select(TaskRecord::as_select())
                .load(conn)
                .map_err(err)?
        } else {
            Vec::new()
        };
        let flow_id = match tasks.first() {
            Some(task) => task.flow_id,
            None => diesel::select(NewFlowId).get_result(conn).map_err(err)?,
        };
        Ok(Some((flow_id, tasks)))
    }
}

/// A command's acceptance, recorded whole or not at all (see [`Store::start_flow_announcing`]).
#[derive(Debug, Clone)]
pub struct FlowAcceptance {
    /// The command: recorded already, or to record.
    pub command: CommandEntry,
    /// The accepting owner's lease epoch: the mesh is taken over for it.
    pub owner_epoch: i64,
    /// The desired-state change the command makes, if any.
    pub spec: Option<MeshSpecUpdate>,
    /// The flow carrying the command out.
    pub flow: NewFlow,
    /// The flow's task names, in order.
    pub tasks: Vec<String>,
    /// The events announcing the acceptance.
    pub events: Vec<NewEvent>,
}

/// What running a flow starts from (see [`Store::flow_to_run`]).
#[derive(Debug, Clone)]
pub struct FlowToRun {
    /// The flow.
    pub flow: FlowRecord,
    /// Its mesh, unless deleted.
    pub mesh: Option<MeshRecord>,
    /// The mesh's live member clusters, by name.
    pub members: Vec<MemberClusterRecord>,
    /// The flow's tasks, in order.
    pub tasks: Vec<TaskRecord>,
}

/// The tasks of flow `flow_id`, in order.
fn tasks_of(
    conn: &mut crate::database::AnyConnection,
    flow_id: i64,
) -> Result<Vec<TaskRecord>, StoreError> {
    task::table
        .filter(task::flow_id.eq(flow_id))
        .order(task::id.asc())
        .select(TaskRecord::as_select())
        .load(conn)
        .map_err(|e| StoreError::query("list tasks", "flow", flow_id.to_string(), e))
}

fn load_flow(conn: &mut crate::database::AnyConnection, id: i64) -> Result<FlowRecord, StoreError> {
    flow::table
        .find(id)
        .select(FlowRecord::as_select())
        .first(conn)
        .optional()
        .map_err(|e| StoreError::query("load flow", "flow", id.to_string(), e))?
        .ok_or(StoreError::NotFound {
            what: "flow",
            key: id.to_string(),
        })
}

fn load_task(conn: &mut crate::database::AnyConnection, id: i64) -> Result<TaskRecord, StoreError> {
    task::table
        .find(id)
        .select(TaskRecord::as_select())
        .first(conn)
        .optional()
        .map_err(|e| StoreError::query("load task", "task", id.to_string(), e))?
        .ok_or(StoreError::NotFound {
            what: "task",
            key: id.to_string(),
        })
}

impl Store {
    /// Records a new flow.
    pub async fn create_flow(&self, new: NewFlow) -> Result<FlowRecord, StoreError> {
        self.run("create flow", move |conn| {
            atomically(conn, |conn| {
                diesel::insert_into(flow::table)
                    .values(&new)
                    .execute(conn)
                    .map_err(|e| StoreError::query("create flow", "flow", &new.name, e))?;
                let id = last_insert_id(conn)
                    .map_err(|e| StoreError::query("create flow", "flow", &new.name, e))?;
                load_flow(conn, id)
            })
        })
        .await
    }

    /// Accepts a command in one transaction: takes the mesh over for the holder of `owner_epoch`
    /// (by applying `spec`, the desired-state change it makes, compared-and-set on the
    /// generation; or, without one, by claiming the mesh if it exists), records its flow with its
    /// tasks, links the command to the flow (recording it first if `command` is new) and appends
    /// `events` (the acceptance and what it announces) as the flow's. Either all of it exists
    /// afterwards or none: a refused compare-and-set, a newer owner or a new command recorded
    /// before leaves no flow behind. Returns the flow's id.
    pub async fn start_flow_announcing(
        &self,
        command: CommandEntry,
        owner_epoch: i64,
        spec: Option<MeshSpecUpdate>,
        new: NewFlow,
        task_names: Vec<String>,
        events: Vec<NewEvent>,
    ) -> Result<i64, StoreError> {
        let acceptance = FlowAcceptance {
            command,
            owner_epoch,
            spec,
            flow: new,
            tasks: task_names,
            events,
        };
        let (flow_id, _) = self.record_acceptance(acceptance, None).await?;
        Ok(flow_id)
    }

    /// [`Store::start_flow_announcing`] with its arguments as one `acceptance`. When the decision
    /// read the mesh's row and members (`decided`) and changes nothing of them but what
    /// `acceptance.spec` says, also returns what running the flow starts from, as
    /// [`Store::flow_to_run`] would read it right after, without reading it again: the mesh is
    /// `decided`'s with the spec change and the claim applied, the flow's row is built from what
    /// was inserted (its timestamps this process's clock at the insert), the tasks are read in the
    /// same transaction.
    pub async fn record_acceptance(
        &self,
        acceptance: FlowAcceptance,
        decided: Option<(MeshRecord, Vec<MemberClusterRecord>)>,
    ) -> Result<(i64, Option<FlowToRun>), StoreError> {
        let decided = decided.map(|(mut mesh, members)| {
            if let Some(spec) = &acceptance.spec {
                spec.apply_to(&mut mesh);
            }
            mesh.owner_epoch = mesh.owner_epoch.max(acceptance.owner_epoch);
            (mesh, members)
        });
        let read_tasks = decided.is_some();
        let FlowAcceptance {
            command,
            owner_epoch,
            spec,
            flow: new,
            tasks: task_names,
            mut events,
        } = acceptance;
        let meshes = meshes_of(&events);
        let compound = self.compound_counts();
        let recorded = self
            .run("accept command and start its flow", move |conn| {
                if let Some(counts) = &compound
                    && let AnyConnection::Mysql(mysql) = conn
                    && let Some(spec) = &spec
                {
                    let accepted = AcceptedAtOnce {
                        spec,
                        command: &command,
                        flow: &new,
                        tasks: &task_names,
                        events: &events,
                    };
                    if let Some((flow_id, tasks)) = accepted.record(counts, mysql, read_tasks)? {
                        return Ok((FlowRecord::recorded(flow_id, new, now()), tasks));
                    }
                }
                atomically(conn, |conn| {
                    match &spec {
                        Some(spec) => update_mesh_spec_in(conn, spec)?,
                        None => match record_mesh_status_in(
                            conn,
                            &new.mesh_name,
                            owner_epoch,
                            &MeshStatusChange::default(),
                        ) {
                            // A mesh not created yet (its creation is accepted) has no owner.
                            Ok(()) | Err(StoreError::NotFound { .. }) => {}
                            Err(e) => return Err(e),
                        },
                    }
                    let flow_id = start_flow_in(conn, &command, &new, &task_names)?;
                    for event in &mut events {
                        event.flow_id = Some(flow_id);
                    }
                    append_events_in(conn, &events)?;
                    let tasks = if read_tasks {
                        tasks_of(conn, flow_id)?
                    } else {
                        Vec::new()
                    };
                    Ok((FlowRecord::recorded(flow_id, new, now()), tasks))
                })
            })
            .await?;
        self.mark_event_snapshots_stale(meshes);
        let (flow, tasks) = recorded;
        let flow_id = flow.id;
        let ready = decided.map(|(mesh, members)| FlowToRun {
            flow,
            mesh: Some(mesh),
            members,
            tasks,
        });
        Ok((flow_id, ready))
    }

    /// A flow by id.
    pub async fn get_flow(&self, id: i64) -> Result<Option<FlowRecord>, StoreError> {
        self.run("get flow", move |conn| match load_flow(conn, id) {
            Ok(flow) => Ok(Some(flow)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    /// The flows of a mesh, newest first, at most `limit`.
    pub async fn list_flows(
        &self,
        mesh_name: &str,
        limit: i64,
    ) -> Result<Vec<FlowRecord>, StoreError> {
        let mesh_name = mesh_name.to_owned();
        self.run("list flows", move |conn| {
            flow::table
                .filter(flow::mesh_name.eq(&mesh_name))
                .order(flow::id.desc())
                .limit(limit)
                .select(FlowRecord::as_select())
                .load(conn)
                .map_err(|e| StoreError::query("list flows", "mesh", &mesh_name, e))
        })
        .await
    }

    /// What deciding a command on mesh `mesh_name` reads, with one connection: its newest
    /// unfinished flow and its live row, each if `scope` sees it, and then that row's member
    /// clusters.
    pub async fn mesh_to_decide(
        &self,
        scope: &TenantScope,
        mesh_name: &str,
    ) -> Result<MeshToDecide, StoreError> {
        let mesh_name = mesh_name.to_owned();
        let tenant = scope.tenant().map(str::to_owned);
        self.run("read mesh to decide a command", move |conn| {
            // Another tenant's flow on the name is not this tenant's to hear of.
            let unfinished_flow = unfinished_flow_of(conn, &mesh_name, tenant.as_deref())?;
            let (mesh, members) = match live_mesh_with_members(conn, &mesh_name)?
                .filter(|(m, _)| tenant.as_deref().is_none_or(|t| t == m.tenant_id))
            {
                Some((mesh, members)) => (Some(mesh), members),
                None => (None, Vec::new()),
            };
            Ok(MeshToDecide {
                unfinished_flow,
                mesh,
                members,
            })
        })
        .await
    }

    /// Moves a flow to a new status (setting `started_at` on first run and `finished_at` at the
    /// end) and appends a log line.
    pub async fn transition_flow(
        &self,
        id: i64,
        transition: FlowTransition,
    ) -> Result<FlowRecord, StoreError> {
        self.run("update flow", move |conn| {
            atomically(conn, |conn| {
                transition_flow_in(conn, id, &transition)?;
                load_flow(conn, id)
            })
        })
        .await
    }

    /// Records `step` of flow `flow_id` in one transaction: its command's outcome and the mesh's
    /// status (`effects`), the events announcing it, then its task transitions and the flow's
    /// own, in that order. The history never shows a task's or the flow's start or end before its
    /// rows do, nor the other way round; each event is stored once per event id.
    ///
    /// With `step.fence_epoch` the step is refused (`StoreError::Fenced`, nothing written) when a
    /// newer owner holds the mesh. A step that claims the mesh's status with that epoch is proved
    /// by the claim; any other is checked with one query.
    pub async fn record_flow_step(
        &self,
        flow_id: i64,
        mut step: FlowStep,
    ) -> Result<(), StoreError> {
        let meshes = meshes_of(&step.events);
        for event in &mut step.events {
            event.flow_id = Some(flow_id);
        }
        let compound = self.compound_counts();
        self.run("record a flow step", move |conn| {
            if let Some(counts) = &compound
                && let AnyConnection::Mysql(mysql) = conn
                && record_flow_step_at_once(counts, mysql, flow_id, &step)?
            {
                return Ok(());
            }
            atomically(conn, |conn| record_flow_step_in(conn, flow_id, step))
        })
        .await?;
        self.mark_event_snapshots_stale(meshes);
        Ok(())
    }

    /// Records that `processor` is alive and running the flow.
    ///
    /// With `fence_epoch`, a heartbeat from an owner older than the mesh's is refused, so a worker
    /// that lost its lease cannot keep claiming the flow.
    pub async fn heartbeat_flow(
        &self,
        id: i64,
        processor: &str,
        fence_epoch: Option<i64>,
    ) -> Result<(), StoreError> {
        let processor = processor.to_owned();
        self.run("heartbeat flow", move |conn| {
            if let Some(epoch) = fence_epoch {
                super::check_flow_fence(conn, id, epoch)?;
            }
            let changed = kept::update(
                flow::table.find(id),
                (
                    flow::processor.eq(&processor),
                    flow::heartbeat.eq(Some(now())),
                ),
            )
            .execute(conn)
            .map_err(|e| StoreError::query("heartbeat flow", "flow", id.to_string(), e))?;
            if changed == 0 {
                return Err(StoreError::NotFound {
                    what: "flow",
                    key: id.to_string(),
                });
            }
            Ok(())
        })
        .await
    }

    /// Unfinished flows whose runner has not sent a heartbeat since `stale_before` (or never):
    /// the flows a new owner should resume.
    pub async fn list_orphaned_flows(
        &self,
        stale_before: NaiveDateTime,
    ) -> Result<Vec<FlowRecord>, StoreError> {
        self.run("list orphaned flows", move |conn| {
            let unfinished: Vec<&str> = FlowStatus::ALL
                .iter()
                .filter(|s| !s.is_terminal())
                .map(|s| s.as_str())
                .collect();
            flow::table
                .filter(flow::status.eq_any(unfinished))
                .filter(
                    flow::heartbeat
                        .is_null()
                        .or(flow::heartbeat.lt(stale_before)),
                )
                .order(flow::id.asc())
                .select(FlowRecord::as_select())
                .load(conn)
                .map_err(|e| StoreError::query("list orphaned flows", "flows", "", e))
        })
        .await
    }

    /// Records a new task of a flow.
    pub async fn create_task(&self, new: NewTask) -> Result<TaskRecord, StoreError> {
        self.run("create task", move |conn| {
            atomically(conn, |conn| {
                diesel::insert_into(task::table)
                    .values(&new)
                    .execute(conn)
                    .map_err(|e| StoreError::query("create task", "task", &new.name, e))?;
                let id = last_insert_id(conn)
                    .map_err(|e| StoreError::query("create task", "task", &new.name, e))?;
                load_task(conn, id)
            })
        })
        .await
    }

    /// Updates a task.
    pub async fn transition_task(
        &self,
        id: i64,
        transition: TaskTransition,
    ) -> Result<TaskRecord, StoreError> {
        self.run("update task", move |conn| {
            atomically(conn, |conn| {
                transition_task_in(conn, id, transition)?;
                load_task(conn, id)
            })
        })
        .await
    }

    /// The tasks of a flow, in creation order.
    pub async fn list_tasks(&self, flow_id: i64) -> Result<Vec<TaskRecord>, StoreError> {
        self.run("list tasks", move |conn| tasks_of(conn, flow_id))
            .await
    }

    /// What running flow `flow_id` starts from, read with one connection: the flow, its mesh (if
    /// live), the mesh's member clusters and the flow's tasks. `None` when there is no such flow.
    pub async fn flow_to_run(&self, flow_id: i64) -> Result<Option<FlowToRun>, StoreError> {
        self.run("read flow to run", move |conn| {
            let flow = match load_flow(conn, flow_id) {
                Ok(flow) => flow,
                Err(StoreError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            let (mesh, members) = match live_mesh_with_members(conn, &flow.mesh_name)? {
                Some((mesh, members)) => (Some(mesh), members),
                None => (None, Vec::new()),
            };
            let tasks = tasks_of(conn, flow_id)?;
            Ok(Some(FlowToRun {
                flow,
                mesh,
                members,
                tasks,
            }))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(diesel::QueryableByName)]
    struct Status {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "Variable_name")]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "Value")]
        value: String,
    }

    /// Rows this connection's statements have read so far, by any access path.
    fn rows_read(conn: &mut AnyConnection) -> u64 {
        diesel::sql_query("SHOW SESSION STATUS LIKE 'Handler_read%'")
            .load::<Status>(conn)
            .expect("session status")
            .into_iter()
            .filter(|s| s.name != "Handler_read_rnd_deleted")
            .map(|s| s.value.parse::<u64>().expect("a number"))
            .sum()
    }

    #[test]
    fn mariadb_busy_check_reads_the_meshs_unfinished_flows_not_the_flow_table() {
        let database = mesh_testkit::mariadb::TestDatabase::create();
        let target = crate::database::DatabaseTarget::parse(&database.url()).expect("url");
        target.migrate().expect("migrated");
        let mut conn = target.connect().expect("connection");
        let flow_of = |mesh: &str, status: FlowStatus| NewFlow {
            tenant_id: "t1".into(),
            mesh_name: mesh.into(),
            name: format!("reconfigure-{mesh}"),
            def_name: "reconfigure".into(),
            status: status.as_str().into(),
            input: "{}".into(),
            processor: "w1".into(),
        };
        // A long history: many finished flows of many meshes, newer than the busy one.
        atomically(&mut conn, |conn| {
            insert_row!(conn, flow::table, &flow_of("busy", FlowStatus::Running))
                .map_err(|e| StoreError::query("insert", "flow", "busy", e))?;
            for n in 0..3000 {
                let finished = flow_of(&format!("mesh-{}", n % 3), FlowStatus::Succeeded);
                insert_row!(conn, flow::table, &finished)
                    .map_err(|e| StoreError::query("insert", "flow", "history", e))?;
            }
            Ok(())
        })
        .expect("flows");
        diesel::sql_query("ANALYZE TABLE flow")
            .execute(&mut conn)
            .expect("statistics");

        for (mesh, expected) in [("idle", None), ("mesh-1", None), ("busy", Some(1))] {
            let before = rows_read(&mut conn);
            let found = unfinished_flow_of(&mut conn, mesh, Some("t1")).expect("read");
            let read = rows_read(&mut conn) - before;
            assert_eq!(found.map(|(id, _)| id), expected, "{mesh}");
            // The session counters' own read and the index probes: a handful, not the table.
            assert!(read < 40, "{mesh}: the busy check read {read} rows");
        }
    }

    #[test]
    fn the_unfinished_flow_query_names_every_unfinished_status() {
        let unfinished: Vec<FlowStatus> = FlowStatus::ALL
            .iter()
            .copied()
            .filter(|s| !s.is_terminal())
            .collect();
        assert_eq!(
            unfinished,
            [FlowStatus::Pending, FlowStatus::Running],
            "Store::unfinished_flow filters on exactly these"
        );
    }

    #[test]
    fn logs_keep_their_newest_lines_within_the_limit() {
        let mut log = None;
        for i in 0..10_000 {
            log = Some(append_log(log, &format!("line {i} ✓")));
        }
        let log = log.expect("log");
        assert!(log.len() <= MAX_LOG_BYTES);
        assert!(log.ends_with("line 9999 ✓"));
        assert!(log.starts_with("line "), "cut at a line start");
    }
}
