//! KS + PBS on the CPU, one job or a batch of jobs per pass over the keys.
//!
//! Both paths are KS → centered modulus switch → blind rotation → sample extraction with
//! tfhe-rs's own operations. The batched path changes only the loop order: the keyswitch walks
//! the KSK once, applying each of its rows to every ciphertext of the batch (the loop of
//! `tfhe::core_crypto::algorithms::keyswitch_lwe_ciphertext_native_mod_compatible` with the
//! batch innermost), and the blind rotation is tfhe-rs's
//! `FourierLweBootstrapKeyView::batch_blind_rotate_assign`, which walks the BSK once per batch.
//! Integer arithmetic is wrapping and the FFT sees the same operands in the same order, so the
//! outputs are bit-identical to the one-job path (tested).

use crate::keys::PbsKeys;
use crate::params::FheParams;
use tfhe::core_crypto::algorithms::slice_algorithms::slice_wrapping_sub_scalar_mul_assign;
use tfhe::core_crypto::fft_impl::fft64::crypto::bootstrap::batch_blind_rotate_assign_scratch;
use tfhe::core_crypto::prelude::*;

/// Per-thread scratch space for up to `batch` jobs at once.
pub(crate) struct Scratch {
    buffers: ComputationBuffers,
    fft: Fft,
    /// Keyswitched ciphertexts (under the small key) of the current batch.
    small: Vec<LweCiphertextOwned<u64>>,
    /// Signed decomposition digits of the current KSK row, `batch × levels`.
    digits: Vec<u64>,
}

impl Scratch {
    /// Scratch for batches of up to `batch` jobs (at least 1).
    pub(crate) fn new(params: &FheParams, batch: usize) -> Self {
        let p = &params.set;
        let batch = batch.max(1);
        let fft = Fft::new(p.polynomial_size);
        let glwe_size = p.glwe_dimension.to_glwe_size();
        let single = blind_rotate_assign_mem_optimized_requirement::<u64>(
            glwe_size,
            p.polynomial_size,
            fft.as_view(),
        );
        let batched = batch_blind_rotate_assign_scratch::<u64>(
            glwe_size,
            p.polynomial_size,
            CiphertextCount(batch),
            fft.as_view(),
        );
        let mut buffers = ComputationBuffers::new();
        buffers.resize(
            single
                .unaligned_bytes_required()
                .max(batched.unaligned_bytes_required()),
        );
        Scratch {
            buffers,
            fft,
            small: (0..batch)
                .map(|_| {
                    LweCiphertext::new(0u64, p.lwe_dimension.to_lwe_size(), p.ciphertext_modulus)
                })
                .collect(),
            digits: vec![0; batch * p.ks_level.0],
        }
    }
}

/// One job: KS → centered modulus switch → blind rotation → sample extraction.
pub(crate) fn bootstrap_one(
    keys: &PbsKeys,
    params: &FheParams,
    acc: &LweCiphertextOwned<u64>,
    lut: &GlweCiphertextOwned<u64>,
    s: &mut Scratch,
) -> LweCiphertextOwned<u64> {
    let p = &params.set;
    let small = &mut s.small[0];
    keyswitch_lwe_ciphertext(&keys.ksk, acc, small);
    let msed = lwe_ciphertext_centered_binary_modulus_switch::<u64, usize, _>(
        small.as_view(),
        p.polynomial_size.to_blind_rotation_input_modulus_log(),
    );
    let mut glwe = lut.clone();
    blind_rotate_assign_mem_optimized(
        &msed,
        &mut glwe,
        &keys.bsk,
        s.fft.as_view(),
        s.buffers.stack(),
    );
    let mut out = LweCiphertext::new(0u64, acc.lwe_size(), p.ciphertext_modulus);
    extract_lwe_sample_from_glwe_ciphertext(&glwe, &mut out, MonomialDegree(0));
    out
}

