//! Keras's activation layers with a parameter: LeakyReLU (`alpha`), ELU (`alpha`),
//! ThresholdedReLU (`theta`) and Softmax (over the last axis).
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
