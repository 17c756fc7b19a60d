//! Batches of images as Burn tensors.

use burn::prelude::*;
use qfhe_datasets::ImageSet;
use qfhe_quant::scheme::input_code;
use rand::{Rng, SeedableRng};
use std::borrow::Cow;

/// Random translations of training images (see `TrainConfig::augment_shift`).
pub struct Augment {
    shift: i32,
    rng: rand::rngs::StdRng,
}

impl Augment {
    /// Translations of up to `shift` pixels each way, drawn from a stream seeded by `seed`.
    pub fn new(shift: usize, seed: u64) -> Self {
        Self {
            shift: i32::try_from(shift).unwrap_or(i32::MAX),
            // A fixed offset keeps this stream apart from the shuffling one seeded by `seed`.
            rng: rand::rngs::StdRng::seed_from_u64(seed ^ 0x6175_676d_656e_7421),
        }
    }

    /// No augmentation (evaluation).
    pub fn none() -> Self {
        Self::new(0, 0)
    }

    fn image<'a>(&mut self, set: &'a ImageSet, i: usize) -> Cow<'a, [u8]> {
        if self.shift == 0 {
            return Cow::Borrowed(set.image(i));
        }
        let dx = self.rng.random_range(-self.shift..=self.shift);
        let dy = self.rng.random_range(-self.shift..=self.shift);
        Cow::Owned(set.translated(i, dx as isize, dy as isize))
    }
}

/// Pixels of the images at `idx` as floats in `[0, 1]`, `[batch, pixels]`, each through
/// `augment`.
pub fn float_inputs(
    set: &ImageSet,
    idx: &[usize],
    augment: &mut Augment,
    device: &Device,
) -> Tensor<2> {
    let p = set.pixels();
    let mut v = Vec::with_capacity(idx.len() * p);
    for &i in idx {
        v.extend(augment.image(set, i).iter().map(|&x| x as f32 / 255.0));
    }
    Tensor::from_data(TensorData::new(v, [idx.len(), p]), device)
}

/// Input codes of the images at `idx` ([`input_code`]), `[batch, pixels]`, each through
/// `augment`.
pub fn code_inputs(
    set: &ImageSet,
    idx: &[usize],
    bits: u32,
    augment: &mut Augment,
    device: &Device,
) -> Tensor<2> {
    let p = set.pixels();
    let mut v = Vec::with_capacity(idx.len() * p);
    for &i in idx {
        v.extend(
            augment
                .image(set, i)
                .iter()
                .map(|&x| input_code(x, bits) as f32),
        );
    }
    Tensor::from_data(TensorData::new(v, [idx.len(), p]), device)
}

/// The images at `idx` through one draw of `augment` as input codes on `device`
/// ([`code_inputs`]) and, when `pixels_on` names a device, also as pixels in `[0, 1]` there
/// ([`float_inputs`]), `[batch, pixels]` each: what a quantized student and its teacher read
/// of the same batch.
pub fn batch_inputs(
    set: &ImageSet,
    idx: &[usize],
    bits: u32,
    augment: &mut Augment,
    device: &Device,
    pixels_on: Option<&Device>,
) -> (Tensor<2>, Option<Tensor<2>>) {
    let p = set.pixels();
    let mut codes = Vec::with_capacity(idx.len() * p);
    let mut pixels = Vec::with_capacity(if pixels_on.is_some() {
        idx.len() * p
    } else {
        0
    });
    for &i in idx {
        let image = augment.image(set, i);
        codes.extend(image.iter().map(|&x| input_code(x, bits) as f32));
        if pixels_on.is_some() {
            pixels.extend(image.iter().map(|&x| x as f32 / 255.0));
        }
    }
    (
        Tensor::from_data(TensorData::new(codes, [idx.len(), p]), device),
        pixels_on.map(|d| Tensor::from_data(TensorData::new(pixels, [idx.len(), p]), d)),
    )
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
