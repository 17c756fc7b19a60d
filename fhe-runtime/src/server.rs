//! The server: evaluates a circuit on ciphertexts with the evaluation keys only.

use crate::backend::{Backend, LayerJobs};
use crate::cpu_batch;
use crate::keys::EvalKey;
use crate::params::FheParams;
use qfhe_circuit::{Circuit, Source, Stage};
use rayon::prelude::*;
use std::sync::Arc;
use tfhe::core_crypto::prelude::*;

pub use crate::error::RuntimeError;

pub(crate) fn check_params(circuit: &Circuit, params: &FheParams) -> Result<(), RuntimeError> {
    if circuit.encoding.poly_size != params.poly_size() {
        return Err(RuntimeError::ParamsMismatch {
            circuit: circuit.encoding.poly_size,
            params: params.poly_size(),
            name: params.name,
        });
    }
    Ok(())
}

/// Ciphertexts of one evaluation.
pub struct Evaluation {
    /// PBS outputs of each stage when kept (trace mode), else empty.
    pub stages: Vec<Vec<LweCiphertextOwned<u64>>>,
    /// Output-layer accumulators, to be decrypted by the client.
    pub output: Vec<LweCiphertextOwned<u64>>,
    /// Most ciphertexts this sample held at once: its inputs, the stages still to be read and
    /// the stage being produced (each `(n + 1) · 8` bytes, see [`Server::ciphertext_bytes`]).
    pub peak_ciphertexts: usize,
}

/// A server for one circuit: evaluation keys plus one LUT per stage neuron, built once.
pub struct Server {
    circuit: Arc<Circuit>,
    key: Arc<EvalKey>,
    /// `luts[s][j]`: the trivially encrypted GLWE LUT of neuron `j` of stage `s`.
    luts: Vec<Vec<GlweCiphertextOwned<u64>>>,
    backend: Backend,
}

impl Server {
    /// Prepare `circuit` for evaluation with `key` (shared, so one server can be used from many
    /// threads and outlive its caller's borrows): one LUT polynomial per stage neuron, whose
    /// coefficient `u` is `level(u) · Δ` (the table read at slot `u`, written at the stage's
    /// own output scale; negative codes wrap modulo `2^64`).
    ///
    /// # Errors
    /// [`RuntimeError::ParamsMismatch`] if the circuit's polynomial size differs from the keys'.
    /// [`RuntimeError::Input`] if the circuit has PBS and the key holds no BSK and KSK (keys
    /// made by [`crate::ClientKey::generate_for`] for a circuit without PBS).
    pub fn new(circuit: Arc<Circuit>, key: Arc<EvalKey>) -> Result<Self, RuntimeError> {
        Self::with_backend(circuit, key, Backend::default())
    }

    /// As [`Server::new`], running the KS + PBS on `backend`.
    ///
    /// # Errors
    /// As [`Server::new`].
    pub fn with_backend(
        circuit: Arc<Circuit>,
        key: Arc<EvalKey>,
        backend: Backend,
    ) -> Result<Self, RuntimeError> {
        check_params(&circuit, &key.params)?;
        if circuit.pbs_count() > 0 && !key.has_pbs_keys() {
            return Err(RuntimeError::Input(format!(
                "the evaluation key holds no bootstrapping or keyswitching key, but the circuit has {} PBS per sample; generate the keys for this circuit",
                circuit.pbs_count()
            )));
        }
        let p = &key.params.set;
        let n = p.polynomial_size.0;
        let luts = circuit
            .stages
            .iter()
            .map(|stage| {
                stage
                    .neurons
                    .iter()
                    .map(|neuron| {
                        let body: Vec<u64> = (0..n as i64)
                            .map(|u| (neuron.level_at(u) as i64 as u64).wrapping_mul(stage.delta))
                            .collect();
                        allocate_and_trivially_encrypt_new_glwe_ciphertext(
                            p.glwe_dimension.to_glwe_size(),
                            &PlaintextList::from_container(body),
                            p.ciphertext_modulus,
                        )
                    })
                    .collect()
            })
            .collect();
        Ok(Self {
            circuit,
            key,
            luts,
            backend,
        })
    }

