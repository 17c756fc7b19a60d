//! TFHE runtime for qfhe circuits, on tfhe-rs's `core_crypto` level.
//!
//! * [`params`]: tfhe-rs's vetted 128-bit parameter sets and the noise they put at a PBS input,
//!   computed with `tfhe::core_crypto::commons::noise_formulas`;
//! * [`keys`]: [`ClientKey`] (secret, client only) and [`EvalKey`] (bootstrapping and keyswitch
//!   keys, server only) — distinct types, and the server API takes only the latter;
//! * [`client`]: encryption of input codes, decryption of outputs (and of hidden layers in trace
//!   mode);
//! * [`server`]: circuit evaluation: per hidden neuron a GEMM row over ciphertexts, a keyswitch,
//!   the centered modulus switch and a blind rotation through the neuron's LUT, spread over
//!   threads with rayon;
//! * [`backend`]: how a layer's KS + PBS run — on the CPU one at a time or in batches that share
//!   one pass over the keys;
//! * [`wire`], [`messages`]: the versioned, checksummed envelopes that keys and ciphertext
//!   batches travel in (seeded evaluation keys and inputs, modulus-switched outputs), each
//!   validated before anything is allocated;
//! * [`compile`]: the noise check that refuses circuits whose gross-error probability per PBS
//!   exceeds a target.

pub mod backend;
pub mod client;
pub mod compile;
mod cpu_batch;
pub mod error;
pub mod keys;
pub mod messages;
pub mod params;
pub mod server;
pub mod wire;

pub use backend::Backend;
pub use client::Client;
pub use compile::{compile, CompileError, CompileReport};
pub use error::RuntimeError;
pub use keys::{ClientKey, CompressedEvalKey, EvalKey};
pub use messages::{InputBatch, OutputBatch};
pub use params::FheParams;
pub use server::Server;
