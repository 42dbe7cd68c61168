//! Regularization layers active only in training (identity at inference), as Keras's:
//! GaussianNoise (adds N(0, stddev)), GaussianDropout (multiplies by N(1, rate / (1 - rate))),
//! SpatialDropout1D/2D (drops whole channels, scaling the rest by 1 / (1 - rate)). The noise
//! comes from each step's own seed.
use super::{Cache, Example, ForwardContext, LayerGrads, LayerOutput, LayerType, OutputGrad};
use crate::error::{Error, Result};
use crate::initializer::standard_normal;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// The multiplicative mask of a training pass (None: the input passed through, or noise was
/// added, whose gradient is the identity).
struct MaskCache(Option<Tensor>);

pub(super) fn check_rate(rate: f64) -> Result<()> {
    if !(0.0..1.0).contains(&rate) {
        return Err(Error::Value(format!("`rate` must be in [0, 1), got {}", rate)));
    }
    Ok(())
}

fn pass_through(x: &Tensor) -> (LayerOutput, Cache) {
    (LayerOutput::plain(x.clone()), Cache::new(MaskCache(None)))
}

fn masked(x: &Tensor, mask: Tensor) -> Result<(LayerOutput, Cache)> {
    Ok((LayerOutput::plain(x.broadcast_mul(&mask)?), Cache::new(MaskCache(Some(mask)))))
}

/// The gradient through the mask (summed over the axes it was broadcast along).
fn through_mask(cache: &Cache, grad: OutputGrad, class: &str) -> Result<LayerGrads> {
    let dy = grad.value(class)?;
    Ok(LayerGrads::input_only(match &cache.get::<MaskCache>()?.0 {
        Some(m) => dy.broadcast_mul(m)?,
        None => dy,
    }))
}

macro_rules! mask_backward {
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
            through_mask(cache, grad, Self::CLASS_NAME)
        }
    };
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GaussianNoise {
    pub stddev: f64,
    pub seed: Option<i64>,
}

impl LayerType for GaussianNoise {
    const CLASS_NAME: &'static str = "GaussianNoise";
    const NAME_PREFIX: &'static str = "gaussian_noise";
    const PROPAGATES_MASK: bool = true;

    fn normalize(&mut self) -> Result<()> {
        if !(self.stddev.is_finite() && self.stddev >= 0.0) {
            return Err(Error::Value(format!("`stddev` must be a number >= 0, got {}", self.stddev)));
        }
        Ok(())
    }

    fn output_shape(&self, _name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        Ok(inputs[0].clone())
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        if !ctx.training || self.stddev == 0.0 {
            return Ok(pass_through(x));
        }
        let noise: Vec<f32> = (0..x.elem_count()).map(|_| (self.stddev * standard_normal(&mut ctx.rng)) as f32).collect();
        let y = (x + Tensor::from_vec(noise, x.dims(), x.device())?)?;
        Ok((LayerOutput::plain(y), Cache::new(MaskCache(None))))
    }

    mask_backward!();

