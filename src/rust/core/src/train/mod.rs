//! Training, evaluation and prediction steps: one file per execution strategy, the pieces
//! they share in `step`.
//! - `one_device`: a model that is not replicated (on the CPU, on a thread of the kernels' pool).
//! - `host_replicas`: replicas that all compute in host memory (virtual GPUs) merged on the
//!   CPU, in one fused round per step, with weight tensors kept between steps.
//! - `replicas`: replicas on any devices, in rounds, merged in host memory or on the first
//!   replica's device (`multi_gpu_model(cpu_merge = )`).
//! - `multi_worker`: one process per device, each its share of the rows, sums added up over
//!   the processes (`multi_worker_mirrored_strategy()`).
//!
//! Whatever the strategy, a step equals the template's step on the whole batch.
mod host_replicas;
mod multi_worker;
mod one_device;
mod replicas;
mod step;

use crate::collective::Ranked;
use crate::device::{DeviceInfo, DeviceKind};
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::metrics::Metric;
use crate::model::Model;
use crate::optim::Optimizer;
use crate::parallel::{MergeDevice, ReplicaSet};
use crate::tensor::{BatchSource, HostTensor};
use host_replicas::HostWeights;
use std::sync::{Arc, Mutex};
use step::Batch;

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
    /// Each metric's value on this batch.
    pub metrics: Vec<f64>,
    /// The sums the metrics come from (see `metrics::results`), which add up over batches:
    /// an epoch's or an evaluation's stateful metrics (precision, AUC) come from their totals.
    pub metric_sums: Vec<f64>,
}

/// Each metric's value, every output's in the order steps report them, from sums over
/// several batches (an epoch's, an evaluation's). Resolving a metric for its output ("accuracy"
/// as binary or categorical) does not change how its value follows from its sums, so the
/// compiled metrics serve for every output without resolving them again each batch.
pub fn metric_results(compiled: &Compiled, outputs: usize, sums: &[f64]) -> Vec<f64> {
    let per_output: Vec<&Metric> = (0..outputs).flat_map(|_| compiled.metrics.iter()).collect();
    crate::metrics::results(&per_output, sums)
}

/// Where a model's steps run: on one device, on the calling thread, on replicas, or as one
/// of the worker processes of a multi-worker job (on its device, on the calling thread).
pub enum Executor {
    Local(DeviceInfo),
    Replicated(Replicas),
    Workers(DeviceInfo, Arc<dyn Ranked>),
}

/// A model's replicas, and what their steps keep from one step to the next.
pub struct Replicas {
    pub set: ReplicaSet,
    /// The weight tensors replicas in host memory read (see `host_replicas`).
    host_weights: Mutex<HostWeights>,
}

impl Executor {
    pub fn replicated(set: ReplicaSet) -> Self {
        Executor::Replicated(Replicas { set, host_weights: Mutex::default() })
    }

    /// The replicas, for a replicated model.
    pub fn replica_set(&self) -> Option<&ReplicaSet> {
        match self {
            Executor::Local(_) | Executor::Workers(..) => None,
            Executor::Replicated(r) => Some(&r.set),
        }
    }

