//! Where `meshctl` finds its server and token.
//!
//! Server: `--server` / `MESHCTL_SERVER`, else `server` in the config file, else
//! `http://127.0.0.1:9441`. Token: `--token` / `MESHCTL_TOKEN`, else `token` in the config file.
//! The config file is `$XDG_CONFIG_HOME/meshctl/config.toml` (default
//! `~/.config/meshctl/config.toml`), or the file named by `MESHCTL_CONFIG`; `meshctl login` writes
//! it, readable by its owner only.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

/// The server used when none is configured.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:9441";

/// The config file's contents.
#[derive(Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// meshd's base URL.
    pub server: Option<String>,
    /// An API token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl std::fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigFile")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// The resolved connection settings.
#[derive(Clone)]
pub struct Settings {
    /// meshd's base URL, without a trailing slash.
    pub server: String,
    /// The bearer token, if any.
    pub token: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// The config file's path: `MESHCTL_CONFIG`, else under `XDG_CONFIG_HOME` or `~/.config`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MESHCTL_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|p| !p.is_empty())
                .map(|home| PathBuf::from(home).join(".config"))
        })?;
    Some(base.join("meshctl").join("config.toml"))
}

fn read_config(path: &Path) -> Result<ConfigFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            Error::Input(format!(
                "invalid config file {}: {}",
                path.display(),
                e.message()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(source) => Err(Error::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes `server` and `token` to the config file at `path`, creating its directory; the file is
/// readable by its owner only, even when it existed before.
pub fn save(path: &Path, server: &str, token: &str) -> Result<()> {
    let io = |e: std::io::Error| Error::Input(format!("cannot write {}: {e}", path.display()));
    let text = toml::to_string(&ConfigFile {
        server: Some(server.to_owned()),
        token: Some(token.to_owned()),
    })
    .map_err(|e| Error::Input(format!("cannot write the config file: {e}")))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Resolves the settings from the flags (already merged with the environment by clap) and the
/// config file.
pub fn resolve(
    server: Option<String>,
    token: Option<String>,
    config: Option<&Path>,
) -> Result<Settings> {
    let file = match config {
        Some(path) => read_config(path)?,
        None => ConfigFile::default(),
    };
    let server = server
        .filter(|s| !s.trim().is_empty())
        .or(file.server)
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let server = server.trim().trim_end_matches('/').to_owned();
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        return Err(Error::Input(format!(
            "invalid server {server:?}: use an http:// or https:// URL (--server / MESHCTL_SERVER)"
        )));
    }
    let token = match token.filter(|t| !t.trim().is_empty()) {
        Some(token) => Some(token.trim().to_owned()),
        None => file
            .token
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()),
    };
    Ok(Settings { server, token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            "server = \"http://h:1/\"\ntoken = \"from-config\"\n",
        )
        .expect("write");
        let flags = resolve(
            Some("http://x:2".into()),
            Some("from-flag".into()),
            Some(&config),
        )
        .expect("valid");
        assert_eq!(flags.server, "http://x:2");
        assert_eq!(flags.token.as_deref(), Some("from-flag"));
        let file = resolve(None, None, Some(&config)).expect("valid");
        assert_eq!(file.server, "http://h:1");
        assert_eq!(file.token.as_deref(), Some("from-config"));
    }

    #[test]
    fn without_anything_the_local_default_is_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("none.toml");
        let settings = resolve(None, None, Some(&missing)).expect("valid");
        assert_eq!(settings.server, DEFAULT_SERVER);
        assert!(settings.token.is_none());
        assert!(resolve(Some("ftp://x".into()), None, None).is_err());
    }

    #[test]
    fn a_saved_config_is_private_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meshctl").join("config.toml");
        save(&path, "http://h:3", "mmt_saved").expect("saved");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the config file is private");
        }
        let settings = resolve(None, None, Some(&path)).expect("valid");
        assert_eq!(settings.server, "http://h:3");
        assert_eq!(settings.token.as_deref(), Some("mmt_saved"));
    }

    #[test]
    fn settings_never_show_the_token() {
        let settings = Settings {
            server: DEFAULT_SERVER.into(),
            token: Some("mmt_secret".into()),
        };
        assert!(!format!("{settings:?}").contains("mmt_secret"));
        let file = ConfigFile {
            server: None,
            token: Some("mmt_secret".into()),
        };
        assert!(!format!("{file:?}").contains("mmt_secret"));
    }
}
