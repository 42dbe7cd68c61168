//! The pieces every execution strategy shares: a step's read-only inputs, one replica's
//! (or the one device's) part of a training, evaluation or prediction step, and how parts
//! combine. Every replica runs the same `*_part` function on its rows; parts add up so that
//! a step equals the template's step on the whole batch.
use super::{BatchStats, Compiled};
use crate::collective::{Collective, ReplicaGroup, Seat};
use crate::error::{Error, Result};
use crate::layers::{ForwardContext, OutputGrad};
use crate::loss::Loss;
use crate::metrics::Metric;
use crate::model::{weights_to_device, Architecture, Forward, Model, ModelOutput};
use crate::parallel::{Arrival, FaultKind, ReplicaSet, StepBarrier, WorkerContext};
use crate::tensor::{BatchSource, HostTensor};
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use std::sync::{Arc, Mutex};

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
    /// Model nodes whose outputs losses read besides the model's outputs.
    pub(super) loss_nodes: Vec<usize>,
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

impl Part {
    /// The part without its gradients (its other sums, to add up on their own).
    pub(super) fn clone_sums(&self) -> Part {
        Part {
            grads: Vec::new(),
            loss_sum: self.loss_sum,
            output_losses: self.output_losses.clone(),
            metric_sums: self.metric_sums.clone(),
            updates: self.updates.clone(),
            rows: self.rows,
        }
    }
}

impl StepInputs {
    pub(super) fn new(model: &Model, compiled: Option<&Compiled>, total_rows: usize, seed: u64) -> Result<Self> {
        if model.arch.layers.is_empty() && model.arch.graph.is_none() {
            // Keras refuses a sequential model without layers (pop_layer() took them all).
            return Err(Error::State("the model has no layers: add layers before using it".into()));
        }
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
                    .enumerate()
                    .map(|(k, (shape, loss))| c.metrics.iter().map(|m| m.resolved_for(k, loss, shape.last().copied().unwrap_or(1))).collect())
                    .collect::<Result<Vec<Vec<Metric>>>>()?;
                (c.losses.clone(), c.loss_weights.clone(), metrics)
            }
            None => (vec![Loss::parse("mean_squared_error")?; n], vec![1.0; n], vec![Vec::new(); n]),
        };
        let loss_nodes: Vec<usize> = losses.iter().flat_map(|l| l.extra_nodes().iter().copied()).collect();
        let node_count = model.arch.nodes().len();
        if let Some(n) = loss_nodes.iter().find(|n| **n >= node_count) {
            return Err(Error::Value(format!("the loss reads node {} of a model with {} nodes: compile the model the loss was written for", n, node_count)));
        }
        Ok(Self {
            loss_nodes,
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

/// A forward pass's weights and inputs on `device`, and its context.
fn forward_inputs(
    s: &StepInputs,
    device: &Device,
    xs: &[HostTensor],
    training: bool,
    replica: usize,
    collective: Option<Arc<dyn Collective>>,
) -> Result<(Vec<Tensor>, Vec<Tensor>, ForwardContext)> {
    let xs = xs.iter().map(|x| x.to_device(device)).collect::<Result<Vec<_>>>()?;
    Ok((step_weights(s, device)?, xs, ForwardContext { training, rng: step_rng(s.seed, replica), mask: None, collective }))
}

/// The step's weights as tensors on `device`: the kept host tensors on the CPU where there
/// are some, else a copy.
fn step_weights(s: &StepInputs, device: &Device) -> Result<Vec<Tensor>> {
    match &s.host_tensors {
        Some(tensors) if device.is_cpu() => Ok(tensors.clone()),
        _ => weights_to_device(&s.weights, &s.shapes, device),
    }
}

/// The random draws of a step with this seed, on this replica.
fn step_rng(seed: u64, replica: usize) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(replica as u64))
}

/// The exchange of a step on `active` replicas (none for one: nothing to share).
pub(super) fn replica_group(active: usize) -> Option<Arc<ReplicaGroup>> {
    (active > 1).then(|| ReplicaGroup::new(active))
}

/// Where the replicas of a step add up their outputs' mask counts. Keras divides a masked
/// output's loss by the count of unmasked time steps in the batch, so a replica's share of
/// the gradient needs every replica's count: each waits for the others after its forward pass.
pub(super) struct MaskCounts {
    barrier: StepBarrier,
    sums: Mutex<Vec<f64>>,
}

