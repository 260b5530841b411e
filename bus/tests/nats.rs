//! The behaviour suite against [`NatsBus`] on a real nats-server with JetStream, plus what only
//! JetStream has: stream configuration, idempotent set-up, the recorded partition count and
//! connection errors.
//!
//! The server comes from `mesh_testkit::nats` (`MESH_TEST_NATS_URL`, or a private server).
//! Every test uses its own subject root and streams and deletes them when done.

mod suite;

use std::time::{Duration, Instant};

use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use mesh_bus::nats::PARTITIONS_METADATA_KEY;
use mesh_bus::{Bus, BusConfig, BusError, NatsBus};
use mesh_testkit::nats::{NatsServer, unique_root};

/// A server and a subject root of one test; the streams of the root are deleted on drop.
struct Nats {
    server: NatsServer,
    root: String,
}

impl Nats {
    fn new() -> Self {
        Self {
            server: NatsServer::start(),
            root: unique_root(),
        }
    }

    fn config(&self, partitions: u32, ack_wait: Duration) -> BusConfig {
        BusConfig::with_root(self.root.clone())
            .partitions(partitions)
            .ack_wait(ack_wait)
    }

    async fn stream_info(&self, bus: &NatsBus, name: &str) -> stream::Info {
        bus.jetstream()
            .get_stream(name)
            .await
            .expect("stream")
            .info()
            .await
            .expect("info")
            .clone()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if self.server.is_private() {
            return; // the whole server and its storage go away
        }
        // On a shared server, delete this test's streams, even after a failed assertion. Drop
        // cannot await, and may run inside a runtime, so use a thread with its own.
        let url = self.server.url().to_owned();
        let config = BusConfig::with_root(self.root.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                if let Ok(client) = async_nats::connect(&url).await {
                    let js = async_nats::jetstream::new(client);
                    for name in [&config.command_stream, &config.event_stream] {
                        let _ = js.delete_stream(name).await;
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

#[async_trait]
impl suite::Factory for Nats {
    type Bus = NatsBus;

    async fn bus(&self, partitions: u32, ack_wait: Duration) -> NatsBus {
        NatsBus::connect(self.server.url(), self.config(partitions, ack_wait))
            .await
            .expect("connect")
    }
}

behaviour_suite!(Nats::new());

use suite::Factory as _;

#[tokio::test]
async fn a_duplicate_publish_leaves_one_message_in_the_stream() {
    let nats = Nats::new();
    let bus = nats.bus(4, suite::LONG_ACK_WAIT).await;
    let command = suite::delete("acme", "demo");
    bus.publish_command(&command).await.expect("publish");
    let again = bus.publish_command(&command).await.expect("publish again");
    assert!(again.duplicate);
    let info = nats.stream_info(&bus, &bus.config().command_stream).await;
    assert_eq!(info.state.messages, 1);
}

#[tokio::test]
async fn the_command_stream_is_a_work_queue_emptied_by_acks_and_dead_letters() {
    let nats = Nats::new();
    let bus = nats.bus(4, suite::LONG_ACK_WAIT).await;
    let command = suite::delete("acme", "demo");
    let subject = suite::command_subject(&bus, "acme", "demo");
    bus.publish_raw(&subject, Bytes::from_static(b"garbage"))
        .await
        .expect("garbage");
    bus.publish_command(&command).await.expect("publish");
    let partition = bus.subjects().partition_of(&command.tenant, &command.mesh);
    let mut deliveries = bus.consume_commands(&[partition]).await.expect("consume");
    suite::next(&mut deliveries, "the command")
        .await
        .ack()
        .await
        .expect("ack");
    let info = nats.stream_info(&bus, &bus.config().command_stream).await;
    assert_eq!(
        info.state.messages, 0,
        "acked and dead-lettered commands are removed"
    );
    let events = nats.stream_info(&bus, &bus.config().event_stream).await;
    assert_eq!(events.state.messages, 2, "the dead letter and its event");
}

#[tokio::test]
async fn streams_have_the_documented_configuration() {
    let nats = Nats::new();
    let bus = nats.bus(8, suite::LONG_ACK_WAIT).await;
    let root = &nats.root;

    let commands = nats
        .stream_info(&bus, &bus.config().command_stream)
        .await
        .config;
    assert_eq!(commands.subjects, vec![format!("{root}.cmd.>")]);
    assert_eq!(commands.retention, RetentionPolicy::WorkQueue);
    assert_eq!(commands.storage, StorageType::File);
    assert!(commands.duplicate_window >= Duration::from_secs(600));
    assert!(
        commands
            .description
            .as_deref()
            .is_some_and(|d| d.contains("partitions=8")),
        "{:?}",
        commands.description
    );
    // Servers before 2.10 drop stream metadata; the description carries the count there.
    if !commands.metadata.is_empty() {
        assert_eq!(
            commands
                .metadata
                .get(PARTITIONS_METADATA_KEY)
                .map(String::as_str),
            Some("8")
        );
    }

    let events = nats
        .stream_info(&bus, &bus.config().event_stream)
        .await
        .config;
    let mut subjects = events.subjects.clone();
    subjects.sort();
    assert_eq!(
        subjects,
        vec![format!("{root}.dlq.>"), format!("{root}.evt.>")]
    );
    assert_eq!(events.retention, RetentionPolicy::Limits);
    assert_eq!(events.max_age, Duration::from_secs(7 * 24 * 3600));
}

#[tokio::test]
async fn connecting_again_keeps_the_streams_and_their_messages() {
    let nats = Nats::new();
    let bus = nats.bus(4, suite::LONG_ACK_WAIT).await;
    let command = suite::delete("acme", "demo");
    bus.publish_command(&command).await.expect("publish");
    let created = nats
        .stream_info(&bus, &bus.config().command_stream)
        .await
        .created;
    drop(bus);

    let again = nats.bus(4, suite::LONG_ACK_WAIT).await;
    let info = nats
        .stream_info(&again, &again.config().command_stream)
        .await;
    assert_eq!(info.created, created, "the stream was kept, not recreated");
    assert_eq!(info.state.messages, 1);
    let partition = again
        .subjects()
        .partition_of(&command.tenant, &command.mesh);
    let mut deliveries = again.consume_commands(&[partition]).await.expect("consume");
    let delivery = suite::next(&mut deliveries, "the command").await;
    assert_eq!(delivery.envelope().id, command.id);
    delivery.ack().await.expect("ack");
}

#[tokio::test]
async fn another_partition_count_is_refused_with_a_clear_error() {
    let nats = Nats::new();
    let _first = nats.bus(32, suite::LONG_ACK_WAIT).await;
    let err = NatsBus::connect(nats.server.url(), nats.config(16, suite::LONG_ACK_WAIT))
        .await
        .expect_err("partition counts differ");
    assert!(
        matches!(
            err,
            BusError::PartitionMismatch {
                existing: 32,
                configured: 16,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("32 partitions") && message.contains("16"),
        "{message}"
    );
}

#[tokio::test]
async fn a_foreign_stream_of_the_same_name_is_refused() {
    let nats = Nats::new();
    let config = nats.config(4, suite::LONG_ACK_WAIT);
    let client = async_nats::connect(nats.server.url())
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(client);
    js.create_stream(stream::Config {
        name: config.command_stream.clone(),
        subjects: vec![format!("{}.cmd.>", nats.root)],
        retention: RetentionPolicy::Limits,
        ..Default::default()
    })
    .await
    .expect("create a foreign stream");
    let err = NatsBus::connect(nats.server.url(), config)
        .await
        .expect_err("incompatible");
    assert!(
        matches!(err, BusError::IncompatibleStream { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("retention"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_quick_one_line_error() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let started = Instant::now();
    let err = NatsBus::connect(&url, BusConfig::with_root(unique_root()))
        .await
        .expect_err("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("cannot reach NATS at {url}: ")),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
}

#[tokio::test]
async fn a_consumer_keeps_going_across_many_commands() {
    let nats = Nats::new();
    let bus = nats.bus(2, suite::LONG_ACK_WAIT).await;
    let commands: Vec<_> = (0..50).map(|_| suite::delete("acme", "demo")).collect();
    for command in &commands {
        bus.publish_command(command).await.expect("publish");
    }
    let partition = bus
        .subjects()
        .partition_of(&commands[0].tenant, &commands[0].mesh);
    let mut deliveries = bus.consume_commands(&[partition]).await.expect("consume");
    for command in &commands {
        let delivery = suite::next(&mut deliveries, "a command").await;
        assert_eq!(delivery.envelope().id, command.id, "in order");
        delivery.ack().await.expect("ack");
    }
    assert!(
        tokio::time::timeout(suite::QUIET, deliveries.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_quickly() {
    // Accepts TCP connections (the kernel does, from the backlog) but never speaks NATS.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("nats://{}", silent.local_addr().expect("address"));
    let mut config = BusConfig::with_root(unique_root());
    config.connect_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let err = NatsBus::connect(&url, config)
        .await
        .expect_err("no NATS there");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        err.to_string()
            .starts_with(&format!("cannot reach NATS at {url}: ")),
        "{err}"
    );
}
