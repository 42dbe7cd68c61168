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
use crate::parallel::{split_batch, MergeDevice, ReplicaSet, WorkerContext};
use crate::tensor::HostTensor;
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
    seed: u64,
}

/// A replica's contribution to a step.
struct Part {
    grads: Vec<Tensor>,
    loss_sum: f64,
    metric_sums: Vec<f64>,
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
            seed,
        }
    }
}

fn forward_part(
    s: &StepInputs,
    device: &Device,
    x: &HostTensor,
    training: bool,
    replica: usize,
) -> Result<(Vec<candle_core::Var>, crate::model::ModelOutput)> {
    let vars = weights_to_device(&s.weights, &s.shapes, device)?;
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let x = x.to_device(device)?;
    let seed = s.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(replica as u64);
    let mut ctx = ForwardContext { training, rng: rand::rngs::StdRng::seed_from_u64(seed) };
    let mut outs = s.arch.forward(&tensors, &[x], &mut ctx)?;
    Ok((vars, outs.remove(0)))
}

fn loss_and_metrics(s: &StepInputs, out: &crate::model::ModelOutput, y: &Tensor) -> Result<(Tensor, f64, Vec<f64>)> {
    let per_sample = s.loss.per_sample(out, y)?;
    let part_loss = (per_sample.sum_all()? / s.total_rows as f64)?;
    let loss_sum = part_loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    let metric_sums = s.metrics.iter().map(|m| m.batch_sum(&out.value, y)).collect::<Result<Vec<_>>>()?;
    Ok((part_loss, loss_sum, metric_sums))
}

fn train_part(s: &StepInputs, device: &Device, x: &HostTensor, y: &HostTensor, replica: usize) -> Result<Part> {
    let (vars, out) = forward_part(s, device, x, true, replica)?;
    let y = y.to_device(device)?;
    let (part_loss, loss_sum, metric_sums) = loss_and_metrics(s, &out, &y)?;
    let grads = part_loss.backward()?;
    let grads = vars
        .iter()
        .map(|v| match grads.get(v.as_tensor()) {
            Some(g) => Ok(g.clone()),
            None => Ok(v.as_tensor().zeros_like()?),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Part { grads, loss_sum, metric_sums })
}

fn eval_part(s: &StepInputs, device: &Device, x: &HostTensor, y: &HostTensor, replica: usize) -> Result<Part> {
    let (_, out) = forward_part(s, device, x, false, replica)?;
    let y = y.to_device(device)?;
    let (_, loss_sum, metric_sums) = loss_and_metrics(s, &out, &y)?;
    Ok(Part { grads: Vec::new(), loss_sum, metric_sums })
}

fn predict_part(s: &StepInputs, device: &Device, x: &HostTensor) -> Result<Tensor> {
    let (_, out) = forward_part(s, device, x, false, 0)?;
    Ok(out.value.detach())
}

fn host_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?)
}

/// Sums gradients (same order every time, so results are reproducible) on the host.
fn reduce_on_host(parts: &[Part]) -> Result<Vec<Vec<f32>>> {
    let n = parts[0].grads.len();
    let mut total: Vec<Vec<f32>> = parts[0].grads.iter().map(host_vec).collect::<Result<_>>()?;
    for part in &parts[1..] {
        for (acc, g) in total.iter_mut().zip(&part.grads) {
            for (a, b) in acc.iter_mut().zip(host_vec(g)?) {
                *a += b;
            }
        }
    }
    debug_assert_eq!(total.len(), n);
    Ok(total)
}

/// Sums gradients on `device` (the first replica's), then brings the sums to the host
/// for the optimizer step on the master weights.
fn reduce_on_device(parts: Vec<Vec<Tensor>>, device: &Device) -> Result<Vec<Vec<f32>>> {
    let n = parts[0].len();
    (0..n)
        .map(|i| {
            let mut acc = parts[0][i].to_device(device)?;
            for p in &parts[1..] {
                acc = (acc + p[i].to_device(device)?)?;
            }
            host_vec(&acc)
        })
        .collect()
}

