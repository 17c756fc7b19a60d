//! Registered evaluation keys on disk: one file per registration in the keys directory, so that
//! a restarted server, or another replica sharing the directory, serves every key registered
//! before.
//!
//! `DIR/<key id>.reg`, written atomically (temporary file, fsync, rename: a reader sees the
//! whole file or none), mode 0600:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `QFHR` |
//! | 2 | version (1), little-endian |
//! | 32 | SHA-256 of the registration's bearer token (the token itself is never stored) |
//! | rest | the `eval.key` envelope as the client sent it (its own checksum covers it) |
//!
//! The token's hash sits in front so that a request with a wrong token is refused after
//! reading 38 bytes, before the 30 MB key is read or decompressed.

use crate::error::ServerError;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

const MAGIC: [u8; 4] = *b"QFHR";
const VERSION: u16 = 1;
const PREFIX: usize = 4 + 2 + 32;

/// A registration's id: 128 random bits, written as 32 lower-case hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 16]);

impl KeyId {
    /// A fresh random id (`rand`'s thread generator, a CSPRNG seeded by the operating system).
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// Parse 32 hex digits.
    ///
    /// # Errors
    /// A message saying what the id should look like.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bytes = unhex(text.trim())
            .filter(|b| b.len() == 16)
            .ok_or_else(|| {
                format!(
                    "'{}' is not a key id; a key id is the 32 hex digits that POST /v1/keys returned",
                    text.chars().take(40).collect::<String>()
                )
            })?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes);
        Ok(Self(id))
    }

    /// The 32-digit hex form.
    pub fn hex(&self) -> String {
        qfhe_fhe_runtime::wire::hex(&self.0)
    }
}

/// SHA-256 of a bearer token's text.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh bearer token: 256 random bits as 64 hex digits.
pub fn new_token() -> String {
    qfhe_fhe_runtime::wire::hex(&rand::random::<[u8; 32]>())
}

/// Equality of two digests in time independent of where they differ.
pub fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// A stored registration: the SHA-256 of its token and its `eval.key` envelope.
pub type Stored = ([u8; 32], Vec<u8>);

/// The registrations in one directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
    max_envelope: u64,
}

