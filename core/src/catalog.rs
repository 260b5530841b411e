//! The catalog of installable Istio versions.
//!
//! Input: the Sail Operator's `versions.yaml` (built into the binary from
//! `core/data/istio/sail-versions.yaml`) or an override list from configuration. Output: the
//! concrete, non-EOL versions, newest first. Aliases such as `v1.30-latest` are resolved by the
//! operator itself and are not installable versions of their own, and development builds taken
//! from a branch head are not releases, so both are left out.

use std::fmt;

use serde::Deserialize;

/// The Sail Operator version list shipped with mesh-manager.
pub const BUILTIN_SAIL_VERSIONS: &str = include_str!("../data/istio/sail-versions.yaml");

/// One installable Istio version (`1.30.3`, `1.31.0-beta.1`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IstioVersion(semver::Version);

impl IstioVersion {
    /// Parses `1.30.3` or `v1.30.3`.
    pub fn parse(value: &str) -> Result<Self, CatalogError> {
        let trimmed = value.trim().trim_start_matches('v');
        semver::Version::parse(trimmed)
            .map(Self)
            .map_err(|source| CatalogError::BadVersion {
                version: value.chars().take(64).collect(),
                reason: source.to_string(),
            })
    }

    /// Major version number.
    pub fn major(&self) -> u64 {
        self.0.major
    }

    /// Minor version number.
    pub fn minor(&self) -> u64 {
        self.0.minor
    }

    /// Whether this is a pre-release (alpha, beta, rc).
    pub fn is_prerelease(&self) -> bool {
        !self.0.pre.is_empty()
    }

    /// The Sail revision name for this version: dots replaced by dashes (`1-30-3`), because
    /// revision names become label values and object names.
    pub fn revision_name(&self) -> String {
        self.0.to_string().replace('.', "-")
    }
}

impl fmt::Display for IstioVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a catalog could not be built or a version not found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The version list is not the Sail Operator's YAML format.
    #[error("failed to read the version list: {0}")]
    Format(String),
    /// A version string is not `major.minor.patch[-pre]`.
    #[error("invalid Istio version {version:?}: {reason}")]
    BadVersion {
        /// The offending input.
        version: String,
        /// What the parser said.
        reason: String,
    },
    /// The catalog ended up empty.
    #[error("the version catalog holds no installable version")]
    Empty,
    /// A requested version is not installable.
    #[error("Istio version {requested} is not installable; installable versions: {available}")]
    NotInstallable {
        /// What was asked for.
        requested: String,
        /// The catalog, comma separated.
        available: String,
    },
}

#[derive(Debug, Deserialize)]
struct SailVersionsFile {
    versions: Vec<SailVersionEntry>,
}

#[derive(Debug, Deserialize)]
struct SailVersionEntry {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    eol: bool,
    /// Set on development builds taken from a branch head; those are not releases.
    #[serde(default)]
    branch: Option<String>,
}

/// Installable Istio versions, newest first, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionCatalog {
    versions: Vec<IstioVersion>,
}

impl VersionCatalog {
    /// The catalog built into the binary.
    pub fn builtin() -> Self {
        Self::from_sail_yaml(BUILTIN_SAIL_VERSIONS)
            .expect("invariant: the built-in version list is valid and non-empty (tested)")
    }

