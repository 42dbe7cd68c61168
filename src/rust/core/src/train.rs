//! One training, evaluation or prediction step, on one device or across replicas.
//! Every replica runs the same `*_part` function on its rows; parts are combined so that
//! a step equals the template's step on the whole batch.
use crate::device::DeviceInfo;
use crate::error::{Error, Result};
use crate::layers::ForwardContext;
use crate::loss::Loss;
use crate::metrics::Metric;
use crate::model::{weights_to_device, Architecture, Model};
use crate::optim::Optimizer;
use crate::parallel::{split_batch, FaultKind, MergeDevice, ReplicaSet, WorkerContext};
use crate::tensor::{BatchSource, HostTensor};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use std::sync::Arc;

/// What `compile()` sets up.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub loss: Loss,
    pub metrics: Vec<Metric>,
    pub optimizer: Optimizer,
}

/// Mean loss and mean metrics over a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    pub rows: usize,
    pub loss: f64,
    pub metrics: Vec<f64>,
}

/// Where a model's steps run: on one device, on the calling thread, or on replicas.
pub enum Executor {
    Local(DeviceInfo),
    Replicated(ReplicaSet),
}

/// The read-only inputs of a step, shared with every replica.
#[derive(Clone)]
struct StepInputs {
    arch: Arc<Architecture>,
    weights: Vec<Arc<Vec<f32>>>,
    shapes: Vec<Vec<usize>>,
    loss: Loss,
    metrics: Vec<Metric>,
    /// Rows in the whole batch: each part's loss is divided by it, so parts add up to the mean.
    total_rows: usize,
    output_shape: Vec<usize>,
    seed: u64,
}

/// A replica's contribution to a step. Its gradients are on its device, or already on the
/// host when the merge happens on the CPU (each replica copies its own, concurrently; on a
/// CPU-backed device that is no copy at all).
struct Part {
    grads: Vec<Tensor>,
    loss_sum: f64,
    metric_sums: Vec<f64>,
    /// New values of non-trainable weights (batch normalization's moving statistics).
    updates: Vec<(usize, Vec<f32>)>,
    rows: usize,
}

impl StepInputs {
    fn new(model: &Model, compiled: Option<&Compiled>, total_rows: usize, seed: u64) -> Self {
        let (loss, metrics) = match compiled {
            Some(c) => (c.loss, c.metrics.clone()),
            None => (Loss::MeanSquaredError, Vec::new()),
        };
        Self {
            arch: model.arch.clone(),
            weights: model.weights.iter().map(|w| w.value.clone()).collect(),
            shapes: model.weights.iter().map(|w| w.shape.clone()).collect(),
            loss,
            metrics,
            total_rows,
            output_shape: model.arch.output_shape().cloned().unwrap_or_default(),
            seed,
        }
    }
}

fn forward_part(
    s: &StepInputs,
    device: &Device,
    xs: &[HostTensor],
    training: bool,
    replica: usize,
) -> Result<(Vec<Tensor>, crate::model::ModelOutput, Vec<crate::layers::Cache>)> {
    let weights = weights_to_device(&s.weights, &s.shapes, device)?;
    let xs = xs.iter().map(|x| x.to_device(device)).collect::<Result<Vec<_>>>()?;
    let seed = s.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(replica as u64);
    let mut ctx = ForwardContext { training, rng: rand::rngs::StdRng::seed_from_u64(seed) };
    let (mut outs, caches) = s.arch.forward(&weights, &xs, &mut ctx)?;
    Ok((weights, outs.remove(0), caches))
}

fn loss_and_metrics(s: &StepInputs, out: &crate::model::ModelOutput, y: &Tensor) -> Result<(f64, Vec<f64>)> {
    let per_sample = s.loss.per_sample(out, y)?;
    let loss_sum = (per_sample.sum_all()? / s.total_rows as f64)?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    let metric_sums = s.metrics.iter().map(|m| m.batch_sum(&out.value, y)).collect::<Result<Vec<_>>>()?;
    Ok((loss_sum, metric_sums))
}