    /// The backend that runs this server's KS + PBS.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The evaluation key's KS + PBS keys (a circuit with stages always has them: see
    /// [`Server::with_backend`]).
    fn pbs_keys(&self) -> &crate::keys::PbsKeys {
        self.key
            .pbs
            .as_ref()
            .expect("Server::new refuses a circuit with PBS and a key without PBS keys")
    }

    /// Evaluate the circuit on the encrypted inputs of one sample, keeping every stage's PBS
    /// outputs (for trace mode and tests); see [`Server::evaluate_batch`].
    ///
    /// # Errors
    /// As [`Server::evaluate_batch`].
    pub fn evaluate(&self, inputs: &[LweCiphertextOwned<u64>]) -> Result<Evaluation, RuntimeError> {
        let mut out = self.evaluate_batch(&[inputs], true)?;
        Ok(out.pop().expect("one sample in, one out"))
    }

    /// Check one sample's ciphertexts: the circuit's input width, each of `k·N + 1` words under
    /// the native modulus.
    fn check_ciphertexts(
        &self,
        s: usize,
        x: &[LweCiphertextOwned<u64>],
    ) -> Result<(), RuntimeError> {
        if x.len() != self.circuit.features() {
            return Err(RuntimeError::Input(format!(
                "sample {s}: {} ciphertexts, the circuit takes {}",
                x.len(),
                self.circuit.features()
            )));
        }
        let size = self.key.params.big_dim() + 1;
        let modulus = self.key.params.set.ciphertext_modulus;
        if let Some((i, ct)) = x
            .iter()
            .enumerate()
            .find(|(_, ct)| ct.lwe_size().0 != size || ct.ciphertext_modulus() != modulus)
        {
            return Err(RuntimeError::Input(format!(
                "sample {s}, ciphertext {i}: {} words (modulus {:?}), the parameters take {size} words under the native modulus",
                ct.lwe_size().0,
                ct.ciphertext_modulus()
            )));
        }
        Ok(())
    }

    /// Evaluate a batch received from a client: decompress the seeded inputs, evaluate
    /// ([`Server::evaluate_batch`]) and modulus-switch the outputs for sending back.
    ///
    /// # Errors
    /// [`RuntimeError::Input`] when the inputs are under another key than this server's
    /// evaluation key; as [`Server::evaluate_batch`].
    pub fn evaluate_message(
        &self,
        inputs: &crate::messages::InputBatch,
    ) -> Result<crate::messages::OutputBatch, RuntimeError> {
        if inputs.key_id() != self.key.key_id {
            return Err(RuntimeError::Input(format!(
                "the inputs are under key {}, but this server holds key {}: register the client's evaluation key",
                crate::wire::hex(&inputs.key_id()),
                crate::wire::hex(&self.key.key_id)
            )));
        }
        let cts = inputs.decompress();
        let refs: Vec<&[_]> = cts.iter().map(Vec::as_slice).collect();
        let outs = self.evaluate_batch(&refs, false)?;
        let outputs: Vec<_> = outs.into_iter().map(|e| e.output).collect();
        Ok(crate::messages::OutputBatch::from_outputs(
            self.key.key_id,
            &outputs,
        ))
    }

