//! Keys: the client's secret key and the server's evaluation keys, as distinct types, and their
//! files.
//!
//! The evaluation key is generated *seeded* (tfhe's `SeededLweBootstrapKey` and
//! `SeededLweKeyswitchKey`: every mask is regenerated from a 128-bit seed, so only bodies are
//! stored): [`CompressedEvalKey`] is what the client writes and sends, about a quarter of the
//! bootstrapping key and 1/(n+1) of the keyswitching key; the server decompresses it once and
//! converts the BSK to the Fourier domain ([`CompressedEvalKey::decompress`]).
//!
//! Payloads inside the [`crate::wire`] envelope (little-endian):
//! * client key: `u32` big-key dimension `k·N`, then one byte (0 or 1) per key bit;
//! * evaluation key: `u128` BSK seed, `u128` KSK seed, the seeded BSK's
//!   `n · ℓ_pbs · (k+1) · N` bodies, the seeded KSK's `k·N · ℓ_ks` bodies (`u64` each); for a
//!   circuit without PBS (a linear model: one GEMM on the inputs, no key needed) the payload may
//!   be empty ([`ClientKey::generate_compressed_for`] makes such keys).

use crate::error::RuntimeError;
use crate::params::FheParams;
use crate::wire::{self, Expect, Header, Kind, Reader};
use qfhe_circuit::Circuit;
use std::path::Path;
use tfhe::core_crypto::commons::math::random::{CompressionSeed, Seed};
use tfhe::core_crypto::prelude::*;

/// The client's secret key. Never given to the server.
pub struct ClientKey {
    pub(crate) params: FheParams,
    pub(crate) key_id: [u8; 16],
    /// The big LWE key (dimension k·N) that ciphertexts live under between operations.
    pub(crate) big_sk: LweSecretKeyOwned<u64>,
}

/// The server's evaluation keys: the Fourier bootstrapping key (small → big) and the keyswitch
/// key (big → small). They hold no secret.
pub struct EvalKey {
    pub(crate) params: FheParams,
    pub(crate) key_id: [u8; 16],
    /// `None` for a circuit without PBS.
    pub(crate) pbs: Option<PbsKeys>,
}

/// What a server needs for KS + PBS.
pub(crate) struct PbsKeys {
    pub(crate) bsk: FourierLweBootstrapKeyOwned,
    pub(crate) ksk: LweKeyswitchKeyOwned<u64>,
}

/// The evaluation keys as the client sends them: seeded BSK and KSK (masks regenerated from
/// their seeds), or nothing for a circuit without PBS.
pub struct CompressedEvalKey {
    params: FheParams,
    key_id: [u8; 16],
    pbs: Option<SeededPbsKeys>,
}

struct SeededPbsKeys {
    bsk_seed: u128,
    ksk_seed: u128,
    bsk: SeededLweBootstrapKeyOwned<u64>,
    ksk: SeededLweKeyswitchKeyOwned<u64>,
}

impl EvalKey {
    /// Size of the evaluation keys in bytes: the Fourier BSK (`c64` = 16 bytes per value) plus
    /// the KSK (8 bytes per value), as held in memory by the server; 0 without PBS keys.
    pub fn size_bytes(&self) -> usize {
        self.pbs.as_ref().map_or(0, |k| {
            k.bsk.as_view().data().len() * 16 + k.ksk.as_ref().len() * 8
        })
    }

    /// Whether it holds the BSK and KSK (a circuit with PBS needs them).
    pub fn has_pbs_keys(&self) -> bool {
        self.pbs.is_some()
    }

    /// The parameter set.
    pub fn params(&self) -> &FheParams {
        &self.params
    }

    /// The key pair's id (shared with the [`ClientKey`] it came from).
    pub fn key_id(&self) -> [u8; 16] {
        self.key_id
    }
}

fn seeded_bsk(params: &FheParams, seed: u128, data: Vec<u64>) -> SeededLweBootstrapKeyOwned<u64> {
    let p = &params.set;
    SeededLweBootstrapKey::from_container(
        data,
        p.glwe_dimension.to_glwe_size(),
        p.polynomial_size,
        p.pbs_base_log,
        p.pbs_level,
        CompressionSeed::from(Seed(seed)),
        p.ciphertext_modulus,
    )
}

