//! [`BusError`]: the one error type of mesh-bus. Each variant names the operation that failed
//! and carries the subject, stream or partition it concerned.

use crate::envelope::DecodeError;

/// A boxed error from the transport underneath (async-nats, or the in-process queues).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The configuration is unusable.
    #[error("invalid bus configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The NATS server could not be reached or refused the connection (one line, with the cause).
    #[error("cannot reach NATS at {url}: {reason}")]
    Connect {
        /// The URL tried.
        url: String,
        /// The cause, as the client reported it.
        reason: String,
    },
    /// A stream could not be looked up or created.
    #[error("failed to set up JetStream stream {stream}: {reason}")]
    SetUpStream {
        /// The stream.
        stream: String,
        /// The cause.
        reason: String,
    },
    /// A stream exists but was created with settings this process cannot work with.
    #[error("JetStream stream {stream} exists with an incompatible configuration: {reason}")]
    IncompatibleStream {
        /// The stream.
        stream: String,
        /// What differs.
        reason: String,
    },
    /// The command stream was created for another partition count.
    #[error(
        "JetStream stream {stream} was created with {existing} partitions but this process is \
         configured with {configured}; use the same partition count everywhere"
    )]
    PartitionMismatch {
        /// The stream.
        stream: String,
        /// The count recorded in the stream.
        existing: u32,
        /// The count of this process.
        configured: u32,
    },
    /// An envelope could not be encoded.
    #[error("failed to encode {kind} {id}")]
    Encode {
        /// The message kind.
        kind: &'static str,
        /// The envelope id.
        id: uuid::Uuid,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// An envelope whose body fails validation was not published.
    #[error("refusing to publish an invalid message")]
    Invalid(#[from] crate::envelope::InvalidMessage),
    /// A subject could not be built from an envelope.
    #[error("failed to build a subject")]
    Subject(#[from] crate::subject::SubjectError),
    /// A publish was not confirmed.
    #[error("failed to publish to {subject}")]
    Publish {
        /// The subject.
        subject: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// A partition number outside `0..P`.
    #[error("partition {partition} does not exist: there are {partitions} partitions")]
    NoSuchPartition {
        /// The partition asked for.
        partition: u32,
        /// The partition count.
        partitions: u32,
    },
    /// The consumer of a partition could not be set up or failed while receiving.
    #[error("failed to consume commands of partition {partition}")]
    Consume {
        /// The partition.
        partition: u32,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// A subscription could not be set up or failed while receiving.
    #[error("failed to subscribe to {filter}")]
    Subscribe {
        /// The subject filter.
        filter: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// A message read from a subscription could not be decoded.
    #[error("failed to decode the message at sequence {sequence} on {subject}")]
    Decode {
        /// The subject.
        subject: String,
        /// Its stream sequence.
        sequence: u64,
        /// Why.
        #[source]
        source: Box<DecodeError>,
    },
    /// An ack, nak or progress signal was not accepted.
    #[error("failed to acknowledge the message at sequence {sequence} on {subject}")]
    Acknowledge {
        /// The subject of the message.
        subject: String,
        /// Its stream sequence.
        sequence: u64,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// A lease operation failed (not the same as losing a lease, which is an answer).
    #[error("partition lease operation failed: {reason}")]
    Lease {
        /// What the server said.
        reason: String,
    },
}
