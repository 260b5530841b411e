//! Upgrades and rollback: the rules, free of I/O.
//!
//! Inputs: the [`VersionCatalog`], the mesh's current version, the requested target and strategy;
//! what the workers observed in each cluster (for pre-checks and health gates). Outputs: an
//! accepted [`UpgradePath`] or an [`UpgradeError`] with guidance, namespace batches, a
//! [`GateVerdict`] per health gate and the pre-check [`Finding`]s that block an upgrade.
//!
//! Istio facts encoded here:
//! - in-place upgrades go one minor version at a time; a larger jump is refused with the path of
//!   catalog versions to take (the newest release of each minor on the way);
//! - canary (revision-based) upgrades may skip one minor version (control plane and data plane at
//!   most [`MAX_CANARY_MINOR_SKEW`] minors apart while both revisions run);
//! - no downgrade except as a rollback, which returns to the revision that ran before;
//! - a remote cluster's control plane (served by its primary) is never ahead of its primary.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{IstioVersion, VersionCatalog};
use crate::names::NamespaceName;

/// How far apart (in minor versions) the old and new revision of a canary upgrade may be.
pub const MAX_CANARY_MINOR_SKEW: u64 = 2;
/// How far apart (in minor versions) an in-place upgrade may move.
pub const MAX_IN_PLACE_MINOR_SKEW: u64 = 1;
/// Pod-template annotation mesh-manager sets to restart a workload onto a revision; its value is
/// the revision, so restarting twice for the same revision changes nothing.
pub const RESTARTED_FOR_ANNOTATION: &str = "mesh-manager.io/restarted-for-revision";

/// How an upgrade replaces the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeKind {
    /// A new revision beside the old one; namespaces move over in batches.
    Canary,
    /// The one control plane is replaced where it stands.
    InPlace,
}

impl UpgradeKind {
    /// The wire and display name (`canary`, `in-place`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Canary => "canary",
            Self::InPlace => "in-place",
        }
    }
}

impl fmt::Display for UpgradeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an upgrade is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// The target is not an installable version.
    #[error("Istio version {requested} is not in the catalog; installable versions: {available}")]
    NotInCatalog {
        /// What was asked for.
        requested: String,
        /// The catalog, comma separated.
        available: String,
    },
    /// The mesh's recorded version does not parse.
    #[error("the mesh's current version {current:?} is not an Istio version")]
    BadCurrent {
        /// The recorded version.
        current: String,
    },
    /// The mesh already runs the target.
    #[error("the mesh already runs Istio {version}")]
    SameVersion {
        /// The version.
        version: String,
    },
    /// The target is older than what runs.
    #[error(
        "Istio {target} is older than the running {current}: downgrades are refused; a canary \
         upgrade is undone with its rollback"
    )]
    Downgrade {
        /// What runs.
        current: String,
        /// What was asked for.
        target: String,
    },
    /// A major version change.
    #[error(
        "cannot upgrade from Istio {current} to {target}: major version upgrades are not supported"
    )]
    MajorChange {
        /// What runs.
        current: String,
        /// What was asked for.
        target: String,
    },
    /// The jump is larger than the strategy allows.
    #[error(
        "{kind} upgrades from Istio {current} to {target} skip too many minor versions (at most \
         {max} at a time): {guidance}"
    )]
    TooFar {
        /// The strategy asked for.
        kind: UpgradeKind,
        /// What runs.
        current: String,
        /// What was asked for.
        target: String,
        /// The largest allowed minor step.
        max: u64,
        /// The path to take, e.g. "upgrade to 1.29.6 first, then 1.30.3".
        guidance: String,
    },
    /// A remote would run ahead of its primary.
    #[error(
        "remote cluster {remote} would run Istio {remote_version}, ahead of its primary's {primary_version}"
    )]
    RemoteAhead {
        /// The remote cluster.
        remote: String,
        /// Its version.
        remote_version: String,
        /// The primary's version.
        primary_version: String,
    },
}

