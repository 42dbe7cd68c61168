//! The pieces every execution strategy shares: a step's read-only inputs, one replica's
//! (or the one device's) part of a training, evaluation or prediction step, and how parts
//! combine. Every replica runs the same `*_part` function on its rows; parts add up so that
//! a step equals the template's step on the whole batch.
use super::{BatchStats, Compiled};
use crate::error::{Error, Result};
use crate::layers::{ForwardContext, OutputGrad};
use crate::loss::Loss;
use crate::metrics::Metric;
use crate::model::{weights_to_device, Architecture, Model};
use crate::parallel::{split_batch, FaultKind, WorkerContext};
use crate::tensor::{BatchSource, HostTensor};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use std::sync::Arc;

/// The read-only inputs of a step, shared with every replica.
#[derive(Clone)]
pub(super) struct StepInputs {
    pub(super) arch: Arc<Architecture>,
    pub(super) weights: Vec<Arc<Vec<f32>>>,
    /// The same weights as host tensors, when every replica reads host memory: then
    /// `weights` is empty (the step holds no reference to the master values, which the
    /// optimizer updates in place while replicas still hold this).
    pub(super) host_tensors: Option<Vec<Tensor>>,
    /// With `host_tensors`: the transposes the backward pass can use (see
    /// `Architecture::backward_with_transposes`).
    pub(super) host_transposed: Vec<Option<Tensor>>,
    pub(super) shapes: Vec<Vec<usize>>,
    pub(super) losses: Vec<Loss>,
    pub(super) loss_weights: Vec<f64>,
    /// Metrics resolved for each output (accuracy depends on the output's width and loss).
    pub(super) metrics: Vec<Vec<Metric>>,
    /// Rows in the whole batch: each part's loss is divided by it, so parts add up to the mean.
    pub(super) total_rows: usize,
    pub(super) output_shapes: Vec<Vec<usize>>,
    pub(super) seed: u64,
}

/// A replica's contribution to a step. Its gradients are on its device, or already on the
/// host when the merge happens on the CPU (each replica copies its own, concurrently; on a
/// CPU-backed device that is no copy at all).
pub(super) struct Part {
    pub(super) grads: Vec<Tensor>,
    pub(super) loss_sum: f64,
    pub(super) output_losses: Vec<f64>,
    pub(super) metric_sums: Vec<f64>,
    /// New values of non-trainable weights (batch normalization's moving statistics).
    pub(super) updates: Vec<(usize, Vec<f32>)>,
    pub(super) rows: usize,
}

impl StepInputs {
    pub(super) fn new(model: &Model, compiled: Option<&Compiled>, total_rows: usize, seed: u64) -> Result<Self> {
        let output_shapes = model.arch.output_shapes_of_outputs();
        let n = output_shapes.len();
        let (losses, loss_weights, metrics) = match compiled {
            Some(c) => {
                if c.losses.len() != n {
                    return Err(Error::Value(format!(
                        "the model has {} output{} but {} loss{} were given to compile()",
                        n,
                        if n == 1 { "" } else { "s" },
                        c.losses.len(),
                        if c.losses.len() == 1 { "" } else { "es" }
                    )));
                }
                let metrics = output_shapes
                    .iter()
                    .zip(&c.losses)
                    .map(|(shape, loss)| c.metrics.iter().map(|m| Metric::resolve(&m.name, *loss, shape.iter().product())).collect())
                    .collect::<Result<Vec<Vec<Metric>>>>()?;
                (c.losses.clone(), c.loss_weights.clone(), metrics)
            }
            None => (vec![Loss::parse("mean_squared_error")?; n], vec![1.0; n], vec![Vec::new(); n]),
        };
        Ok(Self {
            arch: model.arch.clone(),
            weights: model.weights.iter().map(|w| w.value.clone()).collect(),
            host_tensors: None,
            host_transposed: Vec::new(),
            shapes: model.weights.iter().map(|w| w.shape.clone()).collect(),
            losses,
            loss_weights,
            metrics,
            total_rows,
            output_shapes,
            seed,
        })
    }

    /// The sums the metrics of all outputs contribute per batch.
    pub(super) fn metric_count(&self) -> usize {
        self.metrics.iter().flatten().map(|m| m.accumulators()).sum()
    }

    pub(super) fn all_metrics(&self) -> Vec<&Metric> {
        self.metrics.iter().flatten().collect()
    }
}

pub(super) fn forward_part(
    s: &StepInputs,
    device: &Device,
    xs: &[HostTensor],
    training: bool,
    replica: usize,
) -> Result<(Vec<Tensor>, crate::model::RecordedForward)> {
    let weights = match &s.host_tensors {
        Some(tensors) if device.is_cpu() => tensors.clone(),
        _ => weights_to_device(&s.weights, &s.shapes, device)?,
    };
    let xs = xs.iter().map(|x| x.to_device(device)).collect::<Result<Vec<_>>>()?;
    let seed = s.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(replica as u64);
    let mut ctx = ForwardContext { training, rng: rand::rngs::StdRng::seed_from_u64(seed), mask: None };
    let recorded = s.arch.forward_recording(&weights, &xs, &mut ctx)?;
    Ok((weights, recorded))
}

