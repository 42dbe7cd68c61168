//! Embedding: each index in `0..input_dim` selects a row of the embedding matrix.
//!
//! # Shapes
//! weight `(input_dim, output_dim)`, input `(batch, length)` of indices, output
//! `(batch, length, output_dim)`.
use super::params::check_positive;
use super::{Cache, Example, ForwardContext, LayerGrads, LayerOutput, LayerType, OutputGrad, WeightSpec};
use crate::error::{Error, Result};
use crate::initializer::Initializer;
use crate::regularizer::Regularizer;
use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Embedding {
    pub input_dim: usize,
    pub output_dim: usize,
    pub embeddings_initializer: Initializer,
    pub embeddings_regularizer: Option<Regularizer>,
    pub activity_regularizer: Option<Regularizer>,
    pub embeddings_constraint: Option<crate::constraint::Constraint>,
    pub mask_zero: bool,
    /// Keras 2's informational sequence length (the input shape sets it here).
    pub input_length: Option<usize>,
}

impl Default for Embedding {
    fn default() -> Self {
        Self {
            input_dim: 0,
            output_dim: 0,
            // Keras's "uniform": RandomUniform(-0.05, 0.05).
            embeddings_initializer: Initializer::random_uniform(-0.05, 0.05),
            embeddings_regularizer: None,
            activity_regularizer: None,
            embeddings_constraint: None,
            mask_zero: false,
            input_length: None,
        }
    }
}

/// Row indices of the lookup.
struct EmbeddingCache {
    ids: Tensor,
}

impl LayerType for Embedding {
    const CLASS_NAME: &'static str = "Embedding";
    const NAME_PREFIX: &'static str = "embedding";

    fn normalize(&mut self) -> Result<()> {
        check_positive("input_dim", &[self.input_dim])?;
        check_positive("output_dim", &[self.output_dim])?;
        Ok(())
    }

    fn output_shape(&self, _name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let mut out = inputs[0].clone();
        out.push(self.output_dim);
        Ok(out)
    }

    fn weight_regularizers(&self) -> Vec<Option<Regularizer>> {
        vec![self.embeddings_regularizer]
    }

    fn weight_constraints(&self) -> Vec<Option<crate::constraint::Constraint>> {
        vec![self.embeddings_constraint.clone()]
    }

    fn activity_regularizer(&self) -> Option<Regularizer> {
        self.activity_regularizer
    }

    fn makes_mask(&self) -> bool {
        self.mask_zero
    }

    /// With `mask_zero`, index 0 is padding: masked for the layers after.
    fn compute_mask(&self, xs: &[Tensor], _mask: Option<&Tensor>) -> Result<Option<Tensor>> {
        Ok(if self.mask_zero { Some(xs[0].ne(0f32)?.to_dtype(DType::F32)?) } else { None })
    }

    fn weight_specs(&self, _input: &[usize]) -> Vec<WeightSpec> {
        vec![WeightSpec {
            name: "embeddings".into(),
            shape: vec![self.input_dim, self.output_dim],
            initializer: self.embeddings_initializer.clone(),
            trainable: true,
        }]
    }

    fn forward(&self, name: &str, weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
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
        Ok((LayerOutput::plain(value), Cache::new(EmbeddingCache { ids })))
    }

    /// Each output row's gradient is added to the row of the embedding it came from; the
    /// indices have no gradient.
    fn backward(
        &self,
        _name: &str,
        weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let ids = &cache.get::<EmbeddingCache>()?.ids;
        let dy = grad.value(Self::CLASS_NAME)?.reshape((ids.dim(0)?, self.output_dim))?;
        let dw = weights[0].zeros_like()?.index_add(ids, &dy, 0)?;
        Ok(LayerGrads { input: None, weights: vec![dw], more_inputs: Vec::new() })
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "input_dim": 5, "output_dim": 2 }), inputs: vec![vec![4]], index_bound: Some(5) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::SeedableRng;

    #[test]
    fn embedding_gathers_rows_and_scatters_gradients() {
        let e = Embedding { input_dim: 4, output_dim: 2, ..Embedding::default() };
        let mut ctx = ForwardContext { training: false, rng: rand::rngs::StdRng::seed_from_u64(0), mask: None, collective: None };
        let w = Tensor::new(&[[0f32, 1.], [2., 3.], [4., 5.], [6., 7.]], &Device::Cpu).unwrap();
        let x = Tensor::new(&[[3f32, 1.], [1., 1.]], &Device::Cpu).unwrap();
        let (out, cache) = e.forward("e", std::slice::from_ref(&w), &[x], &mut ctx).unwrap();
        assert_eq!(out.value.to_vec3::<f32>().unwrap(), vec![vec![vec![6., 7.], vec![2., 3.]], vec![vec![2., 3.], vec![2., 3.]]]);
        let g = e.backward("e", std::slice::from_ref(&w), &[], &cache, OutputGrad::Value(out.value.ones_like().unwrap()), true).unwrap();
        assert_eq!(g.weights[0].to_vec2::<f32>().unwrap(), vec![vec![0., 0.], vec![3., 3.], vec![0., 0.], vec![1., 1.]]);
        let bad = Tensor::new(&[[4f32]], &Device::Cpu).unwrap();
        assert!(e.forward("e", &[w], &[bad], &mut ctx).is_err());
    }
}
