//! ActivityRegularization: passes its input through and adds Keras's activity penalty on it
//! (`l1 * sum(|x|) + l2 * sum(x^2)`, divided by the batch's rows) to the loss; the model's
//! backward pass adds the penalty's gradient (`Architecture::activity_penalty`).
use super::{Cache, Example, ForwardContext, LayerGrads, LayerOutput, LayerType, OutputGrad};
use crate::error::{Error, Result};
use crate::regularizer::Regularizer;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ActivityRegularization {
    pub l1: f64,
    pub l2: f64,
}

impl LayerType for ActivityRegularization {
    const CLASS_NAME: &'static str = "ActivityRegularization";
    const NAME_PREFIX: &'static str = "activity_regularization";

    fn normalize(&mut self) -> Result<()> {
        for (v, what) in [(self.l1, "l1"), (self.l2, "l2")] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Value(format!("`{}` must be a number >= 0, got {}", what, v)));
            }
        }
        Ok(())
    }

    fn output_shape(&self, _name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        Ok(inputs[0].clone())
    }

    fn activity_regularizer(&self) -> Option<Regularizer> {
        Some(Regularizer { l1: self.l1, l2: self.l2 })
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        Ok((LayerOutput::plain(xs[0].clone()), Cache::new(())))
    }

    fn backward(&self, _name: &str, _weights: &[Tensor], _transposed: &[Option<Tensor>], _cache: &Cache, grad: OutputGrad, _need: bool) -> Result<LayerGrads> {
        Ok(LayerGrads::input_only(grad.value(Self::CLASS_NAME)?))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "l1": 0.01, "l2": 0.02 }), inputs: vec![vec![4]], index_bound: None }
    }
}
