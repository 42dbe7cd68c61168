//! extendr bindings of rustgpu: convert R values, forward to rustgpu-core, convert back.
//! Every function returns an `Robj`; a core error or a panic comes back as a
//! `rustgpu_backend_failure` object that R turns into a classed condition (no longjmp
//! crosses Rust frames, and nothing here takes the R session down).
use extendr_api::prelude::*;
use rustgpu_core::device::{self, DeviceInfo};
use rustgpu_core::parallel::{MergeDevice, ReplicaSet};
use rustgpu_core::{Compiled, Error, Executor, Model, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};

// Rust's allocations (tensors, im2col buffers) go to mimalloc, which keeps freed memory for
// reuse; glibc would map and unmap every large buffer, paying page faults each step. R's own
// allocations are not affected.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod convert;
mod layers;
mod saving;
mod training;

use convert::host_to_r;

/// A model as R holds it: the (possibly shared) model, its compile state and where it runs.
/// A parallel model shares `model` with its template.
pub struct ModelHandle {
    model: Arc<Mutex<Model>>,
    compiled: Option<Compiled>,
    executor: Executor,
    /// Recorded for `summary()`: the master weights always live in host memory.
    cpu_relocation: bool,
    /// Steps run so far, used to derive per-step dropout seeds.
    steps: u64,
}

impl ModelHandle {
    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new model of its own, run on the CPU, as an R external pointer.
    pub(crate) fn new_pointer(model: Model) -> Robj {
        let h = ModelHandle {
            model: Arc::new(Mutex::new(model)),
            compiled: None,
            executor: Executor::Local(device::cpu_device()),
            cpu_relocation: false,
            steps: 0,
        };
        ExternalPtr::new(h).into()
    }
}

/// Runs `f`, turning an error or a panic into the failure object R expects.
pub(crate) fn guard<F: FnOnce() -> Result<Robj>>(f: F) -> Robj {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => failure(e.class(), &e.to_string()),
        Err(p) => {
            let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown panic".into());
            failure("rustgpu_runtime_error", &format!("internal error in rustgpu: {}", msg))
        }
    }
}

fn failure(class: &str, message: &str) -> Robj {
    let mut obj: Robj = List::from_names_and_values(["class", "message"], [class, message]).map(|l| l.into()).unwrap_or_else(|_| Robj::from(message));
    let _ = obj.set_attrib("class", "rustgpu_backend_failure");
    obj
}

/// The handle behind an R model object; a clear error when the pointer is gone
/// (e.g. after saveRDS()/readRDS()) or is not a rustgpu model.
/// Borrowed mutably from the caller's own `Robj` for the length of one call: R runs one call
/// at a time on the main thread, so nothing else holds the handle meanwhile.
pub(crate) fn handle(ptr: &mut Robj) -> Result<&mut ModelHandle> {
    let ext: &mut ExternalPtr<ModelHandle> = ptr.try_into().map_err(|_| {
        Error::State("this model's compiled data is gone (models do not survive saveRDS()/readRDS() or a new R session): rebuild the model".into())
    })?;
    ext.try_addr_mut().map_err(|_| Error::State("this model's compiled data is gone".into()))
}

pub(crate) fn seed_from(r: &Robj) -> u64 {
    r.as_real().map(|v| v as u64).or_else(|| r.as_integer().map(|v| v as u64)).unwrap_or(0)
}

extern "C" {
    fn mi_option_set(option: std::os::raw::c_int, value: std::os::raw::c_long);
}

/// mimalloc returns freed memory to the OS 10 ms after it is freed; a training step takes
/// longer than that, so every step's large buffers came back as fresh pages the kernel had to
/// clear (5-9% of a CNN fit). One second keeps them across steps and still gives memory back
/// soon after training stops. MIMALLOC_PURGE_DELAY, when set, wins.
fn keep_freed_memory_between_steps() {
    // mi_option_purge_delay: 15 in the option enums of both mimalloc v2 and v3 (libmimalloc-sys
    // builds v3 unless its v2 feature is on).
    const MI_OPTION_PURGE_DELAY: std::os::raw::c_int = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options atomically.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
    }
}

/// Sets process-wide thread settings before any tensor work; called from .onLoad.
/// @noRd
#[extendr]
fn rg_init() -> Robj {
    device::configure_threads();
    keep_freed_memory_between_steps();
    if std::env::var_os("RUSTGPU_DEBUG").is_none() {
        // Errors reach R as conditions; panic backtraces on stderr would only confuse users.
        std::panic::set_hook(Box::new(|_| {}));
    }
    ().into()
}