    /// Evaluate the circuit on a batch of samples' encrypted inputs (`batch[s]`: the circuit's
    /// `features` ciphertexts of sample `s`). Stage by stage, every (sample, neuron) pair is one
    /// job of the server's [`Backend`] (GEMM row over the stage's sources, keyswitch, centered
    /// modulus switch, blind rotation, sample extraction), all of a stage's jobs handed over at
    /// once, so a batch keeps all threads busy even on narrow stages. Without `keep_stages`, a stage's outputs are freed once its last
    /// reader has run.
    ///
    /// # Errors
    /// [`RuntimeError::Input`] if a sample's number of ciphertexts is not the circuit's input
    /// width, or a ciphertext's size or modulus is not the parameters'.
    pub fn evaluate_batch(
        &self,
        batch: &[&[LweCiphertextOwned<u64>]],
        keep_stages: bool,
    ) -> Result<Vec<Evaluation>, RuntimeError> {
        for (s, x) in batch.iter().enumerate() {
            self.check_ciphertexts(s, x)?;
        }
        let c = &*self.circuit;
        let tpu = c.encoding.torus_per_unit();
        let b = batch.len();
        let last_reader = c.last_readers();
        // outputs[k][s]: stage k's PBS outputs for sample s (empty once freed).
        let mut outputs: Vec<Vec<Vec<LweCiphertextOwned<u64>>>> = Vec::new();
        let mut live = c.features();
        let mut peak = live;
        for (k, stage) in c.stages.iter().enumerate() {
            let d = stage.d_out();
            let gathered: Vec<Vec<&LweCiphertextOwned<u64>>> = (0..b)
                .map(|s| gather(&stage.gemm, batch[s], &outputs, s))
                .collect();
            let units = c.delta_in_units(k);
            let accumulator = |i: usize| {
                let (s, j) = (i / d, i % d);
                let n = &stage.neurons[j];
                // Half a phase unit keeps every phase off the slot boundaries.
                let offset = (n.offset as u64).wrapping_mul(tpu).wrapping_add(tpu / 2);
                gemm_row(
                    stage.gemm.row(j),
                    stage.gemm.row_inputs(j),
                    n.mult / units,
                    &gathered[s],
                    offset,
                )
            };
            let flat = self.backend.run(
                self.pbs_keys(),
                &self.key.params,
                &LayerJobs {
                    count: b * d,
                    accumulator: &accumulator,
                    lut_index: &|i| i % d,
                    luts: &self.luts[k],
                },
            );
            let mut it = flat.into_iter();
            outputs.push((0..b).map(|_| it.by_ref().take(d).collect()).collect());
            live += d;
            peak = peak.max(live);
            if !keep_stages {
                for (done, &r) in last_reader.iter().enumerate() {
                    if r == k && !outputs[done].is_empty() {
                        live -= c.stages[done].d_out();
                        outputs[done] = Vec::new();
                    }
                }
            }
        }
        let o = &c.output;
        peak = peak.max(live + o.d_out());
        let delta = c.output_delta();
        let results: Vec<Vec<_>> = (0..b)
            .map(|s| {
                let x = gather(&o.gemm, batch[s], &outputs, s);
                (0..o.d_out())
                    .into_par_iter()
                    .map(|j| {
                        let offset = (c.output_placement(j) as u64).wrapping_mul(delta);
                        gemm_row(o.gemm.row(j), o.gemm.row_inputs(j), 1, &x, offset)
                    })
                    .collect()
            })
            .collect();
        Ok(results
            .into_iter()
            .enumerate()
            .map(|(s, output)| Evaluation {
                stages: if keep_stages {
                    outputs
                        .iter_mut()
                        .map(|l| std::mem::take(&mut l[s]))
                        .collect()
                } else {
                    Vec::new()
                },
                output,
                peak_ciphertexts: peak,
            })
            .collect())
    }

    /// Bytes of one LWE ciphertext under the big (GLWE-extracted) key: `(k·N + 1) · 8`.
    pub fn ciphertext_bytes(&self) -> usize {
        (self.key.params.big_dim() + 1) * std::mem::size_of::<u64>()
    }

    /// The evaluation key.
    pub fn key(&self) -> &EvalKey {
        &self.key
    }

    /// The circuit.
    pub fn circuit(&self) -> &Circuit {
        &self.circuit
    }

    /// The circuit's stages.
    pub fn stages(&self) -> &[Stage] {
        &self.circuit.stages
    }
}

/// Sample `s`'s ciphertexts that GEMM `g` reads, concatenated in source order (references, not
/// copies): `batch` for the input, `outputs[k][s]` for stage `k`.
fn gather<'a>(
    g: &qfhe_circuit::Gemm,
    input: &'a [LweCiphertextOwned<u64>],
    outputs: &'a [Vec<Vec<LweCiphertextOwned<u64>>>],
    s: usize,
) -> Vec<&'a LweCiphertextOwned<u64>> {
    let mut x = Vec::with_capacity(g.d_in);
    for &src in &g.sources {
        match src {
            Source::Input => x.extend(input.iter()),
            Source::Stage(k) => x.extend(outputs[k][s].iter()),
        }
    }
    x
}

