//! Tree ensembles on tabular data — decision trees, random forests, gradient-boosted trees —
//! with the fit → compile → predict flow: each feature is quantized to `in_bits` bits
//! (min–max on the training rows), and the ensemble is lowered to a circuit of comparison and
//! leaf PBS ([`qfhe_trees::lower`]). By default the ensemble is trained on the raw values (the
//! fp32 reference) and its thresholds are moved onto the codes ([`FitOn::Values`]); it can
//! also be trained on the codes themselves ([`FitOn::Codes`]).

use crate::compiled::{Compiled, DEFAULT_P_ERROR_LOG2};
use crate::tabular::{float_rows, labels};
use crate::{Error, Result};
use qfhe_circuit::{Circuit, FeatureQuantizer, Meta};
use qfhe_core::EncodingConfig;
use qfhe_datasets::{Table, Target};
use qfhe_fhe_runtime::FheParams;
use qfhe_trees::{
    fit, lower_ensemble, quantize_leaves, select_min_samples_leaf, CodeEnsemble, FloatEnsemble,
    LeafSelection, TreeConfig, TreeKind, TreeQuant, TreeTarget, FOLDS, LEAF_CANDIDATES,
};

/// What the circuit's ensemble is trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FitOn {
    /// The raw feature values: the fp32 ensemble itself, its thresholds then moved onto the
    /// feature codes ([`FloatEnsemble::quantize`]), so the quantized model is the fp32 model
    /// up to where a threshold falls inside a code's interval (the default: on Wine, a forest
    /// keeps its fp32 97.22% where one trained on 6-bit codes reaches 91.67%).
    #[default]
    Values,
    /// The feature codes: a second ensemble, trained on what the circuit sees; `x < v + ½` on
    /// codes is `code ≤ v` exactly. It is another model than the fp32 one (it sees only
    /// `2^in_bits` thresholds per feature), so its score can land above or below fp32's.
    Codes,
}

/// How to fit a tree ensemble. [`TreesConfig::new`] gives the defaults `qfhe` uses.
#[derive(Debug, Clone, PartialEq)]
pub struct TreesConfig {
    /// The ensemble and its hyper-parameters.
    pub trees: TreeConfig,
    /// Input bits per feature (6) and leaf value bits (8).
    pub quant: TreeQuant,
    /// What the circuit's ensemble is trained on (raw values).
    pub fit_on: FitOn,
    /// Polynomial size of the parameter set (2048 or 8192).
    pub poly_size: u32,
    /// `min_samples_leaf` values tried by 5-fold cross-validation on the training rows
    /// ([`select_min_samples_leaf`]); the best replaces `trees.min_samples_leaf`. Empty: use
    /// `trees.min_samples_leaf` as it is.
    pub leaf_candidates: Vec<usize>,
}

impl TreesConfig {
    /// The defaults for `kind` (leaf size chosen among [`LEAF_CANDIDATES`]).
    pub fn new(kind: TreeKind) -> Self {
        Self {
            trees: TreeConfig::new(kind),
            quant: TreeQuant::default(),
            fit_on: FitOn::default(),
            poly_size: 2048,
            leaf_candidates: LEAF_CANDIDATES.to_vec(),
        }
    }
}

/// A fitted ensemble: the fp32 reference, the ensemble on codes and its circuit.
#[derive(Debug, Clone)]
pub struct TreeModel {
    float: Option<FloatEnsemble>,
    codes: CodeEnsemble,
    circuit: Circuit,
    leaf_selection: Option<LeafSelection>,
}

fn encoding(poly_size: u32) -> Result<EncodingConfig> {
    let params = FheParams::by_poly_size(poly_size).ok_or(Error::PolySize(poly_size))?;
    Ok(EncodingConfig {
        poly_size: params.poly_size(),
        noise: params.noise_spec(),
        ..EncodingConfig::default()
    })
}

