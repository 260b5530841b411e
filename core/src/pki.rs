//! The mesh's certificate authorities.
//!
//! Role: one root CA per mesh and, signed by it, one intermediate CA per member cluster, which
//! istiod uses as its plug-in CA (Secret `cacerts` in `istio-system`). Because every cluster's
//! workload certificates chain to the same root, workloads in different clusters trust each other.
//!
//! Inputs: the mesh or cluster name, the root CA (as PEM, e.g. decrypted from storage) and the
//! current time (passed in, so this crate reads no clock). Outputs: PEM strings. Keys are
//! ECDSA P-256 in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), which istiod's plug-in CA accepts.
//! Randomness for key generation comes from the operating system through the crypto backend.
//!
//! Private keys never appear in `Debug` output.

use std::fmt;
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::names::{ClusterName, MeshName};

/// The organization named in every certificate mesh-manager issues.
pub const ORGANIZATION: &str = "mesh-manager";
/// Lifetime of a root CA.
pub const ROOT_VALIDITY: Duration = Duration::days(3650);
/// Lifetime of a cluster's intermediate CA (never beyond its root's end).
pub const INTERMEDIATE_VALIDITY: Duration = Duration::days(730);
/// How far `notBefore` is set back from "now", so clusters whose clocks run a little behind
/// accept a freshly issued certificate.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::minutes(5);
/// The DNS name Istio's own tooling puts in an intermediate CA (istiod's service).
pub const ISTIOD_SAN: &str = "istiod.istio-system.svc";

/// Why a CA could not be generated, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Generating a key pair failed.
    #[error("failed to generate a key pair for {subject}")]
    GenerateKey {
        /// What the key was for.
        subject: String,
        /// The crypto backend's error.
        source: rcgen::Error,
    },
    /// Signing a certificate failed.
    #[error("failed to sign the certificate of {subject}")]
    Sign {
        /// The certificate's subject.
        subject: String,
        /// The signer's error.
        source: rcgen::Error,
    },
    /// The root CA's key is not a usable PEM private key.
    #[error("failed to load the root CA key: {reason}")]
    LoadRootKey {
        /// What the parser said.
        reason: String,
    },
    /// The root CA's certificate is not a usable PEM CA certificate.
    #[error("failed to load the root CA certificate: {reason}")]
    LoadRootCert {
        /// What is wrong with it.
        reason: String,
    },
}

/// A mesh's root CA: certificate and private key, PEM encoded.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootCa {
    /// The self-signed root certificate (PEM).
    pub cert_pem: String,
    /// The root's private key (PKCS#8 PEM). Secret: store encrypted, never log.
    pub key_pem: String,
}

impl fmt::Debug for RootCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootCa")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A cluster's plug-in CA material: the four keys of Secret `cacerts`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaBundle {
    /// The cluster's intermediate CA certificate (`ca-cert.pem`).
    pub ca_cert: String,
    /// The intermediate's private key (`ca-key.pem`). Secret: store encrypted, never log.
    pub ca_key: String,
    /// The mesh's root certificate (`root-cert.pem`).
    pub root_cert: String,
    /// Intermediate followed by root (`cert-chain.pem`).
    pub cert_chain: String,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("ca_cert", &self.ca_cert)
            .field("ca_key", &"<redacted>")
            .field("root_cert", &self.root_cert)
            .field("cert_chain", &self.cert_chain)
            .finish()
    }
}

/// The usages of a CA certificate: signing certificates and revocation lists, and signatures.
fn ca_key_usages() -> Vec<KeyUsagePurpose> {
    vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ]
}

