//! Layers: configuration, weight specs, output shapes, forward and backward passes.
//! One file per layer family; `Layer` is an enum so replicas can be sent to worker threads.
//! Backward passes are our own (not candle's autograd, which always computes every input's
//! gradient and allocates a zero tensor per gradient): each layer keeps what its backward
//! needs in a `Cache` and skips the input gradient where nothing needs it.
mod conv;
mod core;
mod dense;
mod depthwise;
mod merge;
mod normalization;
mod pooling;
mod sequence;
mod spatial;

pub use self::conv::Conv2D;
pub use self::core::{ActivationLayer, Dropout};
pub use self::dense::Dense;
pub use self::depthwise::{DepthwiseConv2D, SeparableConv2D};
pub use self::merge::Merge;
pub use self::normalization::BatchNormalization;
pub use self::pooling::{Flatten, MaxPooling2D};
pub use self::sequence::Embedding;
pub use self::spatial::{AveragePooling2D, Reshape, ZeroPadding2D};

use crate::activation::Activation;
use crate::error::Result;
use crate::initializer::Initializer;
use candle_core::Tensor;
use rand::rngs::StdRng;
use std::collections::HashMap;
use std::sync::Mutex;

/// One weight a layer owns, before it exists.
#[derive(Debug, Clone)]
pub struct WeightSpec {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub initializer: Initializer,
    pub trainable: bool,
}

/// Per-call state of a forward pass.
pub struct ForwardContext {
    pub training: bool,
    pub rng: StdRng,
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

/// What a layer's backward pass needs from its forward pass.
#[derive(Debug, Clone)]
pub enum Cache {
    /// Input, pre-activation and output (2-d views for Dense).
    Dense { x: Tensor, z: Tensor, y: Tensor },
    Activation { x: Tensor, y: Tensor },
    /// The scaled keep-mask, when dropout was active.
    Dropout { mask: Option<Tensor> },
    /// Patch rows (im2col), pre-activation and output as 2-d (rows, filters) tensors.
    Conv { cols: Tensor, z: Tensor, y: Tensor, input_dims: Vec<usize> },
    /// Flat input index of each output's maximum.
    MaxPool { routing: crate::kernels::MaxPoolRouting, input_dims: Vec<usize> },
    Reshape { input_dims: Vec<usize> },
    /// A merge layer's inputs.
    Merge { inputs: Vec<Tensor> },
    /// A 2-d layer's cache when it ran on a reshaped (1-d) input.
    Reshaped { inner: Box<Cache>, input_dims: Vec<usize> },
    /// Embedding row indices.
    Embedding { ids: Tensor },
    /// Patches, the depthwise output, pre-activation and output (SeparableConv2D).
    Separable { cols: Tensor, mid: Tensor, z: Tensor, y: Tensor, input_dims: Vec<usize> },
    /// Normalized input, 1/std per channel, and the moving statistics this batch moves to.
    BatchNorm { xhat: Tensor, inv_std: Tensor, input_dims: Vec<usize>, new_mean: Tensor, new_var: Tensor },
}

/// A gradient arriving at a layer's output: with respect to its output value, or
/// (from a loss fused with the final softmax/sigmoid) with respect to its logits.
#[derive(Debug, Clone)]
pub enum OutputGrad {
    Value(Tensor),
    Logits(Tensor),
}

/// A layer's backward result: the input gradient (when asked for), one gradient per
/// weight, and for merge layers the gradients of their further inputs.
#[derive(Default)]
pub struct LayerGrads {
    pub input: Option<Tensor>,
    pub weights: Vec<Tensor>,
    pub more_inputs: Vec<Tensor>,
}

#[derive(Debug, Clone)]
pub enum LayerKind {
    Dense(Dense),
    Activation(ActivationLayer),
    Dropout(Dropout),
    Conv2D(Conv2D),
    MaxPooling2D(MaxPooling2D),
    Flatten,
    AveragePooling2D(AveragePooling2D),
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    ZeroPadding2D(ZeroPadding2D),
    Reshape(Reshape),
    BatchNormalization(BatchNormalization),
    DepthwiseConv2D(DepthwiseConv2D),
    SeparableConv2D(SeparableConv2D),
    Merge(Merge),
    Conv1D(Conv2D),
    MaxPooling1D(MaxPooling2D),
    Embedding(Embedding),
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub name: String,
    pub kind: LayerKind,
    /// Seed for this layer's initial weights (drawn from R's RNG by the binding).
    pub seed: u64,
}

impl Layer {
    /// Keras's class name, as shown by `summary()`.
    pub fn class_name(&self) -> &'static str {
        match &self.kind {
            LayerKind::Dense(_) => "Dense",
            LayerKind::Activation(_) => "Activation",
            LayerKind::Dropout(_) => "Dropout",
            LayerKind::Conv2D(_) => "Conv2D",
            LayerKind::MaxPooling2D(_) => "MaxPooling2D",
            LayerKind::Flatten => "Flatten",
            LayerKind::AveragePooling2D(_) => "AveragePooling2D",
            LayerKind::GlobalAveragePooling2D => "GlobalAveragePooling2D",
            LayerKind::GlobalMaxPooling2D => "GlobalMaxPooling2D",
            LayerKind::ZeroPadding2D(_) => "ZeroPadding2D",
            LayerKind::Reshape(_) => "Reshape",
            LayerKind::BatchNormalization(_) => "BatchNormalization",
            LayerKind::DepthwiseConv2D(_) => "DepthwiseConv2D",
            LayerKind::SeparableConv2D(_) => "SeparableConv2D",
            LayerKind::Merge(m) => m.class_name(),
            LayerKind::Conv1D(_) => "Conv1D",
            LayerKind::MaxPooling1D(_) => "MaxPooling1D",
            LayerKind::Embedding(_) => "Embedding",
        }
    }

