//! kubectl against a simulated cluster: `get ns`, `apply --server-side -f` an Istio sample,
//! `get -o yaml`, `get -w`, `delete`, and a Sail `Istio` reaching Ready.
//!
//! Runs when `kubectl` is on PATH. Without it the test is skipped with a note, except under
//! `CI=true`, where a missing kubectl fails the test.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use mesh_sim::World;

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_applies_watches_and_deletes() {
    if !kubectl_available() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("kubectl is required under CI=true (apt-get install kubernetes-client)");
        }
        eprintln!("note: kubectl not on PATH; skipping the kubectl check");
        return;
    }
    let world = World::builder()
        .deploy_ready_delay(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = world.write_kubeconfigs(dir.path()).unwrap().remove(0);
    let kc2 = kc.clone();
    tokio::task::spawn_blocking(move || {
        let kc = kc2;
        let (ok, out) = run(&kc, &["get", "ns"]);
        assert!(ok && out.contains("default") && out.contains("Active"), "{out}");

        let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../core/data/istio/samples/virtual-service-all-v1.yaml");
        let (ok, out) = run(&kc, &["apply", "--server-side", "-f", sample]);
        assert!(ok && out.contains("virtualservice.networking.istio.io/reviews serverside-applied"), "{out}");
        let (ok, out) = run(&kc, &["get", "virtualservices", "-o", "yaml"]);
        assert!(ok && out.contains("kind: VirtualService") && out.contains("subset: v1"), "{out}");
        let (ok, out) = run(&kc, &["get", "vs"]);
        assert!(ok && out.contains("HOSTS") && out.contains("reviews"), "{out}");

        // `get deploy -w` follows a Sail install to a ready istiod.
        let watch = Command::new("timeout")
            .args(["5", "kubectl", "--kubeconfig"])
            .arg(&kc)
            .args(["get", "deploy", "-n", "istio-system", "-w"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(800));
        let istio = dir_file(&kc, "istio.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n---\napiVersion: sailoperator.io/v1\nkind: Istio\nmetadata:\n  name: default\nspec:\n  version: v1.30.3\n  namespace: istio-system\n");
        let (ok, out) = run(&kc, &["apply", "--server-side", "-f", istio.to_str().unwrap()]);
        assert!(ok, "{out}");
        let watched = watch.wait_with_output().unwrap();
        let watched = String::from_utf8_lossy(&watched.stdout);
        assert!(watched.contains("istiod") && watched.contains("1/1"), "watch output: {watched}");
        let (ok, out) = run(&kc, &["wait", "--for=condition=Ready", "istio/default", "--timeout=10s"]);
        assert!(ok, "{out}");

        let (ok, out) = run(&kc, &["delete", "vs", "reviews"]);
        assert!(ok && out.contains("deleted"), "{out}");
        let (ok, out) = run(&kc, &["get", "vs", "reviews"]);
        assert!(!ok && out.contains("NotFound"), "{out}");
    })
    .await
    .unwrap();
    drop(kc);
}

fn dir_file(beside: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = beside.parent().unwrap().join(name);
    std::fs::write(&p, text).unwrap();
    p
}
