//! 2-d max pooling (channels last) with our own kernels, and Flatten.
use super::{Cache, LayerGrads, LayerOutput, OutputGrad};
use crate::error::{Error, Result};
use crate::kernels::{max_pool_backward_on_device, max_pool_on_device, window_geometry, ConvGeometry, MaxPoolRouting};
use candle_core::Tensor;

#[derive(Debug, Clone)]
pub struct MaxPooling2D {
    pub pool_size: (usize, usize),
    pub strides: (usize, usize),
    pub same: bool,
}

impl MaxPooling2D {
    pub fn geometry(&self, name: &str, input: &[usize]) -> Result<ConvGeometry> {
        window_geometry(name, "MaxPooling2D", input, self.pool_size, self.strides, (1, 1), self.same)
    }

    pub fn output_shape(&self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        let g = self.geometry(name, input)?;
        Ok(vec![g.out_h, g.out_w, g.c])
    }

    pub fn forward(&self, name: &str, x: &Tensor) -> Result<(LayerOutput, Cache)> {
        let dims = x.dims().to_vec();
        let g = self.geometry(name, &dims[1..])?;
        let (value, routing) = max_pool_on_device(x, &g)?;
        Ok((LayerOutput::plain(value), Cache::MaxPool { routing, input_dims: dims }))
    }

    pub fn backward(routing: &MaxPoolRouting, input_dims: &[usize], grad: OutputGrad) -> Result<LayerGrads> {
        let dy = value_grad(grad, "MaxPooling2D")?;
        let dx = max_pool_backward_on_device(&dy, routing, input_dims)?;
        Ok(LayerGrads { input: Some(dx), weights: Vec::new(), more_inputs: Vec::new() })
    }
}

/// Flattens each sample to one axis (Keras's Flatten, channels last: row-major order).
#[derive(Debug, Clone)]
pub struct Flatten;

impl Flatten {
    pub fn output_shape(input: &[usize]) -> Vec<usize> {
        vec![input.iter().product()]
    }

    pub fn forward(x: &Tensor) -> Result<(LayerOutput, Cache)> {
        let dims = x.dims().to_vec();
        let value = x.reshape((dims[0], dims[1..].iter().product::<usize>()))?;
        Ok((LayerOutput::plain(value), Cache::Reshape { input_dims: dims }))
    }

    pub fn backward(input_dims: &[usize], grad: OutputGrad) -> Result<LayerGrads> {
        let dy = value_grad(grad, "Flatten")?;
        Ok(LayerGrads { input: Some(dy.reshape(input_dims)?), weights: Vec::new(), more_inputs: Vec::new() })
    }
}

pub(super) fn value_grad(grad: OutputGrad, class: &str) -> Result<Tensor> {
    match grad {
        OutputGrad::Value(dy) => Ok(dy),
        OutputGrad::Logits(_) => Err(Error::State(format!("{} cannot end a model whose loss uses logits", class))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::check_backward;
    use candle_core::Device;

    #[test]
    fn max_pool_gradient_matches_finite_differences() {
        // Max is not differentiable at ties: add well-separated constants (a permutation of
        // multiples of 3) so that no window's maximum changes under the probe's small steps.
        let shape = [2usize, 5, 5, 3];
        let n: usize = shape.iter().product();
        let offsets: Vec<f32> = (0..n).map(|i| ((i * 7919) % n) as f32 * 3.0).collect();
        let offsets = Tensor::from_vec(offsets, &shape[..], &Device::Cpu).unwrap();
        for (same, strides) in [(false, (2, 2)), (true, (2, 2)), (false, (1, 1))] {
            let pool = MaxPooling2D { pool_size: (2, 2), strides, same };
            check_backward(
                &shape,
                |x| Ok(pool.forward("p", &(x + &offsets)?)?.0.value),
                |x, dy| {
                    let (_, cache) = pool.forward("p", &(x + &offsets)?)?;
                    let Cache::MaxPool { routing, input_dims } = cache else { panic!() };
                    Ok(MaxPooling2D::backward(&routing, &input_dims, OutputGrad::Value(dy.clone()))?.input.unwrap())
                },
                1e-2,
            );
        }
    }

    #[test]
    fn flatten_is_row_major_per_sample() {
        let x = Tensor::arange(0f32, 12.0, &Device::Cpu).unwrap().reshape((2, 2, 3)).unwrap();
        let (out, _) = Flatten::forward(&x).unwrap();
        assert_eq!(out.value.to_vec2::<f32>().unwrap()[1], vec![6., 7., 8., 9., 10., 11.]);
    }
}