fn seeded_ksk(params: &FheParams, seed: u128, data: Vec<u64>) -> SeededLweKeyswitchKeyOwned<u64> {
    let p = &params.set;
    SeededLweKeyswitchKey::from_container(
        data,
        p.ks_base_log,
        p.ks_level,
        p.lwe_dimension.to_lwe_size(),
        CompressionSeed::from(Seed(seed)),
        p.ciphertext_modulus,
    )
}

/// `u64` bodies of the seeded BSK and KSK for `params`.
fn seeded_words(params: &FheParams) -> (usize, usize) {
    let p = &params.set;
    let bsk =
        p.lwe_dimension.0 * p.pbs_level.0 * p.glwe_dimension.to_glwe_size().0 * p.polynomial_size.0;
    let ksk = params.big_dim() * p.ks_level.0;
    (bsk, ksk)
}

impl ClientKey {
    /// Generate a fresh secret key and the matching evaluation keys, decompressed and ready for
    /// a server in this process (BSK generation runs on the rayon pool). See
    /// [`ClientKey::generate_compressed`] for keys to send elsewhere.
    pub fn generate(params: FheParams) -> (ClientKey, EvalKey) {
        let (client, compressed) = Self::generate_compressed(params);
        (client, compressed.decompress())
    }

    /// Generate a fresh secret key and the matching seeded evaluation keys, with a random
    /// 128-bit key id (tfhe-rs: `par_generate_seeded_lwe_bootstrap_key`,
    /// `generate_seeded_lwe_keyswitch_key`).
    pub fn generate_compressed(params: FheParams) -> (ClientKey, CompressedEvalKey) {
        Self::generate_keys(params, true)
    }

    /// Keys for `circuit` under `params`: as [`ClientKey::generate_compressed`], without the
    /// BSK and KSK when the circuit has no PBS (then key generation takes milliseconds and the
    /// evaluation key is a header of a few dozen bytes).
    pub fn generate_compressed_for(
        params: FheParams,
        circuit: &Circuit,
    ) -> (ClientKey, CompressedEvalKey) {
        Self::generate_keys(params, circuit.pbs_count() > 0)
    }

    /// As [`ClientKey::generate_compressed_for`], decompressed for a server in this process.
    pub fn generate_for(params: FheParams, circuit: &Circuit) -> (ClientKey, EvalKey) {
        let (client, compressed) = Self::generate_compressed_for(params, circuit);
        (client, compressed.decompress())
    }