/// An accepted upgrade: from where to where, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradePath {
    /// The running version.
    pub from: IstioVersion,
    /// The target.
    pub to: IstioVersion,
    /// The strategy.
    pub kind: UpgradeKind,
}

/// Checks an upgrade request against the catalog and the version rules.
pub fn check_upgrade(
    catalog: &VersionCatalog,
    current: &str,
    target: &str,
    kind: UpgradeKind,
) -> Result<UpgradePath, UpgradeError> {
    let to = catalog
        .resolve(target)
        .map_err(|_| UpgradeError::NotInCatalog {
            requested: target.chars().take(64).collect(),
            available: catalog.version_strings().join(", "),
        })?
        .clone();
    let from = IstioVersion::parse(current).map_err(|_| UpgradeError::BadCurrent {
        current: current.chars().take(64).collect(),
    })?;
    let names = || (from.to_string(), to.to_string());
    if to == from {
        return Err(UpgradeError::SameVersion {
            version: to.to_string(),
        });
    }
    if to < from {
        let (current, target) = names();
        return Err(UpgradeError::Downgrade { current, target });
    }
    if to.major() != from.major() {
        let (current, target) = names();
        return Err(UpgradeError::MajorChange { current, target });
    }
    let max = match kind {
        UpgradeKind::Canary => MAX_CANARY_MINOR_SKEW,
        UpgradeKind::InPlace => MAX_IN_PLACE_MINOR_SKEW,
    };
    if to.minor() - from.minor() > max {
        let (current, target) = names();
        return Err(UpgradeError::TooFar {
            kind,
            current,
            target,
            max,
            guidance: guidance(catalog, &from, &to, max),
        });
    }
    Ok(UpgradePath { from, to, kind })
}

/// The steps from `from` to `to` of at most `max` minors each, through the newest stable release
/// of each stepping-stone minor in the catalog: "upgrade to 1.29.6 first, then 1.30.3".
fn guidance(catalog: &VersionCatalog, from: &IstioVersion, to: &IstioVersion, max: u64) -> String {
    let mut steps: Vec<String> = Vec::new();
    let mut minor = from.minor();
    while to.minor() - minor > max {
        minor += max;
        let stone = catalog
            .versions()
            .iter()
            .filter(|v| v.major() == from.major() && v.minor() == minor)
            .find(|v| !v.is_prerelease())
            .or_else(|| {
                catalog
                    .versions()
                    .iter()
                    .find(|v| v.major() == from.major() && v.minor() == minor)
            });
        match stone {
            Some(v) => steps.push(v.to_string()),
            None => steps.push(format!("{}.{minor}.x", from.major())),
        }
    }
    steps.push(to.to_string());
    let mut text = format!("upgrade to {}", steps[0]);
    if steps.len() > 1 {
        text.push_str(" first");
        for step in &steps[1..] {
            text.push_str(&format!(", then {step}"));
        }
    }
    text
}

/// Refuses a remote running ahead of its primary.
pub fn check_remote_not_ahead(
    remote: &str,
    primary_version: &IstioVersion,
    remote_version: &IstioVersion,
) -> Result<(), UpgradeError> {
    if remote_version > primary_version {
        return Err(UpgradeError::RemoteAhead {
            remote: remote.to_owned(),
            remote_version: remote_version.to_string(),
            primary_version: primary_version.to_string(),
        });
    }
    Ok(())
}

/// Options of a canary upgrade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CanaryOptions {
    /// Namespaces moved per batch (per cluster).
    pub batch_size: usize,
    /// Pause after each passed gate, in seconds.
    pub pause_seconds: u64,
    /// The highest 5xx share (0–1) a moved service may answer with.
    pub max_error_ratio: f64,
    /// How long the gate watches traffic of the moved services, in seconds.
    pub gate_window_seconds: u64,
    /// Per cluster, a URL serving Istio standard metrics in the Prometheus text format (a
    /// Prometheus `/federate` endpoint or a scrape target); without one, the gate judges by
    /// component health alone.
    pub metrics_urls: BTreeMap<String, String>,
    /// A Prometheus server (`http://prometheus:9090`) scraping the clusters' Istio metrics; when
    /// set, the gate asks it for each moved service's 5xx share over the window (by the
    /// `destination_cluster` label), and `metrics_urls` is not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prometheus_url: Option<String>,
}

