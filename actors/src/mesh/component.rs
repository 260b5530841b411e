//! Accepting commands: the idempotency gate, the decision, the flow.

mod resources;

use std::sync::Arc;

use mesh_bus::command::{
    AddCluster, ClusterSpec, CreateMesh, RemoveCluster, SetAutoInjection, SetOutboundTraffic,
    SetTraceSampling, UpdateMeshConfig,
};
use mesh_bus::event::{CommandAccepted, CommandRejected, MeshConfigUpdated, MeshCreated};
use mesh_bus::{Command, CommandEnvelope, Event, EventEnvelope};
use mesh_core::spec::{MemberSpec, MeshConfig, MeshSpec, describe_errors};
use mesh_core::{CommandStatus, FlowStatus, VersionCatalog};
use mesh_schema::models::{
    MemberClusterRecord, MeshRecord, NewCommand, NewFlow, NewMemberCluster, NewMesh,
};
use mesh_schema::store::command::{CommandEntry, CommandRecorded};
use mesh_schema::store::flow::{FlowAcceptance, FlowToRun, MeshToDecide};
use mesh_schema::store::mesh::{MeshSpecChange, MeshSpecUpdate};
use mesh_schema::{StoreError, TenantScope};

use crate::error::ActorError;
use crate::flow::{FlowInput, load_spec, spec_of};

mod upgrade;
use crate::flow::{
    FlowRunner, TaskKind, add_cluster_tasks, defs, delete_tasks, install_tasks, reconfigure_tasks,
    remove_cluster_tasks,
};

/// What became of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    /// Seen before and already handled: nothing to do.
    Duplicate,
    /// Refused, with the reason sent to the caller.
    Rejected(String),
    /// Accepted; this flow carries it out (run or resume it).
    Started(i64),
    /// Not decided yet: the mesh is busy with a flow this command must follow; deliver it again
    /// shortly (changes to the same objects are carried out one after the other, in order).
    Deferred,
}

/// A decision about a command.
enum Decision {
    Reject(String),
    Start {
        def_name: &'static str,
        tasks: Vec<TaskKind>,
        announce: Option<Event>,
    },
    /// Change the desired state (compared-and-set on its generation) and start a flow carrying
    /// the change out, in one transaction; a refused compare-and-set rejects the command.
    Change {
        spec: MeshSpecUpdate,
        def_name: &'static str,
        tasks: Vec<TaskKind>,
        announce: Event,
        /// The mesh's row and members as the decision read them: the flow starts from them (with
        /// the change applied) instead of reading them again.
        decided: Box<(MeshRecord, Vec<MemberClusterRecord>)>,
    },
    /// The decision recorded its flow itself (in the same transaction as its other effects).
    Recorded {
        flow_id: i64,
        announce: Option<Event>,
    },
    /// Wait for the running flow to end, then decide.
    Defer,
}

/// A flow a decision starts: the desired-state change it carries out (if any), its definition and
/// tasks, what its acceptance announces, and the mesh's rows as the decision read them when the
/// flow may start from them.
struct FlowToStart<'a> {
    spec: Option<MeshSpecUpdate>,
    def_name: &'static str,
    tasks: &'a [TaskKind],
    announce: Option<Event>,
    decided: Option<(MeshRecord, Vec<MemberClusterRecord>)>,
}

/// A command's acceptance, with what its flow starts from when the acceptance knows it already
/// (see [`MeshComponent::accept_ready`]).
#[derive(Debug)]
pub struct Accepted {
    /// What became of the command.
    pub acceptance: Acceptance,
    /// For a flow started here from rows the decision read: what running it starts from.
    pub ready: Option<FlowToRun>,
}

impl From<Acceptance> for Accepted {
    fn from(acceptance: Acceptance) -> Self {
        Self {
            acceptance,
            ready: None,
        }
    }
}

/// The logic of a mesh actor.
#[derive(Clone)]
pub struct MeshComponent {
    runner: FlowRunner,
    catalog: Arc<VersionCatalog>,
}

impl std::fmt::Debug for MeshComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshComponent").finish_non_exhaustive()
    }
}

/// [`EventEnvelope::caused_by`] with its error as an actor error.
fn caused_by(
    command: &CommandEnvelope,
    body: impl Into<Event>,
) -> Result<EventEnvelope, ActorError> {
    EventEnvelope::caused_by(command, body).map_err(|e| ActorError::Message(e.to_string()))
}