fn distinguished_name(common_name: String, locality: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    if let Some(locality) = locality {
        dn.push(DnType::LocalityName, locality);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn generate_key(subject: &str) -> Result<KeyPair, PkiError> {
    KeyPair::generate().map_err(|source| PkiError::GenerateKey {
        subject: subject.to_owned(),
        source,
    })
}

impl RootCa {
    /// Generates a new root CA for `mesh`: `O=mesh-manager, CN=<mesh> root CA`, CA without a path
    /// length limit, valid for ten years from `now` (less the clock-skew allowance).
    pub fn generate(mesh: &MeshName, now: SystemTime) -> Result<Self, PkiError> {
        let subject = format!("{mesh} root CA");
        let key = generate_key(&subject)?;
        let not_before = OffsetDateTime::from(now) - CLOCK_SKEW_ALLOWANCE;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(subject.clone(), None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = ca_key_usages();
        params.not_before = not_before;
        params.not_after = not_before + ROOT_VALIDITY;
        let cert = params
            .self_signed(&key)
            .map_err(|source| PkiError::Sign { subject, source })?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Loads a root CA from PEM, checking that the certificate is a CA certificate and that the
    /// key belongs to it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let root = Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        };
        root.load()?;
        Ok(root)
    }

    /// Parses the key and certificate into an issuer, plus the root's end of validity.
    fn load(&self) -> Result<(Issuer<'static, KeyPair>, OffsetDateTime), PkiError> {
        let key = KeyPair::from_pem(&self.key_pem).map_err(|e| PkiError::LoadRootKey {
            reason: e.to_string(),
        })?;
        let cert_err = |reason: String| PkiError::LoadRootCert { reason };
        let (_, pem) = x509_parser::pem::parse_x509_pem(self.cert_pem.as_bytes())
            .map_err(|e| cert_err(format!("not a PEM certificate: {e}")))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| cert_err(format!("not an X.509 certificate: {e}")))?;
        if !cert.is_ca() {
            return Err(cert_err("the certificate is not a CA certificate".into()));
        }
        if cert.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key) {
            return Err(cert_err(
                "the key does not belong to the certificate".into(),
            ));
        }
        let not_after = cert.validity().not_after.to_datetime();
        let issuer =
            Issuer::from_ca_cert_pem(&self.cert_pem, key).map_err(|e| cert_err(e.to_string()))?;
        Ok((issuer, not_after))
    }
}

/// Issues the intermediate CA of `cluster`, signed by `root`: `O=mesh-manager, L=<cluster>,
/// CN=<cluster> intermediate CA`, SAN `istiod.istio-system.svc`, CA with path length 0 (it signs
/// workload certificates only), valid for two years from `now` but never past the root's end.
pub fn issue_intermediate(
    root: &RootCa,
    cluster: &ClusterName,
    now: SystemTime,
) -> Result<CaBundle, PkiError> {
    let (issuer, root_not_after) = root.load()?;
    let subject = format!("{cluster} intermediate CA");
    let key = generate_key(&subject)?;
    let sign_err = |source| PkiError::Sign {
        subject: subject.clone(),
        source,
    };
    let mut params = CertificateParams::new(vec![ISTIOD_SAN.to_owned()]).map_err(sign_err)?;
    let not_before = OffsetDateTime::from(now) - CLOCK_SKEW_ALLOWANCE;
    params.distinguished_name = distinguished_name(subject.clone(), Some(cluster.as_str()));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = ca_key_usages();
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = (not_before + INTERMEDIATE_VALIDITY).min(root_not_after);
    let cert = params.signed_by(&key, &issuer).map_err(sign_err)?;
    let ca_cert = cert.pem();
    Ok(CaBundle {
        cert_chain: format!("{ca_cert}{}", root.cert_pem),
        ca_cert,
        ca_key: key.serialize_pem(),
        root_cert: root.cert_pem.clone(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration as StdDuration;

    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::pem::Pem;

    use super::*;

    fn mesh() -> MeshName {
        MeshName::new("demo").expect("valid")
    }

    fn cluster() -> ClusterName {
        ClusterName::new("east-1").expect("valid")
    }

    /// 2026-01-01T00:00:00Z.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + StdDuration::from_secs(1_767_225_600)
    }

    fn pems(text: &str) -> Vec<Pem> {
        Pem::iter_from_buffer(text.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("valid PEM")
    }

    fn parse(pem: &Pem) -> X509Certificate<'_> {
        pem.parse_x509().expect("valid certificate")
    }

    fn common_name(cert: &X509Certificate<'_>) -> String {
        cert.subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .expect("a common name")
            .to_owned()
    }

    fn path_len(cert: &X509Certificate<'_>) -> Option<u32> {
        cert.basic_constraints()
            .expect("well-formed")
            .expect("basic constraints present")
            .value
            .path_len_constraint
    }

    #[test]
    fn root_ca_is_a_self_signed_ten_year_ca() {
        let root = RootCa::generate(&mesh(), now()).expect("generate");
        let pem = &pems(&root.cert_pem)[0];
        let cert = parse(pem);
        assert!(cert.is_ca());
        assert_eq!(path_len(&cert), None);
        assert_eq!(cert.subject(), cert.issuer());
        assert_eq!(common_name(&cert), "demo root CA");
        let org = cert.subject().iter_organization().next().expect("an O");
        assert_eq!(org.as_str().expect("utf8"), "mesh-manager");
        cert.verify_signature(None).expect("self-signed");
        let validity = cert.validity();
        let start = OffsetDateTime::from(now());
        assert_eq!(
            validity.not_before.to_datetime(),
            start - CLOCK_SKEW_ALLOWANCE
        );
        assert_eq!(
            validity.not_after.to_datetime() - validity.not_before.to_datetime(),
            ROOT_VALIDITY
        );
        let usage = cert.key_usage().expect("ok").expect("present").value;
        assert!(usage.key_cert_sign() && usage.crl_sign());
        assert!(root.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn intermediate_chains_to_the_root() {
        let root = RootCa::generate(&mesh(), now()).expect("generate");
        let bundle = issue_intermediate(&root, &cluster(), now()).expect("issue");
        let root_pem = &pems(&root.cert_pem)[0];
        let root_cert = parse(root_pem);
        let ca_pem = &pems(&bundle.ca_cert)[0];
        let ca = parse(ca_pem);

        assert!(ca.is_ca());
        assert_eq!(path_len(&ca), Some(0));
        assert_eq!(ca.issuer(), root_cert.subject());
        assert_eq!(common_name(&ca), "east-1 intermediate CA");
        let locality = ca.subject().iter_locality().next().expect("an L");
        assert_eq!(locality.as_str().expect("utf8"), "east-1");
        ca.verify_signature(Some(root_cert.public_key()))
            .expect("signed by the root");
        assert_eq!(
            ca.validity().not_after.to_datetime() - ca.validity().not_before.to_datetime(),
            INTERMEDIATE_VALIDITY
        );
        let san = ca.subject_alternative_name().expect("ok").expect("present");
        assert_eq!(san.value.general_names, [GeneralName::DNSName(ISTIOD_SAN)]);

        // Key identifiers link the two certificates.
        let root_ski = root_cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0),
                _ => None,
            })
            .expect("root has a subject key id");
        let aki = ca
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.clone(),
                _ => None,
            })
            .expect("intermediate has an authority key id");
        assert_eq!(aki.0, root_ski);
    }

    #[test]
    fn bundle_holds_the_four_cacerts_entries() {
        let root = RootCa::generate(&mesh(), now()).expect("generate");
        let bundle = issue_intermediate(&root, &cluster(), now()).expect("issue");
        assert_eq!(bundle.root_cert, root.cert_pem);
        let chain = pems(&bundle.cert_chain);
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].contents, pems(&bundle.ca_cert)[0].contents);
        assert_eq!(chain[1].contents, pems(&root.cert_pem)[0].contents);
        assert!(bundle.ca_key.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_ne!(bundle.ca_key, root.key_pem);
    }

    #[test]
    fn intermediate_never_outlives_its_root() {
        let root = RootCa::generate(&mesh(), now()).expect("generate");
        let late = now() + StdDuration::from_secs(3640 * 86_400);
        let bundle = issue_intermediate(&root, &cluster(), late).expect("issue");
        let ca_pem = &pems(&bundle.ca_cert)[0];
        let root_pem = &pems(&root.cert_pem)[0];
        assert_eq!(
            parse(ca_pem).validity().not_after,
            parse(root_pem).validity().not_after
        );
    }

    #[test]
    fn a_root_loaded_from_pem_issues_like_the_original() {
        let root = RootCa::generate(&mesh(), now()).expect("generate");
        let loaded = RootCa::from_pem(&root.cert_pem, &root.key_pem).expect("load");
        assert_eq!(loaded, root);
        let bundle = issue_intermediate(&loaded, &cluster(), now()).expect("issue");
        let root_pem = &pems(&root.cert_pem)[0];
        let ca_pem = &pems(&bundle.ca_cert)[0];
        parse(ca_pem)
            .verify_signature(Some(parse(root_pem).public_key()))
            .expect("signed by the loaded root");
    }

    #[test]
    fn loading_refuses_mismatched_or_non_ca_material() {
        let root = RootCa::generate(&mesh(), now()).expect("generate");
        let other = RootCa::generate(&mesh(), now()).expect("generate");
        assert!(matches!(
            RootCa::from_pem(&root.cert_pem, &other.key_pem),
            Err(PkiError::LoadRootCert { .. })
        ));
        assert!(matches!(
            RootCa::from_pem(&root.cert_pem, "not a key"),
            Err(PkiError::LoadRootKey { .. })
        ));
        assert!(matches!(
            RootCa::from_pem("garbage", &root.key_pem),
            Err(PkiError::LoadRootCert { .. })
        ));
        // A leaf-like certificate (not a CA) is refused as a root.
        let key = KeyPair::from_pem(&root.key_pem).expect("key");
        let leaf = CertificateParams::new(vec!["leaf.example".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("sign");
        let err = RootCa::from_pem(&leaf.pem(), &root.key_pem).expect_err("not a CA");
        assert!(err.to_string().contains("not a CA"), "{err}");
    }

    #[test]
    fn debug_output_never_shows_private_keys() {
        let root = RootCa::generate(&mesh(), now()).expect("generate");
        let bundle = issue_intermediate(&root, &cluster(), now()).expect("issue");
        let shown = format!("{root:?} {bundle:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(shown.contains("<redacted>"));
        assert!(shown.contains("BEGIN CERTIFICATE"));
    }
}
