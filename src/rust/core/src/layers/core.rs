//! Layers without weights: Activation and Dropout.
use super::{Cache, ForwardContext, LayerGrads, LayerOutput, OutputGrad};
use crate::activation::Activation;
use crate::error::{Error, Result};
use candle_core::Tensor;
use rand::Rng;

#[derive(Debug, Clone)]
pub struct ActivationLayer {
    pub activation: Activation,
}

impl ActivationLayer {
    pub fn forward(&self, x: &Tensor) -> Result<(LayerOutput, Cache)> {
        let value = self.activation.apply(x)?;
        let logits = self.activation.has_logits().then(|| (x.clone(), self.activation));
        let cache = Cache::Activation { x: x.clone(), y: value.clone() };
        Ok((LayerOutput { value, logits }, cache))
    }

    pub fn backward(&self, x: &Tensor, y: &Tensor, grad: OutputGrad) -> Result<LayerGrads> {
        let input = match grad {
            OutputGrad::Logits(dz) => dz,
            OutputGrad::Value(dy) => self.activation.backward(x, y, &dy)?,
        };
        Ok(LayerGrads { input: Some(input), weights: Vec::new(), more_inputs: Vec::new() })
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

    pub fn forward(&self, x: &Tensor, ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        if !ctx.training || self.rate == 0.0 {
            return Ok((LayerOutput::plain(x.clone()), Cache::Dropout { mask: None }));
        }
        let keep = 1.0 - self.rate;
        let scale = (1.0 / keep) as f32;
        let mask: Vec<f32> =
            (0..x.elem_count()).map(|_| if ctx.rng.gen::<f64>() < keep { scale } else { 0.0 }).collect();
        let mask = Tensor::from_vec(mask, x.dims(), x.device())?;
        Ok((LayerOutput::plain(x.mul(&mask)?), Cache::Dropout { mask: Some(mask) }))
    }
}

pub(crate) fn dropout_backward(mask: &Option<Tensor>, grad: OutputGrad) -> Result<LayerGrads> {
    let dy = match grad {
        OutputGrad::Value(dy) => dy,
        OutputGrad::Logits(_) => return Err(Error::State("dropout cannot end a model whose loss uses logits".into())),
    };
    let input = match mask {
        Some(m) => dy.mul(m)?,
        None => dy,
    };
    Ok(LayerGrads { input: Some(input), weights: Vec::new(), more_inputs: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn dropout_zeroes_about_rate_and_keeps_the_mean() {
        let x = Tensor::ones((100, 100), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let mut ctx = ForwardContext { training: true, rng: rand::rngs::StdRng::seed_from_u64(3) };
        let y = Dropout::new(0.3).unwrap().forward(&x, &mut ctx).unwrap().0.value;
        let v = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let zeros = v.iter().filter(|a| **a == 0.0).count() as f64 / v.len() as f64;
        assert!((zeros - 0.3).abs() < 0.03);
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!((mean - 1.0).abs() < 0.05);
        ctx.training = false;
        let y = Dropout::new(0.3).unwrap().forward(&x, &mut ctx).unwrap().0.value;
        assert_eq!(y.sum_all().unwrap().to_scalar::<f32>().unwrap(), 10000.0);
    }
}