/// The command log's row for `command`, recorded as `status` with `result`.
fn command_row(
    command: &CommandEnvelope,
    status: CommandStatus,
    result: Option<String>,
) -> NewCommand {
    NewCommand {
        command_id: command.id.to_string(),
        tenant_id: command.tenant.to_string(),
        mesh_name: command.mesh.to_string(),
        kind: command.kind().to_owned(),
        status: status.as_str().to_owned(),
        result,
        flow_id: None,
    }
}

fn reject(reason: impl Into<String>) -> Result<Decision, ActorError> {
    Ok(Decision::Reject(reason.into()))
}

impl MeshComponent {
    /// A component running flows with `runner` and checking versions against `catalog`.
    pub fn new(runner: FlowRunner, catalog: Arc<VersionCatalog>) -> Self {
        Self { runner, catalog }
    }

    /// The flow runner.
    pub fn runner(&self) -> &FlowRunner {
        &self.runner
    }

    async fn emit_for(
        &self,
        command: &CommandEnvelope,
        body: impl Into<Event>,
        flow_id: Option<i64>,
    ) -> Result<(), ActorError> {
        self.runner
            .events()
            .emit(caused_by(command, body)?, flow_id)
            .await
    }

    /// Handles one delivery of a command: records it, decides, persists the flow.
    pub async fn accept(&self, command: &CommandEnvelope) -> Result<Acceptance, ActorError> {
        Ok(self.accept_ready(command).await?.acceptance)
    }

    /// [`MeshComponent::accept`], also returning what the started flow starts from when the
    /// acceptance knows it (hand it to [`FlowRunner::run_ready`] to spare reading it again).
    #[tracing::instrument(skip_all, fields(mesh = %command.mesh, tenant = %command.tenant, message_id = %command.id))]
    pub async fn accept_ready(&self, command: &CommandEnvelope) -> Result<Accepted, ActorError> {
        if Self::decides_without_writing(command) {
            // Recorded by the write that carries its decision out; that write refuses a command
            // recorded before (a redelivery) whole, and the delivery is handled as one below.
            match self.act(command, false, false).await {
                Err(ActorError::Store(StoreError::AlreadyExists {
                    what: "command", ..
                })) => {}
                acted => return acted,
            }
        }
        let store = self.runner.store();
        let recorded = store
            .record_command(command_row(command, CommandStatus::Accepted, None))
            .await?;
        let redelivered = matches!(recorded, CommandRecorded::Duplicate(_));
        if let CommandRecorded::Duplicate(record) = &recorded {
            match record.flow_id {
                Some(flow_id) => {
                    let running = store
                        .get_flow(flow_id)
                        .await?
                        .and_then(|f| f.status.parse::<FlowStatus>().ok())
                        .is_some_and(|s| !s.is_terminal());
                    return Ok(if running {
                        Acceptance::Started(flow_id)
                    } else {
                        Acceptance::Duplicate
                    }
                    .into());
                }
                None if record.status != CommandStatus::Accepted.as_str() => {
                    return Ok(Acceptance::Duplicate.into());
                }
                // Accepted but no flow: the previous delivery stopped half-way; decide again.
                None => {}
            }
        }
        self.act(command, redelivered, true).await
    }

    /// Whether deciding `command` reads only, so that the command may be recorded by the write
    /// carrying the decision out (one transaction fewer) instead of before it. The decisions of
    /// the other commands write (a new mesh's rows, a new member, a flow of their own) or depend
    /// on whether the delivery is a redelivery, which only recording first tells.
    fn decides_without_writing(command: &CommandEnvelope) -> bool {
        matches!(
            command.body,
            Command::SetTraceSampling(_)
                | Command::SetAutoInjection(_)
                | Command::SetOutboundTraffic(_)
                | Command::UpdateMeshConfig(_)
                | Command::DeleteMesh(_)
                | Command::RemoveCluster(_)
        )
    }

