//! Weightless spatial layers (channels last): average pooling, global pooling, zero
//! padding and reshape.
use super::pooling::{value_grad, MaxPooling2D};
use super::{Cache, LayerGrads, LayerOutput, OutputGrad};
use crate::error::{Error, Result};
use crate::kernels::{avg_pool_backward_on_device, avg_pool_on_device};
use crate::model::join_dims;
use candle_core::Tensor;

/// AveragePooling2D: the mean of each window (padding excluded from the count).
#[derive(Debug, Clone)]
pub struct AveragePooling2D {
    pub window: MaxPooling2D,
}

impl AveragePooling2D {
    pub fn output_shape(&self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        self.window.output_shape(name, input)
    }

    pub fn forward(&self, name: &str, x: &Tensor) -> Result<(LayerOutput, Cache)> {
        let dims = x.dims().to_vec();
        let g = self.window.geometry(name, &dims[1..])?;
        let value = avg_pool_on_device(x, &g)?;
        Ok((LayerOutput::plain(value), Cache::Reshape { input_dims: dims }))
    }

    pub fn backward(&self, name: &str, input_dims: &[usize], grad: OutputGrad) -> Result<LayerGrads> {
        let dy = value_grad(grad, "AveragePooling2D")?;
        let g = self.window.geometry(name, &input_dims[1..])?;
        let dx = avg_pool_backward_on_device(&dy, input_dims[0], &g)?;
        Ok(LayerGrads { input: Some(dx), weights: Vec::new(), more_inputs: Vec::new() })
    }
}

fn spatial_dims(name: &str, class: &str, input: &[usize]) -> Result<(usize, usize, usize)> {
    match *input {
        [h, w, c] => Ok((h, w, c)),
        _ => Err(Error::Value(format!(
            "layer \"{}\" ({}) needs inputs of shape (height, width, channels), got ({})",
            name,
            class,
            join_dims(input)
        ))),
    }
}

/// GlobalAveragePooling2D: (batch, h, w, c) -> (batch, c), the mean over all pixels.
pub fn global_average_forward(x: &Tensor) -> Result<(LayerOutput, Cache)> {
    let dims = x.dims().to_vec();
    let (b, pixels, c) = (dims[0], dims[1] * dims[2], dims[3]);
    let value = x.reshape((b, pixels, c))?.mean(1)?;
    Ok((LayerOutput::plain(value), Cache::Reshape { input_dims: dims }))
}

pub fn global_average_backward(input_dims: &[usize], grad: OutputGrad) -> Result<LayerGrads> {
    let dy = value_grad(grad, "GlobalAveragePooling2D")?;
    let (b, pixels, c) = (input_dims[0], input_dims[1] * input_dims[2], input_dims[3]);
    let dx = (dy.unsqueeze(1)?.broadcast_as((b, pixels, c))? / pixels as f64)?.reshape(input_dims)?;
    Ok(LayerGrads { input: Some(dx), weights: Vec::new(), more_inputs: Vec::new() })
}

/// GlobalMaxPooling2D as a max pooling whose window is the whole image.
pub fn global_max_window(name: &str, input: &[usize]) -> Result<MaxPooling2D> {
    let (h, w, _) = spatial_dims(name, "GlobalMaxPooling2D", input)?;
    Ok(MaxPooling2D { pool_size: (h, w), strides: (1, 1), same: false })
}

pub fn global_output_shape(name: &str, class: &str, input: &[usize]) -> Result<Vec<usize>> {
    let (_, _, c) = spatial_dims(name, class, input)?;
    Ok(vec![c])
}

/// ZeroPadding2D: ((top, bottom), (left, right)) rows and columns of zeros.
#[derive(Debug, Clone)]
pub struct ZeroPadding2D {
    pub padding: ((usize, usize), (usize, usize)),
}

impl ZeroPadding2D {
    pub fn output_shape(&self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        let (h, w, c) = spatial_dims(name, "ZeroPadding2D", input)?;
        let ((t, b), (l, r)) = self.padding;
        Ok(vec![h + t + b, w + l + r, c])
    }

