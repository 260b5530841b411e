//! meshd's configuration.
//!
//! Sources, later ones winning: built-in defaults, the TOML file named by `--config` /
//! `MESHD_CONFIG`, environment variables `MESHD_<FIELD>` (nested fields with `__`, e.g.
//! `MESHD_BUS__PARTITIONS`), then command-line flags. The defaults run out of the box: SQLite in
//! the working directory, the in-process bus, HTTP on 127.0.0.1:9441.

use std::path::PathBuf;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use mesh_core::{TenantId, VersionCatalog};
use mesh_schema::DatabaseTarget;
use serde::{Deserialize, Serialize};

use crate::cli::GlobalArgs;

/// The database used when none is configured.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://meshd.db";
/// Where the HTTP API listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9441";
/// The tenant of simulated clusters and of the local admin token by default.
pub const DEFAULT_SIM_TENANT: &str = "default";
/// Most flows one worker may be told to run at once (each may hold a database connection and
/// cluster requests; beyond this a worker should be split into more workers).
pub const MAX_CONCURRENT_FLOWS: usize = 4096;
/// Most simulated clusters one meshd starts.
pub const MAX_SIM_CLUSTERS: usize = 100;

/// Everything meshd can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshdConfig {
    /// Database URL (`mysql://…` or `sqlite://…`).
    pub database_url: String,
    /// NATS URL; empty or absent means the in-process bus.
    pub nats_url: Option<String>,
    /// Key file sealing secrets at rest; defaults to `meshd.key` for the embedded SQLite default
    /// and must be given for any other database.
    pub secret_key_file: Option<PathBuf>,
    /// HTTP listen address.
    pub listen: String,
    /// Apply pending migrations at start.
    pub auto_migrate: bool,
    /// Database connections per process.
    pub database_pool_size: u32,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// `text` or `json`.
    pub log_format: String,
    /// OTLP/HTTP collector (`http://collector:4318`) meshd exports its traces to; none: no export.
    pub otlp_endpoint: Option<String>,
    /// Bus settings.
    pub bus: BusSettings,
    /// Version catalog override.
    pub catalog: CatalogSettings,
    /// How hard workers may drive each member cluster's API server.
    pub clusters: mesh_clusters::RateLimit,
    /// Most flows one worker runs at once over all the meshes it owns; later ones wait, accepted.
    pub max_concurrent_flows: usize,
    /// Simulated clusters the all-in-one role starts in process and registers (0: none).
    pub sim_clusters: usize,
    /// Tenant of the simulated clusters and of the local admin token made on first start.
    pub sim_tenant: String,
}

/// Bus settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSettings {
    /// First token of every subject.
    pub root: String,
    /// Number of command partitions (fixed once the command stream exists).
    pub partitions: u32,
}

/// Which Istio versions may be installed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSettings {
    /// Explicit list of versions; replaces the built-in catalog when set.
    pub versions: Option<Vec<String>>,
    /// A Sail Operator `versions.yaml` to read instead of the built-in one.
    pub file: Option<PathBuf>,
}

impl Default for MeshdConfig {
    fn default() -> Self {
        Self {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            nats_url: None,
            secret_key_file: None,
            listen: DEFAULT_LISTEN.to_owned(),
            auto_migrate: true,
            database_pool_size: 16,
            body_limit_bytes: 1024 * 1024,
            log_format: "text".to_owned(),
            otlp_endpoint: None,
            bus: BusSettings {
                root: "mesh".to_owned(),
                partitions: 32,
            },
            catalog: CatalogSettings::default(),
            clusters: mesh_clusters::RateLimit::default(),
            max_concurrent_flows: mesh_actors::flow::DEFAULT_MAX_CONCURRENT_FLOWS,
            sim_clusters: 0,
            sim_tenant: DEFAULT_SIM_TENANT.to_owned(),
        }
    }
}

/// Command-line values that override the other sources (absent flags override nothing).
#[derive(Serialize)]
struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nats_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    otlp_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sim_clusters: Option<usize>,
}

