//! The east-west gateway of a cluster and the Istio objects that expose services and istiod
//! through it.
//!
//! Inputs: the mesh spec, the member, the active revision. Outputs, in apply order:
//! - ServiceAccount, Deployment and Service `istio-eastwestgateway` (type LoadBalancer; ports
//!   15021 status, 15443 cross-network mTLS, 15012 istiod XDS/CA, 15017 istiod webhooks). The pods
//!   are ordinary Envoy gateways injected from the `gateway` template (image `auto`), asking for
//!   the view of their own network (`ISTIO_META_REQUESTED_NETWORK_VIEW`). istiod recognises the
//!   Service as its network's gateway by the `topology.istio.io/network` label.
//! - Gateway `cross-network-gateway`: port 15443, `AUTO_PASSTHROUGH` for `*.local`, so mTLS traffic
//!   from other networks is routed by SNI without terminating it.
//! - On the primary of a primary-remote mesh: Gateway `istiod-gateway` (15012 and 15017,
//!   `PASSTHROUGH`) and VirtualService `istiod-vs` sending them to istiod (15012, and 443 for the
//!   webhook), so remotes reach the control plane through the gateway.

use serde_json::{Value, json};

use super::control_plane::{NETWORK_LABEL, REVISION_LABEL};
use super::object::DesiredObject;
use super::{UpdateStrategy, istiod_service};
use crate::spec::{ISTIO_NAMESPACE, MemberSpec, MeshSpec};

/// Name of the gateway Deployment and Service.
pub const EAST_WEST_GATEWAY: &str = "istio-eastwestgateway";
/// Name of the gateway's ServiceAccount.
pub const EAST_WEST_SERVICE_ACCOUNT: &str = "istio-eastwestgateway-service-account";
/// The `istio` label value selecting the gateway pods.
pub const EAST_WEST_SELECTOR: &str = "eastwestgateway";
/// Name of the Gateway exposing services across networks.
pub const CROSS_NETWORK_GATEWAY: &str = "cross-network-gateway";
/// Name of the Gateway exposing istiod.
pub const ISTIOD_GATEWAY: &str = "istiod-gateway";
/// Name of the VirtualService routing to istiod.
pub const ISTIOD_VIRTUAL_SERVICE: &str = "istiod-vs";

/// Port of the gateway's health endpoint.
pub const STATUS_PORT: u16 = 15021;
/// Port of cross-network mTLS traffic.
pub const TLS_PORT: u16 = 15443;
/// Port of istiod's XDS and CA.
pub const ISTIOD_PORT: u16 = 15012;
/// Port of istiod's webhooks on the gateway.
pub const WEBHOOK_PORT: u16 = 15017;

/// The gateway's Service ports: (name, port).
const SERVICE_PORTS: [(&str, u16); 4] = [
    ("status-port", STATUS_PORT),
    ("tls", TLS_PORT),
    ("tls-istiod", ISTIOD_PORT),
    ("tls-webhook", WEBHOOK_PORT),
];

/// Labels selecting the gateway pods (kept free of the network, so the selector, which is
/// immutable, never has to change).
fn selector() -> Value {
    json!({"app": EAST_WEST_GATEWAY, "istio": EAST_WEST_SELECTOR})
}

