//! Dense (fully connected) layer: `activation(x %*% kernel + bias)` on the last axis.
//!
//! # Shapes
//! input `(batch, ..., in)`, kernel `(in, units)` (Keras's layout), bias `(units)`,
//! output `(batch, ..., units)`.
use super::{Cache, Example, ForwardContext, LayerGrads, LayerOutput, LayerType, OutputGrad, WeightSpec};
use crate::activation::{linear_then, Activation};
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use crate::regularizer::Regularizer;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Dense {
    pub units: usize,
    pub activation: Activation,
    pub use_bias: bool,
    pub kernel_initializer: Initializer,
    pub bias_initializer: Initializer,
    pub kernel_regularizer: Option<Regularizer>,
    pub bias_regularizer: Option<Regularizer>,
    pub activity_regularizer: Option<Regularizer>,
    pub kernel_constraint: Option<crate::constraint::Constraint>,
    pub bias_constraint: Option<crate::constraint::Constraint>,
}

impl Default for Dense {
    fn default() -> Self {
        Self {
            units: 0,
            activation: Activation::Linear,
            use_bias: true,
            kernel_initializer: Initializer::glorot_uniform(),
            bias_initializer: Initializer::zeros(),
            kernel_regularizer: None,
            bias_regularizer: None,
            activity_regularizer: None,
            kernel_constraint: None,
            bias_constraint: None,
        }
    }
}

/// Input (as a 2-d view, and its own dims), pre-activation and output.
struct DenseCache {
    input_dims: Vec<usize>,
    x: Tensor,
    z: Tensor,
    y: Tensor,
}

impl Dense {
    pub fn new(units: usize, activation: Activation, use_bias: bool) -> Result<Self> {
        let mut layer = Self { units, activation, use_bias, ..Self::default() };
        layer.normalize()?;
        Ok(layer)
    }
}

impl LayerType for Dense {
    const CLASS_NAME: &'static str = "Dense";
    const NAME_PREFIX: &'static str = "dense";
    const PROPAGATES_MASK: bool = true;
    /// The kernel: the input gradient multiplies by its transpose.
    const TRANSPOSED_WEIGHTS: &'static [usize] = &[0];

    fn normalize(&mut self) -> Result<()> {
        if self.units == 0 {
            return Err(Error::Value("`units` must be a positive integer, got 0".into()));
        }
        Ok(())
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let input = &inputs[0];
        if input.is_empty() {
            return Err(Error::Value(format!("layer \"{}\" (Dense) needs an input with at least one feature axis", name)));
        }
        let mut out = input.clone();
        *out.last_mut().unwrap() = self.units;
        Ok(out)
    }

    fn weight_regularizers(&self) -> Vec<Option<Regularizer>> {
        vec![self.kernel_regularizer, self.bias_regularizer]
    }

    fn weight_constraints(&self) -> Vec<Option<crate::constraint::Constraint>> {
        vec![self.kernel_constraint.clone(), self.bias_constraint.clone()]
    }

    fn activity_regularizer(&self) -> Option<Regularizer> {
        self.activity_regularizer
    }

    fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        let fan_in = *input.last().unwrap_or(&1);
        WeightSpec::kernel_and_bias(vec![fan_in, self.units], self.units, &self.kernel_initializer, &self.bias_initializer, self.use_bias)
    }

    fn forward(&self, _name: &str, weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let dims = x.dims().to_vec();
        let in_features = *dims.last().unwrap();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let x2 = if dims.len() == 2 { x.clone() } else { x.reshape((rows, in_features))? };
        let bias = if self.use_bias { Some(&weights[1]) } else { None };
        let (z, y) = linear_then(&x2, &weights[0], bias, self.activation)?;
        let shaped = |t: Tensor| -> Result<Tensor> {
            if dims.len() == 2 {
                return Ok(t);
            }
            let mut out_dims = dims.clone();
            *out_dims.last_mut().unwrap() = self.units;
            Ok(t.reshape(out_dims)?)
        };
        let logits = if self.activation.has_logits() { Some((shaped(z.clone())?, self.activation)) } else { None };
        let value = shaped(y.clone())?;
        Ok((LayerOutput { value, logits }, Cache::new(DenseCache { input_dims: dims, x: x2, z, y })))
    }

    /// dz from the incoming gradient, then kernel = x^T dz, bias = column sums of dz,
    /// input = dz kernel^T (only when asked for; the kernel's transpose, a row-major
    /// (units, in) tensor, spares the product packing the kernel again).
    fn backward(
        &self,
        _name: &str,
        weights: &[Tensor],
        transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let DenseCache { input_dims, x, z, y } = cache.get::<DenseCache>()?;
        let dz = grad.through(self.activation, z, y)?;
        let mut grads = vec![crate::kernels::matmul(&x.t()?, &dz)?];
        if self.use_bias {
            grads.push(crate::kernels::sum_rows(&dz)?);
        }
        let kernel_t = transposed.first().and_then(|t| t.as_ref());
        let input = match (need_input_grad, kernel_t) {
            (false, _) => None,
            // The kernel seen through its transpose: an (in, units) view whose rows are adjacent.
            (true, Some(kt)) => Some(crate::kernels::matmul_by_transpose(&dz, &kt.t()?)?),
            (true, None) => Some(crate::kernels::matmul_by_transpose(&dz, &weights[0])?),
        };
        let input = input.map(|g| g.reshape(input_dims.as_slice())).transpose()?;
        Ok(LayerGrads { input, weights: grads, more_inputs: Vec::new() })
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "units": 3, "activation": "tanh" }), inputs: vec![vec![2, 4]], index_bound: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::SeedableRng;

    fn ctx() -> ForwardContext {
        ForwardContext { training: false, rng: rand::rngs::StdRng::seed_from_u64(0), mask: None, collective: None }
    }

    #[test]
    fn forward_is_affine_map_in_keras_layout() {
        let dev = Device::Cpu;
        let dense = Dense::new(2, Activation::Linear, true).unwrap();
        let x = Tensor::new(&[[1.0f32, 2.0, 3.0]], &dev).unwrap();
        let k = Tensor::new(&[[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &dev).unwrap();
        let b = Tensor::new(&[0.5f32, -0.5], &dev).unwrap();
        let y = dense.forward("d", &[k, b], &[x], &mut ctx()).unwrap().0.value.to_vec2::<f32>().unwrap();
        assert_eq!(y, vec![vec![4.5, 4.5]]);
    }

    #[test]
    fn the_kernels_transpose_gives_the_same_input_gradient() {
        let dev = Device::Cpu;
        let dense = Dense::new(5, Activation::Relu, true).unwrap();
        let k = Tensor::randn(0f32, 0.5, (7, 5), &dev).unwrap();
        let b = Tensor::randn(0f32, 0.5, 5, &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (4, 7), &dev).unwrap();
        let (out, cache) = dense.forward("d", &[k.clone(), b.clone()], &[x], &mut ctx()).unwrap();
        let dy = OutputGrad::Value(out.value.ones_like().unwrap());
        let kt = k.t().unwrap().contiguous().unwrap();
        let plain = dense.backward("d", &[k.clone(), b.clone()], &[], &cache, dy.clone(), true).unwrap();
        let with_t = dense.backward("d", &[k, b], &[Some(kt)], &cache, dy, true).unwrap();
        // Equal up to float rounding (gemm may order a sum differently for each layout).
        let (a, b) =
            (plain.input.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), with_t.input.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
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
        let (out, cache) = dense.forward("d", std::slice::from_ref(&k), &[x], &mut ctx()).unwrap();
        let g = dense.backward("d", &[k], &[], &cache, OutputGrad::Value(out.value.ones_like().unwrap()), false).unwrap();
        assert!(g.input.is_none());
        assert_eq!(g.weights.len(), 1);
        assert_eq!(g.weights[0].to_vec2::<f32>().unwrap(), vec![vec![4.0, 4.0]; 3]);
    }

    #[test]
    fn reads_keras_config_and_refuses_bad_values() {
        let d: Dense = super::super::parse_config(&serde_json::json!({ "units": 4, "activation": "relu", "use_bias": false, "name": "x" })).unwrap();
        assert_eq!((d.units, d.activation, d.use_bias), (4, Activation::Relu, false));
        let e = super::super::parse_config::<Dense>(&serde_json::json!({ "units": 0 })).unwrap_err().to_string();
        assert!(e.contains("`units`"), "{}", e);
        let e = super::super::parse_config::<Dense>(&serde_json::json!({ "units": "a" })).unwrap_err().to_string();
        assert!(e.contains("Dense config `units`"), "{}", e);
        let d: Dense =
            super::super::parse_config(&serde_json::json!({ "units": 2, "kernel_regularizer": { "class_name": "L2", "config": { "l2": 0.1 } } })).unwrap();
        assert_eq!(d.kernel_regularizer, Some(crate::regularizer::Regularizer { l1: 0.0, l2: 0.1 }));
        let d: Dense = super::super::parse_config(&serde_json::json!({ "units": 2, "activity_regularizer": { "class_name": "L2" } })).unwrap();
        assert_eq!(d.activity_regularizer, Some(crate::regularizer::Regularizer { l1: 0.0, l2: 0.01 }));
        let e =
            super::super::parse_config::<Dense>(&serde_json::json!({ "units": 2, "kernel_constraint": { "class_name": "Ortho" } })).unwrap_err().to_string();
        assert!(e.contains("kernel_constraint") && e.contains("unsupported constraint"), "{}", e);
    }
}