/// Fit `cfg.trees.kind` on `train` on the raw values (the fp32 reference) and, with
/// [`FitOn::Codes`], once more on the feature codes; lower the ensemble on codes. With
/// [`FitOn::Values`] the feature quantizer's bins are the fp32 ensemble's thresholds
/// ([`FeatureQuantizer::with_edges`]), so the ensemble on codes takes the fp32 path on every
/// row whenever no feature has more than `2^in_bits − 1` distinct thresholds. The leaf size is
/// first chosen by cross-validation on `train` when `cfg.leaf_candidates` is not empty.
/// `dataset` names the data in the circuit's provenance.
///
/// # Errors
/// [`Error::Trees`] for data the trainer cannot use or a configuration out of range;
/// [`Error::Circuit`] for a quantizer that cannot be calibrated; [`Error::PolySize`].
pub fn fit_trees(train: &Table, dataset: &str, cfg: &TreesConfig) -> Result<TreeModel> {
    let x = float_rows(train);
    let d = train.width();
    let values: Vec<f32>;
    let class_labels: Vec<u32>;
    let target = match &train.target {
        Target::Values(v) => {
            values = v.iter().map(|&y| y as f32).collect();
            TreeTarget::Values(&values)
        }
        Target::Classes { .. } => {
            class_labels = labels(train);
            TreeTarget::Classes {
                labels: &class_labels,
                classes: train.classes(),
            }
        }
    };
    let mut cfg = cfg.clone();
    let leaf_selection = if cfg.leaf_candidates.is_empty() {
        None
    } else {
        let s = select_min_samples_leaf(&x, d, target, &cfg.trees, &cfg.leaf_candidates, FOLDS)?;
        cfg.trees.min_samples_leaf = s.chosen;
        Some(s)
    };
    let float = fit(&x, d, target, &cfg.trees)?;
    let quantizer = FeatureQuantizer::calibrate(&x, d, cfg.quant.in_bits)?;
    if cfg.fit_on == FitOn::Values {
        let quantizer = binned(quantizer, &float, &mut cfg)?;
        let codes = float.quantize(&quantizer, cfg.quant.in_bits)?;
        return from_parts(Some(float), codes, quantizer, dataset, &cfg, leaf_selection);
    }
    let qmax = (1i32 << cfg.quant.in_bits) - 1;
    let codes: Vec<f32> = quantizer
        .codes(&x, qmax)
        .into_iter()
        .map(|q| q as f32)
        .collect();
    let on_codes = fit(&codes, d, target, &cfg.trees)?;
    // Thresholds `code < v + 0.5` become `code ≤ v` on the identity quantizer.
    let identity = FeatureQuantizer {
        low: vec![0.0; d],
        step: vec![1.0; d],
        edges: None,
    };
    let code_ensemble = on_codes.quantize(&identity, cfg.quant.in_bits)?;
    from_parts(
        Some(float),
        code_ensemble,
        quantizer,
        dataset,
        &cfg,
        leaf_selection,
    )
}

/// Import a model trained elsewhere (e.g. by XGBoost, [`qfhe_trees::load_xgboost`]): the
/// feature codes are bins at its thresholds, as in [`fit_trees`], so the circuit takes the path
/// the model takes on each row.
///
/// # Errors
/// [`Error::Trees`] when the model and the table disagree on the features; as [`fit_trees`].
pub fn import_trees(
    model: FloatEnsemble,
    train: &Table,
    dataset: &str,
    cfg: &TreesConfig,
) -> Result<TreeModel> {
    if model.features != train.width() {
        return Err(Error::Mismatch {
            what: "features per row",
            expected: model.features,
            found: train.width(),
        });
    }
    let x = float_rows(train);
    let quantizer = FeatureQuantizer::calibrate(&x, train.width(), cfg.quant.in_bits)?;
    let mut cfg = cfg.clone();
    let quantizer = binned(quantizer, &model, &mut cfg)?;
    let codes = model.quantize(&quantizer, cfg.quant.in_bits)?;
    from_parts(Some(model), codes, quantizer, dataset, &cfg, None)
}

