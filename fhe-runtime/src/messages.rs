//! Ciphertext batches as they travel between client and server, in [`crate::wire`] envelopes.
//!
//! * [`InputBatch`]: per sample the `C` input codes packed into the coefficients of
//!   `⌈C / N⌉` *seeded* GLWE ciphertexts under the GLWE key (tfhe-rs `SeededGlweCiphertextList`:
//!   the masks are regenerated from a 128-bit seed), of which only the first `C` body
//!   coefficients travel, so an input costs 8 bytes. The server regenerates the masks and
//!   extracts input `i` as an LWE ciphertext under the big key (the GLWE key read as an LWE
//!   key) with `extract_lwe_sample_from_glwe_ciphertext` at degree `i mod N`. Each input keeps
//!   its own fresh GLWE noise; encryption draws `k·N` mask words per `N` inputs instead of per
//!   input. Payload: `u32` samples `S`, `u32` inputs per sample `C`, then per sample a `u128`
//!   seed and `C` `u64` body coefficients (envelope kind 5; kind 3 was one seeded LWE list per
//!   sample and is refused with a message to re-encrypt).
//! * [`OutputBatch`]: per sample the output layer's `d_out` ciphertexts, each coefficient
//!   modulus-switched from 2^64 to 2^32 (rounded to nearest), which halves them. Payload: `u32`
//!   samples, `u32` outputs per sample, `u32` words per ciphertext (`k·N + 1`), then the `u32`
//!   words. The rounding adds noise of σ = 2^32 · √((1 + k·N/2)/12) torus units
//!   ([`output_switch_sigma_torus`]); the noise model counts it, and it is ~2^-14 of the
//!   PBS-noise margins that the output Δ keeps ([`qfhe_circuit::lut::output_delta`]).

use crate::error::RuntimeError;
use crate::keys::{envelope_limit, header, params_of, read_bounded, write_atomic};
use crate::wire::{self, Expect, Kind, Reader};
use qfhe_circuit::Circuit;
use rayon::prelude::*;
use std::path::Path;
use tfhe::core_crypto::commons::math::random::{CompressionSeed, Seed};
use tfhe::core_crypto::prelude::*;

/// Bits each output coefficient keeps on the wire.
pub const OUTPUT_WIRE_BITS: u32 = 32;

/// Standard deviation, in torus units of 2^-64, that the modulus switch of the outputs to
/// [`OUTPUT_WIRE_BITS`] adds to a ciphertext under a binary key of dimension `big_dim`: each
/// of the `big_dim + 1` coefficients is rounded (uniform error, variance `q²/12` with
/// `q = 2^(64 − bits)`), and a mask coefficient's error counts where its key bit is 1 (half
/// of them on average).
pub fn output_switch_sigma_torus(big_dim: usize) -> f64 {
    let q = 2f64.powi(64 - OUTPUT_WIRE_BITS as i32);
    q * ((1.0 + big_dim as f64 / 2.0) / 12.0).sqrt()
}

/// Encrypted inputs of a batch of samples (packed in seeded GLWE ciphertexts).
pub struct InputBatch {
    pub(crate) key_id: [u8; 16],
    pub(crate) seeds: Vec<u128>,
    /// Per sample, the first `C` body coefficients of its GLWE ciphertexts.
    pub(crate) bodies: Vec<Vec<u64>>,
    pub(crate) glwe_size: GlweSize,
    pub(crate) poly_size: PolynomialSize,
    pub(crate) modulus: CiphertextModulus<u64>,
}

/// Encrypted outputs of a batch of samples, modulus-switched to [`OUTPUT_WIRE_BITS`].
pub struct OutputBatch {
    pub(crate) key_id: [u8; 16],
    /// Per sample, the outputs' words, `d_out · (k·N + 1)` each.
    pub(crate) samples: Vec<Vec<u32>>,
    pub(crate) lwe_size: usize,
}

/// Largest batch one message may carry.
pub const MAX_BATCH: u32 = 4096;

fn bad(kind: Kind, reason: String) -> RuntimeError {
    RuntimeError::Envelope {
        what: kind.describe(),
        reason,
    }
}

