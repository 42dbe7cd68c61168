//! Dense (fully connected) layer: `activation(x %*% kernel + bias)` on the last axis.
//!
//! # Shapes
//! input `(batch, ..., in)`, kernel `(in, units)` (Keras's layout), bias `(units)`,
//! output `(batch, ..., units)`.
use super::{LayerOutput, WeightSpec};
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

    pub fn forward(&self, weights: &[Tensor], x: &Tensor) -> Result<LayerOutput> {
        let kernel = &weights[0];
        let dims = x.dims().to_vec();
        let in_features = *dims.last().unwrap();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = if dims.len() == 2 { x.clone() } else { x.reshape((rows, in_features))? };
        let mut z = x2.matmul(kernel)?;
        if self.use_bias {
            z = z.broadcast_add(&weights[1])?;
        }
        if dims.len() != 2 {
            let mut out_dims = dims.clone();
            *out_dims.last_mut().unwrap() = self.units;
            z = z.reshape(out_dims)?;
        }
        let value = self.activation.apply(&z)?;
        let logits = self.activation.has_logits().then(|| (z, self.activation));
        Ok(LayerOutput { value, logits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::check_gradient;
    use candle_core::{Device, Var};

    #[test]
    fn forward_is_affine_map_in_keras_layout() {
        let dev = Device::Cpu;
        let dense = Dense::new(2, Activation::Linear, true).unwrap();
        let x = Tensor::new(&[[1.0f32, 2.0, 3.0]], &dev).unwrap();
        let k = Tensor::new(&[[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &dev).unwrap();
        let b = Tensor::new(&[0.5f32, -0.5], &dev).unwrap();
        let y = dense.forward(&[k, b], &x).unwrap().value.to_vec2::<f32>().unwrap();
        assert_eq!(y, vec![vec![4.5, 4.5]]);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let dev = Device::Cpu;
        let dense = Dense::new(3, Activation::Tanh, true).unwrap();
        let k = Var::from_tensor(&Tensor::randn(0f32, 0.5, (4, 3), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.5, 3, &dev).unwrap()).unwrap();
        // Gradient with respect to the input.
        check_gradient(&[2, 4], |x| Ok(dense.forward(&[k.as_tensor().clone(), b.as_tensor().clone()], x)?.value), 1e-2);
        // And with respect to the kernel, holding x fixed.
        let x = Tensor::randn(0f32, 1.0, (2, 4), &dev).unwrap();
        check_gradient(&[4, 3], |kk| Ok(dense.forward(&[kk.clone(), b.as_tensor().clone()], &x)?.value), 1e-2);
    }
}
