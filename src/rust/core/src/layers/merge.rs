//! Merge layers of the functional API: Add, Multiply, Concatenate (last axis).
use super::{Cache, LayerGrads, LayerOutput, OutputGrad};
use crate::error::{Error, Result};
use crate::model::join_dims;
use candle_core::{Tensor, D};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    Add,
    Multiply,
    Concatenate,
}

impl Merge {
    pub fn class_name(&self) -> &'static str {
        match self {
            Merge::Add => "Add",
            Merge::Multiply => "Multiply",
            Merge::Concatenate => "Concatenate",
        }
    }

    pub fn output_shape(&self, name: &str, inputs: &[Vec<usize>]) -> Result<Vec<usize>> {
        if inputs.len() < 2 {
            return Err(Error::Value(format!("layer \"{}\" ({}) needs at least 2 inputs, got {}", name, self.class_name(), inputs.len())));
        }
        let first = &inputs[0];
        let shown = || inputs.iter().map(|s| format!("({})", join_dims(s))).collect::<Vec<_>>().join(", ");
        match self {
            Merge::Add | Merge::Multiply => {
                if inputs.iter().any(|s| s != first) {
                    return Err(Error::Value(format!("layer \"{}\" ({}) needs inputs of one shape, got {}", name, self.class_name(), shown())));
                }
                Ok(first.clone())
            }
            Merge::Concatenate => {
                let rank = first.len();
                if rank == 0 || inputs.iter().any(|s| s.len() != rank || s[..rank - 1] != first[..rank - 1]) {
                    return Err(Error::Value(format!(
                        "layer \"{}\" (Concatenate) needs inputs that differ only in the last axis, got {}",
                        name,
                        shown()
                    )));
                }
                let mut out = first.clone();
                out[rank - 1] = inputs.iter().map(|s| s[rank - 1]).sum();
                Ok(out)
            }
        }
    }

    pub fn forward(&self, xs: &[Tensor]) -> Result<(LayerOutput, Cache)> {
        let value = match self {
            Merge::Add => xs[1..].iter().try_fold(xs[0].clone(), |acc, x| acc + x)?,
            Merge::Multiply => xs[1..].iter().try_fold(xs[0].clone(), |acc, x| acc * x)?,
            Merge::Concatenate => Tensor::cat(xs, xs[0].rank() - 1)?,
        };
        Ok((LayerOutput::plain(value), Cache::Merge { inputs: xs.to_vec() }))
    }

    pub fn backward(&self, inputs: &[Tensor], grad: OutputGrad) -> Result<LayerGrads> {
        let dy = match grad {
            OutputGrad::Value(dy) => dy,
            OutputGrad::Logits(_) => return Err(Error::State(format!("{} cannot end a model whose loss uses logits", self.class_name()))),
        };
        let grads: Vec<Tensor> = match self {
            Merge::Add => inputs.iter().map(|_| dy.clone()).collect(),
            Merge::Multiply => (0..inputs.len())
                .map(|i| {
                    inputs.iter().enumerate().filter(|(j, _)| *j != i).try_fold(dy.clone(), |acc, (_, x)| acc.mul(x))
                })
                .collect::<candle_core::Result<_>>()?,
            Merge::Concatenate => {
                let mut start = 0;
                inputs
                    .iter()
                    .map(|x| {
                        let width = x.dim(D::Minus1)?;
                        let g = dy.narrow(x.rank() - 1, start, width)?.contiguous()?;
                        start += width;
                        Ok(g)
                    })
                    .collect::<candle_core::Result<_>>()?
            }
        };
        let mut grads = grads.into_iter();
        Ok(LayerGrads { input: grads.next(), weights: Vec::new(), more_inputs: grads.collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::check_backward;
    use candle_core::Device;

    #[test]
    fn gradients_match_finite_differences() {
        let other = Tensor::randn(0f32, 1.0, (2, 3), &Device::Cpu).unwrap();
        for merge in [Merge::Add, Merge::Multiply, Merge::Concatenate] {
            // Gradient for the first input and for the second.
            check_backward(
                &[2, 3],
                |x| Ok(merge.forward(&[x.clone(), other.clone()])?.0.value),
                |x, dy| Ok(merge.backward(&[x.clone(), other.clone()], OutputGrad::Value(dy.clone()))?.input.unwrap()),
                1e-2,
            );
            check_backward(
                &[2, 3],
                |x| Ok(merge.forward(&[other.clone(), x.clone()])?.0.value),
                |x, dy| Ok(merge.backward(&[other.clone(), x.clone()], OutputGrad::Value(dy.clone()))?.more_inputs[0].clone()),
                1e-2,
            );
        }
        assert_eq!(Merge::Concatenate.output_shape("c", &[vec![4, 2], vec![4, 3]]).unwrap(), vec![4, 5]);
        assert!(Merge::Add.output_shape("a", &[vec![4, 2], vec![4, 3]]).is_err());
    }
}
