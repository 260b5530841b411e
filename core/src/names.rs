//! Validated names.
//!
//! Every identifier that reaches a subject, a database key or a Kubernetes object name passes through
//! one of these newtypes first, so the rest of the code never sees an empty, oversized or hostile
//! name. Meshes, clusters and namespaces follow the Kubernetes DNS-1123 label rules (they become
//! object names and label values); tenants are a little looser because upstream identity systems
//! issue ids with upper-case letters and underscores.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a name was refused; the message tells the user what a valid name looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct NameError {
    /// Which kind of name was checked (`mesh name`, `cluster name`, ...).
    pub what: &'static str,
    /// The offending input, truncated to a printable length.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl NameError {
    fn new(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        let mut shown: String = value.chars().take(80).collect();
        if value.chars().count() > 80 {
            shown.push('…');
        }
        Self {
            what,
            value: shown,
            reason: reason.into(),
        }
    }
}

/// Checks a DNS-1123 label: lower-case alphanumerics and `-`, starting and ending alphanumeric.
pub(crate) fn check_dns_label(
    what: &'static str,
    value: &str,
    max_len: usize,
) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::new(what, value, "must not be empty"));
    }
    if value.len() > max_len {
        return Err(NameError::new(
            what,
            value,
            format!("must be at most {max_len} characters"),
        ));
    }
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if !value.chars().all(valid_char) {
        return Err(NameError::new(
            what,
            value,
            "may contain only lower-case letters, digits and '-'",
        ));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !edge_ok(value.chars().next()) || !edge_ok(value.chars().last()) {
        return Err(NameError::new(
            what,
            value,
            "must start and end with a lower-case letter or digit",
        ));
    }
    Ok(())
}

macro_rules! validated_name {
    ($(#[$meta:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `value` and wraps it.
            pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
                let value = value.into();
                let check: fn(&str) -> Result<(), NameError> = $check;
                check(&value)?;
                Ok(Self(value))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

validated_name!(
    /// A mesh name: a DNS-1123 label of at most 63 characters (the seed column is `varchar(64)`).
    MeshName,
    "mesh name",
    |v| check_dns_label("mesh name", v, 63)
);

validated_name!(
    /// A member cluster's name: a DNS-1123 label of at most 63 characters; it becomes part of
    /// secret names and Istio's `clusterName`.
    ClusterName,
    "cluster name",
    |v| check_dns_label("cluster name", v, 63)
);

validated_name!(
    /// A Kubernetes namespace name (DNS-1123 label, at most 63 characters).
    NamespaceName,
    "namespace",
    |v| check_dns_label("namespace", v, 63)
);

validated_name!(
    /// A tenant id: 1 to 63 characters of ASCII letters, digits, `-` and `_`. It appears in bus
    /// subjects, so dots, wildcards and whitespace are refused.
    TenantId,
    "tenant id",
    |v| {
        if v.is_empty() {
            return Err(NameError::new("tenant id", v, "must not be empty"));
        }
        if v.len() > 63 {
            return Err(NameError::new("tenant id", v, "must be at most 63 characters"));
        }
        if !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(NameError::new(
                "tenant id",
                v,
                "may contain only ASCII letters, digits, '-' and '_'",
            ));
        }
        Ok(())
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_accept_ordinary_names() {
        for ok in ["a", "mesh-1", "prod-eu-west-3", &"a".repeat(63)] {
            assert!(MeshName::new(ok).is_ok(), "{ok} should be valid");
        }
    }

    #[test]
    fn dns_labels_refuse_what_kubernetes_refuses() {
        for bad in [
            "",
            "Mesh",
            "-a",
            "a-",
            "a.b",
            "a b",
            "a*",
            "a>",
            &"a".repeat(64),
            "ünïcode",
        ] {
            let err = MeshName::new(bad).expect_err(bad);
            assert_eq!(err.what, "mesh name");
        }
    }

    #[test]
    fn tenant_ids_refuse_subject_tokens() {
        assert!(TenantId::new("Tenant_01").is_ok());
        for bad in ["", "a.b", "*", ">", "a b", &"t".repeat(64)] {
            assert!(TenantId::new(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn names_deserialize_only_when_valid() {
        let ok: MeshName = serde_json::from_str("\"demo\"").expect("valid name");
        assert_eq!(ok.as_str(), "demo");
        let err = serde_json::from_str::<MeshName>("\"Bad.Name\"").expect_err("invalid name");
        assert!(err.to_string().contains("invalid mesh name"), "{err}");
    }

    #[test]
    fn long_values_are_truncated_in_errors() {
        let err = ClusterName::new("X".repeat(500)).expect_err("too long");
        assert!(err.to_string().len() < 300);
    }
}
