//! An ONNX file as qfhe reads it: nodes in topological order, constant tensors by name, the
//! graph's one input and its outputs — every size checked before anything is allocated from it.

use crate::error::{OnnxError, Result};
use crate::proto::{self, attribute_type, data_type};
use prost::Message;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Largest file read, in bytes (512 MiB).
pub const MAX_FILE_BYTES: u64 = 512 << 20;
/// Largest number of elements of one tensor, and of all constant tensors together (2^26).
pub const MAX_ELEMENTS: usize = 1 << 26;
/// Largest number of nodes.
pub const MAX_NODES: usize = 100_000;
/// Largest tensor rank.
pub const MAX_RANK: usize = 8;

/// A constant tensor (an initializer or a `Constant` node's value), its values widened to
/// `f64` (exact for every `f32` and for integers below 2^53).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions (row-major); empty for a scalar.
    pub dims: Vec<usize>,
    /// Values, `dims.product()` of them.
    pub data: Vec<f64>,
    /// The ONNX element type (`TensorProto.DataType`).
    pub data_type: i32,
}

impl Tensor {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The single value of a tensor with one element.
    pub fn scalar(&self) -> Option<f64> {
        (self.data.len() == 1).then(|| self.data[0])
    }
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// `FLOAT`.
    Float(f32),
    /// `INT`.
    Int(i64),
    /// `STRING` (UTF-8; other bytes are replaced).
    Str(String),
    /// `TENSOR`.
    Tensor(Tensor),
    /// `FLOATS`.
    Floats(Vec<f32>),
    /// `INTS`.
    Ints(Vec<i64>),
    /// Any other kind (graphs, string lists, …): qfhe reads none of them.
    Other,
}

/// One node.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Its name, or `"<op_type> #<index>"` when the file gives none.
    pub name: String,
    /// Operator domain, `""` for the default ONNX domain (`ai.onnx` is mapped to `""`).
    pub domain: String,
    /// Operator type.
    pub op_type: String,
    /// Input value names (`""` for an omitted optional input).
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    /// Attributes by name.
    pub attrs: BTreeMap<String, Attr>,
}

impl Node {
    /// An integer attribute, or `default`.
    pub fn int(&self, name: &str, default: i64) -> i64 {
        match self.attrs.get(name) {
            Some(Attr::Int(v)) => *v,
            _ => default,
        }
    }

    /// A float attribute, or `default`.
    pub fn float(&self, name: &str, default: f32) -> f32 {
        match self.attrs.get(name) {
            Some(Attr::Float(v)) => *v,
            _ => default,
        }
    }

    /// A string attribute, or `default`.
    pub fn string<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        match self.attrs.get(name) {
            Some(Attr::Str(v)) => v,
            _ => default,
        }
    }

    /// An integer-list attribute, if present.
    pub fn ints(&self, name: &str) -> Option<&[i64]> {
        match self.attrs.get(name) {
            Some(Attr::Ints(v)) => Some(v),
            _ => None,
        }
    }
}

/// A graph input that is not a constant: its name and static shape (`None` for a symbolic
/// dimension such as the batch).
#[derive(Debug, Clone, PartialEq)]
pub struct GraphInput {
    /// Value name.
    pub name: String,
    /// Dimensions; `None` where the file gives a name or nothing.
    pub shape: Vec<Option<usize>>,
}

/// A checked ONNX graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// `(domain, version)` of every operator set the model imports (`""` is `ai.onnx`).
    pub opsets: Vec<(String, i64)>,
    /// The graph inputs that are not initializers.
    pub inputs: Vec<GraphInput>,
    /// The graph's output value names.
    pub outputs: Vec<String>,
    /// Nodes in an order where every node follows the producers of its inputs; `Constant`
    /// nodes are moved into [`Graph::constants`].
    pub nodes: Vec<Node>,
    /// Constant tensors by value name.
    pub constants: HashMap<String, Tensor>,
}

impl Graph {
    /// Read and check an ONNX file.
    ///
    /// # Errors
    /// [`OnnxError::Io`] when it cannot be read; [`OnnxError::Malformed`] when it is larger
    /// than [`MAX_FILE_BYTES`] or not an ONNX model; as [`Graph::from_bytes`].
    pub fn load(path: &Path) -> Result<Self> {
        let io = |e: std::io::Error| OnnxError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_FILE_BYTES {
            return Err(OnnxError::Malformed(format!(
                "{} is {len} bytes; qfhe reads models up to {MAX_FILE_BYTES} bytes",
                path.display()
            )));
        }
        Self::from_bytes(&std::fs::read(path).map_err(io)?)
    }

