//! RepeatVector: `(batch, features)` to `(batch, n, features)`, the input repeated `n` times.
use super::{Cache, Example, ForwardContext, InputDims, LayerGrads, LayerOutput, LayerType, OutputGrad};
use crate::error::{Error, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RepeatVector {
    pub n: usize,
}

impl LayerType for RepeatVector {
    const CLASS_NAME: &'static str = "RepeatVector";
    const NAME_PREFIX: &'static str = "repeat_vector";

    fn normalize(&mut self) -> Result<()> {
        if self.n == 0 {
            return Err(Error::Value("`n` must be a positive integer, got 0".into()));
        }
        Ok(())
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        match inputs[0].as_slice() {
            [features] => Ok(vec![self.n, *features]),
            other => Err(Error::Value(format!(
                "layer \"{}\" (RepeatVector) needs inputs of shape (batch, features), got (batch, {})",
                name,
                crate::shape::join_dims(other)
            ))),
        }
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let (b, f) = x.dims2()?;
        let value = x.unsqueeze(1)?.broadcast_as((b, self.n, f))?.contiguous()?;
        Ok((LayerOutput::plain(value), Cache::new(InputDims(x.dims().to_vec()))))
    }

    /// The copies' gradients add up.
    fn backward(&self, _name: &str, _weights: &[Tensor], _t: &[Option<Tensor>], _cache: &Cache, grad: OutputGrad, _need: bool) -> Result<LayerGrads> {
        Ok(LayerGrads::input_only(grad.value(Self::CLASS_NAME)?.sum(1)?))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "n": 3 }), inputs: vec![vec![4]], index_bound: None }
    }
}