/// @noRd
#[extendr]
fn rg_model_new(name: &str) -> Robj {
    guard(|| Ok(ModelHandle::new_pointer(Model::new(name.to_string()))))
}

/// TRUE when `ptr` still points at a live model.
/// @noRd
#[extendr]
fn rg_is_live(mut ptr: Robj) -> bool {
    handle(&mut ptr).is_ok()
}

/// @noRd
#[extendr]
fn rg_unique_name(prefix: &str) -> String {
    rustgpu_core::layers::unique_name(prefix)
}

/// Structure for print/summary: layers, shapes, parameter counts, devices.
/// @noRd
#[extendr]
fn rg_model_info(mut ptr: Robj) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let m = h.model();
        let arch = &m.arch;
        let names: Vec<String> = arch.layers.iter().map(|l| l.name.clone()).collect();
        let classes: Vec<String> = arch.layers.iter().map(|l| l.class_name().to_string()).collect();
        let shapes: Vec<String> = (0..arch.layers.len())
            .map(|i| match arch.output_shapes.get(i) {
                Some(s) => format!("(None, {})", rustgpu_core::shape::join_dims(s)),
                None => "(unbuilt)".to_string(),
            })
            .collect();
        let params: Vec<f64> = (0..arch.layers.len())
            .map(|i| match arch.weight_ranges.get(i) {
                Some(r) => m.weights[r.clone()].iter().map(|w| w.value.len() as f64).sum(),
                None => f64::NAN,
            })
            .collect();
        let (trainable, frozen) = m.count_params();
        let devices: Vec<String> = match &h.executor {
            Executor::Local(d) => vec![d.name.clone()],
            Executor::Replicated(set) => {
                set.devices.iter().map(|d| format!("{} ({}, {} thread{})", d.label(), d.name, d.threads, if d.threads == 1 { "" } else { "s" })).collect()
            }
        };
        let merge = match &h.executor {
            Executor::Replicated(set) if set.merge == MergeDevice::FirstReplica => "first GPU",
            _ => "CPU",
        };
        let input_shape: Robj = match &arch.input_shape {
            Some(s) => s.iter().map(|v| *v as i32).collect::<Vec<_>>().into(),
            None => ().into(),
        };
        let weight_names: Vec<String> = m.weights.iter().map(|w| w.name.clone()).collect();
        Ok(list!(
            name = m.name.clone(),
            layer_names = names,
            layer_classes = classes,
            output_shapes = shapes,
            layer_params = params,
            trainable_params = trainable as f64,
            non_trainable_params = frozen as f64,
            built = arch.is_built(),
            input_shape = input_shape,
            replicas = h.executor.replica_count() as i32,
            parallel = matches!(h.executor, Executor::Replicated(_)),
            functional = arch.graph.is_some(),
            output_names = arch.output_names(),
            input_names = arch.graph.as_ref().map(|g| g.input_names.clone()).unwrap_or_default(),
            input_shapes = arch
                .graph
                .as_ref()
                .map(|g| g.input_shapes.iter().map(|s| format!("(None, {})", rustgpu_core::shape::join_dims(s))).collect::<Vec<_>>())
                .unwrap_or_default(),
            devices = devices,
            merge = merge,
            cpu_relocation = h.cpu_relocation,
            compiled = h.compiled.is_some(),
            weight_names = weight_names
        )
        .into())
    })
}

/// @noRd
#[extendr]
fn rg_get_weights(mut ptr: Robj) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let ws = h.model().get_weights();
        Ok(List::from_values(ws.iter().map(host_to_r)).into())
    })
}

/// @noRd
#[extendr]
fn rg_set_weights(mut ptr: Robj, weights: Robj) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let list: List = weights.try_into().map_err(|_| Error::Value("`weights` must be a list of arrays".into()))?;
        let mut values = Vec::with_capacity(list.len());
        for (i, (_, w)) in list.iter().enumerate() {
            let what = format!("weights[[{}]]", i + 1);
            let arr = convert::RArray::new(&w, &what, false)?;
            arr.check_finite(&what)?;
            values.push(arr.all());
        }
        h.model().set_weights(values)?;
        Ok(().into())
    })
}

