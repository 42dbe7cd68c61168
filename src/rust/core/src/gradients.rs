//! Values and gradients of an expression of a model's tensors: what Keras's `k_function()`
//! computes for outputs made with `k_gradients()` (deep dream's and style transfer's gradient
//! ascent, class activation maps). The model maps its inputs to the tensors the expression
//! reads (its outputs); the expression is a trace of those; its first output (summed, as
//! TensorFlow's gradients of a non-scalar) is differentiated back through the trace and the
//! model, in inference mode (Keras's learning phase 0), to model inputs or layer outputs.
use crate::error::{Error, Result};
use crate::layers::{ForwardContext, OutputGrad};
use crate::model::{Model, Source};
use crate::tensor::HostTensor;
use crate::trace::Trace;
use candle_core::{Device, Tensor};
use rand::SeedableRng;

/// The expression's outputs and, for each of `wanted`, the gradient of the sum of its first
/// output there (zeros where it does not depend on it), for the model inputs `xs`. With
/// nothing wanted, only the forward passes run (k_function()'s values).
pub fn expression_gradients(model: &Model, expression: &Trace, xs: &[HostTensor], wanted: &[Source], seed: u64) -> Result<(Vec<HostTensor>, Vec<HostTensor>)> {
    let arch = &model.arch;
    if expression.input_count() != arch.outputs().len() {
        return Err(Error::Value(format!(
            "the expression reads {} tensors but the model gives {}: make the model from the tensors the expression reads",
            expression.input_count(),
            arch.outputs().len()
        )));
    }
    let sample_shapes: Vec<Vec<usize>> = xs.iter().map(|x| x.shape.get(1..).unwrap_or(&[]).to_vec()).collect();
    let declared = arch.input_shapes().unwrap_or_default();
    if declared.len() != xs.len() {
        return Err(Error::Value(format!("the model has {} inputs but {} arrays were given", declared.len(), xs.len())));
    }
    for (k, (want, got)) in declared.iter().zip(&sample_shapes).enumerate() {
        if !crate::shape::fits(want, got) || xs[k].rows() == 0 {
            return Err(Error::Value(format!(
                "input {} has shape (n, {}) but the model expects (n, {}) with n > 0",
                k + 1,
                crate::shape::join_dims(got),
                crate::shape::join_dims(want)
            )));
        }
    }
    // Activations kept for the backward pass, and gradients of about their size.
    let rows = xs.first().map_or(0, |x| x.rows()) as u64;
    let needed = arch.activation_elements_per_row(&sample_shapes).and_then(|n| n.checked_mul(rows)).and_then(|n| crate::memory::bytes(n, 8));
    crate::memory::check("the gradients' forward and backward passes", needed, "give fewer or smaller inputs")?;
    let device = Device::Cpu;
    let weights = model.weights.iter().map(|w| Ok(Tensor::from_slice(w.value.as_slice(), w.shape.as_slice(), &device)?)).collect::<Result<Vec<_>>>()?;
    let inputs = xs.iter().map(|x| x.to_device(&device)).collect::<Result<Vec<_>>>()?;
    let mut ctx = ForwardContext { training: false, rng: rand::rngs::StdRng::seed_from_u64(seed), mask: None, collective: None };
    // The wanted layer outputs are recorded too: their gradients' shapes where none flows.
    let wanted_nodes: Vec<usize> = wanted.iter().filter_map(|s| s.node()).collect();
    let forward = arch.forward_recording(&weights, &inputs, &mut ctx, &wanted_nodes)?;
    let values: Vec<Tensor> = forward.outputs.iter().map(|o| o.value.clone()).collect();
    let run = expression.forward(&values, &[], false, &mut ctx.rng)?;
    let results = run.outputs(expression);
    if wanted.is_empty() {
        let results = results.iter().map(HostTensor::from_tensor).collect::<Result<Vec<_>>>()?;
        return Ok((results, Vec::new()));
    }
    let first = results.first().ok_or_else(|| Error::Value("the expression has no output".into()))?;
    let grads = expression.backward_for(&run, &[Some(first.ones_like()?)], true)?;
    let output_grads = grads
        .inputs
        .into_iter()
        .zip(&values)
        .map(|(g, v)| {
            Ok(OutputGrad::Value(match g {
                Some(g) => g,
                None => v.zeros_like()?,
            }))
        })
        .collect::<Result<Vec<_>>>()?;
    let reached = arch.gradients_at(&weights, &forward.caches, output_grads, wanted)?;
    let mut gradients = Vec::with_capacity(wanted.len());
    for (g, s) in reached.into_iter().zip(wanted) {
        let g = match (g, *s) {
            (Some(g), _) => g,
            (None, Source::Input(k)) => inputs.get(k).ok_or_else(|| Error::Value(format!("the model has no input {}", k + 1)))?.zeros_like()?,
            (None, s) => {
                let j = s.node().unwrap_or_default();
                forward.recorded.iter().find(|(n, _)| *n == j).ok_or_else(|| Error::State("a layer output was not recorded".into()))?.1.zeros_like()?
            }
        };
        gradients.push(HostTensor::from_tensor(&g)?);
    }
    let results = results.iter().map(HostTensor::from_tensor).collect::<Result<Vec<_>>>()?;
    Ok((results, gradients))
}
