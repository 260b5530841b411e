//! `meshctl login`: checks a token against meshd and keeps it, with the server, in meshctl's
//! config file (owner-only), so later commands need neither flag nor environment.
//!
//! Input: the token from `--token` / `MESHCTL_TOKEN`, else the first line of stdin (so it need not
//! appear in the shell history); the server from `--server` / `MESHCTL_SERVER` or the config file.
//! The token is checked with an authenticated read before anything is written; it is never
//! printed.

use std::io::BufRead;
use std::path::Path;

use crate::meshctl::args::GlobalArgs;
use crate::meshctl::client::ApiClient;
use crate::meshctl::error::{Error, Result};
use crate::meshctl::settings;

/// Runs `meshctl login`.
pub async fn login(global: &GlobalArgs, config: Option<&Path>) -> Result<()> {
    let config = config.ok_or_else(|| {
        Error::Input(
            "no config file location: set MESHCTL_CONFIG, XDG_CONFIG_HOME or HOME".to_owned(),
        )
    })?;
    let token = match global.token.clone().filter(|t| !t.trim().is_empty()) {
        Some(token) => token,
        None => read_token_line(&mut std::io::stdin().lock())?,
    };
    let resolved = settings::resolve(global.server.clone(), Some(token), Some(config))?;
    let client = ApiClient::new(resolved.clone())?;
    client.get("/clusters").await?;
    let token = resolved.token.unwrap_or_default();
    settings::save(config, &resolved.server, &token)?;
    println!(
        "logged in to {}; server and token kept in {}",
        resolved.server,
        config.display()
    );
    Ok(())
}

/// The first line of `input`, trimmed; an error when it holds no token.
fn read_token_line(input: &mut dyn BufRead) -> Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| Error::Input(format!("cannot read the token from stdin: {e}")))?;
    let token = line.trim();
    if token.is_empty() {
        return Err(Error::Input(
            "no token: give one with --token / MESHCTL_TOKEN or on stdin (meshd prints \
             `admin token: …` on its first start; `meshd token create` makes more)"
                .to_owned(),
        ));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_first_line_of_stdin_and_an_empty_one_is_refused() {
        let mut input: &[u8] = b"  mmt_abc \nrest\n";
        assert_eq!(read_token_line(&mut input).expect("read"), "mmt_abc");
        let mut empty: &[u8] = b"\n";
        let error = read_token_line(&mut empty).expect_err("refused");
        assert!(error.to_string().contains("no token"), "{error}");
    }
}