/// Wraps the template in a parallel model that shares its weights.
/// @noRd
#[extendr]
fn rg_multi_gpu(mut template: Robj, gpus: Robj, cpu_merge: bool, cpu_relocation: bool) -> Robj {
    guard(|| {
        let t = handle(&mut template)?;
        let ids: Vec<usize> = match gpus.as_real_vector() {
            Some(v) => v.iter().map(|x| *x as usize).collect(),
            None => gpus.as_integer_vector().unwrap_or_default().iter().map(|x| *x as usize).collect(),
        };
        let devices = device::resolve_gpus(&ids)?;
        let merge = if cpu_merge { MergeDevice::Cpu } else { MergeDevice::FirstReplica };
        let set = ReplicaSet::new(devices, merge)?;
        let h = ModelHandle { model: t.model.clone(), compiled: None, executor: Executor::Replicated(set), cpu_relocation, steps: 0 };
        Ok(ExternalPtr::new(h).into())
    })
}

/// @noRd
#[extendr]
fn rg_use_virtual_gpus(n: i32, threads: i32) -> Robj {
    guard(|| {
        device::set_virtual_gpus(n.max(0) as usize, threads.max(0) as usize)?;
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

/// Start/end times (seconds, relative to the earliest) of the replicas' recent tasks.
/// @noRd
#[extendr]
fn rg_replica_timeline(mut ptr: Robj) -> Robj {
    guard(|| {
        let h = handle(&mut ptr)?;
        let tl = match &h.executor {
            Executor::Replicated(set) => set.timeline(),
            Executor::Local(_) => Vec::new(),
        };
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

/// R's node references: -(k + 1) for model input k, j for node j.
fn source(code: i32) -> rustgpu_core::model::Source {
    if code < 0 {
        rustgpu_core::model::Source::Input((-code - 1) as usize)
    } else {
        rustgpu_core::model::Source::Node(code as usize)
    }
}

/// A functional model from the layers defined on `scratch` (a model used only to hold
/// them) and the wiring R traced from the output tensors back to the inputs.
/// @noRd
#[extendr]
fn rg_make_functional(mut scratch: Robj, name: &str, input_names: Vec<String>, input_shapes: List, nodes: List, outputs: Vec<i32>) -> Robj {
    guard(|| {
        let layers = handle(&mut scratch)?.model().arch.layers.clone();
        let shapes = input_shapes
            .values()
            .map(|v| v.as_integer_vector().map(|s| s.into_iter().map(|d| d.max(0) as usize).collect::<Vec<_>>()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::Value("input shapes must be integer vectors".into()))?;
        let nodes = nodes
            .values()
            .map(|n| {
                let l: List = n.try_into().map_err(|_| Error::Value("malformed node".into()))?;
                let get = |k: &str| l.iter().find(|(name, _)| *name == k).map(|(_, v)| v);
                let layer = get("layer").and_then(|v| v.as_integer()).ok_or_else(|| Error::Value("node without a layer".into()))?;
                let inputs = get("inputs").and_then(|v| v.as_integer_vector()).unwrap_or_default();
                Ok(rustgpu_core::model::Node { layer: layer as usize, inputs: inputs.into_iter().map(source).collect() })
            })
            .collect::<Result<Vec<_>>>()?;
        let graph = rustgpu_core::model::Graph { input_names, input_shapes: shapes, nodes, outputs: outputs.into_iter().map(source).collect() };
        Ok(ModelHandle::new_pointer(Model::functional(name.to_string(), layers, graph)?))
    })
}

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
        match &h.executor {
            Executor::Replicated(set) => set.inject_fault(replica.max(0) as usize, after_steps.max(0) as u64, kind)?,
            Executor::Local(_) => return Err(Error::Value("faults can only be injected into a parallel model".into())),
        }
        Ok(().into())
    })
}

extendr_module! {
    mod rustgpu;
    fn rg_make_functional;
    fn rg_inject_fault;
    use layers;
    use saving;
    use training;
    fn rg_init;
    fn rg_model_new;
    fn rg_is_live;
    fn rg_unique_name;
    fn rg_model_info;
    fn rg_get_weights;
    fn rg_set_weights;
    fn rg_multi_gpu;
    fn rg_use_virtual_gpus;
    fn rg_gpu_devices;
    fn rg_cuda_device_count;
    fn rg_build_features;
    fn rg_cuda_versions;
    fn rg_replica_timeline;
}
