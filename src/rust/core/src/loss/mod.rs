//! Keras losses, per sample, with tf.keras's numerics. Each loss is one file implementing
//! [`LossFunction`] plus one line in [`LOSSES`]; compile(), saved files and metrics (every
//! loss is also a metric, as in Keras) find it there by name.
//!
//! Shared numerics: when the model ends in softmax (sigmoid), crossentropy is computed from
//! the logits; otherwise probabilities are clipped to [1e-7, 1 - 1e-7] as `keras.backend` does.
mod binary_crossentropy;
mod categorical_crossentropy;
mod classification;
mod mean_absolute_error;
mod mean_squared_error;
mod regression;
mod traced;

pub use traced::TracedLoss;

use crate::error::{Error, Result};
use crate::layers::OutputGrad;
use crate::model::ModelOutput;
use crate::tensor::HostTensor;
use candle_core::{Tensor, D};

/// Keras's `backend.epsilon()`.
pub const EPSILON: f64 = 1e-7;

/// What a loss computes. Losses are stateless; their arguments (if any) live in the value.
pub trait LossFunction: Send + Sync + 'static {
    /// Keras's name, as `compile()` takes it and saved files write it.
    fn name(&self) -> &str;

    /// Checks targets against the model's output shape and converts them to what
    /// `per_sample` expects. Runs on the host, once per batch. By default the targets must
    /// have as many values per sample as the output.
    fn prepare_targets(&self, y: &HostTensor, output_shape: &[usize]) -> Result<HostTensor> {
        same_shape_targets(y, output_shape)
    }

    /// Loss of each sample, shape (batch,).
    fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor>;

    /// Gradient of `sum(per_sample) / total_rows` (the batch mean, when this is one
    /// replica's part of a batch of `total_rows`) with respect to the output, or to the
    /// logits where the loss is fused with the output's activation (as tf.keras
    /// differentiates it).
    fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad>;
}

/// A loss, as compile() holds it: one of the registered [`LossFunction`]s, or one written
/// in R and traced.
#[derive(Clone)]
pub struct Loss(Kind);

#[derive(Clone)]
enum Kind {
    Builtin(&'static dyn LossFunction),
    Traced(std::sync::Arc<TracedLoss>),
}

/// A loss's entry: the loss and the other names Keras knows it by.
pub struct Registration {
    pub loss: Loss,
    pub aliases: &'static [&'static str],
}

impl Registration {
    const fn of(loss: &'static dyn LossFunction, aliases: &'static [&'static str]) -> Self {
        Self { loss: Loss(Kind::Builtin(loss)), aliases }
    }
}

/// One line per loss.
pub static LOSSES: &[Registration] = &[
    Registration::of(&categorical_crossentropy::CategoricalCrossentropy, &[]),
    Registration::of(&categorical_crossentropy::SparseCategoricalCrossentropy, &[]),
    Registration::of(&binary_crossentropy::BinaryCrossentropy, &[]),
    Registration::of(&mean_squared_error::MeanSquaredError, &["mse"]),
    Registration::of(&mean_absolute_error::MeanAbsoluteError, &["mae"]),
    Registration::of(&regression::MeanSquaredLogarithmicError, &["msle"]),
    Registration::of(&regression::MeanAbsolutePercentageError, &["mape"]),
    Registration::of(&regression::Huber, &["huber"]),
    Registration::of(&regression::LogCosh, &["log_cosh"]),
    Registration::of(&regression::Poisson, &[]),
    Registration::of(&classification::Hinge, &[]),
    Registration::of(&classification::SquaredHinge, &[]),
    Registration::of(&classification::CategoricalHinge, &[]),
    Registration::of(&classification::KullbackLeiblerDivergence, &["kld", "kl_divergence"]),
    Registration::of(&classification::CosineSimilarity, &["cosine_proximity", "cosine"]),
];

impl Loss {
    /// The loss Keras calls `name` (or one of its aliases, such as "mse").
    pub fn parse(name: &str) -> Result<Self> {
        Self::find(name).ok_or_else(|| Error::Value(format!("unknown loss \"{}\": expected one of {}", name, Self::names().join(", "))))
    }

    pub fn find(name: &str) -> Option<Self> {
        LOSSES.iter().find(|r| r.loss.name() == name || r.aliases.contains(&name)).map(|r| r.loss.clone())
    }

    /// A loss written in R, as its trace (inputs y_true and y_pred, then the outputs of the
    /// model nodes `extra_nodes`), under `name`.
    pub fn traced(name: &str, trace: crate::trace::Trace, extra_nodes: Vec<usize>) -> Result<Self> {
        Ok(Self(Kind::Traced(std::sync::Arc::new(TracedLoss::new(name, trace, extra_nodes)?))))
    }

    /// Model nodes whose outputs the loss reads besides the model's output.
    pub fn extra_nodes(&self) -> &[usize] {
        match &self.0 {
            Kind::Builtin(_) => &[],
            Kind::Traced(t) => &t.extra_nodes,
        }
    }

    /// Each sample's loss, given the outputs of [`Self::extra_nodes`].
    pub fn per_sample_with(&self, out: &ModelOutput, y: &Tensor, extras: &[Tensor]) -> Result<Tensor> {
        match &self.0 {
            Kind::Traced(t) => t.per_sample_with(out, y, extras),
            Kind::Builtin(f) => f.per_sample(out, y),
        }
    }

