//! Batch normalization over the last (channels) axis, with Keras's defaults
//! (momentum 0.99, epsilon 1e-3). In training it normalizes with the batch's statistics
//! and moves the moving mean and variance toward them; at inference it uses the moving
//! statistics. The moving updates leave the step as state updates, applied to the master
//! weights only when the step succeeds.
//!
//! # Shapes
//! input `(batch, ..., channels)`; gamma, beta, moving_mean, moving_variance `(channels)`.
use super::{Axes, Cache, Example, ForwardContext, InferenceMap, LayerGrads, LayerOutput, LayerType, NotSupported, OutputGrad, WeightSpec};
use crate::collective::Collective;
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchNormalization {
    pub axis: Axes,
    pub momentum: f64,
    pub epsilon: f64,
    pub center: bool,
    pub scale: bool,
    pub beta_initializer: Initializer,
    pub gamma_initializer: Initializer,
    pub moving_mean_initializer: Initializer,
    pub moving_variance_initializer: Initializer,
    pub beta_regularizer: NotSupported,
    pub gamma_regularizer: NotSupported,
    pub beta_constraint: NotSupported,
    pub gamma_constraint: NotSupported,
    /// Keras's `synchronized`: on replicas, normalize with the statistics of the whole
    /// batch (every replica's rows), as one device would, instead of each replica's own.
    /// Saved only when set, as Keras 3 does (tf-keras drops it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub synchronized: bool,
}

impl Default for BatchNormalization {
    fn default() -> Self {
        Self {
            axis: Axes(vec![-1]),
            momentum: 0.99,
            epsilon: 1e-3,
            center: true,
            scale: true,
            beta_initializer: Initializer::zeros(),
            gamma_initializer: Initializer::ones(),
            moving_mean_initializer: Initializer::zeros(),
            moving_variance_initializer: Initializer::ones(),
            beta_regularizer: NotSupported,
            gamma_regularizer: NotSupported,
            beta_constraint: NotSupported,
            gamma_constraint: NotSupported,
            synchronized: false,
        }
    }
}

/// Normalized input, 1/std per channel, and the moving statistics this batch moves to.
/// An inference pass's: the input and the moving statistics' 1/sqrt(var + epsilon), for
/// gradients of the frozen affine map (`k_gradients()` in the learning phase 0).
struct InferenceCache {
    x2: Tensor,
    inv_std: Tensor,
    input_dims: Vec<usize>,
}

/// A training pass on the CPU (the fused kernels): the input itself, not a normalized copy.
struct FusedCache {
    x2: Tensor,
    stats: crate::kernels::batch_norm::Statistics,
    input_dims: Vec<usize>,
    new_mean: Tensor,
    new_var: Tensor,
}

struct BatchNormCache {
    xhat: Tensor,
    inv_std: Tensor,
    input_dims: Vec<usize>,
    new_mean: Tensor,
    new_var: Tensor,
    /// A synchronized pass's replicas: the backward pass adds up its sums with theirs.
    shared: Option<SharedBatch>,
}

/// The replicas a synchronized pass normalized with, and the rows of the whole batch.
struct SharedBatch {
    collective: Arc<dyn Collective>,
    rows: f64,
}

/// Per-replica sums (tensors of one shape) added up over every replica.
fn summed_over_replicas(collective: &dyn Collective, local: &[&Tensor]) -> Result<Vec<Tensor>> {
    let mut values = Vec::new();
    for t in local {
        values.extend(t.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?);
    }
    collective.all_reduce_sum(&mut values)?;
    let c = values.len() / local.len().max(1);
    local.iter().zip(values.chunks(c.max(1))).map(|(t, v)| Ok(Tensor::from_vec(v.iter().map(|x| *x as f32).collect::<Vec<f32>>(), c, t.device())?)).collect()
}

impl BatchNormalization {
    /// Index (within the layer's weights) of the moving mean; the variance follows it.
    pub fn moving_offset(&self) -> usize {
        usize::from(self.scale) + usize::from(self.center)
    }

    fn affine(&self, weights: &[Tensor]) -> (Option<Tensor>, Option<Tensor>) {
        let gamma = self.scale.then(|| weights[0].clone());
        let beta = self.center.then(|| weights[usize::from(self.scale)].clone());
        (gamma, beta)
    }

