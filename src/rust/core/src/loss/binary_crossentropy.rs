//! `binary_crossentropy`: from the logits when the output is a sigmoid, else from clipped
//! probabilities with Keras's `+ epsilon` inside the logs.
use super::{in_clip_range, per_element_mean, values_per_row, LossFunction, EPSILON};
use crate::activation::Activation;
use crate::error::Result;
use crate::layers::OutputGrad;
use crate::model::ModelOutput;
use candle_core::Tensor;

pub struct BinaryCrossentropy;

impl LossFunction for BinaryCrossentropy {
    fn name(&self) -> &str {
        "binary_crossentropy"
    }

    fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        let l = match &out.logits {
            // sigmoid_cross_entropy_with_logits: max(z, 0) - z*y + log(1 + exp(-|z|))
            Some((z, Activation::Sigmoid)) => ((z.relu()? - z.mul(y)?)? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?,
            _ => {
                let p = out.value.clamp(EPSILON as f32, 1.0 - EPSILON as f32)?;
                let pos = y.mul(&(p.clone() + EPSILON)?.log()?)?;
                let neg = y.affine(-1.0, 1.0)?.mul(&(p.affine(-1.0, 1.0)? + EPSILON)?.log()?)?;
                (pos + neg)?.neg()?
            }
        };
        per_element_mean(&l)
    }

    fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        let p = &out.value;
        let n = total_rows as f64 * values_per_row(p)?;
        Ok(match &out.logits {
            Some((_, Activation::Sigmoid)) => OutputGrad::Logits(((p - y)? / n)?),
            _ => {
                let pc = p.clamp(EPSILON as f32, (1.0 - EPSILON) as f32)?;
                let pos = y.div(&(pc.clone() + EPSILON)?)?;
                let neg = y.affine(-1.0, 1.0)?.div(&(pc.affine(-1.0, 1.0)? + EPSILON)?)?;
                let d = (neg - pos)?.mul(&in_clip_range(p)?)?;
                OutputGrad::Value((d / n)?)
            }
        })
    }
}
