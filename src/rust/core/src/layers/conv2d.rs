//! 2-d convolution, channels last, as im2col + one matmul (forward) and matmuls + col2im
//! (backward; the input gradient only when a layer below needs it); on the CPU, windows of
//! few values (a one-channel image's 3x3 taps) are convolved directly instead
//! (`kernels::direct_conv`).
//!
//! # Shapes
//! input `(batch, h, w, c)`, kernel `(kh, kw, c, filters)` (Keras's layout), bias `(filters)`,
//! output `(batch, out_h, out_w, filters)` with Keras's "valid"/"same" output sizes.
use super::params::check_positive;
use super::{Cache, DataFormat, Example, ForwardContext, LayerGrads, LayerOutput, LayerType, OutputGrad, Padding, PoolWindow, Tuple2, WeightSpec};
use crate::activation::{linear_then, Activation};
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use crate::kernels::{col2im_on_device, im2col_on_device, window_geometry, with_cpu_slices, ConvGeometry};
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
    /// Max pooling applied to the output before it is handed on: set only on the copy that
    /// predict runs ([`LayerType::absorb_max_pool`]), never saved.
    #[serde(skip)]
    pub inference_pool: Option<PoolWindow>,
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
            inference_pool: None,
        }
    }
}

/// What the kernel gradient is computed from: the patch rows (im2col), or on the direct
/// route the input images themselves.
pub(super) enum ConvPatches {
    Rows(Tensor),
    Images(Tensor),
}

/// The patches, pre-activation and output as 2-d (rows, filters) tensors.
pub(super) struct ConvCache {
    pub patches: ConvPatches,
    pub z: Tensor,
    pub y: Tensor,
    pub input_dims: Vec<usize>,
}