/// A replica's rows: gathered (converted) by the replica itself, then its part of the step.
fn train_part(s: &StepInputs, device: &Device, batch: &Batch, rows: &[usize], replica: usize, to_host: bool) -> Result<Part> {
    let (x, y) = batch.gather(s, rows)?;
    let (weights, out, caches) = forward_part(s, device, &x, true, replica)?;
    let y = y.to_device(device)?;
    let (loss_sum, metric_sums) = loss_and_metrics(s, &out, &y)?;
    let output_grad = s.loss.gradient(&out, &y, s.total_rows)?;
    let grads = s.arch.backward(&weights, &caches, vec![output_grad])?;
    let updates = s
        .arch
        .state_updates(&caches)
        .into_iter()
        .map(|(i, t)| Ok((i, t.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?)))
        .collect::<Result<Vec<_>>>()?;
    let grads = if to_host { grads.iter().map(|g| g.to_device(&Device::Cpu)).collect::<candle_core::Result<_>>()? } else { grads };
    Ok(Part { grads, loss_sum, metric_sums, updates, rows: rows.len() })
}

fn eval_part(s: &StepInputs, device: &Device, batch: &Batch, rows: &[usize], replica: usize) -> Result<Part> {
    let (x, y) = batch.gather(s, rows)?;
    let (_, out, _) = forward_part(s, device, &x, false, replica)?;
    let y = y.to_device(device)?;
    let (loss_sum, metric_sums) = loss_and_metrics(s, &out, &y)?;
    Ok(Part { grads: Vec::new(), loss_sum, metric_sums, updates: Vec::new(), rows: rows.len() })
}

fn predict_part(s: &StepInputs, device: &Device, xs: &[&dyn BatchSource], rows: &[usize]) -> Result<Tensor> {
    let gathered: Vec<HostTensor> = xs.iter().map(|x| x.gather(rows)).collect();
    let (_, out, _) = forward_part(s, device, &gathered, false, 0)?;
    Ok(out.value)
}

/// The inputs and targets a step draws its rows from.
struct Batch<'a> {
    xs: &'a [&'a dyn BatchSource],
    y: &'a dyn BatchSource,
}

impl Batch<'_> {
    /// Converts `rows` of x and y; targets are checked and prepared for the loss.
    fn gather(&self, s: &StepInputs, rows: &[usize]) -> Result<(Vec<HostTensor>, HostTensor)> {
        let y = s.loss.prepare_targets(&self.y.gather(rows), &s.output_shape)?;
        Ok((self.xs.iter().map(|x| x.gather(rows)).collect(), y))
    }
}

/// Sums gradients on `device` (the first replica's), in replica order, then brings the
/// sums to the host for the optimizer step on the master weights.
fn reduce_on_device(parts: &[Vec<Tensor>], device: &Device) -> Result<Vec<Tensor>> {
    let n = parts[0].len();
    (0..n)
        .map(|i| {
            let mut acc = parts[0][i].to_device(device)?;
            for p in &parts[1..] {
                acc = (acc + p[i].to_device(device)?)?;
            }
            Ok(acc.to_device(&Device::Cpu)?.contiguous()?)
        })
        .collect()
}

