//! Command-line arguments.

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Train quantized networks and run them under fully homomorphic encryption (TFHE).
#[derive(Parser, Debug)]
#[command(name = "qfhe", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train fp32, then QAT, and save the model.
    Train(TrainArgs),
    /// Export a trained model as a circuit file.
    Export(ExportArgs),
    /// Evaluate a circuit: exact and noise-model simulation on the test set, then FHE.
    Eval(EvalArgs),
    /// Train → export → FHE evaluation → accuracy table and report.
    Run(Box<RunArgs>),
    /// The results table: linear models, trees and networks on tables and MNIST, each run
    /// through `run` (fp32, quantized, simulated, FHE), into table.md, table.json and table.svg.
    Table(TableArgs),
    /// Import a quantization-aware model from ONNX (Brevitas QONNX or QCDQ exports), compile it
    /// and evaluate it: the file's model in floating point, the exact circuit, the noise model
    /// and FHE, side by side.
    Import(ImportArgs),
    /// Client: generate a key pair for a circuit (client.key, secret; eval.key, for the server).
    Keygen(KeygenArgs),
    /// Client: encrypt test images into an input file for the server.
    Encrypt(EncryptArgs),
    /// Server: evaluate an input file with an evaluation key into an output file.
    Infer(InferArgs),
    /// Client: decrypt an output file and print each sample's class and logits.
    Decrypt(DecryptArgs),
    /// Server: serve a circuit over HTTP (keys registered by clients, encrypted inputs in,
    /// encrypted outputs out).
    Serve(qfhe_server::cli::ServeArgs),
    /// Client: encrypt images, have a server evaluate them over HTTP, decrypt the answers.
    Predict(PredictArgs),
    /// Client: load-test a server with concurrent clients; latency percentiles, throughput.
    LoadTest(LoadTestArgs),
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The ONNX file (opset 13 to 25): a model whose weights and activations pass through
    /// quantizers — QONNX `Quant` nodes (`brevitas.export.export_qonnx`) or
    /// QuantizeLinear/DequantizeLinear (`export_onnx_qcdq`). Images are fed as pixels / 255,
    /// `[batch, channels, height, width]`.
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// PBS polynomial size of the parameter set (2048 or 8192).
    #[arg(long, default_value_t = 2048)]
    pub poly_size: u32,
    /// The file is a float model (no quantizers): quantize it here, calibrating every step on
    /// the dataset's training images (post-training quantization) for the bit widths below.
    #[arg(long)]
    pub calibrate: bool,
    /// With --calibrate: epochs of quantization-aware training that fine-tune the calibrated
    /// model from the file's weights, for the circuit's encoding and noise (0: calibration
    /// only, which at 3 bits rarely keeps a model's accuracy).
    #[arg(long, default_value_t = 15, requires = "calibrate")]
    pub fine_tune_epochs: usize,
    /// With --calibrate: weight bits of every layer but the last.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=8), requires = "calibrate")]
    pub w_bits: u32,
    /// With --calibrate: weight bits of the last layer.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(2..=8), requires = "calibrate")]
    pub out_w_bits: u32,
    /// With --calibrate: activation bits.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=8), requires = "calibrate")]
    pub a_bits: u32,
    /// With --calibrate: input bits.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=8), requires = "calibrate")]
    pub in_bits: u32,
    /// With --calibrate: random seed of calibration and fine-tuning.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub fhe: FheArgs,
    /// Folder for the circuit, the imported model, report.json and report.md.
    #[arg(long, default_value = "qfhe-out")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Circuit file written by `qfhe export` or `qfhe run`.
    #[arg(long, default_value = "qfhe-out/circuit.json")]
    pub circuit: PathBuf,
    /// Folder for client.key (mode 0600) and eval.key.
    #[arg(long, default_value = "qfhe-keys")]
    pub out: PathBuf,
    /// Replace an existing client.key.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct EncryptArgs {
    /// Circuit file the keys were made for.
    #[arg(long, default_value = "qfhe-out/circuit.json")]
    pub circuit: PathBuf,
    /// Folder holding client.key.
    #[arg(long, default_value = "qfhe-keys")]
    pub keys: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Test images to encrypt, `A..B` (B exclusive, at most 4096).
    #[arg(long, default_value = "0..1", value_parser = |s: &str| crate::deploy::parse_range(s))]
    pub test_index: std::ops::Range<usize>,
    /// Input file to write.
    #[arg(long, default_value = "inputs.qfhe")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct InferArgs {
    /// Circuit file.
    #[arg(long, default_value = "qfhe-out/circuit.json")]
    pub circuit: PathBuf,
    /// The client's evaluation key.
    #[arg(long, default_value = "qfhe-keys/eval.key")]
    pub eval_key: PathBuf,
    /// Input file written by `qfhe encrypt`.
    #[arg(long, default_value = "inputs.qfhe")]
    pub inputs: PathBuf,
    /// Most samples accepted in one input file.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_batch: u32,
    /// Threads for the PBS (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096).map(|v| v as usize))]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Output file to write.
    #[arg(long, default_value = "outputs.qfhe")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct DecryptArgs {
    /// Circuit file.
    #[arg(long, default_value = "qfhe-out/circuit.json")]
    pub circuit: PathBuf,
    /// Folder holding client.key.
    #[arg(long, default_value = "qfhe-keys")]
    pub keys: PathBuf,
    /// Output file written by `qfhe infer`.
    #[arg(long, default_value = "outputs.qfhe")]
    pub outputs: PathBuf,
    /// One JSON object per sample: `{sample, prediction, logits}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// The server, `http://HOST:PORT`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Circuit file (the same the server serves; checked by its SHA-256).
    #[arg(long, default_value = "qfhe-out/circuit.json")]
    pub circuit: PathBuf,
    /// Folder holding client.key and eval.key (`qfhe keygen`); the server registration is kept
    /// there in servers.json.
    #[arg(long, default_value = "qfhe-keys")]
    pub keys: PathBuf,
    /// A grayscale (or RGB, converted to gray) PNG of the circuit's input size, e.g. 28×28 for
    /// MNIST, white digit on black.
    #[arg(long, value_name = "FILE.png", conflicts_with = "test_index")]
    pub image: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Test images to send, `A..B` (B exclusive), one request each.
    #[arg(long, default_value = "0..1", value_parser = |s: &str| crate::deploy::parse_range(s))]
    pub test_index: std::ops::Range<usize>,
    /// One JSON object per sample: `{index, prediction, exact_prediction, latency_s,
    /// upload_bytes, download_bytes}` (and the label, server seconds and logits).
    #[arg(long)]
    pub json: bool,
    /// Longest to wait for one answer, seconds.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout_s: u64,
}

