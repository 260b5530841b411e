//! [`NatsBus`]: the bus on NATS JetStream.
//!
//! Streams, created idempotently on connect (an existing stream with a compatible configuration
//! is kept as it is):
//! - `MESH_CMD`: subjects `<root>.cmd.>`, file storage, work-queue retention, duplicate window
//!   from [`BusConfig::duplicate_window`] (at least 10 minutes). The partition count is recorded
//!   in the stream's metadata (`mesh-manager.partitions`) and description (`partitions=N`); a
//!   process configured with another count gets [`BusError::PartitionMismatch`].
//! - `MESH_EVT`: subjects `<root>.evt.>` and `<root>.dlq.>`, file storage, limits retention,
//!   max age [`BusConfig::event_max_age`] (7 days by default).
//!
//! Every publish of an envelope sets `Nats-Msg-Id` to the envelope id, so JetStream stores a
//! retried publish once. Commands are consumed through one durable pull consumer per partition
//! (`partition-<p>`, filter `<root>.cmd.<p>.>`, explicit ack, ack wait from the config); events
//! and dead letters are read through ordered consumers, from a sequence or a time, then live.
//!
//! # Server versions
//! Needs nats-server with JetStream (`-js`). The black-box suite passes against 2.15 and against
//! Debian's 2.9.10 (run it with `MESH_TEST_NATS_URL=nats://127.0.0.1:4222`): on 2.9 stream
//! metadata (a 2.10 feature) is silently dropped, so the partition count is read back from the
//! stream description instead, and a stream create that 2.9 fails while another stream of the
//! account is being deleted is retried. So `NatsBus` works with 2.9; other parts of
//! mesh-manager (KV leases through async-nats ≥ 0.41) need 2.10 or newer, so production should
//! run a current server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tracing::{debug, info, instrument, warn};

use crate::config::BusConfig;
use crate::dead_letter::{self, ORIGINAL_SUBJECT_HEADER, REASON_HEADER};
use crate::envelope::{Body, Envelope, TRACEPARENT_HEADER};
use crate::error::{BoxError, BusError};
use crate::subject::{Subject, SubjectFilter, Subjects};
use crate::{
    Acker, Bus, BusStream, CommandEnvelope, DeadLetter, Delivery, EventEnvelope, EventFilter,
    EventRecord, PublishAck, StartAt,
};

/// The stream metadata key recording the partition count.
pub const PARTITIONS_METADATA_KEY: &str = "mesh-manager.partitions";

/// Commands fetched per pull request; small, so buffered commands do not sit out their ack
/// wait while earlier ones are handled.
const PULL_BATCH: usize = 16;

/// Unacknowledged commands a partition consumer may have out at once.
const MAX_ACK_PENDING: i64 = 256;

/// The bus on a NATS server with JetStream. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NatsBus {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    url: String,
    client: async_nats::Client,
    jetstream: Context,
    subjects: Subjects,
    config: BusConfig,
}

/// How to answer a delivered message.
pub(crate) enum Answer {
    Ack,
    Nak(Option<Duration>),
    Progress,
}

/// Sends an ack, nak or progress signal; an ack waits for the server's confirmation.
pub(crate) async fn acknowledge(
    message: &jetstream::Message,
    answer: Answer,
) -> Result<(), BoxError> {
    match answer {
        Answer::Ack => message.double_ack().await,
        Answer::Nak(delay) => message.ack_with(AckKind::Nak(delay)).await,
        Answer::Progress => message.ack_with(AckKind::Progress).await,
    }
}

