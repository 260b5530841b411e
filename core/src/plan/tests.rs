//! Tests of the install plans, including a check of every Istio and Sail object against the CRD
//! schemas shipped in `core/data/istio/crds`.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::*;
use crate::mode::ClusterRole;
use crate::names::NamespaceName;
use crate::spec::fixtures::{cluster, master, multi_primary, primary_remote, remote, single, spec};

fn bundle() -> CaBundle {
    CaBundle {
        ca_cert: "CA CERT".into(),
        ca_key: "CA KEY".into(),
        root_cert: "ROOT".into(),
        cert_chain: "CA CERT\nROOT".into(),
    }
}

fn inputs() -> ClusterInputs {
    ClusterInputs::new(bundle())
}

fn remote_inputs() -> ClusterInputs {
    inputs().with_primary_east_west_address("203.0.113.10")
}

fn plan(spec: &MeshSpec, name: &str, inputs: &ClusterInputs) -> Vec<PlannedChange> {
    install_plan(spec, &cluster(name), inputs).expect("plan")
}

fn objects(changes: &[PlannedChange]) -> Vec<&DesiredObject> {
    changes
        .iter()
        .filter_map(PlannedChange::as_object)
        .collect()
}

fn names(changes: &[PlannedChange]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c {
            PlannedChange::Object(o) => format!("{}/{}", o.kind, o.name),
            PlannedChange::NamespaceLabels(l) => format!("labels/{}", l.namespace),
        })
        .collect()
}

fn find<'a>(changes: &'a [PlannedChange], kind: &str, name: &str) -> &'a DesiredObject {
    objects(changes)
        .into_iter()
        .find(|o| o.kind == kind && o.name == name)
        .unwrap_or_else(|| panic!("{kind}/{name} missing from {:?}", names(changes)))
}

fn istio(changes: &[PlannedChange]) -> &Value {
    &find(changes, "Istio", "default").body["spec"]
}

/// Every plan of the three reference meshes, for property tests.
fn all_plans() -> Vec<Vec<PlannedChange>> {
    let mut out = Vec::new();
    for strategy in [UpdateStrategy::InPlace, UpdateStrategy::RevisionBased] {
        for spec in [single(), multi_primary(), primary_remote()] {
            for member in &spec.clusters {
                let inputs = remote_inputs().with_update_strategy(strategy);
                out.push(install_plan(&spec, &member.name, &inputs).expect("plan"));
            }
        }
    }
    out
}

#[test]
fn a_single_cluster_gets_a_plain_control_plane_and_no_gateway() {
    let changes = plan(&single(), "c1", &inputs());
    assert_eq!(
        names(&changes),
        [
            "Namespace/istio-system",
            "Secret/cacerts",
            "Istio/default",
            "Telemetry/mesh-default"
        ]
    );
    let spec = istio(&changes);
    assert_eq!(spec["version"], "v1.30.3");
    assert_eq!(spec["namespace"], "istio-system");
    assert_eq!(spec["updateStrategy"]["type"], "InPlace");
    assert!(spec.get("profile").is_none());
    let global = &spec["values"]["global"];
    assert_eq!(global["meshID"], "demo");
    assert_eq!(global["multiCluster"]["clusterName"], "c1");
    assert_eq!(global["network"], "c1");
    assert!(global.get("externalIstiod").is_none());
    let namespace = find(&changes, "Namespace", "istio-system");
    assert_eq!(namespace.label(NETWORK_LABEL), Some("c1"));
    assert_eq!(
        namespace.annotation(CONTROL_PLANE_CLUSTERS_ANNOTATION),
        None
    );
}

#[test]
fn multi_primary_members_on_separate_networks_get_gateways_and_cross_network_exposure() {
    let spec = multi_primary();
    for member in ["a", "b", "c"] {
        let changes = plan(&spec, member, &inputs());
        assert_eq!(
            names(&changes),
            [
                "Namespace/istio-system",
                "Secret/cacerts",
                "Istio/default",
                "ServiceAccount/istio-eastwestgateway-service-account",
                "Deployment/istio-eastwestgateway",
                "Service/istio-eastwestgateway",
                "Gateway/cross-network-gateway",
                "Telemetry/mesh-default",
            ],
            "{member}"
        );
        assert_eq!(istio(&changes)["values"]["global"]["network"], member);
    }
}

