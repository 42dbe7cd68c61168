//! Model code written in the front end's language (R's `k_*()` functions, lambda layers,
//! custom losses and layers), recorded once as a graph of tensor ops: a trace. The front end
//! calls its function with symbolic tensors and each op it applies is recorded here, with
//! its output shape (the batch size unknown). The core then runs and differentiates the
//! recorded ops on any device and in any replica, with no call back into the front end: R
//! never runs on a worker thread.
//!
//! A trace is data (serde): saved with the model, read back without the code that made it,
//! and checked on the way in as any file is (arguments refer to earlier nodes, shapes are
//! inferred again, sizes are checked before anything is allocated).
pub mod ops;

use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
pub use ops::{Binary, Dim, Distribution, Op, Reduction, Unary};
use serde::{Deserialize, Serialize};

/// A shape with the sizes a trace knows: the batch axis (and sizes derived from it) unknown.
pub type SymShape = Vec<Option<usize>>;

/// One recorded op and its arguments (earlier nodes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    #[serde(flatten)]
    pub op: Op,
    #[serde(default)]
    pub args: Vec<usize>,
}

/// Recorded ops from some inputs (and weights) to some outputs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "TraceData", into = "TraceData")]
pub struct Trace {
    input_shapes: Vec<SymShape>,
    weight_shapes: Vec<Vec<usize>>,
    /// The node of each input and weight (inputs come first, except those added later with
    /// [`Trace::add_input`]: a custom loss's model tensors, met while it is traced).
    input_nodes: Vec<usize>,
    weight_nodes: Vec<usize>,
    nodes: Vec<Node>,
    /// Each node's shape (inferred as nodes are recorded, never read from a file).
    shapes: Vec<SymShape>,
    pub outputs: Vec<usize>,
}

/// A trace as it is written: the shapes are inferred again when it is read.
#[derive(Serialize, Deserialize)]
struct TraceData {
    inputs: Vec<SymShape>,
    #[serde(default)]
    weights: Vec<Vec<usize>>,
    nodes: Vec<Node>,
    outputs: Vec<usize>,
}

impl TryFrom<TraceData> for Trace {
    type Error = Error;
    fn try_from(d: TraceData) -> Result<Self> {
        let mut t = Trace::default();
        for node in d.nodes {
            match node.op {
                Op::Input { index } => {
                    let shape = d.inputs.get(index).filter(|_| index == t.input_nodes.len());
                    let shape = shape.ok_or_else(|| Error::Value(format!("a trace's input {} is out of order or undeclared", index)))?;
                    t.add_input(shape.clone())?;
                }
                Op::Weight { index } => {
                    let shape = d.weights.get(index).filter(|_| index == t.weight_nodes.len());
                    let shape = shape.ok_or_else(|| Error::Value(format!("a trace's weight {} is out of order or undeclared", index)))?;
                    t.add_weight(shape.clone())?;
                }
                op => {
                    t.record(op, node.args)?;
                }
            }
        }
        if t.input_nodes.len() != d.inputs.len() || t.weight_nodes.len() != d.weights.len() {
            return Err(Error::Value("a trace declares inputs or weights it has no node for".into()));
        }
        t.set_outputs(d.outputs)?;
        Ok(t)
    }
}

impl From<Trace> for TraceData {
    fn from(t: Trace) -> Self {
        TraceData { inputs: t.input_shapes, weights: t.weight_shapes, nodes: t.nodes, outputs: t.outputs }
    }
}

/// The values a forward run computed, kept for the backward run.
pub struct TraceRun {
    values: Vec<Tensor>,
    aux: Vec<ops::Aux>,
}

impl TraceRun {
    pub fn outputs(&self, trace: &Trace) -> Vec<Tensor> {
        trace.outputs.iter().map(|o| self.values[*o].clone()).collect()
    }
}

/// Gradients of a backward run: one per input and per weight (None where nothing flows).
pub struct TraceGrads {
    pub inputs: Vec<Option<Tensor>>,
    pub weights: Vec<Option<Tensor>>,
}

impl Trace {
    /// A trace of inputs of these shapes (the batch axis None) and weights of these shapes:
    /// nodes 0.. are the inputs, then the weights.
    pub fn new(input_shapes: Vec<SymShape>, weight_shapes: Vec<Vec<usize>>) -> Self {
        let mut t = Self::default();
        for s in input_shapes {
            t.push_input(s);
        }
        for s in weight_shapes {
            t.push_weight(s);
        }
        t
    }

