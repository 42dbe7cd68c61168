//! Layers: the contract every layer type implements ([`LayerType`], in the layer's own file),
//! the registry that finds a type by its Keras class name ([`registry`]), and [`Layer`], a
//! named instance of a type in a model.
//!
//! A layer type is its Keras config: a struct that serde reads and writes exactly as Keras's
//! `get_config()` does (so saving, loading and R's `layer_*()` functions need no per-layer
//! code), plus its shapes, weights, forward pass and our own backward pass (not candle's
//! autograd, which computes every input's gradient and allocates a zero tensor for each).
//! Adding a layer: one file implementing [`LayerType`], one line in [`registry::LAYER_TYPES`].
mod activation;
mod activity_regularization;
mod advanced_activations;
mod alpha_dropout;
mod channels_first;
mod conv1d;
mod conv2d;
mod conv2d_transpose;
mod conv3d;
mod conv_lstm2d;
mod custom;
mod custom_wrapper;
mod dense;
mod depthwise;
mod dropout;
mod embedding;
mod global_average_pooling1d;
mod gru;
mod lambda;
mod layer_normalization;
mod lstm;
mod masking;
mod merge;
mod noise;
mod normalization;
mod params;
mod permute;
mod pooling;
mod pooling1d;
pub(crate) mod recurrent;
pub mod registry;
mod repeat_vector;
mod resize;
mod simple_rnn;
mod spatial;
mod wrappers;

pub use self::activation::ActivationLayer;
pub use self::activity_regularization::ActivityRegularization;
pub use self::advanced_activations::{LeakyReLU, PReLU, ReLU, Softmax, ThresholdedReLU, ELU};
pub use self::alpha_dropout::AlphaDropout;
pub use self::channels_first::ChannelsFirst;
pub use self::conv1d::Conv1D;
pub use self::conv2d::Conv2D;
pub use self::conv2d_transpose::Conv2DTranspose;
pub use self::conv3d::Conv3D;
pub use self::conv_lstm2d::ConvLSTM2D;
pub use self::custom::CustomLayer;
pub use self::custom_wrapper::CustomWrapper;
pub use self::dense::Dense;
pub use self::depthwise::{DepthwiseConv2D, SeparableConv2D};
pub use self::dropout::Dropout;
pub use self::embedding::Embedding;
pub use self::global_average_pooling1d::GlobalAveragePooling1D;
pub use self::gru::GRU;
pub use self::lambda::Lambda;
pub use self::layer_normalization::LayerNormalization;
pub use self::lstm::LSTM;
pub use self::masking::Masking;
pub use self::merge::{Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract};
pub use self::noise::{GaussianDropout, GaussianNoise, SpatialDropout1D, SpatialDropout2D};
pub use self::normalization::BatchNormalization;
pub use self::params::{Axes, DataFormat, NotSupported, Padding, Tuple1, Tuple2, Tuple3};
pub use self::permute::Permute;
pub use self::pooling::{AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling1D, MaxPooling2D, PoolWindow};
pub use self::pooling1d::{AveragePooling1D, GlobalMaxPooling1D};
pub use self::repeat_vector::RepeatVector;
pub use self::resize::{Cropping1D, Cropping2D, UpSampling1D, UpSampling2D};
pub use self::simple_rnn::SimpleRNN;
pub use self::spatial::{Flatten, Reshape, ZeroPadding2D};
pub use self::wrappers::{Bidirectional, MergeMode, TimeDistributed};

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use candle_core::Tensor;
use rand::rngs::StdRng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One weight a layer owns, before it exists. `trainable: false` marks state the layer
/// updates itself (batch normalization's moving statistics), never the optimizer.
#[derive(Debug, Clone)]
pub struct WeightSpec {
    /// Keras's name within the layer ("kernel"; "lstm_cell/kernel" for a recurrent cell's).
    pub name: String,
    pub shape: Vec<usize>,
    pub initializer: Initializer,
    pub trainable: bool,
}

impl WeightSpec {
    /// A kernel of `shape` and, with `use_bias`, a bias of `units` values: the weights of
    /// Dense and of the convolutions, in Keras's order.
    pub fn kernel_and_bias(shape: Vec<usize>, units: usize, kernel_initializer: &Initializer, bias_initializer: &Initializer, use_bias: bool) -> Vec<Self> {
        let mut specs = vec![WeightSpec { name: "kernel".into(), shape, initializer: kernel_initializer.clone(), trainable: true }];
        if use_bias {
            specs.push(WeightSpec { name: "bias".into(), shape: vec![units], initializer: bias_initializer.clone(), trainable: true });
        }
        specs
    }
}

