//! Keras metrics, as per-batch sums so that replicas' parts add up and epochs
//! average them weighted by sample count (Keras's `Mean` metric semantics).
use crate::error::{Error, Result};
use crate::loss::Loss;
use candle_core::{Tensor, D};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    BinaryAccuracy,
    MeanAbsoluteError,
    MeanSquaredError,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The name the user gave ("accuracy", "acc", "mae"): the key in the history.
    pub name: String,
    pub kind: MetricKind,
}

pub const METRIC_NAMES: &[&str] =
    &["accuracy", "acc", "categorical_accuracy", "sparse_categorical_accuracy", "binary_accuracy", "mae", "mean_absolute_error", "mse", "mean_squared_error"];

impl Metric {
    /// Resolves a metric name as tf.keras's `compile` does: "accuracy" picks binary,
    /// sparse or categorical accuracy from the loss and the output width.
    pub fn resolve(name: &str, loss: Loss, output_units: usize) -> Result<Self> {
        let kind = match name {
            "accuracy" | "acc" => {
                if output_units == 1 || loss == Loss::BinaryCrossentropy {
                    MetricKind::BinaryAccuracy
                } else if loss == Loss::SparseCategoricalCrossentropy {
                    MetricKind::SparseCategoricalAccuracy
                } else {
                    MetricKind::CategoricalAccuracy
                }
            }
            "categorical_accuracy" => MetricKind::CategoricalAccuracy,
            "sparse_categorical_accuracy" => MetricKind::SparseCategoricalAccuracy,
            "binary_accuracy" => MetricKind::BinaryAccuracy,
            "mae" | "mean_absolute_error" => MetricKind::MeanAbsoluteError,
            "mse" | "mean_squared_error" => MetricKind::MeanSquaredError,
            other => return Err(Error::Value(format!("unknown metric \"{}\": expected one of {}", other, METRIC_NAMES.join(", ")))),
        };
        Ok(Self { name: name.to_string(), kind })
    }

    /// Sum over the batch of the per-sample metric. `y` is as prepared by the loss
    /// (sparse targets are one-hot by then, so sparse accuracy is categorical accuracy).
    pub fn batch_sum(&self, pred: &Tensor, y: &Tensor) -> Result<f64> {
        let pred = pred.detach();
        let b = pred.dim(0)?;
        let flat = |t: &Tensor| -> Result<Tensor> { Ok(t.reshape((b, t.elem_count() / b.max(1)))?) };
        let (p, t) = (flat(&pred)?, flat(y)?);
        let per_sample = match self.kind {
            MetricKind::CategoricalAccuracy | MetricKind::SparseCategoricalAccuracy => {
                p.argmax(D::Minus1)?.eq(&t.argmax(D::Minus1)?)?.to_dtype(candle_core::DType::F32)?
            }
            MetricKind::BinaryAccuracy => {
                let hit = p.gt(0.5f32)?.to_dtype(candle_core::DType::F32)?.eq(&t)?;
                hit.to_dtype(candle_core::DType::F32)?.mean(D::Minus1)?
            }
            MetricKind::MeanAbsoluteError => p.sub(&t)?.abs()?.mean(D::Minus1)?,
            MetricKind::MeanSquaredError => p.sub(&t)?.sqr()?.mean(D::Minus1)?,
        };
        Ok(per_sample.to_dtype(candle_core::DType::F64)?.sum_all()?.to_scalar::<f64>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn accuracy_resolution_and_values() {
        let dev = Device::Cpu;
        let m = Metric::resolve("accuracy", Loss::CategoricalCrossentropy, 3).unwrap();
        assert_eq!(m.kind, MetricKind::CategoricalAccuracy);
        let p = Tensor::new(&[[0.1f32, 0.8, 0.1], [0.6, 0.3, 0.1]], &dev).unwrap();
        let y = Tensor::new(&[[0.0f32, 1.0, 0.0], [0.0, 0.0, 1.0]], &dev).unwrap();
        assert_eq!(m.batch_sum(&p, &y).unwrap(), 1.0);
        let b = Metric::resolve("acc", Loss::BinaryCrossentropy, 1).unwrap();
        let p = Tensor::new(&[[0.7f32], [0.2], [0.4]], &dev).unwrap();
        let y = Tensor::new(&[[1.0f32], [0.0], [1.0]], &dev).unwrap();
        assert_eq!(b.batch_sum(&p, &y).unwrap(), 2.0);
        assert!(Metric::resolve("auc_typo", Loss::MeanSquaredError, 1).is_err());
    }
}