/// `inputs.len()` jobs (at most the scratch's batch), job `i` through `luts[i]`, with one pass
/// over the KSK and one over the BSK.
///
/// # Panics
/// If `inputs` and `luts` differ in length or exceed the scratch's batch (the backend sizes
/// both).
pub(crate) fn bootstrap_batch(
    keys: &PbsKeys,
    params: &FheParams,
    inputs: &[LweCiphertextOwned<u64>],
    luts: &[&GlweCiphertextOwned<u64>],
    s: &mut Scratch,
) -> Vec<LweCiphertextOwned<u64>> {
    assert_eq!(inputs.len(), luts.len(), "one table per job");
    let b = inputs.len();
    let p = &params.set;
    keyswitch_batch(&keys.ksk, inputs, &mut s.small[..b], &mut s.digits);
    let log_modulus = p.polynomial_size.to_blind_rotation_input_modulus_log();
    let msed: Vec<_> = s.small[..b]
        .iter()
        .map(|ct| {
            lwe_ciphertext_centered_binary_modulus_switch::<u64, usize, _>(
                ct.as_view(),
                log_modulus,
            )
        })
        .collect();
    let glwe_size = p.glwe_dimension.to_glwe_size();
    let mut rotated = GlweCiphertextList::new(
        0u64,
        glwe_size,
        p.polynomial_size,
        GlweCiphertextCount(b),
        p.ciphertext_modulus,
    );
    for (mut dst, lut) in rotated.iter_mut().zip(luts) {
        dst.as_mut().copy_from_slice(lut.as_ref());
    }
    keys.bsk.as_view().batch_blind_rotate_assign(
        rotated.as_mut_view(),
        &msed,
        s.fft.as_view(),
        s.buffers.stack(),
    );
    rotated
        .iter()
        .map(|glwe| {
            let mut out = LweCiphertext::new(0u64, inputs[0].lwe_size(), p.ciphertext_modulus);
            extract_lwe_sample_from_glwe_ciphertext(&glwe, &mut out, MonomialDegree(0));
            out
        })
        .collect()
}

/// Keyswitch every ciphertext of `inputs` into `outputs` (same length) in one pass over `ksk`:
/// for each input mask coefficient, its KSK block is read once and applied to the whole batch.
/// `digits` holds `inputs.len() × levels` words of scratch.
///
/// # Panics
/// If the lengths differ, the dimensions do not match the key, or a modulus is not native (the
/// runtime's parameters are all native-modulus sets).
pub(crate) fn keyswitch_batch(
    ksk: &LweKeyswitchKeyOwned<u64>,
    inputs: &[LweCiphertextOwned<u64>],
    outputs: &mut [LweCiphertextOwned<u64>],
    digits: &mut [u64],
) {
    assert_eq!(inputs.len(), outputs.len(), "one output per input");
    assert!(ksk.ciphertext_modulus().is_native_modulus());
    let levels = ksk.decomposition_level_count().0;
    let b = inputs.len();
    assert!(digits.len() >= b * levels, "digit scratch for the batch");
    for (input, output) in inputs.iter().zip(outputs.iter_mut()) {
        assert_eq!(
            input.lwe_size().to_lwe_dimension(),
            ksk.input_key_lwe_dimension()
        );
        assert_eq!(
            output.lwe_size().to_lwe_dimension(),
            ksk.output_key_lwe_dimension()
        );
        assert!(input.ciphertext_modulus().is_native_modulus());
        output.as_mut().fill(0);
        *output.get_mut_body().data = *input.get_body().data;
    }
    let decomposer = SignedDecomposer::<u64>::new(
        ksk.decomposition_base_log(),
        ksk.decomposition_level_count(),
    );
    for (i, block) in ksk.iter().enumerate() {
        for (c, input) in inputs.iter().enumerate() {
            let coefficient = input.get_mask().as_ref()[i];
            for (l, term) in decomposer.decompose(coefficient).enumerate() {
                digits[c * levels + l] = term.value();
            }
        }
        for (l, level_key) in block.iter().enumerate() {
            for (c, output) in outputs.iter_mut().enumerate() {
                slice_wrapping_sub_scalar_mul_assign(
                    output.as_mut(),
                    level_key.as_ref(),
                    digits[c * levels + l],
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::random_ciphertexts;

    /// A keyswitching key of the 2_2 parameter set's shape filled with random-looking words:
    /// the batched and one-by-one keyswitches must agree word for word on any key.
    #[test]
    fn batched_keyswitch_equals_tfhe_keyswitch() {
        let params = FheParams::n2048();
        let p = &params.set;
        let big = params.big_dim();
        let rows = big * p.ks_level.0;
        let words = crate::server::random_words(rows * (p.lwe_dimension.0 + 1), 99);
        let ksk = LweKeyswitchKey::from_container(
            words,
            p.ks_base_log,
            p.ks_level,
            p.lwe_dimension.to_lwe_size(),
            p.ciphertext_modulus,
        );
        let inputs = random_ciphertexts(5, big);
        let fresh =
            || LweCiphertext::new(0u64, p.lwe_dimension.to_lwe_size(), p.ciphertext_modulus);
        let mut batched: Vec<_> = (0..5).map(|_| fresh()).collect();
        let mut digits = vec![0; 5 * p.ks_level.0];
        keyswitch_batch(&ksk, &inputs, &mut batched, &mut digits);
        for (input, got) in inputs.iter().zip(&batched) {
            let mut want = fresh();
            keyswitch_lwe_ciphertext(&ksk, input, &mut want);
            assert_eq!(want.as_ref(), got.as_ref());
        }
    }
}
