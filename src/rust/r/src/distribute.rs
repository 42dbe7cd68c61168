//! Distribution strategies (R/distribute.R): a model made in a `mirrored_strategy()` scope
//! trains on replicas; in a `multi_worker_mirrored_strategy()` scope, as one worker process
//! of an MPI job.
use crate::{guard, handle};
use extendr_api::prelude::*;
use rustgpu_core::collective::Ranked;
use rustgpu_core::device;
use rustgpu_core::parallel::{MergeDevice, ReplicaSet};
use rustgpu_core::workers::{self, Workers};
use rustgpu_core::Executor;
use std::sync::Arc;

/// Makes the model itself train on replicas over `gpus`, merged on the CPU: the engine of
/// `multi_gpu_model()`, without a second model.
/// @noRd
#[extendr]
fn rg_replicate_in_place(mut ptr: Robj, gpus: Robj) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let ids: Vec<usize> = gpus.as_integer_vector().unwrap_or_default().iter().map(|x| *x as usize).collect();
        h.executor = Executor::replicated(ReplicaSet::new(device::resolve_gpus(&ids)?, MergeDevice::Cpu)?);
        Ok(().into())
    })
}

/// Whether this build has MPI (multi-worker training).
/// @noRd
#[extendr]
fn rg_workers_available() -> bool {
    workers::available()
}

fn joined() -> rustgpu_core::Result<Arc<Workers>> {
    workers::join()
}

/// Joins the MPI job (once per process): this process's rank and the job's size.
/// @noRd
#[extendr]
fn rg_workers_join() -> Robj {
    guard(|| {
        let w = joined()?;
        Ok(list!(rank = w.rank() as i32, size = w.size() as i32).into())
    })
}

/// Rank 0's `seed` on every rank (a whole number below 2^31).
/// @noRd
#[extendr]
fn rg_workers_broadcast_seed(seed: f64) -> Robj {
    guard(|| {
        let w = joined()?;
        let mut bytes = (seed.max(0.0) as u64).to_le_bytes();
        w.broadcast_bytes(&mut bytes)?;
        Ok((u64::from_le_bytes(bytes) as f64).into_robj())
    })
}

/// Makes the model one worker of the job (its steps on this process's device), and gives it
/// rank 0's weights.
/// @noRd
#[extendr]
fn rg_join_workers(mut ptr: Robj) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let w = joined()?;
        let info = worker_device();
        let ranked: Arc<dyn Ranked> = w;
        h.executor = Executor::Workers(info, ranked);
        Ok(().into())
    })
}

/// A worker's device: with CUDA GPUs, the one of its place among the node's ranks (the
/// launcher's local rank: Open MPI's, SLURM's or MPICH's), else the CPU.
fn worker_device() -> device::DeviceInfo {
    let cuda: Vec<device::DeviceInfo> = device::gpu_devices().into_iter().filter(|d| d.kind == device::DeviceKind::Cuda).collect();
    if cuda.is_empty() {
        return device::cpu_device();
    }
    let local = ["OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"]
        .iter()
        .find_map(|v| std::env::var(v).ok().and_then(|s| s.parse::<usize>().ok()))
        .unwrap_or(0);
    cuda[local % cuda.len()].clone()
}

/// Rank 0's weights on every rank (every rank holds the same model).
/// @noRd
#[extendr]
fn rg_workers_broadcast_weights(mut ptr: Robj) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let w = joined()?;
        let mut m = h.model();
        for weight in m.weights.iter_mut() {
            let mut values = weight.value.as_ref().clone();
            w.broadcast_f32(&mut values)?;
            weight.value = Arc::new(values);
        }
        Ok(().into())
    })
}

/// Tells the other ranks that this one failed (`text`: the R error's message).
/// @noRd
#[extendr]
fn rg_workers_report_failure(text: &str) -> Robj {
    guard(|| {
        joined()?.report_failure(text);
        Ok(().into())
    })
}

/// Leaves the job cleanly (at the end of the R session).
/// @noRd
#[extendr]
fn rg_workers_leave() -> Robj {
    guard(|| {
        if workers::is_joined() {
            joined()?.leave();
        }
        Ok(().into())
    })
}

extendr_module! {
    mod distribute;
    fn rg_replicate_in_place;
    fn rg_workers_available;
    fn rg_workers_join;
    fn rg_workers_broadcast_seed;
    fn rg_join_workers;
    fn rg_workers_broadcast_weights;
    fn rg_workers_report_failure;
    fn rg_workers_leave;
}
