//! The `meshctl` command line (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// meshctl — drive mesh-manager: register clusters, create and watch Istio meshes.
///
/// The server and token come from --server / --token (or MESHCTL_SERVER / MESHCTL_TOKEN), else
/// from ~/.config/meshctl/config.toml (`server = "…"`, `token = "…"`), which `meshctl login`
/// writes.
#[derive(Debug, Parser)]
#[command(name = "meshctl", version, about, long_about = None)]
pub struct Cli {
    /// Connection and output settings.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// meshd's URL [default: http://127.0.0.1:9441].
    #[arg(long, global = true, env = "MESHCTL_SERVER")]
    pub server: Option<String>,
    /// API token [default: the config file's].
    #[arg(long, global = true, env = "MESHCTL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON (one document; `events` prints one object per line).
    Json,
    /// YAML.
    Yaml,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a token against meshd and keep it, with the server, in meshctl's private config
    /// file. The token comes from --token / MESHCTL_TOKEN, else from the first line of stdin.
    Login,
    /// Registered Kubernetes clusters.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Istio meshes.
    #[command(subcommand)]
    Mesh(MeshCommand),
    /// Apply Istio resources (VirtualService, DestinationRule, Gateway, …) from a YAML or JSON
    /// file to every cluster of a mesh that needs them, as one all-or-nothing rollout.
    Apply {
        /// The file (multi-document YAML or JSON; `-` for standard input).
        #[arg(short = 'f', long = "filename")]
        file: std::path::PathBuf,
        /// The mesh.
        #[arg(long, env = "MESHCTL_MESH")]
        mesh: String,
        /// Namespace for objects that name none.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Make the objects this member cluster's own (written to it only) instead of mesh-wide.
        #[arg(long)]
        cluster: Option<String>,
        /// Validate and show per cluster what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Like --dry-run, and list every changed field with its old and new value.
        #[arg(long)]
        diff: bool,
        /// Waiting for the rollout.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Delete the Istio resources a file names (kind, namespace, name) from the mesh's desired
    /// state and from every cluster holding them, as one all-or-nothing rollout.
    Delete {
        /// The file (multi-document YAML or JSON; `-` for standard input).
        #[arg(short = 'f', long = "filename")]
        file: std::path::PathBuf,
        /// The mesh.
        #[arg(long, env = "MESHCTL_MESH")]
        mesh: String,
        /// Namespace for objects that name none.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Delete this member cluster's own objects instead of mesh-wide ones.
        #[arg(long)]
        cluster: Option<String>,
        /// Show per cluster what would be deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Waiting for the rollout.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List the Istio resources of a mesh's desired state.
    Resources {
        /// The mesh.
        mesh: String,
        /// Only this namespace.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// The microservices of a namespace of a mesh: Services by `app` label across the member
    /// clusters, their workloads and endpoints, and the routing rules that apply to them.
    #[command(alias = "microservices")]
    Services {
        /// The mesh.
        mesh: String,
        /// The namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Show one microservice in detail.
        name: Option<String>,
    },
    /// Print a mesh's events (history; with -f, then live).
    Events {
        /// The mesh.
        mesh: String,
        /// Keep following new events until interrupted.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// List a mesh's flows, or show one flow with its tasks.
    Flows {
        /// The mesh.
        mesh: String,
        /// A flow id.
        id: Option<i64>,
    },
    /// Print a shell completion script.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `meshctl cluster …`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Register a cluster from a kubeconfig file.
    Add {
        /// The cluster's name (DNS-1123 label).
        name: String,
        /// Kubeconfig file (one cluster, token or client-certificate auth, everything inline).
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Region label.
        #[arg(long, default_value = "")]
        region: String,
    },
    /// List registered clusters.
    #[command(alias = "ls")]
    List,
    /// Show one registered cluster.
    Get {
        /// The cluster.
        name: String,
    },
    /// Forget a registered cluster (not while it is in a mesh).
    #[command(alias = "rm")]
    Remove {
        /// The cluster.
        name: String,
    },
}

/// Waiting for a long operation.
#[derive(Debug, Args, Clone)]
pub struct WaitArgs {
    /// Follow the operation's progress until it ends; exit non-zero if it fails.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (e.g. 90s, 10m, 1h).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
}

/// `meshctl mesh …`.
#[derive(Debug, Subcommand)]
pub enum MeshCommand {
    /// Create a mesh from a YAML or JSON manifest.
    Create {
        /// The manifest (`-` for standard input).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Waiting.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List meshes.
    #[command(alias = "ls")]
    List,
    /// Show a mesh's status, version and clusters.
    Get {
        /// The mesh.
        name: String,
    },
    /// Show everything about a mesh: config, clusters, gateways, recent flows and their tasks.
    Describe {
        /// The mesh.
        name: String,
    },
    /// Delete a mesh (uninstalls it from every cluster).
    #[command(alias = "rm")]
    Delete {
        /// The mesh.
        name: String,
        /// Waiting.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Upgrade a mesh to another Istio version from the catalog (canary by default: a new
    /// revision beside the old one, namespaces moved in gated batches, then `mesh canary`).
    Upgrade {
        /// The mesh.
        name: String,
        /// The target Istio version (see `GET /config/istioversions`).
        #[arg(long)]
        version: String,
        /// `canary` or `in-place`.
        #[arg(long, value_enum, default_value_t = UpgradeStrategyArg::Canary)]
        strategy: UpgradeStrategyArg,
        /// Namespaces moved per batch and cluster (canary).
        #[arg(long)]
        batch_size: Option<usize>,
        /// Pause after each passed health gate, in seconds (canary).
        #[arg(long)]
        pause_seconds: Option<u64>,
        /// Highest 5xx share (0-1) a moved service may answer with (canary).
        #[arg(long)]
        max_error_ratio: Option<f64>,
        /// A Prometheus server scraping the clusters' Istio metrics, for the health gates.
        #[arg(long)]
        prometheus_url: Option<String>,
        /// How long each health gate watches the moved services, in seconds (canary).
        #[arg(long)]
        gate_window_seconds: Option<u64>,
        /// Waiting.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Confirm (remove the old revision) or roll back (return to it) a mesh's canary upgrade.
    Canary {
        /// `confirm` or `rollback`.
        #[arg(value_enum)]
        action: CanaryActionArg,
        /// The mesh.
        name: String,
        /// Waiting.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Set the percentage of requests traced.
    Sampling {
        /// The mesh.
        name: String,
        /// Percentage from 0 to 100.
        percent: f64,
        /// Waiting.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Show the namespaces whose pods get sidecars, or set them for one member cluster.
    Injection {
        /// The mesh.
        name: String,
        /// The member cluster to set (without it, show every member's namespaces).
        #[arg(long)]
        cluster: Option<String>,
        /// The cluster's namespaces, replacing its list (none: turn injection off there).
        namespaces: Vec<String>,
        /// Waiting.
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Show or set what sidecars do with traffic to destinations outside the registry.
    Outbound {
        /// The mesh.
        name: String,
        /// The new policy (without it, show the current one).
        #[arg(value_enum)]
        policy: Option<OutboundPolicyArg>,
        /// Waiting.
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// Outbound traffic policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutboundPolicyArg {
    /// Let traffic to unknown destinations through (Istio's default).
    AllowAny,
    /// Only services in the registry are reachable.
    RegistryOnly,
}

/// How `mesh upgrade` replaces the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UpgradeStrategyArg {
    /// A new revision beside the old one.
    Canary,
    /// Replace the control plane where it stands, one minor version at a time.
    InPlace,
}

/// What `mesh canary` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CanaryActionArg {
    /// Keep the new revision, remove the old one.
    Confirm,
    /// Go back to the old revision, remove the new one.
    Rollback,
}

/// Parses `90s`, `500ms`, `10m`, `1h` or plain seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let text = text.trim();
    let bad = || format!("invalid duration {text:?}: use e.g. 90s, 10m or 1h");
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "" | "s" => Some(amount),
        "ms" => return Ok(Duration::from_millis(amount)),
        "m" => amount.checked_mul(60),
        "h" => amount.checked_mul(3600),
        _ => None,
    };
    seconds.map(Duration::from_secs).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_take_units() {
        use std::time::Duration;
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
