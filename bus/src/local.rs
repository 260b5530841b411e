//! [`LocalBus`]: the bus inside one process, with the semantics of [`crate::NatsBus`].
//!
//! Used by the embedded all-in-one default (no NATS server to run) and by the unit tests of
//! other crates. It keeps, like the JetStream streams it stands in for:
//! - a command work queue: one delivery at a time per message, redelivery after a nak (with its
//!   delay) or after the ack wait, removal on ack, de-duplication by envelope id within the
//!   duplicate window;
//! - an event log (events and dead letters) trimmed to the maximum age, readable from a
//!   sequence or a time, then live;
//! - dead-lettering of commands that do not decode.
//!
//! Messages are stored as the bytes NATS would store and decoded on delivery, so both buses
//! exercise the same codec. Everything runs on tokio's clock (`tokio::time`), so tests may pause
//! time. Nothing survives the process.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::warn;

use crate::config::BusConfig;
use crate::dead_letter::{self, ORIGINAL_SUBJECT_HEADER, REASON_HEADER};
use crate::envelope::{Body, Envelope, EventEnvelope};
use crate::error::{BoxError, BusError};
use crate::subject::{Subject, SubjectFilter, Subjects};
use crate::{
    Acker, Bus, BusStream, CommandEnvelope, DeadLetter, Delivery, EventFilter, EventRecord,
    PublishAck, StartAt,
};

/// The in-process bus. Cheap to clone; clones share the same queues and log.
#[derive(Clone)]
pub struct LocalBus {
    inner: Arc<Inner>,
}

impl fmt::Debug for LocalBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalBus")
            .field("root", &self.inner.subjects.root())
            .field("partitions", &self.inner.subjects.partitions())
            .finish_non_exhaustive()
    }
}

struct Inner {
    subjects: Subjects,
    config: BusConfig,
    state: Mutex<State>,
    /// Bumped on every change a waiting consumer or subscriber may care about.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    next_command_sequence: u64,
    commands: BTreeMap<u64, Pending>,
    command_ids: HashMap<String, (u64, Instant)>,
    next_log_sequence: u64,
    log: VecDeque<Stored>,
    log_ids: HashMap<String, (u64, Instant)>,
}

struct Pending {
    subject: Subject,
    partition: Option<u32>,
    traceparent: Option<String>,
    payload: Bytes,
    delivered: u64,
    /// Not deliverable before this instant (in flight, or nak'd with a delay).
    busy_until: Option<Instant>,
}

struct Stored {
    sequence: u64,
    time: DateTime<Utc>,
    subject: Subject,
    headers: Vec<(&'static str, String)>,
    payload: Bytes,
}

impl Stored {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the queues consistent (every change is a single
        // insert or remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn publish_command_bytes(
        &self,
        subject: Subject,
        id: Option<String>,
        traceparent: Option<String>,
        payload: Bytes,
    ) -> PublishAck {
        let now = Instant::now();
        let window = self.config.duplicate_window;
        let mut state = self.lock();
        state
            .command_ids
            .retain(|_, (_, at)| now.duration_since(*at) < window);
        if let Some((sequence, _)) = id.as_ref().and_then(|id| state.command_ids.get(id)) {
            return PublishAck {
                sequence: *sequence,
                duplicate: true,
            };
        }
        state.next_command_sequence += 1;
        let sequence = state.next_command_sequence;
        if let Some(id) = id {
            state.command_ids.insert(id, (sequence, now));
        }
        let partition = self.partition_of_subject(&subject);
        state.commands.insert(
            sequence,
            Pending {
                subject,
                partition,
                traceparent,
                payload,
                delivered: 0,
                busy_until: None,
            },
        );
        drop(state);
        self.notify();
        PublishAck {
            sequence,
            duplicate: false,
        }
    }

    /// The partition token of a command subject, if it is one (`<root>.cmd.<p>.…`).
    fn partition_of_subject(&self, subject: &Subject) -> Option<u32> {
        let mut tokens = subject.tokens();
        let root = tokens.next()?;
        let cmd = tokens.next()?;
        if root != self.subjects.root() || cmd != "cmd" {
            return None;
        }
        tokens.next()?.parse().ok()
    }

