//! Layers without weights: Activation and Dropout.
use super::{ForwardContext, LayerOutput};
use crate::activation::Activation;
use crate::error::{Error, Result};
use candle_core::Tensor;
use rand::Rng;

#[derive(Debug, Clone)]
pub struct ActivationLayer {
    pub activation: Activation,
}

impl ActivationLayer {
    pub fn forward(&self, x: &Tensor) -> Result<LayerOutput> {
        let value = self.activation.apply(x)?;
        let logits = self.activation.has_logits().then(|| (x.clone(), self.activation));
        Ok(LayerOutput { value, logits })
    }
}

/// Inverted dropout as in Keras: in training, zero each value with probability `rate`
/// and scale the survivors by `1 / (1 - rate)`; identity at inference.
#[derive(Debug, Clone)]
pub struct Dropout {
    pub rate: f64,
}

impl Dropout {
    pub fn new(rate: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::Value(format!("`rate` must be in [0, 1), got {}", rate)));
        }
        Ok(Self { rate })
    }

    pub fn forward(&self, x: &Tensor, ctx: &mut ForwardContext) -> Result<LayerOutput> {
        if !ctx.training || self.rate == 0.0 {
            return Ok(LayerOutput::plain(x.clone()));
        }
        let keep = 1.0 - self.rate;
        let scale = (1.0 / keep) as f32;
        let mask: Vec<f32> =
            (0..x.elem_count()).map(|_| if ctx.rng.gen::<f64>() < keep { scale } else { 0.0 }).collect();
        let mask = Tensor::from_vec(mask, x.dims(), x.device())?;
        Ok(LayerOutput::plain(x.mul(&mask)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn dropout_zeroes_about_rate_and_keeps_the_mean() {
        let x = Tensor::ones((100, 100), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let mut ctx = ForwardContext { training: true, rng: rand::rngs::StdRng::seed_from_u64(3) };
        let y = Dropout::new(0.3).unwrap().forward(&x, &mut ctx).unwrap().value;
        let v = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let zeros = v.iter().filter(|a| **a == 0.0).count() as f64 / v.len() as f64;
        assert!((zeros - 0.3).abs() < 0.03);
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!((mean - 1.0).abs() < 0.05);
        ctx.training = false;
        let y = Dropout::new(0.3).unwrap().forward(&x, &mut ctx).unwrap().value;
        assert_eq!(y.sum_all().unwrap().to_scalar::<f32>().unwrap(), 10000.0);
    }
}