/// Per-output loss sums (each over the whole batch's size) and metric sums, output by output.
/// Loss of each sample, weighted when sample weights are given (Keras divides the weighted
/// sum by the number of samples, not by the sum of the weights).
fn weighted_per_sample(s: &StepInputs, k: usize, out: &crate::model::ModelOutput, y: &Tensor, w: Option<&Tensor>) -> Result<Tensor> {
    let per_sample = s.losses[k].per_sample(out, y)?;
    Ok(match w {
        Some(w) => per_sample.mul(w)?,
        None => per_sample,
    })
}

/// Scales each sample's gradient by its weight.
fn weight_rows(g: OutputGrad, w: Option<&Tensor>) -> Result<OutputGrad> {
    let Some(w) = w else { return Ok(g) };
    let scale = |t: Tensor| -> Result<Tensor> {
        let mut shape = vec![t.dim(0)?];
        shape.resize(t.rank(), 1);
        Ok(t.broadcast_mul(&w.reshape(shape)?)?)
    };
    Ok(match g {
        OutputGrad::Value(t) => OutputGrad::Value(scale(t)?),
        OutputGrad::Logits(t) => OutputGrad::Logits(scale(t)?),
    })
}

fn losses_and_metrics(s: &StepInputs, outs: &[crate::model::ModelOutput], ys: &[Tensor], w: Option<&Tensor>) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut losses = Vec::with_capacity(outs.len());
    let mut metric_sums = Vec::new();
    for (k, (out, y)) in outs.iter().zip(ys).enumerate() {
        let per_sample = weighted_per_sample(s, k, out, y, w)?;
        losses.push((per_sample.sum_all()? / s.total_rows as f64)?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?);
        for m in &s.metrics[k] {
            metric_sums.extend(m.batch_sums(&out.value, y)?);
        }
    }
    Ok((losses, metric_sums))
}

fn weighted_total(s: &StepInputs, losses: &[f64]) -> f64 {
    losses.iter().zip(&s.loss_weights).map(|(l, w)| l * w).sum()
}

/// A replica's rows: gathered (converted) by the replica itself, then its part of the step.
pub(super) fn train_part(s: &StepInputs, device: &Device, batch: &Batch, rows: &[usize], replica: usize, to_host: bool) -> Result<Part> {
    let (x, ys, sample_weights) = batch.gather(s, rows)?;
    let (weights, (outs, caches, recorded)) = forward_part(s, device, &x, true, replica)?;
    let (activity_penalty, activity_grads) = s.arch.activity_penalty(&recorded, s.total_rows)?;
    let ys = ys.iter().map(|y| y.to_device(device)).collect::<Result<Vec<_>>>()?;
    let sw = sample_weights.map(|w| w.to_device(device)).transpose()?;
    let (output_losses, metric_sums) = losses_and_metrics(s, &outs, &ys, sw.as_ref())?;
    let output_grads = outs
        .iter()
        .zip(&ys)
        .enumerate()
        .map(|(k, (out, y))| {
            let g = weight_rows(s.losses[k].gradient(out, y, s.total_rows)?, sw.as_ref())?;
            let w = s.loss_weights[k];
            Ok(if w == 1.0 {
                g
            } else {
                match g {
                    OutputGrad::Value(t) => OutputGrad::Value((t * w)?),
                    OutputGrad::Logits(t) => OutputGrad::Logits((t * w)?),
                }
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let transposed: &[Option<Tensor>] = if device.is_cpu() { &s.host_transposed } else { &[] };
    let grads = s.arch.backward_with_extra(&weights, transposed, &caches, output_grads, activity_grads)?;
    let updates = s
        .arch
        .state_updates(&caches)
        .into_iter()
        .map(|(i, t)| Ok((i, t.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?)))
        .collect::<Result<Vec<_>>>()?;
    let grads = if to_host { grads.iter().map(|g| g.to_device(&Device::Cpu)).collect::<candle_core::Result<_>>()? } else { grads };
    // Keras reports the total loss with the activity penalties, each output's loss without.
    Ok(Part { grads, loss_sum: weighted_total(s, &output_losses) + activity_penalty, output_losses, metric_sums, updates, rows: rows.len() })
}

pub(super) fn eval_part(s: &StepInputs, device: &Device, batch: &Batch, rows: &[usize], replica: usize) -> Result<Part> {
    let (x, ys, sample_weights) = batch.gather(s, rows)?;
    let (_, (outs, _, recorded)) = forward_part(s, device, &x, false, replica)?;
    let (activity_penalty, _) = s.arch.activity_penalty(&recorded, s.total_rows)?;
    let ys = ys.iter().map(|y| y.to_device(device)).collect::<Result<Vec<_>>>()?;
    let sw = sample_weights.map(|w| w.to_device(device)).transpose()?;
    let (output_losses, metric_sums) = losses_and_metrics(s, &outs, &ys, sw.as_ref())?;
    Ok(Part {
        grads: Vec::new(),
        loss_sum: weighted_total(s, &output_losses) + activity_penalty,
        output_losses,
        metric_sums,
        updates: Vec::new(),
        rows: rows.len(),
    })
}

pub(super) fn predict_part(s: &StepInputs, device: &Device, xs: &[&dyn BatchSource], rows: &[usize]) -> Result<Vec<Tensor>> {
    let gathered: Vec<HostTensor> = xs.iter().map(|x| x.gather(rows)).collect();
    let (_, (outs, _, _)) = forward_part(s, device, &gathered, false, 0)?;
    Ok(outs.into_iter().map(|o| o.value).collect())
}

/// The inputs and targets a step draws its rows from.
pub(super) struct Batch<'a> {
    pub(super) xs: &'a [&'a dyn BatchSource],
    pub(super) ys: &'a [&'a dyn BatchSource],
    /// One weight per sample, applied to the loss (Keras's `sample_weight`).
    pub(super) sample_weights: Option<&'a dyn BatchSource>,
}

impl Batch<'_> {
    /// Converts `rows` of x and y; targets are checked and prepared for the loss.
    fn gather(&self, s: &StepInputs, rows: &[usize]) -> Result<(Vec<HostTensor>, Vec<HostTensor>, Option<HostTensor>)> {
        let ys = self.ys.iter().enumerate().map(|(k, y)| s.losses[k].prepare_targets(&y.gather(rows), &s.output_shapes[k])).collect::<Result<Vec<_>>>()?;
        let weights = self.sample_weights.map(|w| {
            let mut t = w.gather(rows);
            t.shape = vec![rows.len()];
            t
        });
        Ok((self.xs.iter().map(|x| x.gather(rows)).collect(), ys, weights))
    }
}