    /// Decode and check an ONNX model: tensor sizes against their data, external data refused,
    /// every node input produced exactly once (by a node, a constant or a graph input), no
    /// cycle; nodes sorted topologically.
    ///
    /// # Errors
    /// [`OnnxError::Malformed`] for bytes that are not an ONNX model or a tensor whose size
    /// is inconsistent or over [`MAX_ELEMENTS`]; [`OnnxError::Graph`] for a broken graph.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(OnnxError::Malformed(format!(
                "{} bytes; qfhe reads models up to {MAX_FILE_BYTES} bytes",
                bytes.len()
            )));
        }
        let model = proto::ModelProto::decode(bytes)
            .map_err(|e| OnnxError::Malformed(format!("protobuf decoding failed: {e}")))?;
        let graph = model.graph.ok_or_else(|| {
            OnnxError::Malformed("the model has no graph (is this an ONNX model file?)".into())
        })?;
        if graph.node.len() > MAX_NODES {
            return Err(OnnxError::Malformed(format!(
                "{} nodes; qfhe reads graphs of up to {MAX_NODES}",
                graph.node.len()
            )));
        }
        let opsets = model
            .opset_import
            .iter()
            .map(|o| (normal_domain(&o.domain), o.version))
            .collect();
        let mut budget = MAX_ELEMENTS;
        let mut constants = HashMap::new();
        for t in &graph.initializer {
            let tensor = tensor(t, &mut budget)?;
            if constants.insert(t.name.clone(), tensor).is_some() {
                return Err(OnnxError::Graph(format!(
                    "two initializers are named '{}'",
                    t.name
                )));
            }
        }
        let inputs: Vec<GraphInput> = graph
            .input
            .iter()
            .filter(|v| !constants.contains_key(&v.name))
            .map(graph_input)
            .collect::<Result<_>>()?;
        let mut nodes = Vec::with_capacity(graph.node.len());
        for (index, n) in graph.node.iter().enumerate() {
            let node = node(n, index, &mut budget)?;
            if node.op_type == "Constant" && node.domain.is_empty() {
                let value = constant_value(&node)?;
                let [out] = &node.outputs[..] else {
                    return Err(OnnxError::Graph(format!(
                        "Constant node '{}' has {} outputs, not 1",
                        node.name,
                        node.outputs.len()
                    )));
                };
                if constants.insert(out.clone(), value).is_some() {
                    return Err(OnnxError::Graph(format!("two constants are named '{out}'")));
                }
            } else {
                nodes.push(node);
            }
        }
        let outputs = graph.output.iter().map(|v| v.name.clone()).collect();
        let nodes = topological(nodes, &inputs, &constants)?;
        let g = Graph {
            opsets,
            inputs,
            outputs,
            nodes,
            constants,
        };
        g.check_outputs()?;
        Ok(g)
    }

    /// The version of the default (`ai.onnx`) operator set, if imported.
    pub fn onnx_opset(&self) -> Option<i64> {
        self.opsets
            .iter()
            .find(|(d, _)| d.is_empty())
            .map(|&(_, v)| v)
    }

    /// The node that produces `value`, if any.
    pub fn producer(&self, value: &str) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|n| n.outputs.iter().any(|o| o == value))
    }

    /// The nodes that read `value`.
    pub fn consumers<'a>(&'a self, value: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes
            .iter()
            .filter(move |n| n.inputs.iter().any(|i| i == value))
    }

    fn check_outputs(&self) -> Result<()> {
        if self.outputs.is_empty() {
            return Err(OnnxError::Graph("the graph has no output".into()));
        }
        for o in &self.outputs {
            let known = self.constants.contains_key(o)
                || self.inputs.iter().any(|i| &i.name == o)
                || self.producer(o).is_some();
            if !known {
                return Err(OnnxError::Graph(format!(
                    "graph output '{o}' is produced by no node"
                )));
            }
        }
        Ok(())
    }
}

fn normal_domain(d: &str) -> String {
    if d == "ai.onnx" {
        String::new()
    } else {
        d.to_string()
    }
}

fn graph_input(v: &proto::ValueInfoProto) -> Result<GraphInput> {
    let dims = v
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| s.dim.as_slice())
        .unwrap_or_default();
    if dims.len() > MAX_RANK {
        return Err(OnnxError::Malformed(format!(
            "graph input '{}' has rank {}; qfhe reads ranks up to {MAX_RANK}",
            v.name,
            dims.len()
        )));
    }
    let shape = dims
        .iter()
        .map(|d| {
            if d.dim_param.is_empty() && d.dim_value > 0 {
                usize::try_from(d.dim_value).ok()
            } else {
                None
            }
        })
        .collect();
    Ok(GraphInput {
        name: v.name.clone(),
        shape,
    })
}