/// `c · Σ_t w_t · ct[input(t)] + offset` over ciphertexts, where `input(t)` is `indices[t]`
/// (sparse rows: convolutions by index) or `t` (dense). Inputs sharing a weight value are summed
/// first (additions vectorise; multiplications by a 64-bit scalar do not), then each partial
/// sum is multiplied once: `2^w_bits - 2` multiplications per row instead of one per weight.
///
/// # Panics
/// If `inputs` is empty or an index is out of range (the server passes validated circuits).
pub fn gemm_row(
    weights: &[i32],
    indices: Option<&[u32]>,
    c: i64,
    inputs: &[&LweCiphertextOwned<u64>],
    offset: u64,
) -> LweCiphertextOwned<u64> {
    let size = inputs[0].lwe_size();
    let cm = inputs[0].ciphertext_modulus();
    let qmax = weights.iter().map(|w| w.abs()).max().unwrap_or(0);
    let mut acc = vec![0u64; size.0];
    let mut partial = vec![0u64; size.0];
    for w in (-qmax..=qmax).filter(|&w| w != 0) {
        partial.iter_mut().for_each(|v| *v = 0);
        let mut any = false;
        for t in (0..weights.len()).filter(|&t| weights[t] == w) {
            let ct = inputs[indices.map_or(t, |ix| ix[t] as usize)];
            for (p, &v) in partial.iter_mut().zip(ct.as_ref()) {
                *p = p.wrapping_add(v);
            }
            any = true;
        }
        if any {
            let m = (w as i64 * c) as u64;
            for (a, &p) in acc.iter_mut().zip(&partial) {
                *a = a.wrapping_add(p.wrapping_mul(m));
            }
        }
    }
    let last = acc.len() - 1;
    acc[last] = acc[last].wrapping_add(offset);
    LweCiphertext::from_container(acc, cm)
}

impl Server {
    /// Measured PBS throughput of the server's backend on the rayon pool, in seconds per KS+PBS (0 for a circuit
    /// without stages): `count` bootstraps of
    /// random-looking ciphertexts (random masks and bodies; all-zero inputs would skip work and
    /// time 100× too fast) through the first stage's LUTs in turn, so that, as in a real layer,
    /// each PBS reads a different table rather than one that stays in cache.
    pub fn seconds_per_pbs(&self, count: usize) -> f64 {
        let Some(luts) = self.luts.first().filter(|_| self.key.has_pbs_keys()) else {
            return 0.0;
        };
        let inputs = random_ciphertexts(count, self.key.params.big_dim());
        let start = std::time::Instant::now();
        let _out = self.backend.run(
            self.pbs_keys(),
            &self.key.params,
            &LayerJobs {
                count,
                accumulator: &|i| inputs[i].clone(),
                lut_index: &|i| i % luts.len(),
                luts,
            },
        );
        start.elapsed().as_secs_f64() / count as f64
    }
}

impl Server {
    /// One KS + PBS of `ct` (a ciphertext under the big key) through stage 0, neuron 0's
    /// LUT, with freshly allocated scratch space: the unit the benchmarks time.
    ///
    /// # Panics
    /// If the circuit has no stage.
    pub fn bootstrap_one(&self, ct: &LweCiphertextOwned<u64>) -> LweCiphertextOwned<u64> {
        let params = &self.key.params;
        let mut s = cpu_batch::Scratch::new(params, 1);
        cpu_batch::bootstrap_one(self.pbs_keys(), params, ct, &self.luts[0][0], &mut s)
    }
}

/// Pseudo-random 64-bit words (splitmix64): ciphertext-like data for timing.
pub fn random_words(n: usize, seed: u64) -> Vec<u64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
        .collect()
}

/// `count` random-looking LWE ciphertexts of dimension `dim`, for timing KS and PBS (all-zero
/// inputs would skip work and time 100× too fast).
pub fn random_ciphertexts(count: usize, dim: usize) -> Vec<LweCiphertextOwned<u64>> {
    (0..count)
        .map(|i| {
            LweCiphertext::from_container(
                random_words(dim + 1, i as u64 + 1),
                CiphertextModulus::new_native(),
            )
        })
        .collect()
}