/// `quantizer` with bins at `ensemble`'s thresholds; `cfg.quant.in_bits` drops to the fewest
/// bits that hold them: a depth-5 tree needs a few codes per feature, and fewer codes spread
/// over the comparison tables' slots leave each code wider, so the FHE noise moves a comparison
/// next to its threshold far less often.
fn binned(
    quantizer: FeatureQuantizer,
    ensemble: &FloatEnsemble,
    cfg: &mut TreesConfig,
) -> Result<FeatureQuantizer> {
    let quantizer = quantizer.with_edges(&ensemble.thresholds(), cfg.quant.in_bits)?;
    let most = quantizer
        .edges
        .as_ref()
        .and_then(|e| e.iter().map(Vec::len).max())
        .unwrap_or(0);
    // Codes 0..=most need the bits of `most`, and at least one.
    cfg.quant.in_bits = (usize::BITS - most.leading_zeros()).clamp(1, cfg.quant.in_bits);
    Ok(quantizer)
}

fn from_parts(
    float: Option<FloatEnsemble>,
    codes: CodeEnsemble,
    quantizer: FeatureQuantizer,
    dataset: &str,
    cfg: &TreesConfig,
    leaf_selection: Option<LeafSelection>,
) -> Result<TreeModel> {
    let meta = Meta {
        dataset: dataset.into(),
        arch: format!(
            "{} ({} trees, {} splits)",
            cfg.trees.kind.name(),
            codes.trees.len(),
            codes
                .trees
                .iter()
                .flat_map(|t| &t.nodes)
                .filter(|n| matches!(n, qfhe_trees::CodeNode::Split { .. }))
                .count()
        ),
        w_bits: cfg.quant.leaf_bits,
        a_bits: cfg.quant.in_bits,
        fp32_accuracy: None,
    };
    let circuit = lower_ensemble(&codes, quantizer, cfg.quant, encoding(cfg.poly_size)?, meta)?;
    Ok(TreeModel {
        float,
        codes,
        circuit,
        leaf_selection,
    })
}

impl TreeModel {
    /// The fp32 reference (trained on, or imported for, the raw values).
    pub fn float(&self) -> Option<&FloatEnsemble> {
        self.float.as_ref()
    }

    /// The cross-validation that chose the leaf size, if one ran ([`TreesConfig::leaf_candidates`]).
    pub fn leaf_selection(&self) -> Option<&LeafSelection> {
        self.leaf_selection.as_ref()
    }

    /// The ensemble on feature codes, leaf values as trained.
    pub fn codes(&self) -> &CodeEnsemble {
        &self.codes
    }

    /// The ensemble the circuit computes: [`TreeModel::codes`] with its leaf values on the
    /// circuit's grid.
    pub fn quantized(&self) -> CodeEnsemble {
        quantize_leaves(&self.codes, self.circuit.meta.w_bits).0
    }

    /// The circuit.
    pub fn circuit(&self) -> &Circuit {
        &self.circuit
    }

    /// The fp32 reference's predictions on every row of `table` (class indices or values);
    /// `None` without one.
    ///
    /// # Errors
    /// [`Error::Mismatch`] when the table has another number of features.
    pub fn predict_float(&self, table: &Table) -> Result<Option<Vec<f64>>> {
        let Some(f) = &self.float else {
            return Ok(None);
        };
        if table.width() != f.features {
            return Err(Error::Mismatch {
                what: "features per row",
                expected: f.features,
                found: table.width(),
            });
        }
        let rows = float_rows(table);
        Ok(Some(
            rows.chunks_exact(f.features)
                .map(|r| f.predict(r))
                .collect(),
        ))
    }

    /// Check the circuit against its parameter set; `calibration` (e.g. the training table)
    /// feeds the predicted flip rates.
    ///
    /// # Errors
    /// As [`Compiled::from_codes`].
    pub fn compile(&self, calibration: &Table) -> Result<Compiled> {
        let codes = crate::tabular::codes(&self.circuit, calibration)?;
        Compiled::from_codes(self.circuit.clone(), &codes, DEFAULT_P_ERROR_LOG2)
    }
}
