//! What the training loop needs from a quantized model.

use burn::module::Module;
use burn::prelude::*;
use qfhe_quant::EncodingError;

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
    fn forward_qat(&self, x_codes: Tensor<2>) -> Result<Tensor<2>, EncodingError>;
    /// LSQ initial steps: weights from their values, activations from the (detached)
    /// pre-activations [`QatModel::forward_float`] returned.
    fn init_quantizers(&mut self, pre: Vec<Tensor<2>>);
}
