//! TLS for the simulated API servers.
//!
//! One self-signed CA and one server certificate (SANs `127.0.0.1`, `localhost`) per process,
//! shared by every cluster. kubectl (client-go) never sends a bearer token over plain HTTP, so
//! clusters serve HTTPS by default and their kubeconfigs carry the CA as
//! `certificate-authority-data`.

use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// The process-wide TLS material.
pub struct Tls {
    /// PEM of the CA that signed the server certificate.
    pub ca_pem: String,
    /// Acceptor for incoming connections.
    pub acceptor: TlsAcceptor,
}

fn build() -> anyhow::Result<Tls> {
    let ca_key = KeyPair::generate().context("CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mesh-sim CA");
    let ca = ca_params.self_signed(&ca_key).context("CA certificate")?;
    let key = KeyPair::generate().context("server key")?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .context("server params")?;
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .context("server certificate")?;
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS versions")?
    .with_no_client_auth()
    .with_single_cert(chain, key_der)
    .context("server TLS config")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        ca_pem: ca.pem(),
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}

/// The shared TLS material, generated on first use.
pub fn tls() -> anyhow::Result<&'static Tls> {
    static TLS: OnceLock<Result<Tls, String>> = OnceLock::new();
    TLS.get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("generating TLS material: {e}"))
}