    /// Builds a catalog from a Sail Operator `versions.yaml`: entries with a concrete `version`
    /// that are not marked `eol`.
    pub fn from_sail_yaml(yaml: &str) -> Result<Self, CatalogError> {
        let file: SailVersionsFile =
            serde_yaml::from_str(yaml).map_err(|e| CatalogError::Format(e.to_string()))?;
        let versions = file
            .versions
            .iter()
            .filter(|entry| !entry.eol && entry.branch.is_none())
            .filter_map(|entry| entry.version.as_deref().map(|v| (entry, v)))
            .map(|(entry, v)| {
                IstioVersion::parse(v).map_err(|e| match e {
                    CatalogError::BadVersion { reason, .. } => CatalogError::BadVersion {
                        version: entry.name.clone(),
                        reason,
                    },
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_versions(versions)
    }

    /// Builds a catalog from version strings (a configuration override).
    pub fn from_strings<S: AsRef<str>>(values: &[S]) -> Result<Self, CatalogError> {
        let versions = values
            .iter()
            .map(|v| IstioVersion::parse(v.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_versions(versions)
    }

    fn from_versions(mut versions: Vec<IstioVersion>) -> Result<Self, CatalogError> {
        versions.sort_by(|a, b| b.cmp(a));
        versions.dedup();
        if versions.is_empty() {
            return Err(CatalogError::Empty);
        }
        Ok(Self { versions })
    }

    /// The versions, newest first.
    pub fn versions(&self) -> &[IstioVersion] {
        &self.versions
    }

    /// The versions as strings, newest first (the API's `istioversions` answer).
    pub fn version_strings(&self) -> Vec<String> {
        self.versions.iter().map(ToString::to_string).collect()
    }

    /// The newest version that is not a pre-release, or the newest at all when every one is.
    pub fn newest_stable(&self) -> &IstioVersion {
        self.versions
            .iter()
            .find(|v| !v.is_prerelease())
            .unwrap_or(&self.versions[0])
    }

    /// Looks a requested version up; the error lists what is installable.
    pub fn resolve(&self, requested: &str) -> Result<&IstioVersion, CatalogError> {
        let not_installable = || CatalogError::NotInstallable {
            requested: requested.chars().take(64).collect(),
            available: self.version_strings().join(", "),
        };
        let parsed = IstioVersion::parse(requested).map_err(|_| not_installable())?;
        self.versions
            .iter()
            .find(|v| **v == parsed)
            .ok_or_else(not_installable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_lists_supported_versions_newest_first() {
        let catalog = VersionCatalog::builtin();
        let versions = catalog.version_strings();
        assert_eq!(versions[0], "1.31.0-beta.1");
        assert!(versions.contains(&"1.30.3".to_owned()));
        assert!(versions.contains(&"1.29.0".to_owned()));
        assert!(
            !versions.iter().any(|v| v.starts_with("1.28.")),
            "EOL versions must not be installable: {versions:?}"
        );
        let mut sorted = catalog.versions().to_vec();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(sorted, catalog.versions());
        assert_eq!(catalog.newest_stable().to_string(), "1.30.3");
    }

    #[test]
    fn aliases_are_not_versions() {
        let catalog = VersionCatalog::builtin();
        assert!(catalog.resolve("v1.30-latest").is_err());
        assert_eq!(
            catalog.resolve("v1.30.3").expect("known").to_string(),
            "1.30.3"
        );
    }

    #[test]
    fn unknown_versions_name_what_is_installable() {
        let err = VersionCatalog::builtin()
            .resolve("1.2.3")
            .expect_err("not installable");
        let message = err.to_string();
        assert!(
            message.contains("1.2.3") && message.contains("1.30.3"),
            "{message}"
        );
    }

    #[test]
    fn overrides_are_validated_and_sorted() {
        let catalog = VersionCatalog::from_strings(&["1.29.1", "1.30.0", "1.29.1"]).expect("valid");
        assert_eq!(catalog.version_strings(), ["1.30.0", "1.29.1"]);
        assert!(matches!(
            VersionCatalog::from_strings(&["one"]),
            Err(CatalogError::BadVersion { .. })
        ));
        assert_eq!(
            VersionCatalog::from_strings::<&str>(&[]),
            Err(CatalogError::Empty)
        );
    }

    #[test]
    fn revision_names_have_no_dots() {
        let version = IstioVersion::parse("1.30.3").expect("valid");
        assert_eq!(version.revision_name(), "1-30-3");
    }

    #[test]
    fn a_malformed_version_file_is_an_error_not_a_panic() {
        assert!(matches!(
            VersionCatalog::from_sail_yaml("versions: 3"),
            Err(CatalogError::Format(_))
        ));
    }
}
