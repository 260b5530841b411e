//! The flow runner: executes a flow's tasks in order, persisting and announcing every transition.

use std::sync::Arc;
use std::time::Duration;

use mesh_bus::event::{
    FlowFinished, FlowOutcome, FlowStarted, TaskFinished, TaskOutcome, TaskStarted,
};
use mesh_bus::{Event, EventEnvelope};
use mesh_core::spec::{MemberSpec, MeshConfig, MeshSpec};
use mesh_core::{
    ClusterName, ClusterRole, CommandStatus, FlowStatus, MeshMode, MeshName, TaskStatus, TenantId,
};
use mesh_schema::models::{FlowRecord, MeshRecord, TaskRecord};
use mesh_schema::store::flow::{FlowTransition, TaskTransition};
use mesh_schema::store::mesh::MeshStatusChange;
use mesh_schema::store::step::{CommandOutcome, FlowStep};
use mesh_schema::{Store, TenantScope};
use serde::{Deserialize, Serialize};

use super::TaskKind;
use super::tasks::TaskContext;
use crate::connections::ClusterConnections;
use crate::error::ActorError;
use crate::events::{EventSink, history_row};

/// Default of [`RunnerConfig::max_concurrent_tasks`].
pub const DEFAULT_MAX_CONCURRENT_TASKS: usize = 16;

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
    /// How many tasks the worker runs at once, over all its partitions: a worker's capacity for
    /// cluster I/O (more workers, more capacity). Tasks beyond it wait for a free slot.
    pub max_concurrent_tasks: usize,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            wait_timeout: Duration::from_secs(300),
            attempts: 10,
            backoff: Duration::from_millis(500),
            heartbeat: Duration::from_secs(5),
            processor: "meshd".into(),
            epoch: 0,
            max_concurrent_tasks: DEFAULT_MAX_CONCURRENT_TASKS,
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
    let corrupt = |reason: String| ActorError::CorruptState {
        mesh: mesh.name.clone(),
        reason,
    };
    let members = store.list_member_clusters(&mesh.name).await?;
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
    let config: MeshConfig = match mesh.config.as_deref().filter(|c| !c.trim().is_empty()) {
        Some(text) => serde_json::from_str(text).map_err(|e| corrupt(format!("config: {e}")))?,
        None => MeshConfig::default(),
    };
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
    /// Free task slots of the worker, shared by the runners of all its partitions.
    slots: Arc<tokio::sync::Semaphore>,
}

/// Shared between a partition's flows: a request to stop at the next task boundary, and how many
/// flows are running.
#[derive(Debug, Default)]
pub struct RunControl {
    stop: std::sync::atomic::AtomicBool,
    active: std::sync::atomic::AtomicUsize,
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
}

/// Counts a running flow while alive.
struct ActiveFlow(Arc<RunControl>);

impl ActiveFlow {
    fn new(control: &Arc<RunControl>) -> Self {
        control
            .active
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(Arc::clone(control))
    }
}

