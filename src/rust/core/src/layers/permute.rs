//! Permute: reorders the sample axes (`dims`, a permutation of 1..n as Keras numbers them,
//! the batch axis staying first).
use super::{Cache, Example, ForwardContext, LayerGrads, LayerOutput, LayerType, OutputGrad};
use crate::error::{Error, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Permute {
    pub dims: Vec<usize>,
}

impl Permute {
    /// The permutation of all axes, batch first.
    fn axes(&self) -> Vec<usize> {
        std::iter::once(0).chain(self.dims.iter().copied()).collect()
    }
}

impl LayerType for Permute {
    const CLASS_NAME: &'static str = "Permute";
    const NAME_PREFIX: &'static str = "permute";

    fn normalize(&mut self) -> Result<()> {
        let mut sorted = self.dims.clone();
        sorted.sort_unstable();
        if sorted.is_empty() || sorted != (1..=self.dims.len()).collect::<Vec<_>>() {
            return Err(Error::Value(format!(
                "`dims` must be a permutation of 1..{} (axes counted from 1, the batch axis excluded), got {:?}",
                self.dims.len(),
                self.dims
            )));
        }
        Ok(())
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let input = &inputs[0];
        if input.len() != self.dims.len() {
            return Err(Error::Value(format!("layer \"{}\" (Permute) has {} dims for inputs of {} axes", name, self.dims.len(), input.len())));
        }
        Ok(self.dims.iter().map(|d| input[d - 1]).collect())
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        self.output_shape(name, &[xs[0].dims()[1..].to_vec()])?;
        Ok((LayerOutput::plain(xs[0].permute(self.axes())?.contiguous()?), Cache::new(())))
    }

    /// The inverse permutation.
    fn backward(
        &self,
        _name: &str,
        _weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        _cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let axes = self.axes();
        let mut inverse = vec![0; axes.len()];
        for (i, a) in axes.iter().enumerate() {
            inverse[*a] = i;
        }
        Ok(LayerGrads::input_only(grad.value(Self::CLASS_NAME)?.permute(inverse)?.contiguous()?))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "dims": [2, 3, 1] }), inputs: vec![vec![2, 3, 4]], index_bound: None }
    }
}
