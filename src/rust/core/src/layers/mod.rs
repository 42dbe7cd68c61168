//! Layers: configuration, weight specs, output shapes and the forward pass.
//! One file per layer family; `Layer` is an enum so replicas can be sent to worker threads.
mod core;
mod dense;

pub use self::core::{ActivationLayer, Dropout};
pub use self::dense::Dense;

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
pub struct LayerOutput {
    pub value: Tensor,
    pub logits: Option<(Tensor, Activation)>,
}

impl LayerOutput {
    pub fn plain(value: Tensor) -> Self {
        Self { value, logits: None }
    }
}

#[derive(Debug, Clone)]
pub enum LayerKind {
    Dense(Dense),
    Activation(ActivationLayer),
    Dropout(Dropout),
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
        }
    }

    /// Output shape (without the batch axis) for an input shape (without the batch axis).
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        match &self.kind {
            LayerKind::Dense(l) => l.output_shape(&self.name, input),
            LayerKind::Activation(_) | LayerKind::Dropout(_) => Ok(input.to_vec()),
        }
    }

    pub fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        match &self.kind {
            LayerKind::Dense(l) => l.weight_specs(input),
            LayerKind::Activation(_) | LayerKind::Dropout(_) => Vec::new(),
        }
    }

    pub fn forward(&self, weights: &[Tensor], x: &Tensor, ctx: &mut ForwardContext) -> Result<LayerOutput> {
        match &self.kind {
            LayerKind::Dense(l) => l.forward(weights, x),
            LayerKind::Activation(l) => l.forward(x),
            LayerKind::Dropout(l) => l.forward(x, ctx),
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
