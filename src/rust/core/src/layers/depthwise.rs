//! Depthwise and separable 2-d convolutions (channels last), on the same im2col patches
//! as Conv2D: each input channel is convolved with its own `depth_multiplier` kernels
//! (a batched matmul over channels); SeparableConv2D follows that with a 1x1 convolution.
//!
//! # Shapes
//! depthwise kernel `(kh, kw, c, depth_multiplier)`, pointwise kernel
//! `(1, 1, c * depth_multiplier, filters)` (Keras's layouts); output
//! `(batch, out_h, out_w, c * depth_multiplier)` or `(..., filters)`.
use super::{Cache, LayerGrads, LayerOutput, OutputGrad, WeightSpec};
use crate::activation::Activation;
use crate::error::Result;
use crate::initializer::Initializer;
use crate::kernels::{col2im_on_device, im2col_on_device, window_geometry, with_cpu_slice, ConvGeometry};
use candle_core::Tensor;

/// Window settings shared by the depthwise and separable layers.
#[derive(Debug, Clone)]
pub struct DepthwiseConv2D {
    pub kernel_size: (usize, usize),
    pub strides: (usize, usize),
    pub same: bool,
    pub dilation: (usize, usize),
    pub depth_multiplier: usize,
    pub activation: Activation,
    pub use_bias: bool,
    pub depthwise_initializer: Initializer,
    pub bias_initializer: Initializer,
}

impl DepthwiseConv2D {
    pub fn geometry(&self, name: &str, class: &str, input: &[usize]) -> Result<ConvGeometry> {
        window_geometry(name, class, input, self.kernel_size, self.strides, self.dilation, self.same)
    }

    pub fn output_shape(&self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        let g = self.geometry(name, "DepthwiseConv2D", input)?;
        Ok(vec![g.out_h, g.out_w, g.c * self.depth_multiplier])
    }

    pub fn depthwise_spec(&self, c: usize) -> WeightSpec {
        WeightSpec {
            name: "depthwise_kernel",
            shape: vec![self.kernel_size.0, self.kernel_size.1, c, self.depth_multiplier],
            initializer: self.depthwise_initializer.clone(),
            trainable: true,
        }
    }

