//! Metrics over a whole epoch (or evaluation), from confusion counts summed over batches and
//! replicas, as tf.keras's stateful metrics: precision and recall at threshold 0.5, and the
//! area under the ROC curve from 200 thresholds with tf.keras's interpolation. Every value
//! of the output counts (a model with several sigmoid units pools them); a target counts as
//! positive when it is not 0, a prediction when it is above the threshold.
use super::StatefulMetricFunction;
use crate::error::Result;
use candle_core::Tensor;

/// Targets and predictions as flat f32 values.
fn flat(pred: &Tensor, y: &Tensor) -> Result<(Vec<f32>, Vec<f32>)> {
    Ok((pred.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1()?, y.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1()?))
}

/// (true positives, false positives, false negatives) at `threshold`.
fn counts(pred: &[f32], y: &[f32], threshold: f32) -> [f64; 3] {
    let mut c = [0f64; 3];
    for (p, t) in pred.iter().zip(y) {
        match (*p > threshold, *t != 0.0) {
            (true, true) => c[0] += 1.0,
            (true, false) => c[1] += 1.0,
            (false, true) => c[2] += 1.0,
            (false, false) => {}
        }
    }
    c
}

/// tf's divide_no_nan.
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

pub struct Precision;

impl StatefulMetricFunction for Precision {
    fn name(&self) -> &'static str {
        "precision"
    }
    fn accumulators(&self) -> usize {
        3
    }
    fn accumulate(&self, pred: &Tensor, y: &Tensor) -> Result<Vec<f64>> {
        let (p, t) = flat(pred, y)?;
        Ok(counts(&p, &t, 0.5).to_vec())
    }
    fn result(&self, sums: &[f64]) -> f64 {
        ratio(sums[0], sums[0] + sums[1])
    }
}

pub struct Recall;

impl StatefulMetricFunction for Recall {
    fn name(&self) -> &'static str {
        "recall"
    }
    fn accumulators(&self) -> usize {
        3
    }
    fn accumulate(&self, pred: &Tensor, y: &Tensor) -> Result<Vec<f64>> {
        Precision.accumulate(pred, y)
    }
    fn result(&self, sums: &[f64]) -> f64 {
        ratio(sums[0], sums[0] + sums[2])
    }
}

/// tf.keras's AUC defaults: 200 thresholds, ROC curve, interpolated sums.
const THRESHOLDS: usize = 200;

/// tf.keras's thresholds: i / 199 for i in 1..=198, with -1e-7 and 1 + 1e-7 at the ends.
fn auc_thresholds() -> Vec<f32> {
    let mut t = Vec::with_capacity(THRESHOLDS);
    t.push(-1e-7);
    t.extend((1..THRESHOLDS - 1).map(|i| (i as f64 / (THRESHOLDS - 1) as f64) as f32));
    t.push(1.0 + 1e-7);
    t
}

pub struct Auc;

impl StatefulMetricFunction for Auc {
    fn name(&self) -> &'static str {
        "auc"
    }
    /// True positives, false positives, false negatives and true negatives per threshold.
    fn accumulators(&self) -> usize {
        4 * THRESHOLDS
    }
    fn accumulate(&self, pred: &Tensor, y: &Tensor) -> Result<Vec<f64>> {
        let (p, t) = flat(pred, y)?;
        let positives = t.iter().filter(|v| **v != 0.0).count() as f64;
        let negatives = t.len() as f64 - positives;
        let mut out = vec![0f64; 4 * THRESHOLDS];
        for (i, threshold) in auc_thresholds().into_iter().enumerate() {
            let [tp, fp, fn_] = counts(&p, &t, threshold);
            out[i] = tp;
            out[THRESHOLDS + i] = fp;
            out[2 * THRESHOLDS + i] = fn_;
            out[3 * THRESHOLDS + i] = negatives - fp;
        }
        Ok(out)
    }
    fn result(&self, sums: &[f64]) -> f64 {
        let (tp, fp, fn_, tn) = (&sums[..THRESHOLDS], &sums[THRESHOLDS..2 * THRESHOLDS], &sums[2 * THRESHOLDS..3 * THRESHOLDS], &sums[3 * THRESHOLDS..]);
        let recall: Vec<f64> = (0..THRESHOLDS).map(|i| ratio(tp[i], tp[i] + fn_[i])).collect();
        let fp_rate: Vec<f64> = (0..THRESHOLDS).map(|i| ratio(fp[i], fp[i] + tn[i])).collect();
        (0..THRESHOLDS - 1).map(|i| (fp_rate[i] - fp_rate[i + 1]) * (recall[i] + recall[i + 1]) / 2.0).sum()
    }
}
