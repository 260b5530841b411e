//! Life-cycle states of flows, tasks and commands, as stored in the `flow.status`,
//! `task.status` and `command_log.status` columns.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An unknown status string read from storage or the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} status {value:?}")]
pub struct UnknownStatus {
    /// Which status set was parsed.
    pub what: &'static str,
    /// The offending value.
    pub value: String,
}

macro_rules! status_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, terminal = [$($terminal:ident),*], { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The stored and wire form.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            /// Whether nothing more will happen in this state.
            pub fn is_terminal(self) -> bool {
                matches!(self, $(Self::$terminal)|*)
            }

            /// Every state, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(UnknownStatus { what: $what, value: other.to_owned() }),
                }
            }
        }
    };
}

status_enum!(
    /// Where a flow (one operation on a mesh, e.g. an install or an upgrade) stands.
    FlowStatus, "flow", terminal = [Succeeded, Failed, RolledBack, Cancelled], {
        /// Recorded, not started.
        Pending => "Pending",
        /// A worker is running its tasks.
        Running => "Running",
        /// Every task finished.
        Succeeded => "Succeeded",
        /// A task failed and the flow could not continue.
        Failed => "Failed",
        /// A task failed and every touched cluster was restored.
        RolledBack => "RolledBack",
        /// Stopped on request.
        Cancelled => "Cancelled",
    }
);

status_enum!(
    /// Where one task of a flow stands.
    TaskStatus, "task", terminal = [Succeeded, Failed, Skipped], {
        /// Planned, not started.
        Pending => "Pending",
        /// Being executed.
        Running => "Running",
        /// Done.
        Succeeded => "Succeeded",
        /// Failed; the error column says why.
        Failed => "Failed",
        /// Not needed (already in the desired state).
        Skipped => "Skipped",
    }
);

status_enum!(
    /// What became of a command in the command log.
    CommandStatus, "command", terminal = [Succeeded, Failed, Rejected], {
        /// Committed to the command log; its flow is running or about to.
        Accepted => "Accepted",
        /// Its effect is complete.
        Succeeded => "Succeeded",
        /// Its flow failed.
        Failed => "Failed",
        /// Refused before any effect (invalid, conflicting, stale generation).
        Rejected => "Rejected",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_stored_form() {
        for status in FlowStatus::ALL {
            assert_eq!(status.as_str().parse::<FlowStatus>(), Ok(*status));
        }
        for status in TaskStatus::ALL {
            assert_eq!(status.as_str().parse::<TaskStatus>(), Ok(*status));
        }
        for status in CommandStatus::ALL {
            assert_eq!(status.as_str().parse::<CommandStatus>(), Ok(*status));
        }
        assert!("running".parse::<FlowStatus>().is_err());
    }

    #[test]
    fn only_end_states_are_terminal() {
        assert!(!FlowStatus::Running.is_terminal());
        assert!(FlowStatus::RolledBack.is_terminal());
        assert!(!CommandStatus::Accepted.is_terminal());
    }
}
