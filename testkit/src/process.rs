//! What the helpers that run a server process for a test share: a free port, waiting until the
//! process accepts connections (or says why it will not), and the end of its log for messages.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// A port of 127.0.0.1 free at the time of asking.
pub(crate) fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// The last `count` lines of the log at `path` (none when it cannot be read).
pub(crate) fn last_lines(path: &Path, count: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..]
        .iter()
        .map(|line| (*line).to_owned())
        .collect()
}

/// Waits until `child` (`name`, logging to `log`) accepts connections on 127.0.0.1:`port`. When
/// it exits first, or does not within `timeout` (then it is killed), says so with the end of its
/// log.
pub(crate) fn wait_until_listening(
    child: &mut Child,
    name: &str,
    port: u16,
    log: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let tail = || last_lines(log, 5).join(" | ");
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{name} exited with {status}: {}", tail()));
        }
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{name} did not accept connections on {address} within {timeout:?}: {}",
                tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
