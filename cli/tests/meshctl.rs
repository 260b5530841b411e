//! End-to-end tests of `meshctl` against a real `meshd --sim-clusters 3`: the quickstart of the
//! README, run as a person would — list the simulated clusters, create a multi-primary mesh from
//! `examples/mesh.yaml` and wait for it, see it `Running`, describe it, read its events, delete
//! it — plus the refusals a person must understand (a viewer token, a bad manifest).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const MESHCTL: &str = env!("CARGO_BIN_EXE_meshctl");
const EXAMPLE_MESH: &str = include_str!("../../examples/mesh.yaml");

/// A meshd process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A command with a clean environment: nothing from the caller's MESHD_* / MESHCTL_* or config
/// files leaks in.
fn clean(program: &str, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir);
    command
}

/// A started meshd: the process, its URL, its log file and the admin token it printed.
struct Started {
    _process: Running,
    server: String,
    log: PathBuf,
    token: String,
}

/// Starts `meshd --sim-clusters 3` in `dir`, reads the admin token it prints once on its first
/// start, and keeps it with `meshctl login` (token on stdin) so later meshctl runs in `dir` use it.
fn start_meshd(dir: &Path) -> Started {
    let listen = format!("127.0.0.1:{}", free_port());
    let log = dir.join("meshd.log");
    let mut child = clean(MESHD, dir)
        .args(["--listen", &listen, "--sim-clusters", "3"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let running = Running(child);
    let mut lines = BufReader::new(out).lines();
    let first = lines.next().unwrap().unwrap();
    let token = first
        .strip_prefix("admin token: ")
        .unwrap_or_else(|| panic!("the first line gives the admin token: {first:?}"))
        .to_owned();
    assert!(
        token.starts_with("mmt_") && !token.contains(' '),
        "{first:?}"
    );
    let second = lines.next().unwrap().unwrap();
    assert!(
        second.starts_with("meshd listening on") && second.contains(&listen),
        "unexpected second line {second:?}"
    );
    let server = format!("http://{listen}");

    let mut login = clean(MESHCTL, dir)
        .env("MESHCTL_SERVER", &server)
        .arg("login")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = login.stdin.take().unwrap();
        writeln!(stdin, "{token}").unwrap();
    }
    let output = login.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "meshctl login failed: {}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        !stdout(&output).contains(&token) && !stderr(&output).contains(&token),
        "login never prints the token"
    );
    Started {
        _process: running,
        server,
        log,
        token,
    }
}

