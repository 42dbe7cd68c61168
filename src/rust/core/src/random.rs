//! Random draws the layers and traced ops make in a step, from the step's own generator.
use crate::error::Result;
use crate::initializer::standard_normal;
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::Rng;

/// Inverted dropout's keep-mask of `shape`: each value kept with probability `1 - rate` and
/// then scaled by `1 / (1 - rate)`, else 0 (Dropout, spatial and recurrent dropout, traced
/// `k_dropout()`).
pub fn keep_mask(rng: &mut StdRng, shape: &[usize], rate: f64, device: &Device) -> Result<Tensor> {
    let keep = 1.0 - rate;
    let scale = (1.0 / keep) as f32;
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| if rng.gen::<f64>() < keep { scale } else { 0.0 }).collect();
    Ok(Tensor::from_vec(values, shape, device)?)
}

/// `n` draws from a normal distribution.
pub fn normal(rng: &mut StdRng, n: usize, mean: f64, stddev: f64) -> Vec<f32> {
    (0..n).map(|_| (mean + stddev * standard_normal(rng)) as f32).collect()
}

/// `n` draws from a uniform distribution on [lo, hi).
pub fn uniform(rng: &mut StdRng, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    if hi <= lo {
        return vec![lo as f32; n];
    }
    (0..n).map(|_| rng.gen_range(lo..hi) as f32).collect()
}
