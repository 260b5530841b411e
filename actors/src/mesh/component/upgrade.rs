//! Deciding upgrade commands: `UpgradeMesh` (checked against the catalog and the version rules,
//! recorded in `mesh.state` with its options) and `CanaryOperate` (confirm or roll back the
//! canary the mesh waits in). While an upgrade is under way other changes are refused, so no
//! flow plans against a control plane that is half on one revision and half on another.

use mesh_bus::command::{CanaryAction, UpgradeMesh, UpgradeStrategy};
use mesh_bus::{Command, CommandEnvelope};
use mesh_core::upgrade::{UpgradeKind, check_upgrade};
use mesh_schema::models::MeshRecord;
use mesh_schema::store::mesh::MeshStatusChange;

use super::{Decision, MeshComponent, reject};
use crate::error::ActorError;
use crate::flow::defs;
use crate::flow::load_spec;
use crate::flow::upgrade::{
    UpgradePhase, UpgradeState, canary_tasks, confirm_tasks, in_place_tasks, recorded_upgrade,
    revert_tasks, with_upgrade,
};

impl MeshComponent {
    /// Whether `command` is one an upgrade under way does not hold back: the upgrade's own
    /// commands, and deleting the mesh.
    pub(super) fn passes_upgrades(command: &CommandEnvelope) -> bool {
        matches!(
            command.body,
            Command::UpgradeMesh(_) | Command::CanaryOperate(_) | Command::DeleteMesh(_)
        )
    }

    /// Why `command` must wait for the upgrade of `mesh` (as it is now) to end, if it must.
    pub(super) fn blocked_by_upgrade(
        command: &CommandEnvelope,
        mesh: Option<&MeshRecord>,
    ) -> Option<String> {
        if Self::passes_upgrades(command) {
            return None;
        }
        let (upgrade, _) = recorded_upgrade(mesh?.state.as_deref());
        upgrade.map(|u| {
            format!(
                "mesh {} is being upgraded from Istio {} to {} ({}); confirm or roll the upgrade back first",
                command.mesh,
                u.from,
                u.to,
                phase_name(u.phase)
            )
        })
    }

    pub(super) async fn decide_upgrade(
        &self,
        command: &CommandEnvelope,
        upgrade: &UpgradeMesh,
        redelivered: bool,
    ) -> Result<Decision, ActorError> {
        let store = self.runner.store();
        let mesh = match self.changeable_mesh(command).await? {
            Ok(mesh) => mesh,
            Err(reason) => return reject(reason),
        };
        let kind = match upgrade.strategy {
            UpgradeStrategy::Canary => UpgradeKind::Canary,
            UpgradeStrategy::InPlace => UpgradeKind::InPlace,
        };
        let (recorded, revision_based) = recorded_upgrade(mesh.state.as_deref());
        let options = upgrade.canary.clone().unwrap_or_default();
        let wanted = UpgradeState {
            kind,
            from: mesh.version.clone(),
            to: upgrade.version.clone(),
            from_revision_based: revision_based,
            options,
            phase: UpgradePhase::Moving,
        };
        let spec = load_spec(store, &mesh).await?;
        let tasks = |state: &UpgradeState| match state.kind {
            UpgradeKind::Canary => canary_tasks(&spec, &state.options),
            UpgradeKind::InPlace => in_place_tasks(&spec),
        };
        if let Some(recorded) = recorded {
            // A redelivery of the command that recorded this upgrade (its flow not yet made).
            if redelivered && recorded.phase == UpgradePhase::Moving && recorded.to == wanted.to {
                return Ok(Decision::Start {
                    def_name: def_of(recorded.kind),
                    tasks: tasks(&recorded),
                    announce: None,
                });
            }
            return reject(format!(
                "mesh {} is already being upgraded from Istio {} to {} ({}); confirm or roll it back first",
                command.mesh,
                recorded.from,
                recorded.to,
                phase_name(recorded.phase)
            ));
        }
        if kind == UpgradeKind::InPlace && revision_based {
            return reject(format!(
                "mesh {} runs revision-based since its last canary upgrade; upgrade it with strategy canary",
                command.mesh
            ));
        }
        let path = match check_upgrade(self.catalog.as_ref(), &mesh.version, &upgrade.version, kind)
        {
            Ok(path) => path,
            Err(error) => return reject(error.to_string()),
        };
        let wanted = UpgradeState {
            to: path.to.to_string(),
            ..wanted
        };
        let state = with_upgrade(mesh.state.as_deref(), Some(wanted.clone()))?;
        store
            .update_mesh_status(
                &mesh.name,
                self.runner.config().epoch,
                MeshStatusChange {
                    state: Some(state),
                    ..MeshStatusChange::default()
                },
            )
            .await?;
        Ok(Decision::Start {
            def_name: def_of(kind),
            tasks: tasks(&wanted),
            announce: None,
        })
    }

    pub(super) async fn decide_canary(
        &self,
        command: &CommandEnvelope,
        action: CanaryAction,
    ) -> Result<Decision, ActorError> {
        let Some(mesh) = self.visible_mesh(command).await? else {
            return reject(format!("mesh {} does not exist", command.mesh));
        };
        let (recorded, _) = recorded_upgrade(mesh.state.as_deref());
        let Some(upgrade) = recorded.filter(|u| u.kind == UpgradeKind::Canary) else {
            return reject(format!(
                "mesh {} has no canary upgrade to confirm or roll back",
                command.mesh
            ));
        };
        let spec = load_spec(self.runner.store(), &mesh).await?;
        match (action, upgrade.phase) {
            (CanaryAction::Confirm, UpgradePhase::Canary | UpgradePhase::Confirming) => {
                Ok(Decision::Start {
                    def_name: defs::CANARY_CONFIRM,
                    tasks: confirm_tasks(&spec),
                    announce: None,
                })
            }
            (
                CanaryAction::Rollback,
                UpgradePhase::Canary | UpgradePhase::RollingBack | UpgradePhase::Moving,
            ) => Ok(Decision::Start {
                def_name: defs::CANARY_ROLLBACK,
                tasks: revert_tasks(&spec),
                announce: None,
            }),
            (CanaryAction::Confirm, phase) => reject(format!(
                "the canary upgrade of mesh {} to Istio {} cannot be confirmed while {}",
                command.mesh,
                upgrade.to,
                phase_name(phase)
            )),
            (CanaryAction::Rollback, phase) => reject(format!(
                "the canary upgrade of mesh {} to Istio {} cannot be rolled back while {}: Istio {} is already committed",
                command.mesh,
                upgrade.to,
                phase_name(phase),
                upgrade.to
            )),
        }
    }
}

fn def_of(kind: UpgradeKind) -> &'static str {
    match kind {
        UpgradeKind::Canary => defs::UPGRADE_CANARY,
        UpgradeKind::InPlace => defs::UPGRADE_IN_PLACE,
    }
}

fn phase_name(phase: UpgradePhase) -> &'static str {
    match phase {
        UpgradePhase::Moving => "moving namespaces",
        UpgradePhase::Canary => "waiting in canary",
        UpgradePhase::Confirming => "confirming",
        UpgradePhase::RollingBack => "rolling back",
    }
}
