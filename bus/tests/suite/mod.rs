//! The behaviour suite every [`Bus`] implementation must pass, written once and run against
//! `LocalBus` (tests/local.rs) and `NatsBus` on a real nats-server (tests/nats.rs) through
//! [`behaviour_suite!`].
//!
//! Each behaviour gets a [`Factory`] that hands out buses on one fresh subject root, so tests
//! never see each other's messages even on a shared server.

#![allow(dead_code)] // each test crate uses the part of the helpers it needs

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use mesh_bus::command::{ClusterSpec, CreateMesh, DeleteMesh, SamplingPercent, SetTraceSampling};
use mesh_bus::event::{CommandAccepted, Event, FlowStarted, MeshDeleted, MessageDeadLettered};
use mesh_bus::{
    Bus, BusError, CommandEnvelope, DeadLetter, Delivery, EventEnvelope, EventFilter, EventRecord,
    PublishAck, StartAt, Subject,
};
use mesh_core::{ClusterName, ClusterRole, MeshMode, MeshName, TenantId};
use serde_json::json;

/// Hands out buses that share one subject root (and, for NATS, one server and its streams), as
/// several processes of one installation would.
#[async_trait]
pub trait Factory: Send + Sync {
    /// The bus type.
    type Bus: Bus;
    /// A bus with `partitions` partitions and the given ack wait.
    async fn bus(&self, partitions: u32, ack_wait: Duration) -> Self::Bus;
}

/// How long to wait for something that should happen.
pub const SOON: Duration = Duration::from_secs(10);
/// How long to wait to be confident that something does not happen.
pub const QUIET: Duration = Duration::from_millis(700);
/// An ack wait long enough that nothing is redelivered during a test unless asked.
pub const LONG_ACK_WAIT: Duration = Duration::from_secs(60);

/// Runs every behaviour of the suite as its own `#[tokio::test]`, with `$factory` (an
/// expression evaluating to a [`Factory`]) built anew for each.
#[macro_export]
macro_rules! behaviour_suite {
    ($factory:expr) => {
        $crate::behaviour_suite!(@tests $factory;
            a_command_published_twice_is_stored_once,
            a_delivered_command_is_what_was_published,
            an_acknowledged_command_is_not_delivered_again,
            a_nakd_command_is_delivered_again,
            a_nak_with_a_delay_holds_the_command_back,
            an_unacknowledged_command_is_redelivered_after_the_ack_wait,
            garbage_on_a_command_subject_is_dead_lettered_and_the_consumer_goes_on,
            undecodable_envelopes_are_dead_lettered_with_their_reason,
            consumers_of_different_partitions_see_only_their_own,
            two_consumers_of_one_partition_share_its_queue,
            events_are_read_from_history_then_live,
            events_can_be_read_from_a_sequence_or_only_new,
            events_can_be_read_from_a_time,
            event_subscriptions_filter_by_tenant_and_mesh,
            an_event_published_twice_is_stored_once,
            events_published_together_are_stored_in_order_with_one_answer_each,
            events_keep_their_trace_context_and_correlation,
        );
    };
    (@tests $factory:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let factory = $factory;
                suite::$name(&factory).await;
            }
        )+
    };
}

pub fn tenant(name: &str) -> TenantId {
    TenantId::new(name).expect("tenant")
}

pub fn mesh(name: &str) -> MeshName {
    MeshName::new(name).expect("mesh")
}

pub fn delete(tenant_name: &str, mesh_name: &str) -> CommandEnvelope {
    CommandEnvelope::command(
        tenant(tenant_name),
        mesh(mesh_name),
        "user:alice",
        DeleteMesh {},
    )
    .expect("command")
}