impl Default for CanaryOptions {
    fn default() -> Self {
        Self {
            batch_size: 5,
            pause_seconds: 0,
            max_error_ratio: 0.05,
            gate_window_seconds: 10,
            metrics_urls: BTreeMap::new(),
            prometheus_url: None,
        }
    }
}

impl CanaryOptions {
    /// Why the options cannot be used, if they cannot.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.batch_size == 0 {
            problems.push("batch size must be at least 1".to_owned());
        }
        if !(0.0..=1.0).contains(&self.max_error_ratio) {
            problems.push("maximum error ratio must be between 0 and 1".to_owned());
        }
        if self.pause_seconds > 24 * 3600 {
            problems.push("pause between batches must be at most a day".to_owned());
        }
        if self.gate_window_seconds > 3600 {
            problems.push("gate window must be at most an hour".to_owned());
        }
        let urls = self.metrics_urls.values().chain(self.prometheus_url.iter());
        for url in urls {
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url.len() > 2048
                || url.chars().any(char::is_whitespace)
            {
                problems.push(format!(
                    "metrics URL {:?} must be an http:// or https:// URL",
                    url.chars().take(80).collect::<String>()
                ));
            }
        }
        problems
    }
}

/// Splits namespaces into batches of at most `size` (a size of 0 is taken as 1).
pub fn batches(namespaces: &[NamespaceName], size: usize) -> Vec<Vec<NamespaceName>> {
    namespaces
        .chunks(size.max(1))
        .map(<[NamespaceName]>::to_vec)
        .collect()
}

/// What a health gate read in one cluster after a batch moved.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GateReading {
    /// The cluster.
    pub cluster: String,
    /// The new revision.
    pub revision: String,
    /// Whether the new revision's control plane reports ready.
    pub control_plane_ready: bool,
    /// Why not, when it is not.
    pub control_plane_detail: String,
    /// Moved workloads (`namespace/name`) that are not available.
    pub unavailable_workloads: Vec<String>,
    /// Error ratio per moved service (`service.namespace`), when metrics were read.
    pub error_ratios: BTreeMap<String, f64>,
}

/// A health gate's decision.
#[derive(Debug, Clone, PartialEq)]
pub enum GateVerdict {
    /// Go on.
    Pass,
    /// Stop and roll back, for these reasons.
    Fail(Vec<String>),
}

/// Judges a gate reading against the highest tolerated error ratio.
pub fn evaluate_gate(reading: &GateReading, max_error_ratio: f64) -> GateVerdict {
    let mut reasons = Vec::new();
    if !reading.control_plane_ready {
        reasons.push(format!(
            "revision {} is not ready in {}: {}",
            reading.revision, reading.cluster, reading.control_plane_detail
        ));
    }
    for workload in &reading.unavailable_workloads {
        reasons.push(format!(
            "workload {workload} in {} is not available",
            reading.cluster
        ));
    }
    for (service, ratio) in &reading.error_ratios {
        if *ratio > max_error_ratio {
            reasons.push(format!(
                "service {service} in {} answers {:.1}% errors (threshold {:.1}%)",
                reading.cluster,
                ratio * 100.0,
                max_error_ratio * 100.0
            ));
        }
    }
    if reasons.is_empty() {
        GateVerdict::Pass
    } else {
        GateVerdict::Fail(reasons)
    }
}

