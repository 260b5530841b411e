//! A worker cut off from NATS but still reaching the database: its lease expires, another worker
//! takes the partition over and finishes the flow, and nothing the cut-off worker writes after
//! that lands (its writes are refused by epoch and it stops its actors).

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mesh_bus::command::{ClusterSpec, CreateMesh};
use mesh_bus::{Bus, BusConfig, CommandEnvelope, NatsBus};
use mesh_core::{ClusterName, ClusterRole, MeshMode, MeshName, TenantId};
use mesh_schema::{DatabaseTarget, SecretBox, SecretKey, Store, TenantScope};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy to NATS that can be cut: open connections are closed, new ones refused.
struct CuttableProxy {
    port: u16,
    cut: Arc<AtomicBool>,
}

impl CuttableProxy {
    /// Runs on its own thread and runtime, so it keeps forwarding while the test thread blocks.
    fn start(upstream: String) -> Self {
        let cut = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cut);
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(Self::serve(upstream, flag, port_tx));
        });
        let port = port_rx.recv().unwrap();
        Self { port, cut }
    }

    async fn serve(upstream: String, flag: Arc<AtomicBool>, port_tx: std::sync::mpsc::Sender<u16>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        port_tx.send(listener.local_addr().unwrap().port()).unwrap();
        {
            while let Ok((mut client, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    continue;
                }
                let upstream = upstream.clone();
                let flag = Arc::clone(&flag);
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                    tokio::pin!(copy);
                    loop {
                        tokio::select! {
                            _ = &mut copy => return,
                            () = tokio::time::sleep(Duration::from_millis(50)) => {
                                if flag.load(Ordering::SeqCst) {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}

#[actix_rt::test]
async fn a_worker_cut_off_from_nats_is_replaced_and_its_late_writes_are_refused() {
    let nats = mesh_testkit::nats::NatsServer::start();
    let upstream = nats.url().trim_start_matches("nats://").to_owned();
    let proxy = CuttableProxy::start(upstream);
    let database = mesh_testkit::mariadb::TestDatabase::create();
    let key = SecretKey::generate();
    let target = DatabaseTarget::parse(&database.url()).unwrap();
    let store_a = Store::open(target.clone(), SecretBox::new(&key), 4, true)
        .await
        .unwrap();
    let store_b = Store::open(target, SecretBox::new(&key), 4, false)
        .await
        .unwrap();
    let world = mesh_sim::World::builder()
        .clusters(1)
        .deploy_ready_delay(Duration::from_secs(5))
        .start()
        .await
        .unwrap();
    let cluster = world.cluster(0);
    support::register_world(&store_a, &world, "acme").await;
    let root = mesh_testkit::nats::unique_root();
    let _a = support::spawn_worker("cut-off", store_a.clone(), proxy.url(), root.clone());
    let publisher = NatsBus::connect(nats.url(), BusConfig::with_root(root.clone()))
        .await
        .unwrap();
    let create = CreateMesh {
        title: "island".into(),
        region: "sim".into(),
        version: "1.30.3".into(),
        mode: MeshMode::Single,
        clusters: vec![ClusterSpec {
            name: ClusterName::new(cluster.name()).unwrap(),
            role: ClusterRole::Master,
            network: "net".into(),
        }],
        config: serde_json::json!({}),
    };
    let command = CommandEnvelope::command(
        TenantId::new("acme").unwrap(),
        MeshName::new("island").unwrap(),
        "test",
        create,
    )
    .unwrap();
    publisher.publish_command(&command).await.unwrap();

    // Cut worker A off from NATS while its flow waits for the control plane.
    let deadline = Instant::now() + Duration::from_secs(30);
    let flow_id = loop {
        assert!(Instant::now() < deadline, "the install never started");
        if let Some(flow) = store_b
            .list_flows("island", 1)
            .await
            .unwrap()
            .into_iter()
            .next()
        {
            let tasks = store_b.list_tasks(flow.id).await.unwrap();
            if tasks
                .iter()
                .any(|t| t.name.starts_with("wait-control-plane") && t.status == "Running")
            {
                break flow.id;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let epoch_a = store_b
        .get_mesh(&TenantScope::All, "island")
        .await
        .unwrap()
        .unwrap()
        .owner_epoch;
    proxy.cut();
    let _b = support::spawn_worker("successor", store_b.clone(), nats.url().to_owned(), root);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let flow = store_b.get_flow(flow_id).await.unwrap().unwrap();
        if flow.status != "Running" && flow.status != "Pending" {
            assert_eq!(flow.status, "Succeeded", "{flow:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the successor never finished the flow: {flow:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mesh = store_b
        .get_mesh(&TenantScope::All, "island")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mesh.status, "Running");
    assert!(
        mesh.owner_epoch > epoch_a,
        "the successor holds a newer epoch ({} > {epoch_a})",
        mesh.owner_epoch
    );
    // Give the cut-off worker time to try whatever it still would, then check it landed nothing:
    // the flow's last heartbeat and every task's end were written by the successor's epoch.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let flow = store_b.get_flow(flow_id).await.unwrap().unwrap();
    assert_eq!(
        flow.processor, "successor",
        "no heartbeat of the cut-off worker landed after the takeover"
    );
    assert_eq!(
        store_b.list_flows("island", 10).await.unwrap().len(),
        1,
        "one flow, taken over"
    );
    eprintln!(
        "writes refused from the cut-off worker: {}",
        store_a.fenced_write_count()
    );
}
