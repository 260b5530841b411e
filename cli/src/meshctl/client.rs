//! The HTTP client of `meshctl`: the API's envelope in, [`serde_json::Value`] data out.
//!
//! Every request carries `Authorization: Bearer <token>` when a token is configured. An answer
//! `{"result":false,"err":…}` becomes [`Error::Api`] with the server's message; a refused
//! connection becomes [`Error::Connect`] naming the server.

use std::time::Duration;

use serde_json::Value;

use super::error::{Error, Result};
use super::settings::Settings;

/// The API's base path.
pub const BASE_PATH: &str = "/apis/v1/mesh";
/// How long one ordinary request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A client of one meshd.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    settings: Settings,
}

impl ApiClient {
    /// A client for `settings`.
    pub fn new(settings: Settings) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("meshctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::protocol("cannot build the HTTP client", e))?;
        Ok(Self { http, settings })
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        &self.settings.server
    }

    /// The full URL of an API path (`/meshes/demo`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{BASE_PATH}{path}", self.settings.server)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, self.url(path));
        match &self.settings.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    fn connect_error(&self, error: &reqwest::Error) -> Error {
        if error.is_connect() || error.is_timeout() {
            // The innermost cause says why (refused, unreachable, …); the outer ones repeat the URL.
            let mut cause: &dyn std::error::Error = error;
            while let Some(next) = cause.source() {
                cause = next;
            }
            Error::Connect {
                server: self.settings.server.clone(),
                reason: cause.to_string(),
            }
        } else {
            Error::protocol(format!("request to {} failed", self.settings.server), error)
        }
    }

    /// Sends a request and returns the envelope's `data` (and `rev`).
    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<Value> {
        let response = builder
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| self.connect_error(&e))?;
        let status = response.status();
        let url = response.url().path().to_owned();
        let body = response.bytes().await.map_err(|e| self.connect_error(&e))?;
        envelope_data(status.as_u16(), &url, &body)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    /// `POST path` with a text body (YAML or JSON objects).
    pub async fn post_text(&self, path: &str, body: String) -> Result<Value> {
        self.send(
            self.request(reqwest::Method::POST, path)
                .header(reqwest::header::CONTENT_TYPE, "application/yaml")
                .body(body),
        )
        .await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<Value> {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// Opens a server-sent event stream at `path`, resuming after `last_event_id` when given.
    pub async fn open_stream(
        &self,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<reqwest::Response> {
        let mut builder = self
            .request(reqwest::Method::GET, path)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            builder = builder.header("Last-Event-ID", id);
        }
        let response = builder.send().await.map_err(|e| self.connect_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let url = response.url().path().to_owned();
        let body = response.bytes().await.map_err(|e| self.connect_error(&e))?;
        Err(envelope_data(status.as_u16(), &url, &body)
            .err()
            .unwrap_or_else(|| Error::protocol(format!("GET {url}"), format!("HTTP {status}"))))
    }
}

/// The `data` of an envelope, or the error it carries.
pub fn envelope_data(status: u16, path: &str, body: &[u8]) -> Result<Value> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let ok = (200..300).contains(&status);
    match parsed {
        Some(Value::Object(mut envelope)) if envelope.contains_key("result") => {
            let result = envelope.get("result").and_then(Value::as_bool) == Some(true);
            if ok && result {
                return Ok(envelope.remove("data").unwrap_or(Value::Null));
            }
            let err = envelope
                .get("err")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map_or_else(|| format!("HTTP {status} from {path}"), str::to_owned);
            let message = if status == 401 {
                format!(
                    "{err} (give a token with --token / MESHCTL_TOKEN, or keep one with `meshctl login`)"
                )
            } else {
                err
            };
            Err(Error::Api { status, message })
        }
        _ => Err(Error::protocol(
            format!("unexpected answer from {path}"),
            format!("HTTP {status}, not the API's JSON envelope"),
        )),
    }
}

/// Percent-encodes one path segment (names are DNS labels, but a typo must not change the route).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_envelope_becomes_its_message() {
        let error = envelope_data(
            403,
            "/x",
            br#"{"result":false,"err":"token:t has the viewer role","rev":0,"data":null}"#,
        )
        .expect_err("forbidden");
        assert_eq!(error.to_string(), "token:t has the viewer role");
        let data = envelope_data(200, "/x", br#"{"result":true,"err":"","rev":3,"data":[1]}"#)
            .expect("ok");
        assert_eq!(data, serde_json::json!([1]));
        assert!(envelope_data(502, "/x", b"<html>").is_err());
    }

    #[test]
    fn a_missing_token_says_how_to_give_one() {
        let error = envelope_data(401, "/x", br#"{"result":false,"err":"no token"}"#)
            .expect_err("unauthorized");
        assert!(error.to_string().contains("MESHCTL_TOKEN"), "{error}");
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("demo-1"), "demo-1");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
