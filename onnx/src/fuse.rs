//! Subgraphs that exporters write for one function, fused back into that function's node
//! before the walk.
//!
//! PyTorch's exact GELU (`nn.GELU()`, `approximate="none"`) has no ONNX operator below opset
//! 20; the exporter writes `x · ½ · (1 + erf(x / √2))` as five or six nodes:
//! `Div(x, √2)` (or `Mul(x, 1/√2)`) → `Erf` → `Add(·, 1)` → two `Mul`s that bring in `x` and
//! `½` in either order (the `½` possibly as its own `Mul(x, ½)`). Each such chain becomes one
//! `Gelu` node (default domain, `approximate = "none"`), as opset 20 writes it, which the walk
//! reads like any other activation.

use crate::graph::{Attr, Graph, Node};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Largest relative distance from `√2`, `1/√2`, `1` or `½` accepted for a pattern constant
/// (exporters write them as `f32`, 6·10⁻⁸ apart from the real number).
const CONSTANT_TOLERANCE: f64 = 1e-6;

/// `graph`'s nodes with every erf-form GELU fused into one `Gelu` node (borrowed as they are
/// when there is none), and one note per fused chain, naming its nodes. A chain whose
/// intermediate values are read elsewhere is left as it is (its `Erf` is then listed as
/// unsupported). The constants are not copied: only nodes change.
pub fn fuse_gelu(graph: &Graph) -> (Cow<'_, [Node]>, Vec<String>) {
    let mut notes = vec![];
    let erfs: Vec<usize> = (0..graph.nodes.len())
        .filter(|&i| graph.nodes[i].domain.is_empty() && graph.nodes[i].op_type == "Erf")
        .collect();
    if erfs.is_empty() {
        return (Cow::Borrowed(&graph.nodes), notes);
    }
    let uses = Uses::new(graph);
    let mut removed: HashSet<usize> = HashSet::new();
    // Each fused node by the index of its chain's last node, whose place it takes.
    let mut fused: HashMap<usize, Node> = HashMap::new();
    for e in erfs {
        let Some(chain) = erf_chain(graph, &uses, e) else {
            continue;
        };
        if chain.nodes.iter().any(|n| removed.contains(n)) {
            continue;
        }
        let last = *chain.nodes.iter().max().expect("a chain has nodes");
        let names: Vec<&str> = chain
            .nodes
            .iter()
            .map(|&i| graph.nodes[i].name.as_str())
            .collect();
        notes.push(format!(
            "GELU (erf form) read from {} nodes ({}) as one activation",
            names.len(),
            names.join(", ")
        ));
        let mut attrs = BTreeMap::new();
        attrs.insert("approximate".to_string(), Attr::Str("none".into()));
        fused.insert(
            last,
            Node {
                name: graph.nodes[e].name.clone(),
                domain: String::new(),
                op_type: "Gelu".into(),
                inputs: vec![chain.x],
                outputs: vec![chain.output],
                attrs,
            },
        );
        removed.extend(chain.nodes);
    }
    if fused.is_empty() {
        return (Cow::Borrowed(&graph.nodes), notes);
    }
    // In the last node's place, the fused node's input `x` is produced before the chain's
    // first node, and every reader of its output comes after the last.
    let nodes = graph
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match fused.remove(&i) {
            Some(gelu) => Some(gelu),
            None => (!removed.contains(&i)).then(|| n.clone()),
        })
        .collect();
    (Cow::Owned(nodes), notes)
}

/// A matched chain: its input, its output and the indices of its nodes.
struct Chain {
    x: String,
    output: String,
    nodes: Vec<usize>,
}

fn near(v: f64, target: f64) -> bool {
    ((v - target) / target).abs() < CONSTANT_TOLERANCE
}

/// The value of `v` when it is a constant with one element.
fn scalar(graph: &Graph, v: &str) -> Option<f64> {
    graph.constants.get(v).and_then(|t| t.scalar())
}

/// The scalar constant input of a two-input node, and the other input.
fn constant_operand<'a>(graph: &'a Graph, node: &'a Node) -> Option<(f64, &'a str)> {
    let [a, b] = &node.inputs[..] else {
        return None;
    };
    match (scalar(graph, a), scalar(graph, b)) {
        (None, Some(c)) => Some((c, a)),
        (Some(c), None) if node.op_type != "Div" => Some((c, b)),
        _ => None,
    }
}