/// The test hook's failure for this replica, if one was injected for this step.
pub(super) fn fail_if_injected(injected: Option<FaultKind>) -> Result<()> {
    match injected {
        Some(FaultKind::Panic) => panic!("injected failure (test hook)"),
        Some(FaultKind::Error) => Err(Error::Device("injected failure (test hook)".into())),
        None => Ok(()),
    }
}

/// Views of host tensors as f32 slices (no copy), valid while `guards` lives.
pub(super) fn host_slices<'a>(guards: &'a [Vec<(candle_core::StorageRef<'a>, &'a candle_core::Layout)>]) -> Result<Vec<Vec<&'a [f32]>>> {
    guards
        .iter()
        .map(|part| {
            part.iter()
                .map(|(storage, layout)| match &**storage {
                    candle_core::Storage::Cpu(cpu) => {
                        let (a, b) = layout.contiguous_offsets().ok_or_else(|| Error::State("gradient is not contiguous".into()))?;
                        Ok(&cpu.as_slice::<f32>()?[a..b])
                    }
                    _ => Err(Error::State("gradient is not on the host".into())),
                })
                .collect()
        })
        .collect()
}

/// Each replica moved the moving statistics toward its own rows' batch statistics (as in
/// Keras, where statistics are per replica); the master takes their row-weighted mean.
pub(super) fn average_updates(parts: &[Part]) -> Vec<(usize, Vec<f32>)> {
    let total: usize = parts.iter().map(|p| p.rows).sum();
    let mut out: Vec<(usize, Vec<f32>)> = Vec::new();
    for part in parts {
        let w = part.rows as f32 / total.max(1) as f32;
        for (i, v) in &part.updates {
            match out.iter_mut().find(|(j, _)| j == i) {
                Some((_, acc)) => acc.iter_mut().zip(v).for_each(|(a, b)| *a += w * b),
                None => out.push((*i, v.iter().map(|b| w * b).collect())),
            }
        }
    }
    out
}

pub(super) fn combine(parts: &[Part], rows: usize, s: &StepInputs) -> BatchStats {
    let n_metrics = s.metric_count();
    let loss = parts.iter().map(|p| p.loss_sum).sum();
    let n_outputs = parts.first().map_or(0, |p| p.output_losses.len());
    let mut output_losses = vec![0.0; n_outputs];
    let mut metrics = vec![0.0; n_metrics];
    for p in parts {
        for (o, v) in output_losses.iter_mut().zip(&p.output_losses) {
            *o += v;
        }
        for (m, v) in metrics.iter_mut().zip(&p.metric_sums) {
            *m += v;
        }
    }
    let output_losses = if n_outputs > 1 { output_losses } else { Vec::new() };
    BatchStats { rows, loss, output_losses, metrics: crate::metrics::results(&s.all_metrics(), &metrics, rows), metric_sums: metrics }
}

pub(super) type PartTask<'env, T> = Option<Box<dyn FnOnce(&WorkerContext) -> Result<T> + Send + 'env>>;

/// Each replica's rows (None for a replica that sits this batch out).
pub(super) fn split_rows(rows: &[usize], replicas: usize) -> Vec<Option<&[usize]>> {
    split_batch(rows.len(), replicas).into_iter().map(|r| (!r.is_empty()).then(|| &rows[r])).collect()
}