#[derive(Args, Debug)]
pub struct LoadTestArgs {
    /// The server, `http://HOST:PORT`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Circuit file (the same the server serves).
    #[arg(long, default_value = "qfhe-out/circuit.json")]
    pub circuit: PathBuf,
    /// Folder holding client.key and eval.key.
    #[arg(long, default_value = "qfhe-keys")]
    pub keys: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256).map(|v| v as usize))]
    pub clients: usize,
    /// Requests per client (one test image each; client c sends images c·R .. (c+1)·R).
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=100_000).map(|v| v as usize))]
    pub requests: usize,
    /// Longest to wait for one answer, seconds.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout_s: u64,
}

/// Where the data comes from.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Dataset name: `mnist` (images, fetched and checksummed automatically), or a bundled
    /// table: iris, breast-cancer, wine, digits, diabetes, synthetic-regression,
    /// synthetic-classification.
    #[arg(long, default_value = "mnist")]
    pub dataset: String,
    /// Use the four IDX files in DIR instead (same names as MNIST's; no checksum).
    #[arg(long, value_name = "DIR", conflicts_with = "data_csv")]
    pub data_dir: Option<PathBuf>,
    /// Use a CSV table instead (numeric feature columns, header optional, `.csv` or
    /// `.csv.gz`); it is split into training and test rows.
    #[arg(long, value_name = "FILE")]
    pub data_csv: Option<PathBuf>,
    /// The CSV's target column: a header name or a 0-based index (default: the last column).
    #[arg(long, value_name = "COL", requires = "data_csv")]
    pub target: Option<String>,
    /// Fraction of a table's rows held out for testing (stratified by class, seeded by
    /// `--seed`).
    #[arg(long, default_value_t = 0.2, value_parser = fraction)]
    pub test_fraction: f64,
}

