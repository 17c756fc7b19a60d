//! PBS backends: how the server runs one layer's "GEMM rows, then a batch of KS + PBS through
//! per-neuron LUTs".
//!
//! The server describes a layer as [`LayerJobs`] — `count` jobs, job `i` reading the GEMM row
//! `accumulator(i)` and the table `luts[lut_index(i)]` — and a backend returns the `count`
//! bootstrapped ciphertexts in job order. Backends differ in how they schedule the jobs, never
//! in what they compute: every backend's outputs decrypt to the same levels as the
//! simulator's, up to the noise model's predicted flips.
//!
//! * [`Backend::Cpu`] with `batch = 1`: one keyswitch and one blind rotation per job, jobs spread
//!   over the rayon pool (the original path);
//! * [`Backend::Cpu`] with `batch > 1`: per rayon task, `batch` jobs at once — one pass over the
//!   keyswitching key and one over the bootstrapping key for the whole batch
//!   ([`crate::cpu_batch`]), since both keys (≈ 60 MB each at N = 2048) stream from memory
//!   and a PBS at this size is bound by that stream.

use crate::cpu_batch;
use crate::error::RuntimeError;
use crate::keys::PbsKeys;
use crate::params::FheParams;
use rayon::prelude::*;
use tfhe::core_crypto::prelude::*;

/// Where and how the server runs its KS + PBS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// tfhe-rs's FFT bootstrap on the CPU over the rayon pool, `batch` jobs per keyswitch and
    /// blind-rotation pass (1: one job at a time). Results are bit-identical for every batch.
    Cpu {
        /// Jobs per pass over the keys, `1..=`[`Backend::MAX_CPU_BATCH`].
        batch: usize,
    },
}

impl Default for Backend {
    fn default() -> Self {
        Backend::Cpu {
            batch: Self::DEFAULT_CPU_BATCH,
        }
    }
}

impl Backend {
    /// Default jobs per pass on the CPU. One MNIST MLP sample (128 PBS, N = 2048, 2 threads)
    /// took 1.30 s one PBS at a time, 0.99 s in batches of 8, 0.97 s in batches of 32 and
    /// 0.95 s in batches of 64 (criterion `mnist_sample`); 32 keeps per-thread scratch near
    /// 2 MB and chunks small enough to balance across threads.
    pub const DEFAULT_CPU_BATCH: usize = 32;
    /// Largest CPU batch: its scratch space is `batch · (k + 1) · N · 8` bytes twice per thread.
    pub const MAX_CPU_BATCH: usize = 256;

    /// The backend named `name` (`cpu` or `gpu`) with `cpu_batch` jobs per pass on the CPU
    /// (default [`Backend::DEFAULT_CPU_BATCH`]).
    ///
    /// # Errors
    /// [`RuntimeError::Input`] for an unknown name, a batch outside `1..=MAX_CPU_BATCH`, or `gpu`
    /// in a build without the CUDA backend (never a silent fallback to the CPU).
    pub fn from_name(name: &str, cpu_batch: Option<usize>) -> Result<Self, RuntimeError> {
        match name {
            "cpu" => {
                let batch = cpu_batch.unwrap_or(Self::DEFAULT_CPU_BATCH);
                if !(1..=Self::MAX_CPU_BATCH).contains(&batch) {
                    return Err(RuntimeError::Input(format!(
                        "a CPU PBS batch of {batch}: choose 1 (one PBS at a time) to {}",
                        Self::MAX_CPU_BATCH
                    )));
                }
                Ok(Backend::Cpu { batch })
            }
            "gpu" => Err(RuntimeError::Input(
                "the gpu backend is not in this build: it needs tfhe-rs's CUDA backend, which this \
                 release does not compile in; use --backend cpu"
                    .into(),
            )),
            other => Err(RuntimeError::Input(format!(
                "unknown PBS backend `{other}`: choose cpu or gpu"
            ))),
        }
    }

    /// A short description for reports, e.g. `cpu (batches of 32)`.
    pub fn describe(&self) -> String {
        match self {
            Backend::Cpu { batch: 1 } => "cpu (one PBS at a time)".into(),
            Backend::Cpu { batch } => format!("cpu (batches of {batch})"),
        }
    }

    /// Run `layer`'s jobs: outputs in job order, each a ciphertext under the big key.
    pub(crate) fn run(
        &self,
        keys: &PbsKeys,
        params: &FheParams,
        layer: &LayerJobs<'_>,
    ) -> Vec<LweCiphertextOwned<u64>> {
        match *self {
            Backend::Cpu { batch } => run_cpu(keys, params, layer, batch),
        }
    }
}

/// One layer's KS + PBS jobs.
pub(crate) struct LayerJobs<'a> {
    /// Number of jobs (samples × neurons).
    pub count: usize,
    /// Job `i`'s input: its GEMM row over the layer's sources, computed when the job runs so
    /// that only a batch of accumulators per thread is alive at once.
    pub accumulator: &'a (dyn Fn(usize) -> LweCiphertextOwned<u64> + Sync),
    /// Index into `luts` of job `i`'s table.
    pub lut_index: &'a (dyn Fn(usize) -> usize + Sync),
    /// The layer's trivially encrypted GLWE tables.
    pub luts: &'a [GlweCiphertextOwned<u64>],
}

/// Jobs in chunks of at most `batch`, chunks over the rayon pool; a chunk is never larger than
/// an even share of the jobs, so a narrow layer still keeps every thread busy.
fn run_cpu(
    keys: &PbsKeys,
    params: &FheParams,
    layer: &LayerJobs<'_>,
    batch: usize,
) -> Vec<LweCiphertextOwned<u64>> {
    if layer.count == 0 {
        return Vec::new();
    }
    let share = layer.count.div_ceil(rayon::current_num_threads().max(1));
    let chunk = batch.clamp(1, share.max(1));
    let chunks = layer.count.div_ceil(chunk);
    let per_chunk: Vec<Vec<_>> = (0..chunks)
        .into_par_iter()
        .map_init(
            || cpu_batch::Scratch::new(params, chunk),
            |scratch, c| {
                let jobs = c * chunk..((c + 1) * chunk).min(layer.count);
                let inputs: Vec<_> = jobs.clone().map(layer.accumulator).collect();
                let luts: Vec<_> = jobs.map(|i| &layer.luts[(layer.lut_index)(i)]).collect();
                if chunk == 1 {
                    vec![cpu_batch::bootstrap_one(
                        keys, params, &inputs[0], luts[0], scratch,
                    )]
                } else {
                    cpu_batch::bootstrap_batch(keys, params, &inputs, &luts, scratch)
                }
            },
        )
        .collect();
    per_chunk.into_iter().flatten().collect()
}
