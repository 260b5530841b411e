//! The `meshd` command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// meshd — the mesh-manager server.
///
/// Without a subcommand it runs the all-in-one role. Every flag can also be set in the config file
/// or as a MESHD_* environment variable (e.g. MESHD_DATABASE_URL, MESHD_NATS_URL).
#[derive(Debug, Parser)]
#[command(name = "meshd", version, about, long_about = None)]
pub struct Cli {
    /// Settings shared by every subcommand.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to run (default: all-in-one).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Flags that override the configuration file and environment.
#[derive(Debug, Args, Default, Clone)]
pub struct GlobalArgs {
    /// TOML configuration file (also MESHD_CONFIG).
    #[arg(long, global = true, env = "MESHD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database URL: mysql://user:password@host:3306/tke_mesh or sqlite://path [default: sqlite://meshd.db].
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    /// NATS URL with JetStream (e.g. nats://127.0.0.1:4222); without it the bus runs in process.
    #[arg(long, global = true)]
    pub nats_url: Option<String>,
    /// File holding the key that seals secrets at rest [default: meshd.key beside a SQLite database].
    #[arg(long, global = true)]
    pub secret_key_file: Option<PathBuf>,
    /// Address the HTTP API listens on [default: 127.0.0.1:9441].
    #[arg(long, global = true)]
    pub listen: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, global = true)]
    pub log_format: Option<String>,
    /// Export traces to this OTLP/HTTP collector (e.g. http://127.0.0.1:4318) [default: none].
    #[arg(long, global = true)]
    pub otlp_endpoint: Option<String>,
    /// All-in-one only: start N simulated clusters in process (sim-1 … sim-N) and register them
    /// (also MESHD_SIM_CLUSTERS) [default: 0].
    #[arg(long, value_name = "N")]
    pub sim_clusters: Option<usize>,
}

/// The roles and tools of meshd.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run API, bus and storage in one process (the default).
    AllInOne,
    /// Carry out commands for a share of the partitions, beside other workers (needs NATS and a
    /// shared MariaDB/MySQL database).
    Worker {
        /// This worker's id in leases and flow records [default: <host>-<pid>].
        #[arg(long)]
        worker_id: Option<String>,
        /// How long a partition lease lasts without renewal (e.g. 10s).
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        lease_ttl: std::time::Duration,
        /// How long a delivered command may stay unacknowledged before it is delivered again.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        ack_wait: std::time::Duration,
    },
    /// Show the workers sharing the partitions: their partitions, lease epochs, heartbeats.
    Workers {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Write a new secret key file (mode 0600) and exit.
    Keygen {
        /// Where to write the key; refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the effective configuration (passwords hidden) and exit.
    Config,
    /// Manage API tokens (stored hashed; a new token is printed once).
    Token {
        /// What to do.
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Run simulated Kubernetes clusters for demos and tests.
    Sim {
        /// How many clusters to start.
        #[arg(long, default_value_t = 3)]
        clusters: usize,
        /// Where to write one kubeconfig per cluster [default: the working directory].
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `meshd token …`.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Issue a token and print it (only this once).
    Create {
        /// The tenant the token acts for.
        #[arg(long)]
        tenant: String,
        /// admin (every tenant), editor (read and write its tenant) or viewer (read its tenant).
        #[arg(long)]
        role: String,
        /// Who uses the token [default: token:<tenant>-<role>].
        #[arg(long)]
        principal: Option<String>,
    },
    /// List tokens (ids, principals, tenants, roles; never the tokens).
    List,
    /// Revoke a token by id.
    Revoke {
        /// The token's id, as `token list` shows it.
        id: i64,
    },
}
