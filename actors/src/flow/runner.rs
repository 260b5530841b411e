//! The flow runner: executes a flow's tasks in order, persisting and announcing every transition.

use std::sync::Arc;
use std::time::Duration;

use mesh_bus::event::{
    FlowFinished, FlowOutcome, FlowStarted, TaskFinished, TaskOutcome, TaskStarted,
};
use mesh_bus::lease::FlowLoad;
use mesh_bus::{Event, EventEnvelope};
use mesh_core::spec::{MemberSpec, MeshSpec};
use mesh_core::{
    ClusterName, ClusterRole, CommandStatus, FlowStatus, MeshMode, MeshName, TaskStatus, TenantId,
};
use mesh_schema::Store;
use mesh_schema::models::{FlowRecord, MemberClusterRecord, MeshRecord, TaskRecord};
use mesh_schema::store::flow::{FlowStep, FlowToRun, FlowTransition, TaskTransition};
use mesh_schema::store::mesh::MeshStatusChange;
use serde::{Deserialize, Serialize};

use super::TaskKind;
use super::tasks::TaskContext;
use crate::connections::ClusterConnections;
use crate::error::ActorError;
use crate::events::EventSink;

/// Timing of flows.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// How long one wait (a control plane, a gateway address, a sync) may take.
    pub wait_timeout: Duration,
    /// Attempts per task before the flow fails (transient errors only; others fail at once).
    pub attempts: u32,
    /// First retry delay; doubles each attempt, capped at 30 s.
    pub backoff: Duration,
    /// How often a running flow records its heartbeat.
    pub heartbeat: Duration,
    /// The worker's name, recorded as the flow's processor.
    pub processor: String,
    /// The lease epoch writes are fenced by.
    pub epoch: i64,
    /// How often managed Istio resources are compared with the desired state even when no watch
    /// event arrived (watches report edits at once; this is the safety net).
    pub drift_resync: Duration,
    /// Most flows the worker runs at once, over all the meshes it owns; a flow beyond them waits
    /// (accepted, `Pending`) for one to end. Bounds what one worker asks of its clusters, its
    /// database connections and its memory; more workers run more flows.
    pub max_concurrent_flows: usize,
}

impl RunnerConfig {
    /// The worker's flow slots: `max_concurrent_flows`, at least one and at most what a
    /// semaphore holds.
    fn flow_slots(&self) -> usize {
        self.max_concurrent_flows
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS)
    }
}

/// Flows one worker runs at once unless configured otherwise.
pub const DEFAULT_MAX_CONCURRENT_FLOWS: usize = 64;

/// How often a flow waiting for a slot checks whether its worker is stopping.
const SLOT_STOP_CHECK: Duration = Duration::from_millis(100);

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            wait_timeout: Duration::from_secs(300),
            attempts: 10,
            backoff: Duration::from_millis(500),
            heartbeat: Duration::from_secs(5),
            processor: "meshd".into(),
            epoch: 0,
            drift_resync: Duration::from_secs(30),
            max_concurrent_flows: DEFAULT_MAX_CONCURRENT_FLOWS,
        }
    }
}

/// What a flow row's `input` holds: the command that started it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowInput {
    /// The command's envelope id.
    pub command_id: String,
    /// The command's kind.
    pub command: String,
    /// The principal who sent it.
    pub principal: String,
    /// The correlation id events of the flow carry.
    pub correlation_id: String,
}

/// Reconstructs a mesh's desired state from its rows.
pub async fn load_spec(store: &Store, mesh: &MeshRecord) -> Result<MeshSpec, ActorError> {
    let members = store.list_member_clusters(&mesh.name).await?;
    spec_of(mesh, &members)
}

