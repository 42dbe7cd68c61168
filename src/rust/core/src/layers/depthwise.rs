//! Depthwise and separable 2-d convolutions (channels last), on the same im2col patches
//! as Conv2D: each input channel is convolved with its own `depth_multiplier` kernels
//! (a batched matmul over channels); SeparableConv2D follows that with a 1x1 convolution.
//!
//! # Shapes
//! depthwise kernel `(kh, kw, c, depth_multiplier)`, pointwise kernel
//! `(1, 1, c * depth_multiplier, filters)` (Keras's layouts); output
//! `(batch, out_h, out_w, c * depth_multiplier)` or `(..., filters)`.
use super::conv2d::check_window;
use super::params::check_positive;
use super::{Cache, DataFormat, Example, ForwardContext, LayerGrads, LayerOutput, LayerType, NotSupported, OutputGrad, Padding, Tuple2, WeightSpec};
use crate::activation::{linear_then, Activation};
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use crate::kernels::{col2im_on_device, im2col_on_device, window_geometry, with_cpu_slice, ConvGeometry};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// The window and multiplier of a depthwise step, shared by both layers.
#[derive(Debug, Clone, Copy)]
struct DepthwiseWindow {
    kernel_size: (usize, usize),
    strides: (usize, usize),
    same: bool,
    dilation: (usize, usize),
    depth_multiplier: usize,
}

impl DepthwiseWindow {
    fn geometry(&self, name: &str, class: &str, input: &[usize]) -> Result<ConvGeometry> {
        window_geometry(name, class, input, self.kernel_size, self.strides, self.dilation, self.same)
    }

    /// The depthwise step -> (n, c * depth_multiplier), n = batch * out_h * out_w. `cols` is
    /// what [`Self::patches`] returned: on the CPU the input image itself (our direct kernel
    /// reads windows from it), elsewhere its im2col patch rows (n, taps * c), multiplied by
    /// the per-channel kernels as batched matmuls.
    fn depthwise(&self, cols: &Tensor, kernel: &Tensor, g: &ConvGeometry) -> Result<Tensor> {
        let (taps, c, m) = (g.kh * g.kw, g.c, self.depth_multiplier);
        if cols.device().is_cpu() {
            let batch = cols.dim(0)?;
            let k = kernel.flatten_all()?.to_vec1::<f32>()?;
            let out = with_cpu_slice(cols, |x| crate::kernels::depthwise::forward(x, &k, batch, g, m))?;
            return Ok(Tensor::from_vec(out, (batch * g.out_h * g.out_w, c * m), cols.device())?);
        }
        let n = cols.dim(0)?;
        let per_channel = cols.reshape((n, taps, c))?.permute((2, 0, 1))?.contiguous()?; // (c, n, taps)
        let k = kernel.reshape((taps, c, m))?.permute((1, 0, 2))?.contiguous()?; // (c, taps, m)
        Ok(per_channel.matmul(&k)?.permute((1, 0, 2))?.contiguous()?.reshape((n, c * m))?)
    }

    /// Gradients of `depthwise` for the kernel (Keras layout) and, if asked, the input
    /// image (batch, h, w, c).
    fn depthwise_backward(
        &self,
        cols: &Tensor,
        kernel: &Tensor,
        dz: &Tensor,
        g: &ConvGeometry,
        input_dims: &[usize],
        need_input: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (taps, c, m) = (g.kh * g.kw, g.c, self.depth_multiplier);
        if cols.device().is_cpu() {
            let batch = input_dims[0];
            let k = kernel.flatten_all()?.to_vec1::<f32>()?;
            let (dk, dx) = with_cpu_slice(cols, |x| with_cpu_slice(dz, |d| crate::kernels::depthwise::backward(x, &k, d, batch, g, m, need_input)))??;
            let dk = Tensor::from_vec(dk, (g.kh, g.kw, c, m), dz.device())?;
            let dx = dx.map(|dx| Tensor::from_vec(dx, input_dims, dz.device())).transpose()?;
            return Ok((dk, dx));
        }
        let n = cols.dim(0)?;
        let per_channel = cols.reshape((n, taps, c))?.permute((2, 0, 1))?.contiguous()?; // (c, n, taps)
        let dz_c = dz.reshape((n, c, m))?.permute((1, 0, 2))?.contiguous()?; // (c, n, m)
        let dk = per_channel.transpose(1, 2)?.contiguous()?.matmul(&dz_c)?; // (c, taps, m)
        let dk = dk.permute((1, 0, 2))?.contiguous()?.reshape((g.kh, g.kw, c, m))?;
        let dx = if need_input {
            let k = kernel.reshape((taps, c, m))?.permute((1, 0, 2))?.contiguous()?; // (c, taps, m)
            let d = dz_c.matmul(&k.transpose(1, 2)?.contiguous()?)?; // (c, n, taps)
            let dcols = d.permute((1, 2, 0))?.contiguous()?.reshape((n, taps * c))?;
            Some(col2im_on_device(&dcols, input_dims[0], g)?)
        } else {
            None
        };
        Ok((dk, dx))
    }