fn node(n: &proto::NodeProto, index: usize, budget: &mut usize) -> Result<Node> {
    let name = if n.name.is_empty() {
        format!("{} #{index}", n.op_type)
    } else {
        n.name.clone()
    };
    let mut attrs = BTreeMap::new();
    for a in &n.attribute {
        if !a.ref_attr_name.is_empty() {
            return Err(OnnxError::Node {
                node: name,
                op: n.op_type.clone(),
                message: format!(
                    "attribute '{}' refers to a function attribute; export without local functions",
                    a.name
                ),
            });
        }
        let value = match a.r#type {
            attribute_type::FLOAT => Attr::Float(a.f),
            attribute_type::INT => Attr::Int(a.i),
            attribute_type::STRING => Attr::Str(String::from_utf8_lossy(&a.s).into_owned()),
            attribute_type::TENSOR => match &a.t {
                Some(t) => Attr::Tensor(tensor(t, budget)?),
                None => Attr::Other,
            },
            attribute_type::FLOATS => Attr::Floats(a.floats.clone()),
            attribute_type::INTS => Attr::Ints(a.ints.clone()),
            attribute_type::GRAPH | attribute_type::STRINGS => Attr::Other,
            _ => Attr::Other,
        };
        attrs.insert(a.name.clone(), value);
    }
    Ok(Node {
        name,
        domain: normal_domain(&n.domain),
        op_type: n.op_type.clone(),
        inputs: n.input.clone(),
        outputs: n.output.clone(),
        attrs,
    })
}

fn constant_value(node: &Node) -> Result<Tensor> {
    let scalar = |data: Vec<f64>, data_type| Tensor {
        dims: vec![],
        data,
        data_type,
    };
    match (
        node.attrs.get("value"),
        node.attrs.get("value_float"),
        node.attrs.get("value_int"),
        node.attrs.get("value_floats"),
        node.attrs.get("value_ints"),
    ) {
        (Some(Attr::Tensor(t)), ..) => Ok(t.clone()),
        (_, Some(Attr::Float(f)), ..) => Ok(scalar(vec![*f as f64], data_type::FLOAT)),
        (_, _, Some(Attr::Int(i)), ..) => Ok(scalar(vec![*i as f64], data_type::INT64)),
        (_, _, _, Some(Attr::Floats(v)), _) => Ok(Tensor {
            dims: vec![v.len()],
            data: v.iter().map(|&f| f as f64).collect(),
            data_type: data_type::FLOAT,
        }),
        (_, _, _, _, Some(Attr::Ints(v))) => Ok(Tensor {
            dims: vec![v.len()],
            data: v.iter().map(|&i| i as f64).collect(),
            data_type: data_type::INT64,
        }),
        _ => Err(OnnxError::Node {
            node: node.name.clone(),
            op: "Constant".into(),
            message:
                "no value qfhe reads (value, value_float, value_int, value_floats, value_ints)"
                    .into(),
        }),
    }
}