/// A mesh's desired state from its row and its member clusters' rows.
pub fn spec_of(mesh: &MeshRecord, members: &[MemberClusterRecord]) -> Result<MeshSpec, ActorError> {
    let corrupt = |reason: String| ActorError::CorruptState {
        mesh: mesh.name.clone(),
        reason,
    };
    let clusters = members
        .iter()
        .map(|m| {
            let name = ClusterName::new(m.name.clone()).map_err(|e| corrupt(e.to_string()))?;
            let role = if m.role == "remote" {
                ClusterRole::Remote
            } else {
                ClusterRole::Master
            };
            Ok(MemberSpec::new(name, role).with_network(m.network.clone()))
        })
        .collect::<Result<Vec<_>, ActorError>>()?;
    let config = mesh
        .mesh_config()
        .map_err(|e| corrupt(format!("config: {e}")))?;
    Ok(MeshSpec {
        tenant: TenantId::new(mesh.tenant_id.clone()).map_err(|e| corrupt(e.to_string()))?,
        name: MeshName::new(mesh.name.clone()).map_err(|e| corrupt(e.to_string()))?,
        title: mesh.title.clone(),
        region: mesh.region.clone(),
        mode: mesh
            .mode
            .parse::<MeshMode>()
            .map_err(|e| corrupt(e.to_string()))?,
        version: mesh.version.clone(),
        clusters,
        config,
    })
}

