//! Black-box tests of the `meshd` binary: it starts on embedded defaults, serves the version
//! catalog, and refuses bad settings with one clear line and a non-zero exit.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");

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

/// A clean environment: no MESHD_* from the caller leaks into the test.
fn meshd(dir: &std::path::Path) -> Command {
    let mut command = Command::new(MESHD);
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

/// Starts meshd and waits until it prints its listening line; returns it, its port and the lines
/// printed before that one.
fn start_printing(dir: &std::path::Path, extra: &[&str]) -> (Running, u16, Vec<String>) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = meshd(dir)
        .args(["--listen", &listen])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let running = Running(child);
    let before = until_listening(out, &listen);
    (running, port, before)
}

/// Reads meshd's stdout until its `meshd listening on …` line; returns the lines before it.
fn until_listening(out: std::process::ChildStdout, listen: &str) -> Vec<String> {
    let mut before = Vec::new();
    for line in BufReader::new(out).lines() {
        let line = line.unwrap();
        if line.starts_with("meshd listening on") {
            assert!(line.contains(listen), "unexpected listening line {line:?}");
            return before;
        }
        before.push(line);
    }
    panic!("meshd ended without listening; it printed {before:?}");
}

/// Starts meshd and waits until it prints its listening line.
fn start(dir: &std::path::Path, extra: &[&str]) -> (Running, u16) {
    let (running, port, _) = start_printing(dir, extra);
    (running, port)
}

fn run_to_end(dir: &std::path::Path, args: &[&str]) -> Output {
    run_to_end_with_env(dir, args, &[])
}

fn run_to_end_with_env(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut child = meshd(dir)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "meshd {args:?} did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn error_line(output: &Output) -> String {
    assert!(!output.status.success(), "expected failure, got {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("meshd: error:"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one error line expected in {stderr:?}"
    );
    lines[0].to_owned()
}

#[test]
fn embedded_defaults_serve_the_version_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let (_meshd, port) = start(dir.path(), &[]);
    let (status, body) = http_get(port, "/apis/v1/mesh/config/istioversions");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["result"], true);
    assert_eq!(json["data"][0], "1.31.0-beta.1");
    assert!(
        json["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "1.30.3")
    );

    let (status, body) = http_get(port, "/readyz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(port, "/no/such/route");
    assert_eq!(status, 404);
    assert!(body.contains("\"result\":false"), "{body}");

    assert!(
        dir.path().join("meshd.db").exists(),
        "SQLite file in the working directory"
    );
    let key = dir.path().join("meshd.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the generated key is private");
    }
}

#[test]
fn a_second_start_reuses_the_database_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _, printed) = start_printing(dir.path(), &[]);
    drop(first);
    assert_eq!(printed.len(), 1, "one line before listening: {printed:?}");
    assert!(
        printed[0].starts_with("admin token: mmt_"),
        "the first start prints the admin token: {printed:?}"
    );
    let key = std::fs::read_to_string(dir.path().join("meshd.key")).unwrap();
    let (_meshd, port, printed) = start_printing(dir.path(), &[]);
    assert!(
        printed.is_empty(),
        "a second start prints no token: {printed:?}"
    );
    assert_eq!(http_get(port, "/healthz").0, 200);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("meshd.key")).unwrap(),
        key
    );
}

#[test]
fn bad_settings_fail_with_one_line_saying_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["--database-url", "postgres://u:hunter2@h/db"],
            "unsupported scheme",
        ),
        (
            &[
                "--database-url",
                "mysql://root@127.0.0.1:1/x",
                "--secret-key-file",
                "missing.key",
            ],
            "meshd keygen",
        ),
        (
            &["--database-url", "mysql://root@127.0.0.1:1/x"],
            "no secret key configured",
        ),
        (
            &[
                "--nats-url",
                "nats://127.0.0.1:1",
                "--listen",
                "127.0.0.1:0",
            ],
            "cannot reach NATS",
        ),
        (&["--log-format", "xml"], "text or json"),
        (&["--otlp-endpoint", "collector:4318"], "--otlp-endpoint"),
    ];
    for (args, expected) in cases {
        let line = error_line(&run_to_end(dir.path(), args));
        assert!(line.contains(expected), "{args:?}: {line}");
        assert!(!line.contains("hunter2"), "passwords never printed: {line}");
    }
    let env_cases: [(&str, &str, &str); 3] = [
        ("MESHD_CLUSTERS__QPS", "0", "MESHD_CLUSTERS__QPS"),
        ("MESHD_CLUSTERS__QPS", "-5", "requests per second"),
        ("MESHD_CLUSTERS__BURST", "0", "burst"),
    ];
    for (name, value, expected) in env_cases {
        let line = error_line(&run_to_end_with_env(dir.path(), &[], &[(name, value)]));
        assert!(line.contains(expected), "{name}={value}: {line}");
    }
    let key = dir.path().join("server.key");
    assert!(
        run_to_end(dir.path(), &["keygen", "--out", key.to_str().unwrap()])
            .status
            .success()
    );
    let line = error_line(&run_to_end(
        dir.path(),
        &[
            "--database-url",
            "mysql://root@127.0.0.1:1/x",
            "--secret-key-file",
            key.to_str().unwrap(),
        ],
    ));
    assert!(
        line.contains("cannot connect to the database") && line.contains("--database-url"),
        "{line}"
    );
}

