//! The envelope every command and event travels in.
//!
//! Input: a [`Command`] or [`Event`] body and who/what it concerns. Output: JSON bytes of the form
//!
//! ```json
//! {"id":"0190…","kind":"CreateMesh","version":1,"occurred_at":"2026-…Z","tenant":"acme",
//!  "mesh":"demo","principal":"user:alice","correlation_id":"0190…","causation_id":null,
//!  "expected_generation":null,"payload":{…}}
//! ```
//!
//! and back. The `id` is a UUIDv7 and doubles as the `Nats-Msg-Id`, so a publish retried within
//! the duplicate window is stored once. The W3C trace context is not part of the JSON: it rides in
//! the `traceparent` header and is carried here in [`Envelope::traceparent`].
//!
//! Decoding is strict: an unknown kind, an unsupported version, a payload of the wrong shape, an
//! invalid name or a payload that fails its validation is a [`DecodeError`], never a panic.

use chrono::{DateTime, Utc};
use mesh_core::{MeshName, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::command::Command;
use crate::event::Event;

/// The header that carries the W3C trace context of a message.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// A message body that is invalid: the operation it describes cannot be carried out as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {reason}")]
pub struct InvalidMessage {
    /// The kind of the message (`CreateMesh`, ...) or `envelope`.
    pub kind: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl InvalidMessage {
    /// An invalid-message error for `kind`.
    pub fn new(kind: &'static str, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }
}

/// Why bytes could not be decoded into an envelope.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, not an envelope, or an envelope with an invalid id, tenant or mesh.
    #[error("not a valid envelope: {0}")]
    Envelope(#[source] serde_json::Error),
    /// A kind this release does not know.
    #[error("unknown {family} kind {kind:?}")]
    UnknownKind {
        /// `command` or `event`.
        family: &'static str,
        /// The kind found.
        kind: String,
    },
    /// A known kind in a version this release does not know.
    #[error("unsupported version {version} of {family} {kind}")]
    UnknownVersion {
        /// `command` or `event`.
        family: &'static str,
        /// The kind found.
        kind: String,
        /// The version found.
        version: u32,
    },
    /// A payload that does not have the shape of its kind and version.
    #[error("bad payload of {kind} v{version}: {source}")]
    Payload {
        /// The kind found.
        kind: String,
        /// The version found.
        version: u32,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },
    /// A well-formed payload that fails validation.
    #[error(transparent)]
    Invalid(#[from] InvalidMessage),
    /// A command published on a subject that does not belong to its tenant and mesh.
    #[error("command for {tenant}/{mesh} was published on {subject}, expected {expected}")]
    Misrouted {
        /// Where it was published.
        subject: String,
        /// Where it belongs.
        expected: String,
        /// The tenant of the envelope.
        tenant: TenantId,
        /// The mesh of the envelope.
        mesh: MeshName,
    },
}

/// Checks of a payload beyond its shape. The default accepts everything.
pub trait Validate {
    /// Returns why the payload cannot be acted on, if it cannot.
    fn validate(&self) -> Result<(), InvalidMessage> {
        Ok(())
    }
}

/// A family of versioned message bodies: [`Command`] or [`Event`].
///
/// The kind and version of a body are written into the envelope next to its payload; decoding
/// looks both up and refuses what it does not know.
pub trait Body: Sized + Clone + Send + Sync + 'static {
    /// `command` or `event`, for messages.
    const FAMILY: &'static str;
    /// Every kind of the family with the version this release writes.
    const KINDS: &'static [(&'static str, u32)];
    /// The kind of this body (`CreateMesh`).
    fn kind(&self) -> &'static str;
    /// The version of this body's payload schema.
    fn version(&self) -> u32;
    /// The payload as JSON.
    fn encode_payload(&self) -> Result<Value, serde_json::Error>;
    /// Decodes and validates a payload of `kind` and `version`.
    fn decode(kind: &str, version: u32, payload: Value) -> Result<Self, DecodeError>;
    /// Validates the payload.
    fn validate(&self) -> Result<(), InvalidMessage>;
}

/// Declares a family of message bodies: an enum with one variant per kind, each holding the
/// payload struct of the same name, and its [`Body`] implementation.
///
/// To change a payload incompatibly later, bump its version here and keep a decoder for the old
/// version in the family's module; the macro accepts exactly the current version.
macro_rules! body_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($family:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $version:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($variant), )+
        }

        impl $crate::envelope::Body for $name {
            const FAMILY: &'static str = $family;
            const KINDS: &'static [(&'static str, u32)] = &[ $( (stringify!($variant), $version), )+ ];

            fn kind(&self) -> &'static str {
                match self { $( Self::$variant(_) => stringify!($variant), )+ }
            }

            fn version(&self) -> u32 {
                match self { $( Self::$variant(_) => $version, )+ }
            }

            fn encode_payload(&self) -> Result<serde_json::Value, serde_json::Error> {
                match self { $( Self::$variant(payload) => serde_json::to_value(payload), )+ }
            }

            fn decode(
                kind: &str,
                version: u32,
                payload: serde_json::Value,
            ) -> Result<Self, $crate::envelope::DecodeError> {
                use $crate::envelope::DecodeError;
                let body = match kind {
                    $(
                        stringify!($variant) => {
                            if version != $version {
                                return Err(DecodeError::UnknownVersion {
                                    family: $family,
                                    kind: kind.to_owned(),
                                    version,
                                });
                            }
                            let payload: $variant = serde_json::from_value(payload).map_err(
                                |source| DecodeError::Payload {
                                    kind: kind.to_owned(),
                                    version,
                                    source,
                                },
                            )?;
                            Self::$variant(payload)
                        }
                    )+
                    _ => {
                        return Err(DecodeError::UnknownKind {
                            family: $family,
                            kind: kind.chars().take(64).collect(),
                        })
                    }
                };
                $crate::envelope::Body::validate(&body)?;
                Ok(body)
            }

            fn validate(&self) -> Result<(), $crate::envelope::InvalidMessage> {
                match self {
                    $( Self::$variant(payload) => $crate::envelope::Validate::validate(payload), )+
                }
            }
        }

        $(
            impl From<$variant> for $name {
                fn from(payload: $variant) -> Self {
                    Self::$variant(payload)
                }
            }
        )+
    };
}
pub(crate) use body_enum;

