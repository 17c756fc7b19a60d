//! The client: encrypts input codes, decrypts outputs.

use crate::error::RuntimeError;
use crate::keys::ClientKey;
use crate::messages::{InputBatch, OutputBatch};
use qfhe_circuit::Circuit;
use std::sync::Arc;
use tfhe::core_crypto::commons::math::random::{CompressionSeed, Seed};
use tfhe::core_crypto::prelude::*;

/// A client for one circuit, holding the secret key.
pub struct Client {
    key: Arc<ClientKey>,
    circuit: Arc<Circuit>,
}

/// Round the torus value `phase` to the nearest multiple of `delta`, as a signed integer
/// (values in the upper half of the torus are negative).
fn decode_signed(phase: u64, delta: u64) -> i64 {
    let signed = phase as i64 as i128;
    let d = delta as i128;
    (signed + d / 2).div_euclid(d) as i64
}

impl Client {
    /// A client for `circuit` with `key`.
    ///
    /// # Errors
    /// [`RuntimeError::ParamsMismatch`] if the circuit was exported for another polynomial size.
    pub fn new(key: Arc<ClientKey>, circuit: Arc<Circuit>) -> Result<Self, RuntimeError> {
        crate::server::check_params(&circuit, key.params())?;
        Ok(Self { key, circuit })
    }

    /// Encrypt input codes (`features` values in `[0, 2^bits - 1]`) as LWE ciphertexts under
    /// the big key, each `x · Δ_in` on the torus: the codes are packed into seeded GLWE
    /// ciphertexts as for sending ([`Client::encrypt_batch`]) and extracted as a server does
    /// ([`InputBatch::decompress`]), so in-process runs encrypt exactly as deployed ones.
    ///
    /// # Errors
    /// [`RuntimeError::Circuit`] for a wrong length or an out-of-range code.
    pub fn encrypt(&self, codes: &[i32]) -> Result<Vec<LweCiphertextOwned<u64>>, RuntimeError> {
        let batch = self.encrypt_batch(std::slice::from_ref(&codes.to_vec()))?;
        Ok(batch.decompress().pop().expect("one sample in, one out"))
    }

    /// Input codes on the torus: `x · Δ_in` each.
    fn plaintexts(&self, codes: &[i32]) -> PlaintextList<Vec<u64>> {
        let delta = self.circuit.input.delta;
        PlaintextList::from_container(
            codes
                .iter()
                .map(|&x| (x as u64).wrapping_mul(delta))
                .collect(),
        )
    }

    /// Encrypt a batch of samples' input codes for sending to a server: per sample, the
    /// codes `x · Δ_in` as the coefficients of `⌈features / N⌉` seeded GLWE ciphertexts under
    /// the GLWE key with the parameter set's GLWE noise (one fresh random compression seed per
    /// sample; tfhe-rs `encrypt_seeded_glwe_ciphertext_list`), of which the first `features`
    /// body coefficients are kept (layout: [`crate::messages`]).
    ///
    /// # Errors
    /// [`RuntimeError::Circuit`] for a sample of the wrong length or with an out-of-range code;
    /// [`RuntimeError::Input`] for an empty batch or one over [`crate::messages::MAX_BATCH`].
    pub fn encrypt_batch(&self, samples: &[Vec<i32>]) -> Result<InputBatch, RuntimeError> {
        if samples.is_empty() || samples.len() > crate::messages::MAX_BATCH as usize {
            return Err(RuntimeError::Input(format!(
                "a batch of {} samples; send 1 to {}",
                samples.len(),
                crate::messages::MAX_BATCH
            )));
        }
        let c = &*self.circuit;
        let params = &self.key.params;
        let p = &params.set;
        let n = p.polynomial_size.0;
        let glwe_key = GlweSecretKey::from_container(self.key.big_sk.as_ref(), p.polynomial_size);
        let mut seeder = new_seeder();
        let mut batch = InputBatch::empty(self.key.key_id, params, samples.len());
        for codes in samples {
            c.check_input(codes)?;
            let glwes = codes.len().div_ceil(n);
            let mut plain = self.plaintexts(codes).into_container();
            plain.resize(glwes * n, 0);
            let seed = crate::wire::random_u128();
            let mut list = SeededGlweCiphertextList::new(
                0u64,
                p.glwe_dimension.to_glwe_size(),
                p.polynomial_size,
                GlweCiphertextCount(glwes),
                CompressionSeed::from(Seed(seed)),
                p.ciphertext_modulus,
            );
            encrypt_seeded_glwe_ciphertext_list(
                &glwe_key,
                &mut list,
                &PlaintextList::from_container(plain),
                p.glwe_noise_distribution,
                seeder.as_mut(),
            );
            let mut bodies = list.into_container();
            bodies.truncate(codes.len());
            batch.seeds.push(seed);
            batch.bodies.push(bodies);
        }
        Ok(batch)
    }

