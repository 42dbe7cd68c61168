//! Test hooks (R/testing.R), internal to the package.
use crate::{guard, handle};
use extendr_api::prelude::*;
use rustgpu_core::Error;

/// Test hook: makes `replica` of a parallel model fail ("error" or "panic") in the
/// training step after `after_steps` more steps.
/// @noRd
#[extendr]
fn rg_inject_fault(mut ptr: Robj, replica: i32, after_steps: i32, kind: &str) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let kind = match kind {
            "panic" => rustgpu_core::parallel::FaultKind::Panic,
            "error" => rustgpu_core::parallel::FaultKind::Error,
            other => return Err(Error::Value(format!("`kind` must be \"error\" or \"panic\", got \"{}\"", other))),
        };
        match h.executor.replica_set() {
            Some(set) => set.inject_fault(replica.max(0) as usize, after_steps.max(0) as u64, kind)?,
            None => return Err(Error::Value("faults can only be injected into a parallel model".into())),
        }
        Ok(().into())
    })
}

/// Test hook: makes a replica's training parts take `seconds_per_row` longer per row.
/// @noRd
#[extendr]
fn rg_slow_replica(mut ptr: Robj, replica: i32, seconds_per_row: f64) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let set = h.executor.replica_set().ok_or_else(|| Error::Value("only a parallel model's replicas can be slowed down".into()))?;
        if replica < 0 || replica as usize >= set.len() || !(0.0..=1.0).contains(&seconds_per_row) {
            return Err(Error::Value(format!("no replica {} of {}, or a delay outside 0 to 1 s per row", replica, set.len())));
        }
        set.split.slow_down(replica as usize, std::time::Duration::from_secs_f64(seconds_per_row));
        Ok(().into())
    })
}

extendr_module! {
    mod testing;
    fn rg_inject_fault;
    fn rg_slow_replica;
}