/// Who produces and who reads each value, built once (a graph may hold many `Erf` nodes).
struct Uses<'a> {
    producer: HashMap<&'a str, usize>,
    /// Readers, once per input slot (a node reading a value twice is listed twice).
    readers: HashMap<&'a str, Vec<usize>>,
    outputs: HashSet<&'a str>,
}

impl<'a> Uses<'a> {
    fn new(graph: &'a Graph) -> Self {
        let mut producer = HashMap::new();
        let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in graph.nodes.iter().enumerate() {
            for o in &n.outputs {
                producer.insert(o.as_str(), i);
            }
            for v in &n.inputs {
                readers.entry(v.as_str()).or_default().push(i);
            }
        }
        let outputs = graph.outputs.iter().map(String::as_str).collect();
        Self {
            producer,
            readers,
            outputs,
        }
    }

    /// The index of the only node reading `value`, when exactly one node reads it, once, and
    /// it is not a graph output.
    fn sole_reader(&self, value: &str) -> Option<usize> {
        if self.outputs.contains(value) {
            return None;
        }
        match self.readers.get(value)?[..] {
            [i] => Some(i),
            _ => None,
        }
    }

    fn producer(&self, value: &str) -> Option<usize> {
        self.producer.get(value).copied()
    }
}

fn is_op(node: &Node, op: &str) -> bool {
    node.domain.is_empty() && node.op_type == op && node.outputs.len() == 1
}