impl InputBatch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    /// True for a batch without samples.
    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }

    /// The id of the key the inputs are encrypted under.
    pub fn key_id(&self) -> [u8; 16] {
        self.key_id
    }

    /// An empty batch under `key_id` for `params`' GLWE shape.
    pub(crate) fn empty(key_id: [u8; 16], params: &crate::FheParams, samples: usize) -> Self {
        Self {
            key_id,
            seeds: Vec::with_capacity(samples),
            bodies: Vec::with_capacity(samples),
            glwe_size: params.set.glwe_dimension.to_glwe_size(),
            poly_size: params.set.polynomial_size,
            modulus: params.set.ciphertext_modulus,
        }
    }

    /// Payload bytes of `samples` samples of `inputs` ciphertexts each.
    pub fn payload_bytes(samples: u64, inputs: u64) -> u64 {
        8 + samples * (16 + 8 * inputs)
    }

    /// The envelope for `circuit`.
    ///
    /// # Errors
    /// As [`params_of`].
    pub fn to_bytes(&self, circuit: &Circuit) -> Result<Vec<u8>, RuntimeError> {
        let params = params_of(circuit)?;
        let c = circuit.input.features;
        let mut payload =
            Vec::with_capacity(Self::payload_bytes(self.len() as u64, c as u64) as usize);
        payload.extend_from_slice(&(self.len() as u32).to_le_bytes());
        payload.extend_from_slice(&(c as u32).to_le_bytes());
        for (seed, bodies) in self.seeds.iter().zip(&self.bodies) {
            payload.extend_from_slice(&seed.to_le_bytes());
            wire::put_u64s(&mut payload, bodies);
        }
        Ok(wire::seal(
            &header(Kind::Inputs, &params, circuit, self.key_id),
            &payload,
        ))
    }

    /// Read an input envelope made for `circuit`, of at most `max_samples` samples (each with
    /// the circuit's number of inputs); sizes are checked before anything is allocated.
    ///
    /// # Errors
    /// [`RuntimeError::Envelope`] for a malformed, foreign, corrupted or mis-sized envelope.
    pub fn from_bytes(
        bytes: &[u8],
        circuit: &Circuit,
        max_samples: u32,
    ) -> Result<InputBatch, RuntimeError> {
        let params = params_of(circuit)?;
        let digest = wire::circuit_digest(circuit);
        let c = circuit.input.features as u64;
        let max = max_samples.min(MAX_BATCH) as u64;
        let expect = Expect {
            kind: Kind::Inputs,
            params: &params,
            circuit: &digest,
            max_payload: Self::payload_bytes(max, c),
        };
        let (h, payload) = wire::open(bytes, expect)?;
        let mut r = Reader::new(payload, Kind::Inputs.describe());
        let samples = r.u32("the sample count")? as u64;
        let per = r.u32("the input count")? as u64;
        if samples == 0 || samples > max {
            return Err(bad(
                Kind::Inputs,
                format!("{samples} samples; send 1 to {max} per batch"),
            ));
        }
        if per != c {
            return Err(bad(
                Kind::Inputs,
                format!("{per} ciphertexts per sample; the circuit has {c} inputs"),
            ));
        }
        if payload.len() as u64 != Self::payload_bytes(samples, c) {
            return Err(bad(
                Kind::Inputs,
                format!(
                    "payload of {} bytes; {samples} samples of {c} inputs take {}",
                    payload.len(),
                    Self::payload_bytes(samples, c)
                ),
            ));
        }
        let mut batch = InputBatch::empty(h.key_id, &params, samples as usize);
        for _ in 0..samples {
            batch.seeds.push(r.u128("a sample's seed")?);
            batch
                .bodies
                .push(r.u64s(c as usize, "a sample's ciphertexts")?);
        }
        r.finish()?;
        Ok(batch)
    }

    /// Regenerate the masks and extract the inputs: per sample the circuit's input ciphertexts
    /// under the big key (tfhe-rs `SeededGlweCiphertextList::decompress_into_glwe_ciphertext_list`,
    /// then `extract_lwe_sample_from_glwe_ciphertext` per input), samples in parallel.
    pub fn decompress(&self) -> Vec<Vec<LweCiphertextOwned<u64>>> {
        self.bodies
            .par_iter()
            .zip(&self.seeds)
            .map(|(bodies, &seed)| self.unpack(bodies, seed))
            .collect()
    }

    fn unpack(&self, bodies: &[u64], seed: u128) -> Vec<LweCiphertextOwned<u64>> {
        let n = self.poly_size.0;
        let glwes = bodies.len().div_ceil(n);
        // Body coefficients past the inputs were not sent; extraction never reads them.
        let mut container = bodies.to_vec();
        container.resize(glwes * n, 0);
        let list = SeededGlweCiphertextList::from_container(
            container,
            self.glwe_size,
            self.poly_size,
            CompressionSeed::from(Seed(seed)),
            self.modulus,
        )
        .decompress_into_glwe_ciphertext_list();
        let lwe_size = LweSize(self.glwe_size.to_glwe_dimension().0 * n + 1);
        (0..bodies.len())
            .map(|i| {
                let mut ct = LweCiphertext::new(0u64, lwe_size, self.modulus);
                let glwe = list.get(i / n);
                extract_lwe_sample_from_glwe_ciphertext(&glwe, &mut ct, MonomialDegree(i % n));
                ct
            })
            .collect()
    }

    /// Write the envelope to `path` atomically.
    ///
    /// # Errors
    /// [`RuntimeError::Io`]; as [`InputBatch::to_bytes`].
    pub fn save(&self, path: &Path, circuit: &Circuit) -> Result<(), RuntimeError> {
        write_atomic(path, &self.to_bytes(circuit)?, false)
    }

    /// Read an input envelope from `path`; see [`InputBatch::from_bytes`].
    ///
    /// # Errors
    /// [`RuntimeError::Io`]; as [`InputBatch::from_bytes`].
    pub fn load(path: &Path, circuit: &Circuit, max_samples: u32) -> Result<Self, RuntimeError> {
        let params = params_of(circuit)?;
        let max = max_samples.min(MAX_BATCH) as u64;
        let limit = envelope_limit(
            &params,
            Self::payload_bytes(max, circuit.input.features as u64),
        );
        Self::from_bytes(&read_bounded(path, limit)?, circuit, max_samples)
    }
}

