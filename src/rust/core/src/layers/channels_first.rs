//! `data_format = "channels_first"`: any spatial layer (convolutions, pooling, up-sampling,
//! padding, cropping, flatten) run on `(channels, ...)` inputs. Keras defines the format as a
//! transposition of the channels-last computation, with the same weights (a Conv2D kernel is
//! `(kh, kw, in, out)` either way), so the layer is its channels-last twin between two
//! transpositions: the channels axis moved last on the way in, and back first on the way out
//! when the output keeps the input's rank (a Flatten or a global pooling's does not: Flatten
//! flattens in channels-last order, as tf-keras's does). The registry wraps a layer in this
//! when its config says `channels_first`; the config it writes says so again.
use super::{AnyLayer, Cache, ForwardContext, Inputs, LayerGrads, LayerOutput, OutputGrad, WeightSpec};
use crate::error::Result;
use candle_core::Tensor;
use serde_json::Value;
use std::sync::Arc;

#[derive(Debug)]
pub struct ChannelsFirst {
    inner: Arc<dyn AnyLayer>,
}

impl ChannelsFirst {
    pub fn new(inner: Arc<dyn AnyLayer>) -> Self {
        Self { inner }
    }
}

/// A shape without the batch axis, `(channels, d1, ..)` -> `(d1, .., channels)`.
fn shape_to_last(shape: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    if s.len() > 1 {
        s.rotate_left(1);
    }
    s
}

fn shape_to_first(shape: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    if s.len() > 1 {
        s.rotate_right(1);
    }
    s
}

/// A batch `(n, channels, d1, ..)` -> `(n, d1, .., channels)`.
fn to_last(x: &Tensor) -> Result<Tensor> {
    let rank = x.rank();
    if rank < 3 {
        return Ok(x.clone());
    }
    let order: Vec<usize> = std::iter::once(0).chain(2..rank).chain(std::iter::once(1)).collect();
    Ok(x.permute(order)?.contiguous()?)
}

/// A batch `(n, d1, .., channels)` -> `(n, channels, d1, ..)`.
fn to_first(x: &Tensor) -> Result<Tensor> {
    let rank = x.rank();
    if rank < 3 {
        return Ok(x.clone());
    }
    let order: Vec<usize> = [0, rank - 1].into_iter().chain(1..rank - 1).collect();
    Ok(x.permute(order)?.contiguous()?)
}

/// Whether the layer's output on `input` keeps the channels axis where the input had it.
fn spatial_output(input_rank: usize, output_rank: usize) -> bool {
    input_rank == output_rank && output_rank >= 2
}