#[test]
fn migrate_applies_every_migration_to_mariadb_once() {
    let database = mesh_testkit::mariadb::TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let url = database.url();
    let first = run_to_end(dir.path(), &["--database-url", &url, "migrate"]);
    assert!(first.status.success(), "{first:?}");
    let stdout = String::from_utf8_lossy(&first.stdout);
    let migrations = std::fs::read_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/mysql"),
    )
    .unwrap()
    .filter(|entry| entry.as_ref().is_ok_and(|e| e.path().is_dir()))
    .count();
    assert!(
        stdout.contains(&format!("applied {migrations} migration(s)")),
        "{stdout}"
    );
    let second = run_to_end(dir.path(), &["--database-url", &url, "migrate"]);
    assert!(String::from_utf8_lossy(&second.stdout).contains("is up to date"));
}

#[test]
fn the_environment_configures_meshd() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("meshd.toml"),
        "[catalog]\nversions = [\"1.29.6\", \"1.30.3\"]\n",
    )
    .unwrap();
    let port = free_port();
    let mut child = meshd(dir.path())
        .env("MESHD_CONFIG", "meshd.toml")
        .env("MESHD_LISTEN", format!("127.0.0.1:{port}"))
        .env("MESHD_DATABASE_URL", "sqlite://state.db")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let _running = Running(child);
    until_listening(out, &format!("127.0.0.1:{port}"));
    let (_, body) = http_get(port, "/apis/v1/mesh/config/istioversions");
    assert!(body.contains(r#""data":["1.30.3","1.29.6"]"#), "{body}");
    assert!(dir.path().join("state.db").exists());
}

#[test]
fn meshd_on_nats_and_mariadb_is_ready() {
    let nats = mesh_testkit::nats::NatsServer::start();
    let database = mesh_testkit::mariadb::TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("server.key");
    assert!(
        run_to_end(dir.path(), &["keygen", "--out", key.to_str().unwrap()])
            .status
            .success()
    );
    let root = mesh_testkit::nats::unique_root();
    let port = free_port();
    let mut child = meshd(dir.path())
        .env("MESHD_BUS__ROOT", &root)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", &database.url(), "--nats-url", nats.url()])
        .args(["--secret-key-file", key.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "{line:?}");
    let (status, body) = http_get(port, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""name":"bus","ok":true"#), "{body}");
    assert!(body.contains(r#""name":"database","ok":true"#), "{body}");
}

#[test]
fn meshd_sim_writes_a_kubeconfig_per_cluster_that_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = meshd(dir.path())
        .args(["sim", "--clusters", "2", "--out", "kube"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let mut reader = BufReader::new(stdout);
    let mut urls = Vec::new();
    while urls.len() < 2 {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "meshd sim ended early"
        );
        if let Some(url) = line.split('\t').find(|f| f.starts_with("http")) {
            urls.push(url.to_owned());
        }
    }
    let files: Vec<_> = std::fs::read_dir(dir.path().join("kube"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 2, "one kubeconfig per cluster");
    let first = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    assert!(first.contains("token:"), "token auth in {first}");
}

/// A minimal OTLP/HTTP collector: answers every POST with 200 and hands its body over.
fn start_collector() -> (u16, std::sync::mpsc::Receiver<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sender, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let sender = sender.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        if header.trim().is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let path = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("")
                        .to_owned();
                    let _ = sender.send((path, String::from_utf8_lossy(&body).into_owned()));
                    let stream = reader.get_mut();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
                    );
                }
            });
        }
    });
    (port, received)
}

#[test]
fn traces_go_to_the_configured_otlp_collector() {
    let (collector, received) = start_collector();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{collector}");
    let (mut running, port) = start(dir.path(), &["--otlp-endpoint", &endpoint]);
    let (status, _) = http_get(port, "/apis/v1/mesh/config/istioversions");
    assert_eq!(status, 200);
    let (status, _) = http_get(port, "/apis/v1/mesh/meshes/nope");
    assert_eq!(status, 401);
    // SIGTERM: meshd flushes its spans on the way out.
    let pid = running.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while running.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "meshd did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut exported = String::new();
    while let Ok((path, body)) = received.recv_timeout(Duration::from_secs(5)) {
        assert_eq!(path, "/v1/traces");
        exported.push_str(&body);
        if exported.contains("/apis/v1/mesh/config/istioversions")
            && exported.contains("/apis/v1/mesh/meshes/{mesh}")
        {
            break;
        }
    }
    for expected in [
        "resourceSpans",
        "\"service.name\"",
        "\"meshd\"",
        "http.request",
        "/apis/v1/mesh/config/istioversions",
        "/apis/v1/mesh/meshes/{mesh}",
    ] {
        assert!(exported.contains(expected), "{expected} in {exported}");
    }
}
