//! Tree ensembles on quantized features, and their circuits. No Burn.
//!
//! * [`ensemble`]: trees on feature codes and on real-valued features, ensembles summing leaf
//!   values;
//! * [`train`]: CART trees, random forests and gradient boosting fitted on codes or values;
//! * [`select`]: `min_samples_leaf` chosen by cross-validation on the training rows;
//! * [`lower`]: an ensemble on codes → a circuit (comparison PBS, path GEMM, leaf PBS, leaf
//!   values decrypted by the client);
//! * [`error`]: the crate's error type.

pub mod ensemble;
pub mod error;
pub mod lower;
pub mod select;
pub mod train;
pub mod xgboost;

pub use ensemble::{
    CodeEnsemble, CodeNode, CodeTree, Ensemble, FloatEnsemble, FloatNode, FloatTree,
};
pub use error::TreeError;
pub use lower::{lower_ensemble, quantize_leaves, TreeQuant};
pub use select::{select_min_samples_leaf, LeafSelection, FOLDS, LEAF_CANDIDATES};
pub use train::{fit, TreeConfig, TreeKind, TreeTarget};
pub use xgboost::{from_xgboost_json, load_xgboost};
