//! Keras's activation layers with a parameter: ReLU (`max_value`, `negative_slope`,
//! `threshold`), LeakyReLU (`alpha`), ELU (`alpha`), ThresholdedReLU (`theta`) and Softmax
//! (over the last axis).
use super::{Cache, Example, ForwardContext, LayerGrads, LayerOutput, LayerType, OutputGrad};
use crate::error::{Error, Result};
use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

/// The input, which the elementwise derivatives read.
struct InputCache(Tensor);

fn check_finite(v: f64, what: &str) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Error::Value(format!("`{}` must be a finite number, got {}", what, v)))
    }
}

fn example() -> Example {
    Example { config: serde_json::json!({}), inputs: vec![vec![4, 3]], index_bound: None }
}

/// 1 where `x > at`, else 0 (f32).
fn above(x: &Tensor, at: f32) -> Result<Tensor> {
    Ok(x.gt(at)?.to_dtype(x.dtype())?)
}

macro_rules! elementwise_backward {
    () => {
        fn backward(
            &self,
            _name: &str,
            _weights: &[Tensor],
            _transposed: &[Option<Tensor>],
            cache: &Cache,
            grad: OutputGrad,
            _need_input_grad: bool,
        ) -> Result<LayerGrads> {
            let InputCache(x) = cache.get::<InputCache>()?;
            let dy = grad.value(Self::CLASS_NAME)?;
            Ok(LayerGrads::input_only(dy.mul(&self.derivative(x)?)?))
        }
    };
}

/// Keras's `ReLU` layer: `x` above `threshold` (clipped at `max_value`), elsewhere
/// `negative_slope * (x - threshold)` (tf.keras's `backend.relu`; MobileNet's ReLU6 is
/// `max_value = 6`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ReLU {
    pub max_value: Option<f64>,
    pub negative_slope: f64,
    pub threshold: f64,
}

impl ReLU {
    /// 1 where `x > threshold` (and below `max_value`), `negative_slope` where `x <= threshold`.
    fn derivative(&self, x: &Tensor) -> Result<Tensor> {
        let pos = above(x, self.threshold as f32)?;
        let pass = match self.max_value {
            Some(m) => pos.mul(&x.lt(m as f32)?.to_dtype(x.dtype())?)?,
            None => pos.clone(),
        };
        if self.negative_slope == 0.0 {
            return Ok(pass);
        }
        Ok((pass + (pos.affine(-1.0, 1.0)? * self.negative_slope)?)?)
    }
}

impl LayerType for ReLU {
    const CLASS_NAME: &'static str = "ReLU";
    const NAME_PREFIX: &'static str = "re_lu";

    fn normalize(&mut self) -> Result<()> {
        // Keras's ReLU layer refuses negative values of each.
        for (v, what) in [(self.max_value.unwrap_or(0.0), "max_value"), (self.negative_slope, "negative_slope"), (self.threshold, "threshold")] {
            check_finite(v, what)?;
            if v < 0.0 {
                return Err(Error::Value(format!("`{}` of a ReLU layer must be >= 0, got {}", what, v)));
            }
        }
        Ok(())
    }

    fn output_shape(&self, _name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        Ok(inputs[0].clone())
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let pos = above(x, self.threshold as f32)?;
        let mut y = x.mul(&pos)?;
        if let Some(m) = self.max_value {
            y = y.minimum(m as f32)?;
        }
        if self.negative_slope != 0.0 {
            let below = ((x - self.threshold)? * self.negative_slope)?.mul(&pos.affine(-1.0, 1.0)?)?;
            y = (y + below)?;
        }
        Ok((LayerOutput::plain(y), Cache::new(InputCache(x.clone()))))
    }

    elementwise_backward!();

    // `threshold` and `max_value` away from the gradient check's inputs: a finite difference
    // across a kink (or the jump at `threshold`) is meaningless.
    fn example() -> Example {
        Example { config: serde_json::json!({"max_value": 0.55, "negative_slope": 0.1, "threshold": 0.23}), inputs: vec![vec![4, 3]], index_bound: None }
    }
}

