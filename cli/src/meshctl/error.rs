//! The errors of `meshctl`: each one becomes one line, `meshctl: <message>`, and a non-zero exit.

use std::path::PathBuf;

/// Everything that can stop a `meshctl` command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with an error envelope (`{"result":false,"err":…}`).
    #[error("{message}")]
    Api {
        /// HTTP status of the answer.
        status: u16,
        /// The envelope's `err`, as the server wrote it.
        message: String,
    },
    /// meshd could not be reached.
    #[error(
        "cannot reach meshd at {server}: {reason}; is it running? set --server / MESHCTL_SERVER"
    )]
    Connect {
        /// The server URL tried.
        server: String,
        /// What the HTTP client said.
        reason: String,
    },
    /// An answer that is not the API's envelope, or a transport failure mid-way.
    #[error("{what}: {reason}")]
    Protocol {
        /// What was being done.
        what: String,
        /// What went wrong.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The user's input is invalid (a manifest, a duration, a config file).
    #[error("{0}")]
    Input(String),
    /// Standard output was closed by its reader; not a failure.
    #[error("standard output closed")]
    OutputClosed,
    /// A long operation was rejected or failed; the message names the mesh, cluster and error.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// A protocol error for `what`.
    pub fn protocol(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Protocol {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// Whether the API said the thing does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { status: 404, .. })
    }
}

/// The result of every `meshctl` operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