/// Request counts per service (`service.namespace`): (all, 5xx), from `istio_requests_total` as
/// reported by the destination proxy, for services in `namespaces`.
pub fn request_counts(
    metrics: &str,
    namespaces: &BTreeSet<String>,
) -> BTreeMap<String, (f64, f64)> {
    let mut counts: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("istio_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |key: &str| {
            let needle = format!("{key}=\"");
            labels.split(',').find_map(|pair| {
                pair.trim()
                    .strip_prefix(&needle)
                    .and_then(|v| v.strip_suffix('"'))
            })
        };
        if label("reporter") != Some("destination") {
            continue;
        }
        let (Some(namespace), Some(service)) = (
            label("destination_service_namespace"),
            label("destination_service_name"),
        ) else {
            continue;
        };
        if !namespaces.contains(namespace) {
            continue;
        }
        let entry = counts.entry(format!("{service}.{namespace}")).or_default();
        entry.0 += value;
        if label("response_code").is_some_and(|c| c.starts_with('5')) {
            entry.1 += value;
        }
    }
    counts
}

/// Error ratio per service over the window between two metric samples (counters only grow;
/// services without traffic in the window are left out).
pub fn error_ratios(
    before: &BTreeMap<String, (f64, f64)>,
    after: &BTreeMap<String, (f64, f64)>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(service, (total, errors))| {
            let (total_before, errors_before) = before.get(service).copied().unwrap_or_default();
            let requests = total - total_before;
            (requests > 0.0).then(|| {
                (
                    service.clone(),
                    ((errors - errors_before) / requests).clamp(0.0, 1.0),
                )
            })
        })
        .collect()
}

/// The PromQL query of a gate: per moved service in `cluster` (`destination_cluster`), the share
/// of requests answered with 5xx over the last `window_seconds`, as reported by the destination
/// proxies. Services without errors in the window are absent from the result (no 5xx series).
pub fn error_ratio_query(
    cluster: &str,
    namespaces: &BTreeSet<String>,
    window_seconds: u64,
) -> String {
    let namespaces: Vec<&str> = namespaces.iter().map(String::as_str).collect();
    let selector = format!(
        "reporter=\"destination\",destination_cluster=\"{cluster}\",destination_service_namespace=~\"{}\"",
        namespaces.join("|")
    );
    let window = window_seconds.max(1);
    let by = "destination_service_name, destination_service_namespace";
    format!(
        "sum by ({by}) (increase(istio_requests_total{{{selector},response_code=~\"5..\"}}[{window}s])) \
         / sum by ({by}) (increase(istio_requests_total{{{selector}}}[{window}s]))"
    )
}

/// The error ratios (`service.namespace` → share) of a Prometheus `/api/v1/query` answer to
/// [`error_ratio_query`].
pub fn error_ratios_from_prometheus(answer: &Value) -> Result<BTreeMap<String, f64>, String> {
    if answer["status"] != "success" {
        return Err(format!(
            "Prometheus answered {}: {}",
            answer["status"],
            answer["error"].as_str().unwrap_or("no error text")
        ));
    }
    let mut ratios = BTreeMap::new();
    for sample in answer["data"]["result"].as_array().into_iter().flatten() {
        let metric = &sample["metric"];
        let (Some(service), Some(namespace)) = (
            metric["destination_service_name"].as_str(),
            metric["destination_service_namespace"].as_str(),
        ) else {
            continue;
        };
        let Some(ratio) = sample["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
        else {
            continue;
        };
        ratios.insert(format!("{service}.{namespace}"), ratio.clamp(0.0, 1.0));
    }
    Ok(ratios)
}

/// What a pre-check saw in one cluster.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClusterObservation {
    /// The cluster.
    pub cluster: String,
    /// Why it could not be reached, if it could not.
    pub unreachable: Option<String>,
    /// Whether the running revision reports ready (always true where no istiod runs).
    pub current_ready: bool,
    /// Why not.
    pub current_detail: String,
    /// Names of the Sail `IstioRevision`s present.
    pub revisions: Vec<String>,
    /// Sidecar-injector webhooks present: (name, revision or tag it serves, if labelled).
    pub injector_webhooks: Vec<(String, Option<String>)>,
}