#[test]
fn multi_primary_on_one_network_needs_no_gateway() {
    let mut spec = multi_primary();
    for member in &mut spec.clusters {
        member.network = "flat".into();
    }
    let changes = plan(&spec, "b", &inputs());
    assert!(
        !objects(&changes)
            .iter()
            .any(|o| o.kind == "Deployment" || o.kind == "Gateway")
    );
    assert_eq!(istio(&changes)["values"]["global"]["network"], "flat");
}

#[test]
fn the_primary_of_primary_remote_runs_external_istiod_and_exposes_it() {
    let changes = plan(&primary_remote(), "p1", &inputs());
    assert_eq!(
        names(&changes),
        [
            "Namespace/istio-system",
            "Secret/cacerts",
            "Istio/default",
            "ServiceAccount/istio-eastwestgateway-service-account",
            "Deployment/istio-eastwestgateway",
            "Service/istio-eastwestgateway",
            "Gateway/cross-network-gateway",
            "Gateway/istiod-gateway",
            "VirtualService/istiod-vs",
            "Telemetry/mesh-default",
        ]
    );
    assert_eq!(istio(&changes)["values"]["global"]["externalIstiod"], true);
    let gateway = &find(&changes, "Gateway", "istiod-gateway").body["spec"];
    assert_eq!(gateway["selector"], json!({"istio": "eastwestgateway"}));
    let servers = gateway["servers"].as_array().expect("servers");
    let ports: Vec<(&Value, &Value, &Value)> = servers
        .iter()
        .map(|s| (&s["port"]["number"], &s["port"]["name"], &s["tls"]["mode"]))
        .collect();
    assert_eq!(
        ports,
        [
            (&json!(15012), &json!("tls-istiod"), &json!("PASSTHROUGH")),
            (
                &json!(15017),
                &json!("tls-istiodwebhook"),
                &json!("PASSTHROUGH")
            ),
        ]
    );
    let vs = &find(&changes, "VirtualService", "istiod-vs").body["spec"];
    assert_eq!(vs["gateways"], json!(["istiod-gateway"]));
    let routes: Vec<(&Value, &Value, &Value)> = vs["tls"]
        .as_array()
        .expect("tls routes")
        .iter()
        .map(|r| {
            let destination = &r["route"][0]["destination"];
            (
                &r["match"][0]["port"],
                &destination["host"],
                &destination["port"]["number"],
            )
        })
        .collect();
    let host = json!("istiod.istio-system.svc.cluster.local");
    assert_eq!(
        routes,
        [
            (&json!(15012), &host, &json!(15012)),
            (&json!(15017), &host, &json!(443))
        ]
    );
}

#[test]
fn a_remote_uses_the_primary_through_its_gateway() {
    let changes = plan(&primary_remote(), "r1", &remote_inputs());
    assert_eq!(
        names(&changes),
        [
            "Namespace/istio-system",
            "Secret/cacerts",
            "Istio/default",
            "ServiceAccount/istio-eastwestgateway-service-account",
            "Deployment/istio-eastwestgateway",
            "Service/istio-eastwestgateway",
            "Gateway/cross-network-gateway",
        ]
    );
    let namespace = find(&changes, "Namespace", "istio-system");
    assert_eq!(
        namespace.annotation(CONTROL_PLANE_CLUSTERS_ANNOTATION),
        Some("p1")
    );
    let spec = istio(&changes);
    assert_eq!(spec["profile"], "remote");
    assert_eq!(
        spec["values"]["global"]["remotePilotAddress"],
        "203.0.113.10"
    );
    assert_eq!(
        spec["values"]["istiodRemote"]["injectionPath"],
        "/inject/cluster/r1/net/r1"
    );
    assert!(spec["values"].get("pilot").is_none());
    assert!(spec["values"]["global"].get("externalIstiod").is_none());
}

#[test]
fn a_remote_on_the_primary_network_needs_no_gateway_of_its_own() {
    let mut spec = primary_remote();
    for member in &mut spec.clusters {
        member.network = "flat".into();
    }
    let primary = plan(&spec, "p1", &inputs());
    assert!(
        objects(&primary)
            .iter()
            .all(|o| o.name != CROSS_NETWORK_GATEWAY)
    );
    find(&primary, "Deployment", EAST_WEST_GATEWAY);
    find(&primary, "Gateway", ISTIOD_GATEWAY);
    let remote = plan(&spec, "r2", &remote_inputs());
    assert_eq!(remote.len(), 3, "{:?}", names(&remote));
}

