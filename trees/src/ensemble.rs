//! Tree ensembles as data: trees on integer feature codes ([`CodeTree`]), trees on real-valued
//! features with XGBoost's `x < threshold` semantics ([`FloatTree`]), and the ensemble that sums
//! their leaf values ([`Ensemble`]).

use crate::error::TreeError;
use qfhe_circuit::{FeatureQuantizer, Readout};
use serde::{Deserialize, Serialize};

/// A node of a tree on feature codes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CodeNode {
    /// Go to `left` when the code of `feature` is at most `threshold`, else to `right`.
    Split {
        /// Feature index.
        feature: usize,
        /// Largest code that goes left.
        threshold: i32,
        /// Index of the left child in the tree's node list.
        left: usize,
        /// Index of the right child.
        right: usize,
    },
    /// A leaf: one value per ensemble output, added to the ensemble's sum.
    Leaf {
        /// `outputs` values.
        value: Vec<f32>,
    },
}

/// A binary tree on feature codes; node 0 is the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeTree {
    /// The nodes; children come after their parent.
    pub nodes: Vec<CodeNode>,
}

/// A node of a tree on real-valued features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FloatNode {
    /// Go to `left` when `x[feature] < threshold` (XGBoost's rule), else to `right`.
    Split {
        /// Feature index.
        feature: usize,
        /// Split value.
        threshold: f32,
        /// Index of the left child.
        left: usize,
        /// Index of the right child.
        right: usize,
    },
    /// A leaf: one value per ensemble output.
    Leaf {
        /// `outputs` values.
        value: Vec<f32>,
    },
}

/// A binary tree on real-valued features; node 0 is the root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloatTree {
    /// The nodes.
    pub nodes: Vec<FloatNode>,
}

/// An ensemble: `output_j = base_j + Σ_trees leaf_j`, read by `readout` (argmax of class
/// scores, sign of one log-odds, or the value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ensemble<T> {
    /// Input features.
    pub features: usize,
    /// Outputs per leaf (classes, or 1).
    pub outputs: usize,
    /// Base score per output.
    pub base: Vec<f32>,
    /// The trees.
    pub trees: Vec<T>,
    /// How the prediction is read from the outputs.
    pub readout: Readout,
}

/// An ensemble of trees on feature codes (what the circuit computes).
pub type CodeEnsemble = Ensemble<CodeTree>;
/// An ensemble of trees on real-valued features (an imported model).
pub type FloatEnsemble = Ensemble<FloatTree>;

/// Most nodes one tree may have, and most trees an ensemble may have (bounds on what a file
/// may make us allocate and the circuit evaluate).
pub const MAX_NODES: usize = 1 << 16;
/// Most trees in an ensemble.
pub const MAX_TREES: usize = 10_000;

impl CodeTree {
    /// The leaf `codes` (one per feature) reach: its values.
    ///
    /// # Panics
    /// On a tree that fails [`CodeEnsemble::validate`].
    pub fn leaf(&self, codes: &[i32]) -> &[f32] {
        let mut k = 0;
        loop {
            match &self.nodes[k] {
                CodeNode::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    k = if codes[*feature] <= *threshold {
                        *left
                    } else {
                        *right
                    }
                }
                CodeNode::Leaf { value } => return value,
            }
        }
    }
}

impl FloatTree {
    /// The leaf `x` (one value per feature) reaches: its values.
    ///
    /// # Panics
    /// On a tree that fails [`FloatEnsemble::validate`].
    pub fn leaf(&self, x: &[f32]) -> &[f32] {
        let mut k = 0;
        loop {
            match &self.nodes[k] {
                FloatNode::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    k = if x[*feature] < *threshold {
                        *left
                    } else {
                        *right
                    }
                }
                FloatNode::Leaf { value } => return value,
            }
        }
    }

    /// The same tree on codes of `quantizer`: a split `x < c` becomes `code ≤ t` with `t` the
    /// largest code whose value `low + t · step` is below `c`, so the code tree on a row's
    /// codes takes the path the float tree takes on the row's dequantized values.
    pub fn quantize(&self, quantizer: &FeatureQuantizer, qmax: i32) -> CodeTree {
        let nodes = self
            .nodes
            .iter()
            .map(|n| match n {
                FloatNode::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    // value(q) < c  ⇔  q < (c − low) / step; the largest such integer q.
                    let f = *feature;
                    let r =
                        (*threshold as f64 - quantizer.low[f] as f64) / quantizer.step[f] as f64;
                    let mut t = r.ceil() as i64 - 1;
                    // Guard the f32 arithmetic the circuit's dequantization would use.
                    while t >= 0 && quantizer.value(f, t as i32) >= *threshold {
                        t -= 1;
                    }
                    while t < qmax as i64 && quantizer.value(f, (t + 1) as i32) < *threshold {
                        t += 1;
                    }
                    CodeNode::Split {
                        feature: f,
                        threshold: t.clamp(-1, qmax as i64) as i32,
                        left: *left,
                        right: *right,
                    }
                }
                FloatNode::Leaf { value } => CodeNode::Leaf {
                    value: value.clone(),
                },
            })
            .collect();
        CodeTree { nodes }
    }
}