/// Round a coefficient to its top [`OUTPUT_WIRE_BITS`] bits.
fn switch_down(w: u64) -> u32 {
    (w.wrapping_add(1 << (63 - OUTPUT_WIRE_BITS)) >> (64 - OUTPUT_WIRE_BITS)) as u32
}

impl OutputBatch {
    /// Modulus-switch the server's output ciphertexts (per sample, `d_out` of them) for
    /// sending under key `key_id`.
    pub fn from_outputs(key_id: [u8; 16], outputs: &[Vec<LweCiphertextOwned<u64>>]) -> Self {
        let lwe_size = outputs
            .iter()
            .flatten()
            .next()
            .map_or(0, |ct| ct.lwe_size().0);
        let samples = outputs
            .iter()
            .map(|cts| {
                cts.iter()
                    .flat_map(|ct| ct.as_ref().iter().map(|&w| switch_down(w)))
                    .collect()
            })
            .collect();
        Self {
            key_id,
            samples,
            lwe_size,
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True for a batch without samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The id of the key the outputs are encrypted under.
    pub fn key_id(&self) -> [u8; 16] {
        self.key_id
    }

    /// Payload bytes of `samples` samples of `outputs` ciphertexts of `lwe_size` words.
    pub fn payload_bytes(samples: u64, outputs: u64, lwe_size: u64) -> u64 {
        12 + samples * outputs * lwe_size * 4
    }

    /// Per sample, the output ciphertexts lifted back to 2^64 (the low bits zero).
    pub fn ciphertexts(&self) -> Vec<Vec<LweCiphertextOwned<u64>>> {
        let cm = CiphertextModulus::new_native();
        self.samples
            .iter()
            .map(|words| {
                words
                    .chunks_exact(self.lwe_size.max(1))
                    .map(|c| {
                        LweCiphertext::from_container(
                            c.iter()
                                .map(|&w| (w as u64) << (64 - OUTPUT_WIRE_BITS))
                                .collect(),
                            cm,
                        )
                    })
                    .collect()
            })
            .collect()
    }

    /// The envelope for `circuit`.
    ///
    /// # Errors
    /// As [`params_of`].
    pub fn to_bytes(&self, circuit: &Circuit) -> Result<Vec<u8>, RuntimeError> {
        let params = params_of(circuit)?;
        let d = circuit.output.d_out();
        let mut payload = Vec::with_capacity(Self::payload_bytes(
            self.len() as u64,
            d as u64,
            self.lwe_size as u64,
        ) as usize);
        payload.extend_from_slice(&(self.len() as u32).to_le_bytes());
        payload.extend_from_slice(&(d as u32).to_le_bytes());
        payload.extend_from_slice(&(self.lwe_size as u32).to_le_bytes());
        for words in &self.samples {
            payload.reserve(words.len() * 4);
            for w in words {
                payload.extend_from_slice(&w.to_le_bytes());
            }
        }
        Ok(wire::seal(
            &header(Kind::Outputs, &params, circuit, self.key_id),
            &payload,
        ))
    }

    /// Read an output envelope made for `circuit`, of at most `max_samples` samples.
    ///
    /// # Errors
    /// [`RuntimeError::Envelope`] for a malformed, foreign, corrupted or mis-sized envelope.
    pub fn from_bytes(
        bytes: &[u8],
        circuit: &Circuit,
        max_samples: u32,
    ) -> Result<OutputBatch, RuntimeError> {
        let params = params_of(circuit)?;
        let digest = wire::circuit_digest(circuit);
        let d = circuit.output.d_out() as u64;
        let size = params.big_dim() as u64 + 1;
        let max = max_samples.min(MAX_BATCH) as u64;
        let expect = Expect {
            kind: Kind::Outputs,
            params: &params,
            circuit: &digest,
            max_payload: Self::payload_bytes(max, d, size),
        };
        let (h, payload) = wire::open(bytes, expect)?;
        let mut r = Reader::new(payload, Kind::Outputs.describe());
        let samples = r.u32("the sample count")? as u64;
        let per = r.u32("the output count")? as u64;
        let words = r.u32("the ciphertext size")? as u64;
        if samples == 0 || samples > max {
            return Err(bad(
                Kind::Outputs,
                format!("{samples} samples; 1 to {max} expected"),
            ));
        }
        if per != d {
            return Err(bad(
                Kind::Outputs,
                format!("{per} ciphertexts per sample; the circuit has {d} outputs"),
            ));
        }
        if words != size {
            return Err(bad(
                Kind::Outputs,
                format!("ciphertexts of {words} words; {} takes {size}", params.name),
            ));
        }
        if payload.len() as u64 != Self::payload_bytes(samples, d, size) {
            return Err(bad(
                Kind::Outputs,
                format!(
                    "payload of {} bytes; {} expected",
                    payload.len(),
                    Self::payload_bytes(samples, d, size)
                ),
            ));
        }
        let per_sample = (d * size) as usize;
        let mut out = Vec::with_capacity(samples as usize);
        for _ in 0..samples {
            let b = r.bytes(per_sample * 4, "a sample's ciphertexts")?;
            out.push(
                b.chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                    .collect(),
            );
        }
        r.finish()?;
        Ok(OutputBatch {
            key_id: h.key_id,
            samples: out,
            lwe_size: size as usize,
        })
    }

    /// Write the envelope to `path` atomically.
    ///
    /// # Errors
    /// [`RuntimeError::Io`]; as [`OutputBatch::to_bytes`].
    pub fn save(&self, path: &Path, circuit: &Circuit) -> Result<(), RuntimeError> {
        write_atomic(path, &self.to_bytes(circuit)?, false)
    }

    /// Read an output envelope from `path`; see [`OutputBatch::from_bytes`].
    ///
    /// # Errors
    /// [`RuntimeError::Io`]; as [`OutputBatch::from_bytes`].
    pub fn load(path: &Path, circuit: &Circuit, max_samples: u32) -> Result<Self, RuntimeError> {
        let params = params_of(circuit)?;
        let max = max_samples.min(MAX_BATCH) as u64;
        let limit = envelope_limit(
            &params,
            Self::payload_bytes(
                max,
                circuit.output.d_out() as u64,
                params.big_dim() as u64 + 1,
            ),
        );
        Self::from_bytes(&read_bounded(path, limit)?, circuit, max_samples)
    }
}
