//! The imported model evaluated in floating point as the framework that trained it evaluates
//! it: every quantizer rounds to its grid and dequantizes (fake quantization), every layer
//! computes on the dequantized values — in `f64`, so a value its framework computes exactly
//! (an integer sum of codes requantized by a power of two, which lands on ties) is rounded as
//! it rounds it. This is the model's own prediction — the "fp32" column of a report — against
//! which the integer circuit is compared; it differs from the circuit only where the circuit
//! rounds a wide accumulator to its PBS slot.

use qfhe_core::scheme::round_ties_even;
use qfhe_core::{LayerParams, LayerSpec, ModelParams, ModelSpec, Shape};

/// The logits of one sample `x` (`spec.input` values, row-major, as the file's input) under
/// `spec` and `params`, which must be valid together ([`ModelParams::validate`]).
pub fn logits(spec: &ModelSpec, params: &ModelParams, x: &[f32]) -> Vec<f32> {
    let shapes = spec.validate().expect("a validated description");
    let mut shape = match spec.input[..] {
        [n] => Shape::Flat(n),
        [c, h, w] => Shape::Image([c, h, w]),
        _ => unreachable!("validated"),
    };
    let mut h: Vec<f64> = match params.input {
        // The client's code, as `FeatureQuantizer::code` computes it.
        Some(q) => x
            .iter()
            .map(|&v| {
                let code = round_ties_even((v - q.low) / q.step).clamp(0.0, q.qmax as f32);
                q.low as f64 + code as f64 * q.step as f64
            })
            .collect(),
        None => x.iter().map(|&v| v as f64).collect(),
    };
    let mut outputs: Vec<Vec<f64>> = Vec::with_capacity(spec.layers.len());
    for (i, (layer, p)) in spec.layers.iter().zip(&params.layers).enumerate() {
        h = match (layer, p) {
            (LayerSpec::Linear { out }, LayerParams::Weighted(w)) => dense(&h, w, *out),
            (
                LayerSpec::Conv2d {
                    out_channels,
                    kernel,
                    stride,
                    padding,
                },
                LayerParams::Weighted(w),
            ) => {
                let Shape::Image([c, ih, iw]) = shape else {
                    unreachable!("validated: a convolution reads images")
                };
                let geometry = Conv {
                    c_in: c,
                    h: ih,
                    w: iw,
                    c_out: *out_channels,
                    k: *kernel,
                    stride: *stride,
                    pad: *padding,
                };
                geometry.apply(&h, &w.weight, &w.bias)
            }
            (l, LayerParams::Activation(q)) => {
                let f = l.activation().expect("an activation layer");
                h.iter()
                    .map(|&z| match q {
                        Some(q) => {
                            let code = f.code_f64(z, q.step as f64, q.range);
                            code as f64 * q.step as f64
                        }
                        None => f.apply_f64(z),
                    })
                    .collect()
            }
            (LayerSpec::AvgPool { k }, _) => {
                pool(&h, shape, *k, |w| w.iter().sum::<f64>() / w.len() as f64)
            }
            (LayerSpec::MaxPool { k }, _) => {
                pool(&h, shape, *k, |w| w.iter().fold(f64::MIN, |a, &b| a.max(b)))
            }
            (LayerSpec::Add { from }, _) => {
                h.iter().zip(&outputs[*from]).map(|(a, b)| a + b).collect()
            }
            _ => h, // flatten
        };
        shape = shapes[i];
        outputs.push(h.clone());
    }
    h.iter().map(|&v| v as f32).collect()
}

fn dense(x: &[f64], w: &qfhe_core::WeightedParams, out: usize) -> Vec<f64> {
    let fan_in = x.len();
    (0..out)
        .map(|j| {
            let row = &w.weight[j * fan_in..(j + 1) * fan_in];
            let dot: f64 = row.iter().zip(x).map(|(&a, b)| a as f64 * b).sum();
            dot + w.bias[j] as f64
        })
        .collect()
}

struct Conv {
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Conv {
    fn apply(&self, x: &[f64], weight: &[f32], bias: &[f32]) -> Vec<f64> {
        let oh = (self.h + 2 * self.pad - self.k) / self.stride + 1;
        let ow = (self.w + 2 * self.pad - self.k) / self.stride + 1;
        let mut y = vec![0f64; self.c_out * oh * ow];
        for o in 0..self.c_out {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0f64;
                    for c in 0..self.c_in {
                        for ky in 0..self.k {
                            let iy = (oy * self.stride + ky) as isize - self.pad as isize;
                            if iy < 0 || iy >= self.h as isize {
                                continue;
                            }
                            for kx in 0..self.k {
                                let ix = (ox * self.stride + kx) as isize - self.pad as isize;
                                if ix < 0 || ix >= self.w as isize {
                                    continue;
                                }
                                let xi = (c * self.h + iy as usize) * self.w + ix as usize;
                                let wi = ((o * self.c_in + c) * self.k + ky) * self.k + kx;
                                acc += x[xi] * weight[wi] as f64;
                            }
                        }
                    }
                    y[(o * oh + oy) * ow + ox] = acc + bias[o] as f64;
                }
            }
        }
        y
    }
}

fn pool(x: &[f64], shape: Shape, k: usize, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let Shape::Image([c, h, w]) = shape else {
        unreachable!("validated: pooling reads images")
    };
    let (oh, ow) = (h / k, w / k);
    let mut y = Vec::with_capacity(c * oh * ow);
    let mut window = Vec::with_capacity(k * k);
    for ch in 0..c {
        for oy in 0..oh {
            for ox in 0..ow {
                window.clear();
                for dy in 0..k {
                    for dx in 0..k {
                        window.push(x[(ch * h + oy * k + dy) * w + ox * k + dx]);
                    }
                }
                y.push(f(&window));
            }
        }
    }
    y
}