/// Runs flows.
#[derive(Clone)]
pub struct FlowRunner {
    store: Store,
    events: EventSink,
    connections: ClusterConnections,
    config: Arc<RunnerConfig>,
    control: Arc<RunControl>,
    /// The worker's flow slots, shared by the runners of all its partitions.
    slots: Arc<tokio::sync::Semaphore>,
    /// How many of the worker's flows wait for a slot now (shared like `slots`).
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts one (a running flow, a flow waiting for a slot) in a counter while alive.
struct Counted(Arc<std::sync::atomic::AtomicUsize>);

impl Counted {
    fn new(counter: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(Arc::clone(counter))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Shared between a partition's flows: a request to stop at the next task boundary, how many
/// flows are running, and a signal when one that changed members or resources ends.
#[derive(Debug, Default)]
pub struct RunControl {
    stop: std::sync::atomic::AtomicBool,
    active: Arc<std::sync::atomic::AtomicUsize>,
    ended: tokio::sync::Notify,
}

impl RunControl {
    /// Asks every flow to stop before its next task (the flow stays unfinished for the next owner).
    pub fn request_stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many flows are running now.
    pub fn active(&self) -> usize {
        self.active.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until a flow of the partition that can change members or desired resources has
    /// ended (at once when one ended since the last wait): what it changed is settled then.
    /// Configuration changes, repairs and upgrades do not wake it (see
    /// [`super::defs::changes_watched_state`]).
    pub async fn flow_ended(&self) {
        self.ended.notified().await;
    }
}

/// Why a flow stopped before its end without failing.
fn is_interruption(error: &ActorError) -> bool {
    matches!(
        error,
        ActorError::Interrupted | ActorError::Store(mesh_schema::StoreError::Fenced { .. })
    )
}

impl std::fmt::Debug for FlowRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowRunner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The mesh statuses a flow sets while it runs and when it ends; `None` for flows that leave the
/// mesh's status alone (resource rollouts: the mesh keeps running whatever becomes of them).
fn mesh_statuses(def_name: &str) -> Option<(&'static str, &'static str, &'static str)> {
    match def_name {
        super::defs::INSTALL => Some(("Creating", "Running", "Failed")),
        super::defs::DELETE => Some(("Deleting", "Deleted", "DeleteFailed")),
        super::defs::APPLY_RESOURCES | super::defs::REPAIR_DRIFT => None,
        super::defs::UPGRADE_CANARY => Some(("Upgrading", "Canary", "UpgradeFailed")),
        super::defs::UPGRADE_IN_PLACE => Some(("Upgrading", "Running", "UpgradeFailed")),
        super::defs::CANARY_CONFIRM => Some(("Upgrading", "Running", "UpgradeFailed")),
        super::defs::CANARY_ROLLBACK => Some(("RollingBack", "Running", "UpgradeFailed")),
        _ => Some(("Updating", "Running", "Failed")),
    }
}

/// How long a task may work before its start (and what came before it) is recorded on its own;
/// a quicker task's start is recorded with its end.
const RECORD_START_AFTER: Duration = Duration::from_millis(250);

/// What happened in a flow since its last write: recorded with the next one, in one transaction.
/// A flow's start goes with its first task's start, a task's start with its end unless the task
/// works longer than [`RECORD_START_AFTER`], a task's success with the next task's start or the
/// flow's end. Nothing is lost by waiting: a worker that dies first leaves the flow at its last
/// recorded step, and the next owner runs the unrecorded (idempotent) work again. Nor does it let
/// a stale owner work unfenced: a flow waits only when its acceptance here took the mesh over.
#[derive(Default)]
struct PendingStep {
    events: Vec<EventEnvelope>,
    step: FlowStep,
}

/// How a flow's tasks ended when none failed for good.
enum Completion {
    /// Every task succeeded.
    Done,
    /// A task failed and the compensating tasks undid the flow; the reason names the failure.
    RolledBack(String),
}

impl FlowRunner {
    /// A runner writing to `store`, announcing on `events`, reaching clusters through
    /// `connections`.
    pub fn new(
        store: Store,
        events: EventSink,
        connections: ClusterConnections,
        config: RunnerConfig,
    ) -> Self {
        let slots = Arc::new(tokio::sync::Semaphore::new(config.flow_slots()));
        Self {
            store,
            events,
            connections,
            config: Arc::new(config),
            control: Arc::new(RunControl::default()),
            slots,
            waiting: Arc::default(),
        }
    }

    /// How the worker's flow slots are used now, over all its partitions.
    pub fn flow_load(&self) -> FlowLoad {
        let slots = self.config.flow_slots();
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        FlowLoad {
            running: count(slots.saturating_sub(self.slots.available_permits())),
            waiting: count(self.waiting.load(std::sync::atomic::Ordering::SeqCst)),
            slots: count(slots),
        }
    }

    /// A runner for one owned partition: writes fenced by `epoch`, its own stop control.
    pub fn for_partition(&self, epoch: i64) -> Self {
        Self {
            config: Arc::new(RunnerConfig {
                epoch,
                ..(*self.config).clone()
            }),
            control: Arc::new(RunControl::default()),
            ..self.clone()
        }
    }

    /// The stop control of this runner's flows.
    pub fn control(&self) -> &Arc<RunControl> {
        &self.control
    }

    /// The runner's configuration.
    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// The store the runner writes to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The connections to member clusters.
    pub fn connections(&self) -> &ClusterConnections {
        &self.connections
    }

    /// The event sink.
    pub fn events(&self) -> &EventSink {
        &self.events
    }

    fn event(
        &self,
        flow: &FlowRecord,
        input: &FlowInput,
        body: impl Into<Event>,
    ) -> Result<EventEnvelope, ActorError> {
        let tenant = TenantId::new(flow.tenant_id.clone())
            .map_err(|e| ActorError::Message(e.to_string()))?;
        let mesh = MeshName::new(flow.mesh_name.clone())
            .map_err(|e| ActorError::Message(e.to_string()))?;
        let mut envelope = EventEnvelope::event(tenant, mesh, input.principal.clone(), body)
            .map_err(|e| ActorError::Message(e.to_string()))?;
        if let Ok(correlation) = input.correlation_id.parse() {
            envelope = envelope.with_correlation_id(correlation);
        }
        Ok(envelope)
    }

    /// Runs (or resumes) a flow to its end and returns how it ended, once one of the worker's
    /// flow slots is free; `Running` or `Pending` when the worker stopped it before its end.
    pub async fn run(&self, flow_id: i64) -> Result<FlowStatus, ActorError> {
        self.run_ready(flow_id, None).await
    }

    /// [`FlowRunner::run`] for a flow whose acceptance here returned what it starts from
    /// (`ready`, see [`crate::mesh::MeshComponent::accept_ready`]), which spares reading it.
    /// While a flow is unfinished no other command changes its mesh, and a newer owner's
    /// takeover stops this worker's flows, so what the acceptance knew is what the rows hold
    /// when the flow gets its slot.
    #[tracing::instrument(skip_all, fields(flow = flow_id))]
    pub async fn run_ready(
        &self,
        flow_id: i64,
        ready: Option<FlowToRun>,
    ) -> Result<FlowStatus, ActorError> {
        // Counted from here, so a stopping worker waits for flows still waiting for a slot too.
        let _active = Counted::new(&self.control.active);
        let Some(_slot) = self.flow_slot().await else {
            tracing::info!(
                flow = flow_id,
                "stopping before the flow got a slot; the partition's next owner runs it"
            );
            return Ok(FlowStatus::Pending);
        };
        // Otherwise read once the slot is held: a flow that waited sees the rows as they are now.
        let FlowToRun {
            flow,
            mesh,
            members,
            tasks,
        } = match ready.filter(|ready| ready.flow.id == flow_id) {
            Some(ready) => ready,
            None => self
                .store
                .flow_to_run(flow_id)
                .await?
                .ok_or_else(|| ActorError::Message(format!("flow {flow_id} does not exist")))?,
        };
        if let Some(status) = flow
            .status
            .parse::<FlowStatus>()
            .ok()
            .filter(|s| s.is_terminal())
        {
            return Ok(status);
        }
        let input: FlowInput =
            serde_json::from_str(&flow.input).map_err(|e| ActorError::CorruptState {
                mesh: flow.mesh_name.clone(),
                reason: format!("input of flow {flow_id}: {e}"),
            })?;
        // The mesh is taken over (writes of any older owner refused from then on) in the
        // transaction that records the flow's start; see `run_tasks`.
        let heartbeat = self.start_heartbeat(flow_id);
        let mut pending = PendingStep::default();
        let outcome = match mesh {
            Some(mesh) => {
                self.run_tasks(&flow, &input, (&mesh, &members), tasks, &mut pending)
                    .await
            }
            None => Err(ActorError::Message(format!(
                "mesh {} no longer exists",
                flow.mesh_name
            ))),
        };
        heartbeat.abort();
        let (status, detail) = match &outcome {
            Ok(Completion::Done) => (FlowStatus::Succeeded, None),
            Ok(Completion::RolledBack(reason)) => (FlowStatus::RolledBack, Some(reason.clone())),
            Err(error) if is_interruption(error) => {
                tracing::warn!(flow = flow_id, %error, "flow interrupted; the partition's next owner resumes it");
                return Ok(FlowStatus::Running);
            }
            Err(error) => (FlowStatus::Failed, Some(error.to_string())),
        };
        self.finish(&flow, &input, status, detail, pending).await?;
        if super::defs::changes_watched_state(&flow.def_name) {
            self.control.ended.notify_one();
        }
        Ok(status)
    }

    /// One of the worker's flow slots, held while the flow runs; waits while all are taken.
    /// `None` when the worker stops first (the flow is left to the partition's next owner).
    async fn flow_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let _waiting = Counted::new(&self.waiting);
        loop {
            if self.control.stop_requested() {
                return None;
            }
            let slot = Arc::clone(&self.slots).acquire_owned();
            match tokio::time::timeout(SLOT_STOP_CHECK, slot).await {
                Ok(Ok(slot)) if !self.control.stop_requested() => return Some(slot),
                Ok(_) => return None,
                Err(_waited) => {}
            }
        }
    }

    fn start_heartbeat(&self, flow_id: i64) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let processor = self.config.processor.clone();
        let epoch = self.config.epoch;
        let period = self.config.heartbeat;
        tokio::spawn(async move {
            // The flow's start records the first heartbeat; this keeps it fresh from then on.
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                ticker.tick().await;
                if let Err(error) = store.heartbeat_flow(flow_id, &processor, Some(epoch)).await {
                    tracing::warn!(%error, flow = flow_id, "heartbeat not recorded");
                }
            }
        })
    }