/// A `TensorProto`'s values, its element count checked against its dimensions, the data it
/// carries and the remaining element `budget` before anything is allocated.
fn tensor(t: &proto::TensorProto, budget: &mut usize) -> Result<Tensor> {
    let bad = |m: String| OnnxError::Malformed(format!("tensor '{}': {m}", t.name));
    if t.data_location == 1 || !t.external_data.is_empty() {
        return Err(bad(
            "its data is in an external file, which qfhe does not read; save the model with \
             its weights inside (onnx.save_model(model, path, save_as_external_data=False))"
                .into(),
        ));
    }
    if t.dims.len() > MAX_RANK {
        return Err(bad(format!(
            "rank {}; qfhe reads ranks up to {MAX_RANK}",
            t.dims.len()
        )));
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    let mut count: usize = 1;
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| bad(format!("negative dimension {d}")))?;
        count = count
            .checked_mul(d)
            .filter(|&c| c <= MAX_ELEMENTS)
            .ok_or_else(|| bad(format!("{:?} has over {MAX_ELEMENTS} elements", t.dims)))?;
        dims.push(d);
    }
    *budget = budget.checked_sub(count).ok_or_else(|| {
        bad(format!(
            "the model's constants together exceed {MAX_ELEMENTS} elements"
        ))
    })?;
    let width = match t.data_type {
        data_type::FLOAT | data_type::INT32 | data_type::UINT32 => 4,
        data_type::UINT8 | data_type::INT8 | data_type::BOOL => 1,
        data_type::UINT16 | data_type::INT16 => 2,
        data_type::INT64 | data_type::DOUBLE | data_type::UINT64 => 8,
        other => {
            return Err(bad(format!(
                "element type {other} is not one qfhe reads (float, double, 8- to 64-bit integers, bool)"
            )))
        }
    };
    let data: Vec<f64> = if !t.raw_data.is_empty() {
        let want = count
            .checked_mul(width)
            .ok_or_else(|| bad("size overflows".into()))?;
        if t.raw_data.len() != want {
            return Err(bad(format!(
                "{} bytes of raw data for {count} elements of {width} bytes",
                t.raw_data.len()
            )));
        }
        let raw = &t.raw_data;
        let le = |i: usize| -> [u8; 8] {
            let mut b = [0u8; 8];
            b[..width].copy_from_slice(&raw[i * width..(i + 1) * width]);
            b
        };
        (0..count)
            .map(|i| {
                let b = le(i);
                match t.data_type {
                    data_type::FLOAT => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
                    data_type::DOUBLE => f64::from_le_bytes(b),
                    data_type::INT32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
                    data_type::UINT32 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
                    data_type::INT64 => i64::from_le_bytes(b) as f64,
                    data_type::UINT64 => u64::from_le_bytes(b) as f64,
                    data_type::INT16 => i16::from_le_bytes([b[0], b[1]]) as f64,
                    data_type::UINT16 => u16::from_le_bytes([b[0], b[1]]) as f64,
                    data_type::INT8 => b[0] as i8 as f64,
                    _ => b[0] as f64, // UINT8, BOOL
                }
            })
            .collect()
    } else {
        let typed: Vec<f64> = match t.data_type {
            data_type::FLOAT => t.float_data.iter().map(|&v| v as f64).collect(),
            data_type::DOUBLE => t.double_data.clone(),
            data_type::INT64 => t.int64_data.iter().map(|&v| v as f64).collect(),
            data_type::UINT32 | data_type::UINT64 => {
                t.uint64_data.iter().map(|&v| v as f64).collect()
            }
            // int32_data carries every type of 32 bits or fewer (onnx.proto).
            _ => t.int32_data.iter().map(|&v| v as f64).collect(),
        };
        if typed.len() != count {
            return Err(bad(format!(
                "{} values for dimensions {:?} ({count} elements)",
                typed.len(),
                t.dims
            )));
        }
        typed
    };
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(bad(format!("element {i} is not a finite number")));
    }
    Ok(Tensor {
        dims,
        data,
        data_type: t.data_type,
    })
}

/// Kahn's algorithm over value names: a node is ready once each of its inputs is a constant, a
/// graph input or an output of a placed node.
fn topological(
    nodes: Vec<Node>,
    inputs: &[GraphInput],
    constants: &HashMap<String, Tensor>,
) -> Result<Vec<Node>> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.outputs.iter().filter(|o| !o.is_empty()) {
            let taken = constants.contains_key(o)
                || inputs.iter().any(|g| &g.name == o)
                || producer.insert(o, i).is_some();
            if taken {
                return Err(OnnxError::Graph(format!(
                    "value '{o}' is produced twice (node '{}')",
                    n.name
                )));
            }
        }
    }
    let mut available: HashSet<&str> = inputs.iter().map(|g| g.name.as_str()).collect();
    available.extend(constants.keys().map(String::as_str));
    for n in &nodes {
        for i in n.inputs.iter().filter(|i| !i.is_empty()) {
            if !available.contains(i.as_str()) && !producer.contains_key(i.as_str()) {
                return Err(OnnxError::Graph(format!(
                    "input '{i}' of node '{}' is produced by no node and is no initializer or \
                     graph input (a missing initializer?)",
                    n.name
                )));
            }
        }
    }
    // Each node waits on its inputs that a node produces (one count per input slot).
    let mut waiting = vec![0usize; nodes.len()];
    let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for v in n.inputs.iter().filter(|v| !v.is_empty()) {
            if !available.contains(v.as_str()) {
                waiting[i] += 1;
                readers.entry(v.as_str()).or_default().push(i);
            }
        }
    }
    let mut ready: Vec<usize> = (0..nodes.len()).filter(|&i| waiting[i] == 0).collect();
    ready.reverse();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop() {
        order.push(i);
        for o in &nodes[i].outputs {
            for &r in readers
                .get(o.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                waiting[r] -= 1;
                if waiting[r] == 0 {
                    ready.push(r);
                }
            }
        }
    }
    if order.len() != nodes.len() {
        let stuck = (0..nodes.len())
            .find(|&i| waiting[i] > 0)
            .map(|i| nodes[i].name.clone())
            .unwrap_or_default();
        return Err(OnnxError::Graph(format!(
            "the graph has a cycle (through node '{stuck}')"
        )));
    }
    let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .map(|i| slots[i].take().expect("each node placed once"))
        .collect())
}
