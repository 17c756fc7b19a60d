//! A tree ensemble on feature codes → a circuit of two PBS stages (the GEMM form of tree
//! inference that Hummingbird and Concrete ML use):
//! 1. **comparisons**: one neuron per split of every tree reads its feature's code `x` (one
//!    weight, 1) and its table writes `P = [x ≤ t]`; the input scale spreads the `2^bits` codes
//!    over the usable half torus, so the table's one boundary sits half a code from either
//!    neighbour;
//! 2. **leaves**: one neuron per leaf and output reads the splits on its path with weight `+1`
//!    where the path goes left and `−1` where it goes right; the sum reaches its maximum `L`
//!    (the left turns on the path) exactly when every turn is taken, and the table writes the
//!    leaf's value code `E_jl` there and 0 elsewhere;
//! 3. **output**: the client decrypts `acc_j = Σ_leaves` of those codes, the leaf values
//!    quantized on one signed scale `σ` (`leaf_bits`), and adds the base score:
//!    `out_j = σ · acc_j + base_j`.
//!
//! Writing the value in the leaf's table, rather than a 0/1 indicator weighted by `E_jl` in the
//! output GEMM, keeps every output weight at 1: each PBS output carries the same noise whatever
//! it encodes, so the decrypted sum's noise is `√leaves` PBS outputs instead of `‖E_j‖₂` of them
//! (measured on a 20-tree forest: 8 against 690 accumulator units). A two-class ensemble of
//! class scores is read as one score `s_1 − s_0` with the sign readout (the same decisions,
//! half the leaf PBS). A tree of `s` splits and `s + 1` leaves costs `s + (s + 1) · k` PBS per
//! sample for `k` outputs a leaf writes; a tree that is a single leaf costs none (its value
//! joins the base).

use crate::ensemble::{CodeEnsemble, CodeNode, CodeTree};
use crate::error::TreeError;
use qfhe_circuit::lut::output_delta;
use qfhe_circuit::{
    Circuit, FeatureQuantizer, Gemm, Input, Meta, Neuron, OutputLayer, Readout, Source, Stage,
    Table,
};
use qfhe_core::EncodingConfig;

/// Quantization of a tree ensemble's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeQuant {
    /// Input code bits per feature (1 to 8); Concrete ML's default for trees is 6.
    pub in_bits: u32,
    /// Leaf value bits, signed (2 to 8): decrypted at full width, so they cost no PBS.
    pub leaf_bits: u32,
}

impl Default for TreeQuant {
    fn default() -> Self {
        Self {
            in_bits: 6,
            leaf_bits: 8,
        }
    }
}

/// Two class scores read by argmax become one score `s_1 − s_0` read by its sign (class 1
/// exactly when `s_1 > s_0`, as argmax's first maximum).
fn as_one_score(e: &CodeEnsemble) -> CodeEnsemble {
    if e.outputs != 2 || e.readout != Readout::Argmax {
        return e.clone();
    }
    let mut q = e.clone();
    q.outputs = 1;
    q.base = vec![e.base[1] - e.base[0]];
    q.readout = Readout::Sign;
    for t in &mut q.trees {
        for n in &mut t.nodes {
            if let CodeNode::Leaf { value } = n {
                *value = vec![value[1] - value[0]];
            }
        }
    }
    q
}

/// What the circuit computes: a two-class ensemble read as one score ([`lower_ensemble`]),
/// every leaf value rounded to the signed `leaf_bits` grid of one scale
/// `σ = max |v| / (2^(leaf_bits−1) − 1)`; and that scale.
pub fn quantize_leaves(e: &CodeEnsemble, leaf_bits: u32) -> (CodeEnsemble, f32) {
    let e = &as_one_score(e);
    let qmax = ((1i32 << (leaf_bits - 1)) - 1) as f32;
    let peak = e
        .trees
        .iter()
        .flat_map(|t| &t.nodes)
        .filter_map(|n| match n {
            CodeNode::Leaf { value } => Some(value.iter().fold(0f32, |m, v| m.max(v.abs()))),
            CodeNode::Split { .. } => None,
        })
        .fold(0f32, f32::max);
    let sigma = if peak > 0.0 { peak / qmax } else { 1.0 };
    let mut q = e.clone();
    for t in &mut q.trees {
        for n in &mut t.nodes {
            if let CodeNode::Leaf { value } = n {
                for v in value.iter_mut() {
                    *v = (*v / sigma).round().clamp(-qmax, qmax) * sigma;
                }
            }
        }
    }
    (q, sigma)
}

