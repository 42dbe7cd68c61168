//! AlphaDropout, as Keras's: in training, dropped values are set to SELU's negative
//! saturation `alpha' = -scale * alpha` instead of 0, then an affine map `a x + b` restores
//! the input's mean and variance (for inputs of mean 0 and variance 1, as SELU networks
//! keep them); identity at inference. A value is kept with probability `1 - rate`, each
//! step's draws from its own seed.
use super::{Cache, Example, ForwardContext, LayerGrads, LayerOutput, LayerType, NotSupported, OutputGrad};
use crate::error::Result;
use candle_core::Tensor;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// SELU's constants (Keras's).
const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AlphaDropout {
    pub rate: f64,
    pub noise_shape: NotSupported,
    pub seed: Option<i64>,
}

/// The training pass's `a * keep` (the gradient's factor); None when the input passed through.
struct AlphaCache(Option<Tensor>);

impl AlphaDropout {
    /// Keras's affine map: `a = ((1 - rate)(1 + rate alpha'^2))^-1/2`, `b = -a alpha' rate`.
    fn affine(&self) -> (f64, f64, f64) {
        let alpha_p = -SELU_ALPHA * SELU_SCALE;
        let a = ((1.0 - self.rate) * (1.0 + self.rate * alpha_p * alpha_p)).powf(-0.5);
        (alpha_p, a, -a * alpha_p * self.rate)
    }
}

impl LayerType for AlphaDropout {
    const CLASS_NAME: &'static str = "AlphaDropout";
    const NAME_PREFIX: &'static str = "alpha_dropout";
    const PROPAGATES_MASK: bool = true;

    fn normalize(&mut self) -> Result<()> {
        super::noise::check_rate(self.rate)
    }

    fn output_shape(&self, _name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        Ok(inputs[0].clone())
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        if !ctx.training || self.rate == 0.0 {
            return Ok((LayerOutput::plain(x.clone()), Cache::new(AlphaCache(None))));
        }
        let (alpha_p, a, b) = self.affine();
        // Per value: kept, a x + b; dropped, a alpha' + b. As `x * scale + shift` with
        // scale = a or 0, shift = b or a alpha' + b.
        let n = x.elem_count();
        let (mut scale, mut shift) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let kept = ctx.rng.gen::<f64>() >= self.rate;
            scale.push(if kept { a as f32 } else { 0.0 });
            shift.push(if kept { b as f32 } else { (a * alpha_p + b) as f32 });
        }
        let scale = Tensor::from_vec(scale, x.dims(), x.device())?;
        let shift = Tensor::from_vec(shift, x.dims(), x.device())?;
        let y = x.mul(&scale)?.add(&shift)?;
        Ok((LayerOutput::plain(y), Cache::new(AlphaCache(Some(scale)))))
    }

    fn backward(&self, _name: &str, _weights: &[Tensor], _t: &[Option<Tensor>], cache: &Cache, grad: OutputGrad, _need: bool) -> Result<LayerGrads> {
        let dy = grad.value(Self::CLASS_NAME)?;
        Ok(LayerGrads::input_only(match &cache.get::<AlphaCache>()?.0 {
            Some(scale) => dy.mul(scale)?,
            None => dy,
        }))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "rate": 0.2 }), inputs: vec![vec![5]], index_bound: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn training_keeps_selu_statistics_and_inference_passes_through() {
        // Inputs of mean 0 and variance 1 keep them (Keras's purpose for the affine map).
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let values: Vec<f32> = (0..40_000).map(|_| crate::initializer::standard_normal(&mut rng) as f32).collect();
        let x = Tensor::from_vec(values, (400, 100), &candle_core::Device::Cpu).unwrap();
        let layer = AlphaDropout { rate: 0.3, ..Default::default() };
        let mut ctx = ForwardContext { training: true, rng: rand::rngs::StdRng::seed_from_u64(1), mask: None, collective: None };
        let (out, cache) = layer.forward("a", &[], std::slice::from_ref(&x), &mut ctx).unwrap();
        let v = out.value.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mean = v.iter().map(|a| *a as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|a| (*a as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {} var {}", mean, var);
        // Dropped values sit at a alpha' + b; the gradient flows through kept values only.
        let (alpha_p, a, b) = layer.affine();
        let dropped = v.iter().filter(|y| (**y as f64 - (a * alpha_p + b)).abs() < 1e-6).count() as f64 / v.len() as f64;
        assert!((dropped - 0.3).abs() < 0.02, "{}", dropped);
        let ones = Tensor::ones((400, 100), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let g = layer.backward("a", &[], &[], &cache, OutputGrad::Value(ones), true).unwrap().input.unwrap();
        let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(g.iter().all(|d| *d == 0.0 || (*d as f64 - a).abs() < 1e-6));
        let mut infer = ForwardContext { training: false, rng: rand::rngs::StdRng::seed_from_u64(1), mask: None, collective: None };
        let same = layer.forward("a", &[], std::slice::from_ref(&x), &mut infer).unwrap().0.value;
        assert_eq!(same.to_vec2::<f32>().unwrap(), x.to_vec2::<f32>().unwrap());
    }
}
