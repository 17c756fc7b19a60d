//! Batches of images as Burn tensors.

use burn::prelude::*;
use qfhe_datasets::ImageSet;
use qfhe_quant::scheme::input_code;

/// Pixels of the images at `idx` as floats in `[0, 1]`, `[batch, pixels]`.
pub fn float_inputs(set: &ImageSet, idx: &[usize], device: &Device) -> Tensor<2> {
    let p = set.pixels();
    let mut v = Vec::with_capacity(idx.len() * p);
    for &i in idx {
        v.extend(set.image(i).iter().map(|&x| x as f32 / 255.0));
    }
    Tensor::from_data(TensorData::new(v, [idx.len(), p]), device)
}

/// Input codes of the images at `idx` ([`input_code`]), `[batch, pixels]`.
pub fn code_inputs(set: &ImageSet, idx: &[usize], bits: u32, device: &Device) -> Tensor<2> {
    let p = set.pixels();
    let mut v = Vec::with_capacity(idx.len() * p);
    for &i in idx {
        v.extend(set.image(i).iter().map(|&x| input_code(x, bits) as f32));
    }
    Tensor::from_data(TensorData::new(v, [idx.len(), p]), device)
}

/// One-hot labels `[batch, classes]`.
pub fn one_hot(set: &ImageSet, idx: &[usize], classes: usize, device: &Device) -> Tensor<2> {
    let mut v = vec![0f32; idx.len() * classes];
    for (r, &i) in idx.iter().enumerate() {
        v[r * classes + set.labels[i] as usize] = 1.0;
    }
    Tensor::from_data(TensorData::new(v, [idx.len(), classes]), device)
}

/// Index of the largest logit in each row of `[batch, classes]` (first one on ties).
pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks(classes)
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}