    /// Gradients of an inference pass, an affine map per channel: dx = dy * gamma * inv_std.
    fn inference_backward(&self, weights: &[Tensor], x2: &Tensor, inv_std: &Tensor, input_dims: &[usize], dy: &Tensor) -> Result<LayerGrads> {
        let (rows, c) = x2.dims2()?;
        let dy2 = dy.reshape((rows, c))?;
        let (gamma, _) = self.affine(weights);
        let xhat = x2.broadcast_sub(&weights[self.moving_offset()])?.broadcast_mul(inv_std)?;
        let mut coef = inv_std.clone();
        if let Some(g) = &gamma {
            coef = coef.mul(g)?;
        }
        let dx = dy2.broadcast_mul(&coef)?.reshape(input_dims)?;
        let mut grads = Vec::new();
        if self.scale {
            grads.push(crate::kernels::sum_rows(&dy2.mul(&xhat)?)?);
        }
        if self.center {
            grads.push(crate::kernels::sum_rows(&dy2)?);
        }
        let zeros = weights[self.moving_offset()].zeros_like()?;
        grads.push(zeros.clone());
        grads.push(zeros);
        Ok(LayerGrads { input: Some(dx), weights: grads, more_inputs: Vec::new() })
    }

    /// Keras's moving statistics after a training pass on a batch of `rows` rows.
    fn moved(&self, dims_len: usize, rows: usize, moving_mean: &Tensor, moving_var: &Tensor, mean: &Tensor, var: &Tensor) -> Result<(Tensor, Tensor)> {
        // TensorFlow's fused kernel (4-d inputs) moves the variance toward the unbiased
        // batch variance; the general path (other ranks) toward the biased one.
        let var_for_moving = if dims_len == 4 && rows > 1 { (var * (rows as f64 / (rows - 1) as f64))? } else { var.clone() };
        let keep = 1.0 - self.momentum;
        let new_mean = (moving_mean - ((moving_mean - mean)? * keep)?)?;
        let new_var = (moving_var - ((moving_var - &var_for_moving)? * keep)?)?;
        Ok((new_mean, new_var))
    }

    /// The input as (rows, channels), and its dims.
    fn as_rows(name: &str, x: &Tensor) -> Result<(Tensor, Vec<usize>)> {
        let dims = x.dims().to_vec();
        let c = *dims.last().ok_or_else(|| Error::Value(format!("layer \"{}\" needs an input with a channels axis", name)))?;
        Ok((x.reshape((x.elem_count() / c.max(1), c))?, dims))
    }

    /// Whether a pass over `x2` (rows, channels) runs the CPU's fused training kernels: in
    /// training, f32 on the CPU, not synchronized over replicas, some rows.
    fn runs_fused(&self, x2: &Tensor, training: bool, replicas: Option<&Arc<dyn Collective>>) -> bool {
        let synchronized = self.synchronized && replicas.is_some();
        training && !synchronized && x2.device().is_cpu() && x2.dtype() == candle_core::DType::F32 && x2.dim(0).is_ok_and(|rows| rows > 0)
    }

    /// The CPU's training pass: one kernel for the statistics and the normalized output
    /// (with `relu`, a ReLU of it).
    fn fused_training(&self, weights: &[Tensor], x2: Tensor, dims: Vec<usize>, relu: bool) -> Result<(LayerOutput, Cache)> {
        use crate::kernels::{batch_norm, with_cpu_slices};
        let (rows, c) = x2.dims2()?;
        let (gamma, beta) = self.affine(weights);
        let mut ts = vec![&x2];
        ts.extend(gamma.iter().chain(beta.iter()));
        let (y, stats) = with_cpu_slices(&ts, |s| {
            let gamma = self.scale.then(|| s[1]);
            let beta = self.center.then(|| s[1 + usize::from(self.scale)]);
            batch_norm::forward_training(s[0], c, gamma, beta, self.epsilon, relu)
        })?;
        let device = x2.device().clone();
        let mean = Tensor::from_slice(&stats.mean, c, &device)?;
        let var = Tensor::from_slice(&stats.var, c, &device)?;
        let (new_mean, new_var) = self.moved(dims.len(), rows, &weights[self.moving_offset()], &weights[self.moving_offset() + 1], &mean, &var)?;
        let value = Tensor::from_vec(y, dims.as_slice(), &device)?;
        Ok((LayerOutput::plain(value), Cache::new(FusedCache { x2, stats, input_dims: dims, new_mean, new_var })))
    }