    fn append_log(
        &self,
        subject: Subject,
        id: Option<String>,
        headers: Vec<(&'static str, String)>,
        payload: Bytes,
    ) -> PublishAck {
        let now = Instant::now();
        let window = self.config.duplicate_window;
        let mut state = self.lock();
        state
            .log_ids
            .retain(|_, (_, at)| now.duration_since(*at) < window);
        if let Some((sequence, _)) = id.as_ref().and_then(|id| state.log_ids.get(id)) {
            return PublishAck {
                sequence: *sequence,
                duplicate: true,
            };
        }
        let time = Utc::now();
        let max_age =
            chrono::Duration::from_std(self.config.event_max_age).unwrap_or(chrono::Duration::MAX);
        while state
            .log
            .front()
            .is_some_and(|oldest| time.signed_duration_since(oldest.time) > max_age)
        {
            state.log.pop_front();
        }
        state.next_log_sequence += 1;
        let sequence = state.next_log_sequence;
        if let Some(id) = id {
            state.log_ids.insert(id, (sequence, now));
        }
        state.log.push_back(Stored {
            sequence,
            time,
            subject,
            headers,
            payload,
        });
        drop(state);
        self.notify();
        PublishAck {
            sequence,
            duplicate: false,
        }
    }

    fn publish_event(&self, event: &EventEnvelope) -> Result<PublishAck, BusError> {
        let subject = self
            .subjects
            .event(&event.tenant, &event.mesh, event.kind())?;
        let payload = event.to_json().map_err(|source| BusError::Encode {
            kind: event.kind(),
            id: event.id,
            source,
        })?;
        let headers = event
            .traceparent
            .iter()
            .map(|tp| (crate::envelope::TRACEPARENT_HEADER, tp.clone()))
            .collect();
        Ok(self.append_log(
            subject,
            Some(event.id.to_string()),
            headers,
            Bytes::from(payload),
        ))
    }

    fn dead_letter(&self, letter: DeadLetter) -> Result<PublishAck, BusError> {
        let event = dead_letter::event_for(&self.subjects, &letter);
        let subject = self.subjects.dead_letter(&letter.original_subject);
        let headers = vec![
            (
                ORIGINAL_SUBJECT_HEADER,
                dead_letter::one_line(&letter.original_subject),
            ),
            (REASON_HEADER, dead_letter::one_line(&letter.reason)),
        ];
        let ack = self.append_log(subject, None, headers, letter.payload);
        self.publish_event(&event)?;
        Ok(ack)
    }

    /// Takes the next deliverable command of `partitions`, or tells when to look again.
    fn take_next(&self, partitions: &[u32]) -> Result<Taken, Option<Instant>> {
        let now = Instant::now();
        let ack_wait = self.config.ack_wait;
        let mut state = self.lock();
        let mut wake: Option<Instant> = None;
        for (sequence, pending) in state.commands.iter_mut() {
            if !pending.partition.is_some_and(|p| partitions.contains(&p)) {
                continue;
            }
            match pending.busy_until {
                Some(until) if until > now => {
                    wake = Some(wake.map_or(until, |w| w.min(until)));
                }
                _ => {
                    pending.delivered += 1;
                    pending.busy_until = Some(now + ack_wait);
                    return Ok(Taken {
                        sequence: *sequence,
                        subject: pending.subject.clone(),
                        traceparent: pending.traceparent.clone(),
                        payload: pending.payload.clone(),
                        delivered: pending.delivered,
                    });
                }
            }
        }
        Err(wake)
    }

    fn remove_command(&self, sequence: u64) {
        self.lock().commands.remove(&sequence);
        self.notify();
    }

    fn release_command(&self, sequence: u64, delay: Option<Duration>) {
        if let Some(pending) = self.lock().commands.get_mut(&sequence) {
            pending.busy_until = delay.map(|d| Instant::now() + d);
        }
        self.notify();
    }

    fn extend_command(&self, sequence: u64) {
        if let Some(pending) = self.lock().commands.get_mut(&sequence) {
            pending.busy_until = Some(Instant::now() + self.config.ack_wait);
        }
    }

    /// The sequence a subscription starting at `start` reads first.
    fn first_sequence(&self, start: StartAt) -> u64 {
        let state = self.lock();
        match start {
            StartAt::New => state.next_log_sequence + 1,
            StartAt::Beginning => 0,
            StartAt::Sequence(sequence) => sequence,
            StartAt::Time(time) => state
                .log
                .iter()
                .find(|stored| stored.time >= time)
                .map_or(state.next_log_sequence + 1, |stored| stored.sequence),
        }
    }

    /// The next logged message at or after `cursor` matching `filter`; advances `cursor`.
    fn next_logged<T>(
        &self,
        cursor: &mut u64,
        filter: &SubjectFilter,
        read: impl Fn(&Stored) -> T,
    ) -> Option<T> {
        let state = self.lock();
        let start = state
            .log
            .partition_point(|stored| stored.sequence < *cursor);
        for stored in state.log.range(start..) {
            if filter.matches(&stored.subject) {
                *cursor = stored.sequence + 1;
                return Some(read(stored));
            }
        }
        *cursor = (*cursor).max(state.next_log_sequence + 1);
        None
    }
}

struct Taken {
    sequence: u64,
    subject: Subject,
    traceparent: Option<String>,
    payload: Bytes,
    delivered: u64,
}

/// Acknowledges a [`Delivery`] of the local bus.
pub(crate) struct LocalAcker {
    inner: Arc<Inner>,
    sequence: u64,
}

impl fmt::Debug for LocalAcker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalAcker")
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

impl LocalAcker {
    pub(crate) fn ack(self) -> Result<(), BoxError> {
        self.inner.remove_command(self.sequence);
        Ok(())
    }