/// The splits on a leaf's path from the root: `(node or neuron, went_left)`.
type Path = Vec<(usize, bool)>;

/// Each tree's leaves with the splits on their paths.
fn paths(t: &CodeTree) -> Vec<(usize, Path)> {
    let mut out = Vec::new();
    let mut stack = vec![(0usize, Vec::new())];
    while let Some((k, path)) = stack.pop() {
        match &t.nodes[k] {
            CodeNode::Split { left, right, .. } => {
                let mut l = path.clone();
                l.push((k, true));
                let mut r = path;
                r.push((k, false));
                stack.push((*right, r));
                stack.push((*left, l));
            }
            CodeNode::Leaf { .. } => out.push((k, path)),
        }
    }
    out
}

/// Lower `e` (validated; thresholds on codes of `quant.in_bits` bits) with inputs quantized by
/// `quantizer` to a circuit on `encoding`'s torus layout.
///
/// # Errors
/// [`TreeError::Invalid`] for an invalid ensemble, a quantizer of another width, bit widths out
/// of range, or more splits or leaves than one GEMM may read; [`TreeError::Circuit`] if the
/// circuit fails validation.
pub fn lower_ensemble(
    e: &CodeEnsemble,
    quantizer: FeatureQuantizer,
    quant: TreeQuant,
    encoding: EncodingConfig,
    meta: Meta,
) -> Result<Circuit, TreeError> {
    e.validate()?;
    let bad = |m: String| Err(TreeError::Invalid(m));
    if quantizer.features() != e.features {
        return bad(format!(
            "the quantizer covers {} features, the ensemble {}",
            quantizer.features(),
            e.features
        ));
    }
    if !(1..=8).contains(&quant.in_bits) || !(2..=8).contains(&quant.leaf_bits) {
        return bad(format!(
            "input bits {} (1 to 8) or leaf bits {} (2 to 8) out of range",
            quant.in_bits, quant.leaf_bits
        ));
    }
    let (q, sigma) = quantize_leaves(e, quant.leaf_bits);
    let qmax_in = (1i64 << quant.in_bits) - 1;
    let tpu = encoding.torus_per_unit();
    let margin = (encoding.margin_slots as i64) << encoding.frac_bits;
    let usable = encoding.usable_units();
    let unit_slots = 1i64 << encoding.frac_bits;

    // Splits (stage 0) and leaves (stage 1), in tree order.
    let mut base: Vec<f32> = q.base.clone();
    let mut comparisons: Vec<(usize, i32)> = Vec::new(); // (feature, threshold)
    let mut leaves: Vec<(usize, Path, Vec<f32>)> = Vec::new(); // (tree, path over neurons, values)
    for (tree, t) in q.trees.iter().enumerate() {
        let mut ids = vec![usize::MAX; t.nodes.len()];
        for (k, n) in t.nodes.iter().enumerate() {
            if let CodeNode::Split {
                feature, threshold, ..
            } = n
            {
                ids[k] = comparisons.len();
                comparisons.push((*feature, *threshold));
            }
        }
        for (leaf, path) in paths(t) {
            let CodeNode::Leaf { value } = &t.nodes[leaf] else {
                unreachable!("paths end at leaves")
            };
            if path.is_empty() {
                base.iter_mut().zip(value).for_each(|(b, v)| *b += v);
            } else {
                leaves.push((
                    tree,
                    path.iter().map(|&(k, l)| (ids[k], l)).collect(),
                    value.clone(),
                ));
            }
        }
    }
    if comparisons.is_empty() {
        return bad(
            "every tree is a single leaf: the model is a constant, nothing to encrypt".into(),
        );
    }
    let depth = leaves.iter().map(|(_, p, _)| p.len()).max().unwrap_or(1);

    // Stage 0: codes spread over the usable half torus, one band of `u0` phase units each.
    let u0 = usable / (qmax_in + 1);
    let cmp_neurons = comparisons
        .iter()
        .map(|&(_, t)| {
            let boundary = margin + u0 * (t as i64 + 1);
            Neuron {
                mult: u0,
                offset: margin + u0 / 2,
                table: Table::from_fn(encoding.poly_size, |s| {
                    i32::from((s as i64) * unit_slots + unit_slots / 2 < boundary)
                }),
            }
        })
        .collect();
    // Stage 1: a leaf's sum spans `depth_l + 1` values; `depth + 1` bands fit every leaf.
    // One neuron per (leaf, output) with a non-zero value code.
    let leaf_qmax = (1i32 << (quant.leaf_bits - 1)) - 1;
    let k = q.outputs;
    let u1 = usable / (depth as i64 + 1);
    let mut leaf_weights = Vec::new();
    let mut leaf_inputs = Vec::new();
    let mut leaf_neurons = Vec::new();
    let mut feeds = Vec::new(); // output of each leaf neuron

    // One path through a tree is taken whatever the comparisons output, so at most one leaf
    // neuron per tree writes a non-zero code: a tree's group is its first neuron's index.
    let mut groups: Vec<u32> = Vec::new();
    let mut group_of_tree: Vec<Option<u32>> = vec![None; q.trees.len()];
    for (tree, path, value) in &leaves {
        let lefts = path.iter().filter(|p| p.1).count() as i64;
        let rights = path.len() as i64 - lefts;
        // acc = −rights sits at the centre of band 0; acc = lefts (reached) in band depth_l.
        let offset = margin + u1 / 2 + u1 * rights;
        let boundary = margin + u1 * (path.len() as i64);
        for (j, v) in value.iter().enumerate() {
            let code = ((v / sigma).round() as i32).clamp(-leaf_qmax, leaf_qmax);
            if code == 0 {
                continue;
            }
            for t in 0..depth {
                match path.get(t) {
                    Some(&(n, left)) => {
                        leaf_weights.push(if left { 1 } else { -1 });
                        leaf_inputs.push(n as u32);
                    }
                    None => {
                        leaf_weights.push(0);
                        leaf_inputs.push(0);
                    }
                }
            }
            let group = *group_of_tree[*tree].get_or_insert(leaf_neurons.len() as u32);
            groups.push(group);
            leaf_neurons.push(Neuron {
                mult: u1,
                offset,
                table: Table::from_fn(encoding.poly_size, |s| {
                    if (s as i64) * unit_slots + unit_slots / 2 >= boundary {
                        code
                    } else {
                        0
                    }
                }),
            });
            feeds.push(j);
        }
    }
    if leaf_neurons.is_empty() {
        return bad("every leaf value rounds to 0: the model is a constant".into());
    }
    let written = leaf_neurons.len();
    let mut out_weights = vec![0i32; k * written];
    for (l, &j) in feeds.iter().enumerate() {
        out_weights[j * written + l] = 1;
    }
    let splits = comparisons.len();
    let input = Input {
        features: e.features,
        bits: quant.in_bits,
        delta: u0 as u64 * tpu,
        quantizer: Some(quantizer),
    };
    let stage0 = Stage {
        label: Some("comparisons".into()),
        gemm: Gemm {
            sources: vec![Source::Input],
            d_in: e.features,
            d_out: splits,
            w_bits: 2,
            weights: vec![1; splits],
            inputs: Some(comparisons.iter().map(|&(f, _)| f as u32).collect()),
        },
        neurons: cmp_neurons,
        out_min: 0,
        out_max: 1,
        delta: u1 as u64 * tpu,
        exclusive: None,
    };
    let stage1 = Stage {
        label: Some("leaves".into()),
        gemm: Gemm {
            sources: vec![Source::Stage(0)],
            d_in: splits,
            d_out: written,
            w_bits: 2,
            weights: leaf_weights,
            inputs: Some(leaf_inputs),
        },
        neurons: leaf_neurons,
        out_min: -leaf_qmax,
        out_max: leaf_qmax,
        // Placeholder until the output rows are known.
        delta: 1 << 40,
        exclusive: Some(groups),
    };
    let output = OutputLayer {
        gemm: Gemm {
            sources: vec![Source::Stage(1)],
            d_in: written,
            d_out: k,
            w_bits: 2,
            weights: out_weights,
            inputs: None,
        },
        scale: vec![sigma; k],
        bias: base,
        readout: q.readout,
    };
    let mut c = Circuit {
        format: String::new(),
        version: 0,
        encoding,
        input,
        stages: vec![stage0, stage1],
        output,
        meta,
    };
    let rows: Vec<_> = (0..k).map(|j| c.output_row_stats(j)).collect();
    c.stages[1].delta = output_delta(&rows, &c.encoding);
    Ok(Circuit::new(
        c.encoding, c.input, c.stages, c.output, c.meta,
    )?)
}
