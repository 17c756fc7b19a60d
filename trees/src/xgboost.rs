//! XGBoost models, read from the JSON that `Booster.save_model("model.json")` writes
//! (xgboost ≥ 1.6; the format is described by `doc/model.schema` in dmlc/xgboost).
//!
//! What is read:
//!
//! * `learner.objective.name`: `binary:logistic` (one output, [`Readout::Sign`]),
//!   `multi:softprob` / `multi:softmax` (`num_class` outputs, [`Readout::Argmax`]) or
//!   `reg:squarederror` (one output, [`Readout::Value`]);
//! * `learner.learner_model_param`: `num_feature`, `num_class`, `num_target` and
//!   `base_score`, written `"5E-1"` by xgboost 1.x and `"[5E-1]"` (or one value per class,
//!   `"[1E-1,2E-1,3E-1]"`) by xgboost ≥ 2;
//! * `learner.gradient_booster`, which must be a `gbtree` booster: its `model.trees` and
//!   `model.tree_info` (the output each tree adds to).
//!
//! XGBoost keeps `base_score` in the objective's output space and turns it into a margin when
//! it predicts: through the logit for `binary:logistic`, unchanged for the other supported
//! objectives. The ensemble's `base` holds that margin, so [`FloatEnsemble::outputs`] equals
//! `predict(..., output_margin=True)`.
//!
//! Node `k` of a tree is a leaf when `left_children[k] == -1`; its value is
//! `split_conditions[k]` (the array XGBoost's predictor reads leaf values from). Otherwise it
//! sends a row left when `x[split_indices[k]] < split_conditions[k]`, the rule of
//! [`FloatNode::Split`]. `default_left`, the direction of a missing value, is not kept: qfhe
//! inputs are finite numbers, never missing.

use crate::ensemble::{FloatEnsemble, FloatNode, FloatTree, MAX_NODES, MAX_TREES};
use crate::error::TreeError;
use qfhe_circuit::Readout;
use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

/// Most leaf values (nodes × outputs, summed over the trees) an imported ensemble may hold:
/// a bound on the memory a small file with many classes could make the reader allocate.
const MAX_LEAF_VALUES: u64 = 1 << 26;

/// The objectives this reader understands, for error messages.
const SUPPORTED: &str = "binary:logistic, multi:softprob, multi:softmax, reg:squarederror";

/// Reads an XGBoost model from the bytes of its JSON file (`Booster.save_model("model.json")`,
/// xgboost ≥ 1.6; format: dmlc/xgboost `doc/model.schema`).
///
/// The result has `features = num_feature` inputs and one output (`binary:logistic`,
/// `reg:squarederror`) or `num_class` outputs (`multi:softprob`, `multi:softmax`); each tree's
/// leaves carry `outputs` values, the tree's own value at index `tree_info[i]` and 0 elsewhere.
/// `base` is XGBoost's base margin, so [`FloatEnsemble::outputs`] gives the margins of
/// `predict(..., output_margin=True)` and [`FloatEnsemble::predict`] the class (for
/// `binary:logistic`, class 1 when the probability exceeds ½) or the value. Nodes are
/// renumbered in breadth-first order from the root; nodes the root does not reach (deleted by
/// pruning) are dropped. `origin` names the source in error messages.
///
/// # Errors
/// [`TreeError::Format`] when the bytes are not such a model (not JSON, UBJSON, missing or
/// mistyped fields), or the model is one this crate cannot evaluate: another objective, a
/// booster other than `gbtree`, categorical splits, vector leaves or several targets, no
/// features, no trees, more than [`MAX_TREES`] trees or [`MAX_NODES`] nodes in a tree, array
/// lengths that disagree with `num_nodes`, child, feature or output indices out of range, a
/// node reached twice, a `base_score` that is not finite (or, for `binary:logistic`, not a
/// probability strictly between 0 and 1), a threshold or leaf value that does not fit a
/// finite `f32`, or more than 2²⁶ leaf values in all (nodes × outputs, a bound on memory).
/// [`TreeError::Invalid`] if the result fails [`FloatEnsemble::validate`].
pub fn from_xgboost_json(bytes: &[u8], origin: &str) -> Result<FloatEnsemble, TreeError> {
    let bad = |reason: String| TreeError::Format {
        path: origin.to_owned(),
        reason,
    };
    let mut start = bytes.iter().filter(|b| !b.is_ascii_whitespace());
    match (start.next(), start.next()) {
        (None, _) => return Err(bad("the file is empty".into())),
        // A JSON object goes on with a key or ends; UBJSON's `{` is followed by a type marker.
        (Some(b'{'), Some(b'"' | b'}') | None) => {}
        _ => {
            return Err(bad(
                "not a JSON object; xgboost writes UBJSON unless the file name ends in .json: \
                 save the model with save_model(\"model.json\")"
                    .into(),
            ))
        }
    }
    let file: File = serde_json::from_slice(bytes).map_err(|e| {
        bad(format!(
            "not an XGBoost JSON model ({e}); expected the output of \
             Booster.save_model(\"model.json\") from xgboost 1.6 or later"
        ))
    })?;
    let ensemble = convert(file.learner).map_err(bad)?;
    ensemble.validate()?;
    Ok(ensemble)
}