#[test]
fn a_remote_cannot_be_planned_without_a_usable_primary_address() {
    let spec = primary_remote();
    let err = install_plan(&spec, &cluster("r1"), &inputs()).expect_err("no address");
    assert!(
        matches!(err, PlanError::MissingPrimaryAddress { .. }),
        "{err}"
    );
    for bad in [
        "",
        "https://gw.example",
        "203.0.113.10:15012",
        "a b",
        "gw/x",
    ] {
        let inputs = inputs().with_primary_east_west_address(bad);
        let err = install_plan(&spec, &cluster("r1"), &inputs).expect_err(bad);
        assert!(
            matches!(err, PlanError::InvalidPrimaryAddress { .. }),
            "{bad}: {err}"
        );
    }
    for ok in ["gw.example.com", "2001:db8::1", "10.0.0.1"] {
        let inputs = inputs().with_primary_east_west_address(ok);
        assert!(install_plan(&spec, &cluster("r1"), &inputs).is_ok(), "{ok}");
    }
}

#[test]
fn strangers_and_orphaned_remotes_are_refused() {
    let err = install_plan(&single(), &cluster("zz"), &inputs()).expect_err("not a member");
    assert_eq!(
        err.to_string(),
        "cannot plan cluster zz: it is not a member of mesh demo"
    );
    let orphan = spec(MeshMode::MultiPrimary, vec![master("a"), remote("b")]);
    let err = install_plan(&orphan, &cluster("b"), &remote_inputs()).expect_err("no primary");
    assert!(matches!(err, PlanError::NoPrimary { .. }), "{err}");
    let mut bad_version = single();
    bad_version.version = "one".into();
    let err = install_plan(&bad_version, &cluster("c1"), &inputs()).expect_err("bad version");
    assert!(matches!(err, PlanError::Version { .. }), "{err}");
}

#[test]
fn config_reaches_the_control_plane_and_telemetry() {
    let mut spec = multi_primary();
    spec.config.outbound_traffic_policy = crate::spec::OutboundTrafficPolicy::RegistryOnly;
    spec.config.trace_sampling = 12.5;
    spec.config.replicas.istiod = 3;
    spec.config.replicas.eastwest_gateway = 2;
    let changes = plan(&spec, "a", &inputs());
    let values = &istio(&changes)["values"];
    assert_eq!(
        values["meshConfig"]["outboundTrafficPolicy"]["mode"],
        "REGISTRY_ONLY"
    );
    assert!(
        values["meshConfig"].get("defaultConfig").is_none(),
        "sampling lives in the Telemetry only: {values}"
    );
    assert_eq!(
        values["pilot"],
        json!({"autoscaleEnabled": false, "replicaCount": 3})
    );
    let telemetry = find(&changes, "Telemetry", TELEMETRY_NAME);
    assert_eq!(telemetry.namespace.as_deref(), Some("istio-system"));
    assert_eq!(
        telemetry.body["spec"]["tracing"],
        json!([{"randomSamplingPercentage": 12.5}])
    );
    let deployment = find(&changes, "Deployment", EAST_WEST_GATEWAY);
    assert_eq!(deployment.body["spec"]["replicas"], 2);
}

