//! Devices: the CPU, CUDA GPUs (CUDA builds only) and virtual GPUs, CPU-backed stand-ins
//! that let machines without a GPU run the whole data-parallel path.
use crate::error::{Error, Result};
use std::sync::{Mutex, Once};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Cuda,
    Virtual,
}

impl DeviceKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
            DeviceKind::Virtual => "virtual",
        }
    }
}

/// One device replicas can run on.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// 0-based GPU id (as in `multi_gpu_model(gpus = )`).
    pub id: usize,
    pub kind: DeviceKind,
    pub name: String,
    /// Memory in bytes, where known.
    pub memory: Option<u64>,
    /// Threads a replica on this device may use for its CPU kernels.
    pub threads: usize,
}

impl DeviceInfo {
    /// Keras-style device string, e.g. "/gpu:1".
    pub fn label(&self) -> String {
        match self.kind {
            DeviceKind::Cpu => "/cpu:0".to_string(),
            _ => format!("/gpu:{}", self.id),
        }
    }

    /// The bytes free on a CUDA device now (None for the CPU and virtual GPUs, whose memory
    /// is the host's, and where the driver does not answer).
    pub fn free_memory(&self) -> Option<u64> {
        match self.kind {
            DeviceKind::Cuda => cuda_free_memory(self.id),
            DeviceKind::Cpu | DeviceKind::Virtual => None,
        }
    }

    pub fn candle_device(&self) -> Result<candle_core::Device> {
        match self.kind {
            DeviceKind::Cpu | DeviceKind::Virtual => Ok(candle_core::Device::Cpu),
            DeviceKind::Cuda => cuda_device(self.id),
        }
    }
}

/// Opening a CUDA device creates a context, a stream, cuBLAS handles and loads kernels
/// (tens of milliseconds): open each GPU once and share it.
#[cfg(feature = "cuda")]
fn cuda_device(id: usize) -> Result<candle_core::Device> {
    static OPENED: std::sync::Mutex<Vec<(usize, candle_core::Device)>> = std::sync::Mutex::new(Vec::new());
    let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, d)) = opened.iter().find(|(i, _)| *i == id) {
        return Ok(d.clone());
    }
    let device = candle_core::Device::new_cuda(id).map_err(|e| Error::Device(format!("cannot open CUDA device {}: {}", id, e)))?;
    opened.push((id, device.clone()));
    Ok(device)
}

#[cfg(feature = "cuda")]
fn cuda_free_memory(id: usize) -> Option<u64> {
    let device = cuda_device(id).ok()?;
    let (free, _total) = device.as_cuda_device().ok()?.cuda_stream().context().mem_get_info().ok()?;
    Some(free as u64)
}