/// Reads an XGBoost JSON model file ([`from_xgboost_json`], with `path` in error messages).
///
/// # Errors
/// [`TreeError::Io`] when the file cannot be read; otherwise those of [`from_xgboost_json`].
pub fn load_xgboost(path: &Path) -> Result<FloatEnsemble, TreeError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| TreeError::Io {
        path: shown.clone(),
        source,
    })?;
    from_xgboost_json(&bytes, &shown)
}

#[derive(Deserialize)]
struct File {
    learner: Learner,
}

#[derive(Deserialize)]
struct Learner {
    learner_model_param: ModelParam,
    gradient_booster: Booster,
    objective: Objective,
}

#[derive(Deserialize)]
struct ModelParam {
    base_score: Option<Scalar>,
    num_class: Option<Scalar>,
    num_feature: Option<Scalar>,
    num_target: Option<Scalar>,
}

#[derive(Deserialize)]
struct Objective {
    name: String,
}

#[derive(Deserialize)]
struct Booster {
    name: String,
    /// Absent for `dart`, which nests its model under `gbtree`.
    model: Option<GbTree>,
}

/// `gblinear`'s model has none of these fields; defaults let it parse so that the booster's
/// name gives the error.
#[derive(Deserialize)]
struct GbTree {
    gbtree_model_param: Option<GbTreeParam>,
    #[serde(default)]
    trees: Bounded<Tree, TreeLimit>,
    #[serde(default)]
    tree_info: Bounded<i64, TreeLimit>,
}

#[derive(Deserialize)]
struct GbTreeParam {
    num_trees: Option<Scalar>,
}

#[derive(Deserialize)]
struct Tree {
    tree_param: TreeParam,
    left_children: Bounded<i64, NodeLimit>,
    right_children: Bounded<i64, NodeLimit>,
    split_indices: Bounded<i64, NodeLimit>,
    split_conditions: Bounded<f64, NodeLimit>,
    base_weights: Bounded<IgnoredAny, NodeLimit>,
    default_left: Bounded<IgnoredAny, NodeLimit>,
    /// Written from xgboost 1.6 on; older files only have numerical splits.
    #[serde(default)]
    split_type: Bounded<i64, NodeLimit>,
    #[serde(default)]
    categories: Bounded<IgnoredAny, NodeLimit>,
}

#[derive(Deserialize)]
struct TreeParam {
    num_nodes: Scalar,
    size_leaf_vector: Option<Scalar>,
}

