//! Deciding resource commands: validating a batch of Istio resource changes against the schemas
//! and the mesh's other resources, then recording the new desired state and its rollout flow in
//! one transaction.

use mesh_bus::CommandEnvelope;
use mesh_bus::command::{ApplyResources, RepairDrift, ResourceOp};
use mesh_bus::event::{ResourceName, ResourcesChanged};
use mesh_core::resources::{
    self, Finding, IstioKind, IstioResource, ProposedChange, ResourceKey, Severity, normalize,
};
use mesh_core::spec::MeshSpec;
use mesh_core::{ClusterName, ClusterRole, FlowStatus, NamespaceName};
use mesh_schema::StoreError;
use mesh_schema::models::NewFlow;
use mesh_schema::store::resource::{DesiredChange, ResourceRecord, ResourceRef, scope_conflict};

use super::{Decision, MeshComponent, reject};
use crate::error::ActorError;
use crate::flow::{FlowInput, TaskKind, apply_resources_tasks, defs, load_spec};

/// Most findings quoted in a rejection.
const MAX_QUOTED_FINDINGS: usize = 20;

/// The rejection text for blocking findings: each with its object and field path.
fn describe_findings(findings: &[&Finding]) -> String {
    let mut lines: Vec<String> = findings
        .iter()
        .take(MAX_QUOTED_FINDINGS)
        .map(ToString::to_string)
        .collect();
    if findings.len() > MAX_QUOTED_FINDINGS {
        lines.push(format!(
            "… and {} more",
            findings.len() - MAX_QUOTED_FINDINGS
        ));
    }
    format!("invalid Istio resources: {}", lines.join("; "))
}

/// The clusters a change of this scope is written to; an error when the scope makes no sense.
pub(crate) fn scope_targets(
    spec: &MeshSpec,
    cluster: Option<&ClusterName>,
) -> Result<Vec<ClusterName>, String> {
    let Some(cluster) = cluster else {
        return Ok(resources::targets(spec));
    };
    let Some(member) = spec.member(cluster) else {
        return Err(format!(
            "cluster {cluster} is not a member of mesh {}",
            spec.name
        ));
    };
    if member.role == ClusterRole::Remote {
        let primary = spec
            .primary_of(cluster)
            .map_or_else(|| "its primary".to_owned(), |p| p.name.to_string());
        return Err(format!(
            "cluster {cluster} is a remote: its workloads take Istio configuration from {primary}; \
             apply the resource mesh-wide or to {primary}"
        ));
    }
    Ok(vec![cluster.clone()])
}