impl NatsBus {
    /// Connects to the NATS server at `url` (within [`BusConfig::connect_timeout`]) and makes
    /// sure both streams exist with a compatible configuration.
    #[instrument(skip(config), fields(root = %config.root))]
    pub async fn connect(url: &str, config: BusConfig) -> Result<Self, BusError> {
        let subjects = config.subjects()?;
        let unreachable = |reason: String| BusError::Connect {
            url: url.to_owned(),
            reason,
        };
        let options = async_nats::ConnectOptions::new()
            .name("mesh-manager")
            .connection_timeout(config.connect_timeout);
        // The client's own timeout covers each attempt; this one bounds the whole handshake.
        let limit = config.connect_timeout + Duration::from_secs(1);
        let client = tokio::time::timeout(limit, options.connect(url))
            .await
            .map_err(|_| unreachable(format!("no answer within {limit:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let jetstream = jetstream::new(client.clone());
        let bus = Self {
            shared: Arc::new(Shared {
                url: url.to_owned(),
                client,
                jetstream,
                subjects,
                config,
            }),
        };
        bus.ensure_streams().await?;
        info!(url, "connected to NATS");
        Ok(bus)
    }

    /// The URL the bus connected to.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// The underlying NATS client (for KV leases and tools).
    pub fn client(&self) -> &async_nats::Client {
        &self.shared.client
    }

    /// The JetStream context.
    /// Name of the key-value bucket holding the partition leases.
    pub fn leases_bucket(&self) -> String {
        let config = self.config();
        format!("{}_LEASES", config.command_stream.trim_end_matches("_CMD"))
    }

    /// Opens the partition leases of this bus (bucket `<ROOT>_LEASES`, entries living `ttl`).
    pub async fn leases(
        &self,
        ttl: std::time::Duration,
    ) -> Result<crate::lease::NatsLeases, BusError> {
        crate::lease::NatsLeases::open(self.jetstream(), &self.leases_bucket(), ttl).await
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &Context {
        &self.shared.jetstream
    }

    /// The configuration the bus runs with.
    pub fn config(&self) -> &BusConfig {
        &self.shared.config
    }

    fn stream_configs(&self) -> (stream::Config, stream::Config) {
        let config = &self.shared.config;
        let subjects = &self.shared.subjects;
        let partitions = subjects.partitions();
        let metadata =
            HashMap::from([(PARTITIONS_METADATA_KEY.to_owned(), partitions.to_string())]);
        let commands = stream::Config {
            name: config.command_stream.clone(),
            description: Some(format!(
                "mesh-manager commands under {}; partitions={partitions}",
                subjects.root()
            )),
            subjects: vec![subjects.all_commands().to_string()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            duplicate_window: config.duplicate_window,
            metadata: metadata.clone(),
            ..Default::default()
        };
        let events = stream::Config {
            name: config.event_stream.clone(),
            description: Some(format!(
                "mesh-manager events and dead letters under {}; partitions={partitions}",
                subjects.root()
            )),
            subjects: vec![
                subjects.all_events().to_string(),
                subjects.all_dead_letters().to_string(),
            ],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            max_age: config.event_max_age,
            duplicate_window: config.duplicate_window,
            metadata,
            ..Default::default()
        };
        (commands, events)
    }

    async fn ensure_streams(&self) -> Result<(), BusError> {
        let (commands, events) = self.stream_configs();
        self.ensure_stream(commands).await?;
        self.ensure_stream(events).await
    }

    /// Gets the stream, or creates it; an existing stream must be compatible.
    async fn ensure_stream(&self, desired: stream::Config) -> Result<(), BusError> {
        let name = desired.name.clone();
        let set_up = |reason: String| BusError::SetUpStream {
            stream: name.clone(),
            reason,
        };
        // Two processes may race to create the stream; the loser looks again. A server-side
        // failure (5xx) is retried too: nats-server 2.9 can fail a create while another stream
        // of the account is being deleted (it removes and recreates the storage directory).
        let mut last_error = String::from("it kept appearing and disappearing");
        for attempt in 0..4u64 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            match self.shared.jetstream.get_stream(&name).await {
                Ok(mut stream) => {
                    let info = stream.info().await.map_err(|e| set_up(e.to_string()))?;
                    return check_compatible(
                        &info.config,
                        &desired,
                        self.shared.subjects.partitions(),
                    );
                }
                Err(e) if stream_not_found(&e) => {}
                Err(e) if matches!(e.kind(), GetStreamErrorKind::Request) => {
                    return Err(set_up(format!(
                        "{e} (is JetStream enabled? start nats-server with -js)"
                    )));
                }
                Err(e) => return Err(set_up(e.to_string())),
            }
            match self.shared.jetstream.create_stream(desired.clone()).await {
                Ok(_) => {
                    info!(stream = %name, "created JetStream stream");
                    return Ok(());
                }
                Err(e) if stream_name_taken(&e) => {
                    debug!(stream = %name, "stream created concurrently, checking it");
                }
                Err(e) if server_failure(&e) => {
                    warn!(stream = %name, error = %e, "creating the stream failed on the server, retrying");
                    last_error = e.to_string();
                }
                Err(e) => return Err(set_up(e.to_string())),
            }
        }
        Err(set_up(last_error))
    }

    async fn publish(
        &self,
        subject: &Subject,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<PublishAck, BusError> {
        let ack = self.send(subject, headers, payload).await?;
        stored(subject, ack).await
    }

    /// Hands a message to the connection: the returned future waits for the stream to store it.
    /// Messages sent one after another on the connection are stored in that order, so several may
    /// be sent before any acknowledgement is awaited.
    async fn send(
        &self,
        subject: &Subject,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<jetstream::context::PublishAckFuture, BusError> {
        self.shared
            .jetstream
            .publish_with_headers(subject.to_string(), headers, payload)
            .await
            .map_err(|e| BusError::Publish {
                subject: subject.to_string(),
                source: Box::new(e),
            })
    }

    async fn publish_envelope<B: Body>(
        &self,
        subject: &Subject,
        envelope: &Envelope<B>,
    ) -> Result<PublishAck, BusError> {
        let (headers, payload) = envelope_message(envelope)?;
        self.publish(subject, headers, payload).await
    }

    /// Sends `event` (see [`Self::send`]).
    async fn send_event(
        &self,
        event: &EventEnvelope,
    ) -> Result<(Subject, jetstream::context::PublishAckFuture), BusError> {
        let subject = self
            .shared
            .subjects
            .event(&event.tenant, &event.mesh, event.kind())?;
        let (headers, payload) = envelope_message(event)?;
        let ack = self.send(&subject, headers, payload).await?;
        Ok((subject, ack))
    }

    async fn partition_consumer(
        &self,
        partition: u32,
    ) -> Result<jetstream::consumer::PullConsumer, BoxError> {
        let stream = self
            .shared
            .jetstream
            .get_stream_no_info(&self.shared.config.command_stream)
            .await?;
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(format!("partition-{partition}")),
                description: Some(format!("mesh-manager commands of partition {partition}")),
                filter_subject: self.shared.subjects.partition_filter(partition).to_string(),
                ack_policy: AckPolicy::Explicit,
                ack_wait: self.shared.config.ack_wait,
                deliver_policy: DeliverPolicy::All,
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            })
            .await?;
        Ok(consumer)
    }

    /// Turns a delivered message into a [`Delivery`], or dead-letters it (`None`).
    async fn deliver(
        &self,
        partition: u32,
        message: jetstream::Message,
    ) -> Option<Result<Delivery, BusError>> {
        let consume_error = |source: BoxError| BusError::Consume { partition, source };
        let (sequence, delivered) = match message.info() {
            Ok(info) => (
                info.stream_sequence,
                u64::try_from(info.delivered).unwrap_or(1),
            ),
            Err(e) => return Some(Err(consume_error(e))),
        };
        let subject_text = message.subject.to_string();
        let decoded = Subject::new(subject_text.as_str())
            .map_err(|e| {
                crate::envelope::DecodeError::Invalid(crate::InvalidMessage::new(
                    "envelope",
                    e.to_string(),
                ))
            })
            .and_then(|subject| {
                dead_letter::decode_command(
                    &self.shared.subjects,
                    subject.as_str(),
                    header(&message.headers, TRACEPARENT_HEADER),
                    &message.payload,
                )
                .map(|envelope| (subject, envelope))
            });
        match decoded {
            Ok((subject, envelope)) => Some(Ok(Delivery {
                envelope,
                subject,
                sequence,
                delivered,
                acker: Acker::Nats(Box::new(message)),
            })),
            Err(error) => {
                warn!(subject = %subject_text, sequence, %error, "dead-lettering an undecodable command");
                let letter = DeadLetter {
                    original_subject: subject_text,
                    reason: error.to_string(),
                    payload: message.payload.clone(),
                };
                if let Err(e) = self.dead_letter(letter).await {
                    // Keep the original; it comes back after a pause and is tried again.
                    let _ = acknowledge(&message, Answer::Nak(Some(Duration::from_secs(1)))).await;
                    return Some(Err(consume_error(Box::new(e))));
                }
                match acknowledge(&message, Answer::Ack).await {
                    Ok(()) => None,
                    Err(e) => Some(Err(consume_error(e))),
                }
            }
        }
    }

    /// An ordered consumer over the event stream.
    async fn read_events(
        &self,
        filter: &SubjectFilter,
        start: StartAt,
    ) -> Result<pull::Ordered, BusError> {
        let failed = |source: BoxError| BusError::Subscribe {
            filter: filter.to_string(),
            source,
        };
        let deliver_policy = match start {
            StartAt::New => DeliverPolicy::New,
            StartAt::Beginning | StartAt::Sequence(0 | 1) => DeliverPolicy::All,
            StartAt::Sequence(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
            StartAt::Time(time) => {
                let nanos = time.timestamp_nanos_opt().unwrap_or(0);
                let start_time =
                    async_nats::datetime::from_nanos(i128::from(nanos)).map_err(failed)?;
                DeliverPolicy::ByStartTime { start_time }
            }
        };
        let stream = self
            .shared
            .jetstream
            .get_stream_no_info(&self.shared.config.event_stream)
            .await
            .map_err(|e| failed(Box::new(e)))?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: filter.to_string(),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| failed(Box::new(e)))?;
        consumer.messages().await.map_err(|e| failed(Box::new(e)))
    }
}

fn header(headers: &Option<HeaderMap>, name: &str) -> Option<String> {
    headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|value| value.as_str().to_owned())
}

fn stream_not_found(error: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(error.kind(), GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

fn stream_name_taken(error: &async_nats::jetstream::context::CreateStreamError) -> bool {
    matches!(error.kind(), CreateStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NAME_EXIST)
}

fn server_failure(error: &async_nats::jetstream::context::CreateStreamError) -> bool {
    matches!(error.kind(), CreateStreamErrorKind::JetStream(e) if e.code() >= 500)
}

/// The partition count a stream records: metadata (servers ≥ 2.10), else its description.
fn recorded_partitions(config: &stream::Config) -> Option<u32> {
    if let Some(value) = config.metadata.get(PARTITIONS_METADATA_KEY) {
        return value.parse().ok();
    }
    let description = config.description.as_deref()?;
    let (_, rest) = description.split_once("partitions=")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Whether an existing stream can be used as `desired`: same subjects, retention and partition
/// count. Other differences (limits someone tuned) are kept and only logged.
fn check_compatible(
    existing: &stream::Config,
    desired: &stream::Config,
    partitions: u32,
) -> Result<(), BusError> {
    let stream = desired.name.clone();
    let incompatible = |reason: String| BusError::IncompatibleStream {
        stream: stream.clone(),
        reason,
    };
    let mut have = existing.subjects.clone();
    let mut want = desired.subjects.clone();
    have.sort();
    want.sort();
    if have != want {
        return Err(incompatible(format!(
            "its subjects are {have:?}, expected {want:?}"
        )));
    }
    if existing.retention != desired.retention {
        return Err(incompatible(format!(
            "its retention is {:?}, expected {:?}",
            existing.retention, desired.retention
        )));
    }
    match recorded_partitions(existing) {
        Some(recorded) if recorded != partitions => {
            return Err(BusError::PartitionMismatch {
                stream,
                existing: recorded,
                configured: partitions,
            });
        }
        Some(_) => {}
        None => {
            return Err(incompatible(
                "it records no partition count (was it created by something else?)".into(),
            ));
        }
    }
    if existing.duplicate_window
        < desired
            .duplicate_window
            .min(BusConfig::MIN_DUPLICATE_WINDOW)
    {
        warn!(stream = %stream, window = ?existing.duplicate_window, "stream de-duplicates for less than 10 minutes");
    }
    if existing.storage != desired.storage || existing.max_age != desired.max_age {
        warn!(stream = %stream, "stream storage or max age differ from the configuration; keeping the stream as it is");
    }
    Ok(())
}

/// The headers (message id for de-duplication, trace context) and JSON payload of `envelope`.
fn envelope_message<B: Body>(envelope: &Envelope<B>) -> Result<(HeaderMap, Bytes), BusError> {
    envelope.body.validate()?;
    let payload = envelope.to_json().map_err(|source| BusError::Encode {
        kind: envelope.kind(),
        id: envelope.id,
        source,
    })?;
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        envelope.id.to_string().as_str(),
    );
    if let Some(traceparent) = &envelope.traceparent {
        headers.insert(TRACEPARENT_HEADER, traceparent.as_str());
    }
    Ok((headers, Bytes::from(payload)))
}

/// Waits until the stream has stored a message sent on `subject`.
async fn stored(
    subject: &Subject,
    ack: jetstream::context::PublishAckFuture,
) -> Result<PublishAck, BusError> {
    let ack = ack.await.map_err(|e| BusError::Publish {
        subject: subject.to_string(),
        source: Box::new(e),
    })?;
    Ok(PublishAck {
        sequence: ack.sequence,
        duplicate: ack.duplicate,
    })
}

#[async_trait]
impl Bus for NatsBus {
    fn subjects(&self) -> &Subjects {
        &self.shared.subjects
    }

    async fn check_connected(&self) -> Result<(), BusError> {
        match self.client().connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            state => Err(BusError::Connect {
                url: self.url().to_owned(),
                reason: format!("connection is {state}"),
            }),
        }
    }

    async fn publish_command(&self, command: &CommandEnvelope) -> Result<PublishAck, BusError> {
        let subject = self.shared.subjects.command(&command.tenant, &command.mesh);
        self.publish_envelope(&subject, command).await
    }

    async fn publish_event(&self, event: &EventEnvelope) -> Result<PublishAck, BusError> {
        let (subject, ack) = self.send_event(event).await?;
        stored(&subject, ack).await
    }

    async fn publish_events(&self, events: &[EventEnvelope]) -> Vec<Result<PublishAck, BusError>> {
        // All are sent before any acknowledgement is awaited: one round trip to the server for
        // the lot instead of one each, in the same order.
        let mut sent = Vec::with_capacity(events.len());
        for event in events {
            sent.push(self.send_event(event).await);
        }
        let mut acks = Vec::with_capacity(sent.len());
        for sent in sent {
            acks.push(match sent {
                Ok((subject, ack)) => stored(&subject, ack).await,
                Err(error) => Err(error),
            });
        }
        acks
    }

    async fn publish_raw(&self, subject: &Subject, payload: Bytes) -> Result<PublishAck, BusError> {
        self.publish(subject, HeaderMap::new(), payload).await
    }

    async fn consume_commands(&self, partitions: &[u32]) -> Result<BusStream<Delivery>, BusError> {
        let count = self.shared.subjects.partitions();
        if partitions.is_empty() {
            return Err(BusError::Config {
                reason: "consuming commands needs at least one partition".into(),
            });
        }
        let mut streams = Vec::with_capacity(partitions.len());
        for &partition in partitions {
            if partition >= count {
                return Err(BusError::NoSuchPartition {
                    partition,
                    partitions: count,
                });
            }
            let consume_error = |source: BoxError| BusError::Consume { partition, source };
            let consumer = self
                .partition_consumer(partition)
                .await
                .map_err(consume_error)?;
            let messages = consumer
                .stream()
                .max_messages_per_batch(PULL_BATCH)
                .messages()
                .await
                .map_err(|e| consume_error(Box::new(e)))?;
            streams.push(messages.map(move |item| (partition, item)).boxed());
        }
        let bus = self.clone();
        let deliveries =
            futures::stream::select_all(streams).filter_map(move |(partition, item)| {
                let bus = bus.clone();
                async move {
                    match item {
                        Ok(message) => bus.deliver(partition, message).await,
                        Err(e) => Some(Err(BusError::Consume {
                            partition,
                            source: Box::new(e),
                        })),
                    }
                }
            });
        Ok(Box::pin(deliveries))
    }

    async fn subscribe_events(
        &self,
        filter: EventFilter,
        start: StartAt,
    ) -> Result<BusStream<EventRecord>, BusError> {
        let filter = filter.subject_filter(&self.shared.subjects);
        let messages = self.read_events(&filter, start).await?;
        let filter_text = filter.to_string();
        let records = messages.map(move |item| {
            let message = item.map_err(|e| BusError::Subscribe {
                filter: filter_text.clone(),
                source: Box::new(e),
            })?;
            let sequence = message
                .info()
                .map(|i| i.stream_sequence)
                .unwrap_or_default();
            let subject = Subject::new(message.subject.as_str())?;
            let envelope =
                EventEnvelope::from_json(&message.payload).map_err(|source| BusError::Decode {
                    subject: subject.to_string(),
                    sequence,
                    source: Box::new(source),
                })?;
            Ok(EventRecord {
                sequence,
                envelope: Envelope {
                    traceparent: header(&message.headers, TRACEPARENT_HEADER),
                    ..envelope
                },
                subject,
            })
        });
        Ok(Box::pin(records))
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<PublishAck, BusError> {
        let event = dead_letter::event_for(&self.shared.subjects, &letter);
        let subject = self.shared.subjects.dead_letter(&letter.original_subject);
        let mut headers = HeaderMap::new();
        headers.insert(
            ORIGINAL_SUBJECT_HEADER,
            dead_letter::one_line(&letter.original_subject).as_str(),
        );
        headers.insert(
            REASON_HEADER,
            dead_letter::one_line(&letter.reason).as_str(),
        );
        let ack = self.publish(&subject, headers, letter.payload).await?;
        self.publish_event(&event).await?;
        Ok(ack)
    }

    async fn dead_letters(&self, start: StartAt) -> Result<BusStream<DeadLetter>, BusError> {
        let filter = self.shared.subjects.all_dead_letters();
        let messages = self.read_events(&filter, start).await?;
        let filter_text = filter.to_string();
        let letters = messages.map(move |item| {
            let message = item.map_err(|e| BusError::Subscribe {
                filter: filter_text.clone(),
                source: Box::new(e),
            })?;
            Ok(DeadLetter {
                original_subject: header(&message.headers, ORIGINAL_SUBJECT_HEADER)
                    .unwrap_or_default(),
                reason: header(&message.headers, REASON_HEADER).unwrap_or_default(),
                payload: message.payload.clone(),
            })
        });
        Ok(Box::pin(letters))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs() -> (stream::Config, stream::Config) {
        let subjects = Subjects::default();
        let commands = stream::Config {
            name: "MESH_CMD".into(),
            subjects: vec![subjects.all_commands().to_string()],
            retention: RetentionPolicy::WorkQueue,
            description: Some("mesh-manager commands under mesh; partitions=32".into()),
            ..Default::default()
        };
        (commands.clone(), commands)
    }

    #[test]
    fn the_partition_count_is_read_from_metadata_or_description() {
        let (mut config, _) = configs();
        assert_eq!(recorded_partitions(&config), Some(32));
        config
            .metadata
            .insert(PARTITIONS_METADATA_KEY.into(), "8".into());
        assert_eq!(recorded_partitions(&config), Some(8));
        config.metadata.clear();
        config.description = None;
        assert_eq!(recorded_partitions(&config), None);
    }

    #[test]
    fn another_partition_count_is_a_clear_error() {
        let (existing, desired) = configs();
        let err = check_compatible(&existing, &desired, 16).expect_err("mismatch");
        assert!(matches!(
            err,
            BusError::PartitionMismatch {
                existing: 32,
                configured: 16,
                ..
            }
        ));
        assert!(err.to_string().contains("32 partitions"), "{err}");
        assert!(check_compatible(&existing, &desired, 32).is_ok());
    }

    #[test]
    fn other_retention_or_subjects_are_incompatible() {
        let (mut existing, desired) = configs();
        existing.retention = RetentionPolicy::Limits;
        assert!(matches!(
            check_compatible(&existing, &desired, 32),
            Err(BusError::IncompatibleStream { .. })
        ));
        let (mut existing, desired) = configs();
        existing.subjects = vec!["other.>".into()];
        assert!(matches!(
            check_compatible(&existing, &desired, 32),
            Err(BusError::IncompatibleStream { .. })
        ));
    }
}
