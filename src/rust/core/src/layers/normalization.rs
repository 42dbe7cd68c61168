//! Batch normalization over the last (channels) axis, with Keras's defaults
//! (momentum 0.99, epsilon 1e-3). In training it normalizes with the batch's statistics
//! and moves the moving mean and variance toward them; at inference it uses the moving
//! statistics. The moving updates leave the step as state updates, applied to the master
//! weights only when the step succeeds.
//!
//! # Shapes
//! input `(batch, ..., channels)`; gamma, beta, moving_mean, moving_variance `(channels)`.
use super::{Cache, LayerGrads, LayerOutput, OutputGrad, WeightSpec};
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use candle_core::Tensor;

#[derive(Debug, Clone)]
pub struct BatchNormalization {
    pub momentum: f64,
    pub epsilon: f64,
    pub center: bool,
    pub scale: bool,
}

impl BatchNormalization {
    pub fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        let c = input.last().copied().unwrap_or(1);
        let spec = |name, init, trainable| WeightSpec { name, shape: vec![c], initializer: init, trainable };
        let mut specs = Vec::new();
        if self.scale {
            specs.push(spec("gamma", Initializer::Ones, true));
        }
        if self.center {
            specs.push(spec("beta", Initializer::Zeros, true));
        }
        specs.push(spec("moving_mean", Initializer::Zeros, false));
        specs.push(spec("moving_variance", Initializer::Ones, false));
        specs
    }

    /// Index (within the layer's weights) of the moving mean; the variance follows it.
    pub fn moving_offset(&self) -> usize {
        usize::from(self.scale) + usize::from(self.center)
    }

    fn affine(&self, weights: &[Tensor]) -> (Option<Tensor>, Option<Tensor>) {
        let gamma = self.scale.then(|| weights[0].clone());
        let beta = self.center.then(|| weights[usize::from(self.scale)].clone());
        (gamma, beta)
    }

    pub fn forward(&self, name: &str, weights: &[Tensor], x: &Tensor, training: bool) -> Result<(LayerOutput, Cache)> {
        let dims = x.dims().to_vec();
        let c = *dims.last().ok_or_else(|| Error::Value(format!("layer \"{}\" needs an input with a channels axis", name)))?;
        let rows = x.elem_count() / c;
        let x2 = x.reshape((rows, c))?;
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
        if !training {
            let inv_std = (moving_var + self.epsilon)?.sqrt()?.recip()?;
            let xhat = x2.broadcast_sub(moving_mean)?.broadcast_mul(&inv_std)?;
            return Ok((LayerOutput::plain(finish(&xhat)?), Cache::Reshape { input_dims: dims }));
        }
        let count = x2.dim(0)? as f64;
        let mean = (crate::kernels::sum_rows(&x2)? / count)?;
        let centered = x2.broadcast_sub(&mean)?;
        let var = (crate::kernels::sum_rows(&centered.sqr()?)? / count)?;
        let inv_std = (&var + self.epsilon)?.sqrt()?.recip()?;
        let xhat = centered.broadcast_mul(&inv_std)?;
        // TensorFlow's fused kernel (4-d inputs) moves the variance toward the unbiased
        // batch variance; the general path (other ranks) toward the biased one.
        let var_for_moving = if dims.len() == 4 && rows > 1 { (&var * (rows as f64 / (rows - 1) as f64))? } else { var };
        let keep = 1.0 - self.momentum;
        let new_mean = (moving_mean - ((moving_mean - &mean)? * keep)?)?;
        let new_var = (moving_var - ((moving_var - &var_for_moving)? * keep)?)?;
        let value = finish(&xhat)?;
        Ok((LayerOutput::plain(value), Cache::BatchNorm { xhat, inv_std, input_dims: dims, new_mean, new_var }))
    }

    pub fn backward(&self, weights: &[Tensor], xhat: &Tensor, inv_std: &Tensor, input_dims: &[usize], grad: OutputGrad) -> Result<LayerGrads> {
        let dy = match grad {
            OutputGrad::Value(dy) => dy,
            OutputGrad::Logits(_) => return Err(Error::State("batch normalization cannot end a model whose loss uses logits".into())),
        };
        let (rows, c) = xhat.dims2()?;
        let dy2 = dy.reshape((rows, c))?;
        let (gamma, _) = self.affine(weights);
        let dbeta = crate::kernels::sum_rows(&dy2)?;
        let dgamma = crate::kernels::sum_rows(&dy2.mul(xhat)?)?;
        // dx = gamma * inv_std / n * (n * dy - sum(dy) - xhat * sum(dy * xhat))
        let n = rows as f64;
        let inner = ((dy2 * n)?.broadcast_sub(&dbeta)? - xhat.broadcast_mul(&dgamma)?)?;
        let mut coef = (inv_std / n)?;
        if let Some(g) = &gamma {
            coef = coef.mul(g)?;
        }
        let dx = inner.broadcast_mul(&coef)?.reshape(input_dims)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::check_backward;
    use candle_core::Device;

    fn layer() -> BatchNormalization {
        BatchNormalization { momentum: 0.99, epsilon: 1e-3, center: true, scale: true }
    }

    fn weights(c: usize) -> Vec<Tensor> {
        let dev = Device::Cpu;
        let gamma = Tensor::arange(0f32, c as f32, &dev).unwrap().affine(0.3, 0.8).unwrap();
        let beta = Tensor::arange(0f32, c as f32, &dev).unwrap().affine(-0.2, 0.1).unwrap();
        vec![gamma, beta, Tensor::zeros(c, candle_core::DType::F32, &dev).unwrap(), Tensor::ones(c, candle_core::DType::F32, &dev).unwrap()]
    }

    #[test]
    fn training_output_is_normalized_per_channel() {
        let bn = BatchNormalization { momentum: 0.99, epsilon: 0.0, center: false, scale: false };
        let x = Tensor::randn(2f32, 3.0, (50, 3), &Device::Cpu).unwrap();
        let w = vec![Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(), Tensor::ones(3, candle_core::DType::F32, &Device::Cpu).unwrap()];
        let (out, _) = bn.forward("bn", &w, &x, true).unwrap();
        let mean = out.value.mean(0).unwrap().to_vec1::<f32>().unwrap();
        let var = out.value.sqr().unwrap().mean(0).unwrap().to_vec1::<f32>().unwrap();
        assert!(mean.iter().all(|m| m.abs() < 1e-5));
        assert!(var.iter().all(|v| (v - 1.0).abs() < 1e-4));
    }

    #[test]
    fn gradients_match_finite_differences() {
        let bn = layer();
        let w = weights(3);
        let back = |x: &Tensor, dy: &Tensor| -> Result<LayerGrads> {
            let (_, cache) = bn.forward("bn", &w, x, true)?;
            let Cache::BatchNorm { xhat, inv_std, input_dims, .. } = cache else { panic!() };
            bn.backward(&w, &xhat, &inv_std, &input_dims, OutputGrad::Value(dy.clone()))
        };
        check_backward(&[4, 2, 3], |x| Ok(bn.forward("bn", &w, x, true)?.0.value), |x, dy| Ok(back(x, dy)?.input.unwrap()), 2e-2);
        let x = Tensor::randn(0f32, 1.0, (5, 3), &Device::Cpu).unwrap();
        let with_gamma = |g: &Tensor| {
            let mut ww = w.clone();
            ww[0] = g.clone();
            ww
        };
        check_backward(
            &[3],
            |g| Ok(bn.forward("bn", &with_gamma(g), &x, true)?.0.value),
            |g, dy| {
                let ww = with_gamma(g);
                let (_, cache) = bn.forward("bn", &ww, &x, true)?;
                let Cache::BatchNorm { xhat, inv_std, input_dims, .. } = cache else { panic!() };
                Ok(bn.backward(&ww, &xhat, &inv_std, &input_dims, OutputGrad::Value(dy.clone()))?.weights[0].clone())
            },
            2e-2,
        );
    }
}