    /// Decides `command` and carries the decision out. `recorded` tells whether the command log
    /// holds it already; if not, the decision's write records it, and a command recorded before
    /// fails that write with `StoreError::AlreadyExists { what: "command", .. }`, leaving nothing.
    async fn act(
        &self,
        command: &CommandEnvelope,
        redelivered: bool,
        recorded: bool,
    ) -> Result<Accepted, ActorError> {
        let decision = self.decide(command, redelivered).await?;
        let entry = || {
            if recorded {
                CommandEntry::Recorded(command.id.to_string())
            } else {
                CommandEntry::New(command_row(command, CommandStatus::Accepted, None))
            }
        };
        match decision {
            Decision::Reject(reason) => {
                Ok(self.reject_command(command, reason, recorded).await?.into())
            }
            Decision::Defer => {
                if !recorded {
                    self.runner
                        .store()
                        .record_decided_command(command_row(command, CommandStatus::Accepted, None))
                        .await?;
                }
                Ok(Acceptance::Deferred.into())
            }
            Decision::Recorded { .. } if !recorded => Err(ActorError::Message(format!(
                "a {} command records its own flow, so it must be recorded before it is decided",
                command.kind()
            ))),
            Decision::Recorded { flow_id, announce } => {
                self.emit_for(
                    command,
                    CommandAccepted {
                        command: command.kind().to_owned(),
                    },
                    Some(flow_id),
                )
                .await?;
                if let Some(event) = announce {
                    self.emit_for(command, event, Some(flow_id)).await?;
                }
                Ok(Acceptance::Started(flow_id).into())
            }
            Decision::Start {
                def_name,
                tasks,
                announce,
            } => {
                let flow = FlowToStart {
                    spec: None,
                    def_name,
                    tasks: &tasks,
                    announce,
                    decided: None,
                };
                self.start_flow(command, entry(), flow).await
            }
            Decision::Change {
                spec,
                def_name,
                tasks,
                announce,
                decided,
            } => {
                let flow = FlowToStart {
                    spec: Some(spec),
                    def_name,
                    tasks: &tasks,
                    announce: Some(announce),
                    decided: Some(*decided),
                };
                let started = self.start_flow(command, entry(), flow).await;
                match started {
                    Err(ActorError::Store(StoreError::GenerationConflict {
                        expected,
                        actual,
                        ..
                    })) => Ok(self
                        .reject_command(
                            command,
                            format!(
                                "mesh {} is at generation {actual}, not {expected}: reload it and retry",
                                command.mesh
                            ),
                            recorded,
                        )
                        .await?
                        .into()),
                    started => started,
                }
            }
        }
    }

    /// Records the refusal of `command` (in the command log already if `recorded`) and tells its
    /// sender why.
    async fn reject_command(
        &self,
        command: &CommandEnvelope,
        reason: String,
        recorded: bool,
    ) -> Result<Acceptance, ActorError> {
        let store = self.runner.store();
        if recorded {
            store
                .complete_command(
                    &command.id.to_string(),
                    CommandStatus::Rejected,
                    Some(reason.clone()),
                    None,
                )
                .await?;
        } else {
            store
                .record_decided_command(command_row(
                    command,
                    CommandStatus::Rejected,
                    Some(reason.clone()),
                ))
                .await?;
        }
        self.emit_for(
            command,
            CommandRejected {
                command: command.kind().to_owned(),
                reason: reason.clone(),
            },
            None,
        )
        .await?;
        tracing::info!(%reason, kind = command.kind(), "command rejected");
        Ok(Acceptance::Rejected(reason))
    }

    /// Accepts `command`: applies its desired-state change (if any), records its flow, and
    /// announces the acceptance and what `flow` says to announce, all in one transaction.
    async fn start_flow(
        &self,
        command: &CommandEnvelope,
        entry: CommandEntry,
        flow: FlowToStart<'_>,
    ) -> Result<Accepted, ActorError> {
        let FlowToStart {
            spec,
            def_name,
            tasks,
            announce,
            decided,
        } = flow;
        let input = FlowInput {
            command_id: command.id.to_string(),
            command: command.kind().to_owned(),
            principal: command.principal.clone(),
            correlation_id: command.correlation_id.to_string(),
        };
        let mut events = vec![caused_by(
            command,
            CommandAccepted {
                command: command.kind().to_owned(),
            },
        )?];
        if let Some(body) = announce {
            events.push(caused_by(command, body)?);
        }
        let acceptance = FlowAcceptance {
            command: entry,
            owner_epoch: self.runner.config().epoch,
            spec,
            flow: NewFlow {
                tenant_id: command.tenant.to_string(),
                mesh_name: command.mesh.to_string(),
                name: format!("{def_name}-{}", command.mesh),
                def_name: def_name.to_owned(),
                status: FlowStatus::Pending.as_str().to_owned(),
                input: serde_json::to_string(&input)
                    .map_err(|e| ActorError::Message(e.to_string()))?,
                processor: self.runner.config().processor.clone(),
            },
            tasks: tasks.iter().map(ToString::to_string).collect(),
            events: Vec::new(),
        };
        let (flow_id, ready) = self
            .runner
            .events()
            .start_flow_announcing(acceptance, events, decided)
            .await?;
        Ok(Accepted {
            acceptance: Acceptance::Started(flow_id),
            ready,
        })
    }

