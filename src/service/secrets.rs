//! The credentials key and sealing of connection credentials at rest.
//!
//! The key is 32 random bytes in `data_dir/secret.key` (mode 0600), created on first start,
//! or the configured `secret_key` (base64). Sealed values are `v1:` + base64url(nonce ‖
//! ciphertext ‖ tag) under XChaCha20-Poly1305 with a random 24-byte nonce. This is the ONE
//! box of the crate: the Google/Graph OAuth token manager seals refresh tokens with it too
//! (re-exported as `providers::oauth::SecretBox`), so one key and one format cover every
//! credential at rest.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;

/// The key file's name inside the data directory.
pub const KEY_FILE: &str = "secret.key";
const SEALED_PREFIX: &str = "v1:";
const NONCE_LEN: usize = 24;

/// Why the key or a sealed value could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file could not be read or written.
    #[error("secret key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not 32 bytes (or not base64 when configured).
    #[error(
        "the secret key must be 32 bytes (secret_key / CARDBRIDGE_SECRET_KEY: base64 of 32 bytes)"
    )]
    BadKey,
    /// Tampered, truncated or sealed with another key.
    #[error("sealed credentials cannot be opened (wrong secret key or tampered)")]
    Tampered,
}

/// Authenticated encryption of secrets at rest.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// The key file's name inside the data directory (same as [`KEY_FILE`]).
    pub const KEY_FILE: &'static str = KEY_FILE;

    /// A box with this 32-byte key.
    pub fn from_key(key: &[u8]) -> Result<Self, SecretError> {
        if key.len() != 32 {
            return Err(SecretError::BadKey);
        }
        let cipher = XChaCha20Poly1305::new_from_slice(key).map_err(|_| SecretError::BadKey)?;
        Ok(Self { cipher })
    }

    /// The configured key, else `data_dir/secret.key`, created (mode 0600) when missing.
    /// Returns the box and whether the key file was created now.
    pub fn load_or_create(
        data_dir: &Path,
        configured: Option<&str>,
    ) -> Result<(Self, bool), SecretError> {
        if let Some(b64) = configured {
            let key = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| SecretError::BadKey)?;
            return Ok((Self::from_key(&key)?, false));
        }
        let path = data_dir.join(KEY_FILE);
        let io = |source| SecretError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(key) => Ok((Self::from_key(&key)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir).map_err(io)?;
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt as _;
                    opts.mode(0o600);
                }
                let mut file = opts.open(&path).map_err(io)?;
                file.write_all(&key).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok((Self::from_key(&key)?, true))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Encrypts with a fresh nonce.
    pub fn seal(&self, plaintext: &[u8]) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(&XNonce::from(nonce), plaintext)
            .map_err(|_| SecretError::BadKey)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!(
            "{SEALED_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
        ))
    }

    /// Decrypts a value made by [`SecretBox::seal`].
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SecretError> {
        let b64 = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SecretError::Tampered)?;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| SecretError::Tampered)?;
        if raw.len() < NONCE_LEN {
            return Err(SecretError::Tampered);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretError::Tampered)?;
        self.cipher
            .decrypt(&XNonce::from(nonce), ct)
            .map_err(|_| SecretError::Tampered)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_once_with_mode_0600_and_seals() {
        let dir = tempfile::tempdir().unwrap();
        let (b, created) = SecretBox::load_or_create(dir.path(), None).unwrap();
        assert!(created);
        let path = dir.path().join(KEY_FILE);
        assert_eq!(std::fs::read(&path).unwrap().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = b.seal(b"hunter2").unwrap();
        assert!(!sealed.contains("hunter2"));
        let (again, created) = SecretBox::load_or_create(dir.path(), None).unwrap();
        assert!(!created);
        assert_eq!(again.open(&sealed).unwrap(), b"hunter2");
        let mut bad = sealed.clone();
        bad.push('A');
        assert!(again.open(&bad).is_err());
        let other = SecretBox::from_key(&[7u8; 32]).unwrap();
        assert!(matches!(other.open(&sealed), Err(SecretError::Tampered)));
    }

    #[test]
    fn seal_open_round_trip_with_random_nonces() {
        let b = SecretBox::from_key(&[7u8; 32]).unwrap();
        let a1 = b.seal(b"1//refresh-token").unwrap();
        let a2 = b.seal(b"1//refresh-token").unwrap();
        assert_ne!(a1, a2, "nonces must differ");
        assert_eq!(b.open(&a1).unwrap(), b"1//refresh-token");
        assert_eq!(b.open(&a2).unwrap(), b"1//refresh-token");
    }

    #[test]
    fn tampering_and_wrong_key_are_detected() {
        let b = SecretBox::from_key(&[7u8; 32]).unwrap();
        let sealed = b.seal(b"secret").unwrap();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&sealed[3..])
            .unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            let mut t = raw.clone();
            t[i] ^= 1;
            let t = format!(
                "v1:{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t)
            );
            assert!(matches!(b.open(&t), Err(SecretError::Tampered)), "byte {i}");
        }
        assert!(matches!(b.open("v1:AAAA"), Err(SecretError::Tampered)));
        assert!(matches!(b.open("garbage"), Err(SecretError::Tampered)));
        assert!(matches!(
            SecretBox::from_key(&[1u8; 16]),
            Err(SecretError::BadKey)
        ));
    }

    #[test]
    fn configured_key_wins_over_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        let (b, created) = SecretBox::load_or_create(dir.path(), Some(&key)).unwrap();
        assert!(!created);
        assert!(!dir.path().join(SecretBox::KEY_FILE).exists());
        let sealed = b.seal(b"y").unwrap();
        let direct = SecretBox::from_key(&[9u8; 32]).unwrap();
        assert_eq!(direct.open(&sealed).unwrap(), b"y");
        assert!(matches!(
            SecretBox::load_or_create(dir.path(), Some("not base64!")),
            Err(SecretError::BadKey)
        ));
    }
}