#[test]
fn the_east_west_gateway_matches_istios_reference() {
    let changes = plan(&multi_primary(), "b", &inputs());
    let deployment = find(&changes, "Deployment", EAST_WEST_GATEWAY);
    assert_eq!(deployment.label("istio"), Some("eastwestgateway"));
    assert_eq!(deployment.label("app"), Some("istio-eastwestgateway"));
    assert_eq!(deployment.label(NETWORK_LABEL), Some("b"));
    let template = &deployment.body["spec"]["template"];
    assert_eq!(
        template["metadata"]["labels"]["sidecar.istio.io/inject"],
        "true"
    );
    assert_eq!(template["metadata"]["labels"][NETWORK_LABEL], "b");
    assert_eq!(
        template["metadata"]["annotations"]["inject.istio.io/templates"],
        "gateway"
    );
    let container = &template["spec"]["containers"][0];
    assert_eq!(container["image"], "auto");
    assert_eq!(
        container["env"][0],
        json!({"name": "ISTIO_META_REQUESTED_NETWORK_VIEW", "value": "b"})
    );
    assert_eq!(
        template["spec"]["serviceAccountName"],
        EAST_WEST_SERVICE_ACCOUNT
    );
    let selector = &deployment.body["spec"]["selector"]["matchLabels"];
    for (key, value) in selector.as_object().expect("labels") {
        assert_eq!(&template["metadata"]["labels"][key], value, "{key}");
    }

    let service = find(&changes, "Service", EAST_WEST_GATEWAY);
    assert_eq!(service.body["spec"]["type"], "LoadBalancer");
    assert_eq!(service.label(NETWORK_LABEL), Some("b"));
    assert_eq!(&service.body["spec"]["selector"], selector);
    let ports: Vec<(&str, u64)> = service.body["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("name"),
                p["port"].as_u64().expect("port"),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("status-port", 15021),
            ("tls", 15443),
            ("tls-istiod", 15012),
            ("tls-webhook", 15017)
        ]
    );

    let gateway = &find(&changes, "Gateway", CROSS_NETWORK_GATEWAY).body["spec"];
    assert_eq!(
        gateway,
        &json!({
            "selector": {"istio": "eastwestgateway"},
            "servers": [{
                "port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                "tls": {"mode": "AUTO_PASSTHROUGH"},
                "hosts": ["*.local"],
            }],
        })
    );
}

#[test]
fn a_plan_without_trust_leaves_out_only_the_cacerts_secret() {
    for spec in [single(), multi_primary(), primary_remote()] {
        for member in &spec.clusters {
            let name = member.name.as_str();
            let full_inputs = if member.role == ClusterRole::Remote {
                remote_inputs()
            } else {
                inputs()
            };
            let without_inputs = ClusterInputs {
                cacerts: None,
                ..full_inputs.clone()
            };
            let full = plan(&spec, name, &full_inputs);
            let without = plan(&spec, name, &without_inputs);
            let expected: Vec<PlannedChange> = full
                .into_iter()
                .filter(|change| {
                    !matches!(change, PlannedChange::Object(o)
                        if o.kind == "Secret" && o.name == CACERTS_SECRET)
                })
                .collect();
            assert_eq!(without, expected, "{name} of {}", spec.name);
            assert!(
                !names(&without).iter().any(|n| n.contains(CACERTS_SECRET)),
                "{name}: {:?}",
                names(&without)
            );
        }
    }
    assert_eq!(ClusterInputs::without_trust().cacerts, None);
}

#[test]
fn cacerts_holds_the_bundle_base64_encoded() {
    let changes = plan(&single(), "c1", &inputs());
    let secret = find(&changes, "Secret", CACERTS_SECRET);
    assert_eq!(secret.namespace.as_deref(), Some("istio-system"));
    assert_eq!(secret.body["type"], "Opaque");
    let decoded: BTreeMap<String, String> = secret.body["data"]
        .as_object()
        .expect("data")
        .iter()
        .map(|(k, v)| {
            let raw = STANDARD
                .decode(v.as_str().expect("string"))
                .expect("base64");
            (k.clone(), String::from_utf8(raw).expect("utf8"))
        })
        .collect();
    let expected = bundle();
    assert_eq!(
        decoded,
        BTreeMap::from([
            ("ca-cert.pem".to_owned(), expected.ca_cert),
            ("ca-key.pem".to_owned(), expected.ca_key),
            ("root-cert.pem".to_owned(), expected.root_cert),
            ("cert-chain.pem".to_owned(), expected.cert_chain),
        ])
    );
}

#[test]
fn auto_injection_namespaces_are_labelled_last_and_never_owned() {
    let mut spec = primary_remote();
    spec.config
        .auto_injection_namespaces
        .insert("r1".into(), vec!["shop".into(), "cart".into()]);
    let changes = plan(&spec, "r1", &remote_inputs());
    let tail: Vec<&PlannedChange> = changes.iter().rev().take(2).collect();
    for change in tail {
        let PlannedChange::NamespaceLabels(labels) = change else {
            panic!("labels come last: {:?}", names(&changes));
        };
        assert_eq!(
            labels.merge_patch(),
            json!({"metadata": {"labels": {
                "istio-injection": "enabled",
                "istio.io/rev": null,
                "mesh-manager.io/injection-mesh": "demo",
            }}})
        );
    }
    assert!(
        !objects(&changes)
            .iter()
            .any(|o| o.kind == "Namespace" && o.name != "istio-system")
    );
    let none = plan(&spec, "r2", &remote_inputs());
    assert!(none.iter().all(|c| c.as_object().is_some()));
}

