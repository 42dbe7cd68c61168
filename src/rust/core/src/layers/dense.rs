//! Dense (fully connected) layer: `activation(x %*% kernel + bias)` on the last axis.
//!
//! # Shapes
//! input `(batch, ..., in)`, kernel `(in, units)` (Keras's layout), bias `(units)`,
//! output `(batch, ..., units)`.
use super::{Cache, LayerGrads, LayerOutput, OutputGrad, WeightSpec};
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use candle_core::Tensor;

#[derive(Debug, Clone)]
pub struct Dense {
    pub units: usize,
    pub activation: Activation,
    pub use_bias: bool,
    pub kernel_initializer: Initializer,
    pub bias_initializer: Initializer,
}

impl Dense {
    pub fn new(units: usize, activation: Activation, use_bias: bool) -> Result<Self> {
        if units == 0 {
            return Err(Error::Value("`units` must be a positive integer, got 0".into()));
        }
        Ok(Self {
            units,
            activation,
            use_bias,
            kernel_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
        })
    }

    pub fn output_shape(&self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        if input.is_empty() {
            return Err(Error::Value(format!("layer \"{}\" (Dense) needs an input with at least one feature axis", name)));
        }
        let mut out = input.to_vec();
        *out.last_mut().unwrap() = self.units;
        Ok(out)
    }

