//! qfhe: train a low-bit network, compile it to a TFHE circuit, and predict on encrypted data.
//!
//! The flow is **fit → compile → predict**:
//! 1. [`fit`] trains a [`ModelSpec`] (a preset or your own list of layers) on a [`Dataset`]:
//!    fp32 first, then quantization-aware training through the exact integer semantics of the
//!    circuit, for the encoding of a vetted 128-bit-secure TFHE parameter set ([`FitConfig`]
//!    has defaults; nothing about the encoding is filled in by hand);
//! 2. [`Model::compile`] lowers it to a [`Circuit`] and checks every layer's gross-error
//!    probability per programmable bootstrap against the target (2^-40 by default);
//! 3. [`Compiled::predict`] runs images in a [`Mode`]: `Exact` (the quantized model in the
//!    clear), `Simulate` (the FHE noise model, seeded) or `Fhe` (real tfhe-rs encryption,
//!    evaluation and decryption); [`Compiled::evaluate`] gives the accuracy table.
//!
//! Models and circuits are saved and loaded with [`Model::save`] / [`Model::load`] and
//! [`Compiled::save`] / [`Compiled::load`]. The library never prints: training progress goes to
//! the callback of [`fit_with`].
//!
//! ```
//! use qfhe::{fit, FitConfig, LayerSpec::*, Mode, ModelSpec, QuantSpec};
//!
//! # fn main() -> Result<(), qfhe::Error> {
//! // 8×8 images in 4 classes, generated (no download).
//! let data = qfhe::datasets::synthetic::quadrants_dataset();
//! let spec = ModelSpec {
//!     input: vec![1, 8, 8],
//!     classes: 4,
//!     quant: QuantSpec::default(),
//!     layers: vec![Flatten, Linear { out: 6 }, Gelu, Linear { out: 4 }],
//! };
//! let mut cfg = FitConfig::default();
//! cfg.train.fp32_epochs = 3;
//! cfg.train.qat_epochs = 2;
//! let model = fit(&spec, &data, &cfg)?;
//! let compiled = model.compile(&data.train)?;
//! let exact = compiled.predict(&data.test, &[0, 1], Mode::Exact)?;
//! let fhe = compiled.predict(&data.test, &[0, 1], Mode::Fhe)?;
//! // Under FHE the circuit computes what it computes in the clear (up to the rare off-by-one
//! // table reads the noise model predicts).
//! assert_eq!(exact.len(), fhe.len());
//! assert!(fhe.iter().all(|p| p.logits.len() == 4 && p.class < 4));
//! # Ok(())
//! # }
//! ```

mod compiled;
mod error;
mod fit;
pub mod linear;
pub mod network_table;
mod onnx;
pub mod tabular;
pub mod trees;

pub use compiled::{
    agreement, Compiled, Evaluation, Mode, Prediction, DEFAULT_P_ERROR_LOG2, REGRESSION_AGREEMENT,
};
pub use error::{Error, Result};
pub use fit::{fit, fit_with, FitConfig, Model, ModelInfo};
pub use linear::{fit_linear, LinearConfig, LinearModel};
pub use network_table::{attach_feature_quantizer, table_images};
pub use qfhe_circuit::{Circuit, Metric, Readout};
pub use qfhe_core::{Activation, LayerSpec, ModelSpec, QuantSpec};
pub use qfhe_datasets::{Dataset, ImageSet, Table};
pub use qfhe_export::LinearQuant;
pub use qfhe_fhe_runtime::Backend;
pub use qfhe_train::{DeviceChoice, TrainConfig, TrainEvent, TrainReport};
pub use qfhe_train::{LinearKind, LinearTrainConfig};
pub use qfhe_trees::{
    from_xgboost_json, load_xgboost, FloatEnsemble, LeafSelection, TreeConfig, TreeKind, TreeQuant,
    FOLDS, LEAF_CANDIDATES,
};
pub use trees::{fit_trees, import_trees, FitOn, TreeModel, TreesConfig};

/// Datasets: MNIST (fetched and checksummed), IDX folders, a synthetic set.
pub use qfhe_datasets as datasets;