    pub fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        let c = input.last().copied().unwrap_or(1);
        let mut specs = vec![self.depthwise_spec(c)];
        if self.use_bias {
            specs.push(WeightSpec { name: "bias", shape: vec![c * self.depth_multiplier], initializer: self.bias_initializer.clone(), trainable: true });
        }
        specs
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
    fn depthwise_backward(&self, cols: &Tensor, kernel: &Tensor, dz: &Tensor, g: &ConvGeometry, input_dims: &[usize], need_input: bool) -> Result<(Tensor, Option<Tensor>)> {
        let (taps, c, m) = (g.kh * g.kw, g.c, self.depth_multiplier);
        if cols.device().is_cpu() {
            let batch = input_dims[0];
            let k = kernel.flatten_all()?.to_vec1::<f32>()?;
            let (dk, dx) = with_cpu_slice(cols, |x| {
                with_cpu_slice(dz, |d| crate::kernels::depthwise::backward(x, &k, d, batch, g, m, need_input))
            })??;
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

    pub fn forward(&self, name: &str, weights: &[Tensor], x: &Tensor) -> Result<(LayerOutput, Cache)> {
        let (cols, g) = self.patches(name, "DepthwiseConv2D", x)?;
        let mut z = self.depthwise(&cols, &weights[0], &g)?;
        if self.use_bias {
            z = z.broadcast_add(&weights[1])?;
        }
        let y = self.activation.apply(&z)?;
        let shape = (x.dim(0)?, g.out_h, g.out_w, g.c * self.depth_multiplier);
        let logits = if self.activation.has_logits() { Some((z.reshape(shape)?, self.activation)) } else { None };
        Ok((LayerOutput { value: y.reshape(shape)?, logits }, Cache::Conv { cols, z, y, input_dims: x.dims().to_vec() }))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn backward(&self, name: &str, weights: &[Tensor], cols: &Tensor, z: &Tensor, y: &Tensor, input_dims: &[usize], grad: OutputGrad, need_input_grad: bool) -> Result<LayerGrads> {
        let g = self.geometry(name, "DepthwiseConv2D", &input_dims[1..])?;
        let dz = match grad {
            OutputGrad::Logits(dz) => dz.reshape(z.dims())?,
            OutputGrad::Value(dy) => self.activation.backward(z, y, &dy.reshape(y.dims())?)?,
        };
        let (dk, input) = self.depthwise_backward(cols, &weights[0], &dz, &g, input_dims, need_input_grad)?;
        let mut grads = vec![dk];
        if self.use_bias {
            grads.push(crate::kernels::sum_rows(&dz)?);
        }
        Ok(LayerGrads { input, weights: grads, more_inputs: Vec::new() })
    }
}

/// SeparableConv2D: a depthwise convolution (no bias) then a 1x1 convolution to `filters`.
#[derive(Debug, Clone)]
pub struct SeparableConv2D {
    pub depthwise: DepthwiseConv2D,
    pub filters: usize,
    pub pointwise_initializer: Initializer,
}

impl SeparableConv2D {
    pub fn output_shape(&self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        let g = self.depthwise.geometry(name, "SeparableConv2D", input)?;
        Ok(vec![g.out_h, g.out_w, self.filters])
    }

    pub fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        let c = input.last().copied().unwrap_or(1);
        let mut specs = vec![
            self.depthwise.depthwise_spec(c),
            WeightSpec {
                name: "pointwise_kernel",
                shape: vec![1, 1, c * self.depthwise.depth_multiplier, self.filters],
                initializer: self.pointwise_initializer.clone(),
                trainable: true,
            },
        ];
        if self.depthwise.use_bias {
            specs.push(WeightSpec { name: "bias", shape: vec![self.filters], initializer: self.depthwise.bias_initializer.clone(), trainable: true });
        }
        specs
    }

    pub fn forward(&self, name: &str, weights: &[Tensor], x: &Tensor) -> Result<(LayerOutput, Cache)> {
        let (cols, g) = self.depthwise.patches(name, "SeparableConv2D", x)?;
        let mid = self.depthwise.depthwise(&cols, &weights[0], &g)?;
        let pointwise = weights[1].reshape((g.c * self.depthwise.depth_multiplier, self.filters))?;
        let act = self.depthwise.activation;
        let bias = if self.depthwise.use_bias { Some(&weights[2]) } else { None };
        let (z, y) = crate::kernels::linear(&mid, &pointwise, bias, act)?;
        let shape = (x.dim(0)?, g.out_h, g.out_w, self.filters);
        let logits = if act.has_logits() { Some((z.reshape(shape)?, act)) } else { None };
        let value = y.reshape(shape)?;
        let cache = Cache::Separable { cols, mid, z, y, input_dims: x.dims().to_vec() };
        Ok((LayerOutput { value, logits }, cache))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn backward(&self, name: &str, weights: &[Tensor], cols: &Tensor, mid: &Tensor, z: &Tensor, y: &Tensor, input_dims: &[usize], grad: OutputGrad, need_input_grad: bool) -> Result<LayerGrads> {
        let g = self.depthwise.geometry(name, "SeparableConv2D", &input_dims[1..])?;
        let dz = match grad {
            OutputGrad::Logits(dz) => dz.reshape(z.dims())?,
            OutputGrad::Value(dy) => self.depthwise.activation.backward(z, y, &dy.reshape(y.dims())?)?,
        };
        let mid_channels = g.c * self.depthwise.depth_multiplier;
        let pointwise = weights[1].reshape((mid_channels, self.filters))?;
        let d_pointwise = crate::kernels::matmul(&mid.t()?, &dz)?.reshape((1, 1, mid_channels, self.filters))?;
        let d_mid = crate::kernels::matmul_by_transpose(&dz, &pointwise)?;
        let (dk, input) = self.depthwise.depthwise_backward(cols, &weights[0], &d_mid, &g, input_dims, need_input_grad)?;
        let mut grads = vec![dk, d_pointwise];
        if self.depthwise.use_bias {
            grads.push(crate::kernels::sum_rows(&dz)?);
        }
        Ok(LayerGrads { input, weights: grads, more_inputs: Vec::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::check_backward;
    use candle_core::Device;

    fn depthwise(same: bool, strides: (usize, usize)) -> DepthwiseConv2D {
        DepthwiseConv2D {
            kernel_size: (2, 3),
            strides,
            same,
            dilation: (1, 1),
            depth_multiplier: 2,
            activation: Activation::Tanh,
            use_bias: true,
            depthwise_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
        }
    }

    #[test]
    fn depthwise_matches_a_direct_convolution() {
        let dev = Device::Cpu;
        let mut layer = depthwise(false, (1, 1));
        layer.activation = Activation::Linear;
        layer.use_bias = false;
        let x = Tensor::arange(0f32, 60.0, &dev).unwrap().affine(0.05, -1.0).unwrap().reshape((1, 3, 5, 4)).unwrap();
        let k = Tensor::arange(0f32, 48.0, &dev).unwrap().affine(0.02, -0.4).unwrap().reshape((2, 3, 4, 2)).unwrap();
        let y = layer.forward("d", &[k.clone()], &x).unwrap().0.value;
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
    fn one_multiplier_gradients_match_finite_differences() {
        // depth_multiplier 1 takes the kernels' vectorized per-channel path.
        let dev = Device::Cpu;
        let mut d = depthwise(true, (1, 1));
        d.depth_multiplier = 1;
        d.dilation = (1, 2);
        let k = Tensor::randn(0f32, 0.4, (2, 3, 3, 1), &dev).unwrap();
        let b = Tensor::randn(0f32, 0.2, 3, &dev).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 4, 6, 3), &dev).unwrap();
        let grads = |kk: &Tensor, xx: &Tensor, dy: &Tensor| {
            let w = [kk.clone(), b.clone()];
            let (_, cache) = d.forward("d", &w, xx).unwrap();
            let Cache::Conv { cols, z, y, input_dims } = cache else { panic!() };
            d.backward("d", &w, &cols, &z, &y, &input_dims, OutputGrad::Value(dy.clone()), true).unwrap()
        };
        check_backward(&[2, 4, 6, 3], |xx| Ok(d.forward("d", &[k.clone(), b.clone()], xx)?.0.value), |xx, dy| Ok(grads(&k, xx, dy).input.unwrap()), 2e-2);
        check_backward(&[2, 3, 3, 1], |kk| Ok(d.forward("d", &[kk.clone(), b.clone()], &x)?.0.value), |kk, dy| Ok(grads(kk, &x, dy).weights[0].clone()), 2e-2);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let dev = Device::Cpu;
        for (same, strides) in [(false, (1, 1)), (true, (2, 2))] {
            let d = depthwise(same, strides);
            let k = Tensor::randn(0f32, 0.4, (2, 3, 2, 2), &dev).unwrap();
            let b = Tensor::randn(0f32, 0.2, 4, &dev).unwrap();
            let x = Tensor::randn(0f32, 1.0, (2, 4, 5, 2), &dev).unwrap();
            let grads = |kk: &Tensor, xx: &Tensor, dy: &Tensor| {
                let w = [kk.clone(), b.clone()];
                let (_, cache) = d.forward("d", &w, xx).unwrap();
                let Cache::Conv { cols, z, y, input_dims } = cache else { panic!() };
                d.backward("d", &w, &cols, &z, &y, &input_dims, OutputGrad::Value(dy.clone()), true).unwrap()
            };
            check_backward(&[2, 4, 5, 2], |xx| Ok(d.forward("d", &[k.clone(), b.clone()], xx)?.0.value), |xx, dy| Ok(grads(&k, xx, dy).input.unwrap()), 2e-2);
            check_backward(&[2, 3, 2, 2], |kk| Ok(d.forward("d", &[kk.clone(), b.clone()], &x)?.0.value), |kk, dy| Ok(grads(kk, &x, dy).weights[0].clone()), 2e-2);

            let s = SeparableConv2D { depthwise: depthwise(same, strides), filters: 3, pointwise_initializer: Initializer::GlorotUniform };
            let pw = Tensor::randn(0f32, 0.4, (1, 1, 4, 3), &dev).unwrap();
            let sb = Tensor::randn(0f32, 0.2, 3, &dev).unwrap();
            let sgrads = |kk: &Tensor, pp: &Tensor, xx: &Tensor, dy: &Tensor| {
                let w = [kk.clone(), pp.clone(), sb.clone()];
                let (_, cache) = s.forward("s", &w, xx).unwrap();
                let Cache::Separable { cols, mid, z, y, input_dims } = cache else { panic!() };
                s.backward("s", &w, &cols, &mid, &z, &y, &input_dims, OutputGrad::Value(dy.clone()), true).unwrap()
            };
            let sf = |kk: &Tensor, pp: &Tensor, xx: &Tensor| Ok(s.forward("s", &[kk.clone(), pp.clone(), sb.clone()], xx)?.0.value);
            check_backward(&[2, 4, 5, 2], |xx| sf(&k, &pw, xx), |xx, dy| Ok(sgrads(&k, &pw, xx, dy).input.unwrap()), 2e-2);
            check_backward(&[2, 3, 2, 2], |kk| sf(kk, &pw, &x), |kk, dy| Ok(sgrads(kk, &pw, &x, dy).weights[0].clone()), 2e-2);
            check_backward(&[1, 1, 4, 3], |pp| sf(&k, pp, &x), |pp, dy| Ok(sgrads(&k, pp, &x, dy).weights[1].clone()), 2e-2);
        }
    }
}