/// `x` where positive, `alpha * x` elsewhere (tf-keras's default alpha, 0.3).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LeakyReLU {
    pub alpha: f64,
}

impl Default for LeakyReLU {
    fn default() -> Self {
        Self { alpha: 0.3 }
    }
}

impl LeakyReLU {
    fn derivative(&self, x: &Tensor) -> Result<Tensor> {
        let pos = above(x, 0.0)?;
        Ok(((&pos * (1.0 - self.alpha))? + self.alpha)?)
    }
}

impl LayerType for LeakyReLU {
    const CLASS_NAME: &'static str = "LeakyReLU";
    const NAME_PREFIX: &'static str = "leaky_re_lu";

    fn normalize(&mut self) -> Result<()> {
        check_finite(self.alpha, "alpha")
    }

    fn output_shape(&self, _name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        Ok(inputs[0].clone())
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let y = x.mul(&self.derivative(x)?)?;
        Ok((LayerOutput::plain(y), Cache::new(InputCache(x.clone()))))
    }

    elementwise_backward!();

    fn example() -> Example {
        example()
    }
}

/// `x` where positive, `alpha * (exp(x) - 1)` elsewhere.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ELU {
    pub alpha: f64,
}

impl Default for ELU {
    fn default() -> Self {
        Self { alpha: 1.0 }
    }
}

impl ELU {
    fn derivative(&self, x: &Tensor) -> Result<Tensor> {
        let pos = above(x, 0.0)?;
        let neg = (x.exp()? * self.alpha)?;
        // 1 where positive, alpha * exp(x) elsewhere.
        Ok((&pos + neg.mul(&pos.affine(-1.0, 1.0)?)?)?)
    }
}

impl LayerType for ELU {
    const CLASS_NAME: &'static str = "ELU";
    const NAME_PREFIX: &'static str = "elu";

    fn normalize(&mut self) -> Result<()> {
        check_finite(self.alpha, "alpha")
    }

    fn output_shape(&self, _name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        Ok(inputs[0].clone())
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let pos = above(x, 0.0)?;
        let neg = ((x.exp()? - 1.0)? * self.alpha)?;
        let y = (x.mul(&pos)? + neg.mul(&pos.affine(-1.0, 1.0)?)?)?;
        Ok((LayerOutput::plain(y), Cache::new(InputCache(x.clone()))))
    }

    elementwise_backward!();

    fn example() -> Example {
        example()
    }
}

/// `x` where `x > theta`, else 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ThresholdedReLU {
    pub theta: f64,
}

impl Default for ThresholdedReLU {
    fn default() -> Self {
        Self { theta: 1.0 }
    }
}

impl ThresholdedReLU {
    fn derivative(&self, x: &Tensor) -> Result<Tensor> {
        above(x, self.theta as f32)
    }
}

impl LayerType for ThresholdedReLU {
    const CLASS_NAME: &'static str = "ThresholdedReLU";
    const NAME_PREFIX: &'static str = "thresholded_re_lu";

    fn normalize(&mut self) -> Result<()> {
        if !(self.theta.is_finite() && self.theta >= 0.0) {
            return Err(Error::Value(format!("`theta` must be a number >= 0, got {}", self.theta)));
        }
        Ok(())
    }

    fn output_shape(&self, _name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        Ok(inputs[0].clone())
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        Ok((LayerOutput::plain(x.mul(&self.derivative(x)?)?), Cache::new(InputCache(x.clone()))))
    }

    elementwise_backward!();

    fn example() -> Example {
        // Inputs away from theta (the generic probe draws around +-1.3).
        Example { config: serde_json::json!({ "theta": 0.5 }), inputs: vec![vec![4, 3]], index_bound: None }
    }
}

/// Softmax over the last axis.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Softmax {
    pub axis: i64,
}

impl Default for Softmax {
    fn default() -> Self {
        Self { axis: -1 }
    }
}

/// The layer's output, which its gradient reads.
struct OutputCache(Tensor);

impl LayerType for Softmax {
    const CLASS_NAME: &'static str = "Softmax";
    const NAME_PREFIX: &'static str = "softmax";

