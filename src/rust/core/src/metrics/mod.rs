//! Keras metrics, as per-batch sums so that replicas' parts add up and an epoch's value comes
//! from its totals (Keras's `Mean` metric: the sum of the values over the count of values;
//! on an output with a mask, values of masked time steps are left out of both). Each metric is one file
//! implementing [`MetricFunction`] plus one line in [`METRICS`]; every loss is a metric
//! too (`metrics = "mse"`), computed from the output's values as Keras does. Metrics that
//! are not means of per-sample values (precision, recall, AUC) implement
//! [`StatefulMetricFunction`]: each batch contributes sums (confusion counts), and the metric
//! is computed from the sums of an epoch or an evaluation.
mod accuracy;
mod confusion;

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

/// A metric computed from sums over all the batches of an epoch or an evaluation.
pub trait StatefulMetricFunction: Send + Sync + 'static {
    /// Keras's name.
    fn name(&self) -> &'static str;
    /// How many sums a batch contributes.
    fn accumulators(&self) -> usize;
    /// A batch's sums (they add up over batches and replicas).
    fn accumulate(&self, pred: &Tensor, y: &Tensor) -> Result<Vec<f64>>;
    /// The metric from the summed sums.
    fn result(&self, sums: &[f64]) -> f64;
}

/// What a registered metric is.
#[derive(Clone, Copy)]
pub enum Kind {
    Mean(&'static dyn MetricFunction),
    Stateful(&'static dyn StatefulMetricFunction),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Mean(f) => f.name(),
            Kind::Stateful(f) => f.name(),
        }
    }
}

/// A metric's entry: the metric and the other names Keras knows it by.
pub struct Registration {
    pub metric: Kind,
    pub aliases: &'static [&'static str],
}

