//! Activation layer: applies an activation function to its input.
use super::{Cache, Example, ForwardContext, InferenceMap, LayerGrads, LayerOutput, LayerType, OutputGrad};
use crate::activation::Activation;
use crate::error::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ActivationLayer {
    pub activation: Activation,
}

/// Input and output.
struct ActivationCache {
    x: Tensor,
    y: Tensor,
}

impl LayerType for ActivationLayer {
    const CLASS_NAME: &'static str = "Activation";
    const NAME_PREFIX: &'static str = "activation";
    const PROPAGATES_MASK: bool = true;

    fn output_shape(&self, _name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        Ok(inputs[0].clone())
    }

    fn inference_map(&self, _weights: &[Tensor]) -> Result<Option<InferenceMap>> {
        Ok((self.activation == Activation::Relu).then_some(InferenceMap::Relu))
    }

    fn forward(&self, _name: &str, _weights: &[Tensor], xs: &[Tensor], _ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let x = &xs[0];
        let value = self.activation.apply(x)?;
        let logits = self.activation.has_logits().then(|| (x.clone(), self.activation));
        let cache = Cache::new(ActivationCache { x: x.clone(), y: value.clone() });
        Ok((LayerOutput { value, logits }, cache))
    }

    fn backward(
        &self,
        _name: &str,
        _weights: &[Tensor],
        _transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        _need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let ActivationCache { x, y } = cache.get::<ActivationCache>()?;
        Ok(LayerGrads::input_only(grad.through(self.activation, x, y)?))
    }

    fn example() -> Example {
        Example { config: serde_json::json!({ "activation": "softmax" }), inputs: vec![vec![5]], index_bound: None }
    }
}
