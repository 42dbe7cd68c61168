//! Steps on one device (a model that is not replicated; on the CPU they run on a thread
//! of the kernels' pool, see `Executor::on_step_threads`). The weights are copied into the
//! step's tensors each step: kept tensors and their
//! transposes, written by the update as `host_replicas` does, measured no faster here (the
//! update's extra writes cost what the copy and the kernel packing had).
use super::step::{combine, eval_part, host_slices, predict_parts, train_part, Batch, MaskTotals, Part, StepInputs};
use super::{BatchStats, Compiled};
use crate::device::DeviceInfo;
use crate::error::{explain_out_of_memory, Result};
use crate::model::Model;
use crate::tensor::{BatchSource, HostTensor};
use std::sync::Arc;

/// One optimizer step; on any error the master weights are untouched.
pub(super) fn train(info: &DeviceInfo, model: &mut Model, compiled: &mut Compiled, batch: &Batch, rows: &[usize], seed: u64) -> Result<BatchStats> {
    let s = StepInputs::new(model, Some(compiled), rows.len(), seed)?;
    let device = info.candle_device()?;
    let part = train_part(&s, &device, batch, rows, 0, true, MaskTotals::Own, None, &mut |_, _| Ok(())).map_err(|e| explain_out_of_memory(e, &info.label()))?;
    let stats = combine(std::slice::from_ref(&part), rows.len(), &s);
    // Release this step's snapshot so the optimizer can write the weights in place.
    drop(s);
    apply_update(model, compiled, part)?;
    Ok(stats)
}

/// The optimizer step from a whole batch's part (its gradients in host memory), and its new
/// moving statistics.
pub(super) fn apply_update(model: &mut Model, compiled: &mut Compiled, part: Part) -> Result<()> {
    let grad_parts = [part.grads];
    let guards: Vec<Vec<_>> = grad_parts.iter().map(|ts| ts.iter().map(|t| t.storage_and_layout()).collect()).collect();
    let grad_parts = host_slices(&guards)?;
    // Keras keeps training on a NaN loss (a callback may stop it), so no check here.
    compiled.optimizer.apply_sharded(&mut model.weights, None, rayon::current_num_threads(), |shards| {
        use rayon::prelude::*;
        shards.into_par_iter().try_for_each(|shard| shard(&grad_parts))
    })?;
    for (i, value) in part.updates {
        model.weights[i].value = Arc::new(value);
    }
    Ok(())
}

pub(super) fn evaluate(info: &DeviceInfo, model: &Model, compiled: &Compiled, batch: &Batch, rows: &[usize]) -> Result<BatchStats> {
    let s = StepInputs::new(model, Some(compiled), rows.len(), 0)?;
    let part = eval_part(&s, &info.candle_device()?, batch, rows, 0, MaskTotals::Own).map_err(|e| explain_out_of_memory(e, &info.label()))?;
    Ok(combine(std::slice::from_ref(&part), rows.len(), &s))
}

/// The outputs of several batches, with one inference plan for all (see
/// [`super::step::predict_parts`]).
pub(super) fn predict_batches(info: &DeviceInfo, model: &Model, xs: &[&dyn BatchSource], batches: &[&[usize]], seed: u64) -> Result<Vec<Vec<HostTensor>>> {
    let largest = batches.iter().map(|b| b.len()).max().unwrap_or(0);
    let s = StepInputs::new(model, None, largest, seed)?;
    predict_parts(&s, &info.candle_device()?, xs, batches).map_err(|e| explain_out_of_memory(e, &info.label()))
}