impl MeshdConfig {
    /// Reads the configuration from every source.
    pub fn load(args: &GlobalArgs) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        if let Some(path) = &args.config {
            anyhow::ensure!(
                path.is_file(),
                "config file {} does not exist (set by --config or MESHD_CONFIG)",
                path.display()
            );
            figment = figment.merge(Toml::file(path));
        }
        figment = figment
            .merge(
                Env::prefixed("MESHD_")
                    .ignore(&["CONFIG", "LOG"])
                    .split("__")
                    .map(|key| key.as_str().to_ascii_lowercase().into()),
            )
            .merge(Serialized::defaults(FlagOverrides {
                database_url: args.database_url.clone(),
                nats_url: args.nats_url.clone(),
                secret_key_file: args.secret_key_file.clone(),
                listen: args.listen.clone(),
                log_format: args.log_format.clone(),
                otlp_endpoint: args.otlp_endpoint.clone(),
                sim_clusters: args.sim_clusters,
            }));
        let config: Self = figment.extract().map_err(|e| {
            anyhow::anyhow!("invalid configuration: {}", first_line(&e.to_string()))
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.database()?;
        anyhow::ensure!(
            matches!(self.log_format.as_str(), "text" | "json"),
            "invalid log format {:?}: use text or json",
            self.log_format
        );
        if let Some(endpoint) = &self.otlp_endpoint {
            anyhow::ensure!(
                (endpoint.starts_with("http://") || endpoint.starts_with("https://"))
                    && !endpoint.chars().any(char::is_whitespace),
                "invalid OTLP endpoint {:?}: use the collector's http:// or https:// URL (e.g. http://127.0.0.1:4318); set --otlp-endpoint / MESHD_OTLP_ENDPOINT",
                endpoint.chars().take(80).collect::<String>()
            );
        }
        anyhow::ensure!(
            (1..=1024).contains(&self.bus.partitions),
            "bus partitions must be between 1 and 1024, got {}",
            self.bus.partitions
        );
        anyhow::ensure!(
            self.database_pool_size >= 1,
            "database_pool_size must be at least 1"
        );
        self.catalog()?;
        self.clusters.validate().map_err(|reason| {
            anyhow::anyhow!(
                "{reason}: set [clusters] qps and burst / MESHD_CLUSTERS__QPS, MESHD_CLUSTERS__BURST"
            )
        })?;
        anyhow::ensure!(
            (1..=MAX_CONCURRENT_FLOWS).contains(&self.max_concurrent_flows),
            "max_concurrent_flows must be between 1 and {MAX_CONCURRENT_FLOWS}, got {}: set max_concurrent_flows / MESHD_MAX_CONCURRENT_FLOWS",
            self.max_concurrent_flows
        );
        anyhow::ensure!(
            self.sim_clusters <= MAX_SIM_CLUSTERS,
            "sim_clusters must be at most {MAX_SIM_CLUSTERS}, got {}: set --sim-clusters / MESHD_SIM_CLUSTERS",
            self.sim_clusters
        );
        self.tenant()?;
        Ok(())
    }

    /// The tenant of simulated clusters and of the local admin token.
    pub fn tenant(&self) -> anyhow::Result<TenantId> {
        TenantId::new(self.sim_tenant.as_str()).with_context(|| {
            format!(
                "invalid sim_tenant {:?}: set MESHD_SIM_TENANT to a DNS-1123 label",
                self.sim_tenant
            )
        })
    }

    /// The parsed database target.
    pub fn database(&self) -> anyhow::Result<DatabaseTarget> {
        Ok(DatabaseTarget::parse(&self.database_url)?)
    }

    /// The NATS URL, if a real bus is configured.
    pub fn nats(&self) -> Option<&str> {
        self.nats_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }

    /// The version catalog: the configured list or file, else the built-in one.
    pub fn catalog(&self) -> anyhow::Result<VersionCatalog> {
        if let Some(versions) = &self.catalog.versions {
            return VersionCatalog::from_strings(versions).context("invalid catalog.versions");
        }
        if let Some(path) = &self.catalog.file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read catalog file {}", path.display()))?;
            return VersionCatalog::from_sail_yaml(&text)
                .with_context(|| format!("invalid catalog file {}", path.display()));
        }
        Ok(VersionCatalog::builtin())
    }

