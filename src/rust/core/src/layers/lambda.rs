//! Lambda: a function of its inputs written in the front end's language (R's
//! `layer_lambda(f)`), run as the trace recorded from it (see `crate::trace`). Keras saves a
//! lambda's Python bytecode in `function`; rustgpu saves the trace there, which needs no
//! code to run again.
use super::{Cache, Example, ForwardContext, Inputs, LayerGrads, LayerOutput, LayerType, OutputGrad};
use crate::error::{Error, Result};
use crate::trace::{ops::show, Binary, Op, Trace, TraceRun, Unary};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lambda {
    /// The traced function: one input per tensor the layer is applied to, one output.
    #[serde(deserialize_with = "traced_function")]
    pub function: Trace,
    #[serde(default = "function_type")]
    pub function_type: String,
    /// Keras's `output_shape`: the trace knows the shape, so this is kept only to be written.
    #[serde(default)]
    pub output_shape: Option<serde_json::Value>,
    /// Keras's extra arguments of the function: already bound when it was traced.
    #[serde(default)]
    pub arguments: serde_json::Value,
}

fn function_type() -> String {
    "rustgpu_trace".into()
}

/// A trace, or an error saying that Python code (a Lambda saved by Keras) cannot run here.
pub(super) fn traced_function<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Trace, D::Error> {
    trace_of_value(serde_json::Value::deserialize(d)?)
}

/// Traces, each as [`traced_function`] reads one (a layer's weight losses).
pub(super) fn traced_functions<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<Trace>, D::Error> {
    Vec::<serde_json::Value>::deserialize(d)?.into_iter().map(trace_of_value).collect()
}

fn trace_of_value<E: serde::de::Error>(value: serde_json::Value) -> std::result::Result<Trace, E> {
    if value.is_object() {
        return serde_json::from_value(value).map_err(E::custom);
    }
    // The front end passes the trace as its JSON text.
    if let Some(text) = value.as_str().filter(|t| t.starts_with('{')) {
        return serde_json::from_str(text).map_err(E::custom);
    }
    Err(E::custom(
        "the function of this Lambda layer is Python code (saved by Keras), which rustgpu cannot run: \
         rebuild the layer in R with layer_lambda() and load the weights with load_model_weights_hdf5()",
    ))
}

/// Checks that a layer's trace was made for inputs of these shapes (without the batch axis).
pub(super) fn check_traced_inputs(function: &Trace, name: &str, class: &str, inputs: &[Vec<usize>]) -> Result<()> {
    let traced = function.input_shapes();
    let fits = inputs.len() == traced.len()
        && inputs
            .iter()
            .zip(traced)
            .all(|(i, t)| i.len() + 1 == t.len() && i.iter().zip(&t[1..]).all(|(d, k)| k.is_none_or(|k| k == *d || *d == crate::shape::VARIABLE)));
    if fits {
        return Ok(());
    }
    let given: Vec<String> = inputs.iter().map(|i| format!("(None, {})", crate::shape::join_dims(i))).collect();
    let traced: Vec<String> = traced.iter().map(|t| format!("({})", show(t))).collect();
    Err(Error::Value(format!(
        "layer \"{}\" ({}) was traced for inputs {} but is applied to {}: apply the layer to tensors of the shapes it was made for",
        name,
        class,
        traced.join(", "),
        given.join(", ")
    )))
}

/// The output shape (without the batch axis) of a layer's trace on inputs of these shapes.
pub(super) fn traced_output_shape(function: &Trace, name: &str, class: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
    check_traced_inputs(function, name, class, inputs)?;
    let out = function.shape(function.outputs[0])?;
    // Sizes the trace leaves unknown come from the inputs' variable sizes: each batch gives them.
    let shape: Vec<usize> = out.iter().skip(1).map(|d| d.unwrap_or(crate::shape::VARIABLE)).collect();
    match out.first() {
        Some(None) => Ok(shape),
        _ => Err(Error::Value(format!(
            "layer \"{}\" ({}): its function returns a tensor of shape ({}), which must have the batch axis first",
            name,
            class,
            show(out)
        ))),
    }
}

