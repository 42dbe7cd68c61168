//! Accuracies: categorical (the arg-max agrees), sparse categorical (the same on the
//! one-hot targets the loss prepared), binary (prediction > 0.5 agrees, averaged over a
//! sample's values).
use super::{flatten_rows, MetricFunction};
use crate::error::Result;
use candle_core::{DType, Tensor, D};

pub struct CategoricalAccuracy;

impl MetricFunction for CategoricalAccuracy {
    fn name(&self) -> &'static str {
        "categorical_accuracy"
    }

    fn per_sample(&self, pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        let (p, t) = (flatten_rows(pred)?, flatten_rows(y)?);
        Ok(p.argmax(D::Minus1)?.eq(&t.argmax(D::Minus1)?)?.to_dtype(DType::F32)?)
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
