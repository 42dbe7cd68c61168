//! LayerNormalization (Keras's, over the last axis): each sample's (each position's) values
//! normalized to mean 0 and variance 1 over the features, then scaled by `gamma` and shifted
//! by `beta`: `y = (x - mean) / sqrt(var + epsilon) * gamma + beta`.
use super::{Axes, Cache, Example, ForwardContext, LayerGrads, LayerOutput, LayerType, OutputGrad, WeightSpec};
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use crate::regularizer::Regularizer;
use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LayerNormalization {
    pub axis: Axes,
    pub epsilon: f64,
    pub center: bool,
    pub scale: bool,
    pub beta_initializer: Initializer,
    pub gamma_initializer: Initializer,
    pub beta_regularizer: Option<Regularizer>,
    pub gamma_regularizer: Option<Regularizer>,
    pub beta_constraint: super::NotSupported,
    pub gamma_constraint: super::NotSupported,
}

impl Default for LayerNormalization {
    fn default() -> Self {
        Self {
            axis: Axes(vec![-1]),
            epsilon: 1e-3,
            center: true,
            scale: true,
            beta_initializer: Initializer::zeros(),
            gamma_initializer: Initializer::ones(),
            beta_regularizer: None,
            gamma_regularizer: None,
            beta_constraint: super::NotSupported,
            gamma_constraint: super::NotSupported,
        }
    }
}

/// The normalized input and the inverse standard deviations, for the gradients.
struct NormCache {
    xhat: Tensor,
    inv_std: Tensor,
}

impl LayerType for LayerNormalization {
    const CLASS_NAME: &'static str = "LayerNormalization";
    const NAME_PREFIX: &'static str = "layer_normalization";
    const PROPAGATES_MASK: bool = true;

    fn normalize(&mut self) -> Result<()> {
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(Error::Value(format!("`epsilon` must be a positive number, got {}", self.epsilon)));
        }
        Ok(())
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        if !self.axis.is_last(inputs[0].len()) {
            return Err(Error::Value(format!("layer \"{}\" (LayerNormalization): only the last axis (-1) is supported, got {:?}", name, self.axis.0)));
        }
        Ok(inputs[0].clone())
    }

    fn weight_regularizers(&self) -> Vec<Option<Regularizer>> {
        let mut r = Vec::new();
        if self.scale {
            r.push(self.gamma_regularizer);
        }
        if self.center {
            r.push(self.beta_regularizer);
        }
        r
    }

    /// gamma (with `scale`), then beta (with `center`), as Keras creates them.
    fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        let c = input.last().copied().unwrap_or(1);
        let mut specs = Vec::new();
        if self.scale {
            specs.push(WeightSpec { name: "gamma".into(), shape: vec![c], initializer: self.gamma_initializer.clone(), trainable: true });
        }
        if self.center {
            specs.push(WeightSpec { name: "beta".into(), shape: vec![c], initializer: self.beta_initializer.clone(), trainable: true });
        }
        specs
    }

    fn forward(&self, name: &str, weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        self.output_shape(name, &[x.dims()[1..].to_vec()])?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let inv_std = (var + self.epsilon)?.sqrt()?.recip()?;
        let xhat = centered.broadcast_mul(&inv_std)?;
        let mut y = xhat.clone();
        let mut w = weights.iter();
        if self.scale {
            y = y.broadcast_mul(w.next().ok_or_else(|| Error::State("LayerNormalization without gamma".into()))?)?;
        }
        if self.center {
            y = y.broadcast_add(w.next().ok_or_else(|| Error::State("LayerNormalization without beta".into()))?)?;
        }
        Ok((LayerOutput::plain(y), Cache::new(NormCache { xhat, inv_std })))
    }

    /// dx = inv_std * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma; dgamma and dbeta
    /// are summed over every axis but the features.
    fn backward(
        &self,
        _name: &str,
        weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let NormCache { xhat, inv_std } = cache.get::<NormCache>()?;
        let dy = grad.value(Self::CLASS_NAME)?;
        let c = dy.dim(D::Minus1)?;
        let flat = |t: &Tensor| -> Result<Tensor> { Ok(t.reshape(((), c))?) };
        let mut grads = Vec::new();
        let g = if self.scale {
            grads.push(flat(&dy.mul(xhat)?)?.sum(0)?);
            dy.broadcast_mul(&weights[0])?
        } else {
            dy.clone()
        };
        if self.center {
            grads.push(flat(&dy)?.sum(0)?);
        }
        let mean_g = g.mean_keepdim(D::Minus1)?;
        let mean_gx = g.mul(xhat)?.mean_keepdim(D::Minus1)?;
        let dx = g.broadcast_sub(&mean_g)?.sub(&xhat.broadcast_mul(&mean_gx)?)?.broadcast_mul(inv_std)?;
        Ok(LayerGrads { input: Some(dx), weights: grads, more_inputs: Vec::new() })
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "epsilon": 0.01 }), inputs: vec![vec![3, 4]], index_bound: None }
    }
}
