//! The model: a stack of layers plus the master weights (the only copy that is trained;
//! replicas get snapshots of it each step).
use crate::error::{Error, Result};
use crate::layers::{Cache, ForwardContext, Layer, LayerOutput, OutputGrad};
use crate::tensor::HostTensor;
use candle_core::Tensor;
use rand::SeedableRng;
use std::sync::Arc;

/// One weight of the master copy. The values sit behind an `Arc` so that a step can hand
/// them to replica workers without copying; the optimizer writes them in place afterwards.
#[derive(Debug, Clone)]
pub struct Weight {
    /// Keras's name, e.g. "dense/kernel:0".
    pub name: String,
    pub shape: Vec<usize>,
    pub value: Arc<Vec<f32>>,
    pub trainable: bool,
}

/// The layers a forward pass needs, shared read-only with replica workers.
#[derive(Debug, Clone, Default)]
pub struct Architecture {
    pub layers: Vec<Layer>,
    /// Input shape without the batch axis (known once built).
    pub input_shape: Option<Vec<usize>>,
    /// Output shape of each layer (without the batch axis).
    pub output_shapes: Vec<Vec<usize>>,
    /// Range of each layer's weights in the flat weight list.
    pub weight_ranges: Vec<std::ops::Range<usize>>,
}

/// One output of a forward pass, with the logits when the last layer was softmax/sigmoid.
pub type ModelOutput = LayerOutput;

impl Architecture {
    pub fn is_built(&self) -> bool {
        self.input_shape.is_some()
    }

    /// Forward pass over the whole stack. `weights` follow `weight_ranges`. Also returns
    /// each layer's cache for `backward`.
    pub fn forward(&self, weights: &[Tensor], inputs: &[Tensor], ctx: &mut ForwardContext) -> Result<(Vec<ModelOutput>, Vec<Cache>)> {
        let mut x = inputs
            .first()
            .ok_or_else(|| Error::Value("the model needs one input array".into()))?
            .clone();
        let mut last = None;
        let mut caches = Vec::with_capacity(self.layers.len());
        for (layer, range) in self.layers.iter().zip(&self.weight_ranges) {
            let (out, cache) = layer.forward(&weights[range.clone()], &x, ctx)?;
            x = out.value.clone();
            last = Some(out);
            caches.push(cache);
        }
        Ok((vec![last.unwrap_or_else(|| LayerOutput::plain(x))], caches))
    }

    /// New values of non-trainable weights (global weight index, value) from a training
    /// forward pass, e.g. batch normalization's moving statistics.
    pub fn state_updates(&self, caches: &[Cache]) -> Vec<(usize, Tensor)> {
        self.layers
            .iter()
            .zip(&self.weight_ranges)
            .zip(caches)
            .flat_map(|((layer, range), cache)| layer.state_updates(cache).into_iter().map(move |(i, t)| (range.start + i, t)))
            .collect()
    }

    /// Gradients of every weight (in `weights` order) from the gradient at the output.
    /// The network's input needs no gradient, so the first layer skips computing it.
    pub fn backward(&self, weights: &[Tensor], caches: &[Cache], output_grad: OutputGrad) -> Result<Vec<Tensor>> {
        let mut grads: Vec<Option<Tensor>> = vec![None; weights.len()];
        let mut grad = Some(output_grad);
        for (i, layer) in self.layers.iter().enumerate().rev() {
            let range = self.weight_ranges[i].clone();
            let g = grad.take().ok_or_else(|| Error::State("a layer produced no input gradient".into()))?;
            let out = layer.backward(&weights[range.clone()], &caches[i], g, i > 0)?;
            for (slot, w) in grads[range].iter_mut().zip(out.weights) {
                *slot = Some(w);
            }
            grad = out.input.map(OutputGrad::Value);
        }
        grads
            .into_iter()
            .zip(weights)
            .map(|(g, w)| match g {
                Some(g) => Ok(g),
                None => Ok(w.zeros_like()?),
            })
            .collect()
    }

    pub fn output_shape(&self) -> Option<&Vec<usize>> {
        self.output_shapes.last().or(self.input_shape.as_ref())
    }
}

/// A sequential model: its architecture and its master weights.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub arch: Arc<Architecture>,
    pub weights: Vec<Weight>,
}

impl Model {
    pub fn new(name: String) -> Self {
        Self { name, arch: Arc::new(Architecture::default()), weights: Vec::new() }
    }

    /// Appends a layer; `input_shape` (without the batch axis) is allowed on the first layer only.
    /// A built model builds the new layer at once, as Keras does.
    pub fn add(&mut self, layer: Layer, input_shape: Option<Vec<usize>>) -> Result<()> {
        if self.arch.layers.iter().any(|l| l.name == layer.name) {
            return Err(Error::Value(format!(
                "all layers in a model must have unique names; \"{}\" is already used",
                layer.name
            )));
        }
        if let Some(shape) = &input_shape {
            if !self.arch.layers.is_empty() {
                return Err(Error::Value(
                    "`input_shape` can only be given to the first layer of a sequential model".into(),
                ));
            }
            check_shape(shape)?;
        }
        // Check the layer fits before touching the model, so a bad layer leaves it unchanged.
        let mut arch = (*self.arch).clone();
        arch.layers.push(layer);
        let built_input = input_shape.or_else(|| self.arch.input_shape.clone());
        match built_input {
            Some(shape) => {
                let (arch, weights) = build(arch, &shape, &self.weights)?;
                self.arch = Arc::new(arch);
                self.weights = weights;
            }
            None => self.arch = Arc::new(arch),
        }
        Ok(())
    }