/// A message on the bus: a body plus who and what it concerns and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<B> {
    /// Unique id (UUIDv7), also the `Nats-Msg-Id` used for de-duplication.
    pub id: Uuid,
    /// When the command was issued or the event happened.
    pub occurred_at: DateTime<Utc>,
    /// The tenant the message concerns.
    pub tenant: TenantId,
    /// The mesh the message concerns.
    pub mesh: MeshName,
    /// Who issued it (`user:alice`, `token:ci`, `system:worker-3`).
    pub principal: String,
    /// The id shared by a command and everything that follows from it.
    pub correlation_id: Uuid,
    /// The id of the message that directly caused this one, if any.
    pub causation_id: Option<Uuid>,
    /// For commands: the mesh generation the issuer saw (optimistic concurrency).
    pub expected_generation: Option<i64>,
    /// W3C trace context; travels in the `traceparent` header, not in the JSON.
    pub traceparent: Option<String>,
    /// The command or event.
    pub body: B,
}

/// An envelope holding a [`Command`].
pub type CommandEnvelope = Envelope<Command>;
/// An envelope holding an [`Event`].
pub type EventEnvelope = Envelope<Event>;

/// The JSON form of an envelope.
#[derive(Serialize, Deserialize)]
struct Wire {
    id: Uuid,
    kind: String,
    version: u32,
    occurred_at: DateTime<Utc>,
    tenant: TenantId,
    mesh: MeshName,
    principal: String,
    correlation_id: Uuid,
    #[serde(default)]
    causation_id: Option<Uuid>,
    #[serde(default)]
    expected_generation: Option<i64>,
    #[serde(default)]
    payload: Value,
}

fn check_principal(principal: &str) -> Result<(), InvalidMessage> {
    if principal.is_empty() || principal.len() > 255 {
        return Err(InvalidMessage::new(
            "envelope",
            "the principal must be 1 to 255 bytes",
        ));
    }
    Ok(())
}

impl<B: Body> Envelope<B> {
    fn build(
        tenant: TenantId,
        mesh: MeshName,
        principal: String,
        correlation_id: Option<Uuid>,
        causation_id: Option<Uuid>,
        body: B,
    ) -> Result<Self, InvalidMessage> {
        check_principal(&principal)?;
        body.validate()?;
        let id = Uuid::now_v7();
        Ok(Self {
            id,
            occurred_at: Utc::now(),
            tenant,
            mesh,
            principal,
            correlation_id: correlation_id.unwrap_or(id),
            causation_id,
            expected_generation: None,
            traceparent: None,
            body,
        })
    }