    /// What the depthwise step reads: the input itself on the CPU, im2col patches elsewhere.
    fn patches(&self, name: &str, class: &str, x: &Tensor) -> Result<(Tensor, ConvGeometry)> {
        let dims = x.dims();
        let g = self.geometry(name, class, &dims[1..])?;
        if x.device().is_cpu() {
            return Ok((if x.is_contiguous() { x.clone() } else { x.contiguous()? }, g));
        }
        Ok((im2col_on_device(x, &g)?, g))
    }
}

/// Patches (or the input itself on the CPU), the depthwise output (SeparableConv2D only),
/// pre-activation and output, and the input's dims.
struct DepthwiseCache {
    cols: Tensor,
    mid: Option<Tensor>,
    z: Tensor,
    y: Tensor,
    input_dims: Vec<usize>,
}

fn check_depthwise(
    kernel_size: Tuple2,
    strides: Tuple2,
    dilation_rate: Tuple2,
    data_format: DataFormat,
    padding: Padding,
    depth_multiplier: usize,
    class: &str,
) -> Result<()> {
    check_window(kernel_size, strides, dilation_rate, data_format)?;
    padding.check_not_causal(class)?;
    check_positive("depth_multiplier", &[depth_multiplier])
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DepthwiseConv2D {
    pub kernel_size: Tuple2,
    pub strides: Tuple2,
    pub padding: Padding,
    pub data_format: DataFormat,
    pub dilation_rate: Tuple2,
    pub groups: usize,
    pub activation: Activation,
    pub use_bias: bool,
    pub depth_multiplier: usize,
    pub depthwise_initializer: Initializer,
    pub bias_initializer: Initializer,
    pub depthwise_regularizer: NotSupported,
    pub bias_regularizer: NotSupported,
    pub activity_regularizer: NotSupported,
    pub depthwise_constraint: NotSupported,
    pub bias_constraint: NotSupported,
}

impl Default for DepthwiseConv2D {
    fn default() -> Self {
        Self {
            kernel_size: Tuple2(0, 0),
            strides: Tuple2(1, 1),
            padding: Padding::Valid,
            data_format: DataFormat::ChannelsLast,
            dilation_rate: Tuple2(1, 1),
            groups: 1,
            activation: Activation::Linear,
            use_bias: true,
            depth_multiplier: 1,
            depthwise_initializer: Initializer::glorot_uniform(),
            bias_initializer: Initializer::zeros(),
            depthwise_regularizer: NotSupported,
            bias_regularizer: NotSupported,
            activity_regularizer: NotSupported,
            depthwise_constraint: NotSupported,
            bias_constraint: NotSupported,
        }
    }
}

impl DepthwiseConv2D {
    fn window(&self) -> DepthwiseWindow {
        DepthwiseWindow {
            kernel_size: self.kernel_size.pair(),
            strides: self.strides.pair(),
            same: self.padding.is_same(),
            dilation: self.dilation_rate.pair(),
            depth_multiplier: self.depth_multiplier,
        }
    }
}

impl LayerType for DepthwiseConv2D {
    const CLASS_NAME: &'static str = "DepthwiseConv2D";
    const NAME_PREFIX: &'static str = "depthwise_conv2d";

    fn normalize(&mut self) -> Result<()> {
        check_depthwise(self.kernel_size, self.strides, self.dilation_rate, self.data_format, self.padding, self.depth_multiplier, Self::CLASS_NAME)
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let g = self.window().geometry(name, Self::CLASS_NAME, &inputs[0])?;
        Ok(vec![g.out_h, g.out_w, g.c * self.depth_multiplier])
    }

    fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        let c = input.last().copied().unwrap_or(1);
        let mut specs = vec![WeightSpec {
            name: "depthwise_kernel".into(),
            shape: vec![self.kernel_size.0, self.kernel_size.1, c, self.depth_multiplier],
            initializer: self.depthwise_initializer.clone(),
            trainable: true,
        }];
        if self.use_bias {
            specs.push(WeightSpec { name: "bias".into(), shape: vec![c * self.depth_multiplier], initializer: self.bias_initializer.clone(), trainable: true });
        }
        specs
    }

    fn forward(&self, name: &str, weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let window = self.window();
        let (cols, g) = window.patches(name, Self::CLASS_NAME, x)?;
        let mut z = window.depthwise(&cols, &weights[0], &g)?;
        if self.use_bias {
            z = z.broadcast_add(&weights[1])?;
        }
        let y = self.activation.apply(&z)?;
        let shape = (x.dim(0)?, g.out_h, g.out_w, g.c * self.depth_multiplier);
        let logits = if self.activation.has_logits() { Some((z.reshape(shape)?, self.activation)) } else { None };
        let value = y.reshape(shape)?;
        Ok((LayerOutput { value, logits }, Cache::new(DepthwiseCache { cols, mid: None, z, y, input_dims: x.dims().to_vec() })))
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
        let DepthwiseCache { cols, z, y, input_dims, .. } = cache.get::<DepthwiseCache>()?;
        let window = self.window();
        let g = window.geometry(name, Self::CLASS_NAME, &input_dims[1..])?;
        let dz = grad.through(self.activation, z, y)?;
        let (dk, input) = window.depthwise_backward(cols, &weights[0], &dz, &g, input_dims, need_input_grad)?;
        let mut grads = vec![dk];
        if self.use_bias {
            grads.push(crate::kernels::sum_rows(&dz)?);
        }
        Ok(LayerGrads { input, weights: grads, more_inputs: Vec::new() })
    }

    fn example() -> Example {
        Example {
            config: serde_json::json!({ "kernel_size": [2, 3], "strides": 2, "padding": "same", "depth_multiplier": 2, "activation": "tanh" }),
            inputs: vec![vec![4, 5, 2]],
            index_bound: None,
        }
    }
}