    fn example() -> Example {
        Example { config: serde_json::json!({ "stddev": 0.3 }), inputs: vec![vec![5]], index_bound: None }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GaussianDropout {
    pub rate: f64,
    pub seed: Option<i64>,
}

impl LayerType for GaussianDropout {
    const CLASS_NAME: &'static str = "GaussianDropout";
    const NAME_PREFIX: &'static str = "gaussian_dropout";
    const PROPAGATES_MASK: bool = true;

    fn normalize(&mut self) -> Result<()> {
        check_rate(self.rate)
    }

    fn output_shape(&self, _name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        Ok(inputs[0].clone())
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        if !ctx.training || self.rate == 0.0 {
            return Ok(pass_through(x));
        }
        let stddev = (self.rate / (1.0 - self.rate)).sqrt();
        let mask: Vec<f32> = (0..x.elem_count()).map(|_| (1.0 + stddev * standard_normal(&mut ctx.rng)) as f32).collect();
        masked(x, Tensor::from_vec(mask, x.dims(), x.device())?)
    }

    mask_backward!();

    fn example() -> Example {
        Example { config: serde_json::json!({ "rate": 0.2 }), inputs: vec![vec![5]], index_bound: None }
    }
}

/// A channel mask for `x` (batch first, channels last): one draw per sample and channel,
/// broadcast over the other axes.
fn channel_mask(x: &Tensor, rate: f64, ctx: &mut ForwardContext) -> Result<Tensor> {
    let dims = x.dims();
    let mut shape = vec![1; dims.len()];
    shape[0] = dims[0];
    shape[dims.len() - 1] = dims[dims.len() - 1];
    super::dropout::keep_mask(&mut ctx.rng, &shape, rate, x.device())
}

macro_rules! spatial_dropout {
    ($name:ident, $class:literal, $prefix:literal, $rank:literal, $example:expr) => {
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        #[serde(default)]
        pub struct $name {
            pub rate: f64,
            pub data_format: Option<super::DataFormat>,
            pub noise_shape: super::NotSupported,
            pub seed: Option<i64>,
        }

        impl LayerType for $name {
            const CLASS_NAME: &'static str = $class;
            const NAME_PREFIX: &'static str = $prefix;

            fn normalize(&mut self) -> Result<()> {
                check_rate(self.rate)?;
                self.data_format.map_or(Ok(()), |d| d.check())
            }

            fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
                if inputs[0].len() != $rank {
                    return Err(Error::Value(format!("layer \"{}\" ({}) needs inputs of {} axes per sample, got {}", name, $class, $rank, inputs[0].len())));
                }
                Ok(inputs[0].clone())
            }

            fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
                let x = &xs[0];
                if !ctx.training || self.rate == 0.0 {
                    return Ok(pass_through(x));
                }
                let mask = channel_mask(x, self.rate, ctx)?;
                masked(x, mask)
            }

            mask_backward!();

            fn example() -> Example {
                Example { config: serde_json::json!({ "rate": 0.3 }), inputs: vec![$example], index_bound: None }
            }
        }
    };
}

spatial_dropout!(SpatialDropout1D, "SpatialDropout1D", "spatial_dropout1d", 2, vec![4, 3]);
spatial_dropout!(SpatialDropout2D, "SpatialDropout2D", "spatial_dropout2d", 3, vec![3, 3, 2]);

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn training_noise_has_keras_statistics_and_inference_passes_through() {
        let x = Tensor::ones((200, 50), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let mut ctx = ForwardContext { training: true, rng: rand::rngs::StdRng::seed_from_u64(1), mask: None, collective: None };
        let y = GaussianDropout { rate: 0.2, seed: None }.forward("g", &[], std::slice::from_ref(&x), &mut ctx).unwrap().0.value;
        let v = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f32>() / v.len() as f32;
        assert!((mean - 1.0).abs() < 0.02 && (var - 0.25).abs() < 0.02, "{} {}", mean, var);
        let s = SpatialDropout1D { rate: 0.5, ..Default::default() };
        let x3 = Tensor::ones((64, 5, 8), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let y = s.forward("s", &[], std::slice::from_ref(&x3), &mut ctx).unwrap().0.value;
        // Each (sample, channel) is all 0 or all 2 along the steps.
        let steps = y.max(1).unwrap().sub(&y.min(1).unwrap()).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(steps, 0.0);
        let mut infer = ForwardContext { training: false, rng: rand::rngs::StdRng::seed_from_u64(1), mask: None, collective: None };
        let same = GaussianNoise { stddev: 1.0, seed: None }.forward("n", &[], std::slice::from_ref(&x), &mut infer).unwrap().0.value;
        assert_eq!(same.to_vec2::<f32>().unwrap(), x.to_vec2::<f32>().unwrap());
    }
}