    fn fused_backward(&self, weights: &[Tensor], c: &FusedCache, dy: &Tensor) -> Result<LayerGrads> {
        use crate::kernels::{batch_norm, with_cpu_slices};
        let (_, channels) = c.x2.dims2()?;
        let (gamma, _) = self.affine(weights);
        let dy = dy.reshape(c.x2.dims())?;
        let mut ts = vec![&c.x2, &dy];
        ts.extend(gamma.iter());
        let (dx, dgamma, dbeta) = with_cpu_slices(&ts, |s| batch_norm::backward_training(s[0], s[1], channels, &c.stats, self.scale.then(|| s[2])))?;
        let device = c.x2.device();
        let mut grads = Vec::new();
        if self.scale {
            grads.push(Tensor::from_vec(dgamma, channels, device)?);
        }
        if self.center {
            grads.push(Tensor::from_vec(dbeta, channels, device)?);
        }
        let zeros = weights[self.moving_offset()].zeros_like()?;
        grads.push(zeros.clone());
        grads.push(zeros);
        Ok(LayerGrads { input: Some(Tensor::from_vec(dx, c.input_dims.as_slice(), device)?), weights: grads, more_inputs: Vec::new() })
    }

    fn normalized(&self, name: &str, weights: &[Tensor], x: &Tensor, training: bool, replicas: Option<&Arc<dyn Collective>>) -> Result<(LayerOutput, Cache)> {
        let (x2, dims) = Self::as_rows(name, x)?;
        if self.runs_fused(&x2, training, replicas) {
            return self.fused_training(weights, x2, dims, false);
        }
        let (rows, c) = x2.dims2()?;
        let shared = match replicas {
            Some(collective) if training && self.synchronized => Some(collective.clone()),
            _ => None,
        };
        let (gamma, beta) = self.affine(weights);
        let (moving_mean, moving_var) = (&weights[self.moving_offset()], &weights[self.moving_offset() + 1]);
        let finish = |xhat: &Tensor| -> Result<Tensor> {
            let mut y = xhat.clone();
            if let Some(g) = &gamma {
                y = y.broadcast_mul(g)?;
            }
            if let Some(b) = &beta {
                y = y.broadcast_add(b)?;
            }
            Ok(y.reshape(dims.as_slice())?)
        };
        if !training && x2.device().is_cpu() && x2.dtype() == candle_core::DType::F32 {
            // One multiply-add per value with the moving statistics folded in.
            let inv_std = (moving_var + self.epsilon)?.sqrt()?.recip()?;
            let mut ts = vec![&x2, moving_mean, &inv_std];
            ts.extend(gamma.iter().chain(beta.iter()));
            let y = crate::kernels::with_cpu_slices(&ts, |s| {
                let gamma = self.scale.then(|| s[3]);
                let beta = self.center.then(|| s[3 + usize::from(self.scale)]);
                let (scale, shift) = crate::kernels::batch_norm::affine(s[1], s[2], gamma, beta);
                crate::kernels::batch_norm::scale_shift(s[0], c, &scale, &shift)
            })?;
            let value = Tensor::from_vec(y, dims.as_slice(), x2.device())?;
            return Ok((LayerOutput::plain(value), Cache::new(InferenceCache { x2, inv_std, input_dims: dims })));
        }
        if !training {
            let inv_std = (moving_var + self.epsilon)?.sqrt()?.recip()?;
            let xhat = x2.broadcast_sub(moving_mean)?.broadcast_mul(&inv_std)?;
            return Ok((LayerOutput::plain(finish(&xhat)?), Cache::new(InferenceCache { x2, inv_std, input_dims: dims })));
        }
        // Synchronized: the whole batch's sums, in two rounds (the sums and rows, then the
        // squared deviations from the whole batch's mean), so the variance is the two-pass one
        // a single device computes.
        let (sum, shared) = match shared {
            Some(collective) => {
                // The rows ride along, as a double (exact), after the channels' sums.
                let mut values = crate::kernels::sum_rows(&x2)?.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
                values.push(rows as f64);
                collective.all_reduce_sum(&mut values)?;
                let count = values.pop().unwrap_or(0.0);
                let sum = Tensor::from_vec(values.iter().map(|v| *v as f32).collect::<Vec<f32>>(), c, x2.device())?;
                (sum, Some(SharedBatch { collective, rows: count }))
            }
            None => (crate::kernels::sum_rows(&x2)?, None),
        };
        let count = shared.as_ref().map_or(rows as f64, |sh| sh.rows);
        let mean = (sum / count)?;
        let centered = x2.broadcast_sub(&mean)?;
        let squares = crate::kernels::sum_rows(&centered.sqr()?)?;
        let squares = match &shared {
            Some(sh) => summed_over_replicas(sh.collective.as_ref(), &[&squares])?.remove(0),
            None => squares,
        };
        let var = (squares / count)?;
        let inv_std = (&var + self.epsilon)?.sqrt()?.recip()?;
        let xhat = centered.broadcast_mul(&inv_std)?;
        let (new_mean, new_var) = self.moved(dims.len(), count as usize, moving_mean, moving_var, &mean, &var)?;
        let value = finish(&xhat)?;
        Ok((LayerOutput::plain(value), Cache::new(BatchNormCache { xhat, inv_std, input_dims: dims, new_mean, new_var, shared })))
    }
}

