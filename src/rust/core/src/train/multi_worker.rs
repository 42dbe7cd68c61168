//! Workers: one process per device or node (`multi_worker_mirrored_strategy()`, started by
//! MPI's launcher), each holding the whole model. Every worker takes its contiguous share of
//! each global batch's rows and computes its part of the step on its device; the parts' sums
//! (gradients, loss, metrics, moving statistics weighted by rows) are added up over all
//! workers in one all-reduce, and then every worker applies the same update to the same
//! weights, so that the workers stay equal to each other and to one process training on the
//! whole batch. Predictions need no exchange: each worker predicts all the rows it is given.
use super::step::{combine, eval_part, train_part, Batch, MaskTotals, Part, StepInputs};
use super::{BatchStats, Compiled};
use crate::collective::{Collective, Ranked};
use crate::device::DeviceInfo;
use crate::error::{explain_out_of_memory, Error, Result};
use crate::model::Model;
use crate::parallel::split_batch;
use candle_core::{Device, Tensor};
use std::sync::Arc;

/// This worker's rows of a global batch.
fn my_rows<'r>(workers: &dyn Ranked, rows: &'r [usize]) -> Result<&'r [usize]> {
    let size = workers.size();
    if rows.len() < size {
        return Err(Error::Value(format!(
            "a batch of {} row{} cannot be shared by {} workers: use a batch_size of at least {} (and at least as many samples)",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" },
            size,
            size
        )));
    }
    Ok(&rows[split_batch(rows.len(), size)[workers.rank()].clone()])
}

fn masks_across<'a>(s: &StepInputs, workers: &'a dyn Ranked) -> MaskTotals<'a> {
    if s.arch.makes_masks() {
        MaskTotals::Across(workers)
    } else {
        MaskTotals::Own
    }
}

/// The part's sums in one vector for the all-reduce: gradients, then the loss, each output's
/// loss, the metrics' sums, and each moving statistic times the part's rows.
fn flatten(part: &Part) -> Result<Vec<f64>> {
    let mut v = Vec::new();
    for g in &part.grads {
        v.extend(g.flatten_all()?.to_vec1::<f32>()?.into_iter().map(f64::from));
    }
    v.push(part.loss_sum);
    v.extend(&part.output_losses);
    v.extend(&part.metric_sums);
    for (_, u) in &part.updates {
        v.extend(u.iter().map(|x| f64::from(*x) * part.rows as f64));
    }
    Ok(v)
}

/// The whole batch's part from the added-up sums (`rows`: the global batch's).
fn unflatten(template: Part, sums: &[f64], rows: usize) -> Result<Part> {
    let mut at = 0;
    let mut take = |n: usize| {
        let s = &sums[at..at + n];
        at += n;
        s
    };
    let grads = template
        .grads
        .iter()
        .map(|g| Ok(Tensor::from_vec(take(g.elem_count()).iter().map(|x| *x as f32).collect::<Vec<f32>>(), g.dims(), &Device::Cpu)?))
        .collect::<Result<Vec<_>>>()?;
    let loss_sum = take(1)[0];
    let output_losses = take(template.output_losses.len()).to_vec();
    let metric_sums = take(template.metric_sums.len()).to_vec();
    let updates = template.updates.iter().map(|(i, u)| (*i, take(u.len()).iter().map(|x| (*x / rows as f64) as f32).collect())).collect();
    Ok(Part { grads, loss_sum, output_losses, metric_sums, updates, rows })
}

/// Adds up every worker's part of the step.
fn all_parts(workers: &dyn Ranked, part: Part, rows: usize) -> Result<Part> {
    let mut sums = flatten(&part)?;
    workers.all_reduce_sum(&mut sums)?;
    unflatten(part, &sums, rows)
}

/// One optimizer step on this worker's share of `rows`; every worker ends with the same
/// weights. On any error the weights are untouched, on this worker and (since they wait for
/// this one's sums, and hear of its failure) on every other.
pub(super) fn train(
    workers: &Arc<dyn Ranked>,
    info: &DeviceInfo,
    model: &mut Model,
    compiled: &mut Compiled,
    batch: &Batch,
    rows: &[usize],
    seed: u64,
) -> Result<BatchStats> {
    let mine = my_rows(workers.as_ref(), rows)?;
    let s = StepInputs::new(model, Some(compiled), rows.len(), seed)?;
    let device = info.candle_device()?;
    let collective: Arc<dyn Collective> = workers.clone();
    let part = train_part(&s, &device, batch, mine, workers.rank(), true, masks_across(&s, workers.as_ref()), Some(collective))
        .map_err(|e| explain_out_of_memory(e, &info.label()))?;
    let whole = all_parts(workers.as_ref(), part, rows.len())?;
    let stats = combine(std::slice::from_ref(&whole), rows.len(), &s);
    drop(s);
    super::one_device::apply_update(model, compiled, whole)?;
    Ok(stats)
}

pub(super) fn evaluate(workers: &Arc<dyn Ranked>, info: &DeviceInfo, model: &Model, compiled: &Compiled, batch: &Batch, rows: &[usize]) -> Result<BatchStats> {
    let mine = my_rows(workers.as_ref(), rows)?;
    let s = StepInputs::new(model, Some(compiled), rows.len(), 0)?;
    let part = eval_part(&s, &info.candle_device()?, batch, mine, workers.rank(), masks_across(&s, workers.as_ref()))
        .map_err(|e| explain_out_of_memory(e, &info.label()))?;
    let whole = all_parts(workers.as_ref(), part, rows.len())?;
    Ok(combine(std::slice::from_ref(&whole), rows.len(), &s))
}