    /// Builds the model for inputs of `input_shape` (without the batch axis) if not yet built;
    /// checks the shape against the built one otherwise.
    pub fn ensure_built(&mut self, input_shape: &[usize]) -> Result<()> {
        if let Some(expected) = &self.arch.input_shape {
            if expected.as_slice() != input_shape {
                return Err(Error::Value(format!(
                    "`x` has shape (n, {}) but the model expects input shape (n, {})",
                    join_dims(input_shape),
                    join_dims(expected)
                )));
            }
            return Ok(());
        }
        if self.arch.layers.is_empty() {
            return Err(Error::State("the model has no layers yet: add layers before using it".into()));
        }
        check_shape(input_shape)?;
        let (arch, weights) = build((*self.arch).clone(), input_shape, &[])?;
        self.arch = Arc::new(arch);
        self.weights = weights;
        Ok(())
    }

    /// Removes the last layer (Keras's `pop_layer`).
    pub fn pop(&mut self) -> Result<()> {
        if self.arch.layers.is_empty() {
            return Err(Error::State("there are no layers to remove".into()));
        }
        let mut arch = (*self.arch).clone();
        arch.layers.pop();
        if let Some(range) = arch.weight_ranges.pop() {
            self.weights.truncate(range.start);
            arch.output_shapes.pop();
        }
        self.arch = Arc::new(arch);
        Ok(())
    }

    pub fn count_params(&self) -> (usize, usize) {
        let mut trainable = 0;
        let mut frozen = 0;
        for w in &self.weights {
            let n = w.value.len();
            if w.trainable {
                trainable += n
            } else {
                frozen += n
            }
        }
        (trainable, frozen)
    }

    pub fn get_weights(&self) -> Vec<HostTensor> {
        self.weights.iter().map(|w| HostTensor { shape: w.shape.clone(), data: (*w.value).clone() }).collect()
    }

    /// Replaces all weights; checks count and shapes first so a bad call changes nothing.
    pub fn set_weights(&mut self, values: Vec<HostTensor>) -> Result<()> {
        if !self.arch.is_built() {
            return Err(Error::State("the model is not built yet: give the first layer an `input_shape`, or fit/predict once, before setting weights".into()));
        }
        if values.len() != self.weights.len() {
            return Err(Error::Value(format!(
                "`weights` must be a list of {} arrays (one per model weight), got {}",
                self.weights.len(),
                values.len()
            )));
        }
        for (w, v) in self.weights.iter().zip(&values) {
            if w.shape != v.shape {
                return Err(Error::Value(format!(
                    "weight \"{}\" has shape ({}) but the array given has shape ({})",
                    w.name,
                    join_dims(&w.shape),
                    join_dims(&v.shape)
                )));
            }
        }
        for (w, v) in self.weights.iter_mut().zip(values) {
            w.value = Arc::new(v.data);
        }
        Ok(())
    }
}

/// Computes shapes for every layer and creates missing weights (keeping those in `existing`).
fn build(mut arch: Architecture, input_shape: &[usize], existing: &[Weight]) -> Result<(Architecture, Vec<Weight>)> {
    let mut shape = input_shape.to_vec();
    let mut weights = Vec::new();
    arch.output_shapes.clear();
    arch.weight_ranges.clear();
    for layer in &arch.layers {
        let start = weights.len();
        let mut rng = rand::rngs::StdRng::seed_from_u64(layer.seed);
        for spec in layer.weight_specs(&shape) {
            let idx = weights.len();
            let value = match existing.get(idx) {
                Some(w) if w.shape == spec.shape => w.value.clone(),
                _ => Arc::new(spec.initializer.sample(&spec.shape, &mut rng)),
            };
            weights.push(Weight {
                name: format!("{}/{}:0", layer.name, spec.name),
                shape: spec.shape,
                value,
                trainable: spec.trainable,
            });
        }
        arch.weight_ranges.push(start..weights.len());
        shape = layer.output_shape(&shape)?;
        arch.output_shapes.push(shape.clone());
    }
    arch.input_shape = Some(input_shape.to_vec());
    Ok((arch, weights))
}

fn check_shape(shape: &[usize]) -> Result<()> {
    if shape.is_empty() || shape.iter().any(|d| *d == 0) {
        return Err(Error::Value(format!(
            "an input shape needs positive dimensions, got ({})",
            join_dims(shape)
        )));
    }
    if shape.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d)).map_or(true, |n| n > i32::MAX as usize) {
        return Err(Error::Value(format!("input shape ({}) is too large", join_dims(shape))));
    }
    Ok(())
}

pub fn join_dims(shape: &[usize]) -> String {
    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}

/// Makes the weights of a step as tensors on `device` (the per-step "weights out" transfer).
pub fn weights_to_device(weights: &[Arc<Vec<f32>>], shapes: &[Vec<usize>], device: &candle_core::Device) -> Result<Vec<Tensor>> {
    weights
        .iter()
        .zip(shapes)
        .map(|(w, s)| Ok(Tensor::from_slice(w.as_slice(), s.as_slice(), device)?))
        .collect()
}
