//! Keras's regression losses beyond mse/mae, each the mean over a sample's values of an
//! elementwise term (`mean(f(y_pred, y_true), axis = -1)` in tf-keras's losses.py):
//! `mean_squared_logarithmic_error`, `mean_absolute_percentage_error`, `huber_loss` (delta 1),
//! `logcosh`, `poisson`.
use super::{per_element_mean, values_per_row, LossFunction, EPSILON};
use crate::error::Result;
use crate::layers::OutputGrad;
use crate::model::ModelOutput;
use candle_core::Tensor;

/// The gradient of `sum(per_sample) / total_rows` for a loss that averages `f` over each
/// sample's values, given `f`'s derivative at each value.
fn mean_gradient(p: &Tensor, derivative: Tensor, total_rows: usize) -> Result<OutputGrad> {
    let n = total_rows as f64 * values_per_row(p)?;
    Ok(OutputGrad::Value((derivative / n)?))
}

/// 1 where `t > 0` (the clip `max(t, eps)` passes the gradient), as f32.
fn step(t: &Tensor, at: f32) -> Result<Tensor> {
    Ok(t.gt(at)?.to_dtype(t.dtype())?)
}

pub struct MeanSquaredLogarithmicError;

impl LossFunction for MeanSquaredLogarithmicError {
    fn name(&self) -> &str {
        "mean_squared_logarithmic_error"
    }

    fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        let log_p = (out.value.maximum(EPSILON as f32)? + 1.0)?.log()?;
        let log_y = (y.maximum(EPSILON as f32)? + 1.0)?.log()?;
        per_element_mean(&(log_p - log_y)?.sqr()?)
    }

    fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        let p = &out.value;
        let pc = (p.maximum(EPSILON as f32)? + 1.0)?;
        let diff = (pc.log()? - (y.maximum(EPSILON as f32)? + 1.0)?.log()?)?;
        let d = ((diff * 2.0)?.div(&pc)?.mul(&step(p, EPSILON as f32)?))?;
        mean_gradient(p, d, total_rows)
    }
}

pub struct MeanAbsolutePercentageError;

impl LossFunction for MeanAbsolutePercentageError {
    fn name(&self) -> &str {
        "mean_absolute_percentage_error"
    }

    fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        let scale = y.abs()?.maximum(EPSILON as f32)?;
        per_element_mean(&(y.sub(&out.value)?.div(&scale)?.abs()? * 100.0)?)
    }

    fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        let scale = y.abs()?.maximum(EPSILON as f32)?;
        let d = (out.value.sub(y)?.sign()?.div(&scale)? * 100.0)?;
        mean_gradient(&out.value, d, total_rows)
    }
}

/// Keras's Huber loss with its default `delta = 1`.
pub struct Huber;

const HUBER_DELTA: f64 = 1.0;

impl LossFunction for Huber {
    fn name(&self) -> &str {
        "huber_loss"
    }

    fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        let error = out.value.sub(y)?;
        let abs = error.abs()?;
        let quadratic = (error.sqr()? * 0.5)?;
        let linear = ((&abs * HUBER_DELTA)? - 0.5 * HUBER_DELTA * HUBER_DELTA)?;
        per_element_mean(&abs.le(HUBER_DELTA as f32)?.where_cond(&quadratic, &linear)?)
    }

    fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        let error = out.value.sub(y)?;
        let d = error.clamp(-HUBER_DELTA as f32, HUBER_DELTA as f32)?;
        mean_gradient(&out.value, d, total_rows)
    }
}

pub struct LogCosh;

impl LossFunction for LogCosh {
    fn name(&self) -> &str {
        "logcosh"
    }

    /// `x + softplus(-2x) - log(2)`, with softplus written to stay finite for any x.
    fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        let x = out.value.sub(y)?;
        let z = (&x * -2.0)?;
        let softplus = (z.relu()? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
        per_element_mean(&((x + softplus)? - std::f64::consts::LN_2)?)
    }

    fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        let d = out.value.sub(y)?.tanh()?;
        mean_gradient(&out.value, d, total_rows)
    }
}

pub struct Poisson;

impl LossFunction for Poisson {
    fn name(&self) -> &str {
        "poisson"
    }

    fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        per_element_mean(&out.value.sub(&y.mul(&(&out.value + EPSILON)?.log()?)?)?)
    }

    fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        let d = (y.div(&(&out.value + EPSILON)?)?.neg()? + 1.0)?;
        mean_gradient(&out.value, d, total_rows)
    }
}