#[test]
fn injection_removal_clears_every_label_mesh_manager_sets() {
    let removal = injection_removal(NamespaceName::new("shop").expect("valid"));
    assert_eq!(
        removal.merge_patch(),
        json!({"metadata": {"labels": {
            "istio-injection": null,
            "istio.io/rev": null,
            "mesh-manager.io/injection-mesh": null,
        }}})
    );
}

#[test]
fn revision_based_installs_name_the_revision_everywhere() {
    let mut spec = primary_remote();
    spec.config
        .auto_injection_namespaces
        .insert("p1".into(), vec!["shop".into()]);
    let inputs = inputs().with_update_strategy(UpdateStrategy::RevisionBased);
    let changes = plan(&spec, "p1", &inputs);
    assert_eq!(istio(&changes)["updateStrategy"]["type"], "RevisionBased");
    let deployment = find(&changes, "Deployment", EAST_WEST_GATEWAY);
    assert_eq!(
        deployment.body["spec"]["template"]["metadata"]["labels"]["istio.io/rev"],
        "default-v1-30-3"
    );
    let vs = find(&changes, "VirtualService", ISTIOD_VIRTUAL_SERVICE);
    assert_eq!(
        vs.body["spec"]["tls"][0]["route"][0]["destination"]["host"],
        "istiod-default-v1-30-3.istio-system.svc.cluster.local"
    );
    let Some(PlannedChange::NamespaceLabels(labels)) = changes.last() else {
        panic!("labels last");
    };
    assert_eq!(
        labels.labels.get("istio.io/rev"),
        Some(&Some("default-v1-30-3".to_owned()))
    );
    assert_eq!(labels.labels.get("istio-injection"), Some(&None));
}

#[test]
fn revision_names_follow_the_sail_operator() {
    let version = IstioVersion::parse("1.31.0-beta.1").expect("valid");
    assert_eq!(UpdateStrategy::InPlace.revision_name(&version), "default");
    assert_eq!(
        UpdateStrategy::RevisionBased.revision_name(&version),
        "default-v1-31-0-beta-1"
    );
    assert_eq!(istiod_service("default"), "istiod");
    assert_eq!(istiod_service("default-v1-30-3"), "istiod-default-v1-30-3");
}

#[test]
fn every_planned_object_is_labelled_managed_and_of_a_managed_kind() {
    let kinds = managed_kinds();
    let reader = reader_access(&MeshName::new("demo").expect("valid"), ClusterRole::Remote);
    let secret = remote_secret(&MeshName::new("demo").expect("valid"), &cluster("a"), "kc");
    let plans = all_plans();
    let planned = plans.iter().flat_map(|p| objects(p));
    for object in planned.chain(reader.iter()).chain([&secret]) {
        assert_eq!(object.label(MANAGED_BY_LABEL), Some("mesh-manager"));
        assert_eq!(object.label(MESH_LABEL), Some("demo"));
        let kind = kinds
            .iter()
            .find(|k| k.kind == object.kind && k.api_version == object.api_version)
            .unwrap_or_else(|| panic!("{} is not a managed kind", object.display_name()));
        assert_eq!(
            kind.namespaced,
            object.namespace.is_some(),
            "{}",
            object.display_name()
        );
        assert_eq!(object.body["apiVersion"], object.api_version.as_str());
        assert_eq!(object.body["kind"], object.kind.as_str());
        assert_eq!(object.body["metadata"]["name"], object.name.as_str());
        assert_eq!(
            object.body["metadata"]["namespace"].as_str(),
            object.namespace.as_deref()
        );
    }
}

#[test]
fn plans_are_in_stage_order_and_deterministic() {
    for changes in all_plans() {
        let stages: Vec<Stage> = changes.iter().map(PlannedChange::stage).collect();
        let mut sorted = stages.clone();
        sorted.sort();
        assert_eq!(stages, sorted, "{:?}", names(&changes));
        assert_eq!(changes[0].stage(), Stage::Trust);
    }
    assert_eq!(all_plans(), all_plans());
}

// ---------------------------------------------------------------------------------------------
// CRD schema conformance

const SAIL_ISTIO_CRD: &str = include_str!("../../data/istio/crds/sailoperator.io_istios.yaml");
const ISTIO_API_CRDS: &str = include_str!("../../data/istio/crds/istio-api-crds.gen.yaml");

