//! What the training loop needs from a quantized model.

use burn::module::Module;
use burn::prelude::*;
use qfhe_quant::EncodingError;

/// Whether a QAT forward reads its tables exactly or through the FHE noise model.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum PhaseNoise {
    /// The exact circuit: what export, the simulator and the reported quantized accuracy use.
    #[default]
    Exact,
    /// Gaussian noise of each neuron's modelled std (slots) added to its phase before the slot
    /// is read ([`qfhe_quant::layers::round_to_noisy_slots`]): noise-aware QAT, so the model
    /// learns to tolerate the off-by-one table reads FHE makes. `scale` multiplies the std
    /// (1: the circuit's own noise; above 1 trains for a margin beyond it).
    Modelled {
        /// Factor on each neuron's modelled std (finite, ≥ 0).
        scale: f32,
    },
}

/// A model with a float forward (fp32 training, calibration) and a quantized forward whose
/// integers are exactly the exported circuit's.
pub trait QatModel: Module + Sized {
    /// Input features (pixels).
    fn inputs(&self) -> usize;
    /// Output classes.
    fn classes(&self) -> usize;
    /// Input code bit width.
    fn in_bits(&self) -> u32;
    /// The device holding the parameters.
    fn device(&self) -> Device;
    /// Float forward on `[batch, inputs]` pixels in `[0, 1]`: logits and the pre-activations
    /// feeding each activation quantizer, as `[batch, neurons]`.
    fn forward_float(&self, x: Tensor<2>) -> (Tensor<2>, Vec<Tensor<2>>);
    /// Quantized forward on input codes `[batch, inputs]`: logits `[batch, classes]`.
    ///
    /// # Errors
    /// [`EncodingError`] when a layer's worst-case range cannot be encoded.
    ///
    /// With [`PhaseNoise::Modelled`] every PBS input carries the noise model's Gaussian noise
    /// (training only: the result is then random, not the circuit's exact output).
    fn forward_qat(
        &self,
        x_codes: Tensor<2>,
        noise: PhaseNoise,
    ) -> Result<Tensor<2>, EncodingError>;
    /// LSQ initial steps: weights from their values, activations from the (detached)
    /// pre-activations [`QatModel::forward_float`] returned.
    fn init_quantizers(&mut self, pre: Vec<Tensor<2>>);
}
