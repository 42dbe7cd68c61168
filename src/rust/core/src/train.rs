//! One training, evaluation or prediction step, on one device or across replicas.
//! Every replica runs the same `*_part` function on its rows; parts are combined so that
//! a step equals the template's step on the whole batch.
use crate::device::DeviceInfo;
use crate::error::{explain_out_of_memory, Error, Result};
use crate::layers::{ForwardContext, OutputGrad};
use crate::loss::Loss;
use crate::metrics::Metric;
use crate::model::{weights_to_device, Architecture, Model};
use crate::optim::Optimizer;
use crate::parallel::{split_batch, FaultKind, MergeDevice, ReplicaSet, WorkerContext};
use crate::tensor::{BatchSource, HostTensor};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use std::sync::Arc;

/// What `compile()` sets up: a loss (and its weight) per model output, the metrics (applied
/// to every output, as Keras does with a plain list), the optimizer.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub losses: Vec<Loss>,
    pub loss_weights: Vec<f64>,
    pub metrics: Vec<Metric>,
    pub optimizer: Optimizer,
}

impl Compiled {
    /// One output, one loss.
    pub fn single(loss: Loss, metrics: Vec<Metric>, optimizer: Optimizer) -> Self {
        Self { losses: vec![loss], loss_weights: vec![1.0], metrics, optimizer }
    }
}

/// Mean loss and mean metrics over a batch. With several outputs, `loss` is the weighted
/// total, `output_losses` each output's loss, and `metrics` are output by output.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    pub rows: usize,
    pub loss: f64,
    pub output_losses: Vec<f64>,
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
    /// The same weights as host tensors, when every replica reads host memory: then
    /// `weights` is empty (the step holds no reference to the master values, which the
    /// optimizer updates in place while replicas still hold this).
    host_tensors: Option<Vec<Tensor>>,
    /// With `host_tensors`: the transposes the backward pass can use (see
    /// `Architecture::backward_with_transposes`).
    host_transposed: Vec<Option<Tensor>>,
    shapes: Vec<Vec<usize>>,
    losses: Vec<Loss>,
    loss_weights: Vec<f64>,
    /// Metrics resolved for each output (accuracy depends on the output's width and loss).
    metrics: Vec<Vec<Metric>>,
    /// Rows in the whole batch: each part's loss is divided by it, so parts add up to the mean.
    total_rows: usize,
    output_shapes: Vec<Vec<usize>>,
    seed: u64,
}

/// A replica's contribution to a step. Its gradients are on its device, or already on the
/// host when the merge happens on the CPU (each replica copies its own, concurrently; on a
/// CPU-backed device that is no copy at all).
struct Part {
    grads: Vec<Tensor>,
    loss_sum: f64,
    output_losses: Vec<f64>,
    metric_sums: Vec<f64>,
    /// New values of non-trainable weights (batch normalization's moving statistics).
    updates: Vec<(usize, Vec<f32>)>,
    rows: usize,
}

impl StepInputs {
    fn new(model: &Model, compiled: Option<&Compiled>, total_rows: usize, seed: u64) -> Result<Self> {
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
            None => (vec![Loss::MeanSquaredError; n], vec![1.0; n], vec![Vec::new(); n]),
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

    fn metric_count(&self) -> usize {
        self.metrics.iter().map(|m| m.len()).sum()
    }
}

fn forward_part(
    s: &StepInputs,
    device: &Device,
    xs: &[HostTensor],
    training: bool,
    replica: usize,
) -> Result<(Vec<Tensor>, Vec<crate::model::ModelOutput>, Vec<crate::layers::Cache>)> {
    let weights = match &s.host_tensors {
        Some(tensors) if device.is_cpu() => tensors.clone(),
        _ => weights_to_device(&s.weights, &s.shapes, device)?,
    };
    let xs = xs.iter().map(|x| x.to_device(device)).collect::<Result<Vec<_>>>()?;
    let seed = s.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(replica as u64);
    let mut ctx = ForwardContext { training, rng: rand::rngs::StdRng::seed_from_u64(seed) };
    let (outs, caches) = s.arch.forward(&weights, &xs, &mut ctx)?;
    Ok((weights, outs, caches))
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
            metric_sums.push(m.batch_sum(&out.value, y)?);
        }
    }
    Ok((losses, metric_sums))
}