/// The CRDs of a (multi-document) CRD file, parsed once per test run.
fn crds(yaml: &'static str) -> &'static [Value] {
    static CACHE: OnceLock<Mutex<BTreeMap<usize, &'static [Value]>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().expect("not poisoned");
    cache.entry(yaml.as_ptr() as usize).or_insert_with(|| {
        let parsed: Vec<Value> = serde_yaml::Deserializer::from_str(yaml)
            .filter_map(|document| Value::deserialize(document).ok())
            .collect();
        Vec::leak(parsed)
    })
}

/// The `openAPIV3Schema` of `kind` at `version` in a CRD file.
fn crd_schema(yaml: &'static str, kind: &str, version: &str) -> Value {
    for crd in crds(yaml) {
        if crd["spec"]["names"]["kind"] != kind {
            continue;
        }
        let versions = crd["spec"]["versions"].as_array().expect("versions");
        if let Some(v) = versions.iter().find(|v| v["name"] == version) {
            assert_eq!(v["served"], true, "{kind} {version} must be served");
            return v["schema"]["openAPIV3Schema"].clone();
        }
    }
    panic!("no CRD for {kind} {version}");
}

use serde::Deserialize as _;

/// A structural-schema check: types, enums, required fields, unknown fields, numeric bounds.
fn conform(schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        problems.push(format!("{path}: {value} not in enum"));
    }
    let type_ok = match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok && schema["x-kubernetes-int-or-string"] != true {
        problems.push(format!("{path}: expected {}, got {value}", schema["type"]));
        return;
    }
    if let (Some(n), Some(min)) = (value.as_f64(), schema["minimum"].as_f64())
        && n < min
    {
        problems.push(format!("{path}: {n} below {min}"));
    }
    if let (Some(n), Some(max)) = (value.as_f64(), schema["maximum"].as_f64())
        && n > max
    {
        problems.push(format!("{path}: {n} above {max}"));
    }
    if let Some(items) = value.as_array() {
        for (i, item) in items.iter().enumerate() {
            conform(&schema["items"], item, &format!("{path}[{i}]"), problems);
        }
    }
    let Some(fields) = value.as_object() else {
        return;
    };
    for required in schema["required"].as_array().into_iter().flatten() {
        let required = required.as_str().expect("string");
        if !fields.contains_key(required) {
            problems.push(format!("{path}: missing required {required}"));
        }
    }
    for (key, field) in fields {
        let child = format!("{path}.{key}");
        if let Some(property) = schema["properties"].get(key) {
            conform(property, field, &child, problems);
        } else if schema["additionalProperties"].is_object() {
            conform(&schema["additionalProperties"], field, &child, problems);
        } else if schema["x-kubernetes-preserve-unknown-fields"] != true
            && schema["additionalProperties"] != true
        {
            problems.push(format!("{child}: unknown field"));
        }
    }
}

fn assert_conforms(object: &DesiredObject, yaml: &'static str) {
    let version = object.api_version.rsplit('/').next().expect("a version");
    let schema = crd_schema(yaml, &object.kind, version);
    let mut problems = Vec::new();
    conform(
        &schema["properties"]["spec"],
        &object.body["spec"],
        "spec",
        &mut problems,
    );
    assert!(
        problems.is_empty(),
        "{}: {problems:#?}",
        object.display_name()
    );
}

#[test]
fn istio_and_sail_objects_conform_to_their_crds() {
    let mut checked = BTreeMap::<String, usize>::new();
    for changes in all_plans() {
        for object in objects(&changes) {
            let yaml = match object.api_version.as_str() {
                "sailoperator.io/v1" => SAIL_ISTIO_CRD,
                v if v.contains("istio.io/") => ISTIO_API_CRDS,
                _ => continue,
            };
            assert_conforms(object, yaml);
            *checked.entry(object.kind.clone()).or_default() += 1;
        }
    }
    let kinds: Vec<&str> = checked.keys().map(String::as_str).collect();
    assert_eq!(kinds, ["Gateway", "Istio", "Telemetry", "VirtualService"]);
}

