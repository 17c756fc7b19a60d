//! The envelope every key and ciphertext file (or HTTP body) travels in.
//!
//! Layout, all integers little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `QFHE` |
//! | 2 | format version ([`FORMAT_VERSION`]) |
//! | 1 | kind ([`Kind`]) |
//! | 1 | length `L` of the parameter-set name (1 to [`MAX_PARAMS_NAME`]) |
//! | `L` | parameter-set name, ASCII (e.g. `V1_8_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128`) |
//! | 32 | SHA-256 of the circuit the object belongs to ([`circuit_digest`]) |
//! | 16 | key id: names the key pair; ciphertexts carry the id of the key they are under |
//! | 8 | payload length `P`, bytes |
//! | `P` | payload (per kind; see `keys` and `messages`) |
//! | 32 | SHA-256 of every byte before it |
//!
//! A reader is told which kind it expects and the exact or largest payload the circuit and the
//! parameters allow, and checks the header, the length and the checksum before it decodes (or
//! allocates for) anything: a truncated, oversized, corrupted or foreign envelope is an
//! [`RuntimeError::Envelope`] naming the field, never a panic.

use crate::error::RuntimeError;
use crate::params::FheParams;
use qfhe_circuit::Circuit;
use sha2::{Digest, Sha256};

/// The envelope's magic bytes.
pub const MAGIC: [u8; 4] = *b"QFHE";
/// The envelope format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Longest parameter-set name, bytes.
pub const MAX_PARAMS_NAME: usize = 64;
/// Bytes of a SHA-256 digest.
pub const DIGEST_BYTES: usize = 32;

/// The kind byte of inputs written before they were packed in GLWE ciphertexts.
const LEGACY_INPUTS: u8 = 3;

/// What an envelope holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The client's secret key (`client.key`): never sent to a server.
    ClientKey = 1,
    /// The evaluation key (seeded BSK and KSK, `eval.key`): what a server needs.
    EvalKey = 2,
    /// A batch of input ciphertexts packed in seeded GLWE ciphertexts (kind 3, one seeded LWE
    /// list per sample, is no longer read).
    Inputs = 5,
    /// A batch of output ciphertexts.
    Outputs = 4,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        [Kind::ClientKey, Kind::EvalKey, Kind::Inputs, Kind::Outputs]
            .into_iter()
            .find(|k| *k as u8 == b)
    }

    /// What the kind is called in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::ClientKey => "a client secret key",
            Kind::EvalKey => "an evaluation key",
            Kind::Inputs => "a batch of input ciphertexts",
            Kind::Outputs => "a batch of output ciphertexts",
        }
    }
}

/// SHA-256 of the circuit's canonical JSON ([`Circuit::to_json`]): what ties keys and
/// ciphertexts to the circuit they were made for.
pub fn circuit_digest(circuit: &Circuit) -> [u8; DIGEST_BYTES] {
    Sha256::digest(circuit.to_json()).into()
}

/// Hexadecimal form of a digest or key id (lower case).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The header fields of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// What the payload is.
    pub kind: Kind,
    /// The parameter set's name.
    pub params: String,
    /// SHA-256 of the circuit ([`circuit_digest`]).
    pub circuit: [u8; DIGEST_BYTES],
    /// The key pair's id.
    pub key_id: [u8; 16],
}

/// Frame `payload` in an envelope with `header`.
pub fn seal(header: &Header, payload: &[u8]) -> Vec<u8> {
    let name = header.params.as_bytes();
    debug_assert!(!name.is_empty() && name.len() <= MAX_PARAMS_NAME);
    let mut out =
        Vec::with_capacity(4 + 2 + 2 + name.len() + 32 + 16 + 8 + payload.len() + DIGEST_BYTES);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(header.kind as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&header.circuit);
    out.extend_from_slice(&header.key_id);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let digest: [u8; DIGEST_BYTES] = Sha256::digest(&out).into();
    out.extend_from_slice(&digest);
    out
}

/// What a reader requires of an envelope.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The kind.
    pub kind: Kind,
    /// The parameters it must have been made for.
    pub params: &'a FheParams,
    /// The circuit's digest it must carry.
    pub circuit: &'a [u8; DIGEST_BYTES],
    /// Largest payload accepted, bytes (derived from the circuit and the parameters).
    pub max_payload: u64,
}

