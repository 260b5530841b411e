//! Events: facts about a mesh, in the past tense.
//!
//! Input: workers (and the bus itself, for dead letters) publishing on
//! `<root>.evt.<tenant>.<mesh>.<EventKind>`. Output: the API's event stream, `meshctl`'s
//! progress display and any NATS subscriber. An event is caused by a command or by another event
//! and shares its correlation id (see [`crate::Envelope::caused_by`]), so a client that issued a
//! command can follow everything that came of it.

use mesh_core::{ClusterName, MeshMode};
use serde::{Deserialize, Serialize};

use crate::envelope::{InvalidMessage, Validate, body_enum};

body_enum! {
    /// An event of one mesh. The variant name is the `kind` on the wire and the last token of
    /// the subject; each kind is at version 1.
    pub enum Event ("event") {
        /// A command passed its checks and will be carried out.
        CommandAccepted = 1,
        /// A command was refused; nothing was changed.
        CommandRejected = 1,
        /// A mesh was recorded and its installation planned.
        MeshCreated = 1,
        /// The mesh-wide configuration changed.
        MeshConfigUpdated = 1,
        /// A mesh was removed.
        MeshDeleted = 1,
        /// A flow (install, upgrade, rollback, delete, ...) started.
        FlowStarted = 1,
        /// A flow ended.
        FlowFinished = 1,
        /// A task of a flow started.
        TaskStarted = 1,
        /// A task of a flow ended.
        TaskFinished = 1,
        /// A message could not be decoded and was moved to the dead-letter subjects.
        MessageDeadLettered = 1,
        /// The mesh's desired Istio resources changed (a rollout follows).
        ResourcesChanged = 1,
        /// A managed Istio resource in a member differs from the desired state.
        DriftDetected = 1,
    }
}

fn check_text(kind: &'static str, what: &str, value: &str) -> Result<(), InvalidMessage> {
    if value.trim().is_empty() {
        return Err(InvalidMessage::new(
            kind,
            format!("{what} must not be blank"),
        ));
    }
    Ok(())
}

/// A command passed its checks and will be carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandAccepted {
    /// The kind of the command (`CreateMesh`).
    pub command: String,
}

impl Validate for CommandAccepted {
    fn validate(&self) -> Result<(), InvalidMessage> {
        check_text("CommandAccepted", "command", &self.command)
    }
}

/// A command was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRejected {
    /// The kind of the command.
    pub command: String,
    /// Why, for the user who sent it.
    pub reason: String,
}

impl Validate for CommandRejected {
    fn validate(&self) -> Result<(), InvalidMessage> {
        check_text("CommandRejected", "command", &self.command)?;
        check_text("CommandRejected", "reason", &self.reason)
    }
}

/// A mesh was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshCreated {
    /// The mesh's generation after creation.
    pub generation: i64,
    /// The Istio version being installed.
    pub version: String,
    /// The mesh's mode.
    pub mode: MeshMode,
    /// The member clusters.
    pub clusters: Vec<ClusterName>,
}

impl Validate for MeshCreated {}

/// The mesh-wide configuration changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshConfigUpdated {
    /// The mesh's generation after the change.
    pub generation: i64,
}

impl Validate for MeshConfigUpdated {}

/// A mesh was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshDeleted {}

impl Validate for MeshDeleted {}

/// A flow started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowStarted {
    /// The flow's row id.
    pub flow_id: i64,
    /// The flow's definition name (`install`, `upgrade`, ...).
    pub flow: String,
}

impl Validate for FlowStarted {
    fn validate(&self) -> Result<(), InvalidMessage> {
        check_text("FlowStarted", "flow", &self.flow)
    }
}

/// How a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlowOutcome {
    /// Every task succeeded.
    Succeeded,
    /// A task failed and the flow gave up.
    Failed,
    /// A task failed and what the flow had done was undone.
    RolledBack,
    /// A later command cancelled it.
    Cancelled,
}