fn check_rows(x: &HostTensor, y: &HostTensor) -> Result<()> {
    if x.rows() != y.rows() {
        return Err(Error::Value(format!(
            "`x` and `y` must have the same number of samples (rows): `x` has {}, `y` has {}",
            x.rows(),
            y.rows()
        )));
    }
    if x.rows() == 0 {
        return Err(Error::Value("the batch is empty: `x` has 0 rows".into()));
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

type PartTask<T> = Option<Box<dyn FnOnce(&WorkerContext) -> Result<T> + Send>>;

/// Sub-batches for each replica (None for a replica that sits this batch out).
fn slices(x: &HostTensor, replicas: usize) -> Vec<Option<HostTensor>> {
    split_batch(x.rows(), replicas)
        .into_iter()
        .map(|r| (!r.is_empty()).then(|| x.slice_rows(r.start, r.end)))
        .collect()
}

impl Executor {
    /// One optimizer step on `x`, `y` (targets as given; the loss prepares them).
    /// On any error the master weights are untouched.
    pub fn train_on_batch(&self, model: &mut Model, compiled: &mut Compiled, x: &HostTensor, y: &HostTensor, seed: u64) -> Result<BatchStats> {
        check_rows(x, y)?;
        let out_shape = model.arch.output_shape().cloned().unwrap_or_default();
        let y = compiled.loss.prepare_targets(y, &out_shape)?;
        let s = StepInputs::new(model, Some(compiled), x.rows(), seed);
        let (grads, stats) = match self {
            Executor::Local(info) => {
                let device = info.candle_device()?;
                let part = train_part(&s, &device, x, &y, 0)?;
                let stats = combine(std::slice::from_ref(&part), x.rows(), s.metrics.len());
                (reduce_on_host(&[part])?, stats)
            }
            Executor::Replicated(set) => {
                let xs = slices(x, set.len());
                let ys = slices(&y, set.len());
                let parts = set.run_all(|r| -> PartTask<Part> {
                    let (xr, yr) = (xs[r].clone()?, ys[r].clone()?);
                    let s = s.clone();
                    Some(Box::new(move |ctx: &WorkerContext| train_part(&s, &ctx.device, &xr, &yr, ctx.replica)))
                })?;
                let stats = combine(&parts, x.rows(), s.metrics.len());
                let grads = match set.merge {
                    MergeDevice::Cpu => reduce_on_host(&parts)?,
                    MergeDevice::FirstReplica => {
                        let grads: Vec<Vec<Tensor>> = parts.into_iter().map(|p| p.grads).collect();
                        let mut out = set.run_all(|r| -> PartTask<Vec<Vec<f32>>> {
                            (r == 0).then(|| {
                                let g = grads.clone();
                                Box::new(move |ctx: &WorkerContext| reduce_on_device(g, &ctx.device)) as Box<_>
                            })
                        })?;
                        out.remove(0)
                    }
                };
                (grads, stats)
            }
        };
        // Release this step's snapshot so the optimizer can write the weights in place.
        drop(s);
        if !stats.loss.is_finite() {
            // Keras keeps going on a NaN loss; the update still happens (callbacks may stop it).
        }
        compiled.optimizer.apply(&mut model.weights, &grads)?;
        Ok(stats)
    }

    /// Loss and metrics on a batch, without updating anything.
    pub fn test_on_batch(&self, model: &Model, compiled: &Compiled, x: &HostTensor, y: &HostTensor) -> Result<BatchStats> {
        check_rows(x, y)?;
        let out_shape = model.arch.output_shape().cloned().unwrap_or_default();
        let y = compiled.loss.prepare_targets(y, &out_shape)?;
        let s = StepInputs::new(model, Some(compiled), x.rows(), 0);
        let parts = match self {
            Executor::Local(info) => vec![eval_part(&s, &info.candle_device()?, x, &y, 0)?],
            Executor::Replicated(set) => {
                let xs = slices(x, set.len());
                let ys = slices(&y, set.len());
                set.run_all(|r| -> PartTask<Part> {
                    let (xr, yr) = (xs[r].clone()?, ys[r].clone()?);
                    let s = s.clone();
                    Some(Box::new(move |ctx: &WorkerContext| eval_part(&s, &ctx.device, &xr, &yr, ctx.replica)))
                })?
            }
        };
        Ok(combine(&parts, x.rows(), s.metrics.len()))
    }

    /// The model's output for a batch; replicas' outputs are concatenated in row order on
    /// the merge device.
    pub fn predict_on_batch(&self, model: &Model, x: &HostTensor) -> Result<HostTensor> {
        if x.rows() == 0 {
            return Err(Error::Value("the batch is empty: `x` has 0 rows".into()));
        }
        let s = StepInputs::new(model, None, x.rows(), 0);
        match self {
            Executor::Local(info) => HostTensor::from_tensor(&predict_part(&s, &info.candle_device()?, x)?),
            Executor::Replicated(set) => {
                let xs = slices(x, set.len());
                let outs = set.run_all(|r| -> PartTask<Tensor> {
                    let xr = xs[r].clone()?;
                    let s = s.clone();
                    Some(Box::new(move |ctx: &WorkerContext| predict_part(&s, &ctx.device, &xr)))
                })?;
                match set.merge {
                    MergeDevice::Cpu => {
                        let host = outs.iter().map(HostTensor::from_tensor).collect::<Result<Vec<_>>>()?;
                        HostTensor::concat_rows(&host)
                    }
                    MergeDevice::FirstReplica => {
                        let mut merged = set.run_all(|r| -> PartTask<HostTensor> {
                            (r == 0).then(|| {
                                let outs = outs.clone();
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
