//! A tiny deterministic image set for tests and smoke runs: no files, no network.

use crate::{Dataset, ImageSet};

/// `n` images of 8×8 pixels in 4 classes: class `c` lights quadrant `c` (pixels 150–249) over
/// pseudo-random speckle (0–89 elsewhere). Deterministic in `seed` (an LCG).
pub fn quadrants(n: usize, seed: u64) -> ImageSet {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as u32
    };
    let mut images = Vec::with_capacity(n * 64);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c = (next() % 4) as usize;
        for r in 0..8 {
            for col in 0..8 {
                let quadrant = (r / 4) * 2 + col / 4;
                let base = if quadrant == c {
                    150 + next() % 100
                } else {
                    next() % 90
                };
                images.push(base.min(255) as u8);
            }
        }
        labels.push(c as u8);
    }
    ImageSet {
        images,
        labels,
        rows: 8,
        cols: 8,
    }
}

/// [`quadrants`] as a dataset: 1500 training and 300 test images, 4 classes.
pub fn quadrants_dataset() -> Dataset {
    Dataset {
        name: "synthetic".into(),
        train: quadrants(1500, 1),
        test: quadrants(300, 2),
        num_classes: 4,
    }
}