impl AnyLayer for ChannelsFirst {
    fn class_name(&self) -> &str {
        self.inner.class_name()
    }
    fn config(&self) -> Value {
        let mut config = self.inner.config();
        if let Some(o) = config.as_object_mut() {
            o.insert("data_format".into(), Value::String("channels_first".into()));
        }
        config
    }
    fn inputs(&self) -> Inputs {
        self.inner.inputs()
    }
    fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        let last: Vec<Vec<usize>> = inputs.iter().map(|s| shape_to_last(s)).collect();
        let out = self.inner.output_shape(name, &last)?;
        let rank = inputs.first().map_or(0, Vec::len);
        Ok(if spatial_output(rank, out.len()) { shape_to_first(&out) } else { out })
    }
    fn weight_specs(&self, input: &[usize]) -> Vec<WeightSpec> {
        self.inner.weight_specs(&shape_to_last(input))
    }
    fn forward(&self, name: &str, weights: &[Tensor], xs: &[Tensor], ctx: &mut ForwardContext) -> Result<(LayerOutput, Cache)> {
        let last = xs.iter().map(to_last).collect::<Result<Vec<_>>>()?;
        let (out, cache) = self.inner.forward(name, weights, &last, ctx)?;
        let rank = xs.first().map_or(0, Tensor::rank);
        if !spatial_output(rank, out.value.rank()) {
            return Ok((out, cache));
        }
        let logits = match out.logits {
            Some((z, activation)) => Some((to_first(&z)?, activation)),
            None => None,
        };
        Ok((LayerOutput { value: to_first(&out.value)?, logits }, cache))
    }
    fn backward(
        &self,
        name: &str,
        weights: &[Tensor],
        transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: OutputGrad,
        need_input_grad: bool,
    ) -> Result<LayerGrads> {
        let grad = match grad {
            OutputGrad::Value(dy) => OutputGrad::Value(to_last(&dy)?),
            OutputGrad::Logits(dz) => OutputGrad::Logits(to_last(&dz)?),
        };
        let mut grads = self.inner.backward(name, weights, transposed, cache, grad, need_input_grad)?;
        grads.input = grads.input.as_ref().map(to_first).transpose()?;
        grads.more_inputs = grads.more_inputs.iter().map(to_first).collect::<Result<Vec<_>>>()?;
        Ok(grads)
    }
    fn state_updates(&self, cache: &Cache) -> Vec<(usize, Tensor)> {
        self.inner.state_updates(cache)
    }
    fn transposed_weights(&self) -> &'static [usize] {
        self.inner.transposed_weights()
    }
    fn weight_regularizers(&self) -> Vec<Option<crate::regularizer::Regularizer>> {
        self.inner.weight_regularizers()
    }
    fn weight_constraints(&self) -> Vec<Option<crate::constraint::Constraint>> {
        self.inner.weight_constraints()
    }
    fn activity_regularizer(&self) -> Option<crate::regularizer::Regularizer> {
        self.inner.activity_regularizer()
    }
    fn weight_losses(&self) -> &[crate::trace::Trace] {
        self.inner.weight_losses()
    }
    fn compute_mask(&self, xs: &[Tensor], mask: Option<&Tensor>) -> Result<Option<Tensor>> {
        self.inner.compute_mask(xs, mask)
    }
    fn makes_mask(&self) -> bool {
        self.inner.makes_mask()
    }
    fn reset_states(&self) {
        self.inner.reset_states()
    }
    fn is_stateful(&self) -> bool {
        self.inner.is_stateful()
    }
    fn working_elements_per_row(&self, input: &[usize]) -> Option<u64> {
        // The channels-last copy of the input comes on top of the layer's own.
        let copy = crate::memory::elements(input)?;
        self.inner.working_elements_per_row(&shape_to_last(input)).map_or(Some(copy), |w| w.checked_add(copy))
    }
    fn more_output_shapes(&self, inputs: &[Vec<usize>]) -> Vec<Vec<usize>> {
        self.inner.more_output_shapes(inputs)
    }
    fn more_outputs(&self, cache: &Cache) -> Result<Vec<Tensor>> {
        self.inner.more_outputs(cache)
    }
    fn backward_more(
        &self,
        name: &str,
        weights: &[Tensor],
        transposed: &[Option<Tensor>],
        cache: &Cache,
        grad: Option<OutputGrad>,
        more: Vec<Option<Tensor>>,
        need_input_grad: bool,
    ) -> Result<LayerGrads> {
        self.inner.backward_more(name, weights, transposed, cache, grad, more, need_input_grad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_batches_move_the_channels_axis_and_back() {
        assert_eq!(shape_to_last(&[3, 5, 7]), vec![5, 7, 3]);
        assert_eq!(shape_to_first(&[5, 7, 3]), vec![3, 5, 7]);
        assert_eq!(shape_to_last(&[4]), vec![4]);
        let x = Tensor::arange(0f32, 24.0, &candle_core::Device::Cpu).unwrap().reshape((1, 2, 3, 4)).unwrap();
        let last = to_last(&x).unwrap();
        assert_eq!(last.dims(), &[1, 3, 4, 2]);
        // x[0, c, h, w] == last[0, h, w, c]
        assert_eq!(last.get(0).unwrap().get(1).unwrap().get(2).unwrap().get(1).unwrap().to_scalar::<f32>().unwrap(), 12.0 + 4.0 + 2.0);
        assert_eq!(to_first(&last).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), x.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
}