/// Model and training options.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// The model: for tables `linreg`, `logreg` or `svm` (linear models, no PBS), `tree`,
    /// `forest` or `boosting` (tree ensembles; `--in-bits` per feature, default 6, and
    /// `--w-bits` for leaf values, default 8); for images a
    /// preset (`mlp`: 784-128-10; `cnn`: conv 1→24 7×7 stride 4, batch norm, dense
    /// 256; `lenet`: conv 1→12 5×5 stride 2, conv 12→24 3×3 stride 2, dense 128) or a model file
    /// (`.toml` or `.json`, format in README.md and docs/DESIGN.md).
    #[arg(long, default_value = "mlp", value_name = "PRESET|FILE")]
    pub model: String,
    /// Replace the model's dense hidden layers (after its last flatten) by ReLU layers of these
    /// widths, comma-separated; each hidden neuron costs one PBS per sample. `--hidden 0` for
    /// none.
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// Drop the model's batch norms (by default they train in the fp32 phase and are folded
    /// into the layer before them before QAT).
    #[arg(long)]
    pub no_batch_norm: bool,
    /// Weight bits of every weighted layer but the last (2 to 8; default: the model's, 3 for
    /// presets).
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=8))]
    pub w_bits: Option<u32>,
    /// Weight bits of the output layer (decrypted directly, no PBS; 2 to 8; default: the
    /// model's, 4 for presets).
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=8))]
    pub out_w_bits: Option<u32>,
    /// Activation bits (2 to 8; default: the model's, 3 for presets).
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=8))]
    pub a_bits: Option<u32>,
    /// Input bits (1 to 8; default: `--a-bits` if given, else the model's).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub in_bits: Option<u32>,
    /// Epochs of fp32 training (the fp32 column; as many as QAT gets in total, for a fair
    /// comparison; default 18, on a table as many as make 2000 steps).
    #[arg(long)]
    pub fp32_epochs: Option<usize>,
    /// Epochs of QAT fine-tuning (default: 12 for models without convolutions, 16 with; on a
    /// table as many as make 1000 steps).
    #[arg(long)]
    pub qat_epochs: Option<usize>,
    /// Initial Adam learning rate of the fp32 phase (cosine decay to 5% of it).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Initial Adam learning rate of QAT (cosine decay to 5% of it).
    #[arg(long, default_value_t = 1e-3)]
    pub qat_lr: f64,
    /// QAT on the exact circuit only. By default QAT trains through the FHE noise model (each
    /// PBS input gets its modelled Gaussian noise), so the model learns to tolerate the
    /// off-by-one table reads FHE makes; evaluation always uses the exact circuit.
    #[arg(long)]
    pub no_qat_noise: bool,
    /// Factor on the modelled noise std in noise-aware QAT, 0 to 10 (1: the circuit's own
    /// noise; a little above 1 trains a margin so fewer predictions change under FHE; default:
    /// 1.5 for the lenet preset, 1 otherwise).
    #[arg(long)]
    pub qat_noise_scale: Option<f64>,
    /// Knowledge distillation in QAT: weight in [0, 1) of the loss pulling the quantized
    /// model's softened predictions toward the fp32 model's (temperature 2); 0 trains on the
    /// labels alone (default: 0.7 for the lenet preset, 0 otherwise).
    #[arg(long)]
    pub distill: Option<f64>,
    /// Data augmentation: move each training image by a random translation of up to this many
    /// pixels each way (0: none; default: 2 for the lenet preset, 0 otherwise).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=64).map(|v| v as usize))]
    pub augment_shift: Option<usize>,
    /// Best-epoch selection: hold out this many training images, score the QAT model on them
    /// after every QAT epoch and keep the best epoch (default 0: keep the last). The test set
    /// takes no part in the choice.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=10_000_000).map(|v| v as usize))]
    pub select_best: Option<usize>,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=1 << 20).map(|v| v as usize))]
    pub batch_size: usize,
    /// Narrowest table step to train for, in PBS slots (accumulator-aware bound): wider steps
    /// mean fewer off-by-one flips and lower gross-error probability, at some accuracy cost
    /// (default: 36 for the lenet preset, 40 otherwise).
    #[arg(long, value_parser = positive_finite)]
    pub min_step_slots: Option<f64>,
    /// PBS polynomial size the circuit is encoded for (2048 or 8192).
    #[arg(long, default_value_t = 2048)]
    pub poly_size: u32,
    /// Training backend: flex (CPU), ndarray (needs the `ndarray` feature), wgpu (needs `wgpu`).
    #[arg(long, value_enum, default_value = "flex")]
    pub device: DeviceArg,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output folder for model.bpk and model.json.
    #[arg(long, default_value = "qfhe-out")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Folder written by `qfhe train`.
    #[arg(long, default_value = "qfhe-out")]
    pub model_dir: PathBuf,
    /// Circuit file to write.
    #[arg(long, default_value = "qfhe-out/circuit.json")]
    pub out: PathBuf,
}

