//! The client: encrypts input codes, decrypts outputs.

use crate::keys::ClientKey;
use crate::server::RuntimeError;
use qfhe_export::Circuit;
use tfhe::core_crypto::prelude::*;

/// A client for one circuit, holding the secret key.
pub struct Client<'a> {
    key: &'a ClientKey,
    circuit: &'a Circuit,
}

/// Round the torus value `phase` to the nearest multiple of `delta`, as a signed integer
/// (values in the upper half of the torus are negative).
fn decode_signed(phase: u64, delta: u64) -> i64 {
    let signed = phase as i64 as i128;
    let d = delta as i128;
    (signed + d / 2).div_euclid(d) as i64
}

impl<'a> Client<'a> {
    /// A client for `circuit` with `key`.
    ///
    /// # Errors
    /// [`RuntimeError::ParamsMismatch`] if the circuit was exported for another polynomial size.
    pub fn new(key: &'a ClientKey, circuit: &'a Circuit) -> Result<Self, RuntimeError> {
        crate::server::check_params(circuit, key.params())?;
        Ok(Self { key, circuit })
    }

    /// Encrypt input codes (`features` values in `[0, 2^in_bits - 1]`) as LWE ciphertexts under
    /// the big key, each `x · Δ_in` on the torus.
    ///
    /// # Errors
    /// [`RuntimeError::Input`] for a wrong length or an out-of-range code.
    pub fn encrypt(&self, codes: &[i32]) -> Result<Vec<LweCiphertextOwned<u64>>, RuntimeError> {
        let c = self.circuit;
        if codes.len() != c.features {
            return Err(RuntimeError::Input(format!(
                "{} input codes, the circuit takes {}",
                codes.len(),
                c.features
            )));
        }
        let qmax = (1i32 << c.in_bits) - 1;
        if let Some(v) = codes.iter().find(|&&v| !(0..=qmax).contains(&v)) {
            return Err(RuntimeError::Input(format!(
                "input code {v} outside [0, {qmax}]"
            )));
        }
        let p = &self.key.params.set;
        let delta = c.input_torus_delta();
        let mut gen = self.key.encryption.lock().expect("encryption generator");
        Ok(codes
            .iter()
            .map(|&x| {
                allocate_and_encrypt_new_lwe_ciphertext(
                    &self.key.big_sk,
                    Plaintext(x as u64 * delta),
                    p.glwe_noise_distribution,
                    p.ciphertext_modulus,
                    &mut *gen,
                )
            })
            .collect())
    }

    /// Decrypt the output layer's ciphertexts to accumulators (the server added each output's
    /// placement shift; it is removed here).
    pub fn decrypt_output(&self, cts: &[LweCiphertextOwned<u64>]) -> Vec<i64> {
        let o = &self.circuit.output;
        cts.iter()
            .enumerate()
            .map(|(j, ct)| o.decode(j, decrypt_lwe_ciphertext(&self.key.big_sk, ct).0))
            .collect()
    }

    /// Decrypt hidden layer `l`'s PBS outputs to activation codes (trace mode only: a deployed
    /// client never sees them).
    pub fn decrypt_hidden(&self, l: usize, cts: &[LweCiphertextOwned<u64>]) -> Vec<i32> {
        let delta = self.circuit.output_torus_delta(l);
        cts.iter()
            .map(|ct| decode_signed(decrypt_lwe_ciphertext(&self.key.big_sk, ct).0, delta) as i32)
            .collect()
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