/// Per-call state of a forward pass.
pub struct ForwardContext {
    pub training: bool,
    pub rng: StdRng,
    /// The Keras mask of the node's (first) input, `(batch, time)` with 1 for steps that
    /// count: set by the model before each layer runs (recurrent layers skip masked steps).
    pub mask: Option<Tensor>,
    /// Where the replicas of a data-parallel training step add up what they share
    /// (synchronized batch normalization's statistics); none on one device.
    pub collective: Option<std::sync::Arc<dyn crate::collective::Collective>>,
}

/// A layer's output, plus the pre-activation values when the layer ended in softmax/sigmoid,
/// so that losses can work from the logits as tf.keras does.
#[derive(Debug, Clone)]
pub struct LayerOutput {
    pub value: Tensor,
    pub logits: Option<(Tensor, Activation)>,
}

impl LayerOutput {
    pub fn plain(value: Tensor) -> Self {
        Self { value, logits: None }
    }
}

/// What a layer's backward pass needs from its forward pass: a value of the layer type's own
/// choosing, read back with [`Cache::get`].
pub struct Cache(Box<dyn Any + Send + Sync>);

impl Cache {
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Self(Box::new(value))
    }

    /// The value the layer's forward pass stored; an error if another layer's is given.
    pub fn get<T: Any>(&self) -> Result<&T> {
        self.0.downcast_ref::<T>().ok_or_else(|| Error::State("a layer's backward pass got another layer's cache".into()))
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cache")
    }
}

/// The dims of a layer's input: all the backward pass of a reshaping or pooling layer needs.
pub(crate) struct InputDims(pub Vec<usize>);

/// A gradient arriving at a layer's output: with respect to its output value, or
/// (from a loss fused with the final softmax/sigmoid) with respect to its logits.
#[derive(Debug, Clone)]
pub enum OutputGrad {
    Value(Tensor),
    Logits(Tensor),
}

impl OutputGrad {
    /// The gradient with respect to the output value, for layers that cannot end in logits.
    pub fn value(self, class: &str) -> Result<Tensor> {
        match self {
            OutputGrad::Value(dy) => Ok(dy),
            OutputGrad::Logits(_) => Err(Error::State(format!("{} cannot end a model whose loss uses logits", class))),
        }
    }

    /// The gradient with respect to a layer's pre-activation `z` (output `y`), shaped as `z`.
    pub fn through(self, activation: Activation, z: &Tensor, y: &Tensor) -> Result<Tensor> {
        match self {
            OutputGrad::Logits(dz) => Ok(dz.reshape(z.dims())?),
            OutputGrad::Value(dy) => activation.backward(z, y, &dy.reshape(y.dims())?),
        }
    }
}

/// What a layer does to its one input at inference that the layer before it can take in
/// (`Architecture::forward_inference`): a per-channel map folded into its weights (batch
/// normalization's `x * scale + shift` over the last axis, or a ReLU), or max pooling, which
/// it runs on its output before handing it on.
pub enum InferenceMap {
    Affine { scale: Tensor, shift: Tensor },
    Relu,
    MaxPool(PoolWindow),
}

/// A layer's backward result: the input gradient (when asked for), one gradient per
/// weight, and for merge layers the gradients of their further inputs.
#[derive(Default)]
pub struct LayerGrads {
    pub input: Option<Tensor>,
    pub weights: Vec<Tensor>,
    pub more_inputs: Vec<Tensor>,
}

impl LayerGrads {
    /// The gradient of a weightless layer with one input.
    pub fn input_only(input: Tensor) -> Self {
        Self { input: Some(input), ..Self::default() }
    }
}

/// How many inputs one application of a layer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inputs {
    One,
    /// Merge layers: two or more.
    Several,
    /// One, then optionally more (a recurrent layer's initial states).
    OneOrMore,
}

/// A layer type whose weights, if any, a finite-difference check can probe, with inputs of
/// these shapes; each layer type gives one for the generic test over the registry.
pub struct Example {
    /// The Keras config (the layer type's own fields) to build it from.
    pub config: Value,
    /// Input shapes without the batch axis.
    pub inputs: Vec<Vec<usize>>,
    /// Inputs are indices below this bound (an embedding's), not real values.
    pub index_bound: Option<usize>,
}