impl Drop for ActiveFlow {
    fn drop(&mut self) {
        self.0
            .active
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How long a step waits for an unreachable database before giving the flow up to
/// [`FlowRunner::run_resuming`].
const STORE_OUTAGE_PATIENCE: Duration = Duration::from_secs(60);

/// Whether the database, not the flow, failed: the flow is resumed rather than failed.
fn is_store_outage(error: &ActorError) -> bool {
    matches!(error, ActorError::Store(e) if e.is_transient())
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

/// The mesh statuses a flow sets while it runs and when it ends.
fn mesh_statuses(def_name: &str) -> (&'static str, &'static str, &'static str) {
    match def_name {
        super::defs::INSTALL => ("Creating", "Running", "Failed"),
        super::defs::DELETE => ("Deleting", "Deleted", "DeleteFailed"),
        _ => ("Updating", "Running", "Failed"),
    }
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
        Self {
            store,
            events,
            connections,
            slots: Arc::new(tokio::sync::Semaphore::new(
                config.max_concurrent_tasks.max(1),
            )),
            config: Arc::new(config),
            control: Arc::new(RunControl::default()),
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

    /// Commits one step of `flow` — its writes and the events announcing it, fenced by the
    /// runner's epoch — in one transaction, then publishes the events.
    async fn commit_step(
        &self,
        flow: &FlowRecord,
        mut step: FlowStep,
        events: Vec<EventEnvelope>,
    ) -> Result<(), ActorError> {
        step.mesh.clone_from(&flow.mesh_name);
        step.tenant.clone_from(&flow.tenant_id);
        step.epoch = Some(self.config.epoch);
        step.events = events
            .iter()
            .map(|event| history_row(event, Some(flow.id)))
            .collect::<Result<_, _>>()?;
        // A database that is away for a moment (a restart, a failover) delays the step instead of
        // failing the flow. Retrying is safe: a step re-applies the same transitions and stores
        // its events once by id.
        let mut delay = Duration::from_millis(100);
        let started = tokio::time::Instant::now();
        loop {
            match self.store.record_step(step.clone()).await {
                Ok(_) => break,
                Err(error)
                    if error.is_transient()
                        && started.elapsed() < STORE_OUTAGE_PATIENCE
                        && !self.control.stop_requested() =>
                {
                    tracing::warn!(%error, flow = flow.id, "step not recorded, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(error) => return Err(error.into()),
            }
        }
        self.events.publish(&events).await;
        Ok(())
    }

    /// Runs (or resumes) a flow like [`Self::run`], running it again from its recorded state when
    /// the database was unreachable, until it ends or the partition is stopped.
    pub async fn run_resuming(&self, flow_id: i64) -> Result<FlowStatus, ActorError> {
        let mut delay = Duration::from_millis(500);
        loop {
            match self.run(flow_id).await {
                Err(error) if is_store_outage(&error) && !self.control.stop_requested() => {
                    tracing::warn!(%error, flow = flow_id, "database unreachable; resuming the flow when it answers");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                outcome => return outcome,
            }
        }
    }

    /// Runs (or resumes) a flow to its end and returns how it ended.
    #[tracing::instrument(skip_all, fields(flow = flow_id))]
    pub async fn run(&self, flow_id: i64) -> Result<FlowStatus, ActorError> {
        let flow = self
            .store
            .get_flow(flow_id)
            .await?
            .ok_or_else(|| ActorError::Message(format!("flow {flow_id} does not exist")))?;
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
        let _active = ActiveFlow::new(&self.control);
        // The flow's first step takes the mesh over (fence): from then on writes of any older
        // owner are refused.
        let heartbeat = self.start_heartbeat(flow_id);
        let outcome = self.run_tasks(&flow, &input).await;
        heartbeat.abort();
        if matches!(&outcome, Err(error) if is_store_outage(error)) {
            // The database, not the flow, failed: leave the flow as recorded for a resume.
            return outcome.map(|()| FlowStatus::Running);
        }
        let (status, detail) = match &outcome {
            Ok(()) => (FlowStatus::Succeeded, None),
            Err(error) if is_interruption(error) => {
                tracing::warn!(flow = flow_id, %error, "flow interrupted; the partition's next owner resumes it");
                return Ok(FlowStatus::Running);
            }
            Err(error) => (FlowStatus::Failed, Some(error.to_string())),
        };
        self.finish(&flow, &input, status, detail).await?;
        Ok(status)
    }

    fn start_heartbeat(&self, flow_id: i64) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let processor = self.config.processor.clone();
        let epoch = self.config.epoch;
        let period = self.config.heartbeat;
        tokio::spawn(async move {
            // The flow's first step records the first heartbeat.
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            loop {
                ticker.tick().await;
                if let Err(error) = store.heartbeat_flow(flow_id, &processor, Some(epoch)).await {
                    tracing::warn!(%error, flow = flow_id, "heartbeat not recorded");
                }
            }
        })
    }

    async fn run_tasks(&self, flow: &FlowRecord, input: &FlowInput) -> Result<(), ActorError> {
        let mesh = self
            .store
            .get_mesh(&TenantScope::All, &flow.mesh_name)
            .await?
            .ok_or_else(|| {
                ActorError::Message(format!("mesh {} no longer exists", flow.mesh_name))
            })?;
        let spec = load_spec(&self.store, &mesh).await?;
        let (running, _, _) = mesh_statuses(&flow.def_name);
        let started = self.event(
            flow,
            input,
            FlowStarted {
                flow_id: flow.id,
                flow: flow.def_name.clone(),
            },
        )?;
        let step = FlowStep {
            flow: Some((
                flow.id,
                FlowTransition {
                    status: FlowStatus::Running,
                    log_line: None,
                    fence_epoch: Some(self.config.epoch),
                },
            )),
            processor: Some((flow.id, self.config.processor.clone())),
            mesh_status: Some(MeshStatusChange {
                status: Some(running.into()),
                ..MeshStatusChange::default()
            }),
            ..FlowStep::default()
        };
        self.commit_step(flow, step, vec![started]).await?;
        let context = TaskContext {
            spec: &spec,
            store: &self.store,
            connections: &self.connections,
            epoch: self.config.epoch,
            config: &self.config,
        };
        for task in self.store.list_tasks(flow.id).await? {
            if matches!(
                task.status.parse::<TaskStatus>(),
                Ok(TaskStatus::Succeeded | TaskStatus::Skipped)
            ) {
                continue;
            }
            if self.control.stop_requested() {
                return Err(ActorError::Interrupted);
            }
            let kind = TaskKind::parse(&task.name).ok_or_else(|| ActorError::CorruptState {
                mesh: flow.mesh_name.clone(),
                reason: format!("unknown task {:?}", task.name),
            })?;
            self.run_task(flow, input, &context, &task, &kind).await?;
        }
        Ok(())
    }

    async fn run_task(
        &self,
        flow: &FlowRecord,
        input: &FlowInput,
        context: &TaskContext<'_>,
        task: &TaskRecord,
        kind: &TaskKind,
    ) -> Result<(), ActorError> {
        let cluster = kind.cluster().cloned();
        let started = self.event(
            flow,
            input,
            TaskStarted {
                flow_id: flow.id,
                task_id: task.id,
                task: task.name.clone(),
                cluster: cluster.clone(),
            },
        )?;
        let step = FlowStep {
            task: Some((
                task.id,
                TaskTransition {
                    status: Some(TaskStatus::Running),
                    fence_epoch: Some(self.config.epoch),
                    ..TaskTransition::default()
                },
            )),
            ..FlowStep::default()
        };
        self.commit_step(flow, step, vec![started]).await?;
        let mut attempt = 1;
        let result = loop {
            let slot = self
                .slots
                .acquire()
                .await
                .map_err(|_| ActorError::Interrupted)?;
            let ran = context.run(kind).await;
            drop(slot);
            match ran {
                Ok(done) => break Ok(done),
                Err(error)
                    if error.is_transient()
                        && attempt < self.config.attempts
                        && !self.control.stop_requested() =>
                {
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
                let transition = TaskTransition {
                    status: Some(TaskStatus::Succeeded),
                    output: Some(serde_json::json!({ "result": done }).to_string()),
                    log_line: Some(done.clone()),
                    fence_epoch: Some(self.config.epoch),
                    ..TaskTransition::default()
                };
                let finished = self.event(
                    flow,
                    input,
                    TaskFinished {
                        flow_id: flow.id,
                        task_id: task.id,
                        outcome: TaskOutcome::Succeeded,
                        detail: Some(done),
                    },
                )?;
                let step = FlowStep {
                    task: Some((task.id, transition)),
                    ..FlowStep::default()
                };
                self.commit_step(flow, step, vec![finished]).await?;
                Ok(())
            }
            Err(error) => {
                let message = error.to_string();
                let transition = TaskTransition {
                    status: Some(TaskStatus::Failed),
                    error: Some(message.clone()),
                    log_line: Some(format!("failed after {attempt} attempt(s): {message}")),
                    fence_epoch: Some(self.config.epoch),
                    ..TaskTransition::default()
                };
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
                let finished = self.event(
                    flow,
                    input,
                    TaskFinished {
                        flow_id: flow.id,
                        task_id: task.id,
                        outcome: TaskOutcome::Failed,
                        detail: Some(message),
                    },
                )?;
                let step = FlowStep {
                    task: Some((task.id, transition)),
                    ..FlowStep::default()
                };
                self.commit_step(flow, step, vec![finished]).await?;
                Err(error)
            }
        }
    }

    /// Ends a flow in one step: the command's outcome, the mesh's status, the end's events and the
    /// terminal flow row commit together. A worker that dies before the commit leaves the flow
    /// unfinished and its next owner runs `finish` again; one that dies after it but before
    /// publishing leaves the events in the history, where followers replay them; the end's events
    /// carry ids derived from the flow, so a second run stores and publishes nothing twice.
    async fn finish(
        &self,
        flow: &FlowRecord,
        input: &FlowInput,
        status: FlowStatus,
        detail: Option<String>,
    ) -> Result<(), ActorError> {
        let (_, succeeded, failed) = mesh_statuses(&flow.def_name);
        let ok = status == FlowStatus::Succeeded;
        let command_status = if ok {
            CommandStatus::Succeeded
        } else {
            CommandStatus::Failed
        };
        let mesh_status = (flow.def_name != super::defs::DELETE || !ok).then(|| MeshStatusChange {
            status: Some(if ok { succeeded } else { failed }.into()),
            ..MeshStatusChange::default()
        });
        let mut events = Vec::new();
        if flow.def_name == super::defs::DELETE && ok {
            events.push(self.event_once(
                flow,
                input,
                "mesh-deleted",
                mesh_bus::event::MeshDeleted {},
            )?);
        }
        let outcome = if ok {
            FlowOutcome::Succeeded
        } else {
            FlowOutcome::Failed
        };
        let finished = FlowFinished {
            flow_id: flow.id,
            outcome,
            detail: detail.clone(),
        };
        events.push(self.event_once(flow, input, "flow-finished", finished)?);
        let log_line = match &detail {
            Some(reason) => format!("flow {status}: {reason}"),
            None => format!("flow {status}"),
        };
        let step = FlowStep {
            command: Some((
                CommandOutcome {
                    command_id: input.command_id.clone(),
                    status: command_status,
                    result: detail,
                },
                Some(flow.id),
            )),
            mesh_status,
            flow: Some((
                flow.id,
                FlowTransition {
                    status,
                    log_line: Some(log_line),
                    fence_epoch: Some(self.config.epoch),
                },
            )),
            ..FlowStep::default()
        };
        self.commit_step(flow, step, events).await
    }

    /// An event that happens once per flow, with an id derived from the flow and `what`, so a
    /// second run of the flow's end stores and publishes nothing twice.
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