fn weighted_total(s: &StepInputs, losses: &[f64]) -> f64 {
    losses.iter().zip(&s.loss_weights).map(|(l, w)| l * w).sum()
}

/// A replica's rows: gathered (converted) by the replica itself, then its part of the step.
fn train_part(s: &StepInputs, device: &Device, batch: &Batch, rows: &[usize], replica: usize, to_host: bool) -> Result<Part> {
    let (x, ys, sample_weights) = batch.gather(s, rows)?;
    let (weights, outs, caches) = forward_part(s, device, &x, true, replica)?;
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
    let grads = s.arch.backward_with_transposes(&weights, transposed, &caches, output_grads)?;
    let updates = s
        .arch
        .state_updates(&caches)
        .into_iter()
        .map(|(i, t)| Ok((i, t.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?)))
        .collect::<Result<Vec<_>>>()?;
    let grads = if to_host { grads.iter().map(|g| g.to_device(&Device::Cpu)).collect::<candle_core::Result<_>>()? } else { grads };
    Ok(Part { grads, loss_sum: weighted_total(s, &output_losses), output_losses, metric_sums, updates, rows: rows.len() })
}

fn eval_part(s: &StepInputs, device: &Device, batch: &Batch, rows: &[usize], replica: usize) -> Result<Part> {
    let (x, ys, sample_weights) = batch.gather(s, rows)?;
    let (_, outs, _) = forward_part(s, device, &x, false, replica)?;
    let ys = ys.iter().map(|y| y.to_device(device)).collect::<Result<Vec<_>>>()?;
    let sw = sample_weights.map(|w| w.to_device(device)).transpose()?;
    let (output_losses, metric_sums) = losses_and_metrics(s, &outs, &ys, sw.as_ref())?;
    Ok(Part { grads: Vec::new(), loss_sum: weighted_total(s, &output_losses), output_losses, metric_sums, updates: Vec::new(), rows: rows.len() })
}

fn predict_part(s: &StepInputs, device: &Device, xs: &[&dyn BatchSource], rows: &[usize]) -> Result<Vec<Tensor>> {
    let gathered: Vec<HostTensor> = xs.iter().map(|x| x.gather(rows)).collect();
    let (_, outs, _) = forward_part(s, device, &gathered, false, 0)?;
    Ok(outs.into_iter().map(|o| o.value).collect())
}

/// The inputs and targets a step draws its rows from.
struct Batch<'a> {
    xs: &'a [&'a dyn BatchSource],
    ys: &'a [&'a dyn BatchSource],
    /// One weight per sample, applied to the loss (Keras's `sample_weight`).
    sample_weights: Option<&'a dyn BatchSource>,
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
fn fail_if_injected(injected: Option<FaultKind>) -> Result<()> {
    match injected {
        Some(FaultKind::Panic) => panic!("injected failure (test hook)"),
        Some(FaultKind::Error) => Err(Error::Device("injected failure (test hook)".into())),
        None => Ok(()),
    }
}

/// A training step's inputs when its replicas compute in host memory (virtual GPUs): the
/// weights as the model's kept host tensors (made from the master values where these
/// changed), and empty mirrors for the update to write the next step's tensors into.
fn host_step(
    model: &Model,
    cache: &mut crate::model::HostWeights,
    compiled: &Compiled,
    rows: usize,
    seed: u64,
) -> Result<(StepInputs, Vec<crate::optim::Mirror>)> {
    let mut s = StepInputs::new(model, Some(compiled), rows, seed)?;
    // The step holds no reference to the master values: the update writes them in place.
    s.weights = Vec::new();
    let want_transposed = model.arch.transposed_kernels();
    let host = cache.take(&model.weights, &want_transposed)?;
    s.host_transposed = host.iter().map(|h| h.transposed.clone()).collect();
    s.host_tensors = Some(host.into_iter().map(|h| h.value).collect());
    let mirrors = model
        .weights
        .iter()
        .zip(&want_transposed)
        .map(|(w, wanted)| crate::optim::Mirror { transpose: (*wanted && w.shape.len() == 2).then(|| (w.shape[0], w.shape[1])), ..Default::default() })
        .collect();
    Ok((s, mirrors))
}