    fn push_input(&mut self, shape: SymShape) -> usize {
        self.nodes.push(Node { op: Op::Input { index: self.input_shapes.len() }, args: Vec::new() });
        self.shapes.push(shape.clone());
        self.input_shapes.push(shape);
        self.input_nodes.push(self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    fn push_weight(&mut self, shape: Vec<usize>) -> usize {
        self.nodes.push(Node { op: Op::Weight { index: self.weight_shapes.len() }, args: Vec::new() });
        self.shapes.push(shape.iter().map(|d| Some(*d)).collect());
        self.weight_shapes.push(shape);
        self.weight_nodes.push(self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    /// Adds an input of `shape` after the others (its sizes checked as any op's): its node.
    pub fn add_input(&mut self, shape: SymShape) -> Result<usize> {
        check_size(&shape)?;
        Ok(self.push_input(shape))
    }

    /// Adds a weight of `shape`: its node.
    pub fn add_weight(&mut self, shape: Vec<usize>) -> Result<usize> {
        check_size(&shape.iter().map(|d| Some(*d)).collect::<Vec<_>>())?;
        Ok(self.push_weight(shape))
    }

    pub fn input_count(&self) -> usize {
        self.input_shapes.len()
    }

    pub fn weight_count(&self) -> usize {
        self.weight_shapes.len()
    }

    pub fn input_shapes(&self) -> &[SymShape] {
        &self.input_shapes
    }

    /// The node of input `i`.
    pub fn input_node(&self, i: usize) -> usize {
        self.input_nodes[i]
    }

    /// The node of weight `k`.
    pub fn weight_node(&self, k: usize) -> usize {
        self.weight_nodes[k]
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn shape(&self, node: usize) -> Result<&SymShape> {
        self.shapes.get(node).ok_or_else(|| Error::Value(format!("the trace has no node {}", node)))
    }

    /// Values a forward run keeps per batch row (every node whose first axis is the batch,
    /// for the memory check before a step); None on overflow.
    pub fn elements_per_row(&self) -> Option<u64> {
        self.shapes.iter().filter(|s| s.first() == Some(&None)).try_fold(0u64, |acc, s| {
            let per_row = s[1..].iter().try_fold(1u64, |a, d| a.checked_mul(d.unwrap_or(1) as u64))?;
            acc.checked_add(per_row)
        })
    }

    /// Records `op` on `args` (earlier nodes): its node index. Invalid ops (shapes that do
    /// not fit, axes out of range) are value errors saying what was wrong.
    pub fn record(&mut self, op: Op, args: Vec<usize>) -> Result<usize> {
        if matches!(op, Op::Input { .. } | Op::Weight { .. }) {
            return Err(Error::Value("inputs and weights are made with the trace".into()));
        }
        match ops::arity(&op) {
            Some(n) if n != args.len() => return Err(Error::Value(format!("{:?} takes {} argument(s), got {}", op, n, args.len()))),
            None if args.is_empty() => return Err(Error::Value(format!("{:?} takes at least one argument", op))),
            _ => {}
        }
        if let Some(a) = args.iter().find(|a| **a >= self.nodes.len()) {
            return Err(Error::Value(format!("an op's argument {} is not an earlier node (the trace has {})", a, self.nodes.len())));
        }
        let arg_shapes: Vec<&SymShape> = args.iter().map(|a| &self.shapes[*a]).collect();
        let shape = ops::output_shape(&op, &arg_shapes, &self.shapes)?;
        check_size(&shape)?;
        self.nodes.push(Node { op, args });
        self.shapes.push(shape);
        Ok(self.nodes.len() - 1)
    }

    pub fn set_outputs(&mut self, outputs: Vec<usize>) -> Result<()> {
        if outputs.is_empty() {
            return Err(Error::Value("a trace needs at least one output".into()));
        }
        if let Some(o) = outputs.iter().find(|o| **o >= self.nodes.len()) {
            return Err(Error::Value(format!("output {} is not a node of the trace", o)));
        }
        self.outputs = outputs;
        Ok(())
    }

    /// Runs the recorded ops on `inputs` and `weights` (all on one device). `training`
    /// turns dropout on; random draws come from `rng`.
    pub fn forward(&self, inputs: &[Tensor], weights: &[Tensor], training: bool, rng: &mut rand::rngs::StdRng) -> Result<TraceRun> {
        if inputs.len() != self.input_shapes.len() || weights.len() != self.weight_shapes.len() {
            return Err(Error::Value(format!(
                "the traced function takes {} input(s) and {} weight(s), got {} and {}",
                self.input_shapes.len(),
                self.weight_shapes.len(),
                inputs.len(),
                weights.len()
            )));
        }
        for (i, (x, s)) in inputs.iter().zip(&self.input_shapes).enumerate() {
            let fits = x.rank() == s.len() && x.dims().iter().zip(s).all(|(d, k)| k.is_none_or(|k| k == *d));
            if !fits {
                return Err(Error::Value(format!(
                    "the traced function's input {} was traced with shape ({}) but got ({})",
                    i + 1,
                    ops::show(s),
                    x.dims().iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let device: Device = inputs.first().or(weights.first()).map_or(Device::Cpu, |t| t.device().clone());
        let mut values: Vec<Tensor> = Vec::with_capacity(self.nodes.len());
        let mut aux = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let (v, a) = match node.op {
                Op::Input { index } => (inputs[index].clone(), None),
                Op::Weight { index } => (weights[index].clone(), None),
                _ => {
                    let args: Vec<&Tensor> = node.args.iter().map(|a| &values[*a]).collect();
                    ops::forward(&node.op, &args, &values, training, rng, &device)?
                }
            };
            values.push(v);
            aux.push(a);
        }
        Ok(TraceRun { values, aux })
    }

    /// The outputs of a trace of constants (no inputs or weights), its random draws seeded
    /// with `seed`: `k_*()` functions called on plain arrays.
    pub fn evaluate(&self, seed: u64) -> Result<Vec<Tensor>> {
        if self.input_count() != 0 || self.weight_count() != 0 {
            return Err(Error::State("only a trace of constants can be evaluated directly".into()));
        }
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
        Ok(self.forward(&[], &[], false, &mut rng)?.outputs(self))
    }

    /// Gradients of the inputs and weights from the gradients at the outputs (None: zero).
    pub fn backward(&self, run: &TraceRun, output_grads: &[Option<Tensor>]) -> Result<TraceGrads> {
        self.backward_for(run, output_grads, true)
    }

    /// [`Self::backward`]; with `need_inputs` false only the weights' gradients are made
    /// (the input of a model's first layer needs none), and no node's gradient is computed
    /// unless a weight's (or an input's) depends on it.
    pub fn backward_for(&self, run: &TraceRun, output_grads: &[Option<Tensor>], need_inputs: bool) -> Result<TraceGrads> {
        let mut wanted = vec![false; self.nodes.len()];
        for (j, node) in self.nodes.iter().enumerate() {
            wanted[j] = match node.op {
                Op::Input { .. } => need_inputs,
                Op::Weight { .. } => true,
                _ => node.args.iter().any(|a| wanted[*a]),
            };
        }
        let mut grads: Vec<Option<Tensor>> = vec![None; self.nodes.len()];
        for (o, g) in self.outputs.iter().zip(output_grads) {
            if let Some(g) = g {
                add_grad(&mut grads[*o], g.clone())?;
            }
        }
        for j in (0..self.nodes.len()).rev() {
            let node = &self.nodes[j];
            if node.args.is_empty() {
                continue;
            }
            if !wanted[j] {
                continue;
            }
            let Some(g) = grads[j].take() else { continue };
            let args: Vec<&Tensor> = node.args.iter().map(|a| &run.values[*a]).collect();
            let arg_wanted: Vec<bool> = node.args.iter().map(|a| wanted[*a]).collect();
            let arg_grads = ops::backward(&node.op, &args, &run.values[j], &run.aux[j], &g, &arg_wanted)?;
            for ((a, ga), w) in node.args.iter().zip(arg_grads).zip(arg_wanted) {
                if let (Some(ga), true) = (ga, w) {
                    add_grad(&mut grads[*a], ga)?;
                }
            }
        }
        let weights = self.weight_nodes.iter().map(|n| grads[*n].take()).collect();
        let inputs = self.input_nodes.iter().map(|n| grads[*n].take()).collect();
        Ok(TraceGrads { inputs, weights })
    }
}

/// Fixed sizes are checked as they are recorded (from a file, they are untrusted); sizes that
/// depend on the batch are checked with the step's memory.
fn check_size(shape: &SymShape) -> Result<()> {
    let known: Vec<usize> = shape.iter().map(|d| d.unwrap_or(1)).collect();
    crate::memory::check(
        "a traced op's output",
        crate::memory::elements(&known).and_then(|n| crate::memory::bytes(n, 4)),
        "make the tensors of the R function smaller",
    )
}

fn add_grad(slot: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        Some(acc) => (acc + g)?,
        None => g,
    });
    Ok(())
}

#[cfg(test)]
mod tests;
