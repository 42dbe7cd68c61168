//! `multi_gpu_model()` (R/multi_gpu.R): a parallel model sharing its template's weights.
use crate::{guard, handle, ModelHandle};
use extendr_api::prelude::*;
use rustgpu_core::device;
use rustgpu_core::parallel::{MergeDevice, ReplicaSet};
use rustgpu_core::row_split::SplitMode;
use rustgpu_core::Executor;

/// Wraps the template in a parallel model that shares its weights.
/// @noRd
#[extendr]
fn rg_multi_gpu(mut template: Robj, gpus: Robj, cpu_merge: bool, cpu_relocation: bool, split: &str) -> Robj {
    guard(|| {
        let t = handle(&mut template)?;
        let ids: Vec<usize> = match gpus.as_real_vector() {
            Some(v) => v.iter().map(|x| *x as usize).collect(),
            None => gpus.as_integer_vector().unwrap_or_default().iter().map(|x| *x as usize).collect(),
        };
        let devices = device::resolve_gpus(&ids)?;
        let merge = if cpu_merge { MergeDevice::Cpu } else { MergeDevice::FirstReplica };
        let set = ReplicaSet::with_split(devices, merge, SplitMode::parse(split)?)?;
        let h = ModelHandle {
            model: t.model.clone(),
            compiled: None,
            executor: Executor::replicated(set),
            cpu_relocation,
            steps: 0,
            epoch_metric_sums: Vec::new(),
            saved_optimizer_state: None,
        };
        Ok(ExternalPtr::new(h).into())
    })
}

/// How a batch of `rows` rows would be shared among the replicas now (rows per replica),
/// and each replica's measured rows per second (NA until measured).
/// @noRd
#[extendr]
fn rg_replica_split(mut ptr: Robj, rows: i32) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let set = h.executor.replica_set().ok_or_else(|| rustgpu_core::Error::Value("the model is not a parallel model".into()))?;
        let lengths: Vec<i32> = set.split.ranges(rows.max(0) as usize).iter().map(|r| r.len() as i32).collect();
        let speeds: Vec<Option<f64>> = set.split.speeds();
        Ok(list!(rows = lengths, speed = speeds.iter().map(|s| s.unwrap_or(f64::NAN)).collect::<Vec<f64>>()).into())
    })
}

/// Start/end times (seconds, relative to the earliest) of the replicas' recent tasks.
/// @noRd
#[extendr]
fn rg_replica_timeline(mut ptr: Robj) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let tl = h.executor.replica_set().map(|set| set.timeline()).unwrap_or_default();
        let t0 = tl.iter().map(|i| i.start).min();
        let secs = |t: std::time::Instant| t0.map(|z| t.duration_since(z).as_secs_f64()).unwrap_or(0.0);
        Ok(list!(
            replica = tl.iter().map(|i| i.replica as i32).collect::<Vec<_>>(),
            start = tl.iter().map(|i| secs(i.start)).collect::<Vec<_>>(),
            end = tl.iter().map(|i| secs(i.end)).collect::<Vec<_>>()
        )
        .into())
    })
}

extendr_module! {
    mod multi_gpu;
    fn rg_multi_gpu;
    fn rg_replica_split;
    fn rg_replica_timeline;
}