/// Check `bytes` against `expect` and return its header and payload.
///
/// # Errors
/// [`RuntimeError::Envelope`] naming the first field that is wrong: magic, version, kind (with
/// a warning when a secret key was sent where an evaluation key was expected), parameter set,
/// circuit digest, payload length (truncated, trailing bytes, over the limit), checksum.
pub fn open<'b>(bytes: &'b [u8], expect: Expect<'_>) -> Result<(Header, &'b [u8]), RuntimeError> {
    let what = expect.kind.describe();
    let bad = |reason: String| RuntimeError::Envelope { what, reason };
    let mut r = Reader::new(bytes, what);
    let magic = r.bytes(4, "the magic bytes")?;
    if magic != MAGIC {
        return Err(bad(format!(
            "it does not start with the magic bytes \"QFHE\" (found {:02x?}): it is not a qfhe key or ciphertext file",
            magic
        )));
    }
    let version = r.u16("the format version")?;
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "format version {version}; this build reads version {FORMAT_VERSION}: write it again with this version of qfhe"
        )));
    }
    let kind_byte = r.u8("the kind")?;
    if kind_byte == LEGACY_INPUTS && expect.kind == Kind::Inputs {
        return Err(bad(
            "inputs in the earlier layout (one seeded LWE ciphertext per input): encrypt them again with this version of qfhe (`qfhe encrypt`)".into(),
        ));
    }
    let kind =
        Kind::from_byte(kind_byte).ok_or_else(|| bad(format!("unknown kind byte {kind_byte}")))?;
    if kind != expect.kind {
        let hint = if kind == Kind::ClientKey {
            ": this is the client's SECRET key; never send it to a server, send eval.key"
        } else {
            ""
        };
        return Err(bad(format!("it holds {}{hint}", kind.describe())));
    }
    let name_len = r.u8("the parameter-set name length")? as usize;
    if name_len == 0 || name_len > MAX_PARAMS_NAME {
        return Err(bad(format!(
            "parameter-set name of {name_len} bytes (1 to {MAX_PARAMS_NAME})"
        )));
    }
    let name = r.bytes(name_len, "the parameter-set name")?;
    let name =
        std::str::from_utf8(name).map_err(|_| bad("the parameter-set name is not text".into()))?;
    if name != expect.params.name {
        return Err(bad(format!(
            "made for parameter set {name}, but this circuit runs on {}: make keys and ciphertexts with this circuit's parameters",
            expect.params.name
        )));
    }
    let circuit: [u8; DIGEST_BYTES] = r.array("the circuit digest")?;
    if &circuit != expect.circuit {
        return Err(bad(format!(
            "made for circuit {}, not for this one ({}): use the keys and ciphertexts of the same circuit file",
            hex(&circuit[..8]),
            hex(&expect.circuit[..8])
        )));
    }
    let key_id: [u8; 16] = r.array("the key id")?;
    let len = r.u64("the payload length")?;
    if len > expect.max_payload {
        return Err(bad(format!(
            "payload of {len} bytes; at most {} for this circuit and parameter set",
            expect.max_payload
        )));
    }
    let header_len = r.position();
    let total = (header_len as u64)
        .checked_add(len)
        .and_then(|t| t.checked_add(DIGEST_BYTES as u64))
        .ok_or_else(|| bad("payload length overflows".into()))?;
    if (bytes.len() as u64) != total {
        return Err(bad(format!(
            "{} bytes, but its header announces {total}: the file is {}",
            bytes.len(),
            if (bytes.len() as u64) < total {
                "truncated"
            } else {
                "followed by extra bytes"
            }
        )));
    }
    let body_end = bytes.len() - DIGEST_BYTES;
    let digest: [u8; DIGEST_BYTES] = Sha256::digest(&bytes[..body_end]).into();
    if digest[..] != bytes[body_end..] {
        return Err(bad(
            "checksum mismatch: the file was corrupted or modified".into()
        ));
    }
    Ok((
        Header {
            kind,
            params: name.to_owned(),
            circuit,
            key_id,
        },
        &bytes[header_len..body_end],
    ))
}

/// Bounds-checked little-endian reads from a byte slice.
pub(crate) struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
    what: &'static str,
}

impl<'b> Reader<'b> {
    pub(crate) fn new(bytes: &'b [u8], what: &'static str) -> Self {
        Self { bytes, at: 0, what }
    }

    pub(crate) fn position(&self) -> usize {
        self.at
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    pub(crate) fn bytes(&mut self, n: usize, field: &str) -> Result<&'b [u8], RuntimeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(RuntimeError::Envelope {
                what: self.what,
                reason: format!(
                    "it ends at byte {} inside {field} ({n} bytes needed): truncated",
                    self.bytes.len()
                ),
            });
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    pub(crate) fn array<const K: usize>(&mut self, field: &str) -> Result<[u8; K], RuntimeError> {
        let b = self.bytes(K, field)?;
        Ok(b.try_into().expect("slice of length K"))
    }

    pub(crate) fn u8(&mut self, field: &str) -> Result<u8, RuntimeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &str) -> Result<u16, RuntimeError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &str) -> Result<u32, RuntimeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &str) -> Result<u64, RuntimeError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u128(&mut self, field: &str) -> Result<u128, RuntimeError> {
        Ok(u128::from_le_bytes(self.array(field)?))
    }

    /// `n` little-endian `u64` words, after checking that they are all there.
    pub(crate) fn u64s(&mut self, n: usize, field: &str) -> Result<Vec<u64>, RuntimeError> {
        let len = n.checked_mul(8).ok_or_else(|| RuntimeError::Envelope {
            what: self.what,
            reason: format!("{field}: {n} words overflow"),
        })?;
        let b = self.bytes(len, field)?;
        Ok(b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }

    /// Fail unless every byte was read.
    pub(crate) fn finish(&self) -> Result<(), RuntimeError> {
        if self.remaining() != 0 {
            return Err(RuntimeError::Envelope {
                what: self.what,
                reason: format!("{} bytes left over after the payload", self.remaining()),
            });
        }
        Ok(())
    }
}

/// Append `words` little-endian.
pub(crate) fn put_u64s(out: &mut Vec<u8>, words: &[u64]) {
    out.reserve(words.len() * 8);
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
}

/// A fresh random 128-bit value from tfhe's seeder (the OS's or the CPU's entropy source): key
/// ids and compression seeds.
pub fn random_u128() -> u128 {
    tfhe::core_crypto::prelude::new_seeder().seed().0
}