/// Views of host tensors as f32 slices (no copy), valid while `guards` lives.
fn host_slices<'a>(guards: &'a [Vec<(candle_core::StorageRef<'a>, &'a candle_core::Layout)>]) -> Result<Vec<Vec<&'a [f32]>>> {
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
fn average_updates(parts: &[Part]) -> Vec<(usize, Vec<f32>)> {
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

fn check_rows(xs: &[&dyn BatchSource], y: &dyn BatchSource, rows: &[usize]) -> Result<()> {
    check_batch(xs, rows)?;
    if xs[0].rows() != y.rows() {
        return Err(Error::Value(format!(
            "`x` and `y` must have the same number of samples (rows): `x` has {}, `y` has {}",
            xs[0].rows(),
            y.rows()
        )));
    }
    Ok(())
}

fn check_batch(xs: &[&dyn BatchSource], rows: &[usize]) -> Result<()> {
    let first = xs.first().ok_or_else(|| Error::Value("no input arrays given".into()))?;
    if let Some((i, x)) = xs.iter().enumerate().find(|(_, x)| x.rows() != first.rows()) {
        return Err(Error::Value(format!(
            "all inputs must have the same number of samples: input 1 has {}, input {} has {}",
            first.rows(),
            i + 1,
            x.rows()
        )));
    }
    if rows.is_empty() {
        return Err(Error::Value("the batch is empty: no rows to process".into()));
    }
    if let Some(r) = rows.iter().find(|r| **r >= first.rows()) {
        return Err(Error::Value(format!("row {} is outside the {} rows of `x`", r + 1, first.rows())));
    }
    Ok(())
}

fn combine(parts: &[Part], rows: usize, n_metrics: usize) -> BatchStats {
    let loss = parts.iter().map(|p| p.loss_sum).sum();
    let mut metrics = vec![0.0; n_metrics];
    for p in parts {
        for (m, v) in metrics.iter_mut().zip(&p.metric_sums) {
            *m += v;
        }
    }
    BatchStats { rows, loss, metrics: metrics.into_iter().map(|m| m / rows as f64).collect() }
}

type PartTask<'env, T> = Option<Box<dyn FnOnce(&WorkerContext) -> Result<T> + Send + 'env>>;

/// Each replica's rows (None for a replica that sits this batch out).
fn split_rows(rows: &[usize], replicas: usize) -> Vec<Option<&[usize]>> {
    split_batch(rows.len(), replicas).into_iter().map(|r| (!r.is_empty()).then(|| &rows[r])).collect()
}

impl Executor {
    /// One optimizer step on `rows` (0-based) of `x`, `y` (targets as given; the loss
    /// prepares them). Each replica converts its own rows. On any error the master
    /// weights are untouched.
    pub fn train_on_batch(
        &self,
        model: &mut Model,
        compiled: &mut Compiled,
        xs: &[&dyn BatchSource],
        y: &dyn BatchSource,
        rows: &[usize],
        seed: u64,
    ) -> Result<BatchStats> {
        check_rows(xs, y, rows)?;
        let batch = Batch { xs, y };
        let s = StepInputs::new(model, Some(compiled), rows.len(), seed);
        // Gradients per replica (host tensors), in replica order; the optimizer sums them as
        // it updates, reading them in place.
        let (grad_parts, stats, updates): (Vec<Vec<Tensor>>, BatchStats, Vec<(usize, Vec<f32>)>) = match self {
            Executor::Local(info) => {
                let device = info.candle_device()?;
                let part = train_part(&s, &device, &batch, rows, 0, true)?;
                let stats = combine(std::slice::from_ref(&part), rows.len(), s.metrics.len());
                (vec![part.grads], stats, part.updates)
            }
            Executor::Replicated(set) => {
                let parts_rows = split_rows(rows, set.len());
                let on_cpu = set.merge == MergeDevice::Cpu;
                let (s, batch) = (&s, &batch);
                let fault = set.fault_for_this_step();
                let parts = set.run_all(|r| -> PartTask<'_, Part> {
                    let mine = parts_rows[r]?;
                    let injected = fault.filter(|(replica, _)| *replica == r).map(|(_, kind)| kind);
                    Some(Box::new(move |ctx: &WorkerContext| {
                        match injected {
                            Some(FaultKind::Panic) => panic!("injected failure (test hook)"),
                            Some(FaultKind::Error) => return Err(Error::Device("injected failure (test hook)".into())),
                            None => {}
                        }
                        train_part(s, &ctx.device, batch, mine, r, on_cpu)
                    }))
                })?;
                let stats = combine(&parts, rows.len(), s.metrics.len());
                let updates = average_updates(&parts);
                let grads: Vec<Vec<Tensor>> = parts.into_iter().map(|p| p.grads).collect();
                let grad_parts = if on_cpu {
                    grads
                } else {
                    let grads = &grads;
                    let mut out = set.run_all(|r| -> PartTask<'_, Vec<Tensor>> {
                        (r == 0).then(|| Box::new(move |ctx: &WorkerContext| reduce_on_device(grads, &ctx.device)) as Box<_>)
                    })?;
                    vec![out.remove(0)]
                };
                (grad_parts, stats, updates)
            }
        };
        // Release this step's snapshot so the optimizer can write the weights in place.
        drop(s);
        let guards: Vec<Vec<_>> = grad_parts.iter().map(|ts| ts.iter().map(|t| t.storage_and_layout()).collect()).collect();
        let grad_parts = host_slices(&guards)?;
        // Keras keeps training on a NaN loss (a callback may stop it), so no check here.
        match self {
            Executor::Local(_) => compiled.optimizer.apply_sharded(&mut model.weights, &grad_parts, rayon::current_num_threads(), |shards| {
                use rayon::prelude::*;
                shards.into_par_iter().for_each(|shard| shard());
                Ok(())
            })?,
            // The update is shared out to the replica workers: the threads (and, for virtual
            // GPUs, the cores) the step already runs on.
            Executor::Replicated(set) => compiled.optimizer.apply_sharded(&mut model.weights, &grad_parts, set.len(), |shards| {
                let shards: Vec<std::sync::Mutex<Option<crate::optim::UpdateShard<'_>>>> =
                    shards.into_iter().map(|s| std::sync::Mutex::new(Some(s))).collect();
                set.run_all(|r| -> PartTask<'_, ()> {
                    let shard = shards[r].lock().ok()?.take()?;
                    Some(Box::new(move |_: &WorkerContext| {
                        shard();
                        Ok(())
                    }))
                })?;
                Ok(())
            })?,
        }
        for (i, value) in updates {
            model.weights[i].value = Arc::new(value);
        }
        Ok(stats)
    }

    /// Loss and metrics on `rows` of `x`, `y`, without updating anything.
    pub fn test_on_batch(&self, model: &Model, compiled: &Compiled, xs: &[&dyn BatchSource], y: &dyn BatchSource, rows: &[usize]) -> Result<BatchStats> {
        check_rows(xs, y, rows)?;
        let batch = Batch { xs, y };
        let s = StepInputs::new(model, Some(compiled), rows.len(), 0);
        let parts = match self {
            Executor::Local(info) => vec![eval_part(&s, &info.candle_device()?, &batch, rows, 0)?],
            Executor::Replicated(set) => {
                let parts_rows = split_rows(rows, set.len());
                let (s, batch) = (&s, &batch);
                set.run_all(|r| -> PartTask<'_, Part> {
                    let mine = parts_rows[r]?;
                    Some(Box::new(move |ctx: &WorkerContext| eval_part(s, &ctx.device, batch, mine, r)))
                })?
            }
        };
        Ok(combine(&parts, rows.len(), s.metrics.len()))
    }

    /// The model's output for `rows` of `x`; replicas' outputs are concatenated in row order
    /// on the merge device.
    pub fn predict_on_batch(&self, model: &Model, xs: &[&dyn BatchSource], rows: &[usize]) -> Result<HostTensor> {
        check_batch(xs, rows)?;
        let s = StepInputs::new(model, None, rows.len(), 0);
        match self {
            Executor::Local(info) => HostTensor::from_tensor(&predict_part(&s, &info.candle_device()?, xs, rows)?),
            Executor::Replicated(set) => {
                let parts_rows = split_rows(rows, set.len());
                let s = &s;
                let outs = set.run_all(|r| -> PartTask<'_, Tensor> {
                    let mine = parts_rows[r]?;
                    Some(Box::new(move |ctx: &WorkerContext| predict_part(s, &ctx.device, xs, mine)))
                })?;
                match set.merge {
                    MergeDevice::Cpu => {
                        let host = outs.iter().map(HostTensor::from_tensor).collect::<Result<Vec<_>>>()?;
                        HostTensor::concat_rows(&host)
                    }
                    MergeDevice::FirstReplica => {
                        let outs = &outs;
                        let mut merged = set.run_all(|r| -> PartTask<'_, HostTensor> {
                            (r == 0).then(|| {
                                Box::new(move |ctx: &WorkerContext| {
                                    let on_first = outs.iter().map(|t| t.to_device(&ctx.device)).collect::<candle_core::Result<Vec<_>>>()?;
                                    HostTensor::from_tensor(&Tensor::cat(&on_first, 0)?)
                                }) as Box<_>
                            })
                        })?;
                        Ok(merged.remove(0))
                    }
                }
            }
        }
    }

    pub fn replica_count(&self) -> usize {
        match self {
            Executor::Local(_) => 1,
            Executor::Replicated(set) => set.len(),
        }
    }
}