    /// The job, for a worker of a multi-worker job.
    pub fn workers(&self) -> Option<&Arc<dyn Ranked>> {
        match self {
            Executor::Workers(_, w) => Some(w),
            _ => None,
        }
    }

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
        // Checks every worker of a job makes alike come first: their errors are not failures
        // to tell the others (see `tell_the_other_workers`).
        check_rows(xs, ys, model.arch.outputs().len(), rows)?;
        check_weights(sample_weights, xs[0].rows())?;
        self.check_worker_batch(rows.len())?;
        self.check_step_memory(model, xs, rows.len(), true)?;
        let batch = Batch { xs, ys, sample_weights };
        // Regularization: its penalty (at the weights the step starts from) joins the loss,
        // its gradient the update's.
        compiled.optimizer.regularizers = model.arch.weight_regularizers();
        let (weight_loss, loss_gradients) = model.weight_losses(true)?;
        compiled.optimizer.loss_gradients = loss_gradients;
        let penalty = model.regularization_penalty(&compiled.optimizer.regularizers) + weight_loss;
        let mut stats = self
            .on_step_threads(|| match self {
                Executor::Local(info) => one_device::train(info, model, compiled, &batch, rows, seed),
                Executor::Workers(info, workers) => multi_worker::train(workers, info, model, compiled, &batch, rows, seed),
                Executor::Replicated(r) if r.set.merge == MergeDevice::Cpu && r.set.is_host_backed() => {
                    host_replicas::train(r, model, compiled, &batch, rows, seed)
                }
                Executor::Replicated(r) => replicas::train(&r.set, model, compiled, &batch, rows, seed),
            })
            .inspect_err(|e| self.tell_the_other_workers(e))?;
        model.apply_constraints()?;
        stats.loss += penalty;
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
        self.check_worker_batch(rows.len())?;
        self.check_step_memory(model, xs, rows.len(), false)?;
        let batch = Batch { xs, ys, sample_weights };
        let mut stats = self
            .on_step_threads(|| match self {
                Executor::Local(info) => one_device::evaluate(info, model, compiled, &batch, rows),
                Executor::Workers(info, workers) => multi_worker::evaluate(workers, info, model, compiled, &batch, rows),
                Executor::Replicated(r) => replicas::evaluate(&r.set, model, compiled, &batch, rows),
            })
            .inspect_err(|e| self.tell_the_other_workers(e))?;
        stats.loss += model.regularization_penalty(&model.arch.weight_regularizers()) + model.weight_losses(false)?.0;
        Ok(stats)
    }

    /// The model's outputs for `rows` of `x`, in row order. `seed`: random ops that run in
    /// inference too (draws in a lambda layer) draw from it.
    pub fn predict_on_batch(&self, model: &Model, xs: &[&dyn BatchSource], rows: &[usize], seed: u64) -> Result<Vec<HostTensor>> {
        let mut outs = self.predict_batches(model, xs, &[rows], seed)?;
        outs.pop().ok_or_else(|| Error::State("predict gave no outputs for the batch".into()))
    }

    /// The outputs of each of `batches` (rows of `xs`), as [`Self::predict_on_batch`] gives
    /// them with seed `seed + i` for batch `i`; on one device the weights are placed and
    /// folded once for all the batches.
    pub fn predict_batches(&self, model: &Model, xs: &[&dyn BatchSource], batches: &[&[usize]], seed: u64) -> Result<Vec<Vec<HostTensor>>> {
        for rows in batches {
            check_batch(xs, rows)?;
        }
        let largest = batches.iter().map(|b| b.len()).max().unwrap_or(0);
        self.check_step_memory(model, xs, largest, false)?;
        self.on_step_threads(|| match self {
            Executor::Local(info) | Executor::Workers(info, _) => one_device::predict_batches(info, model, xs, batches, seed),
            Executor::Replicated(r) => batches
                .iter()
                .enumerate()
                .map(|(i, rows)| {
                    crate::cancel::check()?;
                    replicas::predict(&r.set, model, xs, rows, seed.wrapping_add(i as u64))
                })
                .collect(),
        })
    }

    /// Runs a step's work: a one-device step on the CPU on a thread of the pool its kernels
    /// use (see [`crate::fork::on_pool_thread`]); others where they are called (a GPU's
    /// context is bound to the calling thread; replicas' work runs on their own workers).
    fn on_step_threads<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match self {
            Executor::Local(info) if info.kind == DeviceKind::Cpu => crate::fork::on_pool_thread(f),
            _ => crate::fork::on_own_pool(f),
        }
    }

    /// A row-major copy of a column-major array (see [`HostTensor::from_column_major`]),
    /// converted where the steps run: for a replicated model, on the replicas' workers
    /// (so that it uses their threads), else on the current pool.
    pub fn stage_column_major<T: Copy + Into<f64> + Sync>(&self, values: &[T], dims: &[usize]) -> Result<HostTensor> {
        crate::memory::check(
            &format!("a float copy of the data ({})", crate::shape::join_dims(dims)),
            crate::memory::elements(dims).and_then(|n| crate::memory::bytes(n, 4)),
            "pass the data in smaller pieces (fit_generator(), or fewer samples per call)",
        )?;
        match self {
            Executor::Local(_) | Executor::Workers(..) => crate::fork::on_own_pool(|| HostTensor::from_column_major(values, dims)),
            Executor::Replicated(r) => replicas::stage_column_major(&r.set, values, dims),
        }
    }

    /// A multi-worker step shares each batch's rows among the workers: at least one each.
    fn check_worker_batch(&self, rows: usize) -> Result<()> {
        match self {
            Executor::Workers(_, w) if rows < w.size() => Err(Error::Value(format!(
                "a batch of {} row{} cannot be shared by {} workers: each needs at least one row (fit() joins a short last batch to the one before)",
                rows,
                if rows == 1 { "" } else { "s" },
                w.size()
            ))),
            _ => Ok(()),
        }
    }

    /// A worker whose step failed tells the others, which wait for its sums (a failure it
    /// heard of from another worker is not its own).
    fn tell_the_other_workers(&self, e: &Error) {
        if let (Executor::Workers(_, workers), false) = (self, matches!(e, Error::Worker(_))) {
            workers.report_failure(&e.to_string());
        }
    }

    pub fn replica_count(&self) -> usize {
        match self {
            Executor::Local(_) | Executor::Workers(..) => 1,
            Executor::Replicated(r) => r.set.len(),
        }
    }
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

