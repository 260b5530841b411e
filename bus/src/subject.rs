//! Subjects: the one place where bus subjects are formatted and parsed.
//!
//! Input: a root (default `mesh`), the partition count P (default 32) and validated names from
//! `mesh-core`. Output: [`Subject`]s to publish on and [`SubjectFilter`]s to consume with:
//!
//! | what | subject |
//! | --- | --- |
//! | command | `<root>.cmd.<partition>.<tenant>.<mesh>` |
//! | event | `<root>.evt.<tenant>.<mesh>.<EventKind>` |
//! | dead letter | `<root>.dlq.<original subject without the root>` |
//!
//! The partition of a mesh is [`partition_of`]: FNV-1a (64 bit) of `tenant/mesh`, modulo P. It
//! must never change between releases, because every worker and every publisher has to agree on
//! it; the unit tests pin a few values.

use std::fmt;

use mesh_core::{MeshName, TenantId};
use serde::{Deserialize, Serialize};

/// The default subject root.
pub const DEFAULT_ROOT: &str = "mesh";

/// The default number of command partitions.
pub const DEFAULT_PARTITIONS: u32 = 32;

/// The largest partition count accepted; more would only multiply consumers.
pub const MAX_PARTITIONS: u32 = 4096;

/// The tenant under which bus-level events whose mesh cannot be told are published
/// (a dead letter whose subject and body name no valid mesh). Tenant ids starting with `_` are
/// reserved for this.
pub const SYSTEM_TENANT: &str = "_system";

/// The mesh under which bus-level events whose mesh cannot be told are published.
pub const SYSTEM_MESH: &str = "bus";

/// Why a subject, filter or root was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid subject {value:?}: {reason}")]
pub struct SubjectError {
    /// The offending input, truncated.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl SubjectError {
    fn new(value: &str, reason: &'static str) -> Self {
        Self {
            value: value.chars().take(120).collect(),
            reason,
        }
    }
}

/// Longest subject accepted; NATS has no hard limit, but nothing of ours comes near this.
const MAX_SUBJECT_LEN: usize = 512;

fn check_tokens(value: &str, wildcards: bool) -> Result<(), SubjectError> {
    if value.is_empty() {
        return Err(SubjectError::new(value, "must not be empty"));
    }
    if value.len() > MAX_SUBJECT_LEN {
        return Err(SubjectError::new(value, "is too long"));
    }
    let tokens: Vec<&str> = value.split('.').collect();
    let last = tokens.len() - 1;
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err(SubjectError::new(value, "has an empty token"));
        }
        if !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(SubjectError::new(
                value,
                "may contain only printable ASCII without spaces",
            ));
        }
        let wild = *token == "*" || *token == ">";
        if wild && !wildcards {
            return Err(SubjectError::new(value, "must not contain wildcards"));
        }
        if wild && *token == ">" && i != last {
            return Err(SubjectError::new(value, "'>' may only be the last token"));
        }
        if !wild && (token.contains('*') || token.contains('>')) {
            return Err(SubjectError::new(
                value,
                "wildcards must be whole tokens ('*' or '>')",
            ));
        }
    }
    Ok(())
}

/// A concrete subject to publish on: dot-separated, non-empty printable tokens, no wildcards.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subject(String);

impl Subject {
    /// Validates `value` as a concrete subject.
    pub fn new(value: impl Into<String>) -> Result<Self, SubjectError> {
        let value = value.into();
        check_tokens(&value, false)?;
        Ok(Self(value))
    }