    async fn visible_mesh(
        &self,
        command: &CommandEnvelope,
    ) -> Result<Option<MeshRecord>, ActorError> {
        Ok(self
            .runner
            .store()
            .get_mesh(
                &TenantScope::Tenant(command.tenant.clone()),
                command.mesh.as_str(),
            )
            .await?)
    }

    async fn decide(
        &self,
        command: &CommandEnvelope,
        redelivered: bool,
    ) -> Result<Decision, ActorError> {
        // One read for what every decision starts from: whether the mesh is busy, its row and
        // its members (a configuration change and a deletion decide on them).
        let MeshToDecide {
            unfinished_flow,
            mesh,
            members,
        } = self
            .runner
            .store()
            .mesh_to_decide(
                &TenantScope::Tenant(command.tenant.clone()),
                command.mesh.as_str(),
            )
            .await?;
        if let Some((flow_id, def_name)) = unfinished_flow {
            if matches!(
                command.body,
                Command::ApplyResources(_) | Command::RepairDrift(_)
            ) {
                tracing::debug!(flow = flow_id, "mesh busy; resource change deferred");
                return Ok(Decision::Defer);
            }
            return reject(format!(
                "mesh {} is busy: flow {flow_id} ({def_name}) is still running; retry when it has finished",
                command.mesh
            ));
        }
        if let Some(reason) = Self::blocked_by_upgrade(command, mesh.as_ref()) {
            return reject(reason);
        }
        match &command.body {
            Command::CreateMesh(create) => self.decide_create(command, create, redelivered).await,
            Command::UpgradeMesh(upgrade) => {
                self.decide_upgrade(command, upgrade, redelivered).await
            }
            Command::CanaryOperate(operate) => self.decide_canary(command, operate.action).await,
            Command::DeleteMesh(_) => {
                let Some(mesh) = mesh else {
                    return reject(format!("mesh {} does not exist", command.mesh));
                };
                let spec = spec_of(&mesh, &members)?;
                Ok(Decision::Start {
                    def_name: defs::DELETE,
                    tasks: delete_tasks(&spec),
                    announce: None,
                })
            }
            Command::AddCluster(AddCluster { cluster }) => {
                self.decide_add_cluster(command, cluster).await
            }
            Command::RemoveCluster(RemoveCluster { cluster }) => {
                self.decide_remove_cluster(command, cluster).await
            }
            Command::SetTraceSampling(SetTraceSampling { percent }) => {
                let percent = percent.get();
                self.decide_reconfigure(command, mesh, members, move |config| {
                    config.trace_sampling = percent;
                })
                .await
            }
            Command::SetAutoInjection(SetAutoInjection {
                cluster,
                namespaces,
            }) => {
                let namespaces: Vec<String> = namespaces.iter().map(ToString::to_string).collect();
                let cluster = cluster.to_string();
                self.decide_reconfigure(command, mesh, members, move |config| {
                    if namespaces.is_empty() {
                        config.auto_injection_namespaces.remove(&cluster);
                    } else {
                        config.auto_injection_namespaces.insert(cluster, namespaces);
                    }
                })
                .await
            }
            Command::SetOutboundTraffic(SetOutboundTraffic { policy }) => {
                let policy = *policy;
                self.decide_reconfigure(command, mesh, members, move |config| {
                    config.outbound_traffic_policy = policy;
                })
                .await
            }
            Command::UpdateMeshConfig(UpdateMeshConfig { config }) => {
                let parsed: MeshConfig = match serde_json::from_value(config.clone()) {
                    Ok(parsed) => parsed,
                    Err(e) => return reject(format!("invalid mesh configuration: {e}")),
                };
                self.decide_reconfigure(command, mesh, members, move |config| *config = parsed)
                    .await
            }
            Command::ApplyResources(apply) => self.decide_apply_resources(command, apply).await,
            Command::RepairDrift(repair) => self.decide_repair_drift(command, repair).await,
        }
    }

