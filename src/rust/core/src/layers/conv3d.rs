//! 3-d convolution (videos, volumes), channels last: for each tap along depth, the 2-d
//! im2col of the depth slices that tap reads; the patch rows of all depth taps side by side
//! are exactly the 3-d im2col matrix (Keras's kernel layout `(kd, kh, kw, c, filters)` is
//! depth-tap major), so the forward pass is one matmul and the backward pass matmuls plus a
//! 2-d col2im per depth tap, added back at the depths it read.
//!
//! # Shapes
//! input `(batch, d, h, w, c)`, kernel `(kd, kh, kw, c, filters)`, bias `(filters)`, output
//! `(batch, out_d, out_h, out_w, filters)` with Keras's "valid"/"same" output sizes.
use super::params::{check_positive, Tuple3};
use super::{Cache, DataFormat, Example, ForwardContext, LayerGrads, LayerOutput, LayerType, OutputGrad, Padding, WeightSpec};
use crate::activation::{linear_then, Activation};
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use crate::kernels::{col2im_on_device, im2col_on_device, output_extent, window_geometry, ConvGeometry};
use crate::regularizer::Regularizer;
use crate::shape::join_dims;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Conv3D {
    pub filters: usize,
    pub kernel_size: Tuple3,
    pub strides: Tuple3,
    pub padding: Padding,
    pub data_format: DataFormat,
    pub dilation_rate: Tuple3,
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

impl Default for Conv3D {
    fn default() -> Self {
        Self {
            filters: 0,
            kernel_size: Tuple3(0, 0, 0),
            strides: Tuple3(1, 1, 1),
            padding: Padding::Valid,
            data_format: DataFormat::ChannelsLast,
            dilation_rate: Tuple3(1, 1, 1),
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

/// The depth axis's geometry (the 2-d part is a [`ConvGeometry`] over height and width).
#[derive(Debug, Clone, Copy)]
struct DepthGeometry {
    d: usize,
    out_d: usize,
    pad_front: usize,
    /// Depth of the padded input: room for every tap's strided run.
    padded: usize,
}

struct Conv3DCache {
    cols: Tensor,
    z: Tensor,
    y: Tensor,
    input_dims: Vec<usize>,
}

impl Conv3D {
    fn geometry(&self, name: &str, input: &[usize]) -> Result<(DepthGeometry, ConvGeometry)> {
        let [d, h, w, c] = *input else {
            return Err(Error::Value(format!(
                "layer \"{}\" (Conv3D) needs inputs of shape (depth, height, width, channels), got ({})",
                name,
                join_dims(input)
            )));
        };
        let Tuple3(kd, kh, kw) = self.kernel_size;
        let Tuple3(sd, sh, sw) = self.strides;
        let Tuple3(dd, dh, dw) = self.dilation_rate;
        let (out_d, pad_front) = output_extent(d, kd, sd, dd, self.padding.is_same());
        if out_d == 0 && d != crate::shape::VARIABLE {
            return Err(Error::Value(format!(
                "layer \"{}\" (Conv3D): window depth {} is larger than its input's depth {}; use padding = \"same\"",
                name, kd, d
            )));
        }
        let g = window_geometry(name, Self::CLASS_NAME, &[h, w, c], (kh, kw), (sh, sw), (dh, dw), self.padding.is_same())?;
        let padded = ((kd - 1) * dd + out_d * sd).max(d + pad_front);
        Ok((DepthGeometry { d, out_d, pad_front, padded }, g))
    }

    fn run(&self, name: &str, weights: &[Tensor], x: &Tensor) -> Result<(LayerOutput, Conv3DCache)> {
        let dims = x.dims().to_vec();
        let b = dims[0];
        let (dg, g) = self.geometry(name, &dims[1..])?;
        let Tuple3(kd, _, _) = self.kernel_size;
        let (sd, dd) = (self.strides.0, self.dilation_rate.0);
        let xp = x.pad_with_zeros(1, dg.pad_front, dg.padded - dg.d - dg.pad_front)?;
        let mut cols = Vec::with_capacity(kd);
        for i in 0..kd {
            let mut t = xp.narrow(1, i * dd, dg.out_d * sd)?;
            if sd > 1 {
                t = t.contiguous()?.reshape((b, dg.out_d, sd, g.h, g.w, g.c))?.narrow(2, 0, 1)?;
            }
            let t = t.contiguous()?.reshape((b * dg.out_d, g.h, g.w, g.c))?;
            cols.push(im2col_on_device(&t, &g)?);
        }
        let cols = if cols.len() == 1 { cols.remove(0) } else { Tensor::cat(&cols, 1)? };
        let kernel = weights[0].reshape((kd * g.patch_len(), self.filters))?;
        let bias = if self.use_bias { Some(&weights[1]) } else { None };
        let (z, y) = linear_then(&cols, &kernel, bias, self.activation)?;
        let shape = (b, dg.out_d, g.out_h, g.out_w, self.filters);
        let logits = if self.activation.has_logits() { Some((z.reshape(shape)?, self.activation)) } else { None };
        let value = y.reshape(shape)?;
        Ok((LayerOutput { value, logits }, Conv3DCache { cols, z, y, input_dims: dims }))
    }

    fn run_backward(&self, name: &str, kernel: &Tensor, cache: &Conv3DCache, grad: OutputGrad, need_input_grad: bool) -> Result<LayerGrads> {
        let Conv3DCache { cols, z, y, input_dims } = cache;
        let dz = grad.through(self.activation, z, y)?;
        let mut grads = vec![crate::kernels::matmul(&cols.t()?, &dz)?.reshape(kernel.dims())?];
        if self.use_bias {
            grads.push(crate::kernels::sum_rows(&dz)?);
        }
        let input = if need_input_grad {
            let b = input_dims[0];
            let (dg, g) = self.geometry(name, &input_dims[1..])?;
            let Tuple3(kd, _, _) = self.kernel_size;
            let (sd, dd) = (self.strides.0, self.dilation_rate.0);
            let per_tap = g.patch_len();
            let dcols = crate::kernels::matmul_by_transpose(&dz, &kernel.reshape((kd * per_tap, self.filters))?)?;
            let mut acc: Option<Tensor> = None;
            for i in 0..kd {
                let part = dcols.narrow(1, i * per_tap, per_tap)?.contiguous()?;
                let mut t = col2im_on_device(&part, b * dg.out_d, &g)?.reshape((b, dg.out_d, g.h, g.w, g.c))?;
                if sd > 1 {
                    t = t.reshape((b, dg.out_d, 1, g.h, g.w, g.c))?.pad_with_zeros(2, 0, sd - 1)?.reshape((b, dg.out_d * sd, g.h, g.w, g.c))?;
                }
                let t = t.pad_with_zeros(1, i * dd, dg.padded - i * dd - dg.out_d * sd)?;
                acc = Some(match acc {
                    Some(a) => (a + t)?,
                    None => t,
                });
            }
            let full = acc.ok_or_else(|| Error::State("a 3-d kernel without taps".into()))?;
            Some(full.narrow(1, dg.pad_front, dg.d)?.contiguous()?)
        } else {
            None
        };
        Ok(LayerGrads { input, weights: grads, more_inputs: Vec::new() })
    }
}

impl LayerType for Conv3D {
    const CLASS_NAME: &'static str = "Conv3D";
    const NAME_PREFIX: &'static str = "conv3d";

    fn normalize(&mut self) -> Result<()> {
        check_positive("filters", &[self.filters])?;
        let (k, s, d) = (self.kernel_size, self.strides, self.dilation_rate);
        check_positive("kernel_size", &[k.0, k.1, k.2])?;
        check_positive("strides", &[s.0, s.1, s.2])?;
        check_positive("dilation_rate", &[d.0, d.1, d.2])?;
        if [s.0, s.1, s.2].iter().any(|v| *v > 1) && [d.0, d.1, d.2].iter().any(|v| *v > 1) {
            return Err(Error::Value("`strides` > 1 cannot be combined with `dilation_rate` > 1 (as in Keras)".into()));
        }
        self.padding.check_not_causal(Self::CLASS_NAME)?;
        if self.groups != 1 {
            return Err(Error::Value(format!("`groups` other than 1 is not supported yet, got {}", self.groups)));
        }
        self.data_format.check()
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (dg, g) = self.geometry(name, &inputs[0])?;
        Ok(vec![dg.out_d, g.out_h, g.out_w, self.filters])
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
        let Tuple3(kd, kh, kw) = self.kernel_size;
        WeightSpec::kernel_and_bias(vec![kd, kh, kw, c, self.filters], self.filters, &self.kernel_initializer, &self.bias_initializer, self.use_bias)
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
        self.run_backward(name, &weights[0], cache.get::<Conv3DCache>()?, grad, need_input_grad)
    }

    fn example() -> Example {
        Example {
            config: serde_json::json!({ "filters": 2, "kernel_size": [2, 3, 2], "strides": [2, 1, 2], "padding": "same", "activation": "tanh" }),
            inputs: vec![vec![3, 4, 5, 2]],
            index_bound: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Against a direct sum over the window, with dilation along depth and "valid" padding.
    #[test]
    fn matches_a_direct_convolution() {
        let dev = Device::Cpu;
        let layer = Conv3D { filters: 2, kernel_size: Tuple3(2, 2, 3), dilation_rate: Tuple3(2, 1, 1), ..Conv3D::default() };
        let (b, d, h, w, c) = (2, 4, 3, 4, 2);
        let x = Tensor::randn(0f32, 1.0, (b, d, h, w, c), &dev).unwrap();
        let k = Tensor::randn(0f32, 0.5, (2, 2, 3, c, 2), &dev).unwrap();
        let bias = Tensor::new(&[0.1f32, -0.2], &dev).unwrap();
        let y = layer.run("c", &[k.clone(), bias.clone()], &x).unwrap().0.value;
        let (od, oh, ow) = (d - 2, h - 1, w - 2);
        assert_eq!(y.dims(), &[b, od, oh, ow, 2]);
        let xv = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let kv = k.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let yv = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bv = bias.to_vec1::<f32>().unwrap();
        for n in 0..b {
            for z in 0..od {
                for r in 0..oh {
                    for s in 0..ow {
                        for f in 0..2 {
                            let mut acc = bv[f];
                            for i in 0..2 {
                                for j in 0..2 {
                                    for l in 0..3 {
                                        for ch in 0..c {
                                            let xi = (((n * d + z + 2 * i) * h + r + j) * w + s + l) * c + ch;
                                            let ki = (((i * 2 + j) * 3 + l) * c + ch) * 2 + f;
                                            acc += xv[xi] * kv[ki];
                                        }
                                    }
                                }
                            }
                            let got = yv[(((n * od + z) * oh + r) * ow + s) * 2 + f];
                            assert!((got - acc).abs() < 1e-4, "{} vs {}", got, acc);
                        }
                    }
                }
            }
        }
    }
}
