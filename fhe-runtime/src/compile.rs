//! Compilation: the noise check between a circuit and a parameter set.

use crate::params::FheParams;
use qfhe_circuit::{analyze, Circuit, LayerReport};
use qfhe_core::NoiseSpec;
use serde::Serialize;

/// Default target for the gross-error probability per PBS, log2.
pub const DEFAULT_TARGET_LOG2: f64 = -40.0;

/// What compilation measured.
#[derive(Debug, Clone, Serialize)]
pub struct CompileReport {
    /// Parameter set name.
    pub params: String,
    /// Noise at a PBS input under these parameters.
    pub noise: NoiseSpec,
    /// Per-layer analysis.
    pub layers: Vec<LayerReport>,
    /// The worst layer's log2 gross-error probability.
    pub log2_p_error: f64,
    /// The target it was checked against.
    pub target_log2: f64,
}

/// A circuit the parameters cannot run reliably.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Different polynomial size.
    #[error(transparent)]
    Params(#[from] crate::server::RuntimeError),
    /// Gross errors too likely.
    #[error("{layer}, neuron {neuron}: gross-error probability per PBS is 2^{log2_p:.1}, above the target 2^{target:.0}. {advice}")]
    NoiseTooHigh {
        /// Layer name.
        layer: String,
        /// Worst neuron.
        neuron: usize,
        /// Its log2 probability.
        log2_p: f64,
        /// The target.
        target: f64,
        /// What to change.
        advice: String,
    },
}

/// Check `circuit` against `params`: same polynomial size, and every layer's gross-error
/// probability per PBS (or per decoded output) at most `2^target_log2`. `samples` (input codes)
/// feed the predicted flip rates.
///
/// # Errors
/// [`CompileError`] naming the layer, its probability and what to change.
pub fn compile(
    circuit: &Circuit,
    params: &FheParams,
    target_log2: f64,
    samples: &[Vec<i32>],
) -> Result<CompileReport, CompileError> {
    crate::server::check_params(circuit, params)?;
    let noise = params.noise_spec();
    let layers = analyze(circuit, &noise, samples);
    for l in &layers {
        if l.log2_p_gross > target_log2 {
            let advice = if l.pbs > 0 {
                format!(
                    "Its narrowest table step is {:.0} slots against a noise std of {:.1} slots: retrain with a larger minimum table step (min_step_slots, now {}), fewer activation bits or a smaller weight bit width; or accept a higher error probability.",
                    l.min_slots_per_step.unwrap_or(0.0),
                    l.max_sigma,
                    circuit.encoding.min_step_slots
                )
            } else {
                "The output accumulators' noise is too large for their range: lower the output weight bit width or the width of the stage the output layer reads.".to_owned()
            };
            return Err(CompileError::NoiseTooHigh {
                layer: l.name.clone(),
                neuron: l.worst_neuron,
                log2_p: l.log2_p_gross,
                target: target_log2,
                advice,
            });
        }
    }
    let log2_p_error = layers
        .iter()
        .map(|l| l.log2_p_gross)
        .fold(f64::NEG_INFINITY, f64::max);
    Ok(CompileReport {
        params: params.name.to_owned(),
        noise,
        layers,
        log2_p_error,
        target_log2,
    })
}