    /// Runs the unfinished tasks of `flow` on `mesh` (its row and its members' rows, as read
    /// when the flow started running here); `tasks` as read then, which a flow resumed from an
    /// earlier owner reads again once it has taken the mesh over.
    async fn run_tasks(
        &self,
        flow: &FlowRecord,
        input: &FlowInput,
        (mesh, members): (&MeshRecord, &[MemberClusterRecord]),
        tasks: Vec<TaskRecord>,
        pending: &mut PendingStep,
    ) -> Result<Completion, ActorError> {
        let spec = spec_of(mesh, members)?;
        // Taking the mesh over (its owner epoch; writes of any older owner are refused from now
        // on), its running status and the flow's start are one transaction, recorded with the
        // first task's start.
        let claim = MeshStatusChange {
            status: mesh_statuses(&flow.def_name).map(|(running, _, _)| running.to_owned()),
            ..MeshStatusChange::default()
        };
        pending.events.push(self.event(
            flow,
            input,
            FlowStarted {
                flow_id: flow.id,
                flow: flow.def_name.clone(),
            },
        )?);
        pending.step.flow = Some(FlowTransition {
            status: FlowStatus::Running,
            log_line: None,
            fence_epoch: None,
            processor: Some(self.config.processor.clone()),
        });
        pending.step.effects.mesh_status = Some((mesh.name.clone(), self.config.epoch, claim));
        // A flow this worker has just accepted was taken over in its acceptance, so its start can
        // wait for its first task's. Any other (resumed from an earlier owner) is taken over
        // before its work begins, which refuses the earlier owner's writes from then on.
        let accepted_here =
            flow.status == FlowStatus::Pending.as_str() && flow.processor == self.config.processor;
        // The mesh's recorded state, as read with the flow: only an earlier owner could have
        // changed it since, so a resumed flow reads it again when it needs it.
        let known_state = std::sync::Mutex::new(
            accepted_here.then(|| super::tasks::MeshState::parse(mesh.state.as_deref())),
        );
        let tasks = if accepted_here {
            tasks
        } else {
            self.flush(flow.id, pending).await?;
            // Read again now that the earlier owner's writes are refused: its last transitions
            // (a task's end, a compensation begun) may have landed after the first read.
            self.store.list_tasks(flow.id).await?
        };
        let context = TaskContext {
            flow_id: flow.id,
            spec: &spec,
            store: &self.store,
            connections: &self.connections,
            epoch: self.config.epoch,
            config: &self.config,
            known_state: &known_state,
        };
        let parse = |task: &TaskRecord| {
            TaskKind::parse(&task.name).ok_or_else(|| ActorError::CorruptState {
                mesh: flow.mesh_name.clone(),
                reason: format!("unknown task {:?}", task.name),
            })
        };
        let mut compensating = false;
        for task in &tasks {
            compensating |= parse(task)?.is_compensation();
        }
        if !compensating {
            for task in &tasks {
                if matches!(
                    task.status.parse::<TaskStatus>(),
                    Ok(TaskStatus::Succeeded | TaskStatus::Skipped)
                ) {
                    continue;
                }
                if self.control.stop_requested() {
                    self.flush(flow.id, pending).await?;
                    return Err(ActorError::Interrupted);
                }
                let kind = parse(task)?;
                if let Err(error) = self
                    .run_task(flow, input, &context, task, &kind, pending)
                    .await
                {
                    if is_interruption(&error) {
                        return Err(error);
                    }
                    self.begin_compensation(flow, &kind, error).await?;
                    compensating = true;
                    break;
                }
            }
            if !compensating {
                return Ok(Completion::Done);
            }
        }
        // Whatever is pending is recorded before the compensating tasks are read back.
        self.flush(flow.id, pending).await?;
        // Undo: run the compensating tasks; the flow ends RolledBack with the original failure.
        let tasks = self.store.list_tasks(flow.id).await?;
        let reason = tasks
            .iter()
            .find(|t| {
                t.status == TaskStatus::Failed.as_str()
                    && TaskKind::parse(&t.name).is_some_and(|k| !k.is_compensation())
            })
            .map(|t| {
                let error = t.error.clone().unwrap_or_default();
                match TaskKind::parse(&t.name).and_then(|k| k.cluster().cloned()) {
                    Some(cluster) => format!("{} failed on cluster {cluster}: {error}", t.name),
                    None => format!("{} failed: {error}", t.name),
                }
            })
            .unwrap_or_else(|| "a task failed".into());
        for task in &tasks {
            let kind = parse(task)?;
            if !kind.is_compensation() || task.status == TaskStatus::Succeeded.as_str() {
                continue;
            }
            if self.control.stop_requested() {
                self.flush(flow.id, pending).await?;
                return Err(ActorError::Interrupted);
            }
            if let Err(error) = self
                .run_task(flow, input, &context, task, &kind, pending)
                .await
            {
                if is_interruption(&error) {
                    return Err(error);
                }
                return Err(ActorError::Message(format!(
                    "{reason}; undoing it failed too: {error}"
                )));
            }
        }
        Ok(Completion::RolledBack(format!("{reason}; rolled back")))
    }