    /// The kind of the body (`CreateMesh`, `MeshCreated`).
    pub fn kind(&self) -> &'static str {
        self.body.kind()
    }

    /// The payload version of the body.
    pub fn version(&self) -> u32 {
        self.body.version()
    }

    /// Sets the mesh generation the issuer expects.
    pub fn with_expected_generation(mut self, generation: i64) -> Self {
        self.expected_generation = Some(generation);
        self
    }

    /// Sets the W3C trace context.
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Sets the correlation id (by default a new message correlates with itself).
    pub fn with_correlation_id(mut self, correlation_id: Uuid) -> Self {
        self.correlation_id = correlation_id;
        self
    }

    /// Encodes the envelope as JSON (the trace context is not included; see [`TRACEPARENT_HEADER`]).
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&self.to_wire()?)
    }

    /// Decodes and validates an envelope from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let wire: Wire = serde_json::from_slice(bytes).map_err(DecodeError::Envelope)?;
        Self::from_wire(wire)
    }

    fn to_wire(&self) -> Result<Wire, serde_json::Error> {
        Ok(Wire {
            id: self.id,
            kind: self.kind().to_owned(),
            version: self.version(),
            occurred_at: self.occurred_at,
            tenant: self.tenant.clone(),
            mesh: self.mesh.clone(),
            principal: self.principal.clone(),
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            expected_generation: self.expected_generation,
            payload: self.body.encode_payload()?,
        })
    }

    fn from_wire(wire: Wire) -> Result<Self, DecodeError> {
        check_principal(&wire.principal)?;
        let body = B::decode(&wire.kind, wire.version, wire.payload)?;
        Ok(Self {
            id: wire.id,
            occurred_at: wire.occurred_at,
            tenant: wire.tenant,
            mesh: wire.mesh,
            principal: wire.principal,
            correlation_id: wire.correlation_id,
            causation_id: wire.causation_id,
            expected_generation: wire.expected_generation,
            traceparent: None,
            body,
        })
    }
}

impl Envelope<Command> {
    /// A new command for a mesh, validated. Its correlation id is its own id.
    pub fn command(
        tenant: TenantId,
        mesh: MeshName,
        principal: impl Into<String>,
        command: impl Into<Command>,
    ) -> Result<Self, InvalidMessage> {
        Self::build(tenant, mesh, principal.into(), None, None, command.into())
    }
}

impl Envelope<Event> {
    /// A new event that no message caused (an observation of a cluster, a timer); it starts its
    /// own correlation.
    pub fn event(
        tenant: TenantId,
        mesh: MeshName,
        principal: impl Into<String>,
        event: impl Into<Event>,
    ) -> Result<Self, InvalidMessage> {
        Self::build(tenant, mesh, principal.into(), None, None, event.into())
    }

    /// An event caused by `cause` (a command or another event): same tenant, mesh, principal,
    /// trace context and correlation id; the causation id is the cause's id.
    pub fn caused_by<C: Body>(
        cause: &Envelope<C>,
        event: impl Into<Event>,
    ) -> Result<Self, InvalidMessage> {
        let mut envelope = Self::build(
            cause.tenant.clone(),
            cause.mesh.clone(),
            cause.principal.clone(),
            Some(cause.correlation_id),
            Some(cause.id),
            event.into(),
        )?;
        envelope.traceparent.clone_from(&cause.traceparent);
        Ok(envelope)
    }
}

impl<B: Body> Serialize for Envelope<B> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_wire()
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

impl<'de, B: Body> Deserialize<'de> for Envelope<B> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        Self::from_wire(wire).map_err(serde::de::Error::custom)
    }
}

/// What can be told about a message that could not be decoded, to file its dead letter under
/// the right mesh and correlation.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Salvage {
    #[serde(default)]
    pub(crate) id: Option<Uuid>,
    #[serde(default)]
    pub(crate) tenant: Option<String>,
    #[serde(default)]
    pub(crate) mesh: Option<String>,
    #[serde(default)]
    pub(crate) correlation_id: Option<Uuid>,
}

impl Salvage {
    /// Reads what it can; anything unreadable is left out.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Self {
        serde_json::from_slice::<Value>(bytes)
            .ok()
            .map(|value| Self {
                id: field(&value, "id"),
                tenant: field(&value, "tenant"),
                mesh: field(&value, "mesh"),
                correlation_id: field(&value, "correlation_id"),
            })
            .unwrap_or_default()
    }
}

