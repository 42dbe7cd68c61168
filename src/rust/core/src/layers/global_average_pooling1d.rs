//! GlobalAveragePooling1D: `(batch, steps, channels)` to `(batch, channels)`, the mean of
//! each channel over the steps (Keras's layer, channels last).
use super::{Cache, DataFormat, Example, ForwardContext, InputDims, LayerGrads, LayerOutput, LayerType, OutputGrad};
use crate::error::Result;
use crate::shape::sequence_dims;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct GlobalAveragePooling1D {
    pub data_format: DataFormat,
    pub keepdims: bool,
}

impl LayerType for GlobalAveragePooling1D {
    const CLASS_NAME: &'static str = "GlobalAveragePooling1D";
    const NAME_PREFIX: &'static str = "global_average_pooling1d";

    fn normalize(&mut self) -> Result<()> {
        super::pooling::check_global(self.data_format, self.keepdims)
    }

    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let (_, c) = sequence_dims(name, Self::CLASS_NAME, &inputs[0])?;
        Ok(vec![c])
    }

    fn forward(&self, name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        self.output_shape(name, &[x.dims()[1..].to_vec()])?;
        Ok((LayerOutput::plain(x.mean(1)?), Cache::new(InputDims(x.dims().to_vec()))))
    }

    /// Each step gets the channel's gradient divided by the number of steps.
    fn backward(
        &self,
        _name: &str,
        _weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let InputDims(dims) = cache.get::<InputDims>()?;
        let dy = grad.value(Self::CLASS_NAME)?;
        let dx = (dy.unsqueeze(1)?.broadcast_as(dims.as_slice())? / dims[1] as f64)?.contiguous()?;
        Ok(LayerGrads::input_only(dx))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({}), inputs: vec![vec![5, 3]], index_bound: None }
    }
}