/// The contract of a layer type. The struct itself is the layer's Keras config: serde reads
/// and writes it with Keras's field names, `#[serde(default)]` gives Keras's defaults.
/// Every method taking `inputs`/`xs` gets exactly one entry unless [`Self::INPUTS`] is
/// `Several` (the [`Layer`] wrapper checks it).
pub trait LayerType: std::fmt::Debug + Send + Sync + Serialize + DeserializeOwned + 'static {
    /// Keras's class name ("Dense"), as in saved configs and `summary()`.
    const CLASS_NAME: &'static str;
    /// The name prefix of layers made without a name ("dense", "conv2d").
    const NAME_PREFIX: &'static str;
    const INPUTS: Inputs = Inputs::One;

    /// Checks the values read from a config (an error names the field) and resolves defaults
    /// that depend on other fields, as Keras's constructor does.
    fn normalize(&mut self) -> Result<()> {
        Ok(())
    }

    /// The output shape for inputs of these shapes (all without the batch axis).
    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>>;

    /// The weights the layer creates for a first input of this shape, in Keras's order.
    fn weight_specs(&self, _input: &[usize]) -> Vec<WeightSpec> {
        Vec::new()
    }

    fn forward(&self, name: &str, weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)>;

    /// The forward pass with a ReLU applied to the output, for a ReLU layer that is the only
    /// reader of this layer's output: the model then skips that layer, and this layer's
    /// backward pass, given the ReLU's output gradient, applies the ReLU's gradient first.
    /// None where the layer does not take it in this pass (the default).
    fn forward_then_relu(&self, _name: &str, _weights: &[Tensor], _xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<Option<(LayerOutput, Cache)>> {
        Ok(None)
    }

    /// Gradients from the output gradient; the input gradient only when `need_input_grad`.
    /// `transposed[i]`, where present, is `weights[i]`'s transpose as a row-major tensor (see
    /// [`Self::TRANSPOSED_WEIGHTS`]).
    fn backward(
        &self,
        name: &str,
        weights: &[Tensor],
        transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        need_input_grad: bool,
    ) -> Result<LayerGrads>;

    /// New values for non-trainable weights after a training forward pass (index within the
    /// layer's weights, value), e.g. batch normalization's moving statistics.
    fn state_updates(&self, _cache: &Cache) -> Vec<(usize, Tensor)> {
        Vec::new()
    }

    /// Weights whose transpose the backward pass multiplies by (a dense kernel, for the input
    /// gradient): callers that keep weights between steps keep these transposes too.
    const TRANSPOSED_WEIGHTS: &'static [usize] = &[];

    /// Each weight's regularizer (in [`Self::weight_specs`]'s order; missing: none).
    fn weight_regularizers(&self) -> Vec<Option<crate::regularizer::Regularizer>> {
        Vec::new()
    }

    /// Each weight's constraint, applied after every update (same order; missing: none).
    fn weight_constraints(&self) -> Vec<Option<crate::constraint::Constraint>> {
        Vec::new()
    }

    /// A penalty on the layer's output, added to the loss (Keras's `activity_regularizer`).
    fn activity_regularizer(&self) -> Option<crate::regularizer::Regularizer> {
        None
    }

    /// Losses computed from the layer's weights alone (Keras's `add_loss()` in a layer's
    /// `build()`, and regularizers written as functions): each a trace with no inputs, the
    /// layer's first weights as its weights (all of them, or a wrapper's own), and one output
    /// whose sum joins the loss.
    fn weight_losses(&self) -> &[crate::trace::Trace] {
        &[]
    }

    /// Whether the mask of the input passes through to the output unchanged (Keras's
    /// `supports_masking` on a layer that keeps the time axis: Dense, Dropout, Activation).
    const PROPAGATES_MASK: bool = false;

    /// The mask of the output (Keras's `compute_mask`), from the inputs and the mask of the
    /// first input: by default the input's when [`Self::PROPAGATES_MASK`], otherwise none.
    fn compute_mask(&self, _xs: &[Tensor], mask: Option<&Tensor>) -> Result<Option<Tensor>> {
        Ok(if Self::PROPAGATES_MASK { mask.cloned() } else { None })
    }

    /// The class name the layer shows and saves: the type's, or for a layer class written
    /// in R, that class's name.
    fn shown_class_name(&self) -> &str {
        Self::CLASS_NAME
    }

    /// Whether the layer can start a mask (Embedding with `mask_zero`, Masking): a model
    /// without one has no masked outputs, and its replicas need not share mask counts.
    fn makes_mask(&self) -> bool {
        false
    }

    /// Forgets state kept between batches (a stateful recurrent layer's; Keras's
    /// `reset_states()`).
    fn reset_states(&self) {}

    /// Whether the layer keeps state between batches (stateful recurrent layers).
    fn is_stateful(&self) -> bool {
        false
    }

    /// At inference, what this layer does to its one input, where the layer before it may
    /// take that in (batch normalization, a ReLU, max pooling); None otherwise.
    fn inference_map(&self, _weights: &[Tensor]) -> Result<Option<InferenceMap>> {
        Ok(None)
    }

    /// For inference: this layer and its weights with `affine` (per output channel: `y *
    /// scale + shift`) and then, if `relu`, a ReLU applied to its output folded in; None
    /// where it cannot take them (the default; a layer with an activation of its own).
    fn absorb_inference_maps(&self, _weights: &[Tensor], _affine: Option<(&Tensor, &Tensor)>, _relu: bool) -> Result<Option<(Self, Vec<Tensor>)>>
    where
        Self: Sized,
    {
        Ok(None)
    }

    /// For inference: this layer with max pooling over `pool`'s windows applied to its
    /// output (after any maps absorbed), its output the pooled one; None where it cannot.
    fn absorb_max_pool(&self, _pool: &PoolWindow) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }

    /// Shapes of the outputs after the first (a recurrent layer's final states with
    /// `return_state`), for inputs of these shapes.
    fn more_output_shapes(&self, _inputs: &[Vec<usize>]) -> Vec<Vec<usize>> {
        Vec::new()
    }

    /// The values of the outputs after the first, from the forward pass's cache.
    fn more_outputs(&self, _cache: &Cache) -> Result<Vec<Tensor>> {
        Ok(Vec::new())
    }

    /// [`Self::backward`] for a layer with several outputs: `grad` is the first output's
    /// gradient (None when nothing reads it), `more` the others' (None where nothing reads
    /// one).
    #[allow(clippy::too_many_arguments)]
    fn backward_more(
        &self,
        name: &str,
        weights: &[Tensor],
        transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: Option<OutputGrad>,
        _more: Vec<Option<Tensor>>,
        need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let grad = grad.ok_or_else(|| Error::State(format!("layer \"{}\" ({}) got no gradient for its output", name, Self::CLASS_NAME)))?;
        self.backward(name, weights, transposed, cache, grad, need_input_grad)
    }

    /// Values a forward pass keeps per input row beyond its output (a recurrent layer's
    /// states and gates at every step), for the memory check before a step; None on overflow.
    fn working_elements_per_row(&self, _input: &[usize]) -> Option<u64> {
        Some(0)
    }

    /// A small instance for the generic test over the registry.
    fn example() -> Example;
}