/// SeparableConv2D: a depthwise convolution (no bias) then a 1x1 convolution to `filters`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SeparableConv2D {
    pub filters: usize,
    pub kernel_size: Tuple2,
    pub strides: Tuple2,
    pub padding: Padding,
    pub data_format: DataFormat,
    pub dilation_rate: Tuple2,
    pub groups: usize,
    pub activation: Activation,
    pub use_bias: bool,
    pub depth_multiplier: usize,
    pub depthwise_initializer: Initializer,
    pub pointwise_initializer: Initializer,
    pub bias_initializer: Initializer,
    pub kernel_regularizer: NotSupported,
    pub bias_regularizer: NotSupported,
    pub activity_regularizer: NotSupported,
    pub depthwise_regularizer: NotSupported,
    pub pointwise_regularizer: NotSupported,
    pub kernel_constraint: NotSupported,
    pub bias_constraint: NotSupported,
    pub depthwise_constraint: NotSupported,
    pub pointwise_constraint: NotSupported,
}

impl Default for SeparableConv2D {
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
            depth_multiplier: 1,
            depthwise_initializer: Initializer::glorot_uniform(),
            pointwise_initializer: Initializer::glorot_uniform(),
            bias_initializer: Initializer::zeros(),
            kernel_regularizer: NotSupported,
            bias_regularizer: NotSupported,
            activity_regularizer: NotSupported,
            depthwise_regularizer: NotSupported,
            pointwise_regularizer: NotSupported,
            kernel_constraint: NotSupported,
            bias_constraint: NotSupported,
            depthwise_constraint: NotSupported,
            pointwise_constraint: NotSupported,
        }
    }
}