    /// Output shape (without the batch axis) for an input shape (without the batch axis).
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        match &self.kind {
            LayerKind::Dense(l) => l.output_shape(&self.name, input),
            LayerKind::Conv2D(l) => l.output_shape(&self.name, input),
            LayerKind::MaxPooling2D(l) => l.output_shape(&self.name, input),
            LayerKind::Flatten => Ok(Flatten::output_shape(input)),
            LayerKind::AveragePooling2D(l) => l.output_shape(&self.name, input),
            LayerKind::GlobalAveragePooling2D => spatial::global_output_shape(&self.name, "GlobalAveragePooling2D", input),
            LayerKind::GlobalMaxPooling2D => spatial::global_output_shape(&self.name, "GlobalMaxPooling2D", input),
            LayerKind::ZeroPadding2D(l) => l.output_shape(&self.name, input),
            LayerKind::Reshape(l) => l.output_shape(&self.name, input),
            LayerKind::BatchNormalization(_) => Ok(input.to_vec()),
            LayerKind::DepthwiseConv2D(l) => l.output_shape(&self.name, input),
            LayerKind::SeparableConv2D(l) => l.output_shape(&self.name, input),
            LayerKind::Merge(m) => m.output_shape(&self.name, &[input.to_vec()]),
            LayerKind::Conv1D(c) => sequence::conv1d_output_shape(c, &self.name, input),
            LayerKind::MaxPooling1D(p) => sequence::pool1d_output_shape(p, &self.name, input),
            LayerKind::Embedding(e) => Ok(e.output_shape(input)),
            LayerKind::Activation(_) | LayerKind::Dropout(_) => Ok(input.to_vec()),
        }
    }

    pub fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        match &self.kind {
            LayerKind::Dense(l) => l.weight_specs(input),
            LayerKind::Conv2D(l) => l.weight_specs(input),
            LayerKind::BatchNormalization(l) => l.weight_specs(input),
            LayerKind::DepthwiseConv2D(l) => l.weight_specs(input),
            LayerKind::SeparableConv2D(l) => l.weight_specs(input),
            LayerKind::Conv1D(c) => sequence::conv1d_weight_specs(c, input),
            LayerKind::Embedding(e) => e.weight_specs(),
            _ => Vec::new(),
        }
    }

    pub fn forward(&self, weights: &[Tensor], x: &Tensor, ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        match &self.kind {
            LayerKind::Dense(l) => l.forward(weights, x),
            LayerKind::Activation(l) => l.forward(x),
            LayerKind::Dropout(l) => l.forward(x, ctx),
            LayerKind::Conv2D(l) => l.forward(&self.name, weights, x),
            LayerKind::MaxPooling2D(l) => l.forward(&self.name, x),
            LayerKind::Flatten => Flatten::forward(x),
            LayerKind::AveragePooling2D(l) => l.forward(&self.name, x),
            LayerKind::GlobalAveragePooling2D => spatial::global_average_forward(x),
            LayerKind::GlobalMaxPooling2D => {
                let pool = spatial::global_max_window(&self.name, &x.dims()[1..])?;
                let (out, cache) = pool.forward(&self.name, x)?;
                let value = out.value.reshape((x.dim(0)?, x.dim(3)?))?;
                Ok((LayerOutput::plain(value), cache))
            }
            LayerKind::ZeroPadding2D(l) => l.forward(x),
            LayerKind::Reshape(l) => l.forward(&self.name, x),
            LayerKind::BatchNormalization(l) => l.forward(&self.name, weights, x, ctx.training),
            LayerKind::DepthwiseConv2D(l) => l.forward(&self.name, weights, x),
            LayerKind::SeparableConv2D(l) => l.forward(&self.name, weights, x),
            LayerKind::Merge(m) => m.forward(std::slice::from_ref(x)),
            LayerKind::Conv1D(c) => sequence::conv1d_forward(c, &self.name, weights, x),
            LayerKind::MaxPooling1D(p) => sequence::pool1d_forward(p, &self.name, x),
            LayerKind::Embedding(e) => e.forward(&self.name, weights, x),
        }
    }

    /// Output shape for one application to inputs of these shapes (merge layers take several).
    pub fn node_output_shape(&self, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        match &self.kind {
            LayerKind::Merge(m) => m.output_shape(&self.name, inputs),
            _ => match inputs {
                [one] => self.output_shape(one),
                _ => Err(crate::error::Error::Value(format!(
                    "layer \"{}\" ({}) takes one input, got {}",
                    self.name,
                    self.class_name(),
                    inputs.len()
                ))),
            },
        }
    }

    /// Forward pass of one application (node) of the layer.
    pub fn forward_node(&self, weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        match &self.kind {
            LayerKind::Merge(m) => m.forward(xs),
            _ => self.forward(weights, &xs[0], ctx),
        }
    }

    /// New values for this layer's non-trainable weights after a training forward pass
    /// (index within the layer's weights, value).
    pub fn state_updates(&self, cache: &Cache) -> Vec<(usize, Tensor)> {
        match (&self.kind, cache) {
            (LayerKind::BatchNormalization(l), Cache::BatchNorm { new_mean, new_var, .. }) => {
                vec![(l.moving_offset(), new_mean.clone()), (l.moving_offset() + 1, new_var.clone())]
            }
            _ => Vec::new(),
        }
    }

    pub fn backward(&self, weights: &[Tensor], cache: &Cache, grad: OutputGrad, need_input_grad: bool) -> Result<LayerGrads> {
        self.backward_with(weights, &[], cache, grad, need_input_grad)
    }

    /// The backward pass, given transposes of some of the weights where the caller has them
    /// (`transposed[i]` for `weights[i]`; see `Architecture::backward_with_transposes`).
    pub fn backward_with(&self, weights: &[Tensor], transposed: &[Option<Tensor>], cache: &Cache, grad: OutputGrad, need_input_grad: bool) -> Result<LayerGrads> {
        match (&self.kind, cache) {
            (LayerKind::Dense(l), Cache::Dense { x, z, y }) => {
                let kernel_t = transposed.first().and_then(|t| t.as_ref());
                l.backward(weights, kernel_t, x, z, y, grad, need_input_grad)
            }
            (LayerKind::Activation(l), Cache::Activation { x, y }) => l.backward(x, y, grad),
            (LayerKind::Dropout(_), Cache::Dropout { mask }) => self::core::dropout_backward(mask, grad),
            (LayerKind::Conv2D(l), Cache::Conv { cols, z, y, input_dims }) => {
                l.backward(&self.name, weights, cols, z, y, input_dims, grad, need_input_grad)
            }
            (LayerKind::MaxPooling2D(_), Cache::MaxPool { routing, input_dims }) => MaxPooling2D::backward(routing, input_dims, grad),
            (LayerKind::Flatten | LayerKind::Reshape(_), Cache::Reshape { input_dims }) => Flatten::backward(input_dims, grad),
            (LayerKind::AveragePooling2D(l), Cache::Reshape { input_dims }) => l.backward(&self.name, input_dims, grad),
            (LayerKind::GlobalAveragePooling2D, Cache::Reshape { input_dims }) => spatial::global_average_backward(input_dims, grad),
            (LayerKind::GlobalMaxPooling2D, Cache::MaxPool { routing, input_dims }) => MaxPooling2D::backward(routing, input_dims, grad),
            (LayerKind::ZeroPadding2D(l), Cache::Reshape { input_dims }) => l.backward(input_dims, grad),
            (LayerKind::Merge(m), Cache::Merge { inputs }) => m.backward(inputs, grad),
            (LayerKind::Conv1D(c), Cache::Reshaped { inner, input_dims }) => {
                sequence::conv1d_backward(c, &self.name, weights, inner, input_dims, grad, need_input_grad)
            }
            (LayerKind::MaxPooling1D(_), Cache::Reshaped { inner, input_dims }) => sequence::pool1d_backward(inner, input_dims, grad),
            (LayerKind::Embedding(e), Cache::Embedding { ids }) => e.backward(weights, ids, grad),
            (LayerKind::DepthwiseConv2D(l), Cache::Conv { cols, z, y, input_dims }) => {
                l.backward(&self.name, weights, cols, z, y, input_dims, grad, need_input_grad)
            }
            (LayerKind::SeparableConv2D(l), Cache::Separable { cols, mid, z, y, input_dims }) => {
                l.backward(&self.name, weights, cols, mid, z, y, input_dims, grad, need_input_grad)
            }
            (LayerKind::BatchNormalization(l), Cache::BatchNorm { xhat, inv_std, input_dims, .. }) => {
                l.backward(weights, xhat, inv_std, input_dims, grad)
            }
            _ => Err(crate::error::Error::State(format!("layer \"{}\" got another layer's cache", self.name))),
        }
    }
}

/// Keras-style unique layer names: "dense", "dense_1", "dense_2", ... per session.
pub fn unique_name(prefix: &str) -> String {
    static COUNTS: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);
    let mut guard = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let counts = guard.get_or_insert_with(HashMap::new);
    let n = counts.entry(prefix.to_string()).or_insert(0);
    let name = if *n == 0 { prefix.to_string() } else { format!("{}_{}", prefix, n) };
    *n += 1;
    name
}