    fn generate_keys(params: FheParams, with_pbs: bool) -> (ClientKey, CompressedEvalKey) {
        let p = &params.set;
        let cm = p.ciphertext_modulus;
        let mut seeder = new_seeder();
        let seeder = seeder.as_mut();
        let mut secret = SecretRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed());
        let small_sk: LweSecretKeyOwned<u64> =
            LweSecretKey::generate_new_binary(p.lwe_dimension, &mut secret);
        let glwe_sk: GlweSecretKeyOwned<u64> =
            GlweSecretKey::generate_new_binary(p.glwe_dimension, p.polynomial_size, &mut secret);
        let big_sk = glwe_sk.clone().into_lwe_secret_key();
        let key_id = seeder.seed().0.to_le_bytes();
        let client = ClientKey {
            params,
            key_id,
            big_sk: big_sk.clone(),
        };
        if !with_pbs {
            let eval = CompressedEvalKey {
                params,
                key_id,
                pbs: None,
            };
            return (client, eval);
        }
        let (bsk_seed, ksk_seed) = (seeder.seed().0, seeder.seed().0);
        let mut bsk = SeededLweBootstrapKey::new(
            0u64,
            p.glwe_dimension.to_glwe_size(),
            p.polynomial_size,
            p.pbs_base_log,
            p.pbs_level,
            p.lwe_dimension,
            CompressionSeed::from(Seed(bsk_seed)),
            cm,
        );
        par_generate_seeded_lwe_bootstrap_key(
            &small_sk,
            &glwe_sk,
            &mut bsk,
            p.glwe_noise_distribution,
            seeder,
        );
        let mut ksk = SeededLweKeyswitchKey::new(
            0u64,
            p.ks_base_log,
            p.ks_level,
            big_sk.lwe_dimension(),
            p.lwe_dimension,
            CompressionSeed::from(Seed(ksk_seed)),
            cm,
        );
        generate_seeded_lwe_keyswitch_key(
            &big_sk,
            &small_sk,
            &mut ksk,
            p.lwe_noise_distribution,
            seeder,
        );
        let eval = CompressedEvalKey {
            params,
            key_id,
            pbs: Some(SeededPbsKeys {
                bsk_seed,
                ksk_seed,
                bsk,
                ksk,
            }),
        };
        (client, eval)
    }

    /// The parameter set.
    pub fn params(&self) -> &FheParams {
        &self.params
    }

    /// The key pair's id.
    pub fn key_id(&self) -> [u8; 16] {
        self.key_id
    }

    /// The `client.key` envelope for `circuit`: the big secret key's bits. Keep it secret.
    pub fn to_bytes(&self, circuit: &Circuit) -> Vec<u8> {
        let bits = self.big_sk.as_ref();
        let mut payload = Vec::with_capacity(4 + bits.len());
        payload.extend_from_slice(&(bits.len() as u32).to_le_bytes());
        payload.extend(bits.iter().map(|&b| b as u8));
        wire::seal(
            &header(Kind::ClientKey, &self.params, circuit, self.key_id),
            &payload,
        )
    }

    /// Read a `client.key` envelope made for `circuit`.
    ///
    /// # Errors
    /// [`RuntimeError::Envelope`] for a malformed, foreign or corrupted envelope, or a key whose
    /// size or bits (0 or 1) do not fit the circuit's parameter set;
    /// [`RuntimeError::ParamsMismatch`]-like errors as [`params_of`].
    pub fn from_bytes(bytes: &[u8], circuit: &Circuit) -> Result<ClientKey, RuntimeError> {
        let params = params_of(circuit)?;
        let digest = wire::circuit_digest(circuit);
        let dim = params.big_dim();
        let expect = Expect {
            kind: Kind::ClientKey,
            params: &params,
            circuit: &digest,
            max_payload: 4 + dim as u64,
        };
        let (h, payload) = wire::open(bytes, expect)?;
        let mut r = Reader::new(payload, Kind::ClientKey.describe());
        let n = r.u32("the key dimension")? as usize;
        if n != dim {
            return Err(RuntimeError::Envelope {
                what: Kind::ClientKey.describe(),
                reason: format!("key dimension {n}; {} takes {dim}", params.name),
            });
        }
        let bits = r.bytes(n, "the key bits")?;
        r.finish()?;
        if let Some(i) = bits.iter().position(|&b| b > 1) {
            return Err(RuntimeError::Envelope {
                what: Kind::ClientKey.describe(),
                reason: format!("key bit {i} is {}, not 0 or 1", bits[i]),
            });
        }
        let big_sk = LweSecretKey::from_container(bits.iter().map(|&b| b as u64).collect());
        Ok(ClientKey {
            params,
            key_id: h.key_id,
            big_sk,
        })
    }

    /// Write `client.key` for `circuit` to `path`, readable by its owner only (mode 0600 on
    /// Unix), atomically (temporary file, fsync, rename).
    ///
    /// # Errors
    /// [`RuntimeError::Io`] if the file cannot be written.
    pub fn save(&self, path: &Path, circuit: &Circuit) -> Result<(), RuntimeError> {
        write_atomic(path, &self.to_bytes(circuit), true)
    }

    /// Read `client.key` made for `circuit` from `path`.
    ///
    /// # Errors
    /// [`RuntimeError::Io`] if it cannot be read (or is larger than a key can be), else as
    /// [`ClientKey::from_bytes`].
    pub fn load(path: &Path, circuit: &Circuit) -> Result<ClientKey, RuntimeError> {
        let params = params_of(circuit)?;
        let limit = envelope_limit(&params, 4 + params.big_dim() as u64);
        Self::from_bytes(&read_bounded(path, limit)?, circuit)
    }
}

