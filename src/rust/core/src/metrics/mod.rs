//! Keras metrics, as per-batch sums so that replicas' parts add up and epochs average them
//! weighted by sample count (Keras's `Mean` metric semantics). Each metric is one file
//! implementing [`MetricFunction`] plus one line in [`METRICS`]; every loss is a metric
//! too (`metrics = "mse"`), computed from the output's values as Keras does.
mod accuracy;

use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::model::ModelOutput;
use crate::tensor::HostTensor;
use candle_core::Tensor;

/// What a metric computes for each sample. `y` is as the loss prepared it (sparse
/// targets are one-hot by then).
pub trait MetricFunction: Send + Sync + 'static {
    /// Keras's name.
    fn name(&self) -> &'static str;

    /// The metric of each sample, shape (batch,).
    fn per_sample(&self, pred: &Tensor, y: &Tensor) -> Result<Tensor>;
}

/// A metric's entry: the metric and the other names Keras knows it by.
pub struct Registration {
    pub metric: &'static dyn MetricFunction,
    pub aliases: &'static [&'static str],
}

impl Registration {
    const fn of(metric: &'static dyn MetricFunction, aliases: &'static [&'static str]) -> Self {
        Self { metric, aliases }
    }
}

/// One line per metric (losses are found among the losses).
pub static METRICS: &[Registration] = &[
    Registration::of(&accuracy::CategoricalAccuracy, &[]),
    Registration::of(&accuracy::SparseCategoricalAccuracy, &[]),
    Registration::of(&accuracy::BinaryAccuracy, &[]),
    Registration::of(&accuracy::TopKCategoricalAccuracy, &["top_k_accuracy"]),
    Registration::of(&accuracy::SparseTopKCategoricalAccuracy, &[]),
];

#[derive(Clone, Copy)]
enum Computes {
    Function(&'static dyn MetricFunction),
    Loss(Loss),
}

/// A metric as compile() holds it, under the name the user gave.
#[derive(Clone)]
pub struct Metric {
    /// The name the user gave ("accuracy", "acc", "mae"): the key in the history.
    pub name: String,
    computes: Computes,
}

fn find_function(name: &str) -> Option<&'static dyn MetricFunction> {
    METRICS.iter().find(|r| r.metric.name() == name || r.aliases.contains(&name)).map(|r| r.metric)
}

impl Metric {
    /// Resolves a metric name as tf.keras's `compile` does: "accuracy" (or "acc") picks
    /// binary, sparse or categorical accuracy from the loss and the output width; a loss's
    /// name gives that loss as a metric.
    pub fn resolve(name: &str, loss: Loss, output_units: usize) -> Result<Self> {
        let computes = match name {
            "accuracy" | "acc" => Computes::Function(
                find_function(if output_units == 1 || loss.name() == "binary_crossentropy" {
                    "binary_accuracy"
                } else if loss.name() == "sparse_categorical_crossentropy" {
                    "sparse_categorical_accuracy"
                } else {
                    "categorical_accuracy"
                })
                .ok_or_else(|| Error::State("accuracy metrics are not registered".into()))?,
            ),
            other => match (find_function(other), Loss::find(other)) {
                (Some(f), _) => Computes::Function(f),
                (None, Some(l)) => Computes::Loss(l),
                (None, None) => return Err(Error::Value(format!("unknown metric \"{}\": expected one of {}", other, Self::names().join(", ")))),
            },
        };
        Ok(Self { name: name.to_string(), computes })
    }

    /// Every name a metric can be given by.
    pub fn names() -> Vec<&'static str> {
        let mut names = vec!["accuracy", "acc"];
        names.extend(METRICS.iter().flat_map(|r| std::iter::once(r.metric.name()).chain(r.aliases.iter().copied())));
        names.extend(Loss::names());
        names
    }

    /// Keras's name of what this metric computes ("categorical_accuracy" for "acc").
    pub fn keras_name(&self) -> &'static str {
        match self.computes {
            Computes::Function(f) => f.name(),
            Computes::Loss(l) => l.name(),
        }
    }

    /// The metric of each sample, shape (batch,).
    pub fn per_sample(&self, pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        let pred = pred.detach();
        match self.computes {
            Computes::Function(f) => f.per_sample(&pred, y),
            Computes::Loss(l) => l.per_sample(&ModelOutput::plain(pred), y),
        }
    }

    /// Sum over the batch of the per-sample metric.
    pub fn batch_sum(&self, pred: &Tensor, y: &Tensor) -> Result<f64> {
        Ok(self.per_sample(pred, y)?.to_dtype(candle_core::DType::F64)?.sum_all()?.to_scalar::<f64>()?)
    }
}

impl Metric {
    /// Each sample's metric `name` for targets `y_true` (class ids for the sparse metrics)
    /// and predictions `y_pred`: the metric functions R calls directly.
    pub fn values(name: &str, y_true: &HostTensor, y_pred: &HostTensor) -> Result<HostTensor> {
        // Sparse metrics read class ids, which the sparse loss makes one-hot.
        let loss = Loss::parse(if name.starts_with("sparse_") { "sparse_categorical_crossentropy" } else { "mean_squared_error" })?;
        let (y, p) = crate::loss::operands(loss, y_true, y_pred)?;
        let metric = Metric::resolve(name, loss, y_pred.row_len())?;
        HostTensor::from_tensor(&metric.per_sample(&p, &y)?)
    }
}

impl PartialEq for Metric {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.keras_name() == other.keras_name()
    }
}

impl std::fmt::Debug for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metric({} = {})", self.name, self.keras_name())
    }
}

#[cfg(test)]
mod tests;