impl LayerType for BatchNormalization {
    const CLASS_NAME: &'static str = "BatchNormalization";
    const NAME_PREFIX: &'static str = "batch_normalization";
    const PROPAGATES_MASK: bool = true;

    fn normalize(&mut self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.momentum) {
            return Err(Error::Value(format!("`momentum` must be in [0, 1], got {}", self.momentum)));
        }
        if !(self.epsilon.is_finite() && self.epsilon >= 0.0) {
            return Err(Error::Value(format!("`epsilon` must be a number >= 0, got {}", self.epsilon)));
        }
        if self.axis.0.len() != 1 || self.axis.0[0] == 0 || self.axis.0[0] < -1 {
            return Err(Error::Value(format!("only batch normalization over the last axis (-1) is supported, got axis {:?}", self.axis.0)));
        }
        Ok(())
    }

    /// Keras stores the axis as a positive index once built (e.g. [3] for NHWC images, [1]
    /// after a Dense layer): checked here, where the input's rank is known.
    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        if !self.axis.is_last(inputs[0].len()) {
            return Err(Error::Value(format!(
                "layer \"{}\" (BatchNormalization): only normalization over the last axis is supported, got axis {:?} for inputs with {} axes",
                name,
                self.axis.0,
                inputs[0].len() + 1
            )));
        }
        Ok(inputs[0].clone())
    }

    fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        let c = input.last().copied().unwrap_or(1);
        let spec = |name: &str, init: &Initializer, trainable| WeightSpec { name: name.into(), shape: vec![c], initializer: init.clone(), trainable };
        let mut specs = Vec::new();
        if self.scale {
            specs.push(spec("gamma", &self.gamma_initializer, true));
        }
        if self.center {
            specs.push(spec("beta", &self.beta_initializer, true));
        }
        specs.push(spec("moving_mean", &self.moving_mean_initializer, false));
        specs.push(spec("moving_variance", &self.moving_variance_initializer, false));
        specs
    }

    fn forward(&self, name: &str, weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        self.normalized(name, weights, &xs[0], ctx.training, ctx.collective.as_ref())
    }

    fn forward_then_relu(&self, name: &str, weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<Option<(LayerOutput, Cache)>> {
        let (x2, dims) = Self::as_rows(name, &xs[0])?;
        if !self.runs_fused(&x2, ctx.training, ctx.collective.as_ref()) {
            return Ok(None);
        }
        Ok(Some(self.fused_training(weights, x2, dims, true)?))
    }

    fn inference_map(&self, weights: &[Tensor]) -> Result<Option<InferenceMap>> {
        // As the inference pass computes it (kernels::batch_norm::affine): scale = gamma /
        // sqrt(var + epsilon), shift = beta - mean * scale.
        let (gamma, beta) = self.affine(weights);
        let mean = &weights[self.moving_offset()];
        let mut scale = (&weights[self.moving_offset() + 1] + self.epsilon)?.sqrt()?.recip()?;
        if let Some(g) = &gamma {
            scale = g.mul(&scale)?;
        }
        let shift = match &beta {
            Some(b) => (b - mean.mul(&scale)?)?,
            None => mean.mul(&scale)?.neg()?,
        };
        Ok(Some(InferenceMap::Affine { scale, shift }))
    }

    fn state_updates(&self, cache: &Cache) -> Vec<(usize, Tensor)> {
        let moved = |m: &Tensor, v: &Tensor| vec![(self.moving_offset(), m.clone()), (self.moving_offset() + 1, v.clone())];
        match (cache.get::<BatchNormCache>(), cache.get::<FusedCache>()) {
            (Ok(c), _) => moved(&c.new_mean, &c.new_var),
            (_, Ok(c)) => moved(&c.new_mean, &c.new_var),
            // An inference pass moves nothing.
            _ => Vec::new(),
        }
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
        let dy = grad.value(Self::CLASS_NAME)?;
        if let Ok(InferenceCache { x2, inv_std, input_dims }) = cache.get::<InferenceCache>() {
            return self.inference_backward(weights, x2, inv_std, input_dims, &dy);
        }
        if let Ok(c) = cache.get::<FusedCache>() {
            return self.fused_backward(weights, c, &dy);
        }
        let BatchNormCache { xhat, inv_std, input_dims, shared, .. } = cache.get::<BatchNormCache>()?;
        let (rows, c) = xhat.dims2()?;
        let dy2 = dy.reshape((rows, c))?;
        let (gamma, _) = self.affine(weights);
        // The weights' gradients are this replica's share (the step adds up the replicas');
        // the input's gradient needs the sums over the batch the statistics came from.
        let dbeta = crate::kernels::sum_rows(&dy2)?;
        let dgamma = crate::kernels::sum_rows(&dy2.mul(xhat)?)?;
        let (n, sum_dy, sum_dy_xhat) = match shared {
            Some(sh) => {
                let mut both = summed_over_replicas(sh.collective.as_ref(), &[&dbeta, &dgamma])?;
                let sum_dy_xhat = both.pop().unwrap_or_else(|| dgamma.clone());
                (sh.rows, both.pop().unwrap_or_else(|| dbeta.clone()), sum_dy_xhat)
            }
            None => (rows as f64, dbeta.clone(), dgamma.clone()),
        };
        // dx = gamma * inv_std / n * (n * dy - sum(dy) - xhat * sum(dy * xhat))
        let inner = ((dy2 * n)?.broadcast_sub(&sum_dy)? - xhat.broadcast_mul(&sum_dy_xhat)?)?;
        let mut coef = (inv_std / n)?;
        if let Some(g) = &gamma {
            coef = coef.mul(g)?;
        }
        let dx = inner.broadcast_mul(&coef)?.reshape(input_dims.as_slice())?;
        let mut grads = Vec::new();
        if self.scale {
            grads.push(dgamma);
        }
        if self.center {
            grads.push(dbeta);
        }
        let zeros = weights[self.moving_offset()].zeros_like()?;
        grads.push(zeros.clone());
        grads.push(zeros);
        Ok(LayerGrads { input: Some(dx), weights: grads, more_inputs: Vec::new() })
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "momentum": 0.9 }), inputs: vec![vec![4, 3]], index_bound: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::SeedableRng;

    #[test]
    fn training_output_is_normalized_per_channel() {
        let bn = BatchNormalization { epsilon: 0.0, center: false, scale: false, ..BatchNormalization::default() };
        let x = Tensor::randn(2f32, 3.0, (50, 3), &Device::Cpu).unwrap();
        let w = vec![Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(), Tensor::ones(3, candle_core::DType::F32, &Device::Cpu).unwrap()];
        let mut ctx = ForwardContext { training: true, rng: rand::rngs::StdRng::seed_from_u64(0), mask: None, collective: None };
        let (out, cache) = bn.forward("bn", &w, &[x], &mut ctx).unwrap();
        let mean = out.value.mean(0).unwrap().to_vec1::<f32>().unwrap();
        let var = out.value.sqr().unwrap().mean(0).unwrap().to_vec1::<f32>().unwrap();
        assert!(mean.iter().all(|m| m.abs() < 1e-5));
        assert!(var.iter().all(|v| (v - 1.0).abs() < 1e-4));
        assert_eq!(bn.state_updates(&cache).len(), 2);
    }

    #[test]
    fn refuses_meaningless_settings() {
        let parse = |v| crate::layers::parse_config::<BatchNormalization>(&v).map(|_| ()).unwrap_err().to_string();
        assert!(parse(serde_json::json!({ "momentum": 1.5 })).contains("`momentum`"));
        assert!(parse(serde_json::json!({ "epsilon": -1 })).contains("`epsilon`"));
        let bn: BatchNormalization = crate::layers::parse_config(&serde_json::json!({ "axis": [3] })).unwrap();
        assert!(bn.output_shape("bn", &[vec![4, 4, 2]]).is_ok());
        assert!(bn.output_shape("bn", &[vec![4, 2]]).is_err());
    }
}
