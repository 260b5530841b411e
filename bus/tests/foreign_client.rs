//! A client in another language can publish commands by following docs/bus.md alone.
//!
//! `foreign/publish_create_mesh.py` (Python, nats-py) computes the partition with its own FNV-1a,
//! publishes a hand-written `CreateMesh` envelope twice with one `Nats-Msg-Id` and reports what
//! the command stream holds; this test decodes that with the real mesh-bus code and then
//! consumes the command through [`NatsBus::consume_commands`], as a worker would.
//!
//! Needs python3 with nats-py importable from `<workspace>/.tools/py`
//! (`python3 -m pip install --target .tools/py nats-py`). Without it the test fails under
//! `CI=true` and otherwise prints a note and passes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use mesh_bus::command::{ClusterSpec, CreateMesh};
use mesh_bus::{Bus, BusConfig, Command, CommandEnvelope, NatsBus};
use mesh_core::{ClusterName, ClusterRole, MeshMode, MeshName, TenantId};
use mesh_testkit::nats::{NatsServer, unique_root};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

/// A partition count other than the default, so the script must read it from the stream.
const PARTITIONS: u32 = 12;
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
const SOON: Duration = Duration::from_secs(10);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python_path() -> PathBuf {
    workspace().join(".tools/py")
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/foreign/publish_create_mesh.py")
}

/// Whether python3 can import nats-py; the reason when it cannot.
fn python_with_nats() -> Result<(), String> {
    let output = std::process::Command::new("python3")
        .args(["-c", "import nats"])
        .env("PYTHONPATH", python_path())
        .output()
        .map_err(|e| format!("python3 cannot be run: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "python3 cannot import nats-py ({}); install it with \
             `python3 -m pip install --target .tools/py nats-py` in the workspace root",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
        ))
    }
}

/// What the script reports.
#[derive(Debug, Deserialize)]
struct Report {
    stream: String,
    partitions: u32,
    partition: u32,
    subject: String,
    id: Uuid,
    traceparent: String,
    acks: Vec<Ack>,
    stored_count: u64,
    stored: Vec<Stored>,
}

#[derive(Debug, Deserialize)]
struct Ack {
    stream: String,
    seq: u64,
    duplicate: bool,
}

#[derive(Debug, Deserialize)]
struct Stored {
    seq: u64,
    subject: String,
    headers: std::collections::HashMap<String, String>,
    data: String,
}

/// A server and a subject root; on a shared server the root's streams are deleted on drop.
struct Nats {
    server: NatsServer,
    root: String,
}