/// Runs meshctl in `dir` against `server` and returns its output (at most 60 s). Its output is
/// read while it runs, so a long one (a completion script) cannot fill the pipe and stall it.
fn meshctl(dir: &Path, server: &str, args: &[&str]) -> Output {
    let child = clean(MESHCTL, dir)
        .env("MESHCTL_SERVER", server)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("meshctl {args:?} did not exit");
        }
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs meshctl and expects success; returns stdout.
fn ok(dir: &Path, server: &str, args: &[&str]) -> String {
    let output = meshctl(dir, server, args);
    assert!(
        output.status.success(),
        "meshctl {args:?} failed: {}{}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// Runs meshctl and expects a failure told in one `meshctl: …` line; returns that line.
fn refused(dir: &Path, server: &str, args: &[&str]) -> String {
    let output = meshctl(dir, server, args);
    assert!(!output.status.success(), "meshctl {args:?} should fail");
    let text = stderr(&output);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("meshctl: "))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected in {text:?}");
    lines[0].to_owned()
}

#[test]
fn the_quickstart_creates_watches_describes_and_deletes_a_multi_primary_mesh() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let meshd = start_meshd(dir);
    let (server, token) = (meshd.server.clone(), meshd.token.clone());

    // First start: the admin token was printed once; only its hash is stored, and `meshctl login`
    // kept it in a private config file.
    let database = std::fs::read(dir.join("meshd.db")).unwrap();
    assert!(
        !database
            .windows(token.len())
            .any(|window| window == token.as_bytes()),
        "the database holds no plain token"
    );
    let config = dir.join(".config/meshctl/config.toml");
    let kept = std::fs::read_to_string(&config).unwrap();
    assert!(
        kept.contains(&token) && kept.contains(&server),
        "{config:?} keeps server and token"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the config file is private");
    }
    let line = refused(dir, &server, &["--token", "mmt_wrong", "login"]);
    assert!(
        line.contains("not valid"),
        "a wrong token is refused: {line}"
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        kept,
        "a refused login keeps the config"
    );

    // The simulated clusters are registered, in every output format.
    let clusters = ok(dir, &server, &["cluster", "list"]);
    for name in ["sim-1", "sim-2", "sim-3"] {
        assert!(clusters.contains(name), "{name} in\n{clusters}");
    }
    assert_eq!(
        clusters.lines().count(),
        4,
        "a header and 3 clusters:\n{clusters}"
    );
    assert_eq!(clusters.matches("Reachable").count(), 3, "{clusters}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(dir, &server, &["cluster", "list", "-o", "json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
    let yaml: serde_yaml::Value = serde_yaml::from_str(&ok(
        dir,
        &server,
        &["-o", "yaml", "cluster", "get", "sim-2"],
    ))
    .unwrap();
    assert_eq!(yaml["name"].as_str(), Some("sim-2"));

    // Create the README's example mesh and follow it to the end.
    std::fs::write(dir.join("mesh.yaml"), EXAMPLE_MESH).unwrap();
    let created = meshctl(
        dir,
        &server,
        &[
            "mesh",
            "create",
            "-f",
            "mesh.yaml",
            "--wait",
            "--timeout",
            "45s",
        ],
    );
    assert!(
        created.status.success(),
        "{}{}",
        stdout(&created),
        stderr(&created)
    );
    assert!(
        stdout(&created).contains("mesh demo created: install succeeded"),
        "{}",
        stdout(&created)
    );
    let progress = stderr(&created);
    for cluster in ["sim-1", "sim-2", "sim-3"] {
        assert!(
            progress.contains(&format!("control-plane:{cluster} succeeded")),
            "per-cluster progress in\n{progress}"
        );
    }

    let got = ok(dir, &server, &["mesh", "get", "demo"]);
    assert!(
        got.contains("Running") && got.contains("multi-primary"),
        "{got}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(dir, &server, &["mesh", "get", "demo", "-o", "json"])).unwrap();
    assert_eq!(json["status"], "Running");
    assert_eq!(json["clusters"].as_array().unwrap().len(), 3);
    let listed: serde_yaml::Value =
        serde_yaml::from_str(&ok(dir, &server, &["mesh", "list", "-o", "yaml"])).unwrap();
    assert_eq!(listed[0]["name"].as_str(), Some("demo"));

    let described = ok(dir, &server, &["mesh", "describe", "demo"]);
    for expected in [
        "Status:",
        "Running",
        "Clusters:",
        "Gateways:",
        "traceSampling",
        "Tasks of flow",
    ] {
        assert!(described.contains(expected), "{expected:?} in\n{described}");
    }
    for cluster in ["sim-1", "sim-2", "sim-3"] {
        assert!(
            described
                .lines()
                .any(|l| l.trim_start().starts_with(cluster) && l.contains("Running")),
            "phase of {cluster} in\n{described}"
        );
    }
    let json: serde_json::Value = serde_json::from_str(&ok(
        dir,
        &server,
        &["mesh", "describe", "demo", "-o", "json"],
    ))
    .unwrap();
    assert_eq!(json["mesh"]["status"], "Running");
    assert!(json["flows"][0]["tasks"].as_array().unwrap().len() > 3);

    let events = ok(dir, &server, &["events", "demo"]);
    assert!(events.contains("MeshCreated"), "{events}");
    assert!(events.contains("FlowFinished"), "{events}");
    for line in ok(dir, &server, &["events", "demo", "-o", "json"]).lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(event["mesh"], "demo");
    }
    let flows = ok(dir, &server, &["flows", "demo"]);
    assert!(
        flows.contains("install") && flows.contains("Succeeded"),
        "{flows}"
    );

    // Traffic rules: a dry run with a diff, the rollout, the desired state, a broken rule.
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/data/istio/samples");
    let mut rules = String::new();
    for file in ["destination-rule-all.yaml", "virtual-service-all-v1.yaml"] {
        rules.push_str(&std::fs::read_to_string(samples.join(file)).unwrap());
        rules.push_str("\n---\n");
    }
    std::fs::write(dir.join("rules.yaml"), &rules).unwrap();
    let planned = ok(
        dir,
        &server,
        &["apply", "-f", "rules.yaml", "--mesh", "demo", "--diff"],
    );
    for expected in [
        "cluster sim-1:",
        "create",
        "VirtualService default/reviews",
        "nothing was written",
    ] {
        assert!(planned.contains(expected), "{expected:?} in\n{planned}");
    }
    let applied = meshctl(
        dir,
        &server,
        &[
            "apply",
            "-f",
            "rules.yaml",
            "--mesh",
            "demo",
            "--wait",
            "--timeout",
            "45s",
        ],
    );
    assert!(
        applied.status.success() && stdout(&applied).contains("apply-resources succeeded"),
        "{}{}",
        stdout(&applied),
        stderr(&applied)
    );
    let planned = ok(
        dir,
        &server,
        &["apply", "-f", "rules.yaml", "--mesh", "demo", "--dry-run"],
    );
    assert!(
        planned.contains("unchanged") && !planned.contains("create "),
        "a second apply changes nothing:\n{planned}"
    );
    // The microservices view: bookinfo runs in `default` of every simulated cluster.
    let services = ok(dir, &server, &["services", "demo", "-n", "default"]);
    let reviews = services
        .lines()
        .find(|l| l.starts_with("reviews "))
        .unwrap_or_else(|| panic!("reviews in\n{services}"));
    for expected in ["v1,v2,v3", "sim-1 3/3", "sim-3 3/3", "reviews"] {
        assert!(reviews.contains(expected), "{expected:?} in {reviews}");
    }
    let detail = ok(
        dir,
        &server,
        &["services", "demo", "-n", "default", "reviews"],
    );
    for expected in [
        "Cluster sim-2:",
        "workload  Deployment reviews-v2 version=v2 ready 1/1",
        "endpoint  10.",
        "default/reviews (byHost) subsets v1",
        "default/reviews (byHost) subsets v1,v2,v3",
    ] {
        assert!(detail.contains(expected), "{expected:?} in\n{detail}");
    }
    let line = refused(dir, &server, &["services", "demo", "-n", "default", "nope"]);
    assert!(line.contains("app=nope"), "{line}");

    // meshd's /metrics counts what its worker did.
    let metrics = tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::get(format!("{server}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    for expected in [
        "meshd_commands_total{kind=\"CreateMesh\",outcome=\"accepted\"} 1",
        "meshd_commands_total{kind=\"ApplyResources\",outcome=\"accepted\"}",
        "meshd_flows_finished_total{outcome=\"succeeded\"}",
        "meshd_actors{kind=\"mesh\"} 1",
        "meshd_actors{kind=\"partition\"}",
    ] {
        assert!(metrics.contains(expected), "{expected} in\n{metrics}");
    }
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("meshd_partition_lease_owned{") && l.ends_with(" 1")),
        "{metrics}"
    );

    // Mesh settings with routes of their own: injection per member, the outbound policy.
    let set = ok(
        dir,
        &server,
        &[
            "mesh",
            "injection",
            "demo",
            "--cluster",
            "sim-1",
            "default",
            "--wait",
            "--timeout",
            "45s",
        ],
    );
    assert!(set.contains("succeeded"), "{set}");
    let shown = ok(dir, &server, &["mesh", "injection", "demo"]);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("sim-1") && l.contains("default"))
            && shown
                .lines()
                .any(|l| l.starts_with("sim-2") && l.ends_with('-')),
        "{shown}"
    );
    let line = refused(
        dir,
        &server,
        &[
            "mesh",
            "injection",
            "demo",
            "--cluster",
            "sim-1",
            "kube-system",
        ],
    );
    assert!(line.contains("reserved"), "{line}");
    let set = ok(
        dir,
        &server,
        &[
            "mesh",
            "outbound",
            "demo",
            "registry-only",
            "--wait",
            "--timeout",
            "45s",
        ],
    );
    assert!(set.contains("succeeded"), "{set}");
    assert_eq!(
        ok(dir, &server, &["mesh", "outbound", "demo"]).trim(),
        "REGISTRY_ONLY"
    );

    // One cluster's own object: written to that cluster only, deleted with `delete -f`.
    std::fs::write(
        dir.join("local.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: local-db\nspec:\n  hosts: [db.sim-2.example.com]\n  ports: [{number: 5432, name: tcp, protocol: TCP}]\n  resolution: DNS\n",
    )
    .unwrap();
    let planned = ok(
        dir,
        &server,
        &[
            "apply",
            "-f",
            "local.yaml",
            "--mesh",
            "demo",
            "--cluster",
            "sim-2",
            "--dry-run",
        ],
    );
    assert!(
        planned.contains("cluster sim-2:") && !planned.contains("cluster sim-1:"),
        "{planned}"
    );
    let applied = ok(
        dir,
        &server,
        &[
            "apply",
            "-f",
            "local.yaml",
            "--mesh",
            "demo",
            "--cluster",
            "sim-2",
            "--wait",
            "--timeout",
            "45s",
        ],
    );
    assert!(applied.contains("apply-resources succeeded"), "{applied}");
    let listed = ok(dir, &server, &["resources", "demo"]);
    assert!(
        listed
            .lines()
            .any(|l| l.contains("local-db") && l.contains("cluster sim-2")),
        "{listed}"
    );
    let line = refused(
        dir,
        &server,
        &["apply", "-f", "local.yaml", "--mesh", "demo"],
    );
    assert!(
        line.contains("cluster sim-2"),
        "mesh-wide refused while sim-2 owns it: {line}"
    );
    let deleted = ok(
        dir,
        &server,
        &[
            "delete",
            "-f",
            "local.yaml",
            "--mesh",
            "demo",
            "--cluster",
            "sim-2",
            "--wait",
            "--timeout",
            "45s",
        ],
    );
    assert!(deleted.contains("succeeded"), "{deleted}");
    assert!(!ok(dir, &server, &["resources", "demo"]).contains("local-db"));
    let line = refused(
        dir,
        &server,
        &[
            "delete",
            "-f",
            "local.yaml",
            "--mesh",
            "demo",
            "--cluster",
            "sim-2",
        ],
    );
    assert!(
        line.contains("local-db"),
        "a second delete names what is missing: {line}"
    );

    std::fs::write(
        dir.join("broken.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: ratings\nspec:\n  hosts: [ratings]\n  http:\n  - route:\n    - destination: {host: ratings, subset: v9}\n",
    )
    .unwrap();
    let line = refused(
        dir,
        &server,
        &["apply", "-f", "broken.yaml", "--mesh", "demo", "--wait"],
    );
    assert!(line.contains("v9"), "the undefined subset is named: {line}");

    // Refusals are one line and a non-zero exit.
    let viewer = clean(MESHD, dir)
        .args(["token", "create", "--tenant", "default", "--role", "viewer"])
        .output()
        .unwrap();
    assert!(viewer.status.success(), "{viewer:?}");
    let viewer = stdout(&viewer).trim().to_owned();
    std::fs::write(
        dir.join("other.yaml"),
        EXAMPLE_MESH.replace("name: demo", "name: other"),
    )
    .unwrap();
    let line = refused(
        dir,
        &server,
        &[
            "--token",
            &viewer,
            "mesh",
            "create",
            "-f",
            "other.yaml",
            "--wait",
        ],
    );
    assert!(line.contains("viewer role"), "{line}");
    assert!(ok(dir, &server, &["--token", &viewer, "mesh", "list"]).contains("demo"));
    let line = refused(dir, &server, &["--token", "mmt_wrong", "cluster", "list"]);
    assert!(line.contains("not valid"), "{line}");
    std::fs::write(dir.join("bad.yaml"), "name: bad\nregion: sim\nversion: 1.30.3\nmode: single\nclusters:\n- name: nowhere\n  role: master\n").unwrap();
    let line = refused(
        dir,
        &server,
        &["mesh", "create", "-f", "bad.yaml", "--wait"],
    );
    assert!(
        line.contains("nowhere") && line.contains("not registered"),
        "{line}"
    );

    // Delete and wait; the mesh is gone.
    let deleted = ok(dir, &server, &["mesh", "delete", "demo", "--wait"]);
    assert!(deleted.contains("mesh demo deleted"), "{deleted}");
    let line = refused(dir, &server, &["mesh", "get", "demo"]);
    assert!(line.contains("not found"), "{line}");

    let logged = std::fs::read_to_string(&meshd.log).unwrap();
    assert!(
        !logged.contains(&token) && !logged.contains(&viewer),
        "tokens never logged"
    );
    assert!(
        logged.contains("made the local admin token"),
        "making the token is logged, without it"
    );
}

#[test]
fn completion_scripts_are_printed_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(dir.path(), "http://127.0.0.1:1", &["completion", shell]);
        assert!(script.contains("meshctl"), "{shell}: {script}");
    }
}

