//! Replicas that all compute in host memory (virtual GPUs), merged on the CPU: one task per
//! replica runs its forward and backward pass and then, once every replica's gradients are
//! there, its share of the optimizer update. The weight tensors the replicas read are kept
//! from one step to the next ([`HostWeights`]), written by the update itself.
use super::step::{
    average_updates, combine, fail_if_injected, host_slices, replica_group, split_rows, timed_replica_part, train_part, Batch, MaskCounts, Part, PartTask,
    StepInputs,
};
use super::{BatchStats, Compiled, Replicas};
use crate::error::{Error, Result};
use crate::model::{Model, Weight};
use crate::optim::{Mirror, UpdateShard};
use crate::parallel::{Arrival, StepBarrier, WorkerContext};
use candle_core::{Device, Tensor};
use std::sync::{Arc, Mutex};

/// A training step's inputs when its replicas compute in host memory (virtual GPUs): the
/// weights as the kept host tensors (made from the master values where these
/// changed), and empty mirrors for the update to write the next step's tensors into.
fn host_step(model: &Model, cache: &mut HostWeights, compiled: &Compiled, rows: usize, seed: u64) -> Result<(StepInputs, Vec<Mirror>)> {
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
        .map(|(w, wanted)| Mirror { transpose: (*wanted && w.shape.len() == 2).then(|| (w.shape[0], w.shape[1])), ..Default::default() })
        .collect();
    Ok((s, mirrors))
}