impl Drop for Nats {
    fn drop(&mut self) {
        if self.server.is_private() {
            return;
        }
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

async fn run_script(url: &str, root: &str, tenant: &str, mesh: &str) -> Report {
    let child = tokio::process::Command::new("python3")
        .arg(script())
        .args([url, root, tenant, mesh])
        .env("PYTHONPATH", python_path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run python3");
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .expect("the script finishes within a minute")
        .expect("script output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the script failed with {}:\n{}\n{stdout}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("the script's report is not understood ({e}): {stdout}"))
}

fn expected_create_mesh() -> CreateMesh {
    let spec = |name: &str, role, network: &str| ClusterSpec {
        name: ClusterName::new(name).expect("cluster"),
        role,
        network: network.into(),
    };
    CreateMesh {
        title: "Payments from Python".into(),
        region: "eu-west-1".into(),
        version: "1.30.3".into(),
        mode: MeshMode::PrimaryRemote,
        clusters: vec![
            spec("c1", ClusterRole::Master, "net-a"),
            spec("c2", ClusterRole::Remote, "net-b"),
        ],
        config: json!({"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}),
    }
}

#[tokio::test]
async fn a_python_client_publishes_a_create_mesh_command_that_a_worker_consumes_once() {
    if let Err(reason) = python_with_nats() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true and {reason}");
        }
        eprintln!("note: skipping the foreign-client test: {reason}");
        return;
    }
    let nats = Nats {
        server: NatsServer::start(),
        root: unique_root(),
    };
    let config = BusConfig::with_root(nats.root.clone()).partitions(PARTITIONS);
    let bus = NatsBus::connect(nats.server.url(), config)
        .await
        .expect("connect and create the streams");
    let (tenant, mesh) = ("Tenant_01", "payments");
    let (tenant_id, mesh_name) = (
        TenantId::new(tenant).expect("tenant"),
        MeshName::new(mesh).expect("mesh"),
    );

    let report = run_script(nats.server.url(), &nats.root, tenant, mesh).await;

    // The script found the streams and computed the partition as mesh-bus does.
    assert_eq!(report.stream, bus.config().command_stream);
    assert_eq!(report.partitions, PARTITIONS);
    assert_eq!(
        report.partition,
        bus.subjects().partition_of(&tenant_id, &mesh_name)
    );
    assert_eq!(
        report.subject,
        bus.subjects().command(&tenant_id, &mesh_name).as_str()
    );

    // The second publish with the same Nats-Msg-Id was recognised as a duplicate.
    let [first, second] = report.acks.as_slice() else {
        panic!("expected two acks, got {:?}", report.acks);
    };
    assert_eq!(first.stream, report.stream);
    assert!(!first.duplicate, "{first:?}");
    assert!(second.duplicate, "{second:?}");
    assert_eq!(second.seq, first.seq, "a duplicate reports the first copy");

    // Exactly one message is stored, and it is a mesh-bus envelope.
    assert_eq!(report.stored_count, 1, "{:?}", report.stored);
    let [stored] = report.stored.as_slice() else {
        panic!("expected one stored message, got {:?}", report.stored);
    };
    assert_eq!(stored.seq, first.seq);
    assert_eq!(stored.subject, report.subject);
    assert_eq!(
        stored.headers.get("Nats-Msg-Id").map(String::as_str),
        Some(report.id.to_string().as_str())
    );
    let decoded = CommandEnvelope::from_json(stored.data.as_bytes()).unwrap_or_else(|e| {
        panic!(
            "the stored message is not an envelope: {e}\n{}",
            stored.data
        )
    });
    assert_eq!(decoded.id, report.id);
    assert_eq!(
        decoded.id.get_version_num(),
        7,
        "the script writes UUIDv7 ids"
    );
    assert_eq!(decoded.kind(), "CreateMesh");
    let info = bus
        .jetstream()
        .get_stream(&bus.config().command_stream)
        .await
        .expect("command stream")
        .info()
        .await
        .expect("stream info")
        .clone();
    assert_eq!(info.state.messages, 1);

    // A worker consuming the partition gets it once, with the trace context of the header.
    let mut deliveries = bus
        .consume_commands(&[report.partition])
        .await
        .expect("consume");
    let delivery = tokio::time::timeout(SOON, deliveries.next())
        .await
        .expect("the command is delivered")
        .expect("stream open")
        .expect("a decodable command");
    let envelope = delivery.envelope().clone();
    assert_eq!(envelope.kind(), "CreateMesh");
    assert_eq!(envelope.version(), 1);
    assert_eq!(envelope.tenant, tenant_id);
    assert_eq!(envelope.mesh, mesh_name);
    assert_eq!(envelope.id, report.id);
    assert_eq!(envelope.correlation_id, report.id);
    assert_eq!(envelope.principal, "token:python-ci");
    assert_eq!(envelope.causation_id, None);
    assert_eq!(envelope.expected_generation, None);
    assert_eq!(
        envelope.traceparent.as_deref(),
        Some(report.traceparent.as_str())
    );
    assert_eq!(envelope.body, Command::CreateMesh(expected_create_mesh()));
    assert_eq!(delivery.delivered(), 1);
    delivery.ack().await.expect("ack");
    assert!(
        tokio::time::timeout(Duration::from_millis(700), deliveries.next())
            .await
            .is_err(),
        "nothing else is delivered"
    );
}