    pub(crate) fn nak(self, delay: Option<Duration>) -> Result<(), BoxError> {
        self.inner.release_command(self.sequence, delay);
        Ok(())
    }

    pub(crate) fn progress(&self) -> Result<(), BoxError> {
        self.inner.extend_command(self.sequence);
        Ok(())
    }
}

impl LocalBus {
    /// A new, empty bus.
    pub fn new(config: BusConfig) -> Result<Self, BusError> {
        let subjects = config.subjects()?;
        let (changed, _) = watch::channel(0);
        Ok(Self {
            inner: Arc::new(Inner {
                subjects,
                config,
                state: Mutex::new(State::default()),
                changed,
            }),
        })
    }

    /// The number of commands stored and not yet acknowledged (in flight or waiting).
    pub fn pending_commands(&self) -> usize {
        self.inner.lock().commands.len()
    }

    fn check_partitions(&self, partitions: &[u32]) -> Result<(), BusError> {
        let count = self.inner.subjects.partitions();
        if partitions.is_empty() {
            return Err(BusError::Config {
                reason: "consuming commands needs at least one partition".into(),
            });
        }
        match partitions.iter().find(|p| **p >= count) {
            Some(partition) => Err(BusError::NoSuchPartition {
                partition: *partition,
                partitions: count,
            }),
            None => Ok(()),
        }
    }
}

/// Waits for a change of the bus, or until `deadline`.
async fn wait(changes: &mut watch::Receiver<u64>, deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => {
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
        None => {
            // The sender lives as long as the bus; if it is gone nothing will ever change.
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[async_trait]
impl Bus for LocalBus {
    fn subjects(&self) -> &Subjects {
        &self.inner.subjects
    }

    async fn publish_command(&self, command: &CommandEnvelope) -> Result<PublishAck, BusError> {
        command.body.validate()?;
        let subject = self.inner.subjects.command(&command.tenant, &command.mesh);
        let payload = command.to_json().map_err(|source| BusError::Encode {
            kind: command.kind(),
            id: command.id,
            source,
        })?;
        Ok(self.inner.publish_command_bytes(
            subject,
            Some(command.id.to_string()),
            command.traceparent.clone(),
            Bytes::from(payload),
        ))
    }

    async fn publish_event(&self, event: &EventEnvelope) -> Result<PublishAck, BusError> {
        self.inner.publish_event(event)
    }

    async fn publish_raw(&self, subject: &Subject, payload: Bytes) -> Result<PublishAck, BusError> {
        let root = self.inner.subjects.root();
        let mut tokens = subject.tokens();
        let (first, second) = (tokens.next(), tokens.next());
        if first == Some(root) && second == Some("cmd") {
            Ok(self
                .inner
                .publish_command_bytes(subject.clone(), None, None, payload))
        } else if first == Some(root) && matches!(second, Some("evt" | "dlq")) {
            Ok(self
                .inner
                .append_log(subject.clone(), None, Vec::new(), payload))
        } else {
            Err(BusError::Publish {
                subject: subject.to_string(),
                source: "no stream holds this subject".into(),
            })
        }
    }

    async fn consume_commands(&self, partitions: &[u32]) -> Result<BusStream<Delivery>, BusError> {
        self.check_partitions(partitions)?;
        let inner = Arc::clone(&self.inner);
        let partitions = partitions.to_vec();
        let changes = inner.changed.subscribe();
        let stream = futures::stream::unfold(
            (inner, partitions, changes),
            |(inner, partitions, mut changes)| async move {
                loop {
                    changes.borrow_and_update();
                    let taken = match inner.take_next(&partitions) {
                        Ok(taken) => taken,
                        Err(deadline) => {
                            wait(&mut changes, deadline).await;
                            continue;
                        }
                    };
                    match dead_letter::decode_command(
                        &inner.subjects,
                        taken.subject.as_str(),
                        taken.traceparent,
                        &taken.payload,
                    ) {
                        Ok(envelope) => {
                            let delivery = Delivery {
                                envelope,
                                subject: taken.subject,
                                sequence: taken.sequence,
                                delivered: taken.delivered,
                                acker: Acker::Local(LocalAcker {
                                    inner: Arc::clone(&inner),
                                    sequence: taken.sequence,
                                }),
                            };
                            return Some((Ok(delivery), (inner, partitions, changes)));
                        }
                        Err(error) => {
                            warn!(subject = %taken.subject, %error, "dead-lettering an undecodable command");
                            let letter = DeadLetter {
                                original_subject: taken.subject.to_string(),
                                reason: error.to_string(),
                                payload: taken.payload,
                            };
                            let result = inner.dead_letter(letter);
                            inner.remove_command(taken.sequence);
                            if let Err(error) = result {
                                let partition = inner.partition_of_subject(&taken.subject);
                                let failure = BusError::Consume {
                                    partition: partition.unwrap_or_default(),
                                    source: Box::new(error),
                                };
                                return Some((Err(failure), (inner, partitions, changes)));
                            }
                        }
                    }
                }
            },
        );
        Ok(Box::pin(stream))
    }

    async fn subscribe_events(
        &self,
        filter: EventFilter,
        start: StartAt,
    ) -> Result<BusStream<EventRecord>, BusError> {
        let filter = filter.subject_filter(&self.inner.subjects);
        Ok(self.read_log(filter, start, |stored| {
            let traceparent = stored
                .header(crate::envelope::TRACEPARENT_HEADER)
                .map(str::to_owned);
            match Envelope::from_json(&stored.payload) {
                Ok(envelope) => Ok(EventRecord {
                    sequence: stored.sequence,
                    subject: stored.subject.clone(),
                    envelope: Envelope {
                        traceparent,
                        ..envelope
                    },
                }),
                Err(source) => Err(BusError::Decode {
                    subject: stored.subject.to_string(),
                    sequence: stored.sequence,
                    source: Box::new(source),
                }),
            }
        }))
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<PublishAck, BusError> {
        self.inner.dead_letter(letter)
    }

    async fn dead_letters(&self, start: StartAt) -> Result<BusStream<DeadLetter>, BusError> {
        let filter = self.inner.subjects.all_dead_letters();
        Ok(self.read_log(filter, start, |stored| {
            Ok(DeadLetter {
                original_subject: stored
                    .header(ORIGINAL_SUBJECT_HEADER)
                    .unwrap_or_default()
                    .to_owned(),
                reason: stored.header(REASON_HEADER).unwrap_or_default().to_owned(),
                payload: stored.payload.clone(),
            })
        }))
    }
}

impl LocalBus {
    fn read_log<T: Send + 'static>(
        &self,
        filter: SubjectFilter,
        start: StartAt,
        read: fn(&Stored) -> Result<T, BusError>,
    ) -> BusStream<T> {
        let inner = Arc::clone(&self.inner);
        let changes = inner.changed.subscribe();
        let cursor = inner.first_sequence(start);
        let stream = futures::stream::unfold(
            (inner, cursor, changes),
            move |(inner, mut cursor, mut changes)| {
                let filter = filter.clone();
                async move {
                    loop {
                        changes.borrow_and_update();
                        if let Some(item) = inner.next_logged(&mut cursor, &filter, read) {
                            return Some((item, (inner, cursor, changes)));
                        }
                        wait(&mut changes, None).await;
                    }
                }
            },
        );
        Box::pin(stream)
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use mesh_core::{MeshName, TenantId};

    use super::*;
    use crate::command::DeleteMesh;

    fn command() -> CommandEnvelope {
        CommandEnvelope::command(
            TenantId::new("acme").expect("tenant"),
            MeshName::new("demo").expect("mesh"),
            "user:alice",
            DeleteMesh {},
        )
        .expect("command")
    }

    #[tokio::test(start_paused = true)]
    async fn an_unacknowledged_command_comes_back_after_the_ack_wait() {
        let bus =
            LocalBus::new(BusConfig::default().ack_wait(Duration::from_secs(30))).expect("bus");
        let command = command();
        bus.publish_command(&command).await.expect("publish");
        let partition = bus.subjects().partition_of(&command.tenant, &command.mesh);
        let mut deliveries = bus.consume_commands(&[partition]).await.expect("consume");

        let first = deliveries.next().await.expect("item").expect("delivery");
        assert_eq!(first.delivered(), 1);
        let started = Instant::now();
        let second = deliveries.next().await.expect("item").expect("delivery");
        assert_eq!(second.delivered(), 2);
        assert_eq!(second.envelope().id, command.id);
        assert!(started.elapsed() >= Duration::from_secs(30));
        second.ack().await.expect("ack");
        assert_eq!(bus.pending_commands(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn progress_postpones_redelivery() {
        let bus =
            LocalBus::new(BusConfig::default().ack_wait(Duration::from_secs(10))).expect("bus");
        let command = command();
        bus.publish_command(&command).await.expect("publish");
        let partition = bus.subjects().partition_of(&command.tenant, &command.mesh);
        let mut deliveries = bus.consume_commands(&[partition]).await.expect("consume");
        let first = deliveries.next().await.expect("item").expect("delivery");
        tokio::time::sleep(Duration::from_secs(8)).await;
        first.in_progress().await.expect("progress");
        let started = Instant::now();
        let second = deliveries.next().await.expect("item").expect("delivery");
        assert!(
            started.elapsed() >= Duration::from_secs(9),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(second.delivered(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates_are_forgotten_after_the_window() {
        let bus = LocalBus::new(BusConfig::default()).expect("bus");
        let command = command();
        assert!(
            !bus.publish_command(&command)
                .await
                .expect("publish")
                .duplicate
        );
        assert!(
            bus.publish_command(&command)
                .await
                .expect("publish")
                .duplicate
        );
        tokio::time::advance(BusConfig::default().duplicate_window + Duration::from_secs(1)).await;
        assert!(
            !bus.publish_command(&command)
                .await
                .expect("publish")
                .duplicate
        );
        assert_eq!(bus.pending_commands(), 2);
    }

    #[tokio::test]
    async fn partitions_out_of_range_are_refused() {
        let bus = LocalBus::new(BusConfig::default().partitions(4)).expect("bus");
        let err = bus
            .consume_commands(&[4])
            .await
            .err()
            .expect("out of range");
        assert!(matches!(
            err,
            BusError::NoSuchPartition {
                partition: 4,
                partitions: 4
            }
        ));
        assert!(bus.consume_commands(&[]).await.is_err());
    }

    #[tokio::test]
    async fn an_envelope_with_an_invalid_body_is_not_published() {
        let bus = LocalBus::new(BusConfig::default()).expect("bus");
        let mut command = command();
        command.body = crate::Command::UpdateMeshConfig(crate::command::UpdateMeshConfig {
            config: serde_json::json!("not an object"),
        });
        let err = bus.publish_command(&command).await.expect_err("invalid");
        assert!(matches!(err, BusError::Invalid(_)), "{err:?}");
        assert_eq!(bus.pending_commands(), 0);
    }

    #[tokio::test]
    async fn raw_publishes_outside_the_streams_are_refused() {
        let bus = LocalBus::new(BusConfig::default()).expect("bus");
        let subject = Subject::new("elsewhere.x").expect("subject");
        assert!(bus.publish_raw(&subject, Bytes::new()).await.is_err());
    }
}