impl Registration {
    const fn of(metric: &'static dyn MetricFunction, aliases: &'static [&'static str]) -> Self {
        Self { metric: Kind::Mean(metric), aliases }
    }
    const fn stateful(metric: &'static dyn StatefulMetricFunction, aliases: &'static [&'static str]) -> Self {
        Self { metric: Kind::Stateful(metric), aliases }
    }
}

/// One line per metric (losses are found among the losses).
pub static METRICS: &[Registration] = &[
    Registration::of(&accuracy::CategoricalAccuracy, &[]),
    Registration::of(&accuracy::SparseCategoricalAccuracy, &[]),
    Registration::of(&accuracy::BinaryAccuracy, &[]),
    Registration::of(&accuracy::TopKCategoricalAccuracy, &["top_k_accuracy"]),
    Registration::of(&accuracy::SparseTopKCategoricalAccuracy, &[]),
    Registration::stateful(&confusion::Precision, &["Precision"]),
    Registration::stateful(&confusion::Recall, &["Recall"]),
    Registration::stateful(&confusion::Auc, &["AUC"]),
];

#[derive(Clone)]
enum Computes {
    Function(&'static dyn MetricFunction),
    Stateful(&'static dyn StatefulMetricFunction),
    Loss(Loss),
    /// A metric written in R, traced for each model output's shape (output k's is entry k).
    PerOutput(Vec<Loss>),
}

/// A metric as compile() holds it, under the name the user gave.
#[derive(Clone)]
pub struct Metric {
    /// The name the user gave ("accuracy", "acc", "mae"): the key in the history.
    pub name: String,
    computes: Computes,
}

fn find_function(name: &str) -> Option<Computes> {
    METRICS.iter().find(|r| r.metric.name() == name || r.aliases.contains(&name)).map(|r| match r.metric {
        Kind::Mean(f) => Computes::Function(f),
        Kind::Stateful(f) => Computes::Stateful(f),
    })
}

impl Metric {
    /// Resolves a metric name as tf.keras's `compile` does: "accuracy" (or "acc") picks
    /// binary, sparse or categorical accuracy from the loss and the output width; a loss's
    /// name gives that loss as a metric.
    pub fn resolve(name: &str, loss: &Loss, last_dim: usize) -> Result<Self> {
        let computes = match name {
            // Keras's choice: binary where the output's last size is 1 or the loss is binary.
            "accuracy" | "acc" => find_function(if last_dim == 1 || loss.name() == "binary_crossentropy" {
                "binary_accuracy"
            } else if loss.name() == "sparse_categorical_crossentropy" {
                "sparse_categorical_accuracy"
            } else {
                "categorical_accuracy"
            })
            .ok_or_else(|| Error::State("accuracy metrics are not registered".into()))?,
            other => match (find_function(other), Loss::find(other)) {
                (Some(f), _) => f,
                (None, Some(l)) => Computes::Loss(l),
                (None, None) => return Err(Error::Value(format!("unknown metric \"{}\": expected one of {}", other, Self::names().join(", ")))),
            },
        };
        Ok(Self { name: name.to_string(), computes })
    }

    /// This metric for an output with `loss` and last size `last_dim` ("accuracy" depends on
    /// them; a custom metric does not).
    pub fn resolved_for(&self, output: usize, loss: &Loss, last_dim: usize) -> Result<Self> {
        match &self.computes {
            Computes::PerOutput(fs) => {
                let f = fs.get(output).ok_or_else(|| Error::Value(format!("the metric \"{}\" was not traced for output {}", self.name, output + 1)))?;
                Ok(Self { name: self.name.clone(), computes: Computes::Loss(f.clone()) })
            }
            _ => Self::resolve(&self.name, loss, last_dim),
        }
    }

    /// Every name a metric can be given by.
    pub fn names() -> Vec<&'static str> {
        let mut names = vec!["accuracy", "acc"];
        names.extend(METRICS.iter().flat_map(|r| std::iter::once(r.metric.name()).chain(r.aliases.iter().copied())));
        names.extend(Loss::names());
        names
    }

    /// A metric written in R (`custom_metric()`): the mean of its traced function, which
    /// takes (y_true, y_pred) as a loss does; one trace per model output (they may differ
    /// in shape).
    pub fn custom(name: &str, per_output: Vec<Loss>) -> Result<Self> {
        if per_output.is_empty() {
            return Err(Error::Value(format!("the metric \"{}\" has no traced function", name)));
        }
        Ok(Self { name: name.to_string(), computes: Computes::PerOutput(per_output) })
    }

    /// Keras's name of what this metric computes ("categorical_accuracy" for "acc").
    pub fn keras_name(&self) -> &str {
        match &self.computes {
            Computes::Function(f) => f.name(),
            Computes::Stateful(f) => f.name(),
            Computes::Loss(l) => l.name(),
            Computes::PerOutput(fs) => fs[0].name(),
        }
    }

    /// Whether the metric comes from sums over a whole epoch rather than a mean of samples.
    pub fn is_stateful(&self) -> bool {
        matches!(self.computes, Computes::Stateful(_))
    }

    /// How many sums a batch contributes ([`Self::batch_sums`]): a mean's are the sum of its
    /// values and their count.
    pub fn accumulators(&self) -> usize {
        match &self.computes {
            Computes::Stateful(f) => f.accumulators(),
            _ => 2,
        }
    }

    /// The metric of each sample, shape (batch,); not defined for stateful metrics.
    pub fn per_sample(&self, pred: &Tensor, y: &Tensor) -> Result<Tensor> {
        let pred = pred.detach();
        match &self.computes {
            Computes::Function(f) => f.per_sample(&pred, y),
            Computes::Loss(l) => l.per_sample(&ModelOutput::plain(pred), y),
            Computes::PerOutput(fs) => fs[0].per_sample(&ModelOutput::plain(pred), y),
            Computes::Stateful(f) => Err(Error::Value(format!("\"{}\" is computed over all samples together, not per sample", f.name()))),
        }
    }

    /// A batch's sums: the sum of the per-sample metric and the number of samples, or a
    /// stateful metric's counts. With a `mask` (batch, time) on the output, the metric is
    /// taken per time step and only unmasked steps count (Keras weights its metrics by the
    /// output's mask; stateful metrics here ignore it).
    pub fn batch_sums(&self, pred: &Tensor, y: &Tensor, mask: Option<&Tensor>) -> Result<Vec<f64>> {
        let sum = |t: &Tensor| -> Result<f64> { Ok(t.to_dtype(candle_core::DType::F64)?.sum_all()?.to_scalar::<f64>()?) };
        match (&self.computes, crate::loss::step_mask(pred, mask)) {
            (Computes::Stateful(f), _) => f.accumulate(&pred.detach(), y),
            (_, Some(mask)) => {
                let mask = mask.flatten_all()?;
                let values = self.per_sample(&crate::loss::steps_as_rows(pred)?, &crate::loss::steps_as_rows(y)?)?;
                Ok(vec![sum(&values.mul(&mask)?)?, sum(&mask)?])
            }
            (_, None) => Ok(vec![sum(&self.per_sample(pred, y)?)?, pred.dim(0)? as f64]),
        }
    }

    /// The metric from its sums: a mean's sum over its count (0 when nothing counted, as
    /// Keras's `Mean`), or the stateful metric's result.
    pub fn result(&self, sums: &[f64]) -> f64 {
        match &self.computes {
            Computes::Stateful(f) => f.result(sums),
            _ if sums[1] == 0.0 => 0.0,
            _ => sums[0] / sums[1],
        }
    }
}

/// Per-metric values from the sums of `metrics` (laid out metric after metric, each with its
/// [`Metric::accumulators`] sums).
pub fn results(metrics: &[&Metric], sums: &[f64]) -> Vec<f64> {
    let mut at = 0;
    metrics
        .iter()
        .map(|m| {
            let n = m.accumulators();
            let v = m.result(&sums[at..at + n]);
            at += n;
            v
        })
        .collect()
}

impl Metric {
    /// Each sample's metric `name` for targets `y_true` (class ids for the sparse metrics)
    /// and predictions `y_pred`: the metric functions R calls directly.
    pub fn values(name: &str, y_true: &HostTensor, y_pred: &HostTensor) -> Result<HostTensor> {
        // Sparse metrics read class ids, which the sparse loss makes one-hot.
        let loss = Loss::parse(if name.starts_with("sparse_") { "sparse_categorical_crossentropy" } else { "mean_squared_error" })?;
        let (y, p) = crate::loss::operands(&loss, y_true, y_pred)?;
        let metric = Metric::resolve(name, &loss, y_pred.shape.last().copied().unwrap_or(1))?;
        if metric.is_stateful() {
            // One value over all the samples given (Keras's metric objects, called once).
            return HostTensor::new(vec![1], vec![metric.result(&metric.batch_sums(&p, &y, None)?) as f32]);
        }
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