    pub fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        let fan_in = *input.last().unwrap_or(&1);
        let mut specs = vec![WeightSpec {
            name: "kernel",
            shape: vec![fan_in, self.units],
            initializer: self.kernel_initializer.clone(),
            trainable: true,
        }];
        if self.use_bias {
            specs.push(WeightSpec {
                name: "bias",
                shape: vec![self.units],
                initializer: self.bias_initializer.clone(),
                trainable: true,
            });
        }
        specs
    }

    pub fn forward(&self, weights: &[Tensor], x: &Tensor) -> Result<(LayerOutput, Cache)> {
        let kernel = &weights[0];
        let dims = x.dims().to_vec();
        let in_features = *dims.last().unwrap();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = if dims.len() == 2 { x.clone() } else { x.reshape((rows, in_features))? };
        let bias = if self.use_bias { Some(&weights[1]) } else { None };
        let (z, y) = crate::kernels::linear(&x2, kernel, bias, self.activation)?;
        let cache = Cache::Dense { x: x2, z: z.clone(), y: y.clone() };
        let shaped = |t: Tensor| -> Result<Tensor> {
            if dims.len() == 2 {
                return Ok(t);
            }
            let mut out_dims = dims.clone();
            *out_dims.last_mut().unwrap() = self.units;
            Ok(t.reshape(out_dims)?)
        };
        let logits = if self.activation.has_logits() { Some((shaped(z)?, self.activation)) } else { None };
        Ok((LayerOutput { value: shaped(y)?, logits }, cache))
    }

    /// dz from the incoming gradient, then kernel = x^T dz, bias = column sums of dz,
    /// input = dz kernel^T (only when asked for; `kernel_t`, the kernel's transpose as a
    /// row-major (units, in) tensor, spares the product packing the kernel again).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        weights: &[Tensor],
        kernel_t: Option<&Tensor>,
        x: &Tensor,
        z: &Tensor,
        y: &Tensor,
        grad: OutputGrad,
        need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let dz = match grad {
            OutputGrad::Logits(dz) => dz.reshape(z.dims())?,
            OutputGrad::Value(dy) => self.activation.backward(z, y, &dy.reshape(y.dims())?)?,
        };
        let mut grads = vec![crate::kernels::matmul(&x.t()?, &dz)?];
        if self.use_bias {
            grads.push(crate::kernels::sum_rows(&dz)?);
        }
        let input = match (need_input_grad, kernel_t) {
            (false, _) => None,
            // The kernel seen through its transpose: an (in, units) view whose rows are adjacent.
            (true, Some(kt)) => Some(crate::kernels::matmul_by_transpose(&dz, &kt.t()?)?),
            (true, None) => Some(crate::kernels::matmul_by_transpose(&dz, &weights[0])?),
        };
        Ok(LayerGrads { input, weights: grads, more_inputs: Vec::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::check_backward;
    use candle_core::Device;

    #[test]
    fn forward_is_affine_map_in_keras_layout() {
        let dev = Device::Cpu;
        let dense = Dense::new(2, Activation::Linear, true).unwrap();
        let x = Tensor::new(&[[1.0f32, 2.0, 3.0]], &dev).unwrap();
        let k = Tensor::new(&[[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &dev).unwrap();
        let b = Tensor::new(&[0.5f32, -0.5], &dev).unwrap();
        let y = dense.forward(&[k, b], &x).unwrap().0.value.to_vec2::<f32>().unwrap();
        assert_eq!(y, vec![vec![4.5, 4.5]]);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let dense = Dense::new(3, Activation::Tanh, true).unwrap();
        let k = Tensor::randn(0f32, 0.5, (4, 3), &dev).unwrap();
        let b = Tensor::randn(0f32, 0.5, 3, &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 4), &dev).unwrap();
        let back = |kk: &Tensor, bb: &Tensor, xx: &Tensor, dy: &Tensor| {
            let (_, cache) = dense.forward(&[kk.clone(), bb.clone()], xx).unwrap();
            let Cache::Dense { x, z, y } = cache else { panic!() };
            dense.backward(&[kk.clone(), bb.clone()], None, &x, &z, &y, OutputGrad::Value(dy.clone()), true).unwrap()
        };
        let fwd = |kk: &Tensor, bb: &Tensor, xx: &Tensor| Ok(dense.forward(&[kk.clone(), bb.clone()], xx)?.0.value);
        check_backward(&[2, 4], |xx| fwd(&k, &b, xx), |xx, dy| Ok(back(&k, &b, xx, dy).input.unwrap()), 1e-2);
        check_backward(&[4, 3], |kk| fwd(kk, &b, &x), |kk, dy| Ok(back(kk, &b, &x, dy).weights[0].clone()), 1e-2);
        check_backward(&[3], |bb| fwd(&k, bb, &x), |bb, dy| Ok(back(&k, bb, &x, dy).weights[1].clone()), 1e-2);
    }

    #[test]
    fn the_kernels_transpose_gives_the_same_input_gradient() {
        let dev = Device::Cpu;
        let dense = Dense::new(5, Activation::Relu, true).unwrap();
        let k = Tensor::randn(0f32, 0.5, (7, 5), &dev).unwrap();
        let b = Tensor::randn(0f32, 0.5, 5, &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (4, 7), &dev).unwrap();
        let (out, cache) = dense.forward(&[k.clone(), b.clone()], &x).unwrap();
        let Cache::Dense { x, z, y } = cache else { panic!() };
        let dy = OutputGrad::Value(out.value.ones_like().unwrap());
        let kt = k.t().unwrap().contiguous().unwrap();
        let plain = dense.backward(&[k.clone(), b.clone()], None, &x, &z, &y, dy.clone(), true).unwrap();
        let with_t = dense.backward(&[k, b], Some(&kt), &x, &z, &y, dy, true).unwrap();
        // Equal up to float rounding (gemm may order a sum differently for each layout).
        let (a, b) = (plain.input.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), with_t.input.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() <= 1e-6 * u.abs().max(1.0), "{} vs {}", u, v);
        }
    }

    #[test]
    fn input_gradient_is_skipped_when_not_needed() {
        let dev = Device::Cpu;
        let dense = Dense::new(2, Activation::Relu, false).unwrap();
        let k = Tensor::ones((3, 2), candle_core::DType::F32, &dev).unwrap();
        let x = Tensor::ones((4, 3), candle_core::DType::F32, &dev).unwrap();
        let (out, cache) = dense.forward(&[k.clone()], &x).unwrap();
        let Cache::Dense { x, z, y } = cache else { panic!() };
        let g = dense.backward(&[k], None, &x, &z, &y, OutputGrad::Value(out.value.ones_like().unwrap()), false).unwrap();
        assert!(g.input.is_none());
        assert_eq!(g.weights.len(), 1);
        assert_eq!(g.weights[0].to_vec2::<f32>().unwrap(), vec![vec![4.0, 4.0]; 3]);
    }
}