/// Where the server's KS + PBS run.
#[derive(Args, Debug, Clone)]
pub struct BackendArgs {
    /// PBS backend: cpu (tfhe-rs on the CPU), or gpu (tfhe-rs's CUDA backend, in builds that
    /// include it).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "gpu"])]
    pub backend: String,
    /// PBS per pass over the evaluation keys on the cpu backend (default 32; 1 runs one PBS at a
    /// time). Outputs are identical for every batch; larger batches read the keys less often.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=256).map(|v| v as usize))]
    pub pbs_batch: Option<usize>,
}

impl BackendArgs {
    /// The runtime backend these options name.
    pub fn backend(&self) -> Result<qfhe_fhe_runtime::Backend, qfhe_fhe_runtime::RuntimeError> {
        qfhe_fhe_runtime::Backend::from_name(&self.backend, self.pbs_batch)
    }
}

/// FHE evaluation options.
#[derive(Args, Debug, Clone)]
pub struct FheArgs {
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Test samples to run under real encryption.
    #[arg(long, default_value_t = 100)]
    pub fhe_samples: usize,
    /// Samples evaluated together: their PBS share the thread pool, so throughput rises on
    /// narrow layers, and each sample's latency becomes the batch's wall time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096).map(|v| v as usize))]
    pub fhe_batch: usize,
    /// Threads for the server's PBS (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096).map(|v| v as usize))]
    pub threads: Option<usize>,
    /// Largest acceptable gross-error probability per PBS, as log2 (default 2^-40).
    #[arg(long, default_value_t = -40.0, allow_hyphen_values = true, value_parser = negative_log2)]
    pub p_error_log2: f64,
    /// Decrypt every layer's outputs and compare them with the exact simulator and the noise
    /// model's prediction (for a few samples; a deployed client never sees hidden layers). The
    /// prediction includes the chance of decrypting a PBS output to a neighbouring level when
    /// its level spacing is small against its noise (shown separately).
    #[arg(long)]
    pub trace: bool,
    /// Seed of the noise-model simulation.
    #[arg(long, default_value_t = 7)]
    pub noise_seed: u64,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Circuit file written by `qfhe export`.
    #[arg(long, default_value = "qfhe-out/circuit.json")]
    pub circuit: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Seed of a table's train/test split: give the `--seed` the circuit's `qfhe run` had, so
    /// the test rows are the rows it held out.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Score reported for tables: accuracy or f1 (classification), r2 (regression); default
    /// accuracy, or r2 for a regression.
    #[arg(long, value_parser = ["accuracy", "f1", "r2"])]
    pub metric: Option<String>,
    /// Evaluate these samples instead of a dataset: a NumPy array (float32, shape
    /// [n, features] or [n, channels, height, width]; images as values on [0, 1]), e.g. to
    /// compare with the framework a model was trained in. Needs --outputs.
    #[arg(long, value_name = "X.npy", requires = "outputs")]
    pub inputs: Option<PathBuf>,
    /// Where --inputs' outputs go: the dequantized logits, float32 [n, outputs].
    #[arg(long, value_name = "Y.npy", requires = "inputs")]
    pub outputs: Option<PathBuf>,
    /// How --inputs are evaluated: the exact circuit, the noise model (seeded by
    /// --noise-seed), or real encryption.
    #[arg(long, value_enum, default_value = "exact")]
    pub mode: EvalMode,
    #[command(flatten)]
    pub fhe: FheArgs,
    /// Folder for report.json and report.md.
    #[arg(long, default_value = "qfhe-out")]
    pub out: PathBuf,
}