impl KeyStore {
    /// Open (creating it if needed) the keys directory; registrations hold envelopes of at most
    /// `max_envelope` bytes.
    ///
    /// # Errors
    /// [`ServerError::Io`] if the directory cannot be created or is not writable.
    pub fn open(dir: &Path, max_envelope: u64) -> Result<Self, ServerError> {
        let io = |source| ServerError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let probe = dir.join(format!(".write-test.{}", KeyId::random().hex()));
        std::fs::write(&probe, b"").map_err(io)?;
        let _ = std::fs::remove_file(&probe);
        Ok(Self {
            dir: dir.to_path_buf(),
            max_envelope,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &KeyId) -> PathBuf {
        self.dir.join(format!("{}.reg", id.hex()))
    }

    fn io(&self, id: &KeyId, source: std::io::Error) -> ServerError {
        ServerError::Io {
            path: self.path(id),
            source,
        }
    }

    /// Persist a registration atomically.
    ///
    /// # Errors
    /// [`ServerError::Io`] / [`ServerError::Runtime`] if the file cannot be written.
    pub fn save(&self, id: &KeyId, token: &[u8; 32], envelope: &[u8]) -> Result<(), ServerError> {
        let mut bytes = Vec::with_capacity(PREFIX + envelope.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(token);
        bytes.extend_from_slice(envelope);
        qfhe_fhe_runtime::keys::write_atomic(&self.path(id), &bytes, true)?;
        Ok(())
    }

    /// Whether `id` is registered (its file exists).
    pub fn contains(&self, id: &KeyId) -> bool {
        self.path(id).is_file()
    }

    fn open_checked(&self, id: &KeyId) -> Result<Option<(std::fs::File, [u8; 32])>, ServerError> {
        let mut file = match std::fs::File::open(self.path(id)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(id, e)),
        };
        let mut prefix = [0u8; PREFIX];
        file.read_exact(&mut prefix).map_err(|e| self.io(id, e))?;
        if prefix[..4] != MAGIC || prefix[4..6] != VERSION.to_le_bytes() {
            return Err(self.io(
                id,
                std::io::Error::other("not a qfhe registration file (magic or version)"),
            ));
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&prefix[6..]);
        Ok(Some((file, hash)))
    }

    /// The token hash of `id`'s registration, `None` if it is not registered.
    ///
    /// # Errors
    /// [`ServerError::Io`] if the file exists but cannot be read or is not a registration.
    pub fn token_hash(&self, id: &KeyId) -> Result<Option<[u8; 32]>, ServerError> {
        Ok(self.open_checked(id)?.map(|(_, h)| h))
    }

    /// The token hash and the evaluation-key envelope of `id`'s registration, `None` if it is
    /// not registered. Reads at most the envelope limit given to [`KeyStore::open`].
    ///
    /// # Errors
    /// [`ServerError::Io`] if the file cannot be read, is not a registration or is too large.
    pub fn load(&self, id: &KeyId) -> Result<Option<Stored>, ServerError> {
        let Some((file, hash)) = self.open_checked(id)? else {
            return Ok(None);
        };
        let mut envelope = Vec::new();
        file.take(self.max_envelope + 1)
            .read_to_end(&mut envelope)
            .map_err(|e| self.io(id, e))?;
        if envelope.len() as u64 > self.max_envelope {
            return Err(self.io(
                id,
                std::io::Error::other(format!(
                    "registration over {} bytes: not a key for this circuit",
                    self.max_envelope
                )),
            ));
        }
        Ok(Some((hash, envelope)))
    }

    /// Remove `id`'s registration; `false` if there was none.
    ///
    /// # Errors
    /// [`ServerError::Io`] if the file exists and cannot be removed.
    pub fn remove(&self, id: &KeyId) -> Result<bool, ServerError> {
        match std::fs::remove_file(self.path(id)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io(id, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_parse_only_32_hex_digits() {
        let id = KeyId::random();
        assert_eq!(KeyId::parse(&id.hex()), Ok(id));
        assert_eq!(KeyId::parse(&id.hex().to_uppercase()), Ok(id));
        for bad in [
            "",
            "abc",
            "../../etc/passwd",
            &"0".repeat(31),
            &"g".repeat(32),
        ] {
            assert!(
                KeyId::parse(bad).unwrap_err().contains("not a key id"),
                "{bad}"
            );
        }
    }

    #[test]
    fn registrations_round_trip_and_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path(), 100).unwrap();
        let id = KeyId::random();
        let token = new_token();
        assert_eq!(store.token_hash(&id).unwrap(), None);
        store.save(&id, &token_hash(&token), b"envelope").unwrap();
        assert!(store.contains(&id));
        assert_eq!(store.token_hash(&id).unwrap(), Some(token_hash(&token)));
        let (h, env) = store.load(&id).unwrap().unwrap();
        assert!(same_digest(&h, &token_hash(&token)));
        assert!(!same_digest(&h, &token_hash("other")));
        assert_eq!(env, b"envelope");
        assert!(store.remove(&id).unwrap());
        assert!(!store.remove(&id).unwrap());
        assert!(store.load(&id).unwrap().is_none());
    }

    #[test]
    fn foreign_and_oversized_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path(), 4).unwrap();
        let id = KeyId::random();
        std::fs::write(dir.path().join(format!("{}.reg", id.hex())), [0u8; 64]).unwrap();
        assert!(store.token_hash(&id).is_err());
        store.save(&id, &[1; 32], b"12345").unwrap();
        assert!(store
            .load(&id)
            .unwrap_err()
            .to_string()
            .contains("over 4 bytes"));
        std::fs::write(dir.path().join(format!("{}.reg", id.hex())), b"QFHR").unwrap();
        assert!(store.token_hash(&id).is_err());
    }
}