    async fn decide_create(
        &self,
        command: &CommandEnvelope,
        create: &CreateMesh,
        redelivered: bool,
    ) -> Result<Decision, ActorError> {
        let store = self.runner.store();
        let config: MeshConfig = match serde_json::from_value(create.config.clone()) {
            Ok(config) => config,
            Err(e) => return reject(format!("invalid mesh configuration: {e}")),
        };
        let spec = MeshSpec {
            tenant: command.tenant.clone(),
            name: command.mesh.clone(),
            title: create.title.clone(),
            region: create.region.clone(),
            mode: create.mode,
            version: create.version.clone(),
            clusters: create
                .clusters
                .iter()
                .map(|c| MemberSpec::new(c.name.clone(), c.role).with_network(c.network.clone()))
                .collect(),
            config,
        };
        if let Err(errors) = spec.validate(self.catalog.as_ref()) {
            return reject(describe_errors(&errors));
        }
        if let Some(existing) = store
            .get_mesh(&TenantScope::All, command.mesh.as_str())
            .await?
        {
            // A redelivery of the command that created the row resumes; anything else is a clash.
            let ours = redelivered
                && existing.tenant_id == command.tenant.as_str()
                && existing.status == "Creating";
            if !ours {
                return reject(format!("mesh {} already exists", command.mesh));
            }
            return Ok(Decision::Start {
                def_name: defs::INSTALL,
                tasks: install_tasks(&spec),
                announce: None,
            });
        }
        for member in &spec.clusters {
            let registered = store
                .get_registered_cluster(
                    &TenantScope::Tenant(command.tenant.clone()),
                    member.name.as_str(),
                )
                .await?;
            if registered.is_none() {
                return reject(format!(
                    "cluster {} is not registered for tenant {}",
                    member.name, command.tenant
                ));
            }
        }
        let config_text =
            serde_json::to_string(&spec.config).map_err(|e| ActorError::Message(e.to_string()))?;
        let row = store
            .create_mesh(NewMesh {
                tenant_id: command.tenant.to_string(),
                name: command.mesh.to_string(),
                region: spec.region.clone(),
                title: spec.title.clone(),
                status: "Creating".into(),
                version: spec.version.clone(),
                config: Some(config_text),
                mode: spec.mode.as_str().into(),
                state: None,
            })
            .await?;
        for member in &spec.clusters {
            let added = store
                .add_member_cluster(NewMemberCluster {
                    name: member.name.to_string(),
                    region: spec.region.clone(),
                    mesh_name: command.mesh.to_string(),
                    role: member.role.as_str().into(),
                    phase: "Pending".into(),
                    network: member.network_name().to_owned(),
                })
                .await;
            if let Err(StoreError::AlreadyExists { .. }) = added {
                store.soft_delete_mesh(command.mesh.as_str(), 0).await?;
                return reject(format!(
                    "cluster {} is already a member of another mesh",
                    member.name
                ));
            }
            added?;
        }
        let announce = MeshCreated {
            generation: row.generation,
            version: spec.version.clone(),
            mode: spec.mode,
            clusters: spec.clusters.iter().map(|m| m.name.clone()).collect(),
        };
        Ok(Decision::Start {
            def_name: defs::INSTALL,
            tasks: install_tasks(&spec),
            announce: Some(announce.into()),
        })
    }

    /// The mesh, if it exists for the tenant and is in a state that allows changes.
    async fn changeable_mesh(
        &self,
        command: &CommandEnvelope,
    ) -> Result<Result<MeshRecord, String>, ActorError> {
        let Some(mesh) = self.visible_mesh(command).await? else {
            return Ok(Err(format!("mesh {} does not exist", command.mesh)));
        };
        if matches!(mesh.status.as_str(), "Creating" | "Deleting") {
            return Ok(Err(format!(
                "mesh {} is {}; change it when it is running",
                command.mesh, mesh.status
            )));
        }
        Ok(Ok(mesh))
    }