/// After a successful update: the mirrors become the next step's tensors, the moving
/// statistics the replicas computed are stored, and the cache keeps it all.
fn keep_host_weights(
    model: &mut Model,
    cache: &mut crate::model::HostWeights,
    mut s: StepInputs,
    mirrors: Vec<crate::optim::Mirror>,
    updates: Vec<(usize, Vec<f32>)>,
) -> Result<()> {
    let old_values = s.host_tensors.take().unwrap_or_default();
    let old_transposed = std::mem::take(&mut s.host_transposed);
    drop(s);
    let mut tensors = Vec::with_capacity(old_values.len());
    for (((w, mut mirror), value), transposed) in model.weights.iter().zip(mirrors).zip(old_values).zip(old_transposed) {
        tensors.push(Some(if w.trainable {
            let n = w.value.len();
            // SAFETY: the update succeeded, so every trainable weight's mirror holds all of
            // its values, and its transpose where one was asked for (apply_sharded's
            // contract; train_host_replicas checks that every shard ran).
            unsafe { mirror.values.set_len(n) };
            let value = Tensor::from_vec(mirror.values, w.shape.as_slice(), &Device::Cpu)?;
            let transposed = match mirror.transpose {
                Some((rows, cols)) => {
                    unsafe { mirror.transposed.set_len(n) };
                    Some(Tensor::from_vec(mirror.transposed, (cols, rows), &Device::Cpu)?)
                }
                None => None,
            };
            crate::model::HostWeight { value, transposed }
        } else {
            crate::model::HostWeight { value, transposed }
        }));
    }
    for (i, value) in updates {
        model.weights[i].value = Arc::new(value);
        // Moving statistics just replaced: their tensors are remade next step.
        tensors[i] = None;
    }
    cache.keep(&model.weights, tensors);
    Ok(())
}