/// The erf-form GELU around the `Erf` node `e`, if the nodes around it compute exactly
/// `x · ½ · (1 + erf(x/√2))` and nothing else reads their intermediate values.
fn erf_chain(graph: &Graph, uses: &Uses, e: usize) -> Option<Chain> {
    let erf = &graph.nodes[e];
    let [erf_in] = &erf.inputs[..] else {
        return None;
    };
    let d = uses.producer(erf_in)?;
    let div = &graph.nodes[d];
    let (c, x) = constant_operand(graph, div)?;
    let scaled = (is_op(div, "Div") && near(c, std::f64::consts::SQRT_2))
        || (is_op(div, "Mul") && near(c, std::f64::consts::FRAC_1_SQRT_2));
    if !scaled || uses.sole_reader(erf_in)? != e || graph.constants.contains_key(x) {
        return None;
    }
    let a = uses.sole_reader(&erf.outputs[0])?;
    let add = &graph.nodes[a];
    let (one, _) = constant_operand(graph, add)?;
    if !is_op(add, "Add") || !near(one, 1.0) {
        return None;
    }
    let mut nodes = vec![d, e, a];
    // Two Muls bring in x and ½ in either order; a separate Mul(x, ½) may carry both.
    let (mut value, mut half, mut has_x) = (add.outputs[0].clone(), 1.0f64, false);
    while !(has_x && near(half, 0.5)) {
        let m = uses.sole_reader(&value)?;
        let mul = &graph.nodes[m];
        if !is_op(mul, "Mul") || nodes.len() >= 6 {
            return None;
        }
        let other = mul.inputs.iter().find(|v| **v != value)?;
        if let Some(c) = scalar(graph, other) {
            half *= c;
        } else if other == x && !has_x {
            has_x = true;
        } else {
            // `other` must be Mul(x, c) read only here.
            let h = uses.producer(other)?;
            let (c, from) = constant_operand(graph, &graph.nodes[h])?;
            if has_x || from != x || !is_op(&graph.nodes[h], "Mul") || uses.sole_reader(other)? != m
            {
                return None;
            }
            half *= c;
            has_x = true;
            nodes.push(h);
        }
        nodes.push(m);
        value = mul.outputs[0].clone();
    }
    nodes.sort_unstable();
    Some(Chain {
        x: x.to_string(),
        output: value,
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{GraphInput, Tensor};
    use std::collections::HashMap;

    fn node(op: &str, inputs: &[&str], output: &str) -> Node {
        Node {
            name: format!("{op}_{output}"),
            domain: String::new(),
            op_type: op.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.into()],
            attrs: BTreeMap::new(),
        }
    }

    fn graph(nodes: Vec<Node>, output: &str) -> Graph {
        let scalar = |v: f64| Tensor {
            dims: vec![],
            data: vec![v],
            data_type: 1,
        };
        let constants = HashMap::from([
            ("sqrt2".to_string(), scalar(std::f32::consts::SQRT_2 as f64)),
            (
                "inv_sqrt2".into(),
                scalar(std::f32::consts::FRAC_1_SQRT_2 as f64),
            ),
            ("one".into(), scalar(1.0)),
            ("half".into(), scalar(0.5)),
            ("two".into(), scalar(2.0)),
        ]);
        Graph {
            opsets: vec![(String::new(), 17)],
            inputs: vec![GraphInput {
                name: "in".into(),
                shape: vec![Some(1), Some(4)],
            }],
            outputs: vec![output.into()],
            nodes,
            constants,
        }
    }

    /// `Relu(in) → x`, then the GELU nodes, then `Relu(y) → out`.
    fn around(gelu: Vec<Node>) -> Graph {
        let mut nodes = vec![node("Relu", &["in"], "x")];
        nodes.extend(gelu);
        nodes.push(node("Relu", &["y"], "out"));
        graph(nodes, "out")
    }

    fn ops(g: &Graph) -> Vec<&str> {
        g.nodes.iter().map(|n| n.op_type.as_str()).collect()
    }

    #[test]
    fn the_three_orders_pytorch_writes_fuse_into_one_gelu() {
        let orders = [
            // x·(1 + erf)·½, as the TorchScript exporter writes it.
            vec![
                node("Div", &["x", "sqrt2"], "d"),
                node("Erf", &["d"], "e"),
                node("Add", &["e", "one"], "a"),
                node("Mul", &["x", "a"], "m"),
                node("Mul", &["m", "half"], "y"),
            ],
            // (x·½)·(1 + erf), with x/√2 as a product.
            vec![
                node("Mul", &["x", "half"], "h"),
                node("Mul", &["x", "inv_sqrt2"], "d"),
                node("Erf", &["d"], "e"),
                node("Add", &["one", "e"], "a"),
                node("Mul", &["h", "a"], "y"),
            ],
            // ((1 + erf)·½)·x.
            vec![
                node("Div", &["x", "sqrt2"], "d"),
                node("Erf", &["d"], "e"),
                node("Add", &["e", "one"], "a"),
                node("Mul", &["a", "half"], "m"),
                node("Mul", &["m", "x"], "y"),
            ],
        ];
        for gelu in orders {
            let mut g = around(gelu);
            let (nodes, notes) = fuse_gelu(&g);
            g.nodes = nodes.into_owned();
            assert_eq!(notes.len(), 1, "{notes:?}");
            assert_eq!(ops(&g), ["Relu", "Gelu", "Relu"]);
            assert_eq!(
                (&g.nodes[1].inputs[..], &g.nodes[1].outputs[..]),
                (&["x".to_string()][..], &["y".to_string()][..])
            );
            assert_eq!(g.nodes[1].string("approximate", ""), "none");
        }
    }

    #[test]
    fn chains_that_compute_something_else_are_left_alone() {
        let wrong_constant = vec![
            node("Div", &["x", "two"], "d"),
            node("Erf", &["d"], "e"),
            node("Add", &["e", "one"], "a"),
            node("Mul", &["x", "a"], "m"),
            node("Mul", &["m", "half"], "y"),
        ];
        let no_half = vec![
            node("Div", &["x", "sqrt2"], "d"),
            node("Erf", &["d"], "e"),
            node("Add", &["e", "one"], "a"),
            node("Mul", &["x", "a"], "y"),
        ];
        let x_twice = vec![
            node("Div", &["x", "sqrt2"], "d"),
            node("Erf", &["d"], "e"),
            node("Add", &["e", "one"], "a"),
            node("Mul", &["x", "a"], "m"),
            node("Mul", &["m", "x"], "y"),
        ];
        for gelu in [wrong_constant, no_half, x_twice] {
            let g = around(gelu);
            let (nodes, notes) = fuse_gelu(&g);
            assert!(notes.is_empty());
            assert_eq!(nodes[..], g.nodes[..]);
        }
        // The erf is read a second time: fusing would drop that reader's input.
        let mut nodes = vec![
            node("Relu", &["in"], "x"),
            node("Div", &["x", "sqrt2"], "d"),
            node("Erf", &["d"], "e"),
            node("Add", &["e", "one"], "a"),
            node("Mul", &["x", "a"], "m"),
            node("Mul", &["m", "half"], "y"),
        ];
        nodes.push(node("Add", &["y", "e"], "out"));
        let g = graph(nodes, "out");
        let (nodes, notes) = fuse_gelu(&g);
        assert!(notes.is_empty());
        assert_eq!(nodes.len(), 7);
    }
}
