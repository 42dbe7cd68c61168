//! Masking: time steps whose features all equal `mask_value` are masked for the layers
//! after (recurrent layers skip them) and zeroed, as Keras does.
use super::{Cache, Example, ForwardContext, LayerGrads, LayerOutput, LayerType, OutputGrad};
use crate::error::{Error, Result};
use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Masking {
    pub mask_value: f64,
}

impl Masking {
    /// 1 for steps with any feature unequal to `mask_value`, shaped as the input without its
    /// last axis.
    fn keep(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.ne(self.mask_value as f32)?.to_dtype(x.dtype())?.max(D::Minus1)?)
    }
}

impl LayerType for Masking {
    const CLASS_NAME: &'static str = "Masking";
    const NAME_PREFIX: &'static str = "masking";

    fn normalize(&mut self) -> Result<()> {
        if !self.mask_value.is_finite() {
            return Err(Error::Value(format!("`mask_value` must be a finite number, got {}", self.mask_value)));
        }
        Ok(())
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        if inputs[0].len() < 2 {
            return Err(Error::Value(format!("layer \"{}\" (Masking) needs inputs of shape (batch, time, features)", name)));
        }
        Ok(inputs[0].clone())
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let keep = self.keep(&xs[0])?.unsqueeze(D::Minus1)?;
        Ok((LayerOutput::plain(xs[0].broadcast_mul(&keep)?), Cache::new(keep)))
    }

    fn backward(&self, _name: &str, _weights: &[Tensor], _t: &[Option<Tensor>], cache: &Cache, grad: OutputGrad, _need: bool) -> Result<LayerGrads> {
        Ok(LayerGrads::input_only(grad.value(Self::CLASS_NAME)?.broadcast_mul(cache.get::<Tensor>()?)?))
    }

    fn makes_mask(&self) -> bool {
        true
    }

    fn compute_mask(&self, xs: &[Tensor], _mask: Option<&Tensor>) -> Result<Option<Tensor>> {
        Ok(Some(self.keep(&xs[0])?))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "mask_value": 0.5 }), inputs: vec![vec![3, 2]], index_bound: None }
    }
}