#[test]
fn the_schema_check_catches_mistakes() {
    let schema = crd_schema(SAIL_ISTIO_CRD, "Istio", "v1");
    let bad = json!({
        "version": "v9.9.9",
        "namespace": "istio-system",
        "updateStrategy": {"type": "Sideways"},
        "values": {"global": {"externalIstiodd": true}},
    });
    let mut problems = Vec::new();
    conform(&schema["properties"]["spec"], &bad, "spec", &mut problems);
    assert_eq!(problems.len(), 3, "{problems:#?}");
}

// ---------------------------------------------------------------------------------------------
// Remote secrets, reader, kubeconfig

fn pairs(spec: &MeshSpec) -> Vec<(String, String)> {
    remote_secret_targets(spec)
        .into_iter()
        .map(|(holder, source)| (holder.to_string(), source.to_string()))
        .collect()
}

#[test]
fn remote_secret_targets_follow_the_mode() {
    assert!(pairs(&single()).is_empty());
    let expected: Vec<(String, String)> = [
        ("a", "b"),
        ("a", "c"),
        ("b", "a"),
        ("b", "c"),
        ("c", "a"),
        ("c", "b"),
    ]
    .iter()
    .map(|(h, s)| ((*h).to_owned(), (*s).to_owned()))
    .collect();
    assert_eq!(pairs(&multi_primary()), expected);
    assert_eq!(
        pairs(&primary_remote()),
        [
            ("p1".to_owned(), "r1".to_owned()),
            ("p1".to_owned(), "r2".to_owned())
        ]
    );
}

#[test]
fn remote_secrets_are_what_istiod_watches() {
    let mesh = MeshName::new("demo").expect("valid");
    let secret = remote_secret(&mesh, &cluster("east"), "apiVersion: v1\nkind: Config\n");
    assert_eq!(secret.name, "istio-remote-secret-east");
    assert_eq!(secret.namespace.as_deref(), Some("istio-system"));
    assert_eq!(secret.label(MULTI_CLUSTER_LABEL), Some("true"));
    assert_eq!(secret.annotation(CLUSTER_ANNOTATION), Some("east"));
    let data = secret.body["data"].as_object().expect("data");
    assert_eq!(data.len(), 1);
    let encoded = data["east"].as_str().expect("string");
    assert_eq!(
        STANDARD.decode(encoded).expect("base64"),
        b"apiVersion: v1\nkind: Config\n"
    );
}

#[test]
fn the_reader_is_bound_and_read_only_except_where_istiod_is_external() {
    let mesh = MeshName::new("demo").expect("valid");
    let primary = reader_access(&mesh, ClusterRole::Master);
    let kinds: Vec<&str> = primary.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Secret"
        ]
    );
    let rules = primary[1].body["rules"].as_array().expect("rules");
    for rule in rules {
        for verb in rule["verbs"].as_array().expect("verbs") {
            let resources = &rule["resources"];
            let review = resources == &json!(["tokenreviews"])
                || resources == &json!(["subjectaccessreviews"]);
            assert!(
                ["get", "list", "watch"].contains(&verb.as_str().expect("verb"))
                    || (review && verb == "create"),
                "{rule}"
            );
        }
    }
    let covers = |rules: &[Value], group: &str, resource: &str| {
        rules.iter().any(|r| {
            r["apiGroups"]
                .as_array()
                .is_some_and(|g| g.contains(&json!(group)))
                && r["resources"]
                    .as_array()
                    .is_some_and(|g| g.contains(&json!(resource)))
        })
    };
    for (group, resource) in [
        ("", "pods"),
        ("", "services"),
        ("", "endpoints"),
        ("", "namespaces"),
        ("", "nodes"),
        ("", "secrets"),
        ("discovery.k8s.io", "endpointslices"),
        ("networking.istio.io", "*"),
    ] {
        assert!(covers(rules, group, resource), "{group}/{resource}");
    }
    assert!(!covers(
        rules,
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations"
    ));

    let remote = reader_access(&mesh, ClusterRole::Remote);
    let remote_rules = remote[1].body["rules"].as_array().expect("rules");
    assert!(covers(
        remote_rules,
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations"
    ));

    let binding = &primary[2].body;
    assert_eq!(binding["roleRef"]["name"], READER_NAME);
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": READER_NAME, "namespace": "istio-system"}])
    );
    let token = &primary[3];
    assert_eq!(token.name, READER_TOKEN_SECRET);
    assert_eq!(token.body["type"], "kubernetes.io/service-account-token");
    assert_eq!(
        token.annotation("kubernetes.io/service-account.name"),
        Some(READER_NAME)
    );
}

