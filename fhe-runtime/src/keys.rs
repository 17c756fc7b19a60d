//! Keys: the client's secret keys and the server's evaluation keys, as distinct types.

use crate::params::FheParams;
use tfhe::core_crypto::prelude::*;

/// The client's secret keys. Never given to the server.
pub struct ClientKey {
    pub(crate) params: FheParams,
    /// The big LWE key (dimension k·N) that ciphertexts live under between operations.
    pub(crate) big_sk: LweSecretKeyOwned<u64>,
    pub(crate) encryption: std::sync::Mutex<EncryptionRandomGenerator<DefaultRandomGenerator>>,
}

/// The server's evaluation keys: the Fourier bootstrapping key (small → big) and the keyswitch
/// key (big → small). They hold no secret.
pub struct EvalKey {
    pub(crate) params: FheParams,
    pub(crate) bsk: FourierLweBootstrapKeyOwned,
    pub(crate) ksk: LweKeyswitchKeyOwned<u64>,
}

impl EvalKey {
    /// Size of the evaluation keys in bytes: the Fourier BSK (`c64` = 16 bytes per value) plus
    /// the KSK (8 bytes per value), as held in memory and as they would be serialized.
    pub fn size_bytes(&self) -> usize {
        self.bsk.as_view().data().len() * 16 + self.ksk.as_ref().len() * 8
    }

    /// The parameter set.
    pub fn params(&self) -> &FheParams {
        &self.params
    }
}

impl ClientKey {
    /// Generate fresh secret keys and the matching evaluation keys (BSK generation runs on the
    /// rayon pool).
    pub fn generate(params: FheParams) -> (ClientKey, EvalKey) {
        let p = &params.set;
        let cm = p.ciphertext_modulus;
        let mut seeder = new_seeder();
        let seeder = seeder.as_mut();
        let mut secret = SecretRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed());
        let mut enc =
            EncryptionRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed(), seeder);
        let small_sk: LweSecretKeyOwned<u64> =
            LweSecretKey::generate_new_binary(p.lwe_dimension, &mut secret);
        let glwe_sk: GlweSecretKeyOwned<u64> =
            GlweSecretKey::generate_new_binary(p.glwe_dimension, p.polynomial_size, &mut secret);
        let big_sk = glwe_sk.clone().into_lwe_secret_key();
        let std_bsk = par_allocate_and_generate_new_lwe_bootstrap_key(
            &small_sk,
            &glwe_sk,
            p.pbs_base_log,
            p.pbs_level,
            p.glwe_noise_distribution,
            cm,
            &mut enc,
        );
        let mut bsk = FourierLweBootstrapKey::new(
            std_bsk.input_lwe_dimension(),
            std_bsk.glwe_size(),
            std_bsk.polynomial_size(),
            std_bsk.decomposition_base_log(),
            std_bsk.decomposition_level_count(),
        );
        par_convert_standard_lwe_bootstrap_key_to_fourier(&std_bsk, &mut bsk);
        drop(std_bsk);
        let ksk = allocate_and_generate_new_lwe_keyswitch_key(
            &big_sk,
            &small_sk,
            p.ks_base_log,
            p.ks_level,
            p.lwe_noise_distribution,
            cm,
            &mut enc,
        );
        let client = ClientKey {
            params,
            big_sk,
            encryption: std::sync::Mutex::new(enc),
        };
        (client, EvalKey { params, bsk, ksk })
    }

    /// The parameter set.
    pub fn params(&self) -> &FheParams {
        &self.params
    }
}
