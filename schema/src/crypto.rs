//! Secrets sealed at rest.
//!
//! Cluster credentials and CA keys are sealed with XChaCha20-Poly1305 before they reach the database.
//! The 32-byte key comes from configuration (a key file holding it in base64); the sealed form is
//! `v1:<key id>:<base64(nonce ‖ ciphertext)>` and is bound to the row it belongs to by associated
//! data, so a sealed value copied into another row does not open. Keys and plaintexts are never
//! formatted by `Debug` or logged.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const FORMAT_VERSION: &str = "v1";

/// Why a key could not be loaded or a secret not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key file does not exist.
    #[error(
        "secret key file {path} does not exist: create one with `meshd keygen --out {path}` or point MESHD_SECRET_KEY_FILE at the existing key"
    )]
    MissingKeyFile {
        /// The configured path.
        path: String,
    },
    /// The key file exists but cannot be read.
    #[error("cannot read secret key file {path}: {source}")]
    ReadKeyFile {
        /// The configured path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file's content is not a base64 32-byte key.
    #[error("secret key in {origin} is not a base64-encoded 32-byte key")]
    BadKey {
        /// Where the key came from.
        origin: String,
    },
    /// A new key file could not be written.
    #[error("cannot write secret key file {path}: {source}")]
    WriteKeyFile {
        /// The target path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A sealed value was made with another key.
    #[error("secret was sealed with key {found}, but the configured key is {expected}")]
    WrongKey {
        /// Id of the configured key.
        expected: String,
        /// Id recorded in the sealed value.
        found: String,
    },
    /// A sealed value is malformed or was tampered with.
    #[error("sealed secret for {context} is corrupt or was altered")]
    Corrupt {
        /// The associated data naming the row.
        context: String,
    },
    /// Sealing failed (should not happen with a valid key).
    #[error("failed to seal secret for {context}")]
    Seal {
        /// The associated data naming the row.
        context: String,
    },
}

/// A 32-byte AEAD key. Its `Debug` shows only the key id.
#[derive(Clone)]
pub struct SecretKey {
    bytes: [u8; KEY_LEN],
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(&key);
        Self { bytes }
    }

    /// Decodes a base64 key; `origin` names its source in the error.
    pub fn from_base64(text: &str, origin: &str) -> Result<Self, CryptoError> {
        let bad = || CryptoError::BadKey {
            origin: origin.to_owned(),
        };
        let decoded = BASE64.decode(text.trim()).map_err(|_| bad())?;
        let bytes: [u8; KEY_LEN] = decoded.try_into().map_err(|_| bad())?;
        Ok(Self { bytes })
    }

    /// The key in base64, for writing a key file.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.bytes)
    }

    /// A short public id of the key (first 8 bytes of its SHA-256, hex), recorded beside every
    /// sealed value so a wrong key is reported as such.
    pub fn id(&self) -> String {
        let digest = Sha256::digest(self.bytes);
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let shown = path.display().to_string();
        let text = fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                CryptoError::MissingKeyFile {
                    path: shown.clone(),
                }
            } else {
                CryptoError::ReadKeyFile {
                    path: shown.clone(),
                    source,
                }
            }
        })?;
        Self::from_base64(&text, &shown)
    }

    /// Writes a new key file readable by its owner only (mode 0600); refuses to overwrite.
    pub fn write_new(&self, path: &Path) -> Result<(), CryptoError> {
        let shown = path.display().to_string();
        let err = |source| CryptoError::WriteKeyFile {
            path: shown.clone(),
            source,
        };
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(err)?;
        file.write_all(self.to_base64().as_bytes()).map_err(err)?;
        file.write_all(b"\n").map_err(err)?;
        file.sync_all().map_err(err)
    }

    /// Loads the key file, or creates it with a fresh key when it does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        match Self::load(path) {
            Err(CryptoError::MissingKeyFile { .. }) => {
                let key = Self::generate();
                key.write_new(path)?;
                Ok(key)
            }
            other => other,
        }
    }
}

/// Seals and opens secrets with one key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    key_id: String,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretBox")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SecretBox {
    /// A box over `key`.
    pub fn new(key: &SecretKey) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new((&key.bytes).into()),
            key_id: key.id(),
        }
    }

    /// Id of the key this box seals with.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Seals `plaintext`, bound to `context` (e.g. `registered_cluster:prod-1`).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<String, CryptoError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Seal {
                context: context.to_owned(),
            })?;
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Ok(format!(
            "{FORMAT_VERSION}:{}:{}",
            self.key_id,
            BASE64.encode(blob)
        ))
    }

    /// Opens a value made by [`SecretBox::seal`] with the same key and context.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, CryptoError> {
        let corrupt = || CryptoError::Corrupt {
            context: context.to_owned(),
        };
        let mut parts = sealed.splitn(3, ':');
        let (Some(version), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(corrupt());
        };
        if version != FORMAT_VERSION {
            return Err(corrupt());
        }
        if key_id != self.key_id {
            return Err(CryptoError::WrongKey {
                expected: self.key_id.clone(),
                found: key_id.to_owned(),
            });
        }
        let blob = BASE64.decode(body).map_err(|_| corrupt())?;
        if blob.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| corrupt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_with_the_same_key_and_context_only() {
        let key = SecretKey::generate();
        let sealer = SecretBox::new(&key);
        let sealed = sealer.seal("cluster:a", b"token-123").expect("seal");
        assert!(!sealed.contains("token-123"));
        assert_eq!(
            sealer.open("cluster:a", &sealed).expect("open"),
            b"token-123"
        );
        assert!(matches!(
            sealer.open("cluster:b", &sealed),
            Err(CryptoError::Corrupt { .. })
        ));
        let other = SecretBox::new(&SecretKey::generate());
        assert!(matches!(
            other.open("cluster:a", &sealed),
            Err(CryptoError::WrongKey { .. })
        ));
    }

    #[test]
    fn tampered_values_are_reported_not_opened() {
        let sealer = SecretBox::new(&SecretKey::generate());
        let sealed = sealer.seal("ctx", b"secret").expect("seal");
        let mut tampered = sealed.clone();
        let last = tampered.pop().expect("non-empty");
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(sealer.open("ctx", &tampered).is_err());
        assert!(sealer.open("ctx", "garbage").is_err());
        assert!(sealer.open("ctx", "v1:x").is_err());
    }

    #[test]
    fn key_files_are_created_owner_only_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meshd.key");
        let created = SecretKey::load_or_create(&path).expect("create");
        let loaded = SecretKey::load(&path).expect("load");
        assert_eq!(created.id(), loaded.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("metadata").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(
            created.write_new(&path).is_err(),
            "must not overwrite a key"
        );
    }

    #[test]
    fn missing_and_malformed_key_files_say_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = SecretKey::load(&dir.path().join("nope.key")).expect_err("missing");
        assert!(missing.to_string().contains("meshd keygen"), "{missing}");
        let bad_path = dir.path().join("bad.key");
        fs::write(&bad_path, "not a key").expect("write");
        let bad = SecretKey::load(&bad_path).expect_err("malformed");
        assert!(matches!(bad, CryptoError::BadKey { .. }));
    }

    #[test]
    fn debug_output_never_shows_key_material() {
        let key = SecretKey::generate();
        let shown = format!("{key:?} {:?}", SecretBox::new(&key));
        assert!(!shown.contains(&key.to_base64()));
    }
}