fn field<T: serde::de::DeserializeOwned>(value: &Value, name: &str) -> Option<T> {
    value
        .get(name)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{DeleteMesh, SamplingPercent, SetTraceSampling};
    use crate::event::{CommandAccepted, MeshDeleted};

    fn names() -> (TenantId, MeshName) {
        (
            TenantId::new("acme").expect("tenant"),
            MeshName::new("demo").expect("mesh"),
        )
    }

    fn sampling(percent: f64) -> CommandEnvelope {
        let (tenant, mesh) = names();
        let percent = SamplingPercent::new(percent).expect("percent");
        Envelope::command(tenant, mesh, "user:alice", SetTraceSampling { percent })
            .expect("valid command")
    }

    #[test]
    fn a_command_round_trips_through_json() {
        let command = sampling(12.5)
            .with_expected_generation(4)
            .with_traceparent("00-abc-def-01");
        let json = command.to_json().expect("encode");
        let back = CommandEnvelope::from_json(&json).expect("decode");
        assert_eq!(back.traceparent, None, "trace context travels in a header");
        assert_eq!(
            back,
            Envelope {
                traceparent: None,
                ..command
            }
        );
    }

    #[test]
    fn the_wire_form_carries_kind_version_and_payload() {
        let command = sampling(50.0);
        let value: Value =
            serde_json::from_slice(&command.to_json().expect("encode")).expect("json");
        assert_eq!(value["kind"], "SetTraceSampling");
        assert_eq!(value["version"], 1);
        assert_eq!(value["payload"]["percent"], 50.0);
        assert_eq!(value["tenant"], "acme");
        assert_eq!(value["mesh"], "demo");
        assert_eq!(value["id"], command.id.to_string());
        assert_eq!(value["correlation_id"], command.id.to_string());
        assert_eq!(command.id.get_version_num(), 7, "ids are UUIDv7");
    }

    #[test]
    fn an_event_caused_by_a_command_shares_its_correlation() {
        let command = sampling(1.0).with_traceparent("00-trace-span-01");
        let event = EventEnvelope::caused_by(
            &command,
            CommandAccepted {
                command: command.kind().to_owned(),
            },
        )
        .expect("event");
        assert_eq!(event.correlation_id, command.correlation_id);
        assert_eq!(event.causation_id, Some(command.id));
        assert_ne!(event.id, command.id);
        assert_eq!(event.tenant, command.tenant);
        assert_eq!(event.mesh, command.mesh);
        assert_eq!(event.traceparent.as_deref(), Some("00-trace-span-01"));

        let next = EventEnvelope::caused_by(&event, MeshDeleted {}).expect("event");
        assert_eq!(next.correlation_id, command.correlation_id);
        assert_eq!(next.causation_id, Some(event.id));
    }

    fn decode(json: &str) -> DecodeError {
        CommandEnvelope::from_json(json.as_bytes()).expect_err("must not decode")
    }

    fn wire(kind: &str, version: u32, payload: &str, tenant: &str) -> String {
        format!(
            r#"{{"id":"0190a0a0-0000-7000-8000-000000000000","kind":"{kind}","version":{version},
            "occurred_at":"2026-01-01T00:00:00Z","tenant":"{tenant}","mesh":"demo",
            "principal":"user:alice","correlation_id":"0190a0a0-0000-7000-8000-000000000000",
            "payload":{payload}}}"#
        )
    }

    #[test]
    fn a_well_formed_envelope_from_elsewhere_decodes() {
        let ok = CommandEnvelope::from_json(wire("DeleteMesh", 1, "{}", "acme").as_bytes())
            .expect("decodes");
        assert_eq!(ok.body, Command::DeleteMesh(DeleteMesh {}));
        assert_eq!(ok.causation_id, None);
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(matches!(decode("not json"), DecodeError::Envelope(_)));
        assert!(matches!(decode("{}"), DecodeError::Envelope(_)));
    }

    #[test]
    fn unknown_kinds_and_versions_are_decode_errors() {
        let err = decode(&wire("LaunchRockets", 1, "{}", "acme"));
        assert!(matches!(err, DecodeError::UnknownKind { .. }), "{err}");
        let err = decode(&wire("DeleteMesh", 9, "{}", "acme"));
        assert!(
            matches!(err, DecodeError::UnknownVersion { version: 9, .. }),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "unsupported version 9 of command DeleteMesh"
        );
        // An event kind is not a command.
        let err = decode(&wire("MeshDeleted", 1, "{}", "acme"));
        assert!(matches!(err, DecodeError::UnknownKind { .. }), "{err}");
    }

    #[test]
    fn invalid_names_and_payloads_are_decode_errors() {
        let err = decode(&wire("DeleteMesh", 1, "{}", "bad.tenant"));
        assert!(err.to_string().contains("invalid tenant id"), "{err}");
        let err = decode(&wire("SetTraceSampling", 1, r#"{"percent":"x"}"#, "acme"));
        assert!(matches!(err, DecodeError::Payload { .. }), "{err}");
        let err = decode(&wire("SetTraceSampling", 1, r#"{"percent":150}"#, "acme"));
        assert!(err.to_string().contains("between 0 and 100"), "{err}");
    }

    #[test]
    fn envelopes_serialize_with_serde_too() {
        let command = sampling(3.0);
        let text = serde_json::to_string(&command).expect("serialize");
        let back: CommandEnvelope = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, command);
    }

    #[test]
    fn salvage_reads_what_it_can() {
        let salvage = Salvage::from_bytes(wire("Nope", 1, "{}", "acme").as_bytes());
        assert_eq!(salvage.tenant.as_deref(), Some("acme"));
        assert!(salvage.id.is_some());
        let nothing = Salvage::from_bytes(b"\xff\xfe");
        assert!(nothing.tenant.is_none());
    }
}