    fn normalize(&mut self) -> Result<()> {
        if self.axis != -1 {
            return Err(Error::Value(format!("`axis` {} is not supported yet: only -1 (the last axis)", self.axis)));
        }
        Ok(())
    }

    fn output_shape(&self, _name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        Ok(inputs[0].clone())
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let y = crate::activation::Activation::Softmax.apply(&xs[0])?;
        Ok((LayerOutput::plain(y.clone()), Cache::new(OutputCache(y))))
    }

    /// dx = y * (dy - sum(dy * y)).
    fn backward(
        &self,
        _name: &str,
        _weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let OutputCache(y) = cache.get::<OutputCache>()?;
        let dy = grad.value(Self::CLASS_NAME)?;
        let dot = dy.mul(y)?.sum_keepdim(D::Minus1)?;
        Ok(LayerGrads::input_only(y.mul(&dy.broadcast_sub(&dot)?)?))
    }

    fn example() -> Example {
        example()
    }
}

/// PReLU: `x` where positive, `alpha * x` elsewhere, with `alpha` learned per value (shared
/// along `shared_axes`, numbered from 1 as Keras numbers a sample's axes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PReLU {
    pub alpha_initializer: crate::initializer::Initializer,
    pub alpha_regularizer: Option<crate::regularizer::Regularizer>,
    pub alpha_constraint: super::NotSupported,
    pub shared_axes: Option<Vec<usize>>,
}

impl Default for PReLU {
    fn default() -> Self {
        Self { alpha_initializer: crate::initializer::Initializer::zeros(), alpha_regularizer: None, alpha_constraint: super::NotSupported, shared_axes: None }
    }
}

impl PReLU {
    fn alpha_shape(&self, input: &[usize]) -> Vec<usize> {
        let shared = self.shared_axes.clone().unwrap_or_default();
        input.iter().enumerate().map(|(i, d)| if shared.contains(&(i + 1)) { 1 } else { *d }).collect()
    }
}

impl LayerType for PReLU {
    const CLASS_NAME: &'static str = "PReLU";
    const NAME_PREFIX: &'static str = "p_re_lu";

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        if let Some(axes) = &self.shared_axes {
            if axes.iter().any(|a| *a == 0 || *a > inputs[0].len()) {
                return Err(Error::Value(format!("layer \"{}\" (PReLU): `shared_axes` {:?} are not axes 1..{} of its input", name, axes, inputs[0].len())));
            }
        }
        Ok(inputs[0].clone())
    }

    fn weight_specs(&self, input: &[usize]) -> Vec<super::WeightSpec> {
        vec![super::WeightSpec { name: "alpha".into(), shape: self.alpha_shape(input), initializer: self.alpha_initializer.clone(), trainable: true }]
    }

    fn weight_regularizers(&self) -> Vec<Option<crate::regularizer::Regularizer>> {
        vec![self.alpha_regularizer]
    }

    fn forward(&self, _name: &str, weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let y = (x.relu()? + x.minimum(0f32)?.broadcast_mul(&weights[0])?)?;
        Ok((LayerOutput::plain(y), Cache::new(InputCache(x.clone()))))
    }

    fn backward(
        &self,
        _name: &str,
        weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let InputCache(x) = cache.get::<InputCache>()?;
        let dy = grad.value(Self::CLASS_NAME)?;
        let pos = above(x, 0.0)?;
        let slope = (&pos + weights[0].broadcast_mul(&pos.affine(-1.0, 1.0)?)?)?;
        let dx = dy.mul(&slope)?;
        // dalpha: dy * min(x, 0), summed over the batch and the shared axes.
        let mut da = dy.mul(&x.minimum(0f32)?)?.sum(0)?;
        for (axis, d) in weights[0].dims().iter().enumerate() {
            if *d == 1 && da.dim(axis)? != 1 {
                da = da.sum_keepdim(axis)?;
            }
        }
        Ok(LayerGrads { input: Some(dx), weights: vec![da], more_inputs: Vec::new() })
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "shared_axes": [1] }), inputs: vec![vec![3, 4]], index_bound: None }
    }
}
