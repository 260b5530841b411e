//! Configuration shared by [`crate::NatsBus`] and [`crate::LocalBus`].
//!
//! The defaults run out of the box: root `mesh`, 32 partitions, streams `MESH_CMD` and
//! `MESH_EVT`. A different root (tests, or two installations on one NATS account) also renames
//! the streams, so they never collide.

use std::time::Duration;

use crate::error::BusError;
use crate::subject::{DEFAULT_PARTITIONS, DEFAULT_ROOT, Subjects};

/// How the bus is laid out and timed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// The first token of every subject.
    pub root: String,
    /// The number of command partitions, fixed when the command stream is created.
    pub partitions: u32,
    /// The JetStream stream holding commands.
    pub command_stream: String,
    /// The JetStream stream holding events and dead letters.
    pub event_stream: String,
    /// How long a delivered command may stay unacknowledged before it is delivered again.
    pub ack_wait: Duration,
    /// How long publishes are de-duplicated by envelope id (at least 10 minutes for commands).
    pub duplicate_window: Duration,
    /// How long events and dead letters are kept.
    pub event_max_age: Duration,
    /// How long connecting to NATS may take before it is an error.
    pub connect_timeout: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self::with_root(DEFAULT_ROOT)
    }
}

impl BusConfig {
    /// The smallest duplicate window accepted.
    pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

    /// The defaults under another root; the streams are named `<ROOT>_CMD` and `<ROOT>_EVT`
    /// (root upper-cased, `-` as `_`), so root `mesh` gives `MESH_CMD` and `MESH_EVT`.
    pub fn with_root(root: impl Into<String>) -> Self {
        let root = root.into();
        let stem = root.to_ascii_uppercase().replace('-', "_");
        Self {
            command_stream: format!("{stem}_CMD"),
            event_stream: format!("{stem}_EVT"),
            root,
            partitions: DEFAULT_PARTITIONS,
            ack_wait: Duration::from_secs(30),
            duplicate_window: Duration::from_secs(20 * 60),
            event_max_age: Duration::from_secs(7 * 24 * 60 * 60),
            connect_timeout: Duration::from_secs(3),
        }
    }

    /// Sets the partition count.
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Sets the ack wait.
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// Checks the configuration and builds its [`Subjects`].
    pub fn subjects(&self) -> Result<Subjects, BusError> {
        let config = |reason: String| BusError::Config { reason };
        let subjects =
            Subjects::new(self.root.clone(), self.partitions).map_err(|e| config(e.to_string()))?;
        for name in [&self.command_stream, &self.event_stream] {
            let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
            if name.is_empty() || name.len() > 64 || !name.chars().all(valid) {
                return Err(config(format!(
                    "stream name {name:?} must be 1 to 64 ASCII letters, digits, '-' or '_'"
                )));
            }
        }
        if self.command_stream == self.event_stream {
            return Err(config("the command and event streams must differ".into()));
        }
        if self.duplicate_window < Self::MIN_DUPLICATE_WINDOW {
            return Err(config(format!(
                "duplicate window {:?} is shorter than the minimum of 10 minutes",
                self.duplicate_window
            )));
        }
        if self.ack_wait < Duration::from_millis(100) {
            return Err(config(format!(
                "ack wait {:?} is shorter than 100ms",
                self.ack_wait
            )));
        }
        if self.event_max_age.is_zero() {
            return Err(config("the event max age must not be zero".into()));
        }
        Ok(subjects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_name_the_documented_streams() {
        let config = BusConfig::default();
        assert_eq!(config.command_stream, "MESH_CMD");
        assert_eq!(config.event_stream, "MESH_EVT");
        assert_eq!(config.partitions, 32);
        let subjects = config.subjects().expect("valid defaults");
        assert_eq!(subjects.root(), "mesh");
    }

    #[test]
    fn another_root_renames_the_streams() {
        let config = BusConfig::with_root("t-1a2b");
        assert_eq!(config.command_stream, "T_1A2B_CMD");
        assert_eq!(config.event_stream, "T_1A2B_EVT");
    }

    #[test]
    fn bad_settings_are_refused_with_reasons() {
        let config = BusConfig {
            duplicate_window: Duration::from_secs(60),
            ..BusConfig::default()
        };
        let err = config.subjects().expect_err("short window");
        assert!(err.to_string().contains("10 minutes"), "{err}");
        assert!(BusConfig::with_root("a.b").subjects().is_err());
        assert!(BusConfig::default().partitions(0).subjects().is_err());
    }
}
