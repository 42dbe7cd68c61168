//! Accuracies: categorical (the arg-max agrees), sparse categorical (the same on the
//! one-hot targets the loss prepared), binary (prediction > 0.5 agrees, averaged over a
//! sample's values).
use super::MetricFunction;
use crate::error::Result;
use crate::loss::flatten_rows;
use candle_core::{DType, Tensor, D};

/// A categorical metric of each sample: `hit` over the classes (last axis) at each position
/// of the sample (each time step of a sequence output), averaged over the positions, as
/// Keras's metrics are (theirs are per position, then the mean over the sample).
fn per_position(pred: &Tensor, y: &Tensor, hit: impl Fn(&Tensor, &Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let d = pred.dims();
    let (rows, classes) = (d[0], d.last().copied().unwrap_or(1));
    if d.len() <= 2 {
        return hit(&flatten_rows(pred)?, &flatten_rows(y)?);
    }
    let positions = pred.elem_count() / (rows * classes).max(1);
    let hits = hit(&pred.reshape((rows * positions, classes))?, &y.reshape((rows * positions, classes))?)?;
    Ok(hits.reshape((rows, positions))?.mean(D::Minus1)?)
}

pub struct CategoricalAccuracy;

impl MetricFunction for CategoricalAccuracy {
    fn name(&self) -> &'static str {
        "categorical_accuracy"
    }

    fn per_sample(&self, pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        per_position(pred, y, |p, t| Ok(p.argmax(D::Minus1)?.eq(&t.argmax(D::Minus1)?)?.to_dtype(DType::F32)?))
    }
}

pub struct SparseCategoricalAccuracy;

impl MetricFunction for SparseCategoricalAccuracy {
    fn name(&self) -> &'static str {
        "sparse_categorical_accuracy"
    }

    fn per_sample(&self, pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        CategoricalAccuracy.per_sample(pred, y)
    }
}

pub struct BinaryAccuracy;

impl MetricFunction for BinaryAccuracy {
    fn name(&self) -> &'static str {
        "binary_accuracy"
    }

    fn per_sample(&self, pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        let (p, t) = (flatten_rows(pred)?, flatten_rows(y)?);
        let hit = p.gt(0.5f32)?.to_dtype(DType::F32)?.eq(&t)?;
        Ok(hit.to_dtype(DType::F32)?.mean(D::Minus1)?)
    }
}

/// Whether the target class is among the `k` highest predictions (ties at the boundary
/// count as in, as TensorFlow's `in_top_k`): Keras's default k is 5.
fn in_top_k(pred: &Tensor, y: &Tensor, k: usize) -> Result<Tensor> {
    per_position(pred, y, |p, t| in_top_k_rows(p, t, k))
}

fn in_top_k_rows(p: &Tensor, t: &Tensor, k: usize) -> Result<Tensor> {
    let target = t.argmax_keepdim(D::Minus1)?;
    let at_target = p.gather(&target, D::Minus1)?;
    let above = p.broadcast_gt(&at_target)?.to_dtype(DType::F32)?.sum(D::Minus1)?;
    Ok(above.lt(k as f32)?.to_dtype(DType::F32)?)
}

pub struct TopKCategoricalAccuracy;

impl MetricFunction for TopKCategoricalAccuracy {
    fn name(&self) -> &'static str {
        "top_k_categorical_accuracy"
    }

    fn per_sample(&self, pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        in_top_k(pred, y, 5)
    }
}

pub struct SparseTopKCategoricalAccuracy;

impl MetricFunction for SparseTopKCategoricalAccuracy {
    fn name(&self) -> &'static str {
        "sparse_top_k_categorical_accuracy"
    }

    fn per_sample(&self, pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        in_top_k(pred, y, 5)
    }
}
