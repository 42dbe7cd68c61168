//! Layers over sequences `(batch, steps, channels)`: Conv1D and MaxPooling1D, run as their
//! 2-d counterparts on a height-1 image, and Embedding.
//!
//! # Shapes
//! Conv1D kernel `(kernel_size, channels, filters)` (Keras's layout); Embedding weight
//! `(input_dim, output_dim)`, input `(batch, length)` of indices, output
//! `(batch, length, output_dim)`.
use super::{Cache, Conv2D, LayerGrads, LayerOutput, MaxPooling2D, OutputGrad, WeightSpec};
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use crate::model::join_dims;
use candle_core::{DType, Tensor};

fn as_image_shape(name: &str, class: &str, input: &[usize]) -> Result<Vec<usize>> {
    match *input {
        [steps, c] => Ok(vec![1, steps, c]),
        _ => Err(Error::Value(format!("layer \"{}\" ({}) needs inputs of shape (steps, channels), got ({})", name, class, join_dims(input)))),
    }
}

fn to_image(x: &Tensor) -> Result<Tensor> {
    let (b, steps, c) = x.dims3()?;
    Ok(x.reshape((b, 1, steps, c))?)
}

fn from_image(t: Tensor) -> Result<Tensor> {
    let (b, _, steps, c) = t.dims4()?;
    Ok(t.reshape((b, steps, c))?)
}

/// Conv1D: a Conv2D with a (1, kernel_size) window.
pub fn conv1d_output_shape(conv: &Conv2D, name: &str, input: &[usize]) -> Result<Vec<usize>> {
    let out = conv.output_shape(name, &as_image_shape(name, "Conv1D", input)?)?;
    Ok(out[1..].to_vec())
}

pub fn conv1d_weight_specs(conv: &Conv2D, input: &[usize]) -> Vec<WeightSpec> {
    let c = input.last().copied().unwrap_or(1);
    let mut specs = conv.weight_specs(&[1, 1, c]);
    specs[0].shape = vec![conv.kernel_size.1, c, conv.filters];
    specs
}

pub fn conv1d_forward(conv: &Conv2D, name: &str, weights: &[Tensor], x: &Tensor) -> Result<(LayerOutput, Cache)> {
    let mut w = weights.to_vec();
    w[0] = weights[0].unsqueeze(0)?;
    let (out, cache) = conv.forward(name, &w, &to_image(x)?)?;
    let value = from_image(out.value)?;
    let logits = out.logits.map(|(z, a)| Ok::<_, Error>((from_image(z)?, a))).transpose()?;
    Ok((LayerOutput { value, logits }, Cache::Reshaped { inner: Box::new(cache), input_dims: x.dims().to_vec() }))
}

pub fn conv1d_backward(conv: &Conv2D, name: &str, weights: &[Tensor], inner: &Cache, input_dims: &[usize], grad: OutputGrad, need_input_grad: bool) -> Result<LayerGrads> {
    let Cache::Conv { cols, z, y, input_dims: image_dims } = inner else {
        return Err(Error::State("Conv1D got another layer's cache".into()));
    };
    let mut w = weights.to_vec();
    w[0] = weights[0].unsqueeze(0)?;
    let mut g = conv.backward(name, &w, cols, z, y, image_dims, grad, need_input_grad)?;
    g.weights[0] = g.weights[0].squeeze(0)?;
    g.input = g.input.map(|t| t.reshape(input_dims)).transpose()?;
    Ok(g)
}

/// MaxPooling1D: a MaxPooling2D with a (1, pool_size) window.
pub fn pool1d_output_shape(pool: &MaxPooling2D, name: &str, input: &[usize]) -> Result<Vec<usize>> {
    let out = pool.output_shape(name, &as_image_shape(name, "MaxPooling1D", input)?)?;
    Ok(out[1..].to_vec())
}

pub fn pool1d_forward(pool: &MaxPooling2D, name: &str, x: &Tensor) -> Result<(LayerOutput, Cache)> {
    let (out, cache) = pool.forward(name, &to_image(x)?)?;
    Ok((LayerOutput::plain(from_image(out.value)?), Cache::Reshaped { inner: Box::new(cache), input_dims: x.dims().to_vec() }))
}

pub fn pool1d_backward(inner: &Cache, input_dims: &[usize], grad: OutputGrad) -> Result<LayerGrads> {
    let Cache::MaxPool { routing, input_dims: image_dims } = inner else {
        return Err(Error::State("MaxPooling1D got another layer's cache".into()));
    };
    let grad = match grad {
        OutputGrad::Value(dy) => OutputGrad::Value(to_image(&dy)?),
        other => other,
    };
    let mut g = MaxPooling2D::backward(routing, image_dims, grad)?;
    g.input = g.input.map(|t| t.reshape(input_dims)).transpose()?;
    Ok(g)
}