fn gateway_labels(member: &MemberSpec) -> [(&'static str, &str); 3] {
    [
        ("app", EAST_WEST_GATEWAY),
        ("istio", EAST_WEST_SELECTOR),
        (NETWORK_LABEL, member.network_name()),
    ]
}

/// ServiceAccount, Deployment and Service of the east-west gateway.
pub(crate) fn east_west_gateway(
    spec: &MeshSpec,
    member: &MemberSpec,
    strategy: UpdateStrategy,
    revision: &str,
) -> Vec<DesiredObject> {
    let labels = gateway_labels(member);
    let object = |api_version, kind, name| {
        DesiredObject::new(api_version, kind, Some(ISTIO_NAMESPACE), name, &spec.name)
            .with_labels(&labels)
    };
    let service_ports: Vec<Value> = SERVICE_PORTS
        .iter()
        .map(|(name, port)| json!({"name": name, "port": port, "targetPort": port, "protocol": "TCP"}))
        .collect();
    vec![
        object("v1", "ServiceAccount", EAST_WEST_SERVICE_ACCOUNT),
        object("apps/v1", "Deployment", EAST_WEST_GATEWAY)
            .with("spec", deployment_spec(spec, member, strategy, revision)),
        object("v1", "Service", EAST_WEST_GATEWAY).with(
            "spec",
            json!({"type": "LoadBalancer", "selector": selector(), "ports": service_ports}),
        ),
    ]
}

fn deployment_spec(
    spec: &MeshSpec,
    member: &MemberSpec,
    strategy: UpdateStrategy,
    revision: &str,
) -> Value {
    let network = member.network_name();
    let mut pod_labels = selector();
    pod_labels[NETWORK_LABEL] = json!(network);
    pod_labels["sidecar.istio.io/inject"] = json!("true");
    if strategy == UpdateStrategy::RevisionBased {
        // A revision's injector only takes pods that name it.
        pod_labels[REVISION_LABEL] = json!(revision);
    }
    let container_ports: Vec<Value> = SERVICE_PORTS
        .iter()
        .map(|(_, port)| json!({"containerPort": port, "protocol": "TCP"}))
        .chain([json!({"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"})])
        .collect();
    json!({
        "replicas": spec.config.replicas.eastwest_gateway,
        "selector": {"matchLabels": selector()},
        "strategy": {"rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "25%"}},
        "template": {
            "metadata": {
                "labels": pod_labels,
                "annotations": {
                    "inject.istio.io/templates": "gateway",
                    "prometheus.io/path": "/stats/prometheus",
                    "prometheus.io/port": "15020",
                    "prometheus.io/scrape": "true",
                },
            },
            "spec": {
                "serviceAccountName": EAST_WEST_SERVICE_ACCOUNT,
                "containers": [{
                    "name": "istio-proxy",
                    "image": "auto",
                    "env": [
                        {"name": "ISTIO_META_REQUESTED_NETWORK_VIEW", "value": network},
                        {"name": "ISTIO_META_UNPRIVILEGED_POD", "value": "true"},
                    ],
                    "ports": container_ports,
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"cpu": "2000m", "memory": "1024Mi"},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": false,
                        "capabilities": {"drop": ["ALL"]},
                        "privileged": false,
                        "readOnlyRootFilesystem": true,
                    },
                }],
            },
        },
    })
}

fn istio_gateway(spec: &MeshSpec, name: &str, servers: Vec<Value>) -> DesiredObject {
    DesiredObject::new(
        "networking.istio.io/v1",
        "Gateway",
        Some(ISTIO_NAMESPACE),
        name,
        &spec.name,
    )
    .with(
        "spec",
        json!({"selector": {"istio": EAST_WEST_SELECTOR}, "servers": servers}),
    )
}

fn tls_server(port: u16, name: &str, mode: &str, host: &str) -> Value {
    json!({
        "port": {"number": port, "name": name, "protocol": "TLS"},
        "tls": {"mode": mode},
        "hosts": [host],
    })
}

/// Gateway `cross-network-gateway`: services of this cluster reachable from other networks.
pub(crate) fn cross_network_gateway(spec: &MeshSpec) -> DesiredObject {
    istio_gateway(
        spec,
        CROSS_NETWORK_GATEWAY,
        vec![tls_server(TLS_PORT, "tls", "AUTO_PASSTHROUGH", "*.local")],
    )
}

/// Gateway `istiod-gateway` and VirtualService `istiod-vs`: istiod reachable from remotes.
pub(crate) fn istiod_exposure(spec: &MeshSpec, revision: &str) -> Vec<DesiredObject> {
    let gateway = istio_gateway(
        spec,
        ISTIOD_GATEWAY,
        vec![
            tls_server(ISTIOD_PORT, "tls-istiod", "PASSTHROUGH", "*"),
            tls_server(WEBHOOK_PORT, "tls-istiodwebhook", "PASSTHROUGH", "*"),
        ],
    );
    let host = format!(
        "{}.{ISTIO_NAMESPACE}.svc.cluster.local",
        istiod_service(revision)
    );
    let route = |port: u16, target: u16| {
        json!({
            "match": [{"port": port, "sniHosts": ["*"]}],
            "route": [{"destination": {"host": host, "port": {"number": target}}}],
        })
    };
    let virtual_service = DesiredObject::new(
        "networking.istio.io/v1",
        "VirtualService",
        Some(ISTIO_NAMESPACE),
        ISTIOD_VIRTUAL_SERVICE,
        &spec.name,
    )
    .with(
        "spec",
        json!({
            "hosts": ["*"],
            "gateways": [ISTIOD_GATEWAY],
            "tls": [route(ISTIOD_PORT, ISTIOD_PORT), route(WEBHOOK_PORT, 443)],
        }),
    );
    vec![gateway, virtual_service]
}