    /// The subject as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The dot-separated tokens of the subject.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Subject {
    type Error = SubjectError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Subject> for String {
    fn from(subject: Subject) -> String {
        subject.0
    }
}

impl AsRef<str> for Subject {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A subject filter for consumers: like a [`Subject`], but `*` (one token) and `>` (the rest,
/// last token only) are allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubjectFilter(String);

impl SubjectFilter {
    /// Validates `value` as a filter.
    pub fn new(value: impl Into<String>) -> Result<Self, SubjectError> {
        let value = value.into();
        check_tokens(&value, true)?;
        Ok(Self(value))
    }

    /// The filter as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `subject` matches this filter (NATS wildcard semantics).
    pub fn matches(&self, subject: &Subject) -> bool {
        let mut filter = self.0.split('.');
        let mut tokens = subject.tokens();
        loop {
            match (filter.next(), tokens.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(f), Some(t)) if f == t => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl fmt::Display for SubjectFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SubjectFilter {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The partition of a mesh: FNV-1a (64 bit) of the bytes of `tenant/mesh`, modulo `partitions`.
///
/// Stable across processes, platforms and releases (unlike `std`'s `DefaultHasher`). A
/// `partitions` of 0 is treated as 1.
pub fn partition_of(tenant: &TenantId, mesh: &MeshName, partitions: u32) -> u32 {
    let hash = fnv1a64(
        tenant
            .as_str()
            .bytes()
            .chain(std::iter::once(b'/'))
            .chain(mesh.as_str().bytes()),
    );
    let partitions = u64::from(partitions.max(1));
    // The remainder is below `partitions`, which came from a u32.
    u32::try_from(hash % partitions).unwrap_or(0)
}

/// FNV-1a, 64 bit (offset basis and prime from the FNV specification).
fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.into_iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// What a command subject says about its message, as parsed by [`Subjects::parse_command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRoute {
    /// The partition token.
    pub partition: u32,
    /// The tenant token, validated.
    pub tenant: TenantId,
    /// The mesh token, validated.
    pub mesh: MeshName,
}

/// Builds every subject of the bus from a root and the partition count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    root: String,
    partitions: u32,
}

impl Default for Subjects {
    fn default() -> Self {
        Self {
            root: DEFAULT_ROOT.to_owned(),
            partitions: DEFAULT_PARTITIONS,
        }
    }
}

impl Subjects {
    /// Subjects under `root` (one token of ASCII letters, digits, `-` and `_`) with `partitions`
    /// command partitions (1 to [`MAX_PARTITIONS`]).
    pub fn new(root: impl Into<String>, partitions: u32) -> Result<Self, SubjectError> {
        let root = root.into();
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if root.is_empty() || root.len() > 32 || !root.chars().all(valid) {
            return Err(SubjectError::new(
                &root,
                "a root must be 1 to 32 ASCII letters, digits, '-' or '_'",
            ));
        }
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(SubjectError::new(
                &root,
                "the partition count must be between 1 and 4096",
            ));
        }
        Ok(Self { root, partitions })
    }

    /// The root token.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The number of command partitions.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The partition of a mesh (see [`partition_of`]).
    pub fn partition_of(&self, tenant: &TenantId, mesh: &MeshName) -> u32 {
        partition_of(tenant, mesh, self.partitions)
    }

    // Every token below is a validated name, a number or a fixed word, so the result is a valid
    // subject by construction; `known` keeps that promise checked without unwrapping.
    fn known(value: String) -> Subject {
        debug_assert!(check_tokens(&value, false).is_ok(), "{value}");
        Subject(value)
    }

    fn known_filter(value: String) -> SubjectFilter {
        debug_assert!(check_tokens(&value, true).is_ok(), "{value}");
        SubjectFilter(value)
    }

    /// `<root>.cmd.<partition>.<tenant>.<mesh>`: where commands for a mesh are published.
    pub fn command(&self, tenant: &TenantId, mesh: &MeshName) -> Subject {
        let partition = self.partition_of(tenant, mesh);
        Self::known(format!("{}.cmd.{partition}.{tenant}.{mesh}", self.root))
    }

    /// `<root>.evt.<tenant>.<mesh>.<kind>`: where an event of a mesh is published. `kind` must be
    /// one token (event kinds are `PascalCase` words).
    pub fn event(
        &self,
        tenant: &TenantId,
        mesh: &MeshName,
        kind: &str,
    ) -> Result<Subject, SubjectError> {
        if kind.contains('.') {
            return Err(SubjectError::new(kind, "an event kind must be one token"));
        }
        Subject::new(format!("{}.evt.{tenant}.{mesh}.{kind}", self.root))
    }

    /// `<root>.dlq.<rest>`: where a message published on `original` is dead-lettered (`rest` is
    /// `original` without its root, or `unknown` for a subject outside the root).
    pub fn dead_letter(&self, original: &str) -> Subject {
        let rest = original
            .strip_prefix(self.root.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .filter(|rest| check_tokens(rest, false).is_ok())
            .unwrap_or("unknown");
        Self::known(format!("{}.dlq.{rest}", self.root))
    }

    /// `<root>.cmd.<partition>.>`: the commands of one partition.
    pub fn partition_filter(&self, partition: u32) -> SubjectFilter {
        Self::known_filter(format!("{}.cmd.{partition}.>", self.root))
    }

    /// `<root>.cmd.>`: every command (the subjects of the command stream).
    pub fn all_commands(&self) -> SubjectFilter {
        Self::known_filter(format!("{}.cmd.>", self.root))
    }

    /// `<root>.evt.<tenant>.<mesh>.*`: every event of one mesh.
    pub fn mesh_events(&self, tenant: &TenantId, mesh: &MeshName) -> SubjectFilter {
        Self::known_filter(format!("{}.evt.{tenant}.{mesh}.*", self.root))
    }

    /// `<root>.evt.<tenant>.*.*`: every event of one tenant's meshes.
    pub fn tenant_events(&self, tenant: &TenantId) -> SubjectFilter {
        Self::known_filter(format!("{}.evt.{tenant}.*.*", self.root))
    }

    /// `<root>.evt.>`: every event.
    pub fn all_events(&self) -> SubjectFilter {
        Self::known_filter(format!("{}.evt.>", self.root))
    }

    /// `<root>.dlq.>`: every dead letter.
    pub fn all_dead_letters(&self) -> SubjectFilter {
        Self::known_filter(format!("{}.dlq.>", self.root))
    }

    /// Parses a command subject of this root; `None` if it is not one, or names an invalid
    /// tenant or mesh, or a partition outside `0..P`.
    pub fn parse_command(&self, subject: &str) -> Option<CommandRoute> {
        let mut tokens = subject.split('.');
        let (root, cmd) = (tokens.next()?, tokens.next()?);
        if root != self.root || cmd != "cmd" {
            return None;
        }
        let partition: u32 = tokens.next()?.parse().ok()?;
        let tenant = TenantId::new(tokens.next()?).ok()?;
        let mesh = MeshName::new(tokens.next()?).ok()?;
        if tokens.next().is_some() || partition >= self.partitions {
            return None;
        }
        Some(CommandRoute {
            partition,
            tenant,
            mesh,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tenant: &str, mesh: &str) -> (TenantId, MeshName) {
        (
            TenantId::new(tenant).expect("tenant"),
            MeshName::new(mesh).expect("mesh"),
        )
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(*b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn partitions_are_pinned_forever() {
        // Computed once with an independent FNV-1a implementation; every release must keep
        // producing these, or publishers and workers of different versions disagree.
        let cases = [
            ("acme", "demo", 32, 7),
            ("acme", "prod-eu", 32, 14),
            ("Tenant_01", "mesh-1", 32, 1),
            ("acme", "demo", 7, 1),
        ];
        for (tenant, mesh, p, expected) in cases {
            let (t, m) = names(tenant, mesh);
            assert_eq!(partition_of(&t, &m, p), expected, "{tenant}/{mesh} mod {p}");
        }
    }

    #[test]
    fn zero_partitions_count_as_one() {
        let (t, m) = names("acme", "demo");
        assert_eq!(partition_of(&t, &m, 0), 0);
        assert_eq!(partition_of(&t, &m, 1), 0);
    }

    #[test]
    fn partitions_spread_meshes() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..200 {
            let (t, m) = names("acme", &format!("mesh-{i}"));
            let p = partition_of(&t, &m, DEFAULT_PARTITIONS);
            assert!(p < DEFAULT_PARTITIONS);
            seen.insert(p);
        }
        assert!(seen.len() > 24, "only {} partitions used", seen.len());
    }

    #[test]
    fn command_and_event_subjects_have_the_documented_shape() {
        let subjects = Subjects::default();
        let (t, m) = names("acme", "demo");
        let p = subjects.partition_of(&t, &m);
        assert_eq!(
            subjects.command(&t, &m).as_str(),
            format!("mesh.cmd.{p}.acme.demo")
        );
        assert_eq!(
            subjects
                .event(&t, &m, "MeshCreated")
                .expect("event")
                .as_str(),
            "mesh.evt.acme.demo.MeshCreated"
        );
        assert_eq!(
            subjects.dead_letter("mesh.cmd.3.acme.demo").as_str(),
            "mesh.dlq.cmd.3.acme.demo"
        );
        assert_eq!(
            subjects.dead_letter("other.cmd").as_str(),
            "mesh.dlq.unknown"
        );
        assert_eq!(subjects.partition_filter(5).as_str(), "mesh.cmd.5.>");
        assert_eq!(
            subjects.mesh_events(&t, &m).as_str(),
            "mesh.evt.acme.demo.*"
        );
        assert_eq!(subjects.tenant_events(&t).as_str(), "mesh.evt.acme.*.*");
        assert_eq!(subjects.all_events().as_str(), "mesh.evt.>");
        assert_eq!(subjects.all_dead_letters().as_str(), "mesh.dlq.>");
        assert!(subjects.event(&t, &m, "a.b").is_err());
    }

    #[test]
    fn the_root_is_configurable() {
        let subjects = Subjects::new("t0abc", 4).expect("root");
        let (t, m) = names("acme", "demo");
        assert!(subjects.command(&t, &m).as_str().starts_with("t0abc.cmd."));
        assert!(Subjects::new("a.b", 4).is_err());
        assert!(Subjects::new("", 4).is_err());
        assert!(Subjects::new("mesh", 0).is_err());
        assert!(Subjects::new("mesh", MAX_PARTITIONS + 1).is_err());
    }

    #[test]
    fn command_subjects_parse_back() {
        let subjects = Subjects::default();
        let (t, m) = names("acme", "demo");
        let route = subjects
            .parse_command(subjects.command(&t, &m).as_str())
            .expect("parses");
        assert_eq!(route.tenant, t);
        assert_eq!(route.mesh, m);
        assert_eq!(route.partition, subjects.partition_of(&t, &m));
        for bad in [
            "mesh.cmd.99.acme.demo",
            "mesh.cmd.1.acme",
            "mesh.cmd.1.acme.demo.x",
            "mesh.cmd.x.acme.demo",
            "mesh.cmd.1.acme.Bad",
            "other.cmd.1.acme.demo",
            "mesh.evt.acme.demo.MeshCreated",
        ] {
            assert!(subjects.parse_command(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn subjects_refuse_wildcards_and_empty_tokens() {
        for bad in ["", "a..b", ".a", "a.", "a.*", "a.>", "a b", "a.b*"] {
            assert!(Subject::new(bad).is_err(), "{bad:?}");
        }
        assert!(Subject::new("mesh.cmd.1.a.b").is_ok());
        for ok in ["a.*", "a.>", "a.*.c", ">"] {
            assert!(SubjectFilter::new(ok).is_ok(), "{ok:?}");
        }
        for bad in ["a.>.c", "a.b*", "", "a..b"] {
            assert!(SubjectFilter::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn filters_match_like_nats() {
        let subject = Subject::new("mesh.evt.acme.demo.MeshCreated").expect("subject");
        for (filter, expected) in [
            ("mesh.evt.>", true),
            ("mesh.evt.acme.demo.*", true),
            ("mesh.evt.acme.*.*", true),
            ("mesh.evt.acme.*", false),
            ("mesh.evt.other.>", false),
            ("mesh.evt.acme.demo.MeshCreated", true),
            ("mesh.evt.acme.demo.MeshCreated.>", false),
            (">", true),
        ] {
            let f = SubjectFilter::new(filter).expect("filter");
            assert_eq!(f.matches(&subject), expected, "{filter}");
        }
    }
}
