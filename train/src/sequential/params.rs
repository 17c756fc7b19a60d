//! A quantized model built from given parameters ([`ModelParams`], e.g. read from an ONNX
//! file) instead of trained: the weights, steps and code ranges are set, and the plan keeps the
//! given weight codes as they are.

use super::{roles, step_owners, QSequential, Role};
use burn::module::Param;
use burn::prelude::*;
use qfhe_core::{EncodingConfig, LayerParams, LayerSpec, ModelError, ModelParams, ModelSpec};
use qfhe_quant::ste::LearnedStep;

impl QSequential {
    /// The model of `spec` with `params`: weights and biases as given, weight steps and
    /// activation steps and code ranges where given (a layer with a given weight step keeps its
    /// codes exactly; a model with any given weight step keeps all, see
    /// [`QSequential::fixed_codes`]), and the input quantizer. The input quantizer's offset
    /// (the value of code 0) is folded into the bias of the weighted layer that reads the
    /// input, since the quantized forward reads input codes as `code · step`.
    ///
    /// # Errors
    /// As [`ModelParams::validate`]; [`ModelError::Layer`] when the input has a non-zero offset
    /// and is read by anything but a weighted layer or by a padded convolution (its padding
    /// would stand for the offset instead of 0), or when two activations whose codes a residual
    /// `add` sums have different steps.
    pub fn from_params(
        spec: ModelSpec,
        params: &ModelParams,
        encoding: EncodingConfig,
        device: &Device,
    ) -> Result<Self, ModelError> {
        params.validate(&spec)?;
        let mut model = Self::build(spec, encoding, true, device)?;
        let roles = roles(&model.spec);
        let first_reader = first_weighted_reader(&model.spec);
        let mut fixed = false;
        for (i, p) in params.layers.iter().enumerate() {
            match (roles[i], p) {
                (Role::Linear(l), LayerParams::Weighted(w)) => {
                    let lin = &mut model.linears[l];
                    let [d_in, d_out] = lin.weight.val().dims();
                    let mut bias = w.bias.clone();
                    if first_reader == Some(i) {
                        fold_input_offset(&mut bias, &w.weight, d_in, params);
                    }
                    // PyTorch's [out, in] to Burn's [in, out].
                    let t = Tensor::<2>::from_data(
                        TensorData::new(w.weight.clone(), [d_out, d_in]),
                        device,
                    );
                    lin.weight = Param::from_tensor(t.transpose());
                    lin.bias = Param::from_tensor(Tensor::from_floats(bias.as_slice(), device));
                    lin.w_bits = w.bits;
                    if let Some(step) = &w.step {
                        lin.w_scale =
                            LearnedStep::calibrated(Tensor::from_floats(step.as_slice(), device));
                        fixed = true;
                    }
                }
                (Role::Conv(c), LayerParams::Weighted(w)) => {
                    let conv = &mut model.convs[c];
                    let dims = conv.weight.val().dims();
                    let mut bias = w.bias.clone();
                    if first_reader == Some(i) {
                        if conv.padding > 0 && params.input.is_some_and(|q| q.low != 0.0) {
                            return Err(ModelError::Layer {
                                index: i,
                                kind: "conv2d",
                                message: "a padded convolution reads an input quantizer whose \
                                          code 0 is not the value 0: its padding would stand for \
                                          a non-zero value; use an unsigned input quantizer with \
                                          zero point 0, or no padding"
                                    .into(),
                            });
                        }
                        fold_input_offset(
                            &mut bias,
                            &w.weight,
                            dims[1] * dims[2] * dims[3],
                            params,
                        );
                    }
                    conv.weight = Param::from_tensor(Tensor::from_data(
                        TensorData::new(w.weight.clone(), dims),
                        device,
                    ));
                    conv.bias = Param::from_tensor(Tensor::from_floats(bias.as_slice(), device));
                    conv.w_bits = w.bits;
                    if let Some(step) = &w.step {
                        conv.w_scale =
                            LearnedStep::calibrated(Tensor::from_floats(step.as_slice(), device));
                        fixed = true;
                    }
                }
                (Role::Act(a), LayerParams::Activation(Some(q))) => {
                    let act = &mut model.acts[a];
                    act.scale = LearnedStep::calibrated(Tensor::from_floats([q.step], device));
                    act.bits = q.bits;
                    (act.lo, act.hi) = q.range;
                }
                _ => {}
            }
        }
        if params.input.is_some_and(|q| q.low != 0.0) && first_reader.is_none() {
            return Err(ModelError::Layer {
                index: 0,
                kind: model.spec.layers[0].kind(),
                message: "the input quantizer's code 0 is not the value 0, so the first layer \
                          reading the input must be linear or conv2d (its bias absorbs the offset)"
                    .into(),
            });
        }
        let owners = step_owners(&model.spec);
        for (a, &o) in owners.iter().enumerate() {
            let (sa, so) = (model.acts[a].step_value(), model.acts[o].step_value());
            if a != o && sa != so {
                let index = act_layer(&roles, a);
                return Err(ModelError::Layer {
                    index,
                    kind: model.spec.layers[index].kind(),
                    message: format!(
                        "its codes are added to another activation's, whose step differs ({sa} \
                         against {so}); the two addends of a residual add need one quantizer \
                         (share one quantization layer between both branches)"
                    ),
                });
            }
        }
        model.input = params.input;
        model.fixed_codes = fixed;
        Ok(model)
    }
}

/// The spec index of activation `a`.
fn act_layer(roles: &[Role], a: usize) -> usize {
    roles
        .iter()
        .position(|r| *r == Role::Act(a))
        .expect("every activation has a layer")
}

/// The weighted layer that reads the input, through flattens only.
fn first_weighted_reader(spec: &ModelSpec) -> Option<usize> {
    spec.layers
        .iter()
        .position(|l| !matches!(l, LayerSpec::Flatten))
        .filter(|&i| spec.layers[i].weighted())
}

/// `bias_j += low · Σ_t w_jt`: the input value `low + c·step` read as `c·step` (sums in `f64`).
fn fold_input_offset(bias: &mut [f32], weight: &[f32], fan_in: usize, params: &ModelParams) {
    let Some(q) = params.input else { return };
    if q.low == 0.0 {
        return;
    }
    for (b, row) in bias.iter_mut().zip(weight.chunks_exact(fan_in)) {
        let sum: f64 = row.iter().map(|&w| w as f64).sum();
        *b = (*b as f64 + q.low as f64 * sum) as f32;
    }
}
