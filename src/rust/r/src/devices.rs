//! Devices (R/devices.R): GPUs found, virtual GPUs, what this build supports.
use crate::guard;
use extendr_api::prelude::*;
use rustgpu_core::device::{self, DeviceInfo};

/// @noRd
#[extendr]
fn rg_use_virtual_gpus(n: i32, threads: Vec<i32>) -> Robj {
    guard(|| {
        let threads: Vec<usize> = threads.iter().map(|t| (*t).max(0) as usize).collect();
        device::set_virtual_gpus(n.max(0) as usize, &threads)?;
        Ok(().into())
    })
}

/// @noRd
#[extendr]
fn rg_gpu_devices() -> Robj {
    guard(|| {
        let d: Vec<DeviceInfo> = device::gpu_devices();
        Ok(list!(
            id = d.iter().map(|x| x.id as i32).collect::<Vec<_>>(),
            name = d.iter().map(|x| x.name.clone()).collect::<Vec<_>>(),
            kind = d.iter().map(|x| x.kind.as_str().to_string()).collect::<Vec<_>>(),
            memory = d.iter().map(|x| x.memory.map(|m| m as f64).unwrap_or(f64::NAN)).collect::<Vec<_>>(),
            threads = d.iter().map(|x| x.threads as i32).collect::<Vec<_>>()
        )
        .into())
    })
}

/// Whether `values` R doubles (or other 8-byte values) fit in this process's memory: a
/// `rustgpu_resource_error` naming `what` when they do not, before R tries to allocate them.
/// @noRd
#[extendr]
fn rg_check_memory(what: &str, values: f64, advice: &str) -> Robj {
    guard(|| {
        // Beyond 2^63 the f64 cannot be a count; treat it as "more than can be counted".
        let needed = if (0.0..9.2e18).contains(&values) { rustgpu_core::memory::bytes(values as u64, 8) } else { None };
        rustgpu_core::memory::check(what, needed, advice)?;
        Ok(().into())
    })
}

/// @noRd
#[extendr]
fn rg_cuda_device_count() -> i32 {
    device::cuda_device_count() as i32
}

/// Features compiled into this build.
/// @noRd
#[extendr]
fn rg_build_features() -> Vec<String> {
    let mut f = vec!["cpu".to_string()];
    if cfg!(feature = "cuda") {
        f.push("cuda".into());
    }
    f
}

/// CUDA driver and cuBLAS versions found at run time (NA in a CPU build).
/// @noRd
#[extendr]
fn rg_cuda_versions() -> Robj {
    let (driver, cublas) = rustgpu_core::device::cuda_versions();
    let na = || Robj::from(Rstr::na());
    list!(driver = driver.map(Robj::from).unwrap_or_else(na), cublas = cublas.map(Robj::from).unwrap_or_else(na)).into()
}

extendr_module! {
    mod devices;
    fn rg_use_virtual_gpus;
    fn rg_gpu_devices;
    fn rg_cuda_device_count;
    fn rg_check_memory;
    fn rg_build_features;
    fn rg_cuda_versions;
}