impl CompressedEvalKey {
    /// The parameter set.
    pub fn params(&self) -> &FheParams {
        &self.params
    }

    /// The key pair's id.
    pub fn key_id(&self) -> [u8; 16] {
        self.key_id
    }

    /// Payload bytes of keys with a BSK and KSK for `params`: two seeds and the seeded bodies
    /// (the most an `eval.key` payload holds; without PBS keys it is empty).
    pub fn payload_bytes(params: &FheParams) -> u64 {
        let (bsk, ksk) = seeded_words(params);
        32 + 8 * (bsk + ksk) as u64
    }

    /// Whether it holds the BSK and KSK.
    pub fn has_pbs_keys(&self) -> bool {
        self.pbs.is_some()
    }

    /// The `eval.key` envelope for `circuit`.
    pub fn to_bytes(&self, circuit: &Circuit) -> Vec<u8> {
        let mut payload = Vec::new();
        if let Some(k) = &self.pbs {
            payload.reserve_exact(Self::payload_bytes(&self.params) as usize);
            payload.extend_from_slice(&k.bsk_seed.to_le_bytes());
            payload.extend_from_slice(&k.ksk_seed.to_le_bytes());
            wire::put_u64s(&mut payload, k.bsk.as_ref());
            wire::put_u64s(&mut payload, k.ksk.as_ref());
        }
        wire::seal(
            &header(Kind::EvalKey, &self.params, circuit, self.key_id),
            &payload,
        )
    }

    /// Read an `eval.key` envelope made for `circuit`. Its size is checked against the
    /// parameter set before anything is allocated: the full BSK and KSK, or (for a circuit
    /// without PBS only) an empty payload.
    ///
    /// # Errors
    /// [`RuntimeError::Envelope`] for a malformed, foreign, corrupted or mis-sized envelope
    /// (a secret key is refused by its kind), or a key without BSK and KSK for a circuit
    /// with PBS; as [`params_of`].
    pub fn from_bytes(bytes: &[u8], circuit: &Circuit) -> Result<CompressedEvalKey, RuntimeError> {
        let params = params_of(circuit)?;
        let digest = wire::circuit_digest(circuit);
        let payload_len = Self::payload_bytes(&params);
        let expect = Expect {
            kind: Kind::EvalKey,
            params: &params,
            circuit: &digest,
            max_payload: payload_len,
        };
        let (h, payload) = wire::open(bytes, expect)?;
        if payload.is_empty() {
            if circuit.pbs_count() > 0 {
                return Err(RuntimeError::Envelope {
                    what: Kind::EvalKey.describe(),
                    reason: format!(
                        "it holds no bootstrapping or keyswitching key, but the circuit has {} PBS per sample; generate the keys for this circuit",
                        circuit.pbs_count()
                    ),
                });
            }
            return Ok(CompressedEvalKey {
                params,
                key_id: h.key_id,
                pbs: None,
            });
        }
        if payload.len() as u64 != payload_len {
            return Err(RuntimeError::Envelope {
                what: Kind::EvalKey.describe(),
                reason: format!(
                    "payload of {} bytes; {} keys take {payload_len}",
                    payload.len(),
                    params.name
                ),
            });
        }
        let (bsk_words, ksk_words) = seeded_words(&params);
        let mut r = Reader::new(payload, Kind::EvalKey.describe());
        let bsk_seed = r.u128("the BSK seed")?;
        let ksk_seed = r.u128("the KSK seed")?;
        let bsk = r.u64s(bsk_words, "the bootstrapping key")?;
        let ksk = r.u64s(ksk_words, "the keyswitching key")?;
        r.finish()?;
        Ok(CompressedEvalKey {
            params,
            key_id: h.key_id,
            pbs: Some(SeededPbsKeys {
                bsk_seed,
                ksk_seed,
                bsk: seeded_bsk(&params, bsk_seed, bsk),
                ksk: seeded_ksk(&params, ksk_seed, ksk),
            }),
        })
    }

