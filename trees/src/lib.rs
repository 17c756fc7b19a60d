//! Tree ensembles on quantized features, and their circuits. No Burn.
//!
//! * [`ensemble`]: trees on feature codes and on real-valued features, ensembles summing leaf
//!   values;
//! * [`error`]: the crate's error type.

pub mod ensemble;
pub mod error;

pub use ensemble::{
    CodeEnsemble, CodeNode, CodeTree, Ensemble, FloatEnsemble, FloatNode, FloatTree,
};
pub use error::TreeError;
