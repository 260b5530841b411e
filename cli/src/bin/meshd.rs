//! `meshd`: the mesh-manager server. See `meshd --help`.

use std::process::ExitCode;

use clap::Parser;
use mesh_cli::cli::{Cli, Command, TokenAction};
use mesh_cli::config::MeshdConfig;
use mesh_cli::serve::run_all_in_one;
use mesh_schema::SecretKey;

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = MeshdConfig::load(&cli.global)?;
    let _telemetry =
        mesh_cli::telemetry::init(&config.log_format, config.otlp_endpoint.as_deref())?;
    match cli.command.unwrap_or(Command::AllInOne) {
        Command::AllInOne => run_all_in_one(config).await,
        Command::Worker {
            worker_id,
            lease_ttl,
            ack_wait,
        } => mesh_cli::worker_role::run_worker(config, worker_id, lease_ttl, ack_wait).await,
        Command::Workers { json } => mesh_cli::workers_status::print_workers(&config, json).await,
        Command::Migrate => {
            let target = config.database()?;
            let applied = tokio::task::spawn_blocking(move || target.migrate()).await??;
            if applied.is_empty() {
                println!("database {} is up to date", config.database()?);
            } else {
                println!(
                    "applied {} migration(s) to {}: {}",
                    applied.len(),
                    config.database()?,
                    applied.join(", ")
                );
            }
            Ok(())
        }
        Command::Keygen { out } => {
            let key = SecretKey::generate();
            key.write_new(&out)?;
            println!(
                "wrote a new secret key to {} (key id {}, mode 0600)",
                out.display(),
                key.id()
            );
            Ok(())
        }
        Command::Config => {
            print!("{}", config.redacted_toml()?);
            Ok(())
        }
        Command::Token { action } => run_token(&config, action).await,
        Command::Sim { clusters, out } => {
            anyhow::ensure!(
                (1..=500).contains(&clusters),
                "--clusters must be between 1 and 500"
            );
            mesh_sim::run_standalone(mesh_sim::StandaloneOptions {
                clusters,
                out_dir: out.unwrap_or_else(|| std::path::PathBuf::from(".")),
                ..mesh_sim::StandaloneOptions::default()
            })
            .await
        }
    }
}

/// `meshd token create|list|revoke` against the configured database.
async fn run_token(config: &MeshdConfig, action: TokenAction) -> anyhow::Result<()> {
    use mesh_schema::store::token::{NewApiToken, TokenRole};
    let store = mesh_cli::setup::open_store(config).await?;
    match action {
        TokenAction::Create {
            tenant,
            role,
            principal,
        } => {
            let tenant = mesh_core::TenantId::new(tenant)?;
            let role: TokenRole = role.parse()?;
            let principal = principal.unwrap_or_else(|| format!("token:{tenant}-{role}"));
            let issued = store
                .create_api_token(NewApiToken {
                    principal,
                    tenant,
                    role,
                })
                .await?;
            eprintln!(
                "token {} for {} (tenant {}, role {}); it is shown only now:",
                issued.record.id,
                issued.record.principal,
                issued.record.tenant_id,
                issued.record.role
            );
            println!("{}", issued.token);
        }
        TokenAction::List => {
            println!(
                "{:<6} {:<12} {:<8} {:<20} {:<10} PRINCIPAL",
                "ID", "TENANT", "ROLE", "CREATED", "STATE"
            );
            for token in store.list_api_tokens().await? {
                let state = if token.revoked_at.is_some() {
                    "revoked"
                } else {
                    "valid"
                };
                println!(
                    "{:<6} {:<12} {:<8} {:<20} {:<10} {}",
                    token.id,
                    token.tenant_id,
                    token.role,
                    token.created_at.format("%Y-%m-%d %H:%M:%S"),
                    state,
                    token.principal
                );
            }
        }
        TokenAction::Revoke { id } => {
            let token = store.revoke_api_token(id).await?;
            println!("token {} of {} is revoked", token.id, token.principal);
        }
    }
    Ok(())
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line: what failed first, then what to do about it.
            let chain: Vec<String> = error
                .chain()
                .rev()
                .map(|cause| {
                    cause
                        .to_string()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            eprintln!("meshd: error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}