/// XGBoost writes its parameters as strings (`"3"`, `"5E-1"`); a number is accepted too.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Number(serde_json::Number),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.trim().to_owned(),
            Scalar::Number(n) => n.to_string(),
        }
    }

    /// A non-negative integer, or an error naming `what`.
    fn count(&self, what: &str) -> Result<u64, String> {
        let t = self.text();
        t.parse::<u64>()
            .map_err(|_| format!("{what} is {t:?}, not a non-negative integer"))
    }
}

/// A bound on the length of an array in the file, checked while it is parsed so that a huge
/// array is refused before it is stored.
trait Limit {
    const MAX: usize;
    const WHAT: &'static str;
}

struct TreeLimit;
impl Limit for TreeLimit {
    const MAX: usize = MAX_TREES;
    const WHAT: &'static str = "trees in an ensemble";
}

struct NodeLimit;
impl Limit for NodeLimit {
    const MAX: usize = MAX_NODES;
    const WHAT: &'static str = "nodes in a tree";
}

/// An array of at most `L::MAX` elements.
struct Bounded<T, L>(Vec<T>, PhantomData<L>);

impl<T, L> Default for Bounded<T, L> {
    fn default() -> Self {
        Bounded(Vec::new(), PhantomData)
    }
}

impl<'de, T: Deserialize<'de>, L: Limit> Deserialize<'de> for Bounded<T, L> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, L>(PhantomData<(T, L)>);
        impl<'de, T: Deserialize<'de>, L: Limit> Visitor<'de> for V<T, L> {
            type Value = Bounded<T, L>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an array of at most {} elements", L::MAX)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element()? {
                    if v.len() == L::MAX {
                        return Err(serde::de::Error::custom(format!(
                            "an array longer than the {} {} this crate accepts",
                            L::MAX,
                            L::WHAT
                        )));
                    }
                    v.push(x);
                }
                Ok(Bounded(v, PhantomData))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
}