    async fn decide_add_cluster(
        &self,
        command: &CommandEnvelope,
        cluster: &ClusterSpec,
    ) -> Result<Decision, ActorError> {
        let store = self.runner.store();
        let mesh = match self.changeable_mesh(command).await? {
            Ok(mesh) => mesh,
            Err(reason) => return reject(reason),
        };
        let mut spec = load_spec(store, &mesh).await?;
        if spec.member(&cluster.name).is_some() {
            return reject(format!(
                "cluster {} is already a member of mesh {}",
                cluster.name, command.mesh
            ));
        }
        let registered = store
            .get_registered_cluster(
                &TenantScope::Tenant(command.tenant.clone()),
                cluster.name.as_str(),
            )
            .await?;
        if registered.is_none() {
            return reject(format!(
                "cluster {} is not registered for tenant {}",
                cluster.name, command.tenant
            ));
        }
        let member = MemberSpec::new(cluster.name.clone(), cluster.role)
            .with_network(cluster.network.clone());
        spec.clusters.push(member.clone());
        if let Err(errors) = spec.validate(self.catalog.as_ref()) {
            return reject(describe_errors(&errors));
        }
        let added = store
            .add_member_cluster(NewMemberCluster {
                name: member.name.to_string(),
                region: mesh.region.clone(),
                mesh_name: mesh.name.clone(),
                role: member.role.as_str().into(),
                phase: "Pending".into(),
                network: member.network_name().to_owned(),
            })
            .await;
        match added {
            Ok(_) => {}
            Err(StoreError::AlreadyExists { .. }) => {
                return reject(format!(
                    "cluster {} is already a member of another mesh",
                    cluster.name
                ));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Decision::Start {
            def_name: defs::ADD_CLUSTER,
            tasks: add_cluster_tasks(&spec, &cluster.name),
            announce: None,
        })
    }

    async fn decide_remove_cluster(
        &self,
        command: &CommandEnvelope,
        cluster: &mesh_core::ClusterName,
    ) -> Result<Decision, ActorError> {
        let store = self.runner.store();
        let mesh = match self.changeable_mesh(command).await? {
            Ok(mesh) => mesh,
            Err(reason) => return reject(reason),
        };
        let spec = load_spec(store, &mesh).await?;
        if spec.member(cluster).is_none() {
            return reject(format!(
                "cluster {cluster} is not a member of mesh {}",
                command.mesh
            ));
        }
        let mut remaining = spec.clone();
        remaining.clusters.retain(|m| &m.name != cluster);
        if let Err(errors) = remaining.validate(self.catalog.as_ref()) {
            return reject(format!(
                "removing {cluster} would leave an invalid mesh: {}; delete the mesh instead",
                describe_errors(&errors)
            ));
        }
        Ok(Decision::Start {
            def_name: defs::REMOVE_CLUSTER,
            tasks: remove_cluster_tasks(&spec, cluster),
            announce: None,
        })
    }

    /// Decides a configuration change of `mesh` with its `members` (as `decide` read them).
    async fn decide_reconfigure(
        &self,
        command: &CommandEnvelope,
        mesh: Option<MeshRecord>,
        members: Vec<MemberClusterRecord>,
        change: impl FnOnce(&mut MeshConfig),
    ) -> Result<Decision, ActorError> {
        let Some(mesh) = mesh else {
            return reject(format!("mesh {} does not exist", command.mesh));
        };
        if matches!(mesh.status.as_str(), "Creating" | "Deleting") {
            return reject(format!(
                "mesh {} is {}; change its configuration when it is running",
                command.mesh, mesh.status
            ));
        }
        let mut spec = spec_of(&mesh, &members)?;
        let before = spec.config.clone();
        change(&mut spec.config);
        if let Err(errors) = spec.validate(self.catalog.as_ref()) {
            return reject(describe_errors(&errors));
        }
        let stages = mesh_core::plan::changed_stages(&before, &spec.config);
        let expected = command.expected_generation.unwrap_or(mesh.generation);
        let config_text =
            serde_json::to_string(&spec.config).map_err(|e| ActorError::Message(e.to_string()))?;
        Ok(Decision::Change {
            spec: MeshSpecUpdate {
                mesh: mesh.name.clone(),
                expected_generation: expected,
                epoch: self.runner.config().epoch,
                change: MeshSpecChange {
                    config: Some(config_text),
                    ..MeshSpecChange::default()
                },
            },
            def_name: defs::RECONFIGURE,
            tasks: reconfigure_tasks(&spec, &stages),
            // The change lands only at `expected`, and it bumps the generation by one.
            announce: MeshConfigUpdated {
                generation: expected + 1,
            }
            .into(),
            decided: Box::new((mesh, members)),
        })
    }
}