#[derive(Debug, Clone)]
pub struct Embedding {
    pub input_dim: usize,
    pub output_dim: usize,
    pub initializer: Initializer,
}

impl Embedding {
    pub fn output_shape(&self, input: &[usize]) -> Vec<usize> {
        let mut out = input.to_vec();
        out.push(self.output_dim);
        out
    }

    pub fn weight_specs(&self) -> Vec<WeightSpec> {
        vec![WeightSpec { name: "embeddings", shape: vec![self.input_dim, self.output_dim], initializer: self.initializer.clone(), trainable: true }]
    }

    pub fn forward(&self, name: &str, weights: &[Tensor], x: &Tensor) -> Result<(LayerOutput, Cache)> {
        let values = x.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        if let Some(bad) = values.iter().find(|v| **v < 0.0 || v.fract() != 0.0 || **v as usize >= self.input_dim) {
            return Err(Error::Value(format!(
                "layer \"{}\" (Embedding) got index {} but indices must be whole numbers in 0..{}",
                name,
                bad,
                self.input_dim - 1
            )));
        }
        let ids = Tensor::from_vec(values.iter().map(|v| *v as u32).collect::<Vec<_>>(), values.len(), x.device())?;
        let mut shape = x.dims().to_vec();
        shape.push(self.output_dim);
        let value = weights[0].index_select(&ids, 0)?.reshape(shape)?;
        Ok((LayerOutput::plain(value), Cache::Embedding { ids }))
    }

    /// Each output row's gradient is added to the row of the embedding it came from.
    pub fn backward(&self, weights: &[Tensor], ids: &Tensor, grad: OutputGrad) -> Result<LayerGrads> {
        let OutputGrad::Value(dy) = grad else {
            return Err(Error::State("an embedding cannot end a model whose loss uses logits".into()));
        };
        let dy = dy.reshape((ids.dim(0)?, self.output_dim))?;
        let dw = weights[0].zeros_like()?.index_add(ids, &dy, 0)?;
        Ok(LayerGrads { input: None, weights: vec![dw], more_inputs: Vec::new() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::Activation;
    use crate::testutil::check_backward;
    use candle_core::Device;

    #[test]
    fn conv1d_gradients_match_finite_differences() {
        let conv = Conv2D {
            filters: 3,
            kernel_size: (1, 3),
            strides: (1, 2),
            same: true,
            dilation: (1, 1),
            activation: Activation::Tanh,
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
        };
        let k = Tensor::randn(0f32, 0.4, (3, 2, 3), &Device::Cpu).unwrap();
        let b = Tensor::randn(0f32, 0.2, 3, &Device::Cpu).unwrap();
        let back = |x: &Tensor, dy: &Tensor| {
            let w = [k.clone(), b.clone()];
            let (_, cache) = conv1d_forward(&conv, "c", &w, x)?;
            let Cache::Reshaped { inner, input_dims } = cache else { panic!() };
            Ok(conv1d_backward(&conv, "c", &w, &inner, &input_dims, OutputGrad::Value(dy.clone()), true)?.input.unwrap())
        };
        check_backward(&[2, 7, 2], |x| Ok(conv1d_forward(&conv, "c", &[k.clone(), b.clone()], x)?.0.value), back, 2e-2);
    }

    #[test]
    fn embedding_gathers_rows_and_scatters_gradients() {
        let e = Embedding { input_dim: 4, output_dim: 2, initializer: Initializer::Zeros };
        let w = Tensor::new(&[[0f32, 1.], [2., 3.], [4., 5.], [6., 7.]], &Device::Cpu).unwrap();
        let x = Tensor::new(&[[3f32, 1.], [1., 1.]], &Device::Cpu).unwrap();
        let (out, cache) = e.forward("e", &[w.clone()], &x).unwrap();
        assert_eq!(out.value.to_vec3::<f32>().unwrap(), vec![vec![vec![6., 7.], vec![2., 3.]], vec![vec![2., 3.], vec![2., 3.]]]);
        let Cache::Embedding { ids } = cache else { panic!() };
        let g = e.backward(&[w.clone()], &ids, OutputGrad::Value(out.value.ones_like().unwrap())).unwrap();
        assert_eq!(g.weights[0].to_vec2::<f32>().unwrap(), vec![vec![0., 0.], vec![3., 3.], vec![0., 0.], vec![1., 1.]]);
        let bad = Tensor::new(&[[4f32]], &Device::Cpu).unwrap();
        assert!(e.forward("e", &[w], &bad).is_err());
    }
}