    /// After `failed` failed with `error`: records the compensating tasks of the flow, or returns
    /// the error when the flow has no way back.
    async fn begin_compensation(
        &self,
        flow: &FlowRecord,
        failed: &TaskKind,
        error: ActorError,
    ) -> Result<(), ActorError> {
        let recorded: Vec<(String, TaskStatus)> = self
            .store
            .list_tasks(flow.id)
            .await?
            .into_iter()
            .filter_map(|t| Some((t.name.clone(), t.status.parse::<TaskStatus>().ok()?)))
            .collect();
        let Some(compensation) = super::rollback_tasks(&flow.def_name, &recorded, failed) else {
            return Err(error);
        };
        tracing::warn!(flow = flow.id, task = %failed, %error, "task failed; undoing the flow");
        self.store
            .begin_compensation(
                flow.id,
                compensation.iter().map(ToString::to_string).collect(),
                self.config.epoch,
            )
            .await?;
        Ok(())
    }

    async fn run_task(
        &self,
        flow: &FlowRecord,
        input: &FlowInput,
        context: &TaskContext<'_>,
        task: &TaskRecord,
        kind: &TaskKind,
        pending: &mut PendingStep,
    ) -> Result<(), ActorError> {
        let cluster = kind.cluster().cloned();
        self.stage_task(
            pending,
            flow,
            input,
            task,
            TaskTransition {
                status: Some(TaskStatus::Running),
                ..TaskTransition::default()
            },
            TaskStarted {
                flow_id: flow.id,
                task_id: task.id,
                task: task.name.clone(),
                cluster: cluster.clone(),
            },
        )?;
        let mut attempt = 1;
        let result = loop {
            match self
                .work_recording_start(flow.id, context, kind, pending)
                .await?
            {
                Ok(done) => break Ok(done),
                Err(error)
                    if error.is_transient()
                        && attempt < self.config.attempts
                        && !self.control.stop_requested() =>
                {
                    // The start is recorded before the first retry's log line.
                    self.flush(flow.id, pending).await?;
                    let delay = self
                        .config
                        .backoff
                        .saturating_mul(1 << (attempt - 1).min(6))
                        .min(Duration::from_secs(30));
                    tracing::info!(task = %task.name, attempt, %error, "task failed, retrying");
                    if let Some(cluster) = &cluster {
                        // Make the stall visible where people look: the cluster's error.
                        let short: String = error.to_string().chars().take(2000).collect();
                        if let Err(e) = self
                            .store
                            .update_member_phase(cluster.as_str(), "Stalled", &short, None)
                            .await
                        {
                            tracing::warn!(error = %e, cluster = %cluster, "cluster error not recorded");
                        }
                    }
                    self.store
                        .transition_task(
                            task.id,
                            TaskTransition {
                                log_line: Some(format!(
                                    "attempt {attempt} failed: {error}; retrying in {}ms",
                                    delay.as_millis()
                                )),
                                fence_epoch: Some(self.config.epoch),
                                ..TaskTransition::default()
                            },
                        )
                        .await?;
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => break Err(error),
            }
        };
        match result {
            Ok(done) => {
                // Recorded with the next task's start or the flow's end.
                self.stage_task(
                    pending,
                    flow,
                    input,
                    task,
                    TaskTransition {
                        status: Some(TaskStatus::Succeeded),
                        output: Some(serde_json::json!({ "result": done }).to_string()),
                        log_line: Some(done.clone()),
                        ..TaskTransition::default()
                    },
                    TaskFinished {
                        flow_id: flow.id,
                        task_id: task.id,
                        outcome: TaskOutcome::Succeeded,
                        detail: Some(done),
                    },
                )
            }
            Err(error) => {
                let message = error.to_string();
                if let Some(cluster) = &cluster {
                    let short: String = message.chars().take(2000).collect();
                    if let Err(e) = self
                        .store
                        .update_member_phase(cluster.as_str(), "Failed", &short, None)
                        .await
                    {
                        tracing::warn!(error = %e, cluster = %cluster, "cluster error not recorded");
                    }
                }
                self.stage_task(
                    pending,
                    flow,
                    input,
                    task,
                    TaskTransition {
                        status: Some(TaskStatus::Failed),
                        error: Some(message.clone()),
                        log_line: Some(format!("failed after {attempt} attempt(s): {message}")),
                        ..TaskTransition::default()
                    },
                    TaskFinished {
                        flow_id: flow.id,
                        task_id: task.id,
                        outcome: TaskOutcome::Failed,
                        detail: Some(message),
                    },
                )?;
                // A failure is recorded at once: what comes next (undoing the flow) reads it.
                self.flush(flow.id, pending).await?;
                Err(error)
            }
        }
    }

    /// Runs one attempt of task `kind`. What is pending (the task's start, and whatever came
    /// before it) is recorded with the task's end when the work takes less than
    /// [`RECORD_START_AFTER`]; a longer task has it recorded while it works, so it shows as running.
    /// The outer error is a failed record (the work itself was let finish); the inner one is the
    /// work's.
    async fn work_recording_start(
        &self,
        flow_id: i64,
        context: &TaskContext<'_>,
        kind: &TaskKind,
        pending: &mut PendingStep,
    ) -> Result<Result<String, ActorError>, ActorError> {
        let work = context.run(kind);
        tokio::pin!(work);
        if pending.step.is_empty() {
            return Ok(work.await);
        }
        tokio::select! {
            outcome = &mut work => Ok(outcome),
            () = tokio::time::sleep(RECORD_START_AFTER) => {
                let (recorded, outcome) = tokio::join!(self.flush(flow_id, pending), work);
                recorded.map(|()| outcome)
            }
        }
    }

    /// Adds a task's `transition` and the event `body` announcing it to the pending step.
    fn stage_task(
        &self,
        pending: &mut PendingStep,
        flow: &FlowRecord,
        input: &FlowInput,
        task: &TaskRecord,
        transition: TaskTransition,
        body: impl Into<Event>,
    ) -> Result<(), ActorError> {
        pending.events.push(self.event(flow, input, body)?);
        pending.step.tasks.push((task.id, transition));
        Ok(())
    }

    /// Records the pending step (fenced by the runner's epoch) and publishes its events.
    async fn flush(&self, flow_id: i64, pending: &mut PendingStep) -> Result<(), ActorError> {
        let PendingStep { events, mut step } = std::mem::take(pending);
        if step.is_empty() {
            return Ok(());
        }
        step.fence_epoch = Some(self.config.epoch);
        self.events.emit_flow_step(flow_id, events, step).await
    }

    /// Ends a flow. The flow row turns terminal last, together with its `FlowFinished`, so a
    /// worker that dies anywhere in here leaves the flow unfinished and its next owner runs
    /// `finish` again; the end's events carry ids derived from the flow, so a second run stores
    /// and publishes nothing twice.
    async fn finish(
        &self,
        flow: &FlowRecord,
        input: &FlowInput,
        status: FlowStatus,
        detail: Option<String>,
        mut pending: PendingStep,
    ) -> Result<(), ActorError> {
        let ok = status == FlowStatus::Succeeded;
        let command_status = if ok {
            CommandStatus::Succeeded
        } else {
            CommandStatus::Failed
        };
        pending.step.effects.command =
            Some((input.command_id.clone(), command_status, detail.clone()));
        if let Some((_, succeeded, failed)) = mesh_statuses(&flow.def_name)
            && (flow.def_name != super::defs::DELETE || !ok)
        {
            // A rolled-back flow left the mesh as it was before it started: running.
            let mesh_status = match status {
                FlowStatus::Succeeded => succeeded,
                FlowStatus::RolledBack => "Running",
                _ => failed,
            };
            let change = MeshStatusChange {
                status: Some(mesh_status.into()),
                ..MeshStatusChange::default()
            };
            // Also a claim of the mesh, so it replaces the start's claim if that is still pending.
            pending.step.effects.mesh_status =
                Some((flow.mesh_name.clone(), self.config.epoch, change));
        }
        if flow.def_name == super::defs::DELETE && ok {
            pending.events.push(self.event_once(
                flow,
                input,
                "mesh-deleted",
                mesh_bus::event::MeshDeleted {},
            )?);
        }
        let outcome = match status {
            FlowStatus::Succeeded => FlowOutcome::Succeeded,
            FlowStatus::RolledBack => FlowOutcome::RolledBack,
            _ => FlowOutcome::Failed,
        };
        let log_line = match &detail {
            Some(reason) => format!("flow {status}: {reason}"),
            None => format!("flow {status}"),
        };
        pending.events.push(self.event_once(
            flow,
            input,
            "flow-finished",
            FlowFinished {
                flow_id: flow.id,
                outcome,
                detail,
            },
        )?);
        // A start still pending (a flow with nothing left to run) ends in the same write.
        let processor = pending.step.flow.take().and_then(|start| start.processor);
        pending.step.flow = Some(FlowTransition {
            status,
            log_line: Some(log_line),
            fence_epoch: None,
            processor,
        });
        // The command's outcome, the mesh's status and the flow's end are recorded in the
        // transaction that stores `FlowFinished` (with the last task's end), so a client that
        // reacts to it with its next command never finds the mesh still busy, and a worker that
        // dies before it leaves all of them for the next owner's `finish`.
        self.flush(flow.id, &mut pending).await
    }

    /// An event that happens once per flow: its id is derived from the flow and `what`, so a
    /// second run of the same step stores and publishes nothing twice.
    fn event_once(
        &self,
        flow: &FlowRecord,
        input: &FlowInput,
        what: &str,
        body: impl Into<Event>,
    ) -> Result<EventEnvelope, ActorError> {
        let mut envelope = self.event(flow, input, body)?;
        let name = format!("mesh-manager/flow/{}/{}/{what}", flow.mesh_name, flow.id);
        envelope.id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes());
        Ok(envelope)
    }
}
