//! QAT models and training loops on Burn 0.22.
//!
//! * [`sequential`]: [`QSequential`], a network of fake-quantized layers built from any model
//!   description, whose quantized forward computes exactly the integers of its circuit (slot
//!   rounding included);
//! * [`batch`]: turning an [`qfhe_datasets::ImageSet`] into Burn tensors;
//! * [`trainer`]: fp32 pre-training, calibration and QAT fine-tuning;
//! * [`linear`]: linear and logistic regression and the linear SVM on tabular data, in `f32`;
//! * [`progress`]: the events training reports while it runs (the library never prints);
//! * [`device`]: choosing the Burn backend at run time (`flex`, `ndarray`, `wgpu`).

pub mod batch;
pub mod device;
pub mod linear;
pub mod progress;
pub mod qat;
pub mod sequential;
pub mod trainer;

pub use device::{select_device, DeviceChoice};
pub use linear::{train_linear, FloatLinear, LinearKind, LinearTarget, LinearTrainConfig, Scaling};
pub use progress::{Phase, TrainEvent};
pub use qat::{PhaseNoise, QatModel};
pub use sequential::QSequential;
pub use trainer::{
    evaluate_float, evaluate_qat, train_model, train_model_with, EpochLog, TrainConfig, TrainError,
    TrainReport,
};
