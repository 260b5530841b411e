//! Dead letters, shared by both buses: strict decoding of a delivered command, and the
//! `MessageDeadLettered` event that announces a message that failed it.
//!
//! Input: the subject, headers and bytes of a message. Output: a [`CommandEnvelope`] or the
//! reason it is not one; for a dead letter, the event that tells about it, filed under the mesh
//! the message named if that can be told (so the mesh's subscribers see it), otherwise under
//! the reserved tenant `_system`, mesh `bus`.

use chrono::Utc;
use mesh_core::{MeshName, TenantId};
use uuid::Uuid;

use crate::DeadLetter;
use crate::envelope::{CommandEnvelope, DecodeError, Envelope, EventEnvelope, Salvage};
use crate::event::{Event, MessageDeadLettered};
use crate::subject::{SYSTEM_MESH, SYSTEM_TENANT, Subjects};

/// Header of a dead letter naming the subject the message was first published on.
pub(crate) const ORIGINAL_SUBJECT_HEADER: &str = "Mesh-Dead-Letter-Subject";
/// Header of a dead letter giving the reason.
pub(crate) const REASON_HEADER: &str = "Mesh-Dead-Letter-Reason";
/// The principal of events the bus itself publishes.
pub(crate) const BUS_PRINCIPAL: &str = "system:mesh-bus";

/// Header values are one line; reasons may quote multi-line serde errors.
pub(crate) fn one_line(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1000)
        .collect();
    let line = line.trim();
    if line.is_empty() {
        "unspecified".to_owned()
    } else {
        line.to_owned()
    }
}

/// Decodes a delivered command and checks it was published where its tenant and mesh belong.
pub(crate) fn decode_command(
    subjects: &Subjects,
    subject: &str,
    traceparent: Option<String>,
    payload: &[u8],
) -> Result<CommandEnvelope, DecodeError> {
    let mut envelope = CommandEnvelope::from_json(payload)?;
    let expected = subjects.command(&envelope.tenant, &envelope.mesh);
    if expected.as_str() != subject {
        return Err(DecodeError::Misrouted {
            subject: subject.to_owned(),
            expected: expected.to_string(),
            tenant: envelope.tenant,
            mesh: envelope.mesh,
        });
    }
    envelope.traceparent = traceparent;
    Ok(envelope)
}

/// The event announcing `letter`.
pub(crate) fn event_for(subjects: &Subjects, letter: &DeadLetter) -> EventEnvelope {
    let salvage = Salvage::from_bytes(&letter.payload);
    let from_body = salvage
        .tenant
        .as_deref()
        .and_then(|t| TenantId::new(t).ok())
        .zip(salvage.mesh.as_deref().and_then(|m| MeshName::new(m).ok()));
    let from_subject = || {
        subjects
            .parse_command(&letter.original_subject)
            .map(|route| (route.tenant, route.mesh))
    };
    let system = || {
        TenantId::new(SYSTEM_TENANT)
            .ok()
            .zip(MeshName::new(SYSTEM_MESH).ok())
    };
    let (tenant, mesh) = from_body
        .or_else(from_subject)
        .or_else(system)
        .expect("invariant: the system tenant and mesh are valid names");
    let id = Uuid::now_v7();
    Envelope {
        id,
        occurred_at: Utc::now(),
        tenant,
        mesh,
        principal: BUS_PRINCIPAL.to_owned(),
        correlation_id: salvage.correlation_id.unwrap_or(id),
        causation_id: salvage.id,
        expected_generation: None,
        traceparent: None,
        body: Event::MessageDeadLettered(MessageDeadLettered {
            subject: one_line(&letter.original_subject),
            reason: one_line(&letter.reason),
        }),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn letter(subject: &str, payload: &'static [u8]) -> DeadLetter {
        DeadLetter {
            original_subject: subject.to_owned(),
            reason: "bad\nthing".to_owned(),
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn system_names_are_valid() {
        assert!(TenantId::new(SYSTEM_TENANT).is_ok());
        assert!(MeshName::new(SYSTEM_MESH).is_ok());
    }

    #[test]
    fn garbage_on_a_command_subject_is_filed_under_its_mesh() {
        let subjects = Subjects::default();
        let t = TenantId::new("acme").expect("tenant");
        let m = MeshName::new("demo").expect("mesh");
        let subject = subjects.command(&t, &m);
        let event = event_for(&subjects, &letter(subject.as_str(), b"garbage"));
        assert_eq!((event.tenant, event.mesh), (t, m));
        match event.body {
            Event::MessageDeadLettered(body) => {
                assert_eq!(body.reason, "bad thing");
                assert_eq!(body.subject, subject.as_str());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn garbage_elsewhere_is_filed_under_the_system_scope() {
        let event = event_for(&Subjects::default(), &letter("mesh.cmd.zzz", b"\xff"));
        assert_eq!(event.tenant.as_str(), SYSTEM_TENANT);
        assert_eq!(event.mesh.as_str(), SYSTEM_MESH);
        assert_eq!(event.causation_id, None);
    }

    #[test]
    fn a_readable_envelope_keeps_its_correlation() {
        let body = br#"{"id":"0190a0a0-0000-7000-8000-000000000001","tenant":"t1","mesh":"m1",
            "correlation_id":"0190a0a0-0000-7000-8000-000000000002","kind":"Nope"}"#;
        let event = event_for(&Subjects::default(), &letter("mesh.cmd.zzz", body));
        assert_eq!(event.tenant.as_str(), "t1");
        assert_eq!(
            event.correlation_id.to_string(),
            "0190a0a0-0000-7000-8000-000000000002"
        );
        assert_eq!(
            event.causation_id.map(|id| id.to_string()).as_deref(),
            Some("0190a0a0-0000-7000-8000-000000000001")
        );
    }

    #[test]
    fn a_command_on_the_wrong_partition_is_misrouted() {
        let subjects = Subjects::default();
        let t = TenantId::new("acme").expect("tenant");
        let m = MeshName::new("demo").expect("mesh");
        let command = CommandEnvelope::command(t, m, "user:a", crate::command::DeleteMesh {})
            .expect("command");
        let json = command.to_json().expect("json");
        let right = subjects.command(&command.tenant, &command.mesh);
        assert!(decode_command(&subjects, right.as_str(), None, &json).is_ok());
        let err =
            decode_command(&subjects, "mesh.cmd.0.other.demo", None, &json).expect_err("misrouted");
        assert!(matches!(err, DecodeError::Misrouted { .. }), "{err}");
    }
}
