//! mesh-bus: the message bus of mesh-manager.
//!
//! Commands (imperative: `CreateMesh`) flow from the API and any NATS client to the worker that
//! owns the mesh's partition; events (past-tense facts: `MeshCreated`) flow from workers to
//! whoever listens. Both travel in a JSON [`Envelope`] with a UUIDv7 id that de-duplicates
//! retried publishes.
//!
//! # Layout
//! - [`subject`]: [`Subjects`], the only place subjects are formatted, and [`partition_of`],
//!   the stable hash that spreads meshes over partitions.
//! - [`envelope`]: [`Envelope`], its JSON form, strict decoding and [`DecodeError`].
//! - [`command`]: the [`Command`] kinds and their payload validation.
//! - [`event`]: the [`Event`] kinds.
//! - [`config`]: [`BusConfig`], shared by both implementations.
//! - [`error`]: [`BusError`], the one error type of the crate.
//! - [`nats`]: [`NatsBus`], JetStream streams `MESH_CMD` and `MESH_EVT` on a NATS server.
//! - [`lease`]: partition leases and epochs ([`lease::Leases`]; [`lease::NatsLeases`] in a
//!   JetStream key-value bucket, [`lease::LocalLeases`] in memory).
//! - [`local`]: [`LocalBus`], the same semantics inside one process (the embedded all-in-one
//!   default and unit tests of other crates).
//! - this file: the [`Bus`] trait and the values it hands out ([`Delivery`], [`EventRecord`],
//!   [`DeadLetter`], [`PublishAck`]).
//!
//! # Semantics both implementations keep
//! - A command or event published twice with the same envelope id within the duplicate window
//!   is stored once; the second publish reports `duplicate: true`.
//! - Commands are a work queue per partition: each is delivered to one consumer, redelivered
//!   after a [`Delivery::nak`] (optionally delayed) or when not acknowledged within the ack wait,
//!   and removed by [`Delivery::ack`].
//! - Events are kept (7 days by default) and can be read from a sequence or a time, then live.
//! - A command that cannot be decoded (bad JSON, unknown kind or version, invalid names or
//!   payload, wrong subject) is copied to `<root>.dlq.…` with the reason, announced by a
//!   [`event::MessageDeadLettered`] event, acknowledged, and the consumer goes on.

pub mod command;
pub mod config;
pub mod envelope;
pub mod error;
pub mod event;
pub mod lease;
pub mod local;
pub mod nats;
pub mod subject;

mod dead_letter;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;
use mesh_core::{MeshName, TenantId};

pub use command::Command;
pub use config::BusConfig;
pub use envelope::{CommandEnvelope, DecodeError, Envelope, EventEnvelope, InvalidMessage};
pub use error::BusError;
pub use event::Event;
pub use local::LocalBus;
pub use nats::NatsBus;
pub use subject::{Subject, SubjectFilter, Subjects, partition_of};

/// A stream of items from the bus; an `Err` item reports a problem with one message or a
/// transient failure, and the stream goes on after it.
pub type BusStream<T> = Pin<Box<dyn Stream<Item = Result<T, BusError>> + Send>>;

/// What the bus answered to a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishAck {
    /// The stream sequence of the stored message (of the first copy, for a duplicate).
    pub sequence: u64,
    /// Whether the message had been published before and was not stored again.
    pub duplicate: bool,
}

/// Which events a subscription receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    /// Every event.
    All,
    /// The events of every mesh of a tenant.
    Tenant(TenantId),
    /// The events of one mesh.
    Mesh(TenantId, MeshName),
}

impl EventFilter {
    /// The subject filter for this selection.
    pub fn subject_filter(&self, subjects: &Subjects) -> SubjectFilter {
        match self {
            Self::All => subjects.all_events(),
            Self::Tenant(tenant) => subjects.tenant_events(tenant),
            Self::Mesh(tenant, mesh) => subjects.mesh_events(tenant, mesh),
        }
    }
}

/// Where a subscription starts; after the history it goes on with live messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Only messages published from now on.
    New,
    /// Everything still kept.
    Beginning,
    /// From this stream sequence on (inclusive).
    Sequence(u64),
    /// From the first message stored at or after this time.
    Time(DateTime<Utc>),
}

/// An event read from the bus.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Its sequence in the event stream; resume a subscription with `StartAt::Sequence(n + 1)`.
    pub sequence: u64,
    /// The subject it was published on.
    pub subject: Subject,
    /// The event, with its trace context taken from the `traceparent` header.
    pub envelope: EventEnvelope,
}

/// A message that could not be handled, kept on the dead-letter subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The subject it was originally published on.
    pub original_subject: String,
    /// Why it could not be handled (one line).
    pub reason: String,
    /// The original bytes.
    pub payload: Bytes,
}