impl MeshComponent {
    pub(super) async fn decide_apply_resources(
        &self,
        command: &CommandEnvelope,
        apply: &ApplyResources,
    ) -> Result<Decision, ActorError> {
        let store = self.runner.store();
        let mesh = match self.changeable_mesh(command).await? {
            Ok(mesh) => mesh,
            Err(reason) => return reject(reason),
        };
        let spec = load_spec(store, &mesh).await?;
        let targets = match scope_targets(&spec, apply.cluster.as_ref()) {
            Ok(targets) => targets,
            Err(reason) => return reject(reason),
        };
        let scope = apply
            .cluster
            .as_ref()
            .map_or_else(String::new, ToString::to_string);
        // The objects the target clusters hold: the mesh-wide ones and, for a change to one
        // member, that member's own.
        let rows = store.list_resources(&mesh.name, None, None, None).await?;
        let current: Vec<IstioResource> = rows
            .iter()
            .filter(|r| r.cluster_name.is_empty() || r.cluster_name == scope)
            .filter_map(ResourceRecord::resource)
            .collect();
        let mut proposed = Vec::new();
        let mut changes = Vec::new();
        let mut blocking: Vec<Finding> = Vec::new();
        let (mut applied, mut deleted) = (Vec::new(), Vec::new());
        for change in &apply.changes {
            let Some(kind) = IstioKind::from_kind(&change.kind) else {
                return reject(format!(
                    "unknown Istio kind {:?}: mesh-manager manages {}",
                    change.kind,
                    IstioKind::ALL.map(IstioKind::kind).join(", ")
                ));
            };
            let namespace = match NamespaceName::new(change.namespace.clone()) {
                Ok(namespace) => namespace,
                Err(e) => return reject(e.to_string()),
            };
            let key = ResourceKey {
                kind,
                namespace: namespace.clone(),
                name: change.name.clone(),
            };
            if let Some(reason) = scope_conflict(&rows, &scope, &key) {
                return reject(reason);
            }
            let name = ResourceName {
                kind: kind.kind().to_owned(),
                namespace: namespace.to_string(),
                name: change.name.clone(),
            };
            let body = match (change.op, &change.body) {
                (ResourceOp::Apply, Some(body)) => match normalize(body, Some(&namespace)) {
                    Ok(resource) if resource.key == key => {
                        let text = serde_json::to_string(&resource.body)
                            .map_err(|e| ActorError::Message(e.to_string()))?;
                        proposed.push(ProposedChange {
                            key: key.clone(),
                            resource: Some(resource),
                        });
                        applied.push(name);
                        Some(text)
                    }
                    Ok(resource) => {
                        return reject(format!(
                            "the body names {} but the change is for {key}",
                            resource.key
                        ));
                    }
                    Err(findings) => {
                        blocking.extend(
                            findings
                                .into_iter()
                                .filter(|f| f.severity == Severity::Error)
                                .map(|mut f| {
                                    f.resource.get_or_insert_with(|| key.clone());
                                    f
                                }),
                        );
                        continue;
                    }
                },
                (ResourceOp::Apply, None) => {
                    return reject(format!("apply of {key} needs a body"));
                }
                (ResourceOp::Delete, _) => {
                    proposed.push(ProposedChange {
                        key: key.clone(),
                        resource: None,
                    });
                    deleted.push(name);
                    None
                }
            };
            changes.push(DesiredChange {
                target: ResourceRef {
                    cluster_name: scope.clone(),
                    kind: kind.kind().to_owned(),
                    namespace: namespace.to_string(),
                    name: change.name.clone(),
                },
                body,
                expected_generation: change.expected_generation,
            });
        }
        blocking.extend(
            resources::validate_change(&current, &proposed, None)
                .into_iter()
                .filter(|f| f.severity == Severity::Error),
        );
        if !blocking.is_empty() {
            return reject(describe_findings(&blocking.iter().collect::<Vec<_>>()));
        }
        let input = FlowInput {
            command_id: command.id.to_string(),
            command: command.kind().to_owned(),
            principal: command.principal.clone(),
            correlation_id: command.correlation_id.to_string(),
        };
        let accepted = store
            .accept_resource_changes(
                &command.id.to_string(),
                command.tenant.as_str(),
                &mesh.name,
                &command.principal,
                self.runner.config().epoch,
                NewFlow {
                    tenant_id: command.tenant.to_string(),
                    mesh_name: mesh.name.clone(),
                    name: format!("{}-{}", defs::APPLY_RESOURCES, command.mesh),
                    def_name: defs::APPLY_RESOURCES.to_owned(),
                    status: FlowStatus::Pending.as_str().to_owned(),
                    input: serde_json::to_string(&input)
                        .map_err(|e| ActorError::Message(e.to_string()))?,
                    processor: self.runner.config().processor.clone(),
                },
                apply_resources_tasks(&targets)
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                changes,
            )
            .await;
        let accepted = match accepted {
            Ok(accepted) => accepted,
            Err(StoreError::GenerationConflict {
                mesh: object,
                expected,
                actual,
            }) => {
                return reject(if actual == 0 {
                    format!(
                        "{object} does not exist (expected generation {expected}): reload and retry"
                    )
                } else {
                    format!(
                        "{object} is at generation {actual}, not {expected}: someone changed it; reload it and retry"
                    )
                });
            }
            Err(StoreError::NotFound { key, .. }) => {
                return reject(format!("cannot delete {key}: it does not exist"));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Decision::Recorded {
            flow_id: accepted.flow.id,
            announce: Some(
                ResourcesChanged {
                    cluster: apply.cluster.clone(),
                    applied,
                    deleted,
                    targets,
                }
                .into(),
            ),
        })
    }

    pub(super) async fn decide_repair_drift(
        &self,
        command: &CommandEnvelope,
        repair: &RepairDrift,
    ) -> Result<Decision, ActorError> {
        let mesh = match self.changeable_mesh(command).await? {
            Ok(mesh) => mesh,
            Err(reason) => return reject(reason),
        };
        let spec = load_spec(self.runner.store(), &mesh).await?;
        if spec.member(&repair.cluster).is_none() {
            return reject(format!(
                "cluster {} is not a member of mesh {}",
                repair.cluster, command.mesh
            ));
        }
        Ok(Decision::Start {
            def_name: defs::REPAIR_DRIFT,
            tasks: vec![TaskKind::SyncResources(repair.cluster.clone())],
            announce: None,
        })
    }
}
