//! Neural networks on tables: the trainer reads images of 8-bit pixels, so a table's features
//! become one-row "images" of their min–max codes, and the trained circuit's input gets the
//! feature quantizer that maps raw values straight to its input codes.
//!
//! Feature `i` with training range `[low_i, high_i]` becomes the pixel
//! `p = round(255 · (x − low_i) / (high_i − low_i))`; the circuit reads the code
//! `round(p · q_max / 255)` of that pixel. With the quantizer `step_i = (high_i − low_i) / q_max`
//! the client computes the same code from `x` in one rounding, so what it encrypts is what the
//! network was trained on, up to the double rounding at a code boundary.

use crate::{Error, Result};
use qfhe_circuit::{Circuit, FeatureQuantizer};
use qfhe_datasets::{Dataset, ImageSet, Table, Target};

/// Pixel depth of the images a table becomes (bits).
const PIXEL_BITS: u32 = 8;

/// `train` and `test` as a [`Dataset`] of `[1, features]` images for [`crate::fit`], with the
/// 8-bit quantizer of their pixels, calibrated on `train`.
///
/// Errors: [`Error::Mismatch`] when the tables' widths differ, a regression table
/// ([`Error::Config`]: networks on tables classify), more than 256 classes, or a feature set
/// the quantizer cannot calibrate ([`Error::Circuit`]).
pub fn table_images(
    train: &Table,
    test: &Table,
    name: &str,
) -> Result<(Dataset, FeatureQuantizer)> {
    if train.width() != test.width() {
        return Err(Error::Mismatch {
            what: "features per row of the test table",
            expected: train.width(),
            found: test.width(),
        });
    }
    let classes = match &train.target {
        Target::Classes { names, .. } => names.len(),
        Target::Values(_) => {
            return Err(Error::Config {
                field: "model",
                value: "a neural network on a regression table".into(),
                bound: "networks on tables are classifiers; use linreg, tree, forest or boosting for a regression".into(),
            })
        }
    };
    if classes > 256 {
        return Err(Error::Config {
            field: "classes",
            value: classes.to_string(),
            bound: "at most 256 for a neural network".into(),
        });
    }
    let rows = crate::tabular::float_rows(train);
    let quantizer = FeatureQuantizer::calibrate(&rows, train.width(), PIXEL_BITS)?;
    let images = |t: &Table| -> ImageSet {
        let qmax = (1 << PIXEL_BITS) - 1;
        let pixels = quantizer
            .codes(&crate::tabular::float_rows(t), qmax)
            .into_iter()
            .map(|p| p as u8)
            .collect();
        ImageSet {
            images: pixels,
            labels: crate::tabular::labels(t).iter().map(|&l| l as u8).collect(),
            rows: 1,
            cols: t.width(),
        }
    };
    let data = Dataset {
        name: name.to_owned(),
        train: images(train),
        test: images(test),
        num_classes: classes,
    };
    Ok((data, quantizer))
}

/// Give `circuit` (trained on [`table_images`]' pixels) the feature quantizer of its input
/// codes, so [`Circuit::encode_features`] takes the table's raw values.
///
/// Errors: [`Error::Mismatch`] when the circuit does not read one code per feature.
pub fn attach_feature_quantizer(circuit: &mut Circuit, pixels: &FeatureQuantizer) -> Result<()> {
    if circuit.features() != pixels.low.len() {
        return Err(Error::Mismatch {
            what: "features per row",
            expected: circuit.features(),
            found: pixels.low.len(),
        });
    }
    let pixel_max = ((1u32 << PIXEL_BITS) - 1) as f32;
    let code_max = ((1u64 << circuit.input.bits) - 1) as f32;
    circuit.input.quantizer = Some(FeatureQuantizer {
        low: pixels.low.clone(),
        step: pixels
            .step
            .iter()
            .map(|s| s * pixel_max / code_max)
            .collect(),
        edges: None,
    });
    circuit.validate()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[[f64; 4]], labels: &[u32]) -> Table {
        Table {
            feature_names: (0..4).map(|i| format!("f{i}")).collect(),
            target_name: "class".into(),
            features: rows.iter().flatten().copied().collect(),
            target: Target::Classes {
                labels: labels.to_vec(),
                names: vec!["a".into(), "b".into()],
            },
        }
    }

    #[test]
    fn raw_values_reach_the_codes_the_network_was_trained_on() {
        let rows = [
            [0.0, -3.0, 10.0, 1.0],
            [2.0, 3.0, 20.0, 1.5],
            [1.0, 0.5, 12.5, 1.25],
            [0.3, -1.7, 17.2, 1.1],
        ];
        let t = table(&rows, &[0, 1, 0, 1]);
        let (data, pixels) = table_images(&t, &t, "toy").unwrap();
        assert_eq!((data.train.rows, data.train.cols), (1, 4));
        assert_eq!(data.train.labels, vec![0, 1, 0, 1]);
        assert_eq!(data.num_classes, 2);
        // Column extremes are pixels 0 and 255.
        assert_eq!(&data.train.images[..4], &[0, 0, 0, 0]);
        assert_eq!(&data.train.images[4..8], &[255, 255, 255, 255]);

        let mut circuit = qfhe_circuit::fixtures::chain();
        attach_feature_quantizer(&mut circuit, &pixels).unwrap();
        let bits = circuit.input.bits;
        for (row, image) in rows.iter().zip(data.train.images.chunks_exact(4)) {
            let raw: Vec<f32> = row.iter().map(|&x| x as f32).collect();
            let codes = circuit.encode_features(&raw).unwrap();
            for (&code, &pixel) in codes.iter().zip(image) {
                let trained = qfhe_core::scheme::input_code(pixel, bits);
                assert!((code - trained).abs() <= 1, "{code} vs {trained}");
            }
        }
    }

    #[test]
    fn regression_tables_and_width_mismatches_are_refused() {
        let mut t = table(&[[0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]], &[0, 1]);
        let mut narrow = t.clone();
        narrow.feature_names.pop();
        narrow.features = vec![0.0, 1.0, 2.0, 1.0, 2.0, 3.0];
        assert!(matches!(
            table_images(&t, &narrow, "x"),
            Err(Error::Mismatch { .. })
        ));
        t.target = Target::Values(vec![0.5, 1.5]);
        assert!(matches!(
            table_images(&t, &t, "x"),
            Err(Error::Config { .. })
        ));
    }
}
