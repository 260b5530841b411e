//! `meshctl`: the command-line client of mesh-manager, kubectl-like.
//!
//! # Layout
//! - [`args`]: the clap command line (`login`, `cluster`, `mesh`, `apply`, `events`, `flows`,
//!   `completion`, …).
//! - [`settings`]: where the server and token come from (flags, environment,
//!   `~/.config/meshctl/config.toml`, written by `meshctl login`).
//! - [`client`]: HTTP to meshd's REST API; the `{"result","err","data"}` envelope in, data out.
//! - [`sse`]: the server-sent event parser and the event a frame carries.
//! - [`feed`]: a mesh's event stream followed in the background, resumed when it drops.
//! - [`progress`]: `--wait`: per-cluster and overall progress from the event stream, and the
//!   outcome.
//! - [`output`]: tables, JSON and YAML.
//! - [`cmd`]: one module per command family.
//!
//! Every failure ends as one line `meshctl: <message>` on stderr and exit code 1.

pub mod args;
pub mod client;
pub mod cmd;
pub mod error;
pub mod feed;
pub mod output;
pub mod progress;
pub mod settings;
pub mod sse;

use args::{Cli, Command};
use client::ApiClient;
use error::Result;

/// Runs one `meshctl` invocation.
pub async fn run(cli: Cli) -> Result<()> {
    let format = cli.global.output;
    if let Command::Completion { shell } = cli.command {
        use clap::CommandFactory;
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "meshctl",
            &mut std::io::stdout(),
        );
        return Ok(());
    }
    let config = settings::config_path();
    if let Command::Login = cli.command {
        return cmd::login::login(&cli.global, config.as_deref()).await;
    }
    let settings = settings::resolve(
        cli.global.server.clone(),
        cli.global.token.clone(),
        config.as_deref(),
    )?;
    let client = ApiClient::new(settings)?;
    match cli.command {
        Command::Cluster(command) => cmd::cluster::run(&client, format, command).await,
        Command::Mesh(command) => cmd::mesh::run(&client, format, command).await,
        Command::Apply {
            file,
            mesh,
            namespace,
            cluster,
            dry_run,
            diff,
            wait,
        } => {
            let options = cmd::apply::ApplyOptions {
                namespace,
                cluster,
                dry_run: dry_run || diff,
                diff,
                delete: false,
            };
            cmd::apply::apply(&client, format, &file, &mesh, &options, &wait).await
        }
        Command::Delete {
            file,
            mesh,
            namespace,
            cluster,
            dry_run,
            wait,
        } => {
            let options = cmd::apply::ApplyOptions {
                namespace,
                cluster,
                dry_run,
                diff: false,
                delete: true,
            };
            cmd::apply::apply(&client, format, &file, &mesh, &options, &wait).await
        }
        Command::Resources { mesh, namespace } => {
            cmd::apply::list(&client, format, &mesh, namespace.as_deref()).await
        }
        Command::Services {
            mesh,
            namespace,
            name,
        } => cmd::services::show(&client, format, &mesh, &namespace, name.as_deref()).await,
        Command::Events { mesh, follow } => {
            cmd::events::events(&client, format, &mesh, follow).await
        }
        Command::Flows { mesh, id } => cmd::events::flows(&client, format, &mesh, id).await,
        Command::Completion { .. } | Command::Login => Ok(()),
    }
}
