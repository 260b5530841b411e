//! Keeps `docs/bus.md`, the bus contract for clients in other languages, true to the code.
//!
//! Every JSON example, partition worked example and default in the document is produced here by
//! the real types and functions of mesh-bus; a test fails when the document no longer shows
//! them (whitespace aside) and prints the text to paste. The reverse holds too: every envelope
//! written in the document must decode with the real decoder.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use mesh_bus::command::{
    AddCluster, ApplyResources, CanaryAction, CanaryOperate, ClusterSpec, CreateMesh, DeleteMesh,
    RemoveCluster, RepairDrift, ResourceChange, ResourceOp, SamplingPercent, SetAutoInjection,
    SetOutboundTraffic, SetTraceSampling, UpdateMeshConfig, UpgradeMesh, UpgradeStrategy,
};
use mesh_bus::envelope::Body;
use mesh_bus::event::{
    CommandAccepted, CommandRejected, DriftDetected, FlowFinished, FlowOutcome, FlowStarted,
    MeshConfigUpdated, MeshCreated, MeshDeleted, MessageDeadLettered, ResourceName,
    ResourcesChanged, TaskFinished, TaskOutcome, TaskStarted,
};
use mesh_bus::nats::PARTITIONS_METADATA_KEY;
use mesh_bus::{
    BusConfig, Command, CommandEnvelope, Envelope, Event, EventEnvelope, Subjects, partition_of,
};
use mesh_core::upgrade::CanaryOptions;
use mesh_core::{ClusterName, ClusterRole, MeshMode, MeshName, TenantId};
use serde_json::{Value, json};
use uuid::Uuid;

/// The envelope fields in the order the document lists them (the order `to_json` writes).
const ENVELOPE_FIELDS: [&str; 11] = [
    "id",
    "kind",
    "version",
    "occurred_at",
    "tenant",
    "mesh",
    "principal",
    "correlation_id",
    "causation_id",
    "expected_generation",
    "payload",
];

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/bus.md")
}

fn read_doc() -> String {
    let path = doc_path();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn tenant() -> TenantId {
    TenantId::new("acme").expect("tenant")
}

fn mesh() -> MeshName {
    MeshName::new("demo").expect("mesh")
}

fn cluster(name: &str) -> ClusterName {
    ClusterName::new(name).expect("cluster")
}

fn id(n: u16) -> Uuid {
    Uuid::parse_str(&format!("0195f3c8-3a10-7c3e-8b2a-5d1e9f4c{n:04x}")).expect("uuid")
}

fn at(minute: u32, second: u32, millis: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 10, minute, second)
        .single()
        .expect("time")
        + chrono::Duration::milliseconds(i64::from(millis))
}

/// The command every example event follows from.
const CREATE_ID: u16 = 0x0101;

fn command(n: u16, generation: Option<i64>, body: impl Into<Command>) -> CommandEnvelope {
    Envelope {
        id: id(n),
        occurred_at: at(15, 30, 250),
        tenant: tenant(),
        mesh: mesh(),
        principal: "user:alice".into(),
        correlation_id: id(n),
        causation_id: None,
        expected_generation: generation,
        traceparent: None,
        body: body.into(),
    }
}

fn event(n: u16, cause: u16, body: impl Into<Event>) -> EventEnvelope {
    Envelope {
        id: id(n),
        occurred_at: at(15, 31, 8),
        tenant: tenant(),
        mesh: mesh(),
        principal: "user:alice".into(),
        correlation_id: id(CREATE_ID),
        causation_id: Some(id(cause)),
        expected_generation: None,
        traceparent: None,
        body: body.into(),
    }
}