pub fn create(tenant_name: &str, mesh_name: &str) -> CommandEnvelope {
    let create = CreateMesh {
        title: "Demo mesh".into(),
        region: "eu-west".into(),
        version: "1.30.3".into(),
        mode: MeshMode::PrimaryRemote,
        clusters: vec![
            ClusterSpec {
                name: ClusterName::new("east").expect("cluster"),
                role: ClusterRole::Master,
                network: "net-east".into(),
            },
            ClusterSpec {
                name: ClusterName::new("west").expect("cluster"),
                role: ClusterRole::Remote,
                network: "net-west".into(),
            },
        ],
        config: json!({"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}),
    };
    CommandEnvelope::command(tenant(tenant_name), mesh(mesh_name), "user:alice", create)
        .expect("command")
}

pub fn accepted(cause: &CommandEnvelope) -> EventEnvelope {
    EventEnvelope::caused_by(
        cause,
        CommandAccepted {
            command: cause.kind().to_owned(),
        },
    )
    .expect("event")
}

pub fn deleted(tenant_name: &str, mesh_name: &str) -> EventEnvelope {
    EventEnvelope::event(
        tenant(tenant_name),
        mesh(mesh_name),
        "system:test",
        MeshDeleted {},
    )
    .expect("event")
}

/// The next item of `stream`, failing the test if none comes within [`SOON`].
pub async fn next<T, S>(stream: &mut S, what: &str) -> T
where
    S: Stream<Item = Result<T, BusError>> + Unpin,
{
    match tokio::time::timeout(SOON, stream.next()).await {
        Ok(Some(Ok(item))) => item,
        Ok(Some(Err(error))) => panic!("{what}: error {error:?}"),
        Ok(None) => panic!("{what}: the stream ended"),
        Err(_) => panic!("{what}: nothing within {SOON:?}"),
    }
}

/// Fails the test if `stream` yields anything within [`QUIET`].
pub async fn nothing_more<T: std::fmt::Debug, S>(stream: &mut S, what: &str)
where
    S: Stream<Item = Result<T, BusError>> + Unpin,
{
    if let Ok(item) = tokio::time::timeout(QUIET, stream.next()).await {
        panic!("{what}: expected nothing, got {item:?}");
    }
}

/// Two meshes of tenant `acme` in different partitions.
pub fn meshes_in_two_partitions(bus: &impl Bus) -> ((MeshName, u32), (MeshName, u32)) {
    let subjects = bus.subjects();
    let acme = tenant("acme");
    let first = mesh("mesh-0");
    let p0 = subjects.partition_of(&acme, &first);
    for i in 1..100 {
        let other = mesh(&format!("mesh-{i}"));
        let p = subjects.partition_of(&acme, &other);
        if p != p0 {
            return ((first, p0), (other, p));
        }
    }
    panic!("no two meshes in different partitions")
}

fn partition(bus: &impl Bus, command: &CommandEnvelope) -> u32 {
    bus.subjects().partition_of(&command.tenant, &command.mesh)
}

pub async fn a_command_published_twice_is_stored_once(factory: &impl Factory) {
    let bus = factory.bus(4, LONG_ACK_WAIT).await;
    let command = create("acme", "demo");
    let first = bus.publish_command(&command).await.expect("publish");
    let second = bus.publish_command(&command).await.expect("publish again");
    assert!(!first.duplicate);
    assert!(second.duplicate, "the second publish is a duplicate");
    assert_eq!(first.sequence, second.sequence);

    let mut deliveries = bus
        .consume_commands(&[partition(&bus, &command)])
        .await
        .expect("consume");
    let delivery = next(&mut deliveries, "the command").await;
    assert_eq!(delivery.envelope().id, command.id);
    delivery.ack().await.expect("ack");
    nothing_more(&mut deliveries, "no second copy").await;
}

pub async fn a_delivered_command_is_what_was_published(factory: &impl Factory) {
    let bus = factory.bus(4, LONG_ACK_WAIT).await;
    let command = create("acme", "demo")
        .with_expected_generation(3)
        .with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let ack = bus.publish_command(&command).await.expect("publish");
    let mut deliveries = bus
        .consume_commands(&[partition(&bus, &command)])
        .await
        .expect("consume");
    let delivery = next(&mut deliveries, "the command").await;
    assert_eq!(delivery.envelope(), &command);
    assert_eq!(delivery.delivered(), 1);
    assert_eq!(delivery.stream_sequence(), ack.sequence);
    assert_eq!(
        delivery.subject(),
        &bus.subjects().command(&command.tenant, &command.mesh)
    );
    delivery.ack().await.expect("ack");
}

pub async fn an_acknowledged_command_is_not_delivered_again(factory: &impl Factory) {
    let bus = factory.bus(4, Duration::from_secs(1)).await;
    let command = delete("acme", "demo");
    bus.publish_command(&command).await.expect("publish");
    let mut deliveries = bus
        .consume_commands(&[partition(&bus, &command)])
        .await
        .expect("consume");
    next(&mut deliveries, "the command")
        .await
        .ack()
        .await
        .expect("ack");
    // Longer than the ack wait: an ack that did not stick would show as a redelivery.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    nothing_more(&mut deliveries, "no redelivery after ack").await;
}

pub async fn a_nakd_command_is_delivered_again(factory: &impl Factory) {
    let bus = factory.bus(4, LONG_ACK_WAIT).await;
    let command = delete("acme", "demo");
    bus.publish_command(&command).await.expect("publish");
    let mut deliveries = bus
        .consume_commands(&[partition(&bus, &command)])
        .await
        .expect("consume");
    let first = next(&mut deliveries, "first delivery").await;
    assert_eq!(first.delivered(), 1);
    first.nak(None).await.expect("nak");
    let second = next(&mut deliveries, "redelivery").await;
    assert_eq!(second.envelope().id, command.id);
    assert_eq!(second.delivered(), 2);
    second.ack().await.expect("ack");
}

pub async fn a_nak_with_a_delay_holds_the_command_back(factory: &impl Factory) {
    let bus = factory.bus(4, LONG_ACK_WAIT).await;
    let command = delete("acme", "demo");
    bus.publish_command(&command).await.expect("publish");
    let mut deliveries = bus
        .consume_commands(&[partition(&bus, &command)])
        .await
        .expect("consume");
    let first = next(&mut deliveries, "first delivery").await;
    let naked_at = tokio::time::Instant::now();
    first
        .nak(Some(Duration::from_millis(800)))
        .await
        .expect("nak");
    let second = next(&mut deliveries, "delayed redelivery").await;
    let waited = naked_at.elapsed();
    assert!(
        waited >= Duration::from_millis(700),
        "came back after {waited:?}"
    );
    assert_eq!(second.delivered(), 2);
    second.ack().await.expect("ack");
}

pub async fn an_unacknowledged_command_is_redelivered_after_the_ack_wait(factory: &impl Factory) {
    let bus = factory.bus(4, Duration::from_secs(1)).await;
    let command = delete("acme", "demo");
    bus.publish_command(&command).await.expect("publish");
    let mut deliveries = bus
        .consume_commands(&[partition(&bus, &command)])
        .await
        .expect("consume");
    let first = next(&mut deliveries, "first delivery").await;
    let delivered_at = tokio::time::Instant::now();
    drop(first); // neither ack nor nak: the worker died
    let second = next(&mut deliveries, "redelivery").await;
    assert!(delivered_at.elapsed() >= Duration::from_millis(800));
    assert_eq!(second.envelope().id, command.id);
    assert_eq!(second.delivered(), 2);
    second.ack().await.expect("ack");
}

pub async fn garbage_on_a_command_subject_is_dead_lettered_and_the_consumer_goes_on(
    factory: &impl Factory,
) {
    let bus = factory.bus(4, LONG_ACK_WAIT).await;
    let good = delete("acme", "demo");
    let subject = bus.subjects().command(&good.tenant, &good.mesh);
    let mut events = bus
        .subscribe_events(
            EventFilter::Mesh(good.tenant.clone(), good.mesh.clone()),
            StartAt::Beginning,
        )
        .await
        .expect("subscribe");
    let mut deliveries = bus
        .consume_commands(&[partition(&bus, &good)])
        .await
        .expect("consume");

    bus.publish_raw(&subject, Bytes::from_static(b"{ this is not json"))
        .await
        .expect("publish garbage");
    bus.publish_command(&good).await.expect("publish good");

    let delivery = next(&mut deliveries, "the good command after the garbage").await;
    assert_eq!(delivery.envelope().id, good.id);
    delivery.ack().await.expect("ack");

    let record = next(&mut events, "the dead-letter event").await;
    match &record.envelope.body {
        Event::MessageDeadLettered(MessageDeadLettered { subject: s, reason }) => {
            assert_eq!(s, subject.as_str());
            assert!(reason.contains("not a valid envelope"), "{reason}");
        }
        other => panic!("expected MessageDeadLettered, got {other:?}"),
    }

    let mut letters = bus
        .dead_letters(StartAt::Beginning)
        .await
        .expect("dead letters");
    let letter: DeadLetter = next(&mut letters, "the dead letter").await;
    assert_eq!(letter.original_subject, subject.as_str());
    assert_eq!(&letter.payload[..], b"{ this is not json");
    assert!(
        letter.reason.contains("not a valid envelope"),
        "{}",
        letter.reason
    );
    nothing_more(&mut deliveries, "garbage is never delivered").await;
}

pub async fn undecodable_envelopes_are_dead_lettered_with_their_reason(factory: &impl Factory) {
    let bus = factory.bus(4, LONG_ACK_WAIT).await;
    let good = delete("acme", "demo");
    let subject = bus.subjects().command(&good.tenant, &good.mesh);
    let mut deliveries = bus
        .consume_commands(&[partition(&bus, &good)])
        .await
        .expect("consume");

    let mut unknown_kind: serde_json::Value =
        serde_json::from_slice(&good.to_json().expect("json")).expect("value");
    unknown_kind["kind"] = json!("LaunchRockets");
    let mut unknown_version = unknown_kind.clone();
    unknown_version["kind"] = json!("DeleteMesh");
    unknown_version["version"] = json!(99);
    let mut bad_payload = unknown_version.clone();
    bad_payload["kind"] = json!("SetTraceSampling");
    bad_payload["version"] = json!(1);
    bad_payload["payload"] = json!({"percent": 250});
    // A valid command for another mesh, published on this mesh's subject.
    let misrouted = delete("acme", "elsewhere").to_json().expect("json");

    for bad in [
        serde_json::to_vec(&unknown_kind).expect("json"),
        serde_json::to_vec(&unknown_version).expect("json"),
        serde_json::to_vec(&bad_payload).expect("json"),
        misrouted,
    ] {
        bus.publish_raw(&subject, Bytes::from(bad))
            .await
            .expect("publish");
    }
    bus.publish_command(&good).await.expect("publish good");
    let delivery = next(&mut deliveries, "the good command").await;
    assert_eq!(delivery.envelope().id, good.id);
    delivery.ack().await.expect("ack");

    let mut letters = bus
        .dead_letters(StartAt::Beginning)
        .await
        .expect("dead letters");
    let mut reasons = Vec::new();
    for _ in 0..4 {
        reasons.push(next(&mut letters, "a dead letter").await.reason);
    }
    let expected = [
        "unknown command kind \"LaunchRockets\"",
        "unsupported version 99 of command DeleteMesh",
        "percent must be between 0 and 100",
        "was published on",
    ];
    for (reason, expected) in reasons.iter().zip(expected) {
        assert!(
            reason.contains(expected),
            "{reason:?} should mention {expected:?}"
        );
    }
}

pub async fn consumers_of_different_partitions_see_only_their_own(factory: &impl Factory) {
    let bus = factory.bus(4, LONG_ACK_WAIT).await;
    let ((mesh_a, p_a), (mesh_b, p_b)) = meshes_in_two_partitions(&bus);
    let mut consumer_a = bus.consume_commands(&[p_a]).await.expect("consume a");
    let other = factory.bus(4, LONG_ACK_WAIT).await;
    let mut consumer_b = other.consume_commands(&[p_b]).await.expect("consume b");

    let for_a: Vec<CommandEnvelope> = (0..3).map(|_| delete("acme", mesh_a.as_str())).collect();
    let for_b: Vec<CommandEnvelope> = (0..3).map(|_| delete("acme", mesh_b.as_str())).collect();
    for (a, b) in for_a.iter().zip(&for_b) {
        bus.publish_command(a).await.expect("publish a");
        bus.publish_command(b).await.expect("publish b");
    }
    for expected in &for_a {
        let delivery = next(&mut consumer_a, "a command of partition a").await;
        assert_eq!(delivery.envelope().id, expected.id, "in publish order");
        delivery.ack().await.expect("ack");
    }
    for expected in &for_b {
        let delivery = next(&mut consumer_b, "a command of partition b").await;
        assert_eq!(delivery.envelope().id, expected.id, "in publish order");
        delivery.ack().await.expect("ack");
    }
    nothing_more(&mut consumer_a, "partition a got nothing of b").await;
    nothing_more(&mut consumer_b, "partition b got nothing of a").await;
}

pub async fn two_consumers_of_one_partition_share_its_queue(factory: &impl Factory) {
    let bus = factory.bus(4, LONG_ACK_WAIT).await;
    let commands: Vec<CommandEnvelope> = (0..6).map(|_| delete("acme", "demo")).collect();
    let p = partition(&bus, &commands[0]);
    let mut first = bus.consume_commands(&[p]).await.expect("consume");
    let other = factory.bus(4, LONG_ACK_WAIT).await;
    let mut second = other.consume_commands(&[p]).await.expect("consume");
    for command in &commands {
        bus.publish_command(command).await.expect("publish");
    }
    let mut seen = Vec::new();
    while seen.len() < commands.len() {
        let delivery: Delivery = tokio::select! {
            item = next(&mut first, "from the first consumer") => item,
            item = next(&mut second, "from the second consumer") => item,
        };
        seen.push(delivery.envelope().id);
        delivery.ack().await.expect("ack");
    }
    seen.sort();
    let mut expected: Vec<_> = commands.iter().map(|c| c.id).collect();
    expected.sort();
    assert_eq!(seen, expected, "each command delivered exactly once");
    nothing_more(&mut first, "nothing left").await;
    nothing_more(&mut second, "nothing left").await;
}

async fn publish_events(bus: &impl Bus, events: &[EventEnvelope]) -> Vec<u64> {
    let mut sequences = Vec::new();
    for event in events {
        sequences.push(
            bus.publish_event(event)
                .await
                .expect("publish event")
                .sequence,
        );
    }
    sequences
}

pub async fn events_are_read_from_history_then_live(factory: &impl Factory) {
    let bus = factory.bus(4, LONG_ACK_WAIT).await;
    let history: Vec<EventEnvelope> = (0..3).map(|_| deleted("acme", "demo")).collect();
    let sequences = publish_events(&bus, &history).await;
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");

    let mut events = bus
        .subscribe_events(EventFilter::All, StartAt::Beginning)
        .await
        .expect("subscribe");
    for (expected, sequence) in history.iter().zip(&sequences) {
        let record: EventRecord = next(&mut events, "a past event").await;
        assert_eq!(&record.envelope, expected);
        assert_eq!(record.sequence, *sequence);
        assert_eq!(
            record.subject.as_str().rsplit('.').next(),
            Some("MeshDeleted")
        );
    }
    nothing_more(&mut events, "history is over").await;
    let live = deleted("acme", "demo");
    bus.publish_event(&live).await.expect("publish live");
    assert_eq!(next(&mut events, "the live event").await.envelope, live);
}

pub async fn events_can_be_read_from_a_sequence_or_only_new(factory: &impl Factory) {
    let bus = factory.bus(4, LONG_ACK_WAIT).await;
    let history: Vec<EventEnvelope> = (0..3).map(|_| deleted("acme", "demo")).collect();
    let sequences = publish_events(&bus, &history).await;

    let mut from_second = bus
        .subscribe_events(EventFilter::All, StartAt::Sequence(sequences[1]))
        .await
        .expect("subscribe");
    assert_eq!(next(&mut from_second, "second").await.envelope, history[1]);
    assert_eq!(next(&mut from_second, "third").await.envelope, history[2]);

    let mut only_new = bus
        .subscribe_events(EventFilter::All, StartAt::New)
        .await
        .expect("subscribe");
    nothing_more(&mut only_new, "no history for New").await;
    let live = deleted("acme", "demo");
    bus.publish_event(&live).await.expect("publish live");
    assert_eq!(next(&mut only_new, "live").await.envelope, live);
    assert_eq!(next(&mut from_second, "live too").await.envelope, live);
}

pub async fn events_can_be_read_from_a_time(factory: &impl Factory) {
    let bus = factory.bus(4, LONG_ACK_WAIT).await;
    let old = deleted("acme", "demo");
    bus.publish_event(&old).await.expect("publish");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let since = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let recent = deleted("acme", "demo");
    bus.publish_event(&recent).await.expect("publish");
    let mut events = bus
        .subscribe_events(EventFilter::All, StartAt::Time(since))
        .await
        .expect("subscribe");
    assert_eq!(next(&mut events, "the recent event").await.envelope, recent);
    nothing_more(&mut events, "nothing older").await;
}

pub async fn event_subscriptions_filter_by_tenant_and_mesh(factory: &impl Factory) {
    let bus = factory.bus(4, LONG_ACK_WAIT).await;
    let mut demo = bus
        .subscribe_events(
            EventFilter::Mesh(tenant("acme"), mesh("demo")),
            StartAt::Beginning,
        )
        .await
        .expect("subscribe mesh");
    let mut acme = bus
        .subscribe_events(EventFilter::Tenant(tenant("acme")), StartAt::Beginning)
        .await
        .expect("subscribe tenant");
    let of_demo = deleted("acme", "demo");
    let of_prod = deleted("acme", "prod");
    let of_other = deleted("globex", "demo");
    publish_events(&bus, &[of_other.clone(), of_prod.clone(), of_demo.clone()]).await;

    assert_eq!(next(&mut demo, "demo's event").await.envelope, of_demo);
    nothing_more(&mut demo, "only demo").await;
    assert_eq!(next(&mut acme, "prod's event").await.envelope, of_prod);
    assert_eq!(next(&mut acme, "demo's event").await.envelope, of_demo);
    nothing_more(&mut acme, "only acme").await;
}

pub async fn an_event_published_twice_is_stored_once(factory: &impl Factory) {
    let bus = factory.bus(4, LONG_ACK_WAIT).await;
    let event = deleted("acme", "demo");
    let first = bus.publish_event(&event).await.expect("publish");
    let second = bus.publish_event(&event).await.expect("publish again");
    assert!(second.duplicate);
    assert_eq!(first.sequence, second.sequence);
    let mut events = bus
        .subscribe_events(EventFilter::All, StartAt::Beginning)
        .await
        .expect("subscribe");
    assert_eq!(next(&mut events, "the event").await.envelope, event);
    nothing_more(&mut events, "stored once").await;
}

pub async fn events_published_together_are_stored_in_order_with_one_answer_each(
    factory: &impl Factory,
) {
    let bus = factory.bus(4, LONG_ACK_WAIT).await;
    let earlier = deleted("acme", "demo");
    let earlier_ack = bus.publish_event(&earlier).await.expect("publish");
    let batch = vec![
        deleted("acme", "demo"),
        deleted("acme", "prod"),
        earlier.clone(),
        deleted("globex", "demo"),
        deleted("acme", "demo"),
    ];
    let acks: Vec<PublishAck> = bus
        .publish_events(&batch)
        .await
        .into_iter()
        .map(|ack| ack.expect("published"))
        .collect();
    assert_eq!(acks.len(), batch.len(), "one answer per event");
    assert!(
        acks[2].duplicate,
        "the event published before is a duplicate"
    );
    assert_eq!(acks[2].sequence, earlier_ack.sequence);
    let fresh: Vec<u64> = acks
        .iter()
        .filter(|ack| !ack.duplicate)
        .map(|ack| ack.sequence)
        .collect();
    assert_eq!(fresh.len(), 4);
    assert!(
        fresh.windows(2).all(|w| w[0] < w[1]) && fresh[0] > earlier_ack.sequence,
        "stored in the order given: {fresh:?}"
    );
    assert!(bus.publish_events(&[]).await.is_empty());

    let mut events = bus
        .subscribe_events(EventFilter::All, StartAt::Beginning)
        .await
        .expect("subscribe");
    let expected = [&earlier, &batch[0], &batch[1], &batch[3], &batch[4]];
    for event in expected {
        assert_eq!(&next(&mut events, "an event").await.envelope, event);
    }
    nothing_more(&mut events, "each stored once").await;
}

pub async fn events_keep_their_trace_context_and_correlation(factory: &impl Factory) {
    let bus = factory.bus(4, LONG_ACK_WAIT).await;
    let command = CommandEnvelope::command(
        tenant("acme"),
        mesh("demo"),
        "user:alice",
        SetTraceSampling {
            percent: SamplingPercent::new(2.5).expect("percent"),
        },
    )
    .expect("command")
    .with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    bus.publish_command(&command).await.expect("publish");
    let mut deliveries = bus
        .consume_commands(&[partition(&bus, &command)])
        .await
        .expect("consume");
    let delivery = next(&mut deliveries, "the command").await;
    let event = accepted(delivery.envelope());
    delivery.ack().await.expect("ack");
    let follow_up = EventEnvelope::caused_by(
        &event,
        FlowStarted {
            flow_id: 1,
            flow: "sampling".into(),
        },
    )
    .expect("event");
    bus.publish_event(&event).await.expect("publish event");
    bus.publish_event(&follow_up)
        .await
        .expect("publish follow-up");

    let mut events = bus
        .subscribe_events(EventFilter::All, StartAt::Beginning)
        .await
        .expect("subscribe");
    let first = next(&mut events, "accepted").await.envelope;
    let second = next(&mut events, "follow-up").await.envelope;
    assert_eq!(first.traceparent, command.traceparent);
    assert_eq!(second.traceparent, command.traceparent);
    assert_eq!(first.correlation_id, command.correlation_id);
    assert_eq!(second.correlation_id, command.correlation_id);
    assert_eq!(first.causation_id, Some(command.id));
    assert_eq!(second.causation_id, Some(first.id));
}

/// A subject that is certainly a command subject of `bus` (for raw publishes).
pub fn command_subject(bus: &impl Bus, tenant_name: &str, mesh_name: &str) -> Subject {
    bus.subjects()
        .command(&tenant(tenant_name), &mesh(mesh_name))
}