    /// Write `eval.key` for `circuit` to `path` atomically.
    ///
    /// # Errors
    /// [`RuntimeError::Io`] if the file cannot be written.
    pub fn save(&self, path: &Path, circuit: &Circuit) -> Result<(), RuntimeError> {
        write_atomic(path, &self.to_bytes(circuit), false)
    }

    /// Read `eval.key` made for `circuit` from `path` (at most the size the parameter set's
    /// key has).
    ///
    /// # Errors
    /// [`RuntimeError::Io`] if it cannot be read or is too large, else as
    /// [`CompressedEvalKey::from_bytes`].
    pub fn load(path: &Path, circuit: &Circuit) -> Result<CompressedEvalKey, RuntimeError> {
        let params = params_of(circuit)?;
        let limit = envelope_limit(&params, Self::payload_bytes(&params));
        Self::from_bytes(&read_bounded(path, limit)?, circuit)
    }

    /// Regenerate the masks and convert the BSK to the Fourier domain (on the rayon pool):
    /// what a server does once per registered key (tfhe-rs:
    /// `par_decompress_into_lwe_bootstrap_key`, `par_convert_standard_lwe_bootstrap_key_to_fourier`).
    pub fn decompress(self) -> EvalKey {
        let pbs = self.pbs.map(|k| {
            let std_bsk = k.bsk.par_decompress_into_lwe_bootstrap_key();
            let mut bsk = FourierLweBootstrapKey::new(
                std_bsk.input_lwe_dimension(),
                std_bsk.glwe_size(),
                std_bsk.polynomial_size(),
                std_bsk.decomposition_base_log(),
                std_bsk.decomposition_level_count(),
            );
            par_convert_standard_lwe_bootstrap_key_to_fourier(&std_bsk, &mut bsk);
            drop(std_bsk);
            let ksk = k.ksk.par_decompress_into_lwe_keyswitch_key();
            PbsKeys { bsk, ksk }
        });
        EvalKey {
            params: self.params,
            key_id: self.key_id,
            pbs,
        }
    }
}

/// The parameter set a circuit was exported for.
///
/// # Errors
/// [`RuntimeError::Envelope`] when no vetted set has the circuit's polynomial size.
pub fn params_of(circuit: &Circuit) -> Result<FheParams, RuntimeError> {
    FheParams::by_poly_size(circuit.encoding.poly_size).ok_or_else(|| RuntimeError::Envelope {
        what: "the circuit",
        reason: format!(
            "polynomial size {} has no parameter set (2048 or 8192)",
            circuit.encoding.poly_size
        ),
    })
}

pub(crate) fn header(
    kind: Kind,
    params: &FheParams,
    circuit: &Circuit,
    key_id: [u8; 16],
) -> Header {
    Header {
        kind,
        params: params.name.to_owned(),
        circuit: wire::circuit_digest(circuit),
        key_id,
    }
}

/// Bytes of an envelope for `params` with a payload of `payload` bytes: the header, the
/// payload and the trailing checksum ([`crate::wire`]). What a file reader or an HTTP server
/// uses as its size limit.
pub fn envelope_limit(params: &FheParams, payload: u64) -> u64 {
    payload + 4 + 2 + 2 + params.name.len() as u64 + 32 + 16 + 8 + 32
}

/// Read `path` whole, refusing files over `limit` bytes: the size is checked before reading,
/// and the read itself stops one byte past the limit, so a file that grows meanwhile is
/// refused too.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, RuntimeError> {
    use std::io::Read;
    let io = |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let too_big = |len: u64| RuntimeError::Envelope {
        what: "a key or ciphertext file",
        reason: format!(
            "{} is {len} bytes or more; at most {limit} for this circuit",
            path.display()
        ),
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len > limit {
        return Err(too_big(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Write `bytes` to `path` through a temporary file in the same directory, fsync and rename,
/// so that `path` is either the old file or the whole new one. `private`: mode 0600 on Unix.
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), RuntimeError> {
    use std::io::Write;
    let io = |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.{:032x}.tmp", wire::random_u128()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename is durable once the directory entry is.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}
