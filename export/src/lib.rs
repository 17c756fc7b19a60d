//! From a trained QAT model to a [`qfhe_circuit::Circuit`]: the lowering.
//!
//! * [`from_model`]: a trained [`qfhe_train::QMlp`] or [`qfhe_train::QCnn`] → circuit, with each
//!   neuron's table computed by the model's own activation arithmetic at every slot centre.
//!
//! The circuit format, its simulators and analysis live in the Burn-free `qfhe-circuit`.

pub mod from_model;

pub use from_model::{export_cnn, export_mlp, ExportError};