/// The checks every traced layer's function passes: one output, at least one input.
pub(super) fn check_traced_function(function: &Trace, class: &str) -> Result<()> {
    if function.outputs.len() != 1 {
        return Err(Error::Value(format!("a {} layer's function must return one tensor, got {}", class, function.outputs.len())));
    }
    if function.input_count() == 0 {
        return Err(Error::Value(format!("a {} layer's function takes at least one input", class)));
    }
    Ok(())
}

impl LayerType for Lambda {
    const CLASS_NAME: &'static str = "Lambda";
    const NAME_PREFIX: &'static str = "lambda";
    const INPUTS: Inputs = Inputs::OneOrMore;

    fn normalize(&mut self) -> Result<()> {
        check_traced_function(&self.function, Self::CLASS_NAME)?;
        if self.function.weight_count() != 0 {
            return Err(Error::Value("a Lambda layer has no weights: write a custom layer for a function with weights".into()));
        }
        Ok(())
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        traced_output_shape(&self.function, name, Self::CLASS_NAME, inputs)
    }

    /// Every value the trace computes is kept for the backward pass.
    fn working_elements_per_row(&self, _input: &[usize]) -> Option<u64> {
        self.function.elements_per_row()
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let shapes: Vec<Vec<usize>> = xs.iter().map(|x| x.dims()[1..].to_vec()).collect();
        check_traced_inputs(&self.function, name, Self::CLASS_NAME, &shapes)?;
        traced_forward(&self.function, xs, &[], ctx)
    }

    fn backward(&self, _name: &str, _weights: &[Tensor], _t: &[Option<Tensor>], cache: &Cache, grad: OutputGrad, need: bool) -> Result<LayerGrads> {
        traced_backward(&self.function, cache, grad.value(Self::CLASS_NAME)?, &[], need)
    }

    fn example() -> Example {
        // x * tanh(x) + sum over the features, broadcast back: a bit of everything.
        let mut t = Trace::new(vec![vec![None, Some(3)]], Vec::new());
        let tanh = t.record(Op::Unary { f: Unary::Tanh }, vec![0]).unwrap_or_default();
        let product = t.record(Op::Binary { f: Binary::Mul }, vec![0, tanh]).unwrap_or_default();
        let sum = t.record(Op::Reduce { f: crate::trace::Reduction::Sum, axes: vec![1], keepdims: true }, vec![0]).unwrap_or_default();
        let out = t.record(Op::Binary { f: Binary::Add }, vec![product, sum]).unwrap_or_default();
        let _ = t.set_outputs(vec![out]);
        Example { config: serde_json::json!({ "function": t }), inputs: vec![vec![3]], index_bound: None }
    }
}

/// What a traced function's backward pass needs: the values its forward pass computed.
struct TracedCache {
    run: TraceRun,
    inputs: Vec<Tensor>,
}

/// Runs a layer's trace on its inputs and weights (Lambda, layers written in R).
pub(super) fn traced_forward(function: &Trace, xs: &[Tensor], weights: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
    let run = function.forward(xs, weights, ctx.training, &mut ctx.rng)?;
    let out = run.outputs(function).remove(0);
    Ok((LayerOutput::plain(out), Cache::new(TracedCache { run, inputs: xs.to_vec() })))
}

/// The gradients of a layer's inputs and weights through its trace; inputs and weights the
/// output does not depend on (or only through ops without a gradient) get 0.
pub(super) fn traced_backward(function: &Trace, cache: &Cache, grad: Tensor, weights: &[Tensor], need_input: bool) -> Result<LayerGrads> {
    let c = cache.get::<TracedCache>()?;
    let grads = function.backward_for(&c.run, &[Some(grad)], need_input)?;
    let or_zero = |g: Option<Tensor>, like: &Tensor| g.map_or_else(|| like.zeros_like(), Ok);
    let weights = grads.weights.into_iter().zip(weights).map(|(g, w)| or_zero(g, w)).collect::<candle_core::Result<Vec<_>>>()?;
    if !need_input {
        return Ok(LayerGrads { input: None, weights, more_inputs: Vec::new() });
    }
    let mut inputs = grads.inputs.into_iter().zip(&c.inputs).map(|(g, x)| or_zero(g, x)).collect::<candle_core::Result<Vec<_>>>()?;
    let first = inputs.remove(0);
    Ok(LayerGrads { input: Some(first), weights, more_inputs: inputs })
}