/// The tree structure shared by both node kinds, for validation.
trait Nodes {
    fn split(&self, k: usize) -> Option<(usize, usize, usize)>;
    fn leaf_len(&self, k: usize) -> Option<usize>;
    fn len(&self) -> usize;
}

impl Nodes for CodeTree {
    fn split(&self, k: usize) -> Option<(usize, usize, usize)> {
        match &self.nodes[k] {
            CodeNode::Split {
                feature,
                left,
                right,
                ..
            } => Some((*feature, *left, *right)),
            CodeNode::Leaf { .. } => None,
        }
    }
    fn leaf_len(&self, k: usize) -> Option<usize> {
        match &self.nodes[k] {
            CodeNode::Leaf { value } => Some(value.len()),
            CodeNode::Split { .. } => None,
        }
    }
    fn len(&self) -> usize {
        self.nodes.len()
    }
}

impl Nodes for FloatTree {
    fn split(&self, k: usize) -> Option<(usize, usize, usize)> {
        match &self.nodes[k] {
            FloatNode::Split {
                feature,
                left,
                right,
                ..
            } => Some((*feature, *left, *right)),
            FloatNode::Leaf { .. } => None,
        }
    }
    fn leaf_len(&self, k: usize) -> Option<usize> {
        match &self.nodes[k] {
            FloatNode::Leaf { value } => Some(value.len()),
            FloatNode::Split { .. } => None,
        }
    }
    fn len(&self) -> usize {
        self.nodes.len()
    }
}

/// Every node reachable once from the root, children after parents, features and leaf sizes in
/// range.
fn validate_tree(
    t: &impl Nodes,
    i: usize,
    features: usize,
    outputs: usize,
) -> Result<(), TreeError> {
    let bad = |m: String| Err(TreeError::Invalid(format!("tree {i}: {m}")));
    if t.len() == 0 || t.len() > MAX_NODES {
        return bad(format!("{} nodes (allowed 1 to {MAX_NODES})", t.len()));
    }
    let mut seen = vec![false; t.len()];
    let mut stack = vec![0usize];
    while let Some(k) = stack.pop() {
        if std::mem::replace(&mut seen[k], true) {
            return bad(format!("node {k} is reached twice"));
        }
        match t.split(k) {
            Some((f, l, r)) => {
                if f >= features {
                    return bad(format!("node {k} splits on feature {f} of {features}"));
                }
                for c in [l, r] {
                    if c <= k || c >= t.len() {
                        return bad(format!(
                            "node {k} has child {c}; children must follow their parent within the {} nodes",
                            t.len()
                        ));
                    }
                    stack.push(c);
                }
            }
            None => {
                let n = t.leaf_len(k).unwrap_or(0);
                if n != outputs {
                    return bad(format!(
                        "leaf {k} has {n} values, the ensemble {outputs} outputs"
                    ));
                }
            }
        }
    }
    Ok(())
}

impl<T> Ensemble<T> {
    fn validate_shape(&self) -> Result<(), TreeError> {
        let bad = |m: String| Err(TreeError::Invalid(m));
        if self.features == 0 || self.outputs == 0 {
            return bad("an ensemble needs at least one feature and one output".into());
        }
        if self.trees.is_empty() || self.trees.len() > MAX_TREES {
            return bad(format!(
                "{} trees (allowed 1 to {MAX_TREES})",
                self.trees.len()
            ));
        }
        if self.base.len() != self.outputs || self.base.iter().any(|v| !v.is_finite()) {
            return bad(format!("base needs {} finite values", self.outputs));
        }
        if !self.readout.is_argmax() && self.outputs != 1 {
            return bad(format!(
                "the {} readout reads one output, the ensemble has {}",
                self.readout.name(),
                self.outputs
            ));
        }
        Ok(())
    }

