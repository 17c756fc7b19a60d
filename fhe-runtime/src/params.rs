//! Parameter sets and the noise at a PBS input.

use qfhe_core::NoiseSpec;
use tfhe::core_crypto::commons::noise_formulas::centered_mean_shifted_modulus_switch::centered_binary_shifted_modulus_switch_additive_variance;
use tfhe::core_crypto::commons::noise_formulas::lwe_keyswitch::keyswitch_additive_variance_132_bits_security_tuniform;
use tfhe::core_crypto::commons::noise_formulas::lwe_programmable_bootstrap::pbs_variance_132_bits_security_tuniform_fft_mul;
use tfhe::core_crypto::prelude::*;
use tfhe::shortint::parameters::v1_8::{
    V1_8_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128,
    V1_8_PARAM_MESSAGE_3_CARRY_3_KS_PBS_TUNIFORM_2M128,
};
use tfhe::shortint::ClassicPBSParameters;

/// A vetted tfhe-rs parameter set (KS→PBS, ciphertexts under the big key, native modulus).
#[derive(Debug, Clone, Copy)]
pub struct FheParams {
    /// The tfhe-rs name.
    pub name: &'static str,
    /// The values.
    pub set: ClassicPBSParameters,
}

impl FheParams {
    /// `V1_8_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128`: n = 918, N = 2048, k = 1.
    pub fn n2048() -> Self {
        Self {
            name: "V1_8_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128",
            set: V1_8_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128,
        }
    }

    /// `V1_8_PARAM_MESSAGE_3_CARRY_3_KS_PBS_TUNIFORM_2M128`: n = 1077, N = 8192, k = 1.
    pub fn n8192() -> Self {
        Self {
            name: "V1_8_PARAM_MESSAGE_3_CARRY_3_KS_PBS_TUNIFORM_2M128",
            set: V1_8_PARAM_MESSAGE_3_CARRY_3_KS_PBS_TUNIFORM_2M128,
        }
    }

    /// A set by its polynomial size (2048 or 8192).
    pub fn by_poly_size(n: u32) -> Option<Self> {
        match n {
            2048 => Some(Self::n2048()),
            8192 => Some(Self::n8192()),
            _ => None,
        }
    }

    /// `N`.
    pub fn poly_size(&self) -> u32 {
        self.set.polynomial_size.0 as u32
    }

    /// Dimension of the big key, `k·N`: the GEMM runs on ciphertexts of `k·N + 1` words.
    pub fn big_dim(&self) -> usize {
        self.set.glwe_dimension.0 * self.set.polynomial_size.0
    }

    /// Bytes of the decompressed evaluation keys a server holds for these parameters (what
    /// [`crate::EvalKey::size_bytes`] reports): the Fourier BSK, `n · ℓ_pbs · (k+1)² · N/2`
    /// complex values of 16 bytes, plus the KSK, `k·N · ℓ_ks · (n+1)` words of 8 bytes.
    pub fn eval_key_bytes(&self) -> u64 {
        let p = &self.set;
        let glwe = p.glwe_dimension.to_glwe_size().0 as u64;
        let bsk = p.lwe_dimension.0 as u64
            * p.pbs_level.0 as u64
            * glwe
            * glwe
            * (p.polynomial_size.0 as u64 / 2);
        let ksk = self.big_dim() as u64 * p.ks_level.0 as u64 * (p.lwe_dimension.0 as u64 + 1);
        bsk * 16 + ksk * 8
    }

    /// Std of each noise source in slots (`1/(2N)` of the torus), from tfhe-rs's noise formulas
    /// (`noise_formulas::{lwe_keyswitch, centered_mean_shifted_modulus_switch,
    /// lwe_programmable_bootstrap}`, TUniform 132-bit variants, f64 FFT with a 53-bit mantissa)
    /// and, for fresh encryptions, the TUniform(b) variance `(2^(2b+1) + 1) / 6` on `2^64`.
    pub fn noise_spec(&self) -> NoiseSpec {
        let p = &self.set;
        let q = 2f64.powi(64);
        let two_n = 2.0 * p.polynomial_size.0 as f64;
        let big = LweDimension(self.big_dim());
        let ks = keyswitch_additive_variance_132_bits_security_tuniform(
            big,
            p.lwe_dimension,
            p.ks_base_log,
            p.ks_level,
            q,
            q,
        )
        .0;
        let ms =
            centered_binary_shifted_modulus_switch_additive_variance(p.lwe_dimension, q, two_n).0;
        let pbs = pbs_variance_132_bits_security_tuniform_fft_mul(
            p.lwe_dimension,
            p.glwe_dimension,
            p.polynomial_size,
            p.pbs_base_log,
            p.pbs_level,
            53.0,
            q,
        )
        .0;
        let fresh = match p.glwe_noise_distribution {
            DynamicDistribution::TUniform(t) => {
                let b = t.bound_log2() as i32;
                (2f64.powi(2 * b + 1) + 1.0) / 6.0 / (q * q)
            }
            DynamicDistribution::Gaussian(g) => g.standard_dev().0.powi(2),
        };
        // Variances are torus-normalised; one slot is 1/(2N) of the torus.
        let to_slots = |v: f64| v.sqrt() * two_n;
        NoiseSpec {
            base_sigma_slots: (ks + ms).sqrt() * two_n,
            pbs_sigma_slots: to_slots(pbs),
            fresh_sigma_slots: to_slots(fresh),
            output_wire_sigma_slots: crate::messages::output_switch_sigma_torus(self.big_dim()) / q
                * two_n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_of_the_default_set_matches_the_published_failure_probability() {
        let s = FheParams::n2048().noise_spec();
        // tfhe-rs states log2 p_fail = -129.581 for 4 message bits + padding at 2-norm 5:
        // p = erfc(half box / (sqrt2 σ)), half box = 2N / 2^(p+2) slots = 4096/64 = 64.
        let sigma = (s.base_sigma_slots.powi(2) + 25.0 * s.pbs_sigma_slots.powi(2)).sqrt();
        let log2_p = libm::erfc(64.0 / (std::f64::consts::SQRT_2 * sigma)).log2();
        assert!((log2_p - -129.581).abs() < 0.5, "log2 p_fail {log2_p}");
        // The defaults the trainer assumes are these values.
        let d = NoiseSpec::default();
        assert!(
            (d.base_sigma_slots - s.base_sigma_slots).abs() < 1e-3,
            "{s:?}"
        );
        assert!(
            (d.pbs_sigma_slots - s.pbs_sigma_slots).abs() < 1e-4,
            "{s:?}"
        );
        assert!(
            (d.fresh_sigma_slots / s.fresh_sigma_slots - 1.0).abs() < 0.05,
            "{s:?}"
        );
        assert!(
            (d.output_wire_sigma_slots / s.output_wire_sigma_slots - 1.0).abs() < 1e-3,
            "{s:?}"
        );
    }
}