    /// [`Self::gradient`], and the gradients of the outputs of [`Self::extra_nodes`].
    pub fn gradient_with(&self, out: &ModelOutput, y: &Tensor, total_rows: usize, extras: &[Tensor]) -> Result<(OutputGrad, Vec<Tensor>)> {
        match &self.0 {
            Kind::Traced(t) => t.gradient_with(out, y, total_rows, extras),
            Kind::Builtin(f) => Ok((f.gradient(out, y, total_rows)?, Vec::new())),
        }
    }

    /// Every name a loss can be given by, Keras's names first.
    pub fn names() -> Vec<&'static str> {
        LOSSES
            .iter()
            .filter_map(|r| match r.loss.0 {
                Kind::Builtin(f) => Some(f.name()),
                Kind::Traced(_) => None,
            })
            .chain(LOSSES.iter().flat_map(|r| r.aliases.iter().copied()))
            .collect()
    }

    fn function(&self) -> &dyn LossFunction {
        match &self.0 {
            Kind::Builtin(f) => *f,
            Kind::Traced(t) => t.as_ref(),
        }
    }

    /// The traced loss, for one written in R.
    pub fn as_traced(&self) -> Option<&TracedLoss> {
        match &self.0 {
            Kind::Builtin(_) => None,
            Kind::Traced(t) => Some(t),
        }
    }

    /// Keras's name for the loss (a function's name for one written in R).
    pub fn name(&self) -> &str {
        self.function().name()
    }

    pub fn prepare_targets(&self, y: &HostTensor, output_shape: &[usize]) -> Result<HostTensor> {
        self.function().prepare_targets(y, output_shape)
    }

    pub fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        self.function().per_sample(out, y)
    }

    pub fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        self.function().gradient(out, y, total_rows)
    }
}

impl PartialEq for Loss {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl std::fmt::Debug for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Loss({})", self.name())
    }
}

/// Targets with as many values per sample as the output, shaped like it.
pub fn same_shape_targets(y: &HostTensor, output_shape: &[usize]) -> Result<HostTensor> {
    let units: usize = output_shape.iter().product();
    if y.row_len() != units {
        return Err(Error::Value(format!(
            "`y` has {} values per sample but the model outputs {} (shape ({}))",
            y.row_len(),
            units,
            crate::shape::join_dims(output_shape)
        )));
    }
    let mut shape = vec![y.rows()];
    shape.extend_from_slice(output_shape);
    HostTensor::new(shape, y.data.clone())
}

/// (batch, ...) -> (batch, rest) so that means run over every non-batch element.
pub fn flatten_rows(t: &Tensor) -> Result<Tensor> {
    let b = t.dim(0)?;
    Ok(t.reshape((b, t.elem_count() / b.max(1)))?)
}

/// The mean over every non-batch element of each sample: Keras's reduction of elementwise
/// losses (over the last axis, then the sample weighting's mean over the rest).
pub fn per_element_mean(t: &Tensor) -> Result<Tensor> {
    Ok(flatten_rows(t)?.mean(D::Minus1)?)
}

/// Values per sample of an output (the divisor of `per_element_mean`).
pub fn values_per_row(t: &Tensor) -> Result<f64> {
    let b = t.dim(0)?;
    Ok((t.elem_count() / b.max(1)) as f64)
}

/// The mask (batch, time) of an output whose first two axes it matches and which has values
/// per time step: the time steps a masked loss or metric counts. Other masks do not apply.
pub fn step_mask<'a>(output: &Tensor, mask: Option<&'a Tensor>) -> Option<&'a Tensor> {
    let mask = mask?;
    let (o, m) = (output.dims(), mask.dims());
    (o.len() >= 3 && m.len() == 2 && o[..2] == *m).then_some(mask)
}

/// (batch, time, ...) -> (batch * time, ...): each time step a row, so that a loss's
/// `per_sample` gives each step's loss.
pub fn steps_as_rows(t: &Tensor) -> Result<Tensor> {
    let d = t.dims();
    let mut shape = vec![d[0] * d[1]];
    shape.extend_from_slice(&d[2..]);
    Ok(t.reshape(shape)?)
}

/// 1 where `t` lies inside Keras's clip range [eps, 1 - eps] (the clip passes the gradient
/// there), 0 outside.
pub fn in_clip_range(t: &Tensor) -> Result<Tensor> {
    let lo = t.ge(EPSILON as f32)?.to_dtype(t.dtype())?;
    let hi = t.le((1.0 - EPSILON) as f32)?.to_dtype(t.dtype())?;
    Ok(lo.mul(&hi)?)
}

#[cfg(test)]
mod tests;

impl Loss {
    /// Each sample's loss for targets `y_true` (as the user gives them: class ids for the
    /// sparse loss) and predictions `y_pred`, both samples first: the loss functions R calls
    /// directly.
    pub fn values(&self, y_true: &HostTensor, y_pred: &HostTensor) -> Result<HostTensor> {
        let (y, p) = operands(self, y_true, y_pred)?;
        HostTensor::from_tensor(&self.per_sample(&ModelOutput::plain(p), &y)?)
    }
}

/// Targets prepared for `loss` and predictions, as CPU tensors.
pub fn operands(loss: &Loss, y_true: &HostTensor, y_pred: &HostTensor) -> Result<(Tensor, Tensor)> {
    if y_true.rows() != y_pred.rows() {
        return Err(Error::Value(format!("`y_true` and `y_pred` must have the same number of samples: {} and {}", y_true.rows(), y_pred.rows())));
    }
    if y_pred.rows() == 0 {
        return Err(Error::Value("`y_pred` has no samples".into()));
    }
    let y = loss.prepare_targets(y_true, &y_pred.shape[1..])?;
    let device = candle_core::Device::Cpu;
    Ok((y.to_device(&device)?, y_pred.to_device(&device)?))
}