/// Something that blocks an upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A cluster cannot be reached.
    Unreachable {
        /// The cluster.
        cluster: String,
        /// Why.
        reason: String,
    },
    /// The running revision is not healthy.
    CurrentUnhealthy {
        /// The cluster.
        cluster: String,
        /// Why.
        detail: String,
    },
    /// A sidecar injector not belonging to this mesh's revisions.
    ForeignWebhook {
        /// The cluster.
        cluster: String,
        /// The webhook configuration.
        name: String,
    },
    /// A revision that is neither the running one nor the target.
    ConflictingRevision {
        /// The cluster.
        cluster: String,
        /// The revision.
        revision: String,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable { cluster, reason } => {
                write!(f, "{cluster}: cluster unreachable ({reason})")
            }
            Self::CurrentUnhealthy { cluster, detail } => {
                write!(
                    f,
                    "{cluster}: the running control plane is not healthy ({detail})"
                )
            }
            Self::ForeignWebhook { cluster, name } => write!(
                f,
                "{cluster}: sidecar injector {name} does not belong to this mesh; remove it first"
            ),
            Self::ConflictingRevision { cluster, revision } => write!(
                f,
                "{cluster}: revision {revision} is in the way (neither the running one nor the target)"
            ),
        }
    }
}

/// The findings that block an upgrade whose running revision is `current` and target `target`
/// (the same name for an in-place upgrade).
pub fn precheck(observations: &[ClusterObservation], current: &str, target: &str) -> Vec<Finding> {
    let ours = |revision: &str| revision == current || revision == target;
    let mut findings = Vec::new();
    for seen in observations {
        let cluster = seen.cluster.clone();
        if let Some(reason) = &seen.unreachable {
            findings.push(Finding::Unreachable {
                cluster,
                reason: reason.clone(),
            });
            continue;
        }
        if !seen.current_ready {
            findings.push(Finding::CurrentUnhealthy {
                cluster: cluster.clone(),
                detail: seen.current_detail.clone(),
            });
        }
        for revision in seen.revisions.iter().filter(|r| !ours(r)) {
            findings.push(Finding::ConflictingRevision {
                cluster: cluster.clone(),
                revision: revision.clone(),
            });
        }
        for (name, revision) in &seen.injector_webhooks {
            if !revision.as_deref().is_some_and(ours) {
                findings.push(Finding::ForeignWebhook {
                    cluster: cluster.clone(),
                    name: name.clone(),
                });
            }
        }
    }
    findings
}