#[test]
fn kubeconfigs_use_a_bearer_token_and_nothing_else() {
    let yaml = render_remote_kubeconfig(
        &cluster("east"),
        "https://10.0.0.1:6443",
        Some("Q0EgREFUQQ=="),
        "tok:en#1",
    )
    .expect("render");
    let config: Value = serde_yaml::from_str(&yaml).expect("yaml");
    assert_eq!(
        config,
        json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "east", "cluster": {
                "server": "https://10.0.0.1:6443",
                "certificate-authority-data": "Q0EgREFUQQ==",
            }}],
            "contexts": [{"name": "east", "context": {"cluster": "east", "user": "east"}}],
            "current-context": "east",
            "users": [{"name": "east", "user": {"token": "tok:en#1"}}],
        })
    );
    let without_ca =
        render_remote_kubeconfig(&cluster("east"), "https://api.example", None, "t").expect("ok");
    assert!(
        !without_ca.contains("certificate-authority"),
        "{without_ca}"
    );
    assert!(!without_ca.contains("insecure"), "{without_ca}");
}

#[test]
fn kubeconfigs_refuse_bad_inputs() {
    let render = |server, ca, token| render_remote_kubeconfig(&cluster("east"), server, ca, token);
    for (server, ca, token) in [
        ("file:///etc/kube", None, "t"),
        ("10.0.0.1:6443", None, "t"),
        ("https://a b", None, "t"),
        ("https://api", None, ""),
        ("https://api", None, "two words"),
        ("https://api", Some("%%%"), "t"),
    ] {
        let err = render(server, ca, token).expect_err(server);
        assert!(
            err.to_string()
                .starts_with("failed to render the kubeconfig for cluster east"),
            "{err}"
        );
    }
}

#[test]
fn a_configuration_change_touches_the_stages_that_hold_what_changed() {
    use std::collections::BTreeSet;
    let old = multi_primary().config;
    let stages = |change: &dyn Fn(&mut crate::spec::MeshConfig)| {
        let mut new = old.clone();
        change(&mut new);
        changed_stages(&old, &new)
    };
    assert_eq!(
        stages(&|_| {}),
        BTreeSet::new(),
        "no change, nothing to apply"
    );
    assert_eq!(
        stages(&|c| c.trace_sampling = 42.0),
        BTreeSet::from([Stage::MeshConfig])
    );
    assert_eq!(
        stages(&|c| c.outbound_traffic_policy = crate::spec::OutboundTrafficPolicy::RegistryOnly),
        BTreeSet::from([Stage::ControlPlane])
    );
    assert_eq!(
        stages(&|c| c.replicas.istiod = 3),
        BTreeSet::from([Stage::ControlPlane])
    );
    assert_eq!(
        stages(&|c| c.replicas.eastwest_gateway = 2),
        BTreeSet::from([Stage::EastWestGateway])
    );
    assert_eq!(
        stages(&|c| {
            c.auto_injection_namespaces
                .insert("a".into(), vec!["shop".into()]);
        }),
        BTreeSet::from([Stage::Injection])
    );
    assert_eq!(
        stages(&|c| c.drift_policy = crate::spec::DriftPolicy::Report),
        BTreeSet::new(),
        "the drift policy lives in mesh-manager only"
    );

    // What each stage holds, checked on the plans themselves: a change outside the stages named
    // leaves every other stage's objects as they were.
    let spec = multi_primary();
    for (change, touched) in [
        (
            Box::new(|c: &mut crate::spec::MeshConfig| c.trace_sampling = 42.0)
                as Box<dyn Fn(&mut crate::spec::MeshConfig)>,
            Stage::MeshConfig,
        ),
        (
            Box::new(|c: &mut crate::spec::MeshConfig| c.replicas.istiod = 3),
            Stage::ControlPlane,
        ),
        (
            Box::new(|c: &mut crate::spec::MeshConfig| c.replicas.eastwest_gateway = 2),
            Stage::EastWestGateway,
        ),
    ] {
        let mut changed = spec.clone();
        change(&mut changed.config);
        let before = plan(&spec, "a", &inputs());
        let after = plan(&changed, "a", &inputs());
        let differing: BTreeSet<Stage> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a)
            .map(|(b, _)| b.stage())
            .collect();
        assert_eq!(differing, BTreeSet::from([touched]), "{touched:?}");
    }
}
