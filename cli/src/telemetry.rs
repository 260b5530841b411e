//! Logs and traces of meshd: a `tracing` subscriber writing text or JSON lines to stderr, and,
//! when an OTLP endpoint is configured, every span exported to that collector over OTLP/HTTP
//! (JSON encoding, batched) with the resource attribute `service.name=meshd`.
//!
//! Input: the log format, the `MESHD_LOG` filter and the optional endpoint. Output: the global
//! subscriber, and a [`Telemetry`] guard that flushes the exporter when meshd stops.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The service name traces carry.
pub const SERVICE_NAME: &str = "meshd";

/// Keeps the trace exporter alive; flushes and stops it when dropped.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("meshd: traces not flushed: {error}");
        }
    }
}

/// The traces URL of a collector: `<endpoint>/v1/traces` unless the endpoint already names it.
fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

/// Installs the global subscriber: logs in `format` (`text` or `json`), and traces to
/// `otlp_endpoint` when one is given.
pub fn init(format: &str, otlp_endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_env("MESHD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = match otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpJson)
                .with_endpoint(traces_url(endpoint))
                .build()
                .map_err(|e| anyhow::anyhow!("cannot export traces to {endpoint}: {e}"))?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
                    .build(),
            )
        }
        None => None,
    };
    let traces = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer(SERVICE_NAME)));
    let registry = tracing_subscriber::registry().with(filter).with(traces);
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if format == "json" {
        registry.with(logs.json()).init();
    } else {
        registry.with(logs).init();
    }
    Ok(Telemetry { provider })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(
            traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/v1/traces/"),
            "http://collector:4318/v1/traces"
        );
    }
}