    /// The configuration as TOML with passwords hidden (for `meshd config`).
    pub fn redacted_toml(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        shown.database_url = self.database()?.to_string();
        shown.nats_url = self
            .nats_url
            .as_deref()
            .map(mesh_schema::database::redact_url);
        toml_string(&shown)
    }
}

fn toml_string(config: &MeshdConfig) -> anyhow::Result<String> {
    let value = serde_json::to_value(config)?;
    let mut out = String::new();
    let mut tables = Vec::new();
    if let serde_json::Value::Object(map) = value {
        for (key, value) in map {
            match value {
                serde_json::Value::Null => {}
                serde_json::Value::Object(inner) => tables.push((key, inner)),
                other => out.push_str(&format!("{key} = {other}\n")),
            }
        }
    }
    for (name, table) in tables {
        out.push_str(&format!("\n[{name}]\n"));
        for (key, value) in table {
            if !value.is_null() {
                out.push_str(&format!("{key} = {value}\n"));
            }
        }
    }
    Ok(out)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_out_of_the_box() {
        let config = MeshdConfig::default();
        assert!(config.database().expect("valid").is_sqlite());
        assert_eq!(config.listen, "127.0.0.1:9441");
        assert!(config.nats().is_none());
        assert!(config.validate().is_ok());
    }

    #[test]
    fn flags_override_defaults() {
        let args = GlobalArgs {
            database_url: Some("mysql://root@127.0.0.1:3306/x".into()),
            listen: Some("127.0.0.1:1".into()),
            ..GlobalArgs::default()
        };
        let config = MeshdConfig::load(&args).expect("valid");
        assert!(!config.database().expect("valid").is_sqlite());
        assert_eq!(config.listen, "127.0.0.1:1");
    }

    #[test]
    fn invalid_settings_are_refused_with_the_fix() {
        let config = MeshdConfig {
            log_format: "xml".into(),
            ..MeshdConfig::default()
        };
        assert!(
            config
                .validate()
                .expect_err("bad")
                .to_string()
                .contains("text or json")
        );
        let mut config = MeshdConfig::default();
        config.catalog.versions = Some(vec!["not-a-version".into()]);
        assert!(config.validate().is_err());
        let config = MeshdConfig {
            sim_clusters: MAX_SIM_CLUSTERS + 1,
            ..MeshdConfig::default()
        };
        assert!(
            config
                .validate()
                .expect_err("too many")
                .to_string()
                .contains("--sim-clusters")
        );
        let config = MeshdConfig {
            sim_tenant: "Not A Tenant".into(),
            ..MeshdConfig::default()
        };
        assert!(config.validate().is_err());
        for flows in [0, MAX_CONCURRENT_FLOWS + 1] {
            let config = MeshdConfig {
                max_concurrent_flows: flows,
                ..MeshdConfig::default()
            };
            let error = config.validate().expect_err("out of range").to_string();
            assert!(error.contains("MESHD_MAX_CONCURRENT_FLOWS"), "{error}");
            assert!(error.contains(&format!("got {flows}")), "{error}");
        }
    }

    #[test]
    fn the_sim_cluster_flag_overrides_the_default() {
        let args = GlobalArgs {
            sim_clusters: Some(3),
            ..GlobalArgs::default()
        };
        let config = MeshdConfig::load(&args).expect("valid");
        assert_eq!(config.sim_clusters, 3);
        assert_eq!(config.sim_tenant, "default");
    }

    #[test]
    fn redacted_config_hides_passwords() {
        let config = MeshdConfig {
            database_url: "mysql://root:hunter2@db:3306/tke_mesh".into(),
            ..MeshdConfig::default()
        };
        let shown = config.redacted_toml().expect("toml");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[bus]"));
    }
}