/// One example of every command kind, in the order of [`Command::KINDS`].
fn command_examples() -> Vec<CommandEnvelope> {
    let spec = |name: &str, role, network: &str| ClusterSpec {
        name: cluster(name),
        role,
        network: network.into(),
    };
    vec![
        command(
            CREATE_ID,
            None,
            CreateMesh {
                title: "Payments".into(),
                region: "eu-west-1".into(),
                version: "1.30.3".into(),
                mode: MeshMode::MultiPrimary,
                clusters: vec![
                    spec("c1", ClusterRole::Master, "net-a"),
                    spec("c2", ClusterRole::Master, "net-b"),
                ],
                config: json!({"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}),
            },
        ),
        command(
            0x0102,
            Some(3),
            UpdateMeshConfig {
                config: json!({"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}),
            },
        ),
        command(
            0x0103,
            None,
            SetTraceSampling {
                percent: SamplingPercent::new(2.5).expect("percent"),
            },
        ),
        command(
            0x010c,
            None,
            SetAutoInjection {
                cluster: cluster("c1"),
                namespaces: vec![
                    mesh_core::NamespaceName::new("shop").expect("namespace"),
                    mesh_core::NamespaceName::new("payments").expect("namespace"),
                ],
            },
        ),
        command(
            0x010d,
            None,
            SetOutboundTraffic {
                policy: mesh_core::spec::OutboundTrafficPolicy::RegistryOnly,
            },
        ),
        command(
            0x0104,
            Some(4),
            AddCluster {
                cluster: spec("c3", ClusterRole::Remote, "net-a"),
            },
        ),
        command(
            0x0105,
            None,
            RemoveCluster {
                cluster: cluster("c3"),
            },
        ),
        command(
            0x0106,
            None,
            UpgradeMesh {
                version: "1.31.0".into(),
                strategy: UpgradeStrategy::Canary,
                canary: Some(CanaryOptions {
                    batch_size: 2,
                    pause_seconds: 60,
                    max_error_ratio: 0.02,
                    gate_window_seconds: 30,
                    metrics_urls: Default::default(),
                    prometheus_url: Some("http://prometheus.monitoring:9090".into()),
                }),
            },
        ),
        command(
            0x0107,
            None,
            CanaryOperate {
                action: CanaryAction::Confirm,
            },
        ),
        command(0x0108, None, DeleteMesh {}),
        command(
            0x010a,
            Some(7),
            ApplyResources {
                cluster: None,
                changes: vec![
                    ResourceChange {
                        op: ResourceOp::Apply,
                        kind: "VirtualService".into(),
                        namespace: "default".into(),
                        name: "reviews".into(),
                        body: Some(json!({
                            "apiVersion": "networking.istio.io/v1",
                            "kind": "VirtualService",
                            "metadata": {"name": "reviews", "namespace": "default"},
                            "spec": {
                                "hosts": ["reviews"],
                                "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]
                            }
                        })),
                        expected_generation: Some(2),
                    },
                    ResourceChange {
                        op: ResourceOp::Delete,
                        kind: "DestinationRule".into(),
                        namespace: "default".into(),
                        name: "ratings".into(),
                        body: None,
                        expected_generation: None,
                    },
                ],
            },
        ),
        command(
            0x010b,
            None,
            RepairDrift {
                cluster: cluster("c2"),
            },
        ),
    ]
}

/// One example of every event kind, in the order of [`Event::KINDS`].
fn event_examples() -> Vec<EventEnvelope> {
    let mut dead_lettered = event(
        0x020a,
        0x0109,
        MessageDeadLettered {
            subject: "mesh.cmd.7.acme.demo".into(),
            reason: "unknown command kind \"LaunchRockets\"".into(),
        },
    );
    dead_lettered.principal = "system:mesh-bus".into();
    dead_lettered.correlation_id = id(0x0109);
    vec![
        event(
            0x0201,
            CREATE_ID,
            CommandAccepted {
                command: "CreateMesh".into(),
            },
        ),
        event(
            0x0202,
            0x0106,
            CommandRejected {
                command: "UpgradeMesh".into(),
                reason: "flow install is still running; retry when it has finished".into(),
            },
        ),
        event(
            0x0203,
            CREATE_ID,
            MeshCreated {
                generation: 1,
                version: "1.30.3".into(),
                mode: MeshMode::MultiPrimary,
                clusters: vec![cluster("c1"), cluster("c2")],
            },
        ),
        event(0x0204, 0x0102, MeshConfigUpdated { generation: 4 }),
        event(0x0205, 0x0108, MeshDeleted {}),
        event(
            0x0206,
            0x0203,
            FlowStarted {
                flow_id: 42,
                flow: "install".into(),
            },
        ),
        event(
            0x0207,
            0x0206,
            FlowFinished {
                flow_id: 42,
                outcome: FlowOutcome::Failed,
                detail: Some("istiod on c2 was not ready within 10m".into()),
            },
        ),
        event(
            0x0208,
            0x0206,
            TaskStarted {
                flow_id: 42,
                task_id: 314,
                task: "install-control-plane".into(),
                cluster: Some(cluster("c2")),
            },
        ),
        event(
            0x0209,
            0x0208,
            TaskFinished {
                flow_id: 42,
                task_id: 314,
                outcome: TaskOutcome::Succeeded,
                detail: None,
            },
        ),
        dead_lettered,
        event(
            0x020b,
            0x010a,
            ResourcesChanged {
                cluster: None,
                applied: vec![ResourceName {
                    kind: "VirtualService".into(),
                    namespace: "default".into(),
                    name: "reviews".into(),
                }],
                deleted: vec![ResourceName {
                    kind: "DestinationRule".into(),
                    namespace: "default".into(),
                    name: "ratings".into(),
                }],
                targets: vec![cluster("c1"), cluster("c2")],
            },
        ),
        event(
            0x020c,
            0x020c,
            DriftDetected {
                cluster: cluster("c2"),
                resource: ResourceName {
                    kind: "VirtualService".into(),
                    namespace: "default".into(),
                    name: "reviews".into(),
                },
                drift: "changed".into(),
                fields: vec!["spec.http[0].route[0].destination.subset".into()],
                policy: "repair".into(),
            },
        ),
    ]
}

/// Rebuilds every object with its keys in sorted order, so the text does not depend on whether
/// serde_json's `preserve_order` feature happens to be enabled in a build.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The envelope as the document shows it: what `to_json` writes, envelope fields in wire order,
/// nested keys sorted, indented by two spaces.
fn render<B: Body>(envelope: &Envelope<B>) -> String {
    let bytes = envelope.to_json().expect("encode");
    let value: Value = serde_json::from_slice(&bytes).expect("json");
    let object = value.as_object().expect("an envelope is an object");
    let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ENVELOPE_FIELDS.into_iter().collect::<BTreeSet<_>>(),
        "the envelope's fields changed: update ENVELOPE_FIELDS and the Envelope section of docs/bus.md"
    );
    let mut text = String::from("{\n");
    for (i, key) in ENVELOPE_FIELDS.iter().enumerate() {
        let field = serde_json::to_string_pretty(&sorted(&object[*key])).expect("json");
        let field = field.replace('\n', "\n  ");
        let comma = if i + 1 < ENVELOPE_FIELDS.len() {
            ","
        } else {
            ""
        };
        let _ = writeln!(text, "  \"{key}\": {field}{comma}");
    }
    text.push('}');
    text
}

/// Drops whitespace outside JSON strings.
fn squeeze(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// The bodies of the ```json fenced blocks of a Markdown text.
fn json_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let trimmed = line.trim();
        match current.as_mut() {
            None if trimmed == "```json" => current = Some(String::new()),
            None => {}
            Some(_) if trimmed == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

/// What the document must show for one kind: its heading, its subject and its example.
struct Section {
    heading: String,
    subject: String,
    example: String,
}

impl Section {
    fn text(&self) -> String {
        format!(
            "{}\n\nSubject: `{}`\n\n```json\n{}\n```\n",
            self.heading, self.subject, self.example
        )
    }
}

fn sections() -> Vec<Section> {
    let subjects = Subjects::default();
    let commands = command_examples().into_iter().map(|c| Section {
        heading: format!("### `{}` (version {})", c.kind(), c.version()),
        subject: subjects.command(&c.tenant, &c.mesh).to_string(),
        example: render(&c),
    });
    let events = event_examples().into_iter().map(|e| Section {
        heading: format!("### `{}` (version {})", e.kind(), e.version()),
        subject: subjects
            .event(&e.tenant, &e.mesh, e.kind())
            .expect("subject")
            .to_string(),
        example: render(&e),
    });
    commands.chain(events).collect()
}

#[test]
fn the_examples_cover_every_command_and_event_kind() {
    assert_eq!(
        command_examples()
            .iter()
            .map(|c| (c.kind(), c.version()))
            .collect::<Vec<_>>(),
        Command::KINDS.to_vec(),
        "add an example of the new command kind to command_examples and docs/bus.md"
    );
    assert_eq!(
        event_examples()
            .iter()
            .map(|e| (e.kind(), e.version()))
            .collect::<Vec<_>>(),
        Event::KINDS.to_vec(),
        "add an example of the new event kind to event_examples and docs/bus.md"
    );
}

#[test]
fn the_document_shows_the_real_json_of_every_command_and_event() {
    let doc = read_doc();
    let squeezed_doc = squeeze(&doc);
    let blocks: BTreeSet<String> = json_blocks(&doc).iter().map(|b| squeeze(b)).collect();
    let stale: Vec<Section> = sections()
        .into_iter()
        .filter(|s| {
            !doc.lines().any(|line| line.trim() == s.heading)
                || !squeezed_doc.contains(&squeeze(&format!("Subject: `{}`", s.subject)))
                || !blocks.contains(&squeeze(&s.example))
        })
        .collect();
    if !stale.is_empty() {
        let mut message = format!(
            "docs/bus.md is stale: {} kind(s) lack their heading, subject or example. \
             Replace their sections with:\n\n",
            stale.len()
        );
        for section in &stale {
            message.push_str(&section.text());
            message.push('\n');
        }
        panic!("{message}");
    }
}

#[test]
fn every_envelope_in_the_document_decodes_with_the_real_decoder() {
    let doc = read_doc();
    for block in json_blocks(&doc) {
        let value: Value = serde_json::from_str(&block)
            .unwrap_or_else(|e| panic!("a json block of docs/bus.md is not JSON ({e}):\n{block}"));
        if value.get("kind").is_none() {
            continue;
        }
        let command = CommandEnvelope::from_json(block.as_bytes());
        let event = EventEnvelope::from_json(block.as_bytes());
        assert!(
            command.is_ok() || event.is_ok(),
            "an envelope in docs/bus.md does not decode (as a command: {:?}; as an event: {:?}):\n{block}",
            command.err().map(|e| e.to_string()),
            event.err().map(|e| e.to_string()),
        );
    }
}

/// FNV-1a 64 as the document spells it out for implementers.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The rows of the worked-example table: tenant, mesh, hash, P and partition.
fn partition_rows() -> Vec<String> {
    let cases = [
        ("acme", "demo", 32),
        ("Tenant_01", "mesh-1", 32),
        ("acme", "prod-eu", 12),
    ];
    cases
        .into_iter()
        .map(|(t, m, p)| {
            let (tenant, mesh) = (TenantId::new(t).expect("tenant"), MeshName::new(m).expect("mesh"));
            let hash = fnv1a64(format!("{t}/{m}").as_bytes());
            // The hash shown is the one the real function uses: it agrees with `partition_of`
            // modulo three pairwise coprime numbers whose product exceeds 2^64, which pins all
            // 64 bits (Chinese remainder theorem).
            for modulus in [u32::MAX, u32::MAX - 1, u32::MAX - 2] {
                assert_eq!(
                    hash % u64::from(modulus),
                    u64::from(partition_of(&tenant, &mesh, modulus)),
                    "{t}/{m} mod {modulus}"
                );
            }
            let partition = partition_of(&tenant, &mesh, p);
            assert_eq!(u64::from(partition), hash % u64::from(p));
            format!(
                "| `{t}` | `{m}` | `{t}/{m}` | `0x{hash:016x}` ({hash}) | {p} | {partition} | `{}` |",
                Subjects::new("mesh", p)
                    .expect("subjects")
                    .command(&tenant, &mesh)
            )
        })
        .collect()
}

/// Lines of the defaults table.
fn default_rows() -> Vec<String> {
    let config = BusConfig::default();
    let subjects = config.subjects().expect("valid defaults");
    vec![
        format!("| subject root | `{}` |", subjects.root()),
        format!("| partitions (P) | {} |", subjects.partitions()),
        format!("| command stream | `{}` |", config.command_stream),
        format!("| event stream | `{}` |", config.event_stream),
        format!(
            "| duplicate window (both streams) | {} s |",
            config.duplicate_window.as_secs()
        ),
        format!(
            "| event and dead-letter max age | {} s |",
            config.event_max_age.as_secs()
        ),
        format!("| command ack wait | {} s |", config.ack_wait.as_secs()),
        format!("| partition metadata key | `{PARTITIONS_METADATA_KEY}` |"),
    ]
}

fn missing_lines(doc: &str, expected: Vec<String>) -> Vec<String> {
    let lines: BTreeSet<String> = doc
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    expected
        .into_iter()
        .filter(|row| !lines.contains(&row.split_whitespace().collect::<String>()))
        .collect()
}

#[test]
fn the_partition_worked_examples_are_computed_by_the_real_function() {
    let missing = missing_lines(&read_doc(), partition_rows());
    assert!(
        missing.is_empty(),
        "docs/bus.md lacks these partition rows:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_documented_defaults_are_the_real_defaults() {
    let missing = missing_lines(&read_doc(), default_rows());
    assert!(
        missing.is_empty(),
        "docs/bus.md lacks these default rows:\n{}",
        missing.join("\n")
    );
}

#[test]
fn hand_written_envelopes_decode_as_the_document_says() {
    // What the Envelope section promises a foreign client: `causation_id` and
    // `expected_generation` may be left out, any RFC 3339 offset is accepted, unknown fields are
    // ignored, and `CreateMesh.config` defaults to `{}`.
    let text = r#"{"id": "0195f3c8-3a10-7c3e-8b2a-5d1e9f4c0f01", "kind": "CreateMesh",
        "version": 1, "occurred_at": "2026-03-02T11:15:30.5+01:00", "tenant": "acme",
        "mesh": "demo", "principal": "token:ci",
        "correlation_id": "0195f3c8-3a10-7c3e-8b2a-5d1e9f4c0f01", "traceparent": "ignored",
        "payload": {"title": "T", "region": "r", "version": "v1.30.3", "mode": "single",
            "clusters": [{"name": "c1", "role": "primary", "network": "n"}]}}"#;
    let envelope = CommandEnvelope::from_json(text.as_bytes()).expect("decodes");
    assert_eq!(envelope.occurred_at, at(15, 30, 500));
    assert_eq!(envelope.causation_id, None);
    assert_eq!(envelope.expected_generation, None);
    assert_eq!(
        envelope.traceparent, None,
        "the trace context comes from the header only"
    );
    let Command::CreateMesh(create) = envelope.body else {
        panic!("not a CreateMesh: {:?}", envelope.body);
    };
    assert_eq!(create.config, json!({}));
    assert_eq!(create.clusters[0].role, ClusterRole::Master);
}

#[test]
fn squeezing_keeps_whitespace_inside_strings() {
    assert_eq!(
        squeeze("{ \"a b\": [1, 2],\n \"c\\\" d\": \"x\" }"),
        "{\"a b\":[1,2],\"c\\\" d\":\"x\"}"
    );
}
