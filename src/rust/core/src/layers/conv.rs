//! 2-d convolution, channels last, as im2col + one matmul (forward) and matmuls + col2im
//! (backward; the input gradient only when a layer below needs it).
//!
//! # Shapes
//! input `(batch, h, w, c)`, kernel `(kh, kw, c, filters)` (Keras's layout), bias `(filters)`,
//! output `(batch, out_h, out_w, filters)` with Keras's "valid"/"same" output sizes.
use super::{Cache, LayerGrads, LayerOutput, OutputGrad, WeightSpec};
use crate::activation::Activation;
use crate::error::Result;
use crate::initializer::Initializer;
use crate::kernels::{col2im_on_device, im2col_on_device, window_geometry, ConvGeometry};
use candle_core::Tensor;

#[derive(Debug, Clone)]
pub struct Conv2D {
    pub filters: usize,
    pub kernel_size: (usize, usize),
    pub strides: (usize, usize),
    /// "same" padding (else "valid").
    pub same: bool,
    pub dilation: (usize, usize),
    pub activation: Activation,
    pub use_bias: bool,
    pub kernel_initializer: Initializer,
    pub bias_initializer: Initializer,
}

impl Conv2D {
    pub fn geometry(&self, name: &str, input: &[usize]) -> Result<ConvGeometry> {
        window_geometry(name, "Conv2D", input, self.kernel_size, self.strides, self.dilation, self.same)
    }

    pub fn output_shape(&self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        let g = self.geometry(name, input)?;
        Ok(vec![g.out_h, g.out_w, self.filters])
    }

    pub fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        let c = input.last().copied().unwrap_or(1);
        let mut specs = vec![WeightSpec {
            name: "kernel",
            shape: vec![self.kernel_size.0, self.kernel_size.1, c, self.filters],
            initializer: self.kernel_initializer.clone(),
            trainable: true,
        }];
        if self.use_bias {
            specs.push(WeightSpec { name: "bias", shape: vec![self.filters], initializer: self.bias_initializer.clone(), trainable: true });
        }
        specs
    }

    pub fn forward(&self, name: &str, weights: &[Tensor], x: &Tensor) -> Result<(LayerOutput, Cache)> {
        let dims = x.dims().to_vec();
        let batch = dims[0];
        let g = self.geometry(name, &dims[1..])?;
        let cols = im2col_on_device(x, &g)?;
        let kernel = weights[0].reshape((g.patch_len(), self.filters))?;
        let bias = if self.use_bias { Some(&weights[1]) } else { None };
        let (z, y) = crate::kernels::linear(&cols, &kernel, bias, self.activation)?;
        let shape = (batch, g.out_h, g.out_w, self.filters);
        let logits = if self.activation.has_logits() { Some((z.reshape(shape)?, self.activation)) } else { None };
        let value = y.reshape(shape)?;
        Ok((LayerOutput { value, logits }, Cache::Conv { cols, z, y, input_dims: dims }))
    }

    pub fn backward(&self, name: &str, weights: &[Tensor], cols: &Tensor, z: &Tensor, y: &Tensor, input_dims: &[usize], grad: OutputGrad, need_input_grad: bool) -> Result<LayerGrads> {
        let dz = match grad {
            OutputGrad::Logits(dz) => dz.reshape(z.dims())?,
            OutputGrad::Value(dy) => self.activation.backward(z, y, &dy.reshape(y.dims())?)?,
        };
        let kernel_shape = weights[0].dims().to_vec();
        let mut grads = vec![crate::kernels::matmul(&cols.t()?, &dz)?.reshape(kernel_shape)?];
        if self.use_bias {
            grads.push(crate::kernels::sum_rows(&dz)?);
        }
        let input = if need_input_grad {
            let g = self.geometry(name, &input_dims[1..])?;
            let kernel = weights[0].reshape((g.patch_len(), self.filters))?;
            let dcols = crate::kernels::matmul_by_transpose(&dz, &kernel)?;
            Some(col2im_on_device(&dcols, input_dims[0], &g)?)
        } else {
            None
        };
        Ok(LayerGrads { input, weights: grads, more_inputs: Vec::new() })
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
            kernel_size: (2, 3),
            strides,
            same,
            dilation,
            activation: Activation::Tanh,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
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
        let y = layer.forward("c", &[k.clone(), b.clone()], &x).unwrap().0.value;
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
            let fwd = |kk: &Tensor, bb: &Tensor, xx: &Tensor| Ok(layer.forward("c", &[kk.clone(), bb.clone()], xx)?.0.value);
            let back = |kk: &Tensor, bb: &Tensor, xx: &Tensor, dy: &Tensor| {
                let w = [kk.clone(), bb.clone()];
                let (_, cache) = layer.forward("c", &w, xx).unwrap();
                let Cache::Conv { cols, z, y, input_dims } = cache else { panic!() };
                layer.backward("c", &w, &cols, &z, &y, &input_dims, OutputGrad::Value(dy.clone()), true).unwrap()
            };
            check_backward(&[2, 5, 6, 2], |xx| fwd(&k, &b, xx), |xx, dy| Ok(back(&k, &b, xx, dy).input.unwrap()), 2e-2);
            check_backward(&[2, 3, 2, 3], |kk| fwd(kk, &b, &x), |kk, dy| Ok(back(kk, &b, &x, dy).weights[0].clone()), 2e-2);
            check_backward(&[3], |bb| fwd(&k, bb, &x), |bb, dy| Ok(back(&k, bb, &x, dy).weights[1].clone()), 2e-2);
        }
    }
}