    /// Decrypt a batch of outputs received from a server: per sample, the output layer's
    /// accumulators (`d_out` values).
    ///
    /// # Errors
    /// [`RuntimeError::Input`] when the outputs are under another key or do not have one
    /// ciphertext of the parameters' size per output.
    pub fn decrypt_batch(&self, outputs: &OutputBatch) -> Result<Vec<Vec<i64>>, RuntimeError> {
        if outputs.key_id() != self.key.key_id {
            return Err(RuntimeError::Input(format!(
                "the outputs are under key {}, this client holds key {}",
                crate::wire::hex(&outputs.key_id()),
                crate::wire::hex(&self.key.key_id)
            )));
        }
        outputs
            .ciphertexts()
            .iter()
            .map(|cts| self.decrypt_output(cts))
            .collect()
    }

    /// Check ciphertexts handed to the client: `count` of them, each of `k·N + 1` words.
    fn check(
        &self,
        what: &str,
        count: usize,
        cts: &[LweCiphertextOwned<u64>],
    ) -> Result<(), RuntimeError> {
        if cts.len() != count {
            return Err(RuntimeError::Input(format!(
                "{} {what} ciphertexts, the circuit has {count}",
                cts.len()
            )));
        }
        let size = self.key.params.big_dim() + 1;
        if let Some(i) = cts.iter().position(|ct| ct.lwe_size().0 != size) {
            return Err(RuntimeError::Input(format!(
                "{what} ciphertext {i} has {} words, the parameters take {size}",
                cts[i].lwe_size().0
            )));
        }
        Ok(())
    }

    /// Decrypt the output layer's ciphertexts to accumulators (`d_out` values; the server
    /// added each output's placement shift, removed here).
    ///
    /// # Errors
    /// [`RuntimeError::Input`] unless there is one ciphertext of the parameters' size per
    /// output.
    pub fn decrypt_output(
        &self,
        cts: &[LweCiphertextOwned<u64>],
    ) -> Result<Vec<i64>, RuntimeError> {
        let c = &*self.circuit;
        self.check("output", c.output.d_out(), cts)?;
        Ok(cts
            .iter()
            .enumerate()
            .map(|(j, ct)| c.decode_output(j, decrypt_lwe_ciphertext(&self.key.big_sk, ct).0))
            .collect())
    }

    /// Decrypt stage `s`'s PBS outputs to codes (trace mode only: a deployed client never sees
    /// them).
    ///
    /// # Errors
    /// [`RuntimeError::Input`] for a stage the circuit does not have, or ciphertexts that are
    /// not one of the parameters' size per neuron.
    pub fn decrypt_stage(
        &self,
        s: usize,
        cts: &[LweCiphertextOwned<u64>],
    ) -> Result<Vec<i32>, RuntimeError> {
        let stage = self.circuit.stages.get(s).ok_or_else(|| {
            RuntimeError::Input(format!(
                "stage {s} does not exist; the circuit has {}",
                self.circuit.stages.len()
            ))
        })?;
        self.check("stage", stage.d_out(), cts)?;
        Ok(cts
            .iter()
            .map(|ct| {
                decode_signed(decrypt_lwe_ciphertext(&self.key.big_sk, ct).0, stage.delta) as i32
            })
            .collect())
    }
}
#[cfg(test)]
mod tests {
    #[test]
    fn signed_decoding_rounds_to_nearest() {
        let d = 1u64 << 50;
        assert_eq!(super::decode_signed(3 * d + d / 3, d), 3);
        assert_eq!(super::decode_signed((3 * d).wrapping_neg(), d), -3);
        assert_eq!(super::decode_signed(d / 2 - 1, d), 0);
    }
}
