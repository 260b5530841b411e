//! mesh-cli: the `meshd` server and the `meshctl` client — their configuration and
//! subcommands, as a library so tests can drive them.
//!
//! # Layout
//! - [`config`]: [`config::MeshdConfig`], read from defaults, an optional TOML file, `MESHD_*`
//!   environment variables and command-line flags, in that order of precedence (last wins).
//! - [`cli`]: the clap command line.
//! - [`serve`]: the all-in-one role — database, bus and HTTP API in one process.
//! - [`workers_status`]: `meshd workers`, who owns which partition.
//! - [`worker_role`]: `meshd worker`, one of several processes sharing the partitions.
//! - [`setup`]: what every role needs first: the secret key, the store, the bus.
//! - [`local_token`]: the admin token printed once on a first start of the embedded
//!   default.
//! - [`sim`]: simulated clusters started and registered by `meshd --sim-clusters N`.
//! - [`telemetry`]: logs (text or JSON) and, when configured, trace export over OTLP/HTTP.
//! - [`metrics_observer`]: the worker's reports turned into meshd's `/metrics` series.
//! - [`meshctl`]: the `meshctl` client — commands, HTTP client, event stream, output, progress.
//!
//! With no configuration at all meshd runs on embedded defaults: a SQLite file and a key file in
//! the working directory, the in-process bus and HTTP on 127.0.0.1:9441.

pub mod cli;
pub mod config;
pub mod local_token;
pub mod meshctl;
pub mod metrics_observer;
pub mod serve;
pub mod setup;
pub mod sim;
pub mod telemetry;
pub mod worker_role;
pub mod workers_status;