/// How `qfhe eval --inputs` evaluates.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalMode {
    /// The circuit in the clear, exactly.
    Exact,
    /// The circuit with the FHE noise model's noise.
    Simulate,
    /// Real encryption, evaluation and decryption.
    Fhe,
}

impl EvalMode {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Simulate => "simulate",
            Self::Fhe => "fhe",
        }
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Score reported for tables: accuracy or f1 (classification), r2 (regression); default
    /// accuracy, or r2 for a regression. Images are scored by accuracy.
    #[arg(long, value_parser = ["accuracy", "f1", "r2"])]
    pub metric: Option<String>,
    /// Trees of a forest, or rounds of boosting (defaults 20 and 20).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000).map(|v| v as usize))]
    pub trees: Option<usize>,
    /// Deepest split level of each tree (defaults: tree 5, forest 4, boosting 3).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=15).map(|v| v as usize))]
    pub max_depth: Option<usize>,
    /// Fewest training rows in a tree's leaf (default: chosen among 1, 2, 3, 5 and 8 by 5-fold
    /// cross-validation on the training rows).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000).map(|v| v as usize))]
    pub min_samples_leaf: Option<usize>,
    /// What a tree ensemble is trained on: `values` (the raw features; the feature codes are
    /// then bins split at the ensemble's thresholds, so the circuit computes the fp32 ensemble
    /// exactly while no feature has more than 2^in_bits − 1 thresholds) or `codes` (the
    /// quantized features themselves: another ensemble than fp32's).
    #[arg(long, value_parser = ["values", "codes"], default_value = "values")]
    pub tree_fit: String,
    /// A gradient-boosted ensemble trained elsewhere: an XGBoost model saved as JSON
    /// (`booster.save_model("model.json")`; objectives binary:logistic, multi:softprob,
    /// multi:softmax, reg:squarederror). It is quantized onto the training rows' feature codes
    /// instead of training a model here; the table must have the features it was trained on,
    /// in the same order.
    #[arg(long, value_name = "FILE")]
    pub import_xgboost: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub fhe: FheArgs,
    /// Folder for the model, circuit, report.json and report.md.
    #[arg(long, default_value = "qfhe-out")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct TableArgs {
    /// Folder for table.md, table.json, table.svg and each row's own run under `rows/`.
    #[arg(long, default_value = "qfhe-table")]
    pub out: PathBuf,
    /// Run only these rows (comma-separated keys; `--only list` prints them).
    #[arg(long, value_delimiter = ',')]
    pub only: Option<Vec<String>>,
    /// At most this many FHE samples per row (each row has its own default, from 30 to 100).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000).map(|v| v as usize))]
    pub max_fhe_samples: Option<usize>,
    /// Threads for the server's PBS (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096).map(|v| v as usize))]
    pub threads: Option<usize>,
}

/// Training backends (`--device`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceArg {
    /// burn-flex on the CPU.
    Flex,
    /// burn-ndarray on the CPU (needs the `ndarray` cargo feature).
    Ndarray,
    /// burn-wgpu (needs the `wgpu` cargo feature).
    Wgpu,
}

impl DeviceArg {
    /// The trainer's device choice.
    pub fn choice(self) -> qfhe::DeviceChoice {
        match self {
            Self::Flex => qfhe::DeviceChoice::Flex,
            Self::Ndarray => qfhe::DeviceChoice::Ndarray,
            Self::Wgpu => qfhe::DeviceChoice::Wgpu,
        }
    }

    /// The name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Wgpu => "wgpu",
        }
    }
}

fn positive_finite(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number of slots")),
    }
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!(
            "'{s}' is not a fraction strictly between 0 and 1, e.g. 0.2"
        )),
    }
}

fn negative_log2(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (-200.0..0.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "'{s}' is not a log2 probability in [-200, 0), e.g. -40"
        )),
    }
}