    pub fn forward(&self, x: &Tensor) -> Result<(LayerOutput, Cache)> {
        let ((t, b), (l, r)) = self.padding;
        let value = x.pad_with_zeros(1, t, b)?.pad_with_zeros(2, l, r)?;
        Ok((LayerOutput::plain(value), Cache::Reshape { input_dims: x.dims().to_vec() }))
    }

    pub fn backward(&self, input_dims: &[usize], grad: OutputGrad) -> Result<LayerGrads> {
        let dy = value_grad(grad, "ZeroPadding2D")?;
        let ((t, _), (l, _)) = self.padding;
        let dx = dy.narrow(1, t, input_dims[1])?.narrow(2, l, input_dims[2])?.contiguous()?;
        Ok(LayerGrads { input: Some(dx), weights: Vec::new(), more_inputs: Vec::new() })
    }
}

/// Reshape each sample to `target` (one entry may be unknown, Keras's -1).
#[derive(Debug, Clone)]
pub struct Reshape {
    pub target: Vec<Option<usize>>,
}

impl Reshape {
    pub fn output_shape(&self, name: &str, input: &[usize]) -> Result<Vec<usize>> {
        let total: usize = input.iter().product();
        let known: usize = self.target.iter().flatten().product();
        let unknown = self.target.iter().filter(|d| d.is_none()).count();
        let fits = match unknown {
            0 => known == total,
            1 => known > 0 && total % known == 0,
            _ => false,
        };
        if !fits {
            let shown: Vec<String> = self.target.iter().map(|d| d.map_or("-1".to_string(), |v| v.to_string())).collect();
            return Err(Error::Value(format!(
                "layer \"{}\" (Reshape) cannot reshape ({}) ({} values per sample) to ({})",
                name,
                join_dims(input),
                total,
                shown.join(", ")
            )));
        }
        Ok(self.target.iter().map(|d| d.unwrap_or(total / known.max(1))).collect())
    }

    pub fn forward(&self, name: &str, x: &Tensor) -> Result<(LayerOutput, Cache)> {
        let dims = x.dims().to_vec();
        let mut shape = vec![dims[0]];
        shape.extend(self.output_shape(name, &dims[1..])?);
        Ok((LayerOutput::plain(x.reshape(shape)?), Cache::Reshape { input_dims: dims }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::check_backward;

    #[test]
    fn gradients_match_finite_differences() {
        let pool = AveragePooling2D { window: MaxPooling2D { pool_size: (2, 2), strides: (2, 2), same: true } };
        let back_avg = |x: &Tensor, dy: &Tensor| Ok(pool.backward("a", x.dims(), OutputGrad::Value(dy.clone()))?.input.unwrap());
        check_backward(&[2, 5, 5, 3], |x| Ok(pool.forward("a", x)?.0.value), back_avg, 1e-2);
        check_backward(
            &[2, 3, 4, 2],
            |x| Ok(global_average_forward(x)?.0.value),
            |x, dy| Ok(global_average_backward(x.dims(), OutputGrad::Value(dy.clone()))?.input.unwrap()),
            1e-2,
        );
        let pad = ZeroPadding2D { padding: ((1, 2), (0, 1)) };
        check_backward(&[2, 3, 3, 2], |x| Ok(pad.forward(x)?.0.value), |x, dy| Ok(pad.backward(x.dims(), OutputGrad::Value(dy.clone()))?.input.unwrap()), 1e-2);
    }

    #[test]
    fn same_average_pooling_excludes_padding() {
        // 3x3 image of ones, 2x2 windows, stride 2, same: every output is exactly 1.
        let x = Tensor::ones((1, 3, 3, 1), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let pool = AveragePooling2D { window: MaxPooling2D { pool_size: (2, 2), strides: (2, 2), same: true } };
        let y = pool.forward("a", &x).unwrap().0.value.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(y, vec![1.0; 4]);
    }

    #[test]
    fn reshape_infers_one_axis() {
        let r = Reshape { target: vec![None, Some(4)] };
        assert_eq!(r.output_shape("r", &[2, 3, 4]).unwrap(), vec![6, 4]);
        assert!(r.output_shape("r", &[5]).is_err());
    }
}
