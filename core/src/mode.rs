//! Deployment modes of a mesh and roles of its member clusters.
//!
//! The names on the wire are the seed's: modes `single`, `primary-remote`, `multi-primary`; roles
//! `master` (a primary, running its own istiod) and `remote` (using a primary's control plane).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How the clusters of a mesh share control planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MeshMode {
    /// One cluster with its own control plane.
    Single,
    /// One primary whose istiod also serves the remote clusters, across networks.
    PrimaryRemote,
    /// Every cluster a primary with its own istiod, all sharing one trust root, across networks.
    MultiPrimary,
}

impl MeshMode {
    /// The wire name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::PrimaryRemote => "primary-remote",
            Self::MultiPrimary => "multi-primary",
        }
    }
}

impl fmt::Display for MeshMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode name that is not one of the three known modes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mesh mode {0:?}: expected one of single, primary-remote, multi-primary")]
pub struct UnknownMode(pub String);

impl FromStr for MeshMode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "single" => Ok(Self::Single),
            "primary-remote" => Ok(Self::PrimaryRemote),
            "multi-primary" => Ok(Self::MultiPrimary),
            other => Err(UnknownMode(other.to_owned())),
        }
    }
}

/// The role of a member cluster (seed names: `master` for a primary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterRole {
    /// Runs its own istiod.
    #[serde(alias = "primary")]
    Master,
    /// Uses the istiod of a primary.
    Remote,
}

impl ClusterRole {
    /// The seed's wire name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Remote => "remote",
        }
    }
}

impl fmt::Display for ClusterRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_through_their_wire_names() {
        for mode in [
            MeshMode::Single,
            MeshMode::PrimaryRemote,
            MeshMode::MultiPrimary,
        ] {
            assert_eq!(mode.as_str().parse::<MeshMode>(), Ok(mode));
            let json = serde_json::to_string(&mode).expect("serialize");
            assert_eq!(json, format!("\"{mode}\""));
        }
        assert!("dual".parse::<MeshMode>().is_err());
    }

    #[test]
    fn primary_is_accepted_as_an_alias_of_master() {
        let role: ClusterRole = serde_json::from_str("\"primary\"").expect("alias");
        assert_eq!(role, ClusterRole::Master);
        assert_eq!(
            serde_json::to_string(&role).expect("serialize"),
            "\"master\""
        );
    }
}
