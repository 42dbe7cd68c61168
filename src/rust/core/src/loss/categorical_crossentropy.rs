//! `categorical_crossentropy` and `sparse_categorical_crossentropy` (the same loss, its
//! targets given as class indices, made one-hot on the host).
use super::{in_clip_range, per_element_mean, LossFunction, EPSILON};
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::layers::OutputGrad;
use crate::model::ModelOutput;
use crate::tensor::HostTensor;
use candle_core::{Tensor, D};

pub struct CategoricalCrossentropy;

/// Sample positions per row: 1 for (batch, classes) outputs, the steps of a sequence output.
fn positions(p: &Tensor) -> Result<f64> {
    let b = p.dim(0)?.max(1);
    let classes = p.dim(D::Minus1)?.max(1);
    Ok((p.elem_count() / b / classes) as f64)
}

impl LossFunction for CategoricalCrossentropy {
    fn name(&self) -> &str {
        "categorical_crossentropy"
    }

    fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        let log_p = match &out.logits {
            Some((z, Activation::Softmax)) => candle_nn::ops::log_softmax(z, D::Minus1)?,
            _ => {
                let p = out.value.broadcast_div(&out.value.sum_keepdim(D::Minus1)?)?;
                p.clamp(EPSILON as f32, 1.0 - EPSILON as f32)?.log()?
            }
        };
        let l = y.mul(&log_p)?.sum(D::Minus1)?.neg()?;
        per_element_mean(&l.unsqueeze(D::Minus1)?)
    }

    fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        let p = &out.value;
        let n = total_rows as f64 * positions(p)?;
        Ok(match &out.logits {
            // d/dz of -sum(y * log_softmax(z)) = softmax(z) * sum(y) - y
            Some((_, Activation::Softmax)) => {
                let total = y.sum_keepdim(D::Minus1)?;
                OutputGrad::Logits(((p.broadcast_mul(&total)? - y)? / n)?)
            }
            _ => {
                // Through q = p / sum(p) and the clip: dL/dq = -y / q inside the clip range.
                let s = p.sum_keepdim(D::Minus1)?;
                let q = p.broadcast_div(&s)?;
                let qc = q.clamp(EPSILON as f32, (1.0 - EPSILON) as f32)?;
                let dq = y.div(&qc)?.neg()?.mul(&in_clip_range(&q)?)?;
                let dot = dq.mul(&q)?.sum_keepdim(D::Minus1)?;
                OutputGrad::Value((dq.broadcast_sub(&dot)?.broadcast_div(&s)? / n)?)
            }
        })
    }
}

pub struct SparseCategoricalCrossentropy;

impl LossFunction for SparseCategoricalCrossentropy {
    fn name(&self) -> &str {
        "sparse_categorical_crossentropy"
    }

    /// One class index per sample (per position of a sequence output) becomes a one-hot row.
    fn prepare_targets(&self, y: &HostTensor, output_shape: &[usize]) -> Result<HostTensor> {
        let classes = output_shape.last().copied().unwrap_or(1);
        let positions: usize = output_shape[..output_shape.len().saturating_sub(1)].iter().product();
        if y.row_len() != positions {
            return Err(Error::Value(format!(
                "sparse_categorical_crossentropy needs `y` as one class index per sample{} (a vector), got {} values per sample",
                if positions > 1 { format!(" and step ({})", positions) } else { String::new() },
                y.row_len()
            )));
        }
        let mut data = vec![0f32; y.rows() * positions * classes];
        for (i, v) in y.data.iter().enumerate() {
            if *v < 0.0 || v.fract() != 0.0 || *v as usize >= classes {
                return Err(Error::Value(format!(
                    "`y` holds class index {} but the model has {} outputs: class indices must be integers in 0..{}",
                    v,
                    classes,
                    classes - 1
                )));
            }
            data[i * classes + *v as usize] = 1.0;
        }
        let mut shape = vec![y.rows()];
        shape.extend_from_slice(output_shape);
        HostTensor::new(shape, data)
    }

    fn per_sample(&self, out: &ModelOutput, y: &Tensor) -> Result<Tensor> {
        CategoricalCrossentropy.per_sample(out, y)
    }

    fn gradient(&self, out: &ModelOutput, y: &Tensor, total_rows: usize) -> Result<OutputGrad> {
        CategoricalCrossentropy.gradient(out, y, total_rows)
    }
}