impl MaskCounts {
    /// For a step on `parties` replicas of `s`'s model; none when there is nothing to share
    /// (one replica, or a model that makes no masks).
    pub(super) fn for_step(s: &StepInputs, parties: usize, spin: bool) -> Option<Self> {
        (parties > 1 && s.arch.makes_masks()).then(|| Self { barrier: StepBarrier::new(parties, spin), sums: Mutex::new(Vec::new()) })
    }

    /// This replica's place in the exchange, taken before its task is queued: a task that
    /// never runs or fails first releases the others.
    pub(super) fn place(counts: Option<&Self>) -> MaskTotals<'_> {
        match counts {
            Some(c) => MaskTotals::Shared(c, Arrival::new(&c.barrier)),
            None => MaskTotals::Own,
        }
    }
}

/// Where a part gets its batch's mask counts: from its own rows (the whole batch), or from
/// every replica's.
pub(super) enum MaskTotals<'b> {
    Own,
    Shared(&'b MaskCounts, Arrival<'b>),
    /// Added up over the workers of a multi-worker job.
    Across(&'b dyn Collective),
}

impl MaskTotals<'_> {
    fn totals(self, mut mine: Vec<f64>) -> Result<Vec<f64>> {
        let (counts, arrival) = match self {
            MaskTotals::Own => return Ok(mine),
            MaskTotals::Across(collective) => {
                collective.all_reduce_sum(&mut mine)?;
                return Ok(mine);
            }
            MaskTotals::Shared(counts, arrival) => (counts, arrival),
        };
        {
            let mut sums = counts.sums.lock().unwrap_or_else(|e| e.into_inner());
            sums.resize(mine.len(), 0.0);
            sums.iter_mut().zip(&mine).for_each(|(a, b)| *a += b);
        }
        if !arrival.arrive() {
            return Err(Error::State(crate::collective::PEER_FAILED.into()));
        }
        Ok(counts.sums.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// One output's loss over this part's rows, as the loss and the gradient see it: each time
/// step its own row where a mask applies (Keras: the sum of the unmasked steps' losses,
/// times the sample weights, over the batch's count of unmasked steps), else each sample.
struct OutputTerm {
    out: ModelOutput,
    y: Tensor,
    /// Weight of each row of `out` (mask times sample weight), if not all 1.
    weights: Option<Tensor>,
    /// What the rows' weighted sum is divided by: the batch's rows or unmasked steps.
    divisor: usize,
    /// The output's shapes, to bring a per-step gradient back (value, logits).
    shapes: Option<(Vec<usize>, Option<Vec<usize>>)>,
    /// The outputs of the model nodes the loss reads (see `Loss::extra_nodes`).
    extras: Vec<Tensor>,
}

/// This part's count of unmasked time steps of each output (0 where no mask applies).
fn mask_counts(f: &Forward) -> Result<Vec<f64>> {
    f.outputs
        .iter()
        .zip(&f.output_masks)
        .map(|(out, mask)| match crate::loss::step_mask(&out.value, mask.as_ref()) {
            Some(m) => Ok(m.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?),
            None => Ok(0.0),
        })
        .collect()
}

fn output_terms(s: &StepInputs, f: &Forward, ys: &[Tensor], w: Option<&Tensor>, mask_totals: &[f64]) -> Result<Vec<OutputTerm>> {
    f.outputs
        .iter()
        .zip(&f.output_masks)
        .zip(ys)
        .zip(mask_totals)
        .enumerate()
        .map(|(k, (((out, mask), y), total))| {
            let extras = s.losses[k]
                .extra_nodes()
                .iter()
                .map(|n| f.recorded.iter().find(|(j, _)| j == n).map(|(_, t)| t.clone()).ok_or_else(|| Error::State(format!("node {} was not recorded", n))))
                .collect::<Result<Vec<_>>>()?;
            let Some(mask) = crate::loss::step_mask(&out.value, mask.as_ref()) else {
                return Ok(OutputTerm { out: out.clone(), y: y.clone(), weights: w.cloned(), divisor: s.total_rows, shapes: None, extras });
            };
            if !extras.is_empty() {
                return Err(Error::Value("a loss that reads model tensors cannot be used on a masked sequence output yet".into()));
            }
            let steps = mask.dim(1)?;
            let weights = match w {
                Some(w) => mask.broadcast_mul(&w.unsqueeze(1)?.to_dtype(mask.dtype())?)?,
                None => mask.clone(),
            };
            let shapes = (out.value.dims().to_vec(), out.logits.as_ref().map(|(l, _)| l.dims().to_vec()));
            let logits = match &out.logits {
                Some((l, a)) if l.dims().len() >= 3 && l.dim(1)? == steps => Some((crate::loss::steps_as_rows(l)?, *a)),
                _ => None,
            };
            Ok(OutputTerm {
                out: ModelOutput { value: crate::loss::steps_as_rows(&out.value)?, logits },
                y: crate::loss::steps_as_rows(y)?,
                weights: Some(weights.flatten_all()?),
                // Mask counts are whole numbers (masks are 0 or 1).
                divisor: total.round() as usize,
                shapes: Some(shapes),
                extras,
            })
        })
        .collect()
}

impl OutputTerm {
    /// The output's share of the batch loss from these rows.
    fn loss(&self, loss: &Loss) -> Result<f64> {
        if self.divisor == 0 {
            // Every step masked: nothing to learn from (Keras's division would give NaN).
            return Ok(0.0);
        }
        let per_row = loss.per_sample_with(&self.out, &self.y, &self.extras)?;
        let per_row = match &self.weights {
            Some(w) => per_row.mul(w)?,
            None => per_row,
        };
        Ok((per_row.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?) / self.divisor as f64)
    }

    /// The gradient of [`Self::loss`] times `scale` (the output's loss weight), shaped as
    /// the model's output (or its logits), and the gradients of the model tensors the loss
    /// reads (node, gradient).
    fn gradient(&self, loss: &Loss, scale: f64) -> Result<(OutputGrad, Vec<(usize, Tensor)>)> {
        let (g, extra) = if self.divisor == 0 {
            let g = match loss.gradient(&self.out, &self.y, 1)? {
                OutputGrad::Value(t) => OutputGrad::Value(t.zeros_like()?),
                OutputGrad::Logits(t) => OutputGrad::Logits(t.zeros_like()?),
            };
            (g, Vec::new())
        } else {
            let (g, extra) = loss.gradient_with(&self.out, &self.y, self.divisor, &self.extras)?;
            let weighted = |g: OutputGrad| weight_rows(g, self.weights.as_ref());
            let extra = extra.into_iter().map(|t| weighted(OutputGrad::Value(t))?.value("a model tensor")).collect::<Result<Vec<_>>>()?;
            (weighted(g)?, extra)
        };
        let extra =
            loss.extra_nodes().iter().copied().zip(extra).map(|(n, t)| Ok((n, if scale == 1.0 { t } else { (t * scale)? }))).collect::<Result<Vec<_>>>()?;
        let shaped = |t: Tensor, shape: Option<&Vec<usize>>| -> Result<Tensor> {
            let t = if scale == 1.0 { t } else { (t * scale)? };
            Ok(match shape {
                Some(shape) => t.reshape(shape.as_slice())?,
                None => t,
            })
        };
        let (value_shape, logits_shape) = match &self.shapes {
            Some((v, l)) => (Some(v), l.as_ref()),
            None => (None, None),
        };
        let g = match g {
            OutputGrad::Value(t) => OutputGrad::Value(shaped(t, value_shape)?),
            OutputGrad::Logits(t) => OutputGrad::Logits(shaped(t, logits_shape)?),
        };
        Ok((g, extra))
    }
}

/// Scales each row's gradient by its weight.
fn weight_rows(g: OutputGrad, w: Option<&Tensor>) -> Result<OutputGrad> {
    let Some(w) = w else { return Ok(g) };
    let scale = |t: Tensor| -> Result<Tensor> {
        let mut shape = vec![t.dim(0)?];
        shape.resize(t.rank(), 1);
        Ok(t.broadcast_mul(&w.reshape(shape)?.to_dtype(t.dtype())?)?)
    };
    Ok(match g {
        OutputGrad::Value(t) => OutputGrad::Value(scale(t)?),
        OutputGrad::Logits(t) => OutputGrad::Logits(scale(t)?),
    })
}

/// Each output's loss, and the metrics' sums output by output.
fn losses_and_metrics(s: &StepInputs, f: &Forward, terms: &[OutputTerm], ys: &[Tensor]) -> Result<(Vec<f64>, Vec<f64>)> {
    let losses = terms.iter().enumerate().map(|(k, t)| t.loss(&s.losses[k])).collect::<Result<Vec<_>>>()?;
    let mut metric_sums = Vec::new();
    for (k, (out, y)) in f.outputs.iter().zip(ys).enumerate() {
        for m in &s.metrics[k] {
            metric_sums.extend(m.batch_sums(&out.value, y, f.output_masks[k].as_ref())?);
        }
    }
    Ok((losses, metric_sums))
}

fn weighted_total(s: &StepInputs, losses: &[f64]) -> f64 {
    losses.iter().zip(&s.loss_weights).map(|(l, w)| l * w).sum()
}

/// The targets on the device, and each output's loss term.
fn targets_and_terms(
    s: &StepInputs,
    device: &Device,
    f: &Forward,
    ys: Vec<HostTensor>,
    sample_weights: Option<HostTensor>,
    masks: MaskTotals<'_>,
) -> Result<(Vec<Tensor>, Vec<OutputTerm>)> {
    let ys = ys.iter().map(|y| y.to_device(device)).collect::<Result<Vec<_>>>()?;
    let sw = sample_weights.map(|w| w.to_device(device)).transpose()?;
    let totals = masks.totals(mask_counts(f)?)?;
    let terms = output_terms(s, f, &ys, sw.as_ref(), &totals)?;
    Ok((ys, terms))
}

/// A replica's rows: gathered (converted) by the replica itself, then its part of the step.
/// `collective`: where the parts of the step (replicas, workers) share what synchronized
/// layers add up (none on one device). `on_final`: called with each layer's gradients as
/// soon as the backward pass has them (see `Architecture::backward_with_extra`).
// A replica's part needs the step, its device and rows, and its places in the exchanges.
#[allow(clippy::too_many_arguments)]
pub(super) fn train_part(
    s: &StepInputs,
    device: &Device,
    batch: &Batch,
    rows: &[usize],
    replica: usize,
    to_host: bool,
    masks: MaskTotals<'_>,
    collective: Option<Arc<dyn Collective>>,
    on_final: &mut crate::model::OnLayerFinished<'_>,
) -> Result<Part> {
    let (x, ys, sample_weights) = batch.gather(s, rows)?;
    let (weights, xs, mut ctx) = forward_inputs(s, device, &x, true, replica, collective)?;
    let f = s.arch.forward_recording(&weights, &xs, &mut ctx, &s.loss_nodes)?;
    let (activity_penalty, activity_grads) = s.arch.activity_penalty(&f.recorded, s.total_rows)?;
    let (ys, terms) = targets_and_terms(s, device, &f, ys, sample_weights, masks)?;
    let (output_losses, metric_sums) = losses_and_metrics(s, &f, &terms, &ys)?;
    let mut output_grads = Vec::with_capacity(terms.len());
    let mut activity_grads = activity_grads;
    for (k, t) in terms.iter().enumerate() {
        let (g, extra) = t.gradient(&s.losses[k], s.loss_weights[k])?;
        output_grads.push(g);
        activity_grads.extend(extra);
    }
    drop(terms);
    let transposed: &[Option<Tensor>] = if device.is_cpu() { &s.host_transposed } else { &[] };
    let grads = s.arch.backward_with_extra(&weights, transposed, &f.caches, output_grads, activity_grads, on_final)?;
    let updates = s
        .arch
        .state_updates(&f.caches)
        .into_iter()
        .map(|(i, t)| Ok((i, t.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?)))
        .collect::<Result<Vec<_>>>()?;
    let grads = if to_host { grads.iter().map(|g| g.to_device(&Device::Cpu)).collect::<candle_core::Result<_>>()? } else { grads };
    // Keras reports the total loss with the activity penalties, each output's loss without.
    Ok(Part { grads, loss_sum: weighted_total(s, &output_losses) + activity_penalty, output_losses, metric_sums, updates, rows: rows.len() })
}

pub(super) fn eval_part(s: &StepInputs, device: &Device, batch: &Batch, rows: &[usize], replica: usize, masks: MaskTotals<'_>) -> Result<Part> {
    let (x, ys, sample_weights) = batch.gather(s, rows)?;
    let (weights, xs, mut ctx) = forward_inputs(s, device, &x, false, replica, None)?;
    let f = s.arch.forward_recording(&weights, &xs, &mut ctx, &s.loss_nodes)?;
    let (activity_penalty, _) = s.arch.activity_penalty(&f.recorded, s.total_rows)?;
    let (ys, terms) = targets_and_terms(s, device, &f, ys, sample_weights, masks)?;
    let (output_losses, metric_sums) = losses_and_metrics(s, &f, &terms, &ys)?;
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
    // No backward pass follows: batch normalization and ReLUs fold into the convolutions.
    let (weights, xs, mut ctx) = forward_inputs(s, device, &gathered, false, 0, None)?;
    Ok(s.arch.forward_inference(&weights, &xs, &mut ctx)?.into_iter().map(|o| o.value).collect())
}

/// The outputs for each of `batches` (rows of `xs`) on one device: the weights go to the
/// device and the inference plan (`Architecture::inference_plan`: folded layers and weights)
/// is made once for all of them. Batch `i`'s random draws come from `s.seed + i`, as from
/// [`predict_part`] with that seed; each batch's outputs go to host memory before the next
/// batch runs. Per batch, the copy of the weights and the folding were
/// most of application_xception's 20.9 M weights read and written anew (10% of its predict
/// in page clearing and copies; perf).
pub(super) fn predict_parts(s: &StepInputs, device: &Device, xs: &[&dyn BatchSource], batches: &[&[usize]]) -> Result<Vec<Vec<HostTensor>>> {
    let weights = step_weights(s, device)?;
    let plan = s.arch.inference_plan(&weights)?;
    batches
        .iter()
        .enumerate()
        .map(|(i, rows)| {
            crate::cancel::check()?;
            let xs = xs.iter().map(|x| x.gather(rows).to_device(device)).collect::<Result<Vec<_>>>()?;
            let mut ctx = ForwardContext { training: false, rng: step_rng(s.seed.wrapping_add(i as u64), 0), mask: None, collective: None };
            // To host memory batch by batch: on a GPU only one batch's outputs at a time.
            s.arch.forward_planned(&plan, &weights, &xs, &mut ctx)?.iter().map(|o| HostTensor::from_tensor(&o.value)).collect()
        })
        .collect()
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
        // A model with inputs of variable size has the output shapes of this batch's sizes.
        let batch_shapes;
        let output_shapes = if s.arch.has_variable_inputs() {
            batch_shapes = s.arch.output_shapes_for(&self.xs.iter().map(|x| x.sample_shape()).collect::<Vec<_>>());
            &batch_shapes
        } else {
            &s.output_shapes
        };
        let ys = self.ys.iter().enumerate().map(|(k, y)| s.losses[k].prepare_targets(&y.gather(rows), &output_shapes[k])).collect::<Result<Vec<_>>>()?;
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
    BatchStats { rows, loss, output_losses, metrics: crate::metrics::results(&s.all_metrics(), &metrics), metric_sums: metrics }
}

pub(super) type PartTask<'env, T> = Option<Box<dyn FnOnce(&WorkerContext) -> Result<T> + Send + 'env>>;

/// Each replica's rows (None for a replica that sits this batch out).
pub(super) fn split_rows<'r>(rows: &'r [usize], set: &ReplicaSet) -> Vec<Option<&'r [usize]>> {
    set.split.ranges(rows.len()).into_iter().map(|r| (!r.is_empty()).then(|| &rows[r])).collect()
}

/// A replica's part of a training step (`part`, given the replica's place in the step's
/// exchange), timed for the measured split (with the test hook's delay); the seat is
/// finished once the part got through every exchange.
pub(super) fn timed_replica_part(
    set: &ReplicaSet,
    replica: usize,
    rows: usize,
    seat: Option<Seat>,
    part: impl FnOnce(Option<Arc<dyn Collective>>) -> Result<Part>,
) -> Result<Part> {
    let start = std::time::Instant::now();
    let delay = set.split.delay(replica, rows);
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let done = part(seat.as_ref().map(Seat::member))?;
    set.split.record(replica, rows, start.elapsed());
    if let Some(seat) = seat {
        seat.finish();
    }
    Ok(done)
}
