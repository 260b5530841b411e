//! The registration probe: can mesh-manager reach the cluster, is it who it claims, and may it do
//! what installing a mesh needs?
//!
//! Steps, each with a finding a person can act on: the API server answers `/version` (reachable,
//! credentials accepted), namespaces can be listed (basic read permission), and the Sail Operator's
//! `Istio` CRD is installed (mesh-manager installs Istio through it).

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;

use crate::client::client_for;
use crate::credentials::ClusterCredentials;
use crate::rate_limit::RateLimit;

/// The CRD mesh-manager installs Istio through.
pub const SAIL_ISTIO_CRD: &str = "istios.sailoperator.io";

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReport {
    /// `Reachable` when every check passed, otherwise the first failing check's status.
    pub status: ProbeStatus,
    /// What was found, for people.
    pub message: String,
    /// Kubernetes version the server reported, when reachable.
    pub kubernetes_version: Option<String>,
}

/// Outcome classes of the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ProbeStatus {
    /// Every check passed.
    Reachable,
    /// No answer from the server (refused, timed out, DNS, TLS).
    Unreachable,
    /// The server refused the credentials (401).
    Unauthorized,
    /// The credentials lack a permission (403).
    Forbidden,
    /// Reachable and allowed, but the Sail Operator is missing.
    MissingSailOperator,
}

impl ProbeStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reachable => "Reachable",
            Self::Unreachable => "Unreachable",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden => "Forbidden",
            Self::MissingSailOperator => "MissingSailOperator",
        }
    }
}

fn classify(error: &kube::Error) -> ProbeStatus {
    match error {
        kube::Error::Api(status) if status.code == 401 => ProbeStatus::Unauthorized,
        kube::Error::Api(status) if status.code == 403 => ProbeStatus::Forbidden,
        _ => ProbeStatus::Unreachable,
    }
}

fn failure(
    status: ProbeStatus,
    step: &str,
    server: &str,
    error: &kube::Error,
    version: Option<String>,
) -> ProbeReport {
    let hint = match status {
        ProbeStatus::Unauthorized => "the token or certificate was rejected; check it is current",
        ProbeStatus::Forbidden => "grant the account cluster-admin or the mesh-manager ClusterRole",
        _ => "check the server address, network path and TLS settings",
    };
    ProbeReport {
        status,
        message: format!("{step} on {server} failed: {error}; {hint}"),
        kubernetes_version: version,
    }
}

/// Probes a cluster.
pub async fn probe(credentials: &ClusterCredentials) -> ProbeReport {
    let server = credentials.server();
    let client = match client_for(credentials, RateLimit::default()).await {
        Ok(client) => client,
        Err(e) => {
            return ProbeReport {
                status: ProbeStatus::Unreachable,
                message: e.to_string(),
                kubernetes_version: None,
            };
        }
    };
    let version = match client.apiserver_version().await {
        Ok(info) => info.git_version,
        Err(e) => return failure(classify(&e), "GET /version", server, &e, None),
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if let Err(e) = namespaces
        .list_metadata(&ListParams::default().limit(1))
        .await
    {
        return failure(
            classify(&e),
            "listing namespaces",
            server,
            &e,
            Some(version),
        );
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    match crds.get_opt(SAIL_ISTIO_CRD).await {
        Ok(Some(_)) => ProbeReport {
            status: ProbeStatus::Reachable,
            message: format!("reachable, Kubernetes {version}, Sail Operator installed"),
            kubernetes_version: Some(version),
        },
        Ok(None) => ProbeReport {
            status: ProbeStatus::MissingSailOperator,
            message: format!(
                "reachable, Kubernetes {version}, but CRD {SAIL_ISTIO_CRD} is missing: install the Sail Operator first"
            ),
            kubernetes_version: Some(version),
        },
        Err(e) => failure(
            classify(&e),
            "reading CRD istios.sailoperator.io",
            server,
            &e,
            Some(version),
        ),
    }
}