/// The findings as one message.
pub fn describe_findings(findings: &[Finding]) -> String {
    let lines: Vec<String> = findings.iter().map(ToString::to_string).collect();
    format!("pre-checks failed: {}", lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> VersionCatalog {
        VersionCatalog::builtin()
    }

    #[test]
    fn the_next_minor_is_accepted_both_ways() {
        for kind in [UpgradeKind::Canary, UpgradeKind::InPlace] {
            let path = check_upgrade(&catalog(), "1.29.6", "1.30.3", kind).expect("allowed");
            assert_eq!(path.to.to_string(), "1.30.3");
            assert_eq!(path.from.to_string(), "1.29.6");
        }
        assert!(check_upgrade(&catalog(), "1.30.0", "1.30.3", UpgradeKind::InPlace).is_ok());
    }

    #[test]
    fn in_place_refuses_a_two_minor_jump_naming_the_path() {
        let err = check_upgrade(&catalog(), "1.29.0", "1.31.0-beta.1", UpgradeKind::InPlace)
            .expect_err("too far");
        let message = err.to_string();
        assert!(
            message.contains("upgrade to 1.30.3 first, then 1.31.0-beta.1"),
            "{message}"
        );
        assert!(check_upgrade(&catalog(), "1.29.0", "1.31.0-beta.1", UpgradeKind::Canary).is_ok());
    }

    #[test]
    fn guidance_walks_through_each_minor() {
        let catalog =
            VersionCatalog::from_strings(&["1.26.1", "1.27.2", "1.28.0", "1.29.3"]).expect("valid");
        let from = IstioVersion::parse("1.26.1").expect("valid");
        let to = IstioVersion::parse("1.29.3").expect("valid");
        assert_eq!(
            guidance(&catalog, &from, &to, 1),
            "upgrade to 1.27.2 first, then 1.28.0, then 1.29.3"
        );
    }

    #[test]
    fn same_version_downgrade_and_unknown_targets_are_refused() {
        assert!(matches!(
            check_upgrade(&catalog(), "1.30.3", "1.30.3", UpgradeKind::Canary),
            Err(UpgradeError::SameVersion { .. })
        ));
        assert!(matches!(
            check_upgrade(&catalog(), "1.30.3", "1.29.6", UpgradeKind::Canary),
            Err(UpgradeError::Downgrade { .. })
        ));
        let err = check_upgrade(&catalog(), "1.30.3", "1.99.0", UpgradeKind::Canary)
            .expect_err("unknown");
        assert!(err.to_string().contains("1.30.3"), "{err}");
    }

    #[test]
    fn a_remote_ahead_of_its_primary_is_refused() {
        let old = IstioVersion::parse("1.29.6").expect("valid");
        let new = IstioVersion::parse("1.30.3").expect("valid");
        assert!(check_remote_not_ahead("r", &new, &old).is_ok());
        assert!(check_remote_not_ahead("r", &new, &new).is_ok());
        assert!(check_remote_not_ahead("r", &old, &new).is_err());
    }

    #[test]
    fn namespaces_split_into_batches_in_order() {
        let ns: Vec<NamespaceName> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| NamespaceName::new(*n).expect("valid"))
            .collect();
        let sizes: Vec<usize> = batches(&ns, 2).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!(batches(&ns, 0).len(), 5);
        assert!(batches(&[], 3).is_empty());
    }

    #[test]
    fn a_gate_fails_on_an_unready_revision_or_too_many_errors() {
        let mut reading = GateReading {
            cluster: "east".into(),
            revision: "default-v1-30-3".into(),
            control_plane_ready: true,
            ..GateReading::default()
        };
        reading.error_ratios.insert("reviews.shop".into(), 0.01);
        assert_eq!(evaluate_gate(&reading, 0.05), GateVerdict::Pass);
        reading.error_ratios.insert("ratings.shop".into(), 0.5);
        let GateVerdict::Fail(reasons) = evaluate_gate(&reading, 0.05) else {
            panic!("must fail")
        };
        assert!(reasons[0].contains("ratings.shop") && reasons[0].contains("50.0%"));
        reading.error_ratios.clear();
        reading.control_plane_ready = false;
        reading.control_plane_detail = "istiod crash-loops".into();
        assert!(matches!(
            evaluate_gate(&reading, 0.05),
            GateVerdict::Fail(_)
        ));
    }

    #[test]
    fn error_ratios_come_from_the_window_between_two_samples() {
        let sample = |ok: u32, bad: u32| {
            format!(
                "# TYPE istio_requests_total counter\n\
                 istio_requests_total{{reporter=\"destination\",destination_service_name=\"ratings\",destination_service_namespace=\"shop\",response_code=\"200\"}} {ok}\n\
                 istio_requests_total{{reporter=\"destination\",destination_service_name=\"ratings\",destination_service_namespace=\"shop\",response_code=\"503\"}} {bad}\n\
                 istio_requests_total{{reporter=\"source\",destination_service_name=\"ratings\",destination_service_namespace=\"shop\",response_code=\"503\"}} 999\n\
                 istio_requests_total{{reporter=\"destination\",destination_service_name=\"x\",destination_service_namespace=\"other\",response_code=\"503\"}} 5\n"
            )
        };
        let shop = BTreeSet::from(["shop".to_owned()]);
        let before = request_counts(&sample(100, 100), &shop);
        let after = request_counts(&sample(150, 150), &shop);
        assert_eq!(after.len(), 1);
        let ratios = error_ratios(&before, &after);
        assert_eq!(ratios.get("ratings.shop"), Some(&0.5));
        assert!(
            error_ratios(&after, &after).is_empty(),
            "no traffic, no ratio"
        );
    }

    #[test]
    fn prechecks_list_every_blocking_finding() {
        let seen = vec![
            ClusterObservation {
                cluster: "a".into(),
                current_ready: true,
                revisions: vec!["default".into(), "default-v1-30-3".into(), "old".into()],
                injector_webhooks: vec![
                    ("istio-sidecar-injector".into(), Some("default".into())),
                    ("other-injector".into(), None),
                ],
                ..ClusterObservation::default()
            },
            ClusterObservation {
                cluster: "b".into(),
                unreachable: Some("connection refused".into()),
                ..ClusterObservation::default()
            },
            ClusterObservation {
                cluster: "c".into(),
                current_ready: false,
                current_detail: "istiod not available".into(),
                ..ClusterObservation::default()
            },
        ];
        let findings = precheck(&seen, "default", "default-v1-30-3");
        assert_eq!(findings.len(), 4, "{findings:?}");
        let text = describe_findings(&findings);
        for needle in [
            "old",
            "other-injector",
            "b: cluster unreachable",
            "c: the running",
        ] {
            assert!(text.contains(needle), "{text}");
        }
        let clean = vec![ClusterObservation {
            cluster: "a".into(),
            current_ready: true,
            revisions: vec!["default".into()],
            ..ClusterObservation::default()
        }];
        assert!(precheck(&clean, "default", "default-v1-30-3").is_empty());
    }

    #[test]
    fn canary_options_default_and_validate() {
        assert!(CanaryOptions::default().problems().is_empty());
        let bad = CanaryOptions {
            batch_size: 0,
            max_error_ratio: 2.0,
            ..CanaryOptions::default()
        };
        assert_eq!(bad.problems().len(), 2);
        let parsed: CanaryOptions =
            serde_json::from_str(r#"{"batchSize": 2}"#).expect("partial options decode");
        assert_eq!(parsed.batch_size, 2);
        assert_eq!(parsed.max_error_ratio, 0.05);
    }

    #[test]
    fn the_prometheus_gate_asks_for_5xx_shares_of_the_moved_services_in_one_cluster() {
        let namespaces: BTreeSet<String> = ["shop".to_owned(), "web".to_owned()].into();
        let query = error_ratio_query("cluster-2", &namespaces, 30);
        for part in [
            "destination_cluster=\"cluster-2\"",
            "destination_service_namespace=~\"shop|web\"",
            "reporter=\"destination\"",
            "response_code=~\"5..\"",
            "[30s]",
        ] {
            assert!(query.contains(part), "{part} in {query}");
        }
        let answer = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"destination_service_name": "ratings", "destination_service_namespace": "shop"},
             "value": [1700000000.0, "0.61"]},
            {"metric": {"destination_service_name": "reviews", "destination_service_namespace": "shop"},
             "value": [1700000000.0, "NaN"]},
        ]}});
        let ratios = error_ratios_from_prometheus(&answer).expect("parsed");
        assert_eq!(
            ratios.len(),
            1,
            "NaN (no traffic) is no reading: {ratios:?}"
        );
        assert!((ratios["ratings.shop"] - 0.61).abs() < 1e-9);
        let failed = serde_json::json!({"status": "error", "error": "parse error"});
        assert!(
            error_ratios_from_prometheus(&failed)
                .expect_err("refused")
                .contains("parse error")
        );
        let mut options = CanaryOptions {
            prometheus_url: Some("ftp://x".into()),
            ..CanaryOptions::default()
        };
        assert_eq!(options.problems().len(), 1);
        options.prometheus_url = Some("http://127.0.0.1:9090".into());
        assert!(options.problems().is_empty());
    }
}