/// The object-safe face of every [`LayerType`] (layers of all types live in one model).
pub trait AnyLayer: std::fmt::Debug + Send + Sync {
    fn class_name(&self) -> &str;
    /// The layer type's own fields of Keras's config.
    fn config(&self) -> Value;
    fn inputs(&self) -> Inputs;
    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>>;
    fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec>;
    fn forward(&self, name: &str, weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)>;
    /// See [`LayerType::forward_then_relu`]; none for wrappers that do not say.
    fn forward_then_relu(&self, _name: &str, _weights: &[Tensor], _xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<Option<(LayerOutput, Cache)>> {
        Ok(None)
    }
    fn backward(
        &self,
        name: &str,
        weights: &[Tensor],
        transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        need_input_grad: bool,
    ) -> Result<LayerGrads>;
    fn state_updates(&self, cache: &Cache) -> Vec<(usize, Tensor)>;
    fn transposed_weights(&self) -> &'static [usize];
    fn weight_regularizers(&self) -> Vec<Option<crate::regularizer::Regularizer>>;
    fn weight_constraints(&self) -> Vec<Option<crate::constraint::Constraint>>;
    fn activity_regularizer(&self) -> Option<crate::regularizer::Regularizer>;
    fn weight_losses(&self) -> &[crate::trace::Trace];
    fn compute_mask(&self, xs: &[Tensor], mask: Option<&Tensor>) -> Result<Option<Tensor>>;
    fn makes_mask(&self) -> bool;
    fn reset_states(&self);
    fn is_stateful(&self) -> bool;
    /// See [`LayerType::inference_map`]; none for wrappers that do not say.
    fn inference_map(&self, _weights: &[Tensor]) -> Result<Option<InferenceMap>> {
        Ok(None)
    }
    /// Whether the layer can take maps in (see [`LayerType::absorb_inference_maps`]).
    fn absorbs_inference_maps(&self, _weights: &[Tensor]) -> Result<bool> {
        Ok(false)
    }
    /// Whether the layer can take a max pooling in (see [`LayerType::absorb_max_pool`]).
    fn absorbs_max_pool(&self, _pool: &PoolWindow) -> bool {
        false
    }
    /// This layer with maps and/or a max pooling folded in, and its folded weights (see
    /// [`LayerType::absorb_inference_maps`]), for inference; None where it cannot take them.
    fn absorbing(
        &self,
        _weights: &[Tensor],
        _affine: Option<(&Tensor, &Tensor)>,
        _relu: bool,
        _pool: Option<&PoolWindow>,
    ) -> Result<Option<crate::model::AbsorbedLayer>> {
        Ok(None)
    }
    fn working_elements_per_row(&self, input: &[usize]) -> Option<u64>;
    fn more_output_shapes(&self, inputs: &[Vec<usize>]) -> Vec<Vec<usize>>;
    fn more_outputs(&self, cache: &Cache) -> Result<Vec<Tensor>>;
    #[allow(clippy::too_many_arguments)]
    fn backward_more(
        &self,
        name: &str,
        weights: &[Tensor],
        transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: Option<OutputGrad>,
        more: Vec<Option<Tensor>>,
        need_input_grad: bool,
    ) -> Result<LayerGrads>;
}

impl<T: LayerType> AnyLayer for T {
    fn class_name(&self) -> &str {
        LayerType::shown_class_name(self)
    }
    fn config(&self) -> Value {
        // A config struct of plain fields always serializes.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
    fn inputs(&self) -> Inputs {
        T::INPUTS
    }
    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        LayerType::output_shape(self, name, inputs)
    }
    fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        LayerType::weight_specs(self, input)
    }
    fn forward(&self, name: &str, weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        LayerType::forward(self, name, weights, xs, ctx)
    }
    fn forward_then_relu(&self, name: &str, weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<Option<(LayerOutput, Cache)>> {
        LayerType::forward_then_relu(self, name, weights, xs, ctx)
    }
    fn backward(
        &self,
        name: &str,
        weights: &[Tensor],
        transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        need_input_grad: bool,
    ) -> Result<LayerGrads> {
        LayerType::backward(self, name, weights, transposed, cache, grad, need_input_grad)
    }
    fn state_updates(&self, cache: &Cache) -> Vec<(usize, Tensor)> {
        LayerType::state_updates(self, cache)
    }
    fn transposed_weights(&self) -> &'static [usize] {
        T::TRANSPOSED_WEIGHTS
    }
    fn weight_regularizers(&self) -> Vec<Option<crate::regularizer::Regularizer>> {
        LayerType::weight_regularizers(self)
    }
    fn weight_constraints(&self) -> Vec<Option<crate::constraint::Constraint>> {
        LayerType::weight_constraints(self)
    }
    fn activity_regularizer(&self) -> Option<crate::regularizer::Regularizer> {
        LayerType::activity_regularizer(self)
    }
    fn weight_losses(&self) -> &[crate::trace::Trace] {
        LayerType::weight_losses(self)
    }
    fn compute_mask(&self, xs: &[Tensor], mask: Option<&Tensor>) -> Result<Option<Tensor>> {
        LayerType::compute_mask(self, xs, mask)
    }
    fn makes_mask(&self) -> bool {
        LayerType::makes_mask(self)
    }
    fn reset_states(&self) {
        LayerType::reset_states(self)
    }
    fn is_stateful(&self) -> bool {
        LayerType::is_stateful(self)
    }
    fn inference_map(&self, weights: &[Tensor]) -> Result<Option<InferenceMap>> {
        LayerType::inference_map(self, weights)
    }
    fn absorbs_inference_maps(&self, weights: &[Tensor]) -> Result<bool> {
        Ok(LayerType::absorb_inference_maps(self, weights, None, true)?.is_some())
    }
    fn absorbs_max_pool(&self, pool: &PoolWindow) -> bool {
        LayerType::absorb_max_pool(self, pool).is_some()
    }
    fn absorbing(
        &self,
        weights: &[Tensor],
        affine: Option<(&Tensor, &Tensor)>,
        relu: bool,
        pool: Option<&PoolWindow>,
    ) -> Result<Option<crate::model::AbsorbedLayer>> {
        // The maps first (into the weights), then the pooling (onto the output).
        let mapped = if affine.is_some() || relu {
            let Some(mapped) = LayerType::absorb_inference_maps(self, weights, affine, relu)? else { return Ok(None) };
            Some(mapped)
        } else {
            None
        };
        let (layer, folded) = match (mapped, pool) {
            (Some(mapped), None) => mapped,
            (mapped, Some(p)) => {
                let Some(pooled) = LayerType::absorb_max_pool(mapped.as_ref().map_or(self, |(layer, _)| layer), p) else { return Ok(None) };
                (pooled, mapped.map_or_else(|| weights.to_vec(), |(_, folded)| folded))
            }
            (None, None) => return Ok(None),
        };
        Ok(Some((Box::new(layer), folded)))
    }
    fn working_elements_per_row(&self, input: &[usize]) -> Option<u64> {
        LayerType::working_elements_per_row(self, input)
    }
    fn more_output_shapes(&self, inputs: &[Vec<usize>]) -> Vec<Vec<usize>> {
        LayerType::more_output_shapes(self, inputs)
    }
    fn more_outputs(&self, cache: &Cache) -> Result<Vec<Tensor>> {
        LayerType::more_outputs(self, cache)
    }
    fn backward_more(
        &self,
        name: &str,
        weights: &[Tensor],
        transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: Option<OutputGrad>,
        more: Vec<Option<Tensor>>,
        need_input_grad: bool,
    ) -> Result<LayerGrads> {
        LayerType::backward_more(self, name, weights, transposed, cache, grad, more, need_input_grad)
    }
}

