//! Inverted dropout as in Keras: in training, zero each value with probability `rate` and
//! scale the survivors by `1 / (1 - rate)`; identity at inference.
use super::{Cache, Example, ForwardContext, LayerGrads, LayerOutput, LayerType, NotSupported, OutputGrad};
use crate::error::{Error, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Dropout {
    pub rate: f64,
    pub noise_shape: NotSupported,
    /// Keras's seed for the masks; rustgpu draws masks from each step's own seed.
    pub seed: Option<i64>,
}

/// The scaled keep-mask, when dropout was active.
struct DropoutCache {
    mask: Option<Tensor>,
}

pub(crate) use crate::random::keep_mask;

impl Dropout {
    pub fn new(rate: f64) -> Result<Self> {
        let mut layer = Self { rate, ..Self::default() };
        layer.normalize()?;
        Ok(layer)
    }
}

impl LayerType for Dropout {
    const CLASS_NAME: &'static str = "Dropout";
    const NAME_PREFIX: &'static str = "dropout";
    const PROPAGATES_MASK: bool = true;

    fn normalize(&mut self) -> Result<()> {
        if !(0.0..1.0).contains(&self.rate) {
            return Err(Error::Value(format!("`rate` must be in [0, 1), got {}", self.rate)));
        }
        Ok(())
    }

    fn output_shape(&self, _name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        Ok(inputs[0].clone())
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        if !ctx.training || self.rate == 0.0 {
            return Ok((LayerOutput::plain(x.clone()), Cache::new(DropoutCache { mask: None })));
        }
        let mask = keep_mask(&mut ctx.rng, x.dims(), self.rate, x.device())?;
        Ok((LayerOutput::plain(x.mul(&mask)?), Cache::new(DropoutCache { mask: Some(mask) })))
    }

    fn backward(
        &self,
        _name: &str,
        _weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let dy = grad.value(Self::CLASS_NAME)?;
        let input = match &cache.get::<DropoutCache>()?.mask {
            Some(m) => dy.mul(m)?,
            None => dy,
        };
        Ok(LayerGrads::input_only(input))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "rate": 0.4 }), inputs: vec![vec![6]], index_bound: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn dropout_zeroes_about_rate_and_keeps_the_mean() {
        let x = Tensor::ones((100, 100), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let mut ctx = ForwardContext { training: true, rng: rand::rngs::StdRng::seed_from_u64(3), mask: None, collective: None };
        let layer = Dropout::new(0.3).unwrap();
        let y = layer.forward("d", &[], std::slice::from_ref(&x), &mut ctx).unwrap().0.value;
        let v = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let zeros = v.iter().filter(|a| **a == 0.0).count() as f64 / v.len() as f64;
        assert!((zeros - 0.3).abs() < 0.03);
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!((mean - 1.0).abs() < 0.05);
        ctx.training = false;
        let y = layer.forward("d", &[], &[x], &mut ctx).unwrap().0.value;
        assert_eq!(y.sum_all().unwrap().to_scalar::<f32>().unwrap(), 10000.0);
        assert!(Dropout::new(1.0).is_err());
    }
}