/// A training step on replicas that all compute in host memory (virtual GPUs), merged on the
/// CPU, in one task per replica: its forward and backward pass, then, once every replica's
/// gradients are there, its share of the optimizer update, reading the others' gradients in
/// place. The replicas read one set of weight tensors, which the update itself writes for the
/// next step. Against a step in two rounds (gradients, then update shards) this saves a
/// round trip to the workers per step and each replica's copy of the weights, fixed costs
/// that did not shrink with the replica's share of the batch.
fn train_host_replicas(set: &ReplicaSet, model: &mut Model, compiled: &mut Compiled, batch: &Batch, rows: &[usize], seed: u64) -> Result<BatchStats> {
    use crate::parallel::{Arrival, StepBarrier};
    use std::sync::Mutex;
    let cache_lock = model.host.shared();
    let mut cache = cache_lock.lock().unwrap_or_else(|e| e.into_inner());
    let (s, mut next) = host_step(model, &mut cache, compiled, rows.len(), seed)?;
    let parts_rows = split_rows(rows, set.len());
    // Replicas with rows take part; each gets one shard of the update.
    let active: Vec<usize> = (0..set.len()).filter(|r| parts_rows[*r].is_some()).collect();
    let fault = set.fault_for_this_step();
    let spin = set.has_own_cores();
    let barrier = StepBarrier::new(active.len(), spin);
    let updated = StepBarrier::new(active.len(), spin);
    let deposited: Vec<Mutex<Option<Vec<Tensor>>>> = (0..set.len()).map(|_| Mutex::new(None)).collect();
    let mut outcome: Option<Vec<(Part, bool)>> = None;
    let (s_ref, parts_rows, active_ref, barrier, updated, deposited) = (&s, &parts_rows, &active, &barrier, &updated, &deposited);
    let applied = compiled.optimizer.apply_sharded(&mut model.weights, Some(&mut next), active.len(), |shards| {
        let shards: Vec<Mutex<Option<crate::optim::UpdateShard<'_>>>> = shards.into_iter().map(|s| Mutex::new(Some(s))).collect();
        let shards = &shards;
        let results = set.run_all(|r| -> PartTask<'_, (Part, bool)> {
            let mine = parts_rows[r]?;
            // Made first: should this replica get no task, dropping it releases the others.
            let arrival = Arrival::new(barrier);
            let done = Arrival::new(updated);
            let k = active_ref.iter().position(|a| *a == r)?;
            let shard = shards[k].lock().ok()?.take()?;
            let injected = fault.filter(|(replica, _)| *replica == r).map(|(_, kind)| kind);
            Some(Box::new(move |ctx: &WorkerContext| {
                fail_if_injected(injected)?;
                let mut part = train_part(s_ref, &ctx.device, batch, mine, r, true)?;
                *deposited[r].lock().unwrap_or_else(|e| e.into_inner()) = Some(std::mem::take(&mut part.grads));
                if !arrival.arrive() {
                    // Another replica failed: its error is the step's; nothing is updated.
                    return Ok((part, false));
                }
                {
                    let grads: Vec<Vec<Tensor>> =
                        active_ref.iter().map(|a| deposited[*a].lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default()).collect();
                    let guards: Vec<Vec<_>> = grads.iter().map(|ts| ts.iter().map(|t| t.storage_and_layout()).collect()).collect();
                    shard(&host_slices(&guards)?)?;
                }
                // Once every share is done, each replica frees its own gradients, on the
                // thread that allocated them, where mimalloc reuses the memory (freed from
                // another thread, it handed the next step's gradients fresh pages; the time
                // that cost could not be told from this VM's noise, see bench/NOTES.md).
                let all_done = done.arrive();
                deposited[r].lock().unwrap_or_else(|e| e.into_inner()).take();
                Ok((part, all_done))
            }))
        })?;
        if results.iter().any(|(_, updated)| !updated) {
            return Err(Error::State("a replica skipped its share of the update".into()));
        }
        outcome = Some(results);
        Ok(())
    });
    if let Err(e) = applied {
        // Nothing was updated (unless a shard itself failed midway): the tensors are remade
        // from the master weights next step, to be sure.
        cache.clear();
        return Err(e);
    }
    let parts: Vec<Part> = outcome.unwrap_or_default().into_iter().map(|(p, _)| p).collect();
    let stats = combine(&parts, rows.len(), s.metric_count());
    let updates = average_updates(&parts);
    keep_host_weights(model, &mut cache, s, next, updates)?;
    Ok(stats)
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

/// New values of non-trainable weights: (weight index, values).
type StateUpdates = Vec<(usize, Vec<f32>)>;

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

fn check_rows(xs: &[&dyn BatchSource], ys: &[&dyn BatchSource], outputs: usize, rows: &[usize]) -> Result<()> {
    check_batch(xs, rows)?;
    if ys.len() != outputs {
        return Err(Error::Value(format!(
            "the model has {} output{} but `y` holds {} array{}{}",
            outputs,
            if outputs == 1 { "" } else { "s" },
            ys.len(),
            if ys.len() == 1 { "" } else { "s" },
            if outputs > 1 { format!(": pass `y` as a list of {} arrays", outputs) } else { ": pass `y` as one array".into() }
        )));
    }
    for y in ys {
        if xs[0].rows() != y.rows() {
            return Err(Error::Value(format!("`x` and `y` must have the same number of samples (rows): `x` has {}, `y` has {}", xs[0].rows(), y.rows())));
        }
    }
    Ok(())
}

fn check_weights(w: Option<&dyn BatchSource>, rows: usize) -> Result<()> {
    match w {
        Some(w) if w.rows() != rows || w.sample_shape().iter().product::<usize>() != 1 => Err(Error::Value(format!(
            "`sample_weight` must hold one weight per sample ({}), got {} rows of {} values",
            rows,
            w.rows(),
            w.sample_shape().iter().product::<usize>()
        ))),
        _ => Ok(()),
    }
}