/// Reads a layer type from its Keras config; an error names the class and the field.
pub fn parse_config<T: LayerType>(config: &Value) -> Result<T> {
    let mut layer: T = serde_path_to_error::deserialize(config).map_err(|e| {
        let field = e.path().to_string();
        let at = if field == "." { String::new() } else { format!(" `{}`", field) };
        Error::Value(format!("{} config{}: {}", T::CLASS_NAME, at, e.into_inner()))
    })?;
    layer.normalize().map_err(|e| match e {
        Error::Value(m) => Error::Value(format!("{}: {}", T::CLASS_NAME, m)),
        other => other,
    })?;
    Ok(layer)
}

/// A layer in a model: a layer type with its name and the seed of its initial weights.
#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
    pub kind: Arc<dyn AnyLayer>,
    /// Seed for this layer's initial weights (drawn from R's RNG by the binding).
    pub seed: u64,
}

impl Layer {
    pub fn new<T: LayerType>(name: impl Into<String>, kind: T, seed: u64) -> Self {
        Self { name: name.into(), kind: Arc::new(kind), seed }
    }

    /// The layer a Keras layer config describes (`{"name": ..., <the type's fields>}`).
    pub fn from_config(class_name: &str, config: &Value, seed: u64) -> Result<Self> {
        let registration = match registry::find(class_name) {
            // A layer class written in R is saved under its own name, with its trace (a
            // wrapper class, with the layer it wraps).
            Err(_) if config.get("layer_class").and_then(Value::as_str) == Some(class_name) => {
                registry::find(if config.get("layer").is_some() { CustomWrapper::CLASS_NAME } else { CustomLayer::CLASS_NAME })?
            }
            found => found?,
        };
        let kind = registration.build(config)?;
        let name = match config.get("name") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => unique_name(registration.name_prefix),
            Some(other) => return Err(Error::Value(format!("{} config `name` must be a string, got {}", class_name, other))),
        };
        check_layer_name(&name)?;
        Ok(Self { name, kind, seed })
    }

    /// Keras's class name, as shown by `summary()`.
    pub fn class_name(&self) -> &str {
        self.kind.class_name()
    }

    /// Keras's `{"class_name", "config"}` of this layer.
    pub fn keras_config(&self) -> Value {
        let mut config = self.kind.config();
        if let Value::Object(fields) = &mut config {
            fields.insert("name".into(), Value::String(self.name.clone()));
            fields.insert("trainable".into(), Value::Bool(true));
            fields.insert("dtype".into(), Value::String("float32".into()));
        }
        serde_json::json!({ "class_name": self.class_name(), "config": config })
    }

    /// Output shape (without the batch axis) for one input (without the batch axis).
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.node_output_shape(&[input.to_vec()])
    }

    pub fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        self.kind.weight_specs(input)
    }

    fn check_input_count(&self, n: usize) -> Result<()> {
        let (ok, wanted) = match self.kind.inputs() {
            Inputs::One => (n == 1, "one input"),
            Inputs::Several => (n >= 2, "at least 2 inputs"),
            Inputs::OneOrMore => (n >= 1, "an input (then its initial states)"),
        };
        if ok {
            return Ok(());
        }
        Err(Error::Value(format!("layer \"{}\" ({}) takes {}, got {}", self.name, self.class_name(), wanted, n)))
    }

    /// Output shape for one application to inputs of these shapes (merge layers take several).
    pub fn node_output_shape(&self, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        self.check_input_count(inputs.len())?;
        self.kind.output_shape(&self.name, inputs)
    }

    /// Shapes of the outputs after the first, for one application to inputs of these shapes.
    pub fn more_output_shapes(&self, inputs: &[Vec<usize>]) -> Vec<Vec<usize>> {
        self.kind.more_output_shapes(inputs)
    }

    /// Forward pass of one application (node) of the layer.
    pub fn forward_node(&self, weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        self.check_input_count(xs.len())?;
        self.kind.forward(&self.name, weights, xs, ctx)
    }

    pub fn forward(&self, weights: &[Tensor], x: &Tensor, ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        self.forward_node(weights, std::slice::from_ref(x), ctx)
    }

    /// [`LayerType::forward_then_relu`] for a node of this layer.
    pub fn forward_node_then_relu(&self, weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<Option<(LayerOutput, Cache)>> {
        self.check_input_count(xs.len())?;
        self.kind.forward_then_relu(&self.name, weights, xs, ctx)
    }

    /// New values for this layer's non-trainable weights after a training forward pass
    /// (index within the layer's weights, value).
    pub fn state_updates(&self, cache: &Cache) -> Vec<(usize, Tensor)> {
        self.kind.state_updates(cache)
    }

    pub fn backward(&self, weights: &[Tensor], cache: &Cache, grad: OutputGrad, need_input_grad: bool) -> Result<LayerGrads> {
        self.backward_with(weights, &[], cache, grad, need_input_grad)
    }

    /// The backward pass, given transposes of some of the weights where the caller has them
    /// (`transposed[i]` for `weights[i]`; see `Architecture::backward_with_transposes`).
    pub fn backward_with(
        &self,
        weights: &[Tensor],
        transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        need_input_grad: bool,
    ) -> Result<LayerGrads> {
        self.kind.backward(&self.name, weights, transposed, cache, grad, need_input_grad)
    }
}

/// Layer names become HDF5 group names and weight names ("dense/kernel:0"): Keras's own
/// names are letters, digits, "_", "-" and "."; "/" would nest groups.
pub fn check_layer_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.chars().any(char::is_control) || name.len() > 200 {
        return Err(Error::Value(format!(
            "layer name \"{}\" cannot be used: names need 1 to 200 characters and no \"/\" or control characters",
            name.escape_default()
        )));
    }
    Ok(())
}

static NAME_COUNTS: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

/// Keras-style unique layer names: "dense", "dense_1", "dense_2", ... per session.
pub fn unique_name(prefix: &str) -> String {
    let mut guard = NAME_COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let counts = guard.get_or_insert_with(HashMap::new);
    let n = counts.entry(prefix.to_string()).or_insert(0);
    let name = if *n == 0 { prefix.to_string() } else { format!("{}_{}", prefix, n) };
    *n += 1;
    name
}

/// Starts the names of [`unique_name`] afresh (Keras's `clear_session()`).
pub fn reset_unique_names() {
    *NAME_COUNTS.lock().unwrap_or_else(|e| e.into_inner()) = None;
}