impl Executor {
    /// The CUDA devices a step runs on.
    fn cuda_devices(&self) -> Vec<&DeviceInfo> {
        let devices: Vec<&DeviceInfo> = match self {
            Executor::Local(d) | Executor::Workers(d, _) => vec![d],
            Executor::Replicated(r) => r.set.devices.iter().collect(),
        };
        devices.into_iter().filter(|d| d.kind == crate::device::DeviceKind::Cuda).collect()
    }

    /// Refuses a step whose activations would not fit in memory: every layer's output for
    /// each row, kept for the backward pass and about matched by the gradients flowing back
    /// when training (an estimate: convolutions' patch buffers come on top, inference frees
    /// as it goes). On GPUs, each one's share of the rows (the split is balanced, so at most
    /// rows / GPUs rounded up) against its free memory; else the host's memory.
    fn check_step_memory(&self, model: &Model, xs: &[&dyn BatchSource], rows: usize, training: bool) -> Result<()> {
        // A worker of a multi-worker job computes its share of the rows.
        let rows = match self {
            Executor::Workers(_, w) => rows.div_ceil(w.size().max(1)),
            _ => rows,
        };
        let sample_shapes: Vec<Vec<usize>> = xs.iter().map(|x| x.sample_shape()).collect();
        let per_row = model.arch.activation_elements_per_row(&sample_shapes);
        let copies = if training { 2 } else { 1 };
        let bytes = |rows: usize| per_row.and_then(|n| n.checked_mul(rows as u64)).and_then(|n| crate::memory::bytes(n, 4 * copies));
        let gpus = self.cuda_devices();
        if gpus.is_empty() {
            return crate::memory::check(&format!("a step on {} rows", rows), bytes(rows), "use a smaller batch_size");
        }
        let share = rows.div_ceil(gpus.len());
        // As the host check, small steps pass without asking the driver (every batch).
        if bytes(share).is_some_and(|b| b < crate::memory::SMALL) {
            return Ok(());
        }
        for gpu in gpus {
            if let Some(free) = gpu.free_memory() {
                crate::memory::check_on_gpu(&format!("a step on {} rows", share), bytes(share), &gpu.label(), free, "use a smaller batch_size")?;
            }
        }
        Ok(())
    }
}
