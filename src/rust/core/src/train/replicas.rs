//! Replicas on devices of any kind, in rounds: every replica computes its part of the step
//! on its rows; then the parts are merged where `multi_gpu_model()` asked: gradients and
//! predictions in host memory (`cpu_merge = TRUE`, each replica copying its own), or on the
//! first replica's device. The optimizer update is shared out to the replica workers.
//! (Virtual GPUs merged on the CPU train through `host_replicas` instead.)
use super::step::{
    average_updates, combine, eval_part, fail_if_injected, host_slices, predict_part, replica_group, split_rows, timed_replica_part, train_part, Batch,
    MaskCounts, Part, PartTask, StepInputs,
};
use super::{BatchStats, Compiled};
use crate::error::Result;
use crate::model::Model;
use crate::optim::UpdateShard;
use crate::parallel::{split_batch, MergeDevice, ReplicaSet, WorkerContext};
use crate::tensor::{BatchSource, HostTensor};
use candle_core::{Device, Tensor};
use std::sync::{Arc, Mutex};

/// One optimizer step; on any error the master weights are untouched.
pub(super) fn train(set: &ReplicaSet, model: &mut Model, compiled: &mut Compiled, batch: &Batch, rows: &[usize], seed: u64) -> Result<BatchStats> {
    let s = StepInputs::new(model, Some(compiled), rows.len(), seed)?;
    let parts_rows = split_rows(rows, set);
    let on_cpu = set.merge == MergeDevice::Cpu;
    let fault = set.fault_for_this_step();
    let counts = MaskCounts::for_step(&s, parts_rows.iter().flatten().count(), set.has_own_cores());
    let active: Vec<usize> = (0..set.len()).filter(|r| parts_rows[*r].is_some()).collect();
    let group = replica_group(active.len());
    let parts = {
        let (s, counts) = (&s, counts.as_ref());
        set.run_all(|r| -> PartTask<'_, Part> {
            let mine = parts_rows[r]?;
            let masks = MaskCounts::place(counts);
            let seat = group.as_ref().and_then(|g| Some(g.seat(active.iter().position(|a| *a == r)?)));
            let injected = fault.filter(|(replica, _)| *replica == r).map(|(_, kind)| kind);
            Some(Box::new(move |ctx: &WorkerContext| {
                fail_if_injected(injected)?;
                timed_replica_part(set, r, mine.len(), seat, |c| train_part(s, &ctx.device, batch, mine, r, on_cpu, masks, c, &mut |_, _| Ok(())))
            }))
        })?
    };
    let stats = combine(&parts, rows.len(), &s);
    let updates = average_updates(&parts);
    let grads: Vec<Vec<Tensor>> = parts.into_iter().map(|p| p.grads).collect();
    // Gradients per replica (host tensors), in replica order, which the optimizer sums as it
    // updates, reading them in place; or their sum, made on the first replica's device.
    let grad_parts = if on_cpu {
        grads
    } else {
        let grads = &grads;
        let mut out = set.run_all(|r| -> PartTask<'_, Vec<Tensor>> {
            (r == 0).then(|| Box::new(move |ctx: &WorkerContext| reduce_on_device(grads, &ctx.device)) as Box<_>)
        })?;
        vec![out.remove(0)]
    };
    // Release this step's snapshot so the optimizer can write the weights in place.
    drop(s);
    let guards: Vec<Vec<_>> = grad_parts.iter().map(|ts| ts.iter().map(|t| t.storage_and_layout()).collect()).collect();
    let grad_parts = host_slices(&guards)?;
    // Keras keeps training on a NaN loss (a callback may stop it), so no check here. The
    // update runs on the replica workers: the threads (and, for virtual GPUs, the cores)
    // the step already runs on.
    compiled.optimizer.apply_sharded(&mut model.weights, None, set.len(), |shards| {
        let shards: Vec<Mutex<Option<UpdateShard<'_>>>> = shards.into_iter().map(|s| Mutex::new(Some(s))).collect();
        let grad_parts = &grad_parts;
        set.run_all(|r| -> PartTask<'_, ()> {
            let shard = shards[r].lock().ok()?.take()?;
            Some(Box::new(move |_: &WorkerContext| shard(grad_parts)))
        })?;
        Ok(())
    })?;
    for (i, value) in updates {
        model.weights[i].value = Arc::new(value);
    }
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

pub(super) fn evaluate(set: &ReplicaSet, model: &Model, compiled: &Compiled, batch: &Batch, rows: &[usize]) -> Result<BatchStats> {
    let s = StepInputs::new(model, Some(compiled), rows.len(), 0)?;
    let parts_rows = split_rows(rows, set);
    let counts = MaskCounts::for_step(&s, parts_rows.iter().flatten().count(), set.has_own_cores());
    let parts = {
        let (s, counts) = (&s, counts.as_ref());
        set.run_all(|r| -> PartTask<'_, Part> {
            let mine = parts_rows[r]?;
            let masks = MaskCounts::place(counts);
            Some(Box::new(move |ctx: &WorkerContext| eval_part(s, &ctx.device, batch, mine, r, masks)))
        })?
    };
    Ok(combine(&parts, rows.len(), &s))
}

/// The replicas' outputs, concatenated in row order on the merge device.
pub(super) fn predict(set: &ReplicaSet, model: &Model, xs: &[&dyn BatchSource], rows: &[usize], seed: u64) -> Result<Vec<HostTensor>> {
    let s = StepInputs::new(model, None, rows.len(), seed)?;
    let parts_rows = split_rows(rows, set);
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

/// A row-major copy of a column-major array (see [`HostTensor::from_column_major`]),
/// converted on the replicas' workers, each its share of the rows (so that it uses their
/// threads).
pub(super) fn stage_column_major<T: Copy + Into<f64> + Sync>(set: &ReplicaSet, values: &[T], dims: &[usize]) -> Result<HostTensor> {
    let n = dims.first().copied().unwrap_or(0);
    let offsets = crate::tensor::column_to_row_major(dims.get(1..).unwrap_or(&[]));
    let width = offsets.len();
    let mut data = crate::memory::zeroed_f32(n * width, "a float copy of the data")?;
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
            (!out.is_empty()).then(|| Box::new(move |_: &WorkerContext| crate::tensor::column_major_rows_into(values, n, offsets, first, out)) as Box<_>)
        })?;
    }
    HostTensor::new(dims.to_vec(), data)
}