/// A flow ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowFinished {
    /// The flow's row id.
    pub flow_id: i64,
    /// How it ended.
    pub outcome: FlowOutcome,
    /// A short explanation when it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Validate for FlowFinished {}

/// A task started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStarted {
    /// The flow's row id.
    pub flow_id: i64,
    /// The task's row id.
    pub task_id: i64,
    /// The task's name (`install-control-plane`, ...).
    pub task: String,
    /// The cluster it works on, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterName>,
}

impl Validate for TaskStarted {
    fn validate(&self) -> Result<(), InvalidMessage> {
        check_text("TaskStarted", "task", &self.task)
    }
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskOutcome {
    /// It did what it should.
    Succeeded,
    /// It failed.
    Failed,
    /// There was nothing to do.
    Skipped,
}

/// A task ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFinished {
    /// The flow's row id.
    pub flow_id: i64,
    /// The task's row id.
    pub task_id: i64,
    /// How it ended.
    pub outcome: TaskOutcome,
    /// A short explanation when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Validate for TaskFinished {}

/// A message could not be decoded and was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDeadLettered {
    /// The subject it was published on.
    pub subject: String,
    /// Why it was refused.
    pub reason: String,
}

impl Validate for MessageDeadLettered {
    fn validate(&self) -> Result<(), InvalidMessage> {
        check_text("MessageDeadLettered", "subject", &self.subject)?;
        check_text("MessageDeadLettered", "reason", &self.reason)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::envelope::{Body, DecodeError};

    #[test]
    fn kinds_are_past_tense_and_unique() {
        let mut kinds: Vec<&str> = Event::KINDS.iter().map(|(k, _)| *k).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), Event::KINDS.len());
        for kind in kinds {
            assert!(
                kind.ends_with("ed") || kind.ends_with("Finished"),
                "{kind} is not a past-tense fact"
            );
        }
    }

    #[test]
    fn flow_outcomes_use_kebab_case() {
        let event = Event::from(FlowFinished {
            flow_id: 7,
            outcome: FlowOutcome::RolledBack,
            detail: None,
        });
        assert_eq!(
            event.encode_payload().expect("encode"),
            json!({"flow_id": 7, "outcome": "rolled-back"})
        );
    }

    #[test]
    fn blank_reasons_are_refused() {
        let err = Event::decode(
            "CommandRejected",
            1,
            json!({"command": "CreateMesh", "reason": " "}),
        )
        .expect_err("blank");
        assert!(matches!(err, DecodeError::Invalid(_)), "{err}");
        assert_eq!(
            err.to_string(),
            "invalid CommandRejected: reason must not be blank"
        );
    }

    #[test]
    fn a_dead_letter_event_round_trips() {
        let event = Event::from(MessageDeadLettered {
            subject: "mesh.cmd.1.acme.demo".into(),
            reason: "not a valid envelope".into(),
        });
        let back = Event::decode(
            event.kind(),
            event.version(),
            event.encode_payload().expect("encode"),
        )
        .expect("decode");
        assert_eq!(back, event);
    }
}

/// One resource named in an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceName {
    /// The kind (`VirtualService`).
    pub kind: String,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

/// The mesh's desired Istio resources changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcesChanged {
    /// The member they belong to; absent for mesh-wide resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterName>,
    /// Objects created or changed.
    pub applied: Vec<ResourceName>,
    /// Objects deleted.
    pub deleted: Vec<ResourceName>,
    /// Clusters the change is rolled out to.
    pub targets: Vec<ClusterName>,
}

impl Validate for ResourcesChanged {}

/// A managed Istio resource in a member differs from the desired state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftDetected {
    /// The member.
    pub cluster: ClusterName,
    /// The object.
    pub resource: ResourceName,
    /// `changed` (edited in the cluster) or `deleted` (removed from it).
    pub drift: String,
    /// The changed field paths (for `changed`).
    #[serde(default)]
    pub fields: Vec<String>,
    /// What happens next: `repair` or `report`.
    pub policy: String,
}

impl Validate for DriftDetected {}