    /// The prediction from the summed outputs: the class index, or the value.
    pub fn read(&self, outputs: &[f32]) -> f64 {
        match self.readout {
            Readout::Argmax => qfhe_circuit::argmax(outputs) as f64,
            Readout::Sign => f64::from(u8::from(outputs[0] > 0.0)),
            Readout::Value => outputs[0] as f64,
        }
    }
}

impl CodeEnsemble {
    /// Check the structure: tree shapes, features, leaf sizes, finite values.
    ///
    /// # Errors
    /// [`TreeError::Invalid`] naming the tree and node.
    pub fn validate(&self) -> Result<(), TreeError> {
        self.validate_shape()?;
        for (i, t) in self.trees.iter().enumerate() {
            validate_tree(t, i, self.features, self.outputs)?;
            let finite = t.nodes.iter().all(|n| match n {
                CodeNode::Leaf { value } => value.iter().all(|v| v.is_finite()),
                CodeNode::Split { .. } => true,
            });
            if !finite {
                return Err(TreeError::Invalid(format!(
                    "tree {i}: a leaf value is not finite"
                )));
            }
        }
        Ok(())
    }

    /// The summed outputs for one row of codes (`features` values), `f32`.
    pub fn outputs(&self, codes: &[i32]) -> Vec<f32> {
        let mut out = self.base.clone();
        for t in &self.trees {
            for (o, v) in out.iter_mut().zip(t.leaf(codes)) {
                *o += v;
            }
        }
        out
    }

    /// The prediction for one row of codes ([`Ensemble::read`]).
    pub fn predict(&self, codes: &[i32]) -> f64 {
        self.read(&self.outputs(codes))
    }
}

impl FloatEnsemble {
    /// Check the structure: tree shapes, features, leaf sizes, finite thresholds and values.
    ///
    /// # Errors
    /// [`TreeError::Invalid`] naming the tree and node.
    pub fn validate(&self) -> Result<(), TreeError> {
        self.validate_shape()?;
        for (i, t) in self.trees.iter().enumerate() {
            validate_tree(t, i, self.features, self.outputs)?;
            let finite = t.nodes.iter().all(|n| match n {
                FloatNode::Leaf { value } => value.iter().all(|v| v.is_finite()),
                FloatNode::Split { threshold, .. } => threshold.is_finite(),
            });
            if !finite {
                return Err(TreeError::Invalid(format!(
                    "tree {i}: a threshold or leaf value is not finite"
                )));
            }
        }
        Ok(())
    }

    /// The summed outputs (margins, before any sigmoid or softmax) for one row.
    pub fn outputs(&self, x: &[f32]) -> Vec<f32> {
        let mut out = self.base.clone();
        for t in &self.trees {
            for (o, v) in out.iter_mut().zip(t.leaf(x)) {
                *o += v;
            }
        }
        out
    }

    /// The prediction for one row ([`Ensemble::read`]).
    pub fn predict(&self, x: &[f32]) -> f64 {
        self.read(&self.outputs(x))
    }

    /// The split thresholds of every tree, per feature (`features` lists, in tree order, with
    /// repeats): the edges of a quantizer on which the ensemble on codes takes exactly the
    /// fp32 ensemble's path ([`FeatureQuantizer::with_edges`]).
    pub fn thresholds(&self) -> Vec<Vec<f32>> {
        let mut per_feature = vec![Vec::new(); self.features];
        for t in &self.trees {
            for n in &t.nodes {
                if let FloatNode::Split {
                    feature, threshold, ..
                } = n
                {
                    if let Some(list) = per_feature.get_mut(*feature) {
                        list.push(*threshold);
                    }
                }
            }
        }
        per_feature
    }

    /// The ensemble on codes of `quantizer` ([`FloatTree::quantize`]).
    ///
    /// # Errors
    /// [`TreeError::Invalid`] when the quantizer covers another number of features.
    pub fn quantize(
        &self,
        quantizer: &FeatureQuantizer,
        bits: u32,
    ) -> Result<CodeEnsemble, TreeError> {
        if quantizer.features() != self.features {
            return Err(TreeError::Invalid(format!(
                "the quantizer covers {} features, the model has {}",
                quantizer.features(),
                self.features
            )));
        }
        let qmax = (1i32 << bits) - 1;
        Ok(Ensemble {
            features: self.features,
            outputs: self.outputs,
            base: self.base.clone(),
            trees: self
                .trees
                .iter()
                .map(|t| t.quantize(quantizer, qmax))
                .collect(),
            readout: self.readout,
        })
    }
}