/// A command handed to a consumer. Acknowledge it once its effect is committed; until then it
/// will be redelivered after the ack wait.
#[derive(Debug)]
pub struct Delivery {
    envelope: CommandEnvelope,
    subject: Subject,
    sequence: u64,
    delivered: u64,
    acker: Acker,
}

#[derive(Debug)]
enum Acker {
    Nats(Box<async_nats::jetstream::Message>),
    Local(local::LocalAcker),
}

impl Delivery {
    /// The decoded command.
    pub fn envelope(&self) -> &CommandEnvelope {
        &self.envelope
    }

    /// The subject it was published on.
    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    /// Its sequence in the command stream.
    pub fn stream_sequence(&self) -> u64 {
        self.sequence
    }

    /// How many times it has been delivered, this time included (1 on first delivery).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Acknowledges the command: it is done and removed from the queue.
    pub async fn ack(self) -> Result<(), BusError> {
        let (subject, sequence) = (self.subject, self.sequence);
        match self.acker {
            Acker::Nats(message) => nats::acknowledge(&message, nats::Answer::Ack).await,
            Acker::Local(acker) => acker.ack(),
        }
        .map_err(|source| BusError::Acknowledge {
            subject: subject.to_string(),
            sequence,
            source,
        })
    }

    /// Gives the command back for redelivery, now or after `delay`.
    pub async fn nak(self, delay: Option<Duration>) -> Result<(), BusError> {
        let (subject, sequence) = (self.subject, self.sequence);
        match self.acker {
            Acker::Nats(message) => nats::acknowledge(&message, nats::Answer::Nak(delay)).await,
            Acker::Local(acker) => acker.nak(delay),
        }
        .map_err(|source| BusError::Acknowledge {
            subject: subject.to_string(),
            sequence,
            source,
        })
    }

    /// Tells the bus the command is still being worked on: the ack wait starts over.
    pub async fn in_progress(&self) -> Result<(), BusError> {
        match &self.acker {
            Acker::Nats(message) => nats::acknowledge(message, nats::Answer::Progress).await,
            Acker::Local(acker) => acker.progress(),
        }
        .map_err(|source| BusError::Acknowledge {
            subject: self.subject.to_string(),
            sequence: self.sequence,
            source,
        })
    }
}

/// The message bus: publish commands and events, consume commands of partitions, read events.
///
/// [`NatsBus`] and [`LocalBus`] implement it with the same observable behaviour; the black-box
/// suite in `bus/tests/` runs against both.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// The subjects this bus publishes on (root and partition count).
    fn subjects(&self) -> &Subjects;

    /// Publishes a command on its mesh's partition. Publishing the same envelope id again within
    /// the duplicate window stores nothing and answers `duplicate: true`.
    async fn publish_command(&self, command: &CommandEnvelope) -> Result<PublishAck, BusError>;

    /// Publishes an event on `<root>.evt.<tenant>.<mesh>.<kind>`, de-duplicated by id like
    /// commands.
    async fn publish_event(&self, event: &EventEnvelope) -> Result<PublishAck, BusError>;

    /// Publishes `events` in order, as [`Bus::publish_event`] does each; one answer per event, in
    /// the same order. A bus may send them all before it waits for the first acknowledgement.
    async fn publish_events(&self, events: &[EventEnvelope]) -> Vec<Result<PublishAck, BusError>> {
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            acks.push(self.publish_event(event).await);
        }
        acks
    }

    /// Publishes bytes as they are, as any NATS client could; for tools and tests. Consumers
    /// dead-letter what they cannot decode.
    async fn publish_raw(&self, subject: &Subject, payload: Bytes) -> Result<PublishAck, BusError>;

    /// Consumes the commands of `partitions` (each at most once per process is the usual use; two
    /// consumers of one partition share its queue). Undecodable commands are dead-lettered and
    /// skipped, never yielded.
    async fn consume_commands(&self, partitions: &[u32]) -> Result<BusStream<Delivery>, BusError>;

    /// Reads the events selected by `filter`, from `start`, then live, in stream order. An event
    /// that cannot be decoded is an `Err` item and the stream goes on.
    async fn subscribe_events(
        &self,
        filter: EventFilter,
        start: StartAt,
    ) -> Result<BusStream<EventRecord>, BusError>;

    /// Stores `letter` on `<root>.dlq.<original subject without root>` and publishes a
    /// [`event::MessageDeadLettered`] event for it.
    async fn dead_letter(&self, letter: DeadLetter) -> Result<PublishAck, BusError>;

    /// Reads the dead letters from `start`, then live.
    async fn dead_letters(&self, start: StartAt) -> Result<BusStream<DeadLetter>, BusError>;

    /// Whether the bus can carry messages now (readiness); the in-process bus always can.
    async fn check_connected(&self) -> Result<(), BusError> {
        Ok(())
    }
}