/// A kernel whose last axis is the output channels, and its bias (zeros if none), with
/// `y * scale + shift` per output channel folded in: the kernel times scale, the bias
/// `bias * scale + shift` (for inference; see `LayerType::absorb_inference_maps`).
pub(super) fn fold_affine(kernel: &Tensor, bias: Option<&Tensor>, scale: &Tensor, shift: &Tensor) -> Result<Vec<Tensor>> {
    let bias = match bias {
        Some(b) => b.mul(scale)?.add(shift)?,
        None => shift.clone(),
    };
    Ok(vec![kernel.broadcast_mul(scale)?, bias])
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

    /// Whether the direct route (no patch matrix) serves this input: on the CPU, for windows
    /// of few values, f32.
    fn direct_route(x: &Tensor, g: &ConvGeometry) -> bool {
        x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && g.patch_len() <= crate::kernels::DIRECT_PAYS_UP_TO
    }

    /// The forward pass on (batch, h, w, c) images and its cache.
    pub(super) fn run(&self, name: &str, weights: &[Tensor], x: &Tensor) -> Result<(LayerOutput, ConvCache)> {
        let dims = x.dims().to_vec();
        let batch = dims[0];
        let g = self.geometry(name, &dims[1..])?;
        let kernel = weights[0].reshape((g.patch_len(), self.filters))?;
        let bias = if self.use_bias { Some(&weights[1]) } else { None };
        let (patches, z, y) = if Self::direct_route(x, &g) {
            let relu = self.activation == Activation::Relu;
            let mut operands = vec![x, &kernel];
            operands.extend(bias);
            let out = with_cpu_slices(&operands, |s| crate::kernels::direct_conv_forward(s[0], batch, &g, s[1], s.get(2).copied(), relu, self.filters))?;
            let z = Tensor::from_vec(out, (batch * g.out_h * g.out_w, self.filters), x.device())?;
            let y = if relu { z.clone() } else { self.activation.apply(&z)? };
            (ConvPatches::Images(x.clone()), z, y)
        } else {
            let cols = im2col_on_device(x, &g)?;
            let (z, y) = linear_then(&cols, &kernel, bias, self.activation)?;
            (ConvPatches::Rows(cols), z, y)
        };
        let shape = (batch, g.out_h, g.out_w, self.filters);
        let logits = if self.activation.has_logits() { Some((z.reshape(shape)?, self.activation)) } else { None };
        let value = y.reshape(shape)?;
        Ok((LayerOutput { value, logits }, ConvCache { patches, z, y, input_dims: dims }))
    }

    /// The output max-pooled over `pool`'s windows (inference): on the CPU a few images at a
    /// time without writing the unpooled output (`kernels::conv_pool`), elsewhere or with
    /// other activations the pass and then the pooling.
    fn run_pooled(&self, name: &str, weights: &[Tensor], x: &Tensor, pool: &PoolWindow) -> Result<Tensor> {
        let dims = x.dims();
        let g = self.geometry(name, &dims[1..])?;
        let pg = pool.geometry(&format!("{}'s max pooling", name), "MaxPooling2D", &[g.out_h, g.out_w, self.filters])?;
        let on_cpu = x.device().is_cpu() && x.dtype() == candle_core::DType::F32;
        if on_cpu && matches!(self.activation, Activation::Relu | Activation::Linear) {
            let kernel = weights[0].reshape((g.patch_len(), self.filters))?;
            let mut operands = vec![x, &kernel];
            if self.use_bias {
                operands.push(&weights[1]);
            }
            let (relu, direct) = (self.activation == Activation::Relu, Self::direct_route(x, &g));
            let out = with_cpu_slices(&operands, |s| {
                let run = crate::kernels::ConvPool {
                    x: s[0],
                    batch: dims[0],
                    conv: &g,
                    kernel: s[1],
                    bias: s.get(2).copied(),
                    relu,
                    filters: self.filters,
                    pool: &pg,
                };
                if direct {
                    run.direct()
                } else {
                    run.through_patches()
                }
            })?;
            return Ok(Tensor::from_vec(out, (dims[0], pg.out_h, pg.out_w, self.filters), x.device())?);
        }
        let y = self.run(name, weights, x)?.0.value;
        Ok(crate::kernels::max_pool_on_device(&y, &pg)?.0)
    }

    /// The backward pass from [`Self::run`]'s cache, with the kernel in Keras's 4-d layout.
    pub(super) fn run_backward(&self, name: &str, kernel: &Tensor, cache: &ConvCache, grad: OutputGrad, need_input_grad: bool) -> Result<LayerGrads> {
        let ConvCache { patches, z, y, input_dims } = cache;
        let g = self.geometry(name, &input_dims[1..])?;
        let (grads, dz) = match patches {
            // Without an input gradient to make, a ReLU's gradient is applied while the
            // kernel gradient is summed, and the pre-activation's gradient is never stored.
            ConvPatches::Images(x) if !need_input_grad && self.activation == Activation::Relu && matches!(grad, OutputGrad::Value(_)) => {
                let dy = grad.value(Self::CLASS_NAME)?.reshape(y.dims())?;
                let (dk, db) =
                    with_cpu_slices(&[x, &dy, y], |s| crate::kernels::direct_conv_kernel_gradient(s[0], s[1], Some(s[2]), input_dims[0], &g, self.filters))?;
                (self.direct_grads(dk, db, kernel)?, None)
            }
            ConvPatches::Images(x) => {
                let dz = grad.through(self.activation, z, y)?;
                let (dk, db) = with_cpu_slices(&[x, &dz], |s| crate::kernels::direct_conv_kernel_gradient(s[0], s[1], None, input_dims[0], &g, self.filters))?;
                (self.direct_grads(dk, db, kernel)?, Some(dz))
            }
            ConvPatches::Rows(cols) => {
                let dz = grad.through(self.activation, z, y)?;
                let mut grads = vec![crate::kernels::matmul(&cols.t()?, &dz)?.reshape(kernel.dims())?];
                if self.use_bias {
                    grads.push(crate::kernels::sum_rows(&dz)?);
                }
                (grads, Some(dz))
            }
        };
        let input = match dz {
            Some(dz) if need_input_grad => {
                let kernel = kernel.reshape((g.patch_len(), self.filters))?;
                let dcols = crate::kernels::matmul_by_transpose(&dz, &kernel)?;
                Some(col2im_on_device(&dcols, input_dims[0], &g)?)
            }
            _ => None,
        };
        Ok(LayerGrads { input, weights: grads, more_inputs: Vec::new() })
    }

    /// The direct route's kernel and bias gradients as the layer's weight gradients.
    fn direct_grads(&self, dk: Vec<f32>, db: Vec<f32>, kernel: &Tensor) -> Result<Vec<Tensor>> {
        let mut grads = vec![Tensor::from_vec(dk, kernel.dims(), kernel.device())?];
        if self.use_bias {
            grads.push(Tensor::from_vec(db, self.filters, kernel.device())?);
        }
        Ok(grads)
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

    fn absorb_inference_maps(&self, weights: &[Tensor], affine: Option<(&Tensor, &Tensor)>, relu: bool) -> Result<Option<(Self, Vec<Tensor>)>> {
        if self.activation != Activation::Linear {
            return Ok(None);
        }
        let mut layer = self.clone();
        let mut folded = vec![weights[0].clone()];
        if self.use_bias {
            folded.push(weights[1].clone());
        }
        if let Some((scale, shift)) = affine {
            folded = fold_affine(&folded[0], folded.get(1), scale, shift)?;
            layer.use_bias = true;
        }
        if relu {
            layer.activation = Activation::Relu;
        }
        Ok(Some((layer, folded)))
    }

    fn absorb_max_pool(&self, pool: &PoolWindow) -> Option<Self> {
        Some(Self { inference_pool: Some(*pool), ..self.clone() })
    }

    fn forward(&self, name: &str, weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        if let Some(pool) = &self.inference_pool {
            // Inference only: nothing to keep for a backward pass.
            return Ok((LayerOutput::plain(self.run_pooled(name, weights, &xs[0], pool)?), Cache::new(())));
        }
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
        // One channel: 2x3 windows of 6 values take the direct route; five (30 values) the
        // patch-matrix route.
        for channels in [1, 5] {
            for (same, strides, dilation, activation) in
                [(false, (1, 1), (1, 1), Activation::Tanh), (true, (2, 2), (1, 1), Activation::Tanh), (true, (1, 1), (2, 1), Activation::Linear)]
            {
                let mut layer = conv(same, strides, dilation);
                layer.activation = activation;
                let k = Tensor::randn(0f32, 0.3, (2, 3, channels, 3), &dev).unwrap();
                let b = Tensor::randn(0f32, 0.3, 3, &dev).unwrap();
                let x = Tensor::randn(0f32, 1.0, (2, 5, 6, channels), &dev).unwrap();
                let fwd = |kk: &Tensor, bb: &Tensor, xx: &Tensor| Ok(layer.run("c", &[kk.clone(), bb.clone()], xx)?.0.value);
                let back = |kk: &Tensor, bb: &Tensor, xx: &Tensor, dy: &Tensor, need_input: bool| {
                    let w = [kk.clone(), bb.clone()];
                    let (_, cache) = layer.run("c", &w, xx).unwrap();
                    assert_eq!(matches!(cache.patches, ConvPatches::Images(_)), channels == 1);
                    layer.run_backward("c", &w[0], &cache, OutputGrad::Value(dy.clone()), need_input).unwrap()
                };
                check_backward(&[2, 5, 6, channels], |xx| fwd(&k, &b, xx), |xx, dy| Ok(back(&k, &b, xx, dy, true).input.unwrap()), 2e-2);
                for need_input in [true, false] {
                    check_backward(&[2, 3, channels, 3], |kk| fwd(kk, &b, &x), |kk, dy| Ok(back(kk, &b, &x, dy, need_input).weights[0].clone()), 2e-2);
                    check_backward(&[3], |bb| fwd(&k, bb, &x), |bb, dy| Ok(back(&k, bb, &x, dy, need_input).weights[1].clone()), 2e-2);
                }
            }
        }
    }

    #[test]
    fn relu_gradients_equal_the_linear_layers_on_the_masked_gradient() {
        // The ReLU's kink defeats finite differences; its gradient is exact instead: the ReLU
        // layer's gradients for dy are the linear layer's for dy where the output is positive
        // (the direct route applies that mask itself when no input gradient is made).
        let dev = Device::Cpu;
        for channels in [1, 2, 5] {
            let relu = Conv2D { activation: Activation::Relu, ..conv(true, (1, 1), (1, 1)) };
            let linear = Conv2D { activation: Activation::Linear, ..relu.clone() };
            let w = [Tensor::randn(0f32, 0.5, (2, 3, channels, 3), &dev).unwrap(), Tensor::randn(0f32, 0.3, 3, &dev).unwrap()];
            let x = Tensor::randn(0f32, 1.0, (3, 5, 6, channels), &dev).unwrap();
            let (out, relu_cache) = relu.run("c", &w, &x).unwrap();
            let (_, linear_cache) = linear.run("c", &w, &x).unwrap();
            let dy = Tensor::randn(0f32, 1.0, out.value.dims(), &dev).unwrap();
            let masked = dy.mul(&out.value.gt(0f32).unwrap().to_dtype(candle_core::DType::F32).unwrap()).unwrap();
            assert!(out.value.eq(0f32).unwrap().to_dtype(candle_core::DType::F32).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
            for need_input in [false, true] {
                let got = relu.run_backward("c", &w[0], &relu_cache, OutputGrad::Value(dy.clone()), need_input).unwrap();
                let want = linear.run_backward("c", &w[0], &linear_cache, OutputGrad::Value(masked.clone()), need_input).unwrap();
                for (g, e) in got.weights.iter().zip(&want.weights).chain(got.input.iter().zip(&want.input)) {
                    let diff = (g - e).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                    assert!(diff < 1e-5, "{} channels: {}", channels, diff);
                }
                assert_eq!(got.input.is_some(), need_input);
            }
        }
    }
}