#[cfg(not(feature = "cuda"))]
fn cuda_free_memory(_id: usize) -> Option<u64> {
    None
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(id: usize) -> Result<candle_core::Device> {
    Err(Error::Device(format!("GPU {} is a CUDA device but this build of rustgpu has no CUDA support", id)))
}

/// Each virtual GPU's threads (none: no virtual GPUs).
static VIRTUAL_THREADS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// Makes `n` virtual GPUs (0 removes them) with `threads` threads for each one's kernels:
/// one count for all, or one per GPU (devices of unequal speed); empty or 0: the machine's
/// cores divided among them.
pub fn set_virtual_gpus(n: usize, threads: &[usize]) -> Result<()> {
    if n > 64 {
        return Err(Error::Value(format!("`n` must be between 0 and 64 virtual GPUs, got {}", n)));
    }
    let per_gpu = match threads {
        [] | [0] => {
            // Share the machine's cores evenly, at least one each.
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            vec![(cores / n.max(1)).max(1); n]
        }
        [t] => vec![*t; n],
        ts if ts.len() == n && ts.iter().all(|t| *t > 0) => ts.to_vec(),
        ts => return Err(Error::Value(format!("`threads_per_gpu` must be one count (>= 1) for every GPU or one per GPU ({}), got {} values", n, ts.len()))),
    };
    *VIRTUAL_THREADS.lock().unwrap_or_else(|e| e.into_inner()) = per_gpu;
    Ok(())
}

pub fn virtual_gpu_count() -> usize {
    VIRTUAL_THREADS.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// The first core of virtual GPU `id`'s threads when each GPU's threads get cores of their
/// own, in GPU order; None when the GPUs' threads together outnumber the machine's cores,
/// or when `id` is not one of the configured virtual GPUs (a device made by hand, as in a
/// test, must not be pinned to core 0 with every other such device).
pub fn virtual_gpu_first_core(id: usize) -> Option<usize> {
    let threads = VIRTUAL_THREADS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    first_core(&threads, cores, id)
}

/// [`virtual_gpu_first_core`] for GPUs of `threads[i]` threads each on `cores` cores.
fn first_core(threads: &[usize], cores: usize, id: usize) -> Option<usize> {
    (id < threads.len() && threads.iter().sum::<usize>() <= cores).then(|| threads.iter().take(id).sum())
}

/// Number of CUDA devices the driver reports (0 in a CPU build or without a driver).
pub fn cuda_device_count() -> usize {
    #[cfg(feature = "cuda")]
    {
        candle_core::cuda_backend::cudarc::driver::CudaContext::device_count().map(|n| n as usize).unwrap_or(0)
    }
    #[cfg(not(feature = "cuda"))]
    {
        0
    }
}

/// The GPUs replicas can use: the virtual GPUs when some are set (they stand in for the
/// machine's GPUs), else the CUDA devices.
pub fn gpu_devices() -> Vec<DeviceInfo> {
    let threads = VIRTUAL_THREADS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if !threads.is_empty() {
        return threads
            .into_iter()
            .enumerate()
            .map(|(id, threads)| DeviceInfo { id, kind: DeviceKind::Virtual, name: format!("virtual GPU {}", id), memory: None, threads })
            .collect();
    }
    (0..cuda_device_count())
        .map(|id| {
            let (name, memory) = cuda_name_and_memory(id).unwrap_or_else(|| (format!("CUDA GPU {}", id), None));
            DeviceInfo { id, kind: DeviceKind::Cuda, name, memory, threads: 1 }
        })
        .collect()
}

/// The driver's name for CUDA device `id` and its total memory in bytes.
#[cfg(feature = "cuda")]
fn cuda_name_and_memory(id: usize) -> Option<(String, Option<u64>)> {
    let ctx = candle_core::cuda_backend::cudarc::driver::CudaContext::new(id).ok()?;
    let name = ctx.name().ok()?;
    Some((name, ctx.total_mem().ok().map(|m| m as u64)))
}

#[cfg(not(feature = "cuda"))]
fn cuda_name_and_memory(_id: usize) -> Option<(String, Option<u64>)> {
    None
}

/// Versions found at run time: the CUDA driver's (e.g. "13.0") and cuBLAS's ("13.1.0");
/// None in a CPU build or where the libraries do not answer.
pub fn cuda_versions() -> (Option<String>, Option<String>) {
    #[cfg(feature = "cuda")]
    {
        use candle_core::cuda_backend::cudarc::{cublas::sys as cublas, driver::sys as driver};
        let mut v: std::ffi::c_int = 0;
        // SAFETY: plain queries that write one integer.
        let drv = (unsafe { driver::cuDriverGetVersion(&mut v) } == driver::CUresult::CUDA_SUCCESS).then(|| format!("{}.{}", v / 1000, (v % 1000) / 10));
        let part = |t| {
            let mut x: std::ffi::c_int = 0;
            (unsafe { cublas::cublasGetProperty(t, &mut x) } == cublas::cublasStatus_t::CUBLAS_STATUS_SUCCESS).then_some(x)
        };
        let blas = match (
            part(cublas::libraryPropertyType::MAJOR_VERSION),
            part(cublas::libraryPropertyType::MINOR_VERSION),
            part(cublas::libraryPropertyType::PATCH_LEVEL),
        ) {
            (Some(a), Some(b), Some(c)) => Some(format!("{}.{}.{}", a, b, c)),
            _ => None,
        };
        (drv, blas)
    }
    #[cfg(not(feature = "cuda"))]
    {
        (None, None)
    }
}

pub fn cpu_device() -> DeviceInfo {
    DeviceInfo { id: 0, kind: DeviceKind::Cpu, name: "CPU".into(), memory: None, threads: rayon::current_num_threads() }
}

/// Process-wide thread settings candle reads once. Its elementwise "barrier pool" spins and
/// serialises concurrent callers; one thread makes it run inline on the caller's thread, so
/// replicas' work stays inside their own pools. Call before any tensor op.
pub fn configure_threads() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            // SAFETY: runs once, before any worker thread of ours exists.
            unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
        }
    });
}

/// Resolves `gpus` ids to devices, with Keras's messages when they are not there.
pub fn resolve_gpus(ids: &[usize]) -> Result<Vec<DeviceInfo>> {
    let available = gpu_devices();
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !seen.insert(*id) {
            return Err(Error::Value(format!("`gpus` lists GPU {} more than once: each id must be distinct", id)));
        }
    }
    let missing = ids.iter().any(|id| *id >= available.len());
    if missing {
        let quoted = |v: Vec<String>| format!("[{}]", v.iter().map(|d| format!("'{}'", d)).collect::<Vec<_>>().join(", "));
        let mut expected = vec!["/cpu:0".to_string()];
        expected.extend(ids.iter().map(|i| format!("/gpu:{}", i)));
        let mut have = vec!["/cpu:0".to_string()];
        have.extend(available.iter().map(|d| d.label()));
        let gpus_arg = if ids.iter().enumerate().all(|(i, id)| i == *id) {
            ids.len().to_string()
        } else {
            format!("c({})", ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", "))
        };
        return Err(Error::Device(format!(
            "To call `multi_gpu_model` with `gpus={}`, we expect the following devices to be available: {}. However this machine only has: {}. Try reducing `gpus`.",
            gpus_arg,
            quoted(expected),
            quoted(have)
        )));
    }
    Ok(ids.iter().map(|id| available[*id].clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::first_core;

    #[test]
    fn virtual_gpus_get_cores_of_their_own_only_when_configured_and_they_fit() {
        // Two GPUs of one thread and one of two on four cores: cores 0, 1 and 2-3.
        assert_eq!([0, 1, 2].map(|id| first_core(&[1, 1, 2], 4, id)), [Some(0), Some(1), Some(2)]);
        // More threads than cores: nobody is pinned.
        assert_eq!(first_core(&[2, 2], 2, 0), None);
        // A virtual device that is not one of the configured GPUs (none configured, or past
        // the last one) is not pinned; it used to land on core 0 with every other such device.
        assert_eq!(first_core(&[], 2, 0), None);
        assert_eq!(first_core(&[], 2, 1), None);
        assert_eq!(first_core(&[1], 2, 1), None);
    }
}