/// After a successful update: the mirrors become the next step's tensors, the moving
/// statistics the replicas computed are stored, and the cache keeps it all.
fn keep_host_weights(model: &mut Model, cache: &mut HostWeights, mut s: StepInputs, mirrors: Vec<Mirror>, updates: Vec<(usize, Vec<f32>)>) -> Result<()> {
    let old_values = s.host_tensors.take().unwrap_or_default();
    let old_transposed = std::mem::take(&mut s.host_transposed);
    drop(s);
    let mut tensors = Vec::with_capacity(old_values.len());
    for (((w, mut mirror), value), transposed) in model.weights.iter().zip(mirrors).zip(old_values).zip(old_transposed) {
        tensors.push(Some(if w.trainable {
            let n = w.value.len();
            // SAFETY: the update succeeded, so every trainable weight's mirror holds all of
            // its values, and its transpose where one was asked for (apply_sharded's
            // contract; train() checks that every shard ran).
            unsafe { mirror.values.set_len(n) };
            let value = Tensor::from_vec(mirror.values, w.shape.as_slice(), &Device::Cpu)?;
            let transposed = match mirror.transpose {
                Some((rows, cols)) => {
                    unsafe { mirror.transposed.set_len(n) };
                    Some(Tensor::from_vec(mirror.transposed, (cols, rows), &Device::Cpu)?)
                }
                None => None,
            };
            HostWeight { value, transposed }
        } else {
            HostWeight { value, transposed }
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
pub(super) fn train(replicas: &Replicas, model: &mut Model, compiled: &mut Compiled, batch: &Batch, rows: &[usize], seed: u64) -> Result<BatchStats> {
    let set = &replicas.set;
    let mut cache = replicas.host_weights.lock().unwrap_or_else(|e| e.into_inner());
    let (s, mut next) = host_step(model, &mut cache, compiled, rows.len(), seed)?;
    let parts_rows = split_rows(rows, set);
    // Replicas with rows take part; each gets one shard of the update.
    let active: Vec<usize> = (0..set.len()).filter(|r| parts_rows[*r].is_some()).collect();
    let fault = set.fault_for_this_step();
    let spin = set.has_own_cores();
    let barrier = StepBarrier::new(active.len(), spin);
    let updated = StepBarrier::new(active.len(), spin);
    let counts = MaskCounts::for_step(&s, active.len(), spin);
    let group = replica_group(active.len());
    let deposited: Vec<Mutex<Option<Vec<Tensor>>>> = (0..set.len()).map(|_| Mutex::new(None)).collect();
    let mut outcome: Option<Vec<(Part, bool)>> = None;
    let (s_ref, parts_rows, active_ref, barrier, updated, deposited, counts) = (&s, &parts_rows, &active, &barrier, &updated, &deposited, counts.as_ref());
    let applied = compiled.optimizer.apply_sharded(&mut model.weights, Some(&mut next), active.len(), |shards| {
        let shards: Vec<Mutex<Option<UpdateShard<'_>>>> = shards.into_iter().map(|s| Mutex::new(Some(s))).collect();
        let shards = &shards;
        let results = set.run_all(|r| -> PartTask<'_, (Part, bool)> {
            let mine = parts_rows[r]?;
            // Made first: should this replica get no task, dropping it releases the others.
            let arrival = Arrival::new(barrier);
            let done = Arrival::new(updated);
            let masks = MaskCounts::place(counts);
            let k = active_ref.iter().position(|a| *a == r)?;
            let seat = group.as_ref().map(|g| g.seat(k));
            let shard = shards[k].lock().ok()?.take()?;
            let injected = fault.filter(|(replica, _)| *replica == r).map(|(_, kind)| kind);
            Some(Box::new(move |ctx: &WorkerContext| {
                fail_if_injected(injected)?;
                let mut part =
                    timed_replica_part(set, r, mine.len(), seat, |c| train_part(s_ref, &ctx.device, batch, mine, r, true, masks, c, &mut |_, _| Ok(())))?;
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
    let stats = combine(&parts, rows.len(), &s);
    let updates = average_updates(&parts);
    keep_host_weights(model, &mut cache, s, next, updates)?;
    Ok(stats)
}

/// Weight tensors in host memory kept from one step to the next for CPU-backed devices,
/// which all read the same ones (virtual GPUs share the host's memory: copying the weights
/// for each replica was a fixed cost per replica and step), with the transposes the backward
/// pass wants (`Architecture::transposed_kernels`). An entry is used only while the model's
/// weight is still the very value it was made from: the entry holds that value's `Arc`, so
/// any other change to the weights (set_weights, loading, moving statistics, the template's
/// own training) gives the model a new `Arc` and the entry is remade.
#[derive(Default)]
pub(super) struct HostWeights {
    entries: Vec<Option<HostEntry>>,
}

/// One weight's tensors: its value (shaped) and, where wanted, its transpose.
struct HostWeight {
    value: Tensor,
    transposed: Option<Tensor>,
}

type HostEntry = (Arc<Vec<f32>>, HostWeight);

impl HostWeights {
    /// The weights as CPU tensors (and the wanted transposes), reusing every entry that is
    /// still current. The entries' hold on the values is released, so that the optimizer
    /// can then update them in place.
    fn take(&mut self, weights: &[Weight], want_transposed: &[bool]) -> Result<Vec<HostWeight>> {
        self.entries.resize_with(weights.len(), || None);
        weights
            .iter()
            .zip(self.entries.iter_mut())
            .enumerate()
            .map(|(i, (w, entry))| {
                let wanted = want_transposed.get(i).copied().unwrap_or(false);
                match entry.take() {
                    Some((source, hw)) if Arc::ptr_eq(&source, &w.value) && hw.value.dims() == w.shape.as_slice() && hw.transposed.is_some() == wanted => {
                        Ok(hw)
                    }
                    _ => {
                        let value = Tensor::from_slice(w.value.as_slice(), w.shape.as_slice(), &Device::Cpu)?;
                        let transposed = if wanted && value.rank() == 2 { Some(value.t()?.contiguous()?) } else { None };
                        Ok(HostWeight { value, transposed })
                    }
                }
            })
            .collect()
    }

    /// Keeps each weight's current tensors (None where there are none) for the next step.
    fn keep(&mut self, weights: &[Weight], tensors: Vec<Option<HostWeight>>) {
        self.entries = weights.iter().zip(tensors).map(|(w, t)| t.map(|t| (w.value.clone(), t))).collect();
    }

    fn clear(&mut self) {
        self.entries.clear();
    }
}