/// The parsed file → an ensemble, or what is wrong with it.
fn convert(l: Learner) -> Result<FloatEnsemble, String> {
    let objective = l.objective.name.as_str();
    let (readout, multi) = match objective {
        "binary:logistic" => (Readout::Sign, false),
        "multi:softprob" | "multi:softmax" => (Readout::Argmax, true),
        "reg:squarederror" => (Readout::Value, false),
        other => {
            return Err(format!(
                "objective {other:?} is not supported; train with one of {SUPPORTED}"
            ))
        }
    };
    let gb = l.gradient_booster;
    if gb.name != "gbtree" {
        return Err(format!(
            "booster {:?} is not supported: only tree boosters without dropout are; \
             train with booster=\"gbtree\"",
            gb.name
        ));
    }
    let Some(model) = gb.model else {
        return Err("the gbtree booster has no \"model\"".into());
    };

    let p = &l.learner_model_param;
    let required = |s: &Option<Scalar>, what: &str| match s {
        Some(s) => s.count(what),
        None => Err(format!("learner_model_param has no {what}")),
    };
    let features = required(&p.num_feature, "num_feature")?;
    if features == 0 {
        return Err(
            "num_feature is 0; the model must have been trained on at least one \
             feature"
                .into(),
        );
    }
    let features = usize::try_from(features).map_err(|_| "num_feature is too large")?;
    let num_class = match &p.num_class {
        Some(s) => s.count("num_class")?,
        None => 0,
    };
    if let Some(t) = &p.num_target {
        let t = t.count("num_target")?;
        if t > 1 {
            return Err(format!(
                "the model has {t} targets; only single-target models are supported"
            ));
        }
    }
    let outputs = if multi {
        if num_class == 0 {
            return Err(format!("{objective} needs num_class ≥ 1, the file has 0"));
        }
        if num_class > MAX_LEAF_VALUES {
            return Err(format!(
                "num_class is {num_class}; at most {MAX_LEAF_VALUES} classes are supported"
            ));
        }
        num_class as usize
    } else {
        if num_class > 1 {
            return Err(format!(
                "num_class is {num_class}, but {objective} has a single output"
            ));
        }
        1
    };
    let base = base_margin(p.base_score.as_ref(), objective, outputs)?;

    let trees = model.trees.0;
    let info = model.tree_info.0;
    if trees.is_empty() {
        return Err("the model has no trees; train with at least one boosting round".into());
    }
    if info.len() != trees.len() {
        return Err(format!(
            "tree_info has {} entries for {} trees",
            info.len(),
            trees.len()
        ));
    }
    if let Some(n) = model.gbtree_model_param.and_then(|p| p.num_trees) {
        let n = n.count("gbtree_model_param.num_trees")?;
        if n != trees.len() as u64 {
            return Err(format!(
                "gbtree_model_param.num_trees is {n}, but {} trees are stored",
                trees.len()
            ));
        }
    }
    // Each node may become a leaf of `outputs` values: bound the total before storing any.
    let mut values = 0u64;
    for (i, t) in trees.iter().enumerate() {
        let n = num_nodes(t).map_err(|m| format!("tree {i}: {m}"))?;
        values += n as u64 * outputs as u64;
    }
    if values > MAX_LEAF_VALUES {
        return Err(format!(
            "{} trees with {outputs} outputs need up to {values} leaf values; at most \
             {MAX_LEAF_VALUES} are supported: use fewer trees, shallower trees or fewer classes",
            trees.len()
        ));
    }
    let trees = trees
        .iter()
        .zip(&info)
        .enumerate()
        .map(|(i, (t, &group))| {
            if group < 0 || group as u64 >= outputs as u64 {
                return Err(format!(
                    "tree {i}: tree_info is {group}, the model has {outputs} outputs"
                ));
            }
            convert_tree(t, features, outputs, group as usize).map_err(|m| format!("tree {i}: {m}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FloatEnsemble {
        features,
        outputs,
        base,
        trees,
        readout,
    })
}

/// XGBoost's base margin per output from `base_score`: one value for every output, or one per
/// output, each through the objective's link (the logit for `binary:logistic`).
fn base_margin(
    score: Option<&Scalar>,
    objective: &str,
    outputs: usize,
) -> Result<Vec<f32>, String> {
    let Some(score) = score else {
        return Err("learner_model_param has no base_score".into());
    };
    let text = score.text();
    let inner = match text.strip_prefix('[') {
        Some(rest) => rest
            .strip_suffix(']')
            .ok_or_else(|| format!("base_score {text:?} has no closing bracket"))?,
        None => text.as_str(),
    };
    let values = inner
        .split(',')
        .map(|v| match v.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(x),
            _ => Err(format!(
                "base_score {text:?} is not a list of finite numbers"
            )),
        })
        .collect::<Result<Vec<f64>, String>>()?;
    if values.len() != 1 && values.len() != outputs {
        return Err(format!(
            "base_score has {} values; expected 1 or {outputs} (one per output)",
            values.len()
        ));
    }
    (0..outputs)
        .map(|j| {
            let s = values[if values.len() == 1 { 0 } else { j }];
            let margin = if objective == "binary:logistic" {
                if !(s > 0.0 && s < 1.0) {
                    return Err(format!(
                        "base_score {s} of binary:logistic is not a probability strictly \
                         between 0 and 1"
                    ));
                }
                (s / (1.0 - s)).ln()
            } else {
                s
            };
            finite_f32(margin).ok_or_else(|| format!("base_score {s} does not fit an f32"))
        })
        .collect()
}

fn finite_f32(v: f64) -> Option<f32> {
    let x = v as f32;
    x.is_finite().then_some(x)
}

/// The tree's declared `num_nodes`, within 1 to [`MAX_NODES`].
fn num_nodes(t: &Tree) -> Result<usize, String> {
    let declared = t.tree_param.num_nodes.count("num_nodes")?;
    if declared == 0 || declared > MAX_NODES as u64 {
        return Err(format!(
            "num_nodes is {declared}; a tree must have 1 to {MAX_NODES} nodes"
        ));
    }
    Ok(declared as usize)
}

/// One XGBoost tree → a [`FloatTree`] whose leaves put their value at output `group`.
fn convert_tree(
    t: &Tree,
    features: usize,
    outputs: usize,
    group: usize,
) -> Result<FloatTree, String> {
    let n = num_nodes(t)?;
    if let Some(s) = &t.tree_param.size_leaf_vector {
        let s = s.count("size_leaf_vector")?;
        if s > 1 {
            return Err(format!(
                "leaves hold vectors of {s} values (multi_strategy=\"multi_output_tree\"); \
                 only scalar leaves are supported: train with the default \
                 multi_strategy=\"one_output_per_tree\""
            ));
        }
    }
    if !t.categories.0.is_empty() || t.split_type.0.iter().any(|&s| s != 0) {
        return Err(
            "the tree has categorical splits; only numerical splits are supported: \
             train without enable_categorical, on numerically encoded features"
                .into(),
        );
    }
    let lengths = [
        ("left_children", t.left_children.0.len()),
        ("right_children", t.right_children.0.len()),
        ("split_indices", t.split_indices.0.len()),
        ("split_conditions", t.split_conditions.0.len()),
        ("base_weights", t.base_weights.0.len()),
        ("default_left", t.default_left.0.len()),
    ];
    for (name, len) in lengths {
        if len != n {
            return Err(format!("{name} has {len} entries, num_nodes is {n}"));
        }
    }
    if !t.split_type.0.is_empty() && t.split_type.0.len() != n {
        return Err(format!(
            "split_type has {} entries, num_nodes is {n}",
            t.split_type.0.len()
        ));
    }
    let (left, right) = (&t.left_children.0, &t.right_children.0);

    // Breadth-first from the root: every child gets a larger index than its parent whatever
    // XGBoost's numbering, and a node reached twice (a cycle or shared child) is caught.
    let mut order = Vec::with_capacity(n);
    let mut new_index = vec![usize::MAX; n];
    order.push(0usize);
    new_index[0] = 0;
    let mut head = 0;
    while head < order.len() {
        let k = order[head];
        head += 1;
        if left[k] == -1 {
            if right[k] != -1 {
                return Err(format!(
                    "node {k} has no left child but right child {}",
                    right[k]
                ));
            }
            continue;
        }
        for c in [left[k], right[k]] {
            if c < 0 || c as u64 >= n as u64 {
                return Err(format!(
                    "node {k} has child {c}, outside the tree's {n} nodes"
                ));
            }
            let c = c as usize;
            if new_index[c] != usize::MAX {
                return Err(format!("node {c} is reached twice"));
            }
            new_index[c] = order.len();
            order.push(c);
        }
    }

    let nodes = order
        .iter()
        .map(|&k| {
            let v = t.split_conditions.0[k];
            if left[k] == -1 {
                let leaf = finite_f32(v)
                    .ok_or_else(|| format!("leaf {k} has value {v}, not a finite f32"))?;
                let mut value = vec![0.0; outputs];
                value[group] = leaf;
                return Ok(FloatNode::Leaf { value });
            }
            let f = t.split_indices.0[k];
            if f < 0 || f as u64 >= features as u64 {
                return Err(format!(
                    "node {k} splits on feature {f}; the model has {features} features"
                ));
            }
            let threshold = finite_f32(v)
                .ok_or_else(|| format!("node {k} has threshold {v}, not a finite f32"))?;
            Ok(FloatNode::Split {
                feature: f as usize,
                threshold,
                left: new_index[left[k] as usize],
                right: new_index[right[k] as usize],
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(FloatTree { nodes })
}
