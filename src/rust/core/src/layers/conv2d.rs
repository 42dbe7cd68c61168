//! 2-d convolution, channels last, as im2col + one matmul (forward) and matmuls + col2im
//! (backward; the input gradient only when a layer below needs it).
//!
//! # Shapes
//! input `(batch, h, w, c)`, kernel `(kh, kw, c, filters)` (Keras's layout), bias `(filters)`,
//! output `(batch, out_h, out_w, filters)` with Keras's "valid"/"same" output sizes.
use super::params::check_positive;
use super::{Cache, DataFormat, Example, ForwardContext, LayerGrads, LayerOutput, LayerType, OutputGrad, Padding, Tuple2, WeightSpec};
use crate::activation::{linear_then, Activation};
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use crate::kernels::{col2im_on_device, im2col_on_device, window_geometry, ConvGeometry};
use crate::regularizer::Regularizer;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Conv2D {
    pub filters: usize,
    pub kernel_size: Tuple2,
    pub strides: Tuple2,
    pub padding: Padding,
    pub data_format: DataFormat,
    pub dilation_rate: Tuple2,
    pub groups: usize,
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

impl Default for Conv2D {
    fn default() -> Self {
        Self {
            filters: 0,
            kernel_size: Tuple2(0, 0),
            strides: Tuple2(1, 1),
            padding: Padding::Valid,
            data_format: DataFormat::ChannelsLast,
            dilation_rate: Tuple2(1, 1),
            groups: 1,
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

/// Patch rows (im2col), pre-activation and output as 2-d (rows, filters) tensors.
pub(super) struct ConvCache {
    pub cols: Tensor,
    pub z: Tensor,
    pub y: Tensor,
    pub input_dims: Vec<usize>,
}

/// Checks shared by the convolutions: positive sizes, no strides with dilation, channels last.
pub(super) fn check_window(kernel_size: Tuple2, strides: Tuple2, dilation_rate: Tuple2, data_format: DataFormat) -> Result<()> {
    check_positive("kernel_size", &[kernel_size.0, kernel_size.1])?;
    check_positive("strides", &[strides.0, strides.1])?;
    check_positive("dilation_rate", &[dilation_rate.0, dilation_rate.1])?;
    if (strides.0 > 1 || strides.1 > 1) && (dilation_rate.0 > 1 || dilation_rate.1 > 1) {
        return Err(Error::Value("`strides` > 1 cannot be combined with `dilation_rate` > 1 (as in Keras)".into()));
    }
    data_format.check()
}

impl Conv2D {
    pub fn geometry(&self, name: &str, input: &[usize]) -> Result<ConvGeometry> {
        window_geometry(name, Self::CLASS_NAME, input, self.kernel_size.pair(), self.strides.pair(), self.dilation_rate.pair(), self.padding.is_same())
    }

    /// The forward pass on (batch, h, w, c) images and its cache.
    pub(super) fn run(&self, name: &str, weights: &[Tensor], x: &Tensor) -> Result<(LayerOutput, ConvCache)> {
        let dims = x.dims().to_vec();
        let batch = dims[0];
        let g = self.geometry(name, &dims[1..])?;
        let cols = im2col_on_device(x, &g)?;
        let kernel = weights[0].reshape((g.patch_len(), self.filters))?;
        let bias = if self.use_bias { Some(&weights[1]) } else { None };
        let (z, y) = linear_then(&cols, &kernel, bias, self.activation)?;
        let shape = (batch, g.out_h, g.out_w, self.filters);
        let logits = if self.activation.has_logits() { Some((z.reshape(shape)?, self.activation)) } else { None };
        let value = y.reshape(shape)?;
        Ok((LayerOutput { value, logits }, ConvCache { cols, z, y, input_dims: dims }))
    }

    /// The backward pass from [`Self::run`]'s cache, with the kernel in Keras's 4-d layout.
    pub(super) fn run_backward(&self, name: &str, kernel: &Tensor, cache: &ConvCache, grad: OutputGrad, need_input_grad: bool) -> Result<LayerGrads> {
        let ConvCache { cols, z, y, input_dims } = cache;
        let dz = grad.through(self.activation, z, y)?;
        let mut grads = vec![crate::kernels::matmul(&cols.t()?, &dz)?.reshape(kernel.dims())?];
        if self.use_bias {
            grads.push(crate::kernels::sum_rows(&dz)?);
        }
        let input = if need_input_grad {
            let g = self.geometry(name, &input_dims[1..])?;
            let kernel = kernel.reshape((g.patch_len(), self.filters))?;
            let dcols = crate::kernels::matmul_by_transpose(&dz, &kernel)?;
            Some(col2im_on_device(&dcols, input_dims[0], &g)?)
        } else {
            None
        };
        Ok(LayerGrads { input, weights: grads, more_inputs: Vec::new() })
    }
}

impl LayerType for Conv2D {
    const CLASS_NAME: &'static str = "Conv2D";
    const NAME_PREFIX: &'static str = "conv2d";

    fn normalize(&mut self) -> Result<()> {
        check_positive("filters", &[self.filters])?;
        check_window(self.kernel_size, self.strides, self.dilation_rate, self.data_format)?;
        self.padding.check_not_causal(Self::CLASS_NAME)?;
        if self.groups != 1 {
            return Err(Error::Value(format!("`groups` other than 1 is not supported yet, got {}", self.groups)));
        }
        Ok(())
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let g = self.geometry(name, &inputs[0])?;
        Ok(vec![g.out_h, g.out_w, self.filters])
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
        let c = input.last().copied().unwrap_or(1);
        let kernel = vec![self.kernel_size.0, self.kernel_size.1, c, self.filters];
        WeightSpec::kernel_and_bias(kernel, self.filters, &self.kernel_initializer, &self.bias_initializer, self.use_bias)
    }

    fn forward(&self, name: &str, weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let (out, cache) = self.run(name, weights, &xs[0])?;
        Ok((out, Cache::new(cache)))
    }

    fn backward(
        &self,
        name: &str,
        weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        need_input_grad: bool,
    ) -> Result<LayerGrads> {
        self.run_backward(name, &weights[0], cache.get::<ConvCache>()?, grad, need_input_grad)
    }

    fn example() -> Example {
        Example {
            config: serde_json::json!({ "filters": 3, "kernel_size": [2, 3], "strides": 2, "padding": "same", "activation": "tanh" }),
            inputs: vec![vec![5, 6, 2]],
            index_bound: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::check_backward;
    use candle_core::Device;

    fn conv(same: bool, strides: (usize, usize), dilation: (usize, usize)) -> Conv2D {
        Conv2D {
            filters: 3,
            kernel_size: Tuple2(2, 3),
            strides: Tuple2(strides.0, strides.1),
            padding: if same { Padding::Same } else { Padding::Valid },
            dilation_rate: Tuple2(dilation.0, dilation.1),
            activation: Activation::Tanh,
            ..Conv2D::default()
        }
    }

    #[test]
    fn matches_a_direct_convolution() {
        let dev = Device::Cpu;
        let mut layer = conv(false, (1, 1), (1, 1));
        layer.activation = Activation::Linear;
        let x = Tensor::arange(0f32, 2.0 * 4.0 * 5.0 * 2.0, &dev).unwrap().reshape((2, 4, 5, 2)).unwrap();
        let k = Tensor::arange(0f32, 2.0 * 3.0 * 2.0 * 3.0, &dev).unwrap().affine(0.01, -0.1).unwrap().reshape((2, 3, 2, 3)).unwrap();
        let b = Tensor::new(&[0.1f32, 0.2, 0.3], &dev).unwrap();
        let y = layer.run("c", &[k.clone(), b.clone()], &x).unwrap().0.value;
        assert_eq!(y.dims(), &[2, 3, 3, 3]);
        let (xv, kv, bv, yv) = (
            x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            k.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            b.to_vec1::<f32>().unwrap(),
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        for n in 0..2 {
            for oy in 0..3 {
                for ox in 0..3 {
                    for f in 0..3 {
                        let mut acc = bv[f];
                        for i in 0..2 {
                            for j in 0..3 {
                                for c in 0..2 {
                                    acc += xv[((n * 4 + oy + i) * 5 + ox + j) * 2 + c] * kv[((i * 3 + j) * 2 + c) * 3 + f];
                                }
                            }
                        }
                        let got = yv[((n * 3 + oy) * 3 + ox) * 3 + f];
                        assert!((got - acc).abs() < 1e-4, "{} vs {}", got, acc);
                    }
                }
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let dev = Device::Cpu;
        for (same, strides, dilation) in [(false, (1, 1), (1, 1)), (true, (2, 2), (1, 1)), (true, (1, 1), (2, 1))] {
            let layer = conv(same, strides, dilation);
            let k = Tensor::randn(0f32, 0.3, (2, 3, 2, 3), &dev).unwrap();
            let b = Tensor::randn(0f32, 0.3, 3, &dev).unwrap();
            let x = Tensor::randn(0f32, 1.0, (2, 5, 6, 2), &dev).unwrap();
            let fwd = |kk: &Tensor, bb: &Tensor, xx: &Tensor| Ok(layer.run("c", &[kk.clone(), bb.clone()], xx)?.0.value);
            let back = |kk: &Tensor, bb: &Tensor, xx: &Tensor, dy: &Tensor| {
                let w = [kk.clone(), bb.clone()];
                let (_, cache) = layer.run("c", &w, xx).unwrap();
                layer.run_backward("c", &w[0], &cache, OutputGrad::Value(dy.clone()), true).unwrap()
            };
            check_backward(&[2, 5, 6, 2], |xx| fwd(&k, &b, xx), |xx, dy| Ok(back(&k, &b, xx, dy).input.unwrap()), 2e-2);
            check_backward(&[2, 3, 2, 3], |kk| fwd(kk, &b, &x), |kk, dy| Ok(back(kk, &b, &x, dy).weights[0].clone()), 2e-2);
            check_backward(&[3], |bb| fwd(&k, bb, &x), |bb, dy| Ok(back(&k, bb, &x, dy).weights[1].clone()), 2e-2);
        }
    }
}