fn check_batch(xs: &[&dyn BatchSource], rows: &[usize]) -> Result<()> {
    let first = xs.first().ok_or_else(|| Error::Value("no input arrays given".into()))?;
    if let Some((i, x)) = xs.iter().enumerate().find(|(_, x)| x.rows() != first.rows()) {
        return Err(Error::Value(format!("all inputs must have the same number of samples: input 1 has {}, input {} has {}", first.rows(), i + 1, x.rows())));
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
    BatchStats { rows, loss, output_losses, metrics: metrics.into_iter().map(|m| m / rows as f64).collect() }
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
    // The step's inputs are the model, its compile state, and the batch as the caller holds it.
    #[allow(clippy::too_many_arguments)]
    pub fn train_on_batch(
        &self,
        model: &mut Model,
        compiled: &mut Compiled,
        xs: &[&dyn BatchSource],
        ys: &[&dyn BatchSource],
        sample_weights: Option<&dyn BatchSource>,
        rows: &[usize],
        seed: u64,
    ) -> Result<BatchStats> {
        check_rows(xs, ys, model.arch.outputs().len(), rows)?;
        check_weights(sample_weights, xs[0].rows())?;
        let batch = Batch { xs, ys, sample_weights };
        // On one device the weights are copied into the step's tensors as before: the kept
        // tensors and their transposes, written by the update, measured no faster there
        // (the update's extra writes cost what the copy and the kernel packing had).
        if let Executor::Replicated(set) = self {
            if set.merge == MergeDevice::Cpu && set.is_host_backed() {
                return train_host_replicas(set, model, compiled, &batch, rows, seed);
            }
        }
        let s = StepInputs::new(model, Some(compiled), rows.len(), seed)?;
        // Gradients per replica (host tensors), in replica order; the optimizer sums them as
        // it updates, reading them in place.
        let (grad_parts, stats, updates): (Vec<Vec<Tensor>>, BatchStats, StateUpdates) = match self {
            Executor::Local(info) => {
                let device = info.candle_device()?;
                let part = train_part(&s, &device, &batch, rows, 0, true).map_err(|e| explain_out_of_memory(e, &info.label()))?;
                let stats = combine(std::slice::from_ref(&part), rows.len(), s.metric_count());
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
                        fail_if_injected(injected)?;
                        train_part(s, &ctx.device, batch, mine, r, on_cpu)
                    }))
                })?;
                let stats = combine(&parts, rows.len(), s.metric_count());
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
            Executor::Local(_) => compiled.optimizer.apply_sharded(&mut model.weights, None, rayon::current_num_threads(), |shards| {
                use rayon::prelude::*;
                shards.into_par_iter().try_for_each(|shard| shard(&grad_parts))
            })?,
            // The update is shared out to the replica workers: the threads (and, for virtual
            // GPUs, the cores) the step already runs on.
            Executor::Replicated(set) => compiled.optimizer.apply_sharded(&mut model.weights, None, set.len(), |shards| {
                let shards: Vec<std::sync::Mutex<Option<crate::optim::UpdateShard<'_>>>> = shards.into_iter().map(|s| std::sync::Mutex::new(Some(s))).collect();
                let grad_parts = &grad_parts;
                set.run_all(|r| -> PartTask<'_, ()> {
                    let shard = shards[r].lock().ok()?.take()?;
                    Some(Box::new(move |_: &WorkerContext| shard(grad_parts)))
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
    pub fn test_on_batch(
        &self,
        model: &Model,
        compiled: &Compiled,
        xs: &[&dyn BatchSource],
        ys: &[&dyn BatchSource],
        sample_weights: Option<&dyn BatchSource>,
        rows: &[usize],
    ) -> Result<BatchStats> {
        check_rows(xs, ys, model.arch.outputs().len(), rows)?;
        check_weights(sample_weights, xs[0].rows())?;
        let batch = Batch { xs, ys, sample_weights };
        let s = StepInputs::new(model, Some(compiled), rows.len(), 0)?;
        let parts = match self {
            Executor::Local(info) => vec![eval_part(&s, &info.candle_device()?, &batch, rows, 0).map_err(|e| explain_out_of_memory(e, &info.label()))?],
            Executor::Replicated(set) => {
                let parts_rows = split_rows(rows, set.len());
                let (s, batch) = (&s, &batch);
                set.run_all(|r| -> PartTask<'_, Part> {
                    let mine = parts_rows[r]?;
                    Some(Box::new(move |ctx: &WorkerContext| eval_part(s, &ctx.device, batch, mine, r)))
                })?
            }
        };
        Ok(combine(&parts, rows.len(), s.metric_count()))
    }

    /// The model's outputs for `rows` of `x`; replicas' outputs are concatenated in row order
    /// on the merge device.
    pub fn predict_on_batch(&self, model: &Model, xs: &[&dyn BatchSource], rows: &[usize]) -> Result<Vec<HostTensor>> {
        check_batch(xs, rows)?;
        let s = StepInputs::new(model, None, rows.len(), 0)?;
        match self {
            Executor::Local(info) => predict_part(&s, &info.candle_device()?, xs, rows)
                .and_then(|outs| outs.iter().map(HostTensor::from_tensor).collect())
                .map_err(|e| explain_out_of_memory(e, &info.label())),
            Executor::Replicated(set) => {
                let parts_rows = split_rows(rows, set.len());
                let s = &s;
                let outs = set.run_all(|r| -> PartTask<'_, Vec<Tensor>> {
                    let mine = parts_rows[r]?;
                    Some(Box::new(move |ctx: &WorkerContext| predict_part(s, &ctx.device, xs, mine)))
                })?;
                let n_outputs = outs.first().map_or(0, |o| o.len());
                (0..n_outputs)
                    .map(|k| {
                        let per_replica: Vec<Tensor> = outs.iter().map(|o| o[k].clone()).collect();
                        match set.merge {
                            MergeDevice::Cpu => {
                                let host = per_replica.iter().map(HostTensor::from_tensor).collect::<Result<Vec<_>>>()?;
                                HostTensor::concat_rows(&host)
                            }
                            MergeDevice::FirstReplica => {
                                let parts = &per_replica;
                                let mut merged = set.run_all(|r| -> PartTask<'_, HostTensor> {
                                    (r == 0).then(|| {
                                        Box::new(move |ctx: &WorkerContext| {
                                            let on_first = parts.iter().map(|t| t.to_device(&ctx.device)).collect::<candle_core::Result<Vec<_>>>()?;
                                            HostTensor::from_tensor(&Tensor::cat(&on_first, 0)?)
                                        }) as Box<_>
                                    })
                                })?;
                                Ok(merged.remove(0))
                            }
                        }
                    })
                    .collect()
            }
        }
    }

    /// A row-major copy of a column-major array (see [`HostTensor::from_column_major`]),
    /// converted where the steps run: on the replicas' workers, each its share of the rows,
    /// for a replicated model (so that it uses their threads), else on the current pool.
    pub fn stage_column_major<T: Copy + Into<f64> + Sync>(&self, values: &[T], dims: &[usize]) -> Result<HostTensor> {
        let Executor::Replicated(set) = self else { return Ok(HostTensor::from_column_major(values, dims)) };
        let n = dims.first().copied().unwrap_or(0);
        let offsets = crate::tensor::column_to_row_major(dims.get(1..).unwrap_or(&[]));
        let width = offsets.len();
        let mut data = vec![0f32; n * width];
        let ranges = split_batch(n, set.len());
        {
            // Each replica takes the disjoint slice of the output that holds its rows.
            let mut rest: &mut [f32] = &mut data;
            let mut slices = Vec::with_capacity(ranges.len());
            for r in &ranges {
                let (mine, tail) = std::mem::take(&mut rest).split_at_mut(r.len() * width);
                slices.push(std::sync::Mutex::new(Some((r.start, mine))));
                rest = tail;
            }
            let (slices, offsets) = (&slices, &offsets);
            set.run_all(|r| -> PartTask<'_, ()> {
                let (first, out) = slices[r].lock().ok()?.take()?;
                (!out.is_empty()).then(|| {
                    Box::new(move |_: &WorkerContext| {
                        crate::tensor::column_major_rows_into(values, n, offsets, first, out);
                        Ok(())
                    }) as Box<_>
                })
            })?;
        }
        HostTensor::new(dims.to_vec(), data)
    }

    pub fn replica_count(&self) -> usize {
        match self {
            Executor::Local(_) => 1,
            Executor::Replicated(set) => set.len(),
        }
    }
}
