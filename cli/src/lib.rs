//! mesh-cli: the `meshd` binary's configuration and subcommands, as a library so tests can
//! drive them.
//!
//! # Layout
//! - [`config`]: [`config::MeshdConfig`], read from defaults, an optional TOML file, `MESHD_*`
//!   environment variables and command-line flags, in that order of precedence (last wins).
//! - [`cli`]: the clap command line.
//! - [`serve`]: the all-in-one role — database, bus and HTTP API in one process.
//! - [`setup`]: what every role needs first: the secret key, the store, the bus.
//!
//! With no configuration at all meshd runs on embedded defaults: a SQLite file and a key file in
//! the working directory, the in-process bus and HTTP on 127.0.0.1:9441.

pub mod cli;
pub mod config;
pub mod serve;
pub mod setup;