impl SeparableConv2D {
    fn window(&self) -> DepthwiseWindow {
        DepthwiseWindow {
            kernel_size: self.kernel_size.pair(),
            strides: self.strides.pair(),
            same: self.padding.is_same(),
            dilation: self.dilation_rate.pair(),
            depth_multiplier: self.depth_multiplier,
        }
    }
}

impl LayerType for SeparableConv2D {
    const CLASS_NAME: &'static str = "SeparableConv2D";
    const NAME_PREFIX: &'static str = "separable_conv2d";

    fn normalize(&mut self) -> Result<()> {
        check_positive("filters", &[self.filters])?;
        check_depthwise(self.kernel_size, self.strides, self.dilation_rate, self.data_format, self.padding, self.depth_multiplier, Self::CLASS_NAME)?;
        if self.groups != 1 {
            return Err(Error::Value(format!("`groups` other than 1 is not supported yet, got {}", self.groups)));
        }
        Ok(())
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let g = self.window().geometry(name, Self::CLASS_NAME, &inputs[0])?;
        Ok(vec![g.out_h, g.out_w, self.filters])
    }

    fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        let c = input.last().copied().unwrap_or(1);
        let mut specs = vec![
            WeightSpec {
                name: "depthwise_kernel".into(),
                shape: vec![self.kernel_size.0, self.kernel_size.1, c, self.depth_multiplier],
                initializer: self.depthwise_initializer.clone(),
                trainable: true,
            },
            WeightSpec {
                name: "pointwise_kernel".into(),
                shape: vec![1, 1, c * self.depth_multiplier, self.filters],
                initializer: self.pointwise_initializer.clone(),
                trainable: true,
            },
        ];
        if self.use_bias {
            specs.push(WeightSpec { name: "bias".into(), shape: vec![self.filters], initializer: self.bias_initializer.clone(), trainable: true });
        }
        specs
    }

    fn absorb_inference_maps(&self, weights: &[Tensor], affine: Option<(&Tensor, &Tensor)>, relu: bool) -> Result<Option<(Self, Vec<Tensor>)>> {
        if self.activation != Activation::Linear {
            return Ok(None);
        }
        let mut layer = self.clone();
        let mut folded = weights.to_vec();
        if let Some((scale, shift)) = affine {
            let pointwise = super::conv2d::fold_affine(&weights[1], self.use_bias.then(|| &weights[2]), scale, shift)?;
            folded = vec![weights[0].clone(), pointwise[0].clone(), pointwise[1].clone()];
            layer.use_bias = true;
        }
        if relu {
            layer.activation = Activation::Relu;
        }
        Ok(Some((layer, folded)))
    }

    fn forward(&self, name: &str, weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let window = self.window();
        let (cols, g) = window.patches(name, Self::CLASS_NAME, x)?;
        let mid = window.depthwise(&cols, &weights[0], &g)?;
        let pointwise = weights[1].reshape((g.c * self.depth_multiplier, self.filters))?;
        let bias = if self.use_bias { Some(&weights[2]) } else { None };
        let (z, y) = linear_then(&mid, &pointwise, bias, self.activation)?;
        let shape = (x.dim(0)?, g.out_h, g.out_w, self.filters);
        let logits = if self.activation.has_logits() { Some((z.reshape(shape)?, self.activation)) } else { None };
        let value = y.reshape(shape)?;
        Ok((LayerOutput { value, logits }, Cache::new(DepthwiseCache { cols, mid: Some(mid), z, y, input_dims: x.dims().to_vec() })))
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
        let DepthwiseCache { cols, mid, z, y, input_dims } = cache.get::<DepthwiseCache>()?;
        let mid = mid.as_ref().ok_or_else(|| Error::State("SeparableConv2D got a DepthwiseConv2D cache".into()))?;
        let window = self.window();
        let g = window.geometry(name, Self::CLASS_NAME, &input_dims[1..])?;
        let dz = grad.through(self.activation, z, y)?;
        let mid_channels = g.c * self.depth_multiplier;
        let pointwise = weights[1].reshape((mid_channels, self.filters))?;
        let d_pointwise = crate::kernels::matmul(&mid.t()?, &dz)?.reshape((1, 1, mid_channels, self.filters))?;
        let d_mid = crate::kernels::matmul_by_transpose(&dz, &pointwise)?;
        let (dk, input) = window.depthwise_backward(cols, &weights[0], &d_mid, &g, input_dims, need_input_grad)?;
        let mut grads = vec![dk, d_pointwise];
        if self.use_bias {
            grads.push(crate::kernels::sum_rows(&dz)?);
        }
        Ok(LayerGrads { input, weights: grads, more_inputs: Vec::new() })
    }

    fn example() -> Example {
        Example {
            config: serde_json::json!({ "filters": 3, "kernel_size": 2, "padding": "same", "depth_multiplier": 2, "activation": "tanh" }),
            inputs: vec![vec![4, 5, 2]],
            index_bound: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::check_backward;
    use candle_core::Device;
    use rand::SeedableRng;

    fn ctx() -> ForwardContext {
        ForwardContext { training: false, rng: rand::rngs::StdRng::seed_from_u64(0), mask: None, collective: None }
    }

    fn depthwise(same: bool, strides: usize, depth_multiplier: usize, dilation: (usize, usize)) -> DepthwiseConv2D {
        DepthwiseConv2D {
            kernel_size: Tuple2(2, 3),
            strides: Tuple2(strides, strides),
            padding: if same { Padding::Same } else { Padding::Valid },
            dilation_rate: Tuple2(dilation.0, dilation.1),
            depth_multiplier,
            activation: Activation::Tanh,
            ..DepthwiseConv2D::default()
        }
    }

    #[test]
    fn depthwise_matches_a_direct_convolution() {
        let dev = Device::Cpu;
        let mut layer = depthwise(false, 1, 2, (1, 1));
        layer.activation = Activation::Linear;
        layer.use_bias = false;
        let x = Tensor::arange(0f32, 60.0, &dev).unwrap().affine(0.05, -1.0).unwrap().reshape((1, 3, 5, 4)).unwrap();
        let k = Tensor::arange(0f32, 48.0, &dev).unwrap().affine(0.02, -0.4).unwrap().reshape((2, 3, 4, 2)).unwrap();
        let y = layer.forward("d", std::slice::from_ref(&k), std::slice::from_ref(&x), &mut ctx()).unwrap().0.value;
        assert_eq!(y.dims(), &[1, 2, 3, 8]);
        let (xv, kv, yv) = (
            x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            k.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        for oy in 0..2 {
            for ox in 0..3 {
                for c in 0..4 {
                    for m in 0..2 {
                        let mut acc = 0.0;
                        for i in 0..2 {
                            for j in 0..3 {
                                acc += xv[((oy + i) * 5 + ox + j) * 4 + c] * kv[((i * 3 + j) * 4 + c) * 2 + m];
                            }
                        }
                        let got = yv[(oy * 3 + ox) * 8 + c * 2 + m];
                        assert!((got - acc).abs() < 1e-4, "{} vs {}", got, acc);
                    }
                }
            }
        }
    }

    #[test]
    fn one_multiplier_and_dilated_gradients_match_finite_differences() {
        // depth_multiplier 1 takes the kernels' vectorized per-channel path.
        let dev = Device::Cpu;
        let d = depthwise(true, 1, 1, (1, 2));
        let k = Tensor::randn(0f32, 0.4, (2, 3, 3, 1), &dev).unwrap();
        let b = Tensor::randn(0f32, 0.2, 3, &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 4, 6, 3), &dev).unwrap();
        let grads = |kk: &Tensor, xx: &Tensor, dy: &Tensor| {
            let w = [kk.clone(), b.clone()];
            let (_, cache) = d.forward("d", &w, std::slice::from_ref(xx), &mut ctx()).unwrap();
            d.backward("d", &w, &[], &cache, OutputGrad::Value(dy.clone()), true).unwrap()
        };
        let fwd = |kk: &Tensor, xx: &Tensor| Ok(d.forward("d", &[kk.clone(), b.clone()], std::slice::from_ref(xx), &mut ctx())?.0.value);
        check_backward(&[2, 4, 6, 3], |xx| fwd(&k, xx), |xx, dy| Ok(grads(&k, xx, dy).input.unwrap()), 2e-2);
        check_backward(&[2, 3, 3, 1], |kk| fwd(kk, &x), |kk, dy| Ok(grads(kk, &x, dy).weights[0].clone()), 2e-2);
    }
}