#[test]
fn an_unreachable_server_is_named_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = format!("http://127.0.0.1:{}", free_port());
    let line = refused(dir.path(), &server, &["cluster", "list"]);
    assert!(
        line.contains("cannot reach meshd") && line.contains(&server),
        "{line}"
    );
}

#[test]
fn a_mesh_goes_canary_with_live_progress_confirms_and_refuses_a_two_minor_jump() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let meshd = start_meshd(dir);
    let server = meshd.server.clone();
    std::fs::write(
        dir.join("old.yaml"),
        "name: old\nregion: sim\nversion: 1.29.6\nmode: primary-remote\nclusters:\n- name: sim-1\n  role: master\n- name: sim-2\n  role: remote\nconfig:\n  autoInjectionNamespaces:\n    sim-1: [default]\n    sim-2: [default]\n",
    )
    .unwrap();
    ok(
        dir,
        &server,
        &[
            "mesh",
            "create",
            "-f",
            "old.yaml",
            "--wait",
            "--timeout",
            "45s",
        ],
    );

    // In place, two minors at once: refused with the path to take.
    let line = refused(
        dir,
        &server,
        &[
            "mesh",
            "upgrade",
            "old",
            "--version",
            "1.31.0-beta.1",
            "--strategy",
            "in-place",
        ],
    );
    assert!(
        line.contains("1.30"),
        "the path names the minor between: {line}"
    );

    let upgraded = meshctl(
        dir,
        &server,
        &[
            "mesh",
            "upgrade",
            "old",
            "--version",
            "1.30.3",
            "--batch-size",
            "1",
            "--wait",
            "--timeout",
            "50s",
        ],
    );
    assert!(
        upgraded.status.success(),
        "{}{}",
        stdout(&upgraded),
        stderr(&upgraded)
    );
    assert!(
        stdout(&upgraded).contains("is in canary"),
        "{}",
        stdout(&upgraded)
    );
    let progress = stderr(&upgraded);
    for step in ["health-gate:sim-1", "health-gate:sim-2"] {
        assert!(progress.contains(step), "{step} in\n{progress}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&ok(dir, &server, &["mesh", "get", "old", "-o", "json"])).unwrap();
    assert_eq!(
        (json["status"].as_str(), json["version"].as_str()),
        (Some("Canary"), Some("1.29.6"))
    );

    let confirmed = ok(
        dir,
        &server,
        &[
            "mesh",
            "canary",
            "confirm",
            "old",
            "--wait",
            "--timeout",
            "50s",
        ],
    );
    assert!(confirmed.contains("confirmed"), "{confirmed}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(dir, &server, &["mesh", "get", "old", "-o", "json"])).unwrap();
    assert_eq!(json["status"], "Running");
    assert_eq!(json["version"], "1.30.3");
    assert_eq!(json["last_version"], "1.29.6");
    let line = refused(
        dir,
        &server,
        &["mesh", "canary", "rollback", "old", "--wait"],
    );
    assert!(line.contains("canary"), "nothing to roll back: {line}");
}
